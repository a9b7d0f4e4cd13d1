//! The sealed envelope: everything a host learns about a mail sealed end
//! to end, signed by its sender and bound to one recipient and a time
//! window.
//!
//! The sender's client encrypts the whole message (headers included) under
//! a fresh content key and wraps that key to the recipient (`dem-seal`).
//! What travels to the recipient's host is a [`SealedMail`]: the
//! ciphertext and a [`MailEnvelope`] holding only the sender's name (the
//! key is the envelope's signer), the recipient, the ciphertext's hash and
//! size, the attachments' ids and ciphertext sizes, and the wrapped key,
//! which only the recipient's encryption key opens. The sending time is the
//! signed envelope's `issued_ms`.
//!
//! The host checks the signature against the key dispatch resolves for the
//! sender's name, that the envelope names this mailbox's owner (so it
//! cannot be re-delivered to another mailbox), that it was sealed within
//! [`DELIVERY_WINDOW_MS`] (so a captured mail cannot be replayed an hour
//! later), and that the ciphertext is the one the envelope names. It
//! stores the [`SealedMail`] as the mail's blob, so the owner checks the
//! same signature again on reading and trusts no host for it.
//!
//! The mail id is derived from the ciphertext's hash: a retried delivery
//! of the same sealed mail files it once, and every recipient of one send
//! files it under the same id, as before sealing (each recipient's copy is
//! still bound to its mailbox by the envelope).

use serde::{Deserialize, Serialize};

use super::id::UserId;
use super::keys::KeyPair;
use super::name::Name;
use super::signed::{DomainTag, SignError, Signed, VerifyError};

/// The signature tag of a mail envelope.
pub const MAIL_ENVELOPE: DomainTag = DomainTag::new(b"dem/1 mail-envelope\0");
/// How long after sealing a mail a host still accepts its delivery. A
/// sender whose delivery takes longer (a recipient away, every replica
/// down) seals it again with a fresh envelope; the ciphertext, and so the
/// mail id, stay the same.
pub const DELIVERY_WINDOW_MS: i64 = 15 * 60 * 1000;
/// How far ahead of the host's clock a sender's clock may be.
pub const ENVELOPE_FUTURE_SKEW_MS: i64 = 2 * 60 * 1000;
/// The most bytes a wrapped key may take (an HPKE X25519 encapsulation
/// and an AEAD-wrapped 32-byte key need about 130).
pub const WRAPPED_KEY_BYTES_MAX: usize = 512;
/// The most attachments one envelope may name.
pub const ENVELOPE_ATTACHMENTS_MAX: usize = 1024;
/// The magic that starts a sealed mail's stored blob, so the owner's client
/// tells it from a plaintext message stored before sealing: an RFC 5322
/// message never starts with a NUL byte that a parser would keep.
pub const SEALED_BLOB_MAGIC: &[u8; 12] = b"\0DEM-SEALED1";
/// The BLAKE3 derive-key context of sealed mail ids.
const MAIL_ID_CONTEXT: &str = "dem/2 sealed mail id";

/// An attachment as the envelope names it: what a host needs to keep the
/// right ciphertext alive, and nothing about its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAttachment {
    /// BLAKE3 of the attachment's ciphertext: its id.
    #[serde(with = "serde_bytes")]
    pub id: [u8; 32],
    /// Size of the ciphertext.
    pub ciphertext_bytes: u64,
}

/// What a host learns about a sealed mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailEnvelope {
    /// The sender's registered name; the signer is the sender's key.
    pub sender_name: Name,
    /// The only user whose mailbox may take this mail.
    pub recipient: UserId,
    /// BLAKE3 of the ciphertext.
    #[serde(with = "serde_bytes")]
    pub ciphertext_hash: [u8; 32],
    /// Size of the ciphertext.
    pub ciphertext_bytes: u64,
    /// The attachments the message references, by ciphertext.
    pub attachments: Vec<EnvelopeAttachment>,
    /// The content key wrapped to the recipient's encryption key, opaque
    /// to hosts (a `dem_seal::WrappedKey`).
    #[serde(with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
}

