//! The errors of sealing and of opening, shared by [`crate::content`],
//! [`crate::wrap`] and [`crate::attachment`].
//!
//! Sealing fails only for reasons on the sender's side (no randomness,
//! input over a named limit, HPKE refusing), so [`SealError`] is short.
//! Opening meets whatever a host or peer handed over, so [`OpenError`]
//! tells apart "not for this key" (try another key or give up quietly),
//! "altered" (report it) and "not even well-formed".

use crate::keys::EncryptionPublicKey;

/// Why sealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The operating system's randomness failed; nothing is sealed
    /// without a fresh nonce or key.
    #[error("no randomness from the operating system")]
    Randomness(#[source] getrandom::Error),
    /// The input is over a named limit.
    #[error("{what} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        /// What was too large, e.g. "a sealed content".
        what: &'static str,
        size_bytes: u64,
        limit_bytes: u64,
    },
    /// HPKE refused to encapsulate or to seal.
    #[error("HPKE failed while wrapping a key")]
    Hpke(#[source] hpke::HpkeError),
    /// The AEAD refused to encrypt (only for lengths no caller reaches
    /// under the limits above).
    #[error("the cipher refused to encrypt")]
    Aead(#[source] chacha20poly1305::Error),
}

/// Why opening failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The tag did not verify: altered bytes, a wrong context, or a key
    /// it was not sealed to. AEADs cannot tell these apart, and must not.
    #[error("the ciphertext or its wrapped key was altered, or it is not sealed to this key")]
    Authentication,
    /// A wrapped key names another recipient's public key.
    #[error("the key is wrapped to {to:?}, not to any key held here {have:?}")]
    NotForThisKey {
        /// The public key the wrapped key names.
        to: EncryptionPublicKey,
        /// The public keys held (perhaps none).
        have: Vec<EncryptionPublicKey>,
    },
    /// The input ended before its last part.
    #[error("the ciphertext ends early: its last part is missing")]
    Truncated,
    /// The input is not in the format at all.
    #[error("malformed ciphertext: {0}")]
    Malformed(std::borrow::Cow<'static, str>),
    /// A format version this build does not know.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The input is over a named limit.
    #[error("the ciphertext is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: u64, limit_bytes: u64 },
}

impl OpenError {
    /// A [`OpenError::Malformed`] with a fixed reason.
    pub(crate) fn malformed(why: &'static str) -> Self {
        Self::Malformed(std::borrow::Cow::Borrowed(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let to = EncryptionPublicKey([1; 32]);
        let have = EncryptionPublicKey([2; 32]);
        let msg = OpenError::NotForThisKey {
            to,
            have: vec![have],
        }
        .to_string();
        assert!(
            msg.contains(&to.short()) && msg.contains(&have.short()),
            "{msg}"
        );
        assert!(OpenError::Authentication.to_string().contains("altered"));
        assert_eq!(
            OpenError::malformed("bad magic").to_string(),
            "malformed ciphertext: bad magic"
        );
        let e = SealError::TooLarge {
            what: "a content",
            size_bytes: 10,
            limit_bytes: 5,
        };
        assert!(e.to_string().contains("limit of 5"));
    }
}
