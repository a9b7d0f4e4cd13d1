//! `MailSeal`: the sender's signature over a mail's content, and the content
//! digest it signs.
//!
//! The sender's client seals each outgoing mail with the sender's user key;
//! the recipient's host recomputes the digest from the mail as received and
//! refuses it if the seal does not match, so mail cannot be forged in another
//! user's name or altered on the way.
//!
//! A mail is an RFC 5322 message kept as its exact bytes. Large MIME part
//! bodies travel as floating attachments, cut out verbatim: what a host
//! receives and stores is the message without them (the *stored* bytes) and
//! the list of attachment references that say where each goes back. The
//! digest covers both: the BLAKE3 of the stored bytes, which covers every
//! header (From, To, Subject...) and every inline part, and each reference
//! with its splice position, so neither the message nor the way it is
//! rebuilt can change without breaking the seal.
//!
//! The digest is BLAKE3 in derive-key mode (its own context string, so it can
//! never equal any other BLAKE3 use in DEM) over every field in a fixed
//! order, each string or byte field prefixed by its u64 length and each list
//! by its u64 count, an optional field by a 0/1 byte. That makes the encoding
//! unambiguous.
//!
//! The mail id used for idempotent delivery is derived from the digest, so a
//! retried delivery of the same mail lands on the same id.

use serde::{Deserialize, Serialize};

use super::id::UserId;
use super::keys::{KeyPair, SignatureError, verify_signature};

/// The BLAKE3 derive-key context of the mail digest. Version 2: the content
/// became an RFC 5322 message's stored bytes.
const DIGEST_CONTEXT: &str = "dem/2 mail-content digest";
/// The domain tag of the seal signature.
const SEAL_TAG: &[u8] = b"dem/1 mail-seal\0";

/// A floating attachment as the mail references it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// BLAKE3 of the content, lower-case hex.
    pub hash: String,
    /// File name shown to the user.
    pub name: String,
    /// Media type, e.g. `application/pdf`.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Where the content goes back into the stored message.
    pub splice_at: Option<u64>,
}

/// Every field of a mail the seal covers, borrowed from wherever the mail is.
#[derive(Clone, Copy, Debug)]
pub struct MailContent<'a> {
    /// The sending user's key.
    pub from_user: &'a UserId,
    /// BLAKE3 of the stored message bytes.
    pub message_hash: &'a [u8; 32],
    /// Length of the stored message bytes.
    pub message_size_bytes: u64,
    /// Attachment references, in order.
    pub attachments: &'a [AttachmentRef],
}

/// The 32-byte content digest of a mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailDigest(pub [u8; 32]);

/// Hashes a mail's content (see the module doc for the encoding).
pub fn mail_digest(mail: &MailContent<'_>) -> MailDigest {
    let mut h = Hasher(blake3::Hasher::new_derive_key(DIGEST_CONTEXT));
    h.bytes(&mail.from_user.0);
    h.bytes(mail.message_hash);
    h.bytes(&mail.message_size_bytes.to_be_bytes());
    h.count(mail.attachments.len());
    for a in mail.attachments {
        h.str(&a.hash);
        h.str(&a.name);
        h.str(&a.media_type);
        h.bytes(&a.size_bytes.to_be_bytes());
        match a.splice_at {
            None => h.tag(0),
            Some(at) => {
                h.tag(1);
                h.bytes(&at.to_be_bytes());
            }
        }
    }
    MailDigest(*h.0.finalize().as_bytes())
}