/// A mail as delivered and stored: the signed envelope and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedMail {
    /// The envelope, signed by the sender at sending time.
    pub envelope: Signed<MailEnvelope>,
    /// The encrypted message.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Why a sealed mail was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The signature or the envelope's encoding is bad.
    #[error("the envelope's signature does not hold: {0}")]
    Signature(#[from] VerifyError),
    /// Signed by a key other than the one the sender's name resolves to.
    #[error("forged: the envelope is signed by {signer}, not by {sender_name}'s key {expected}")]
    WrongSender {
        /// The name it claims.
        sender_name: String,
        /// Who signed.
        signer: UserId,
        /// The key the name belongs to.
        expected: UserId,
    },
    /// Sealed for another mailbox.
    #[error("the mail is sealed for {sealed_for}, not for this mailbox ({mailbox})")]
    WrongRecipient {
        /// The envelope's recipient.
        sealed_for: UserId,
        /// The mailbox it was delivered to.
        mailbox: UserId,
    },
    /// Sealed too long ago: a replay, or a sender that must seal again.
    #[error(
        "the mail was sealed at {sealed_ms} ms, more than {DELIVERY_WINDOW_MS} ms before now ({now_ms} ms): seal it again"
    )]
    Expired {
        /// The envelope's time.
        sealed_ms: i64,
        /// The host's clock.
        now_ms: i64,
    },
    /// Sealed in the future, beyond the allowed clock skew.
    #[error("the mail is dated {sealed_ms} ms, ahead of this host's clock ({now_ms} ms)")]
    FromTheFuture {
        /// The envelope's time.
        sealed_ms: i64,
        /// The host's clock.
        now_ms: i64,
    },
    /// The ciphertext is not the one the envelope names.
    #[error("the ciphertext does not match its envelope ({0})")]
    CiphertextMismatch(&'static str),
    /// Over a limit.
    #[error("the envelope's {what} has {got}, more than {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A stored blob that is not a sealed mail.
    #[error("not a sealed mail: {0}")]
    Malformed(String),
}

impl SealedMail {
    /// Signs `envelope` as `sender` at `now_ms`, beside its ciphertext.
    pub fn seal(
        sender: &KeyPair,
        envelope: &MailEnvelope,
        ciphertext: Vec<u8>,
        now_ms: i64,
    ) -> Result<Self, SignError> {
        Ok(Self {
            envelope: Signed::sign(sender, MAIL_ENVELOPE, now_ms, envelope)?,
            ciphertext,
        })
    }

    /// The checks a host makes before taking the mail into `mailbox`:
    /// `sender` is the key dispatch resolved for the envelope's sender
    /// name (the caller decodes it first with [`SealedMail::sender_name`]).
    pub fn verify_delivery(
        &self,
        mailbox: UserId,
        sender: UserId,
        now_ms: i64,
    ) -> Result<MailEnvelope, EnvelopeError> {
        let sealed_ms = self.envelope.issued_ms;
        if sealed_ms < now_ms.saturating_sub(DELIVERY_WINDOW_MS) {
            return Err(EnvelopeError::Expired { sealed_ms, now_ms });
        }
        if sealed_ms > now_ms.saturating_add(ENVELOPE_FUTURE_SKEW_MS) {
            return Err(EnvelopeError::FromTheFuture { sealed_ms, now_ms });
        }
        let envelope = self.verify_stored()?;
        if self.envelope.signer != sender {
            return Err(EnvelopeError::WrongSender {
                sender_name: envelope.sender_name.to_string(),
                signer: self.envelope.signer,
                expected: sender,
            });
        }
        if envelope.recipient != mailbox {
            return Err(EnvelopeError::WrongRecipient {
                sealed_for: envelope.recipient,
                mailbox,
            });
        }
        Ok(envelope)
    }

