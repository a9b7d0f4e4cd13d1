//! A mail's content sealed under a fresh content key: the whole RFC 5322
//! message in one XChaCha20-Poly1305 box.
//!
//! The format is `version (1) || nonce (24 bytes, random) || ciphertext
//! || tag (16 bytes)`. A 24-byte random nonce never collides in practice,
//! so even a content key used twice (it never should be) stays safe; the
//! key itself travels wrapped to each reader by [`crate::wrap`], and large
//! attachments go through [`crate::attachment`] instead, which streams.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut as _, KeyInit as _};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::{OpenError, SealError};

/// The version byte this build writes and reads.
pub const CONTENT_VERSION: u8 = 1;

/// The largest plaintext [`seal_content`] takes and [`open_content`]
/// returns: a 64 MiB message with room for the framing around it.
pub const CONTENT_BYTES_MAX: usize = 72 << 20;

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// What sealing adds to the plaintext: version, nonce and tag.
pub const CONTENT_OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + TAG_BYTES;

/// A 32-byte symmetric key for one mail's content (and, each under its
/// own key, its attachments). Zeroed when dropped; never printed.
#[derive(Clone)]
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl ContentKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(SealError::Randomness)?;
        Ok(Self(key))
    }

    /// A key from its bytes, as unwrapped or as a test fixes it.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// The key's bytes, for wrapping.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The cipher under this key. The cipher zeroes its own copy of the
    /// key when dropped (the crate's `zeroize` feature).
    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(hidden)")
    }
}

/// Seals `plaintext` under `key`; `aad` is authenticated but not stored
/// (the caller binds e.g. the mail id, and must give it again to open).
pub fn seal_content(key: &ContentKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    if plaintext.len() > CONTENT_BYTES_MAX {
        return Err(SealError::TooLarge {
            what: "a content",
            size_bytes: plaintext.len() as u64,
            limit_bytes: CONTENT_BYTES_MAX as u64,
        });
    }
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(SealError::Randomness)?;
    let mut sealed = Vec::with_capacity(plaintext.len() + CONTENT_OVERHEAD_BYTES);
    sealed.push(CONTENT_VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let body = &mut sealed[1 + NONCE_BYTES..];
    let tag = key
        .cipher()
        .encrypt_inout_detached(&XNonce::from(nonce), aad, body.into())
        .map_err(SealError::Aead)?;
    sealed.extend_from_slice(&tag);
    Ok(sealed)
}

/// Opens what [`seal_content`] made with the same key and `aad`.
pub fn open_content(key: &ContentKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let limit_bytes = CONTENT_BYTES_MAX + CONTENT_OVERHEAD_BYTES;
    if sealed.len() > limit_bytes {
        return Err(OpenError::TooLarge {
            size_bytes: sealed.len() as u64,
            limit_bytes: limit_bytes as u64,
        });
    }
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(OpenError::Truncated);
    };
    if version != CONTENT_VERSION {
        return Err(OpenError::UnknownVersion(version));
    }
    if rest.len() < NONCE_BYTES + TAG_BYTES {
        return Err(OpenError::Truncated);
    }
    let (nonce, rest) = rest.split_at(NONCE_BYTES);
    let (body, tag) = rest.split_at(rest.len() - TAG_BYTES);
    let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::malformed("nonce length"))?;
    let tag = Tag::try_from(tag).map_err(|_| OpenError::malformed("tag length"))?;
    let mut plaintext = body.to_vec();
    key.cipher()
        .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), &tag)
        .map_err(|_| OpenError::Authentication)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ContentKey {
        ContentKey::from_bytes(&[7; 32])
    }

    #[test]
    fn round_trips() {
        for len in [0, 1, 15, 16, 17, 4096, 100_000] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = seal_content(&key(), b"mail-id", &plaintext).unwrap();
            assert_eq!(sealed.len(), len + CONTENT_OVERHEAD_BYTES);
            assert_eq!(
                open_content(&key(), b"mail-id", &sealed).unwrap(),
                plaintext
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let sealed = seal_content(&key(), b"aad", b"Subject: hi\r\n\r\nhello").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            match open_content(&key(), b"aad", &bad) {
                Err(OpenError::UnknownVersion(0)) if i == 0 => {}
                Err(OpenError::Authentication) if i > 0 => {}
                other => panic!("byte {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_aad_or_key_is_refused() {
        let sealed = seal_content(&key(), b"mail 1", b"hello").unwrap();
        assert!(matches!(
            open_content(&key(), b"mail 2", &sealed),
            Err(OpenError::Authentication)
        ));
        let other = ContentKey::from_bytes(&[8; 32]);
        assert!(matches!(
            open_content(&other, b"mail 1", &sealed),
            Err(OpenError::Authentication)
        ));
    }

    #[test]
    fn short_input_is_truncated() {
        let sealed = seal_content(&key(), b"", b"x").unwrap();
        for len in 0..CONTENT_OVERHEAD_BYTES {
            assert!(
                matches!(
                    open_content(&key(), b"", &sealed[..len]),
                    Err(OpenError::Truncated)
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn limits_are_refused_on_both_sides() {
        let big = vec![0u8; CONTENT_BYTES_MAX + 1];
        assert!(matches!(
            seal_content(&key(), b"", &big),
            Err(SealError::TooLarge { .. })
        ));
        let big = vec![CONTENT_VERSION; CONTENT_BYTES_MAX + CONTENT_OVERHEAD_BYTES + 1];
        assert!(matches!(
            open_content(&key(), b"", &big),
            Err(OpenError::TooLarge { .. })
        ));
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let a = seal_content(&key(), b"", b"same").unwrap();
        let b = seal_content(&key(), b"", b"same").unwrap();
        assert_ne!(a, b);
        let k1 = ContentKey::generate().unwrap();
        let k2 = ContentKey::generate().unwrap();
        assert_ne!(k1.as_bytes(), k2.as_bytes());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "ContentKey(hidden)");
    }
}