/// The delivery id of a mail: the first 16 digest bytes as lower-case hex
/// (32 characters). 128 bits keep accidental collisions out of reach.
pub fn mail_id(digest: &MailDigest) -> String {
    digest.0[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Length-prefixing wrapper so every field is framed the same way.
struct Hasher(blake3::Hasher);

impl Hasher {
    fn tag(&mut self, t: u8) {
        self.0.update(&[t]);
    }
    fn count(&mut self, n: usize) {
        self.0.update(&(n as u64).to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.update(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Why a sealed mail was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The seal is by a different user than the mail's `from_user`.
    #[error("mail claims to be from {claimed:?} but is sealed by {sealer:?}")]
    WrongSender {
        /// `from_user` in the mail.
        claimed: UserId,
        /// Who the seal says sealed it.
        sealer: UserId,
    },
    /// The mail's content does not hash to the sealed digest: it was altered.
    #[error("mail content does not match its seal (altered in transit)")]
    Tampered,
    /// The sender key is not a valid Ed25519 public key.
    #[error("the sender key is not a valid Ed25519 public key")]
    MalformedKey,
    /// The signature does not match: the seal is forged.
    #[error("the mail seal signature is forged or corrupt")]
    BadSignature,
}

impl From<SignatureError> for SealError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::MalformedKey => Self::MalformedKey,
            SignatureError::BadSignature => Self::BadSignature,
        }
    }
}

/// A sender's signature over a mail's digest; travels with the mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSeal {
    /// The sending user.
    pub sender: UserId,
    /// The digest that was signed (lets the recipient tell altered content
    /// from a forged signature).
    pub digest: MailDigest,
    /// Ed25519 over `SEAL_TAG ‖ sender ‖ digest`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl MailSeal {
    /// Seals `mail` with the sender's key. The caller must have set
    /// `mail.from_user` to `key`'s user id, or the seal will not verify.
    pub fn seal(key: &KeyPair, mail: &MailContent<'_>) -> Self {
        let sender = key.user_id();
        let digest = mail_digest(mail);
        let signature = key.sign(&seal_bytes(&sender, &digest));
        Self {
            sender,
            digest,
            signature,
        }
    }

    /// Checks the seal against the mail as received; returns the digest (for
    /// [`mail_id`]) if the mail is authentic and unaltered.
    pub fn verify(&self, mail: &MailContent<'_>) -> Result<MailDigest, SealError> {
        if *mail.from_user != self.sender {
            return Err(SealError::WrongSender {
                claimed: *mail.from_user,
                sealer: self.sender,
            });
        }
        let digest = mail_digest(mail);
        if digest != self.digest {
            return Err(SealError::Tampered);
        }
        verify_signature(
            &self.sender.0,
            &seal_bytes(&self.sender, &digest),
            &self.signature,
        )?;
        Ok(digest)
    }
}

fn seal_bytes(sender: &UserId, digest: &MailDigest) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_TAG.len() + 64);
    out.extend_from_slice(SEAL_TAG);
    out.extend_from_slice(&sender.0);
    out.extend_from_slice(&digest.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        from_user: UserId,
        message: Vec<u8>,
        attachments: Vec<AttachmentRef>,
    }

    impl Owned {
        fn sample(from_user: UserId) -> Self {
            Self {
                from_user,
                message: b"From: alice@dem\r\nTo: bob@dem\r\nSubject: lunch\r\n\r\nnoon?\r\n"
                    .to_vec(),
                attachments: vec![AttachmentRef {
                    hash: "ab".repeat(32),
                    name: "menu.pdf".into(),
                    media_type: "application/pdf".into(),
                    size_bytes: 1234,
                    splice_at: Some(40),
                }],
            }
        }

        fn with<R>(&self, f: impl FnOnce(&MailContent<'_>) -> R) -> R {
            let hash = *blake3::hash(&self.message).as_bytes();
            f(&MailContent {
                from_user: &self.from_user,
                message_hash: &hash,
                message_size_bytes: self.message.len() as u64,
                attachments: &self.attachments,
            })
        }
    }

    #[test]
    fn seal_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let key = KeyPair::generate()?;
        let mail = Owned::sample(key.user_id());
        let seal = mail.with(|c| MailSeal::seal(&key, c));
        let back: MailSeal = rmp_serde::from_slice(&rmp_serde::to_vec_named(&seal)?)?;
        assert_eq!(mail.with(|c| back.verify(c)), Ok(mail.with(mail_digest)));
        Ok(())
    }

    #[test]
    fn changing_any_field_breaks_the_seal() -> Result<(), Box<dyn std::error::Error>> {
        let key = KeyPair::generate()?;
        let base = Owned::sample(key.user_id());
        let seal = base.with(|c| MailSeal::seal(&key, c));
        type Edit = (&'static str, fn(&mut Owned));
        let edits: Vec<Edit> = vec![
            ("one message byte", |m| m.message[6] ^= 1),
            ("message truncated", |m| {
                m.message.pop();
            }),
            ("message grown", |m| m.message.push(b'x')),
            ("attachment hash", |m| {
                m.attachments[0].hash.replace_range(..1, "c")
            }),
            ("attachment name", |m| m.attachments[0].name.push('x')),
            ("attachment type", |m| m.attachments[0].media_type.push('x')),
            ("attachment size", |m| m.attachments[0].size_bytes += 1),
            ("splice moved", |m| m.attachments[0].splice_at = Some(41)),
            ("splice dropped", |m| m.attachments[0].splice_at = None),
            ("attachment dropped", |m| m.attachments.clear()),
        ];
        let mut digests = vec![base.with(mail_digest)];
        for (what, edit) in edits {
            let mut m = Owned::sample(key.user_id());
            edit(&mut m);
            assert_eq!(
                m.with(|c| seal.verify(c)),
                Err(SealError::Tampered),
                "{what}"
            );
            let d = m.with(mail_digest);
            assert!(!digests.contains(&d), "{what} collides");
            digests.push(d);
        }
        Ok(())
    }

    #[test]
    fn forged_seals_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let alice = KeyPair::generate()?;
        let mallory = KeyPair::generate()?;
        let mail = Owned::sample(alice.user_id());
        // Mallory seals a mail claiming to be from alice.
        let forged = mail.with(|c| MailSeal::seal(&mallory, c));
        assert!(matches!(
            mail.with(|c| forged.verify(c)),
            Err(SealError::WrongSender { .. })
        ));
        // ...and relabels her seal as alice's.
        let mut relabelled = forged.clone();
        relabelled.sender = alice.user_id();
        assert_eq!(
            mail.with(|c| relabelled.verify(c)),
            Err(SealError::BadSignature)
        );
        // A good seal with a flipped signature bit.
        let mut bad = mail.with(|c| MailSeal::seal(&alice, c));
        bad.signature[0] ^= 1;
        assert_eq!(mail.with(|c| bad.verify(c)), Err(SealError::BadSignature));
        // Digest and content both swapped to another mail: signature fails.
        let mut other = Owned::sample(alice.user_id());
        other.message.extend_from_slice(b"midnight");
        let mut swapped = mail.with(|c| MailSeal::seal(&alice, c));
        swapped.digest = other.with(mail_digest);
        assert_eq!(
            other.with(|c| swapped.verify(c)),
            Err(SealError::BadSignature)
        );
        Ok(())
    }

    #[test]
    fn mail_id_is_stable() {
        let mail = Owned::sample(UserId([9; 32]));
        let id = mail_id(&mail.with(mail_digest));
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Pinned: the encoding is a wire format; changing it re-ids all mail.
        assert_eq!(id, PINNED_ID);
    }

    const PINNED_ID: &str = "95b83378a9a107d15d9430d2a3b489cb";
}