    /// The checks that need no clock and no directory: the signature, the
    /// limits and that the ciphertext is the envelope's. The owner's client
    /// makes them on every read; hosts make them at every delivery.
    pub fn verify_stored(&self) -> Result<MailEnvelope, EnvelopeError> {
        if self.envelope.body.len() > ENVELOPE_BODY_BYTES_MAX {
            return Err(EnvelopeError::TooLarge {
                what: "encoding",
                got: self.envelope.body.len(),
                max: ENVELOPE_BODY_BYTES_MAX,
            });
        }
        let envelope = self.envelope.verify_ignoring_time(MAIL_ENVELOPE)?.body;
        if envelope.wrapped_key.len() > WRAPPED_KEY_BYTES_MAX {
            return Err(EnvelopeError::TooLarge {
                what: "wrapped key",
                got: envelope.wrapped_key.len(),
                max: WRAPPED_KEY_BYTES_MAX,
            });
        }
        if envelope.attachments.len() > ENVELOPE_ATTACHMENTS_MAX {
            return Err(EnvelopeError::TooLarge {
                what: "attachment list",
                got: envelope.attachments.len(),
                max: ENVELOPE_ATTACHMENTS_MAX,
            });
        }
        if envelope.ciphertext_bytes != self.ciphertext.len() as u64 {
            return Err(EnvelopeError::CiphertextMismatch("size"));
        }
        if *blake3::hash(&self.ciphertext).as_bytes() != envelope.ciphertext_hash {
            return Err(EnvelopeError::CiphertextMismatch("hash"));
        }
        Ok(envelope)
    }

    /// The sender name the envelope claims, before any check, so the host
    /// knows which name to resolve.
    pub fn sender_name(&self) -> Result<Name, EnvelopeError> {
        #[derive(Deserialize)]
        struct NameOnly {
            sender_name: Name,
        }
        rmp_serde::from_slice::<NameOnly>(&self.envelope.body)
            .map(|n| n.sender_name)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The recipient the envelope claims, before any check, so the host
    /// knows which mailbox the delivery is for (and `verify_delivery`
    /// then checks it against that mailbox).
    pub fn recipient(&self) -> Result<UserId, EnvelopeError> {
        #[derive(Deserialize)]
        struct RecipientOnly {
            recipient: UserId,
        }
        rmp_serde::from_slice::<RecipientOnly>(&self.envelope.body)
            .map(|r| r.recipient)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The mail's id in its recipient's mailbox.
    pub fn mail_id(envelope: &MailEnvelope) -> String {
        let mut h = blake3::Hasher::new_derive_key(MAIL_ID_CONTEXT);
        h.update(&envelope.ciphertext_hash);
        h.finalize().as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The bytes a host stores: [`SEALED_BLOB_MAGIC`] then the encoding.
    pub fn to_blob(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = SEALED_BLOB_MAGIC.to_vec();
        rmp_serde::encode::write_named(&mut out, self)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Ok(out)
    }

    /// Whether a stored blob is a sealed mail (and not a plaintext message
    /// stored before sealing).
    pub fn is_blob(bytes: &[u8]) -> bool {
        bytes.starts_with(SEALED_BLOB_MAGIC)
    }

    /// Decodes [`SealedMail::to_blob`] output; checks nothing else.
    pub fn from_blob(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let Some(rest) = bytes.strip_prefix(SEALED_BLOB_MAGIC.as_slice()) else {
            return Err(EnvelopeError::Malformed("no sealed-mail magic".into()));
        };
        rmp_serde::from_slice(rest).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }
}

/// The most bytes an envelope's encoding may take: its attachments and
/// wrapped key at their limits, with room for the rest.
pub const ENVELOPE_BODY_BYTES_MAX: usize =
    ENVELOPE_ATTACHMENTS_MAX * 48 + WRAPPED_KEY_BYTES_MAX + 1024;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn mail(sender: &KeyPair, recipient: UserId, at_ms: i64) -> SealedMail {
        let ciphertext = b"opaque ciphertext".to_vec();
        let envelope = MailEnvelope {
            sender_name: Name::new("alice").unwrap(),
            recipient,
            ciphertext_hash: *blake3::hash(&ciphertext).as_bytes(),
            ciphertext_bytes: ciphertext.len() as u64,
            attachments: vec![EnvelopeAttachment {
                id: [7; 32],
                ciphertext_bytes: 99,
            }],
            wrapped_key: vec![1; 120],
        };
        SealedMail::seal(sender, &envelope, ciphertext, at_ms).unwrap()
    }

    #[test]
    fn a_fresh_mail_for_this_mailbox_is_taken() {
        let (alice, bob) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let m = mail(&alice, bob.user_id(), NOW);
        let env = m
            .verify_delivery(bob.user_id(), alice.user_id(), NOW)
            .unwrap();
        assert_eq!(env.recipient, bob.user_id());
        assert_eq!(m.sender_name().unwrap().as_str(), "alice");
        assert_eq!(m.recipient().unwrap(), bob.user_id());
        let back = SealedMail::from_blob(&m.to_blob().unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(SealedMail::is_blob(&m.to_blob().unwrap()));
        assert!(!SealedMail::is_blob(b"From: a@dem\r\n\r\nhi"));
    }

    #[test]
    fn replays_to_another_mailbox_or_later_are_refused() {
        let (alice, bob, carol) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let m = mail(&alice, bob.user_id(), NOW);
        assert!(matches!(
            m.verify_delivery(carol.user_id(), alice.user_id(), NOW),
            Err(EnvelopeError::WrongRecipient { .. })
        ));
        let hour_later = NOW + 60 * 60 * 1000;
        let err = m
            .verify_delivery(bob.user_id(), alice.user_id(), hour_later)
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("seal it again"));
        assert!(matches!(
            mail(&alice, bob.user_id(), NOW + 10 * 60 * 1000).verify_delivery(
                bob.user_id(),
                alice.user_id(),
                NOW
            ),
            Err(EnvelopeError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn forgeries_are_refused() {
        let (alice, bob, mallory) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        // Mallory seals in Alice's name: the key dispatch knows for
        // "alice" is Alice's, not Mallory's.
        let forged = mail(&mallory, bob.user_id(), NOW);
        assert!(matches!(
            forged.verify_delivery(bob.user_id(), alice.user_id(), NOW),
            Err(EnvelopeError::WrongSender { .. })
        ));
        // A host swaps the ciphertext, or edits the envelope.
        let mut m = mail(&alice, bob.user_id(), NOW);
        m.ciphertext[0] ^= 1;
        assert!(matches!(
            m.verify_stored(),
            Err(EnvelopeError::CiphertextMismatch("hash"))
        ));
        let mut m = mail(&alice, bob.user_id(), NOW);
        let last = m.envelope.body.len() - 1;
        m.envelope.body[last] ^= 1;
        assert!(matches!(
            m.verify_stored(),
            Err(EnvelopeError::Signature(_))
        ));
        assert!(SealedMail::from_blob(b"garbage").is_err());
    }

    #[test]
    fn ids_follow_the_ciphertext() {
        let (alice, bob, carol) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let to_bob = mail(&alice, bob.user_id(), NOW).verify_stored().unwrap();
        let to_bob_again = mail(&alice, bob.user_id(), NOW + 5)
            .verify_stored()
            .unwrap();
        let to_carol = mail(&alice, carol.user_id(), NOW).verify_stored().unwrap();
        assert_eq!(
            SealedMail::mail_id(&to_bob),
            SealedMail::mail_id(&to_bob_again)
        );
        assert_eq!(SealedMail::mail_id(&to_bob), SealedMail::mail_id(&to_carol));
        let mut other = to_bob.clone();
        other.ciphertext_hash[0] ^= 1;
        assert_ne!(SealedMail::mail_id(&to_bob), SealedMail::mail_id(&other));
        assert_eq!(SealedMail::mail_id(&to_bob).len(), 32);
    }
}
