//! `MailSeal`: the sender's signature over a mail's content, and the content
//! digest it signs.
//!
//! The sender's host seals each outgoing mail with the sender's user key; the
//! recipient's host recomputes the digest from the mail as received and
//! refuses it if the seal does not match, so mail cannot be forged in another
//! user's name or altered on the way.
//!
//! The digest is BLAKE3 in derive-key mode (its own context string, so it can
//! never equal any other BLAKE3 use in DEM) over every field in a fixed
//! order, each string or byte field prefixed by its u64 length and each list
//! by its u64 count, an optional field by a 0/1 byte. That makes the encoding
//! unambiguous: no two different mails hash the same bytes (moving text
//! between subject and body, or splitting a recipient in two, changes it).
//!
//! The mail id used for idempotent delivery is derived from the digest, so a
//! retried delivery of the same mail lands on the same id.

use serde::{Deserialize, Serialize};

use super::id::UserId;
use super::keys::{KeyPair, SignatureError, verify_signature};

/// The BLAKE3 derive-key context of the mail digest.
const DIGEST_CONTEXT: &str = "dem/1 mail-content digest";
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
}

/// Every field of a mail the seal covers, borrowed from wherever the mail is.
#[derive(Clone, Copy, Debug)]
pub struct MailContent<'a> {
    /// The sending user's key.
    pub from_user: &'a UserId,
    /// The `From` address as shown, e.g. `alice@dem`.
    pub from_addr: &'a str,
    /// `To` recipients, in order.
    pub to: &'a [String],
    /// `Cc` recipients, in order.
    pub cc: &'a [String],
    /// Subject line.
    pub subject: &'a str,
    /// Date by the sender's clock, ms since the Unix epoch.
    pub date_ms: i64,
    /// `Message-ID`.
    pub message_id: &'a str,
    /// `In-Reply-To`, if a reply.
    pub in_reply_to: Option<&'a str>,
    /// Other headers as (name, value), in order.
    pub headers: &'a [(String, String)],
    /// The body text.
    pub body: &'a str,
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
    h.str(mail.from_addr);
    h.strs(mail.to);
    h.strs(mail.cc);
    h.str(mail.subject);
    h.bytes(&mail.date_ms.to_be_bytes());
    h.str(mail.message_id);
    match mail.in_reply_to {
        None => h.tag(0),
        Some(id) => {
            h.tag(1);
            h.str(id);
        }
    }
    h.count(mail.headers.len());
    for (name, value) in mail.headers {
        h.str(name);
        h.str(value);
    }
    h.str(mail.body);
    h.count(mail.attachments.len());
    for a in mail.attachments {
        h.str(&a.hash);
        h.str(&a.name);
        h.str(&a.media_type);
        h.bytes(&a.size_bytes.to_be_bytes());
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
    fn strs(&mut self, list: &[String]) {
        self.count(list.len());
        for s in list {
            self.str(s);
        }
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
        from_addr: String,
        to: Vec<String>,
        cc: Vec<String>,
        subject: String,
        date_ms: i64,
        message_id: String,
        in_reply_to: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
        attachments: Vec<AttachmentRef>,
    }

    impl Owned {
        fn sample(from_user: UserId) -> Self {
            Self {
                from_user,
                from_addr: "alice@dem".into(),
                to: vec!["bob@dem".into(), "carol@dem".into()],
                cc: vec!["dave@dem".into()],
                subject: "lunch".into(),
                date_ms: 1_700_000_000_000,
                message_id: "<1@dem>".into(),
                in_reply_to: Some("<0@dem>".into()),
                headers: vec![("X-Mood".into(), "hungry".into())],
                body: "noon?".into(),
                attachments: vec![AttachmentRef {
                    hash: "ab".repeat(32),
                    name: "menu.pdf".into(),
                    media_type: "application/pdf".into(),
                    size_bytes: 1234,
                }],
            }
        }

        fn content(&self) -> MailContent<'_> {
            MailContent {
                from_user: &self.from_user,
                from_addr: &self.from_addr,
                to: &self.to,
                cc: &self.cc,
                subject: &self.subject,
                date_ms: self.date_ms,
                message_id: &self.message_id,
                in_reply_to: self.in_reply_to.as_deref(),
                headers: &self.headers,
                body: &self.body,
                attachments: &self.attachments,
            }
        }
    }

    #[test]
    fn seal_round_trip() {
        let key = KeyPair::generate().unwrap();
        let mail = Owned::sample(key.user_id());
        let seal = MailSeal::seal(&key, &mail.content());
        let back: MailSeal =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&seal).unwrap()).unwrap();
        assert_eq!(
            back.verify(&mail.content()),
            Ok(mail_digest(&mail.content()))
        );
    }

    #[test]
    fn changing_any_field_breaks_the_seal() {
        let key = KeyPair::generate().unwrap();
        let base = Owned::sample(key.user_id());
        let seal = MailSeal::seal(&key, &base.content());
        type Edit = (&'static str, fn(&mut Owned));
        let edits: Vec<Edit> = vec![
            ("from_addr", |m| m.from_addr.push('x')),
            ("to", |m| m.to[1].push('x')),
            ("to order", |m| m.to.reverse()),
            ("to -> cc", |m| {
                let r = m.to.remove(1);
                m.cc.insert(0, r);
            }),
            ("cc", |m| m.cc.clear()),
            ("subject", |m| m.subject.push('x')),
            ("date_ms", |m| m.date_ms += 1),
            ("message_id", |m| m.message_id.push('x')),
            ("in_reply_to", |m| m.in_reply_to = None),
            ("in_reply_to empty", |m| m.in_reply_to = Some(String::new())),
            ("header name", |m| m.headers[0].0.push('x')),
            ("header value", |m| m.headers[0].1.push('x')),
            ("header split", |m| {
                m.headers[0] = ("X-Mood".into(), "hun".into());
                m.headers.push(("gry".into(), String::new()));
            }),
            ("body", |m| m.body.push('x')),
            ("subject/body boundary", |m| {
                m.subject.push('n');
                m.body.remove(0);
            }),
            ("attachment hash", |m| {
                m.attachments[0].hash.replace_range(..1, "c")
            }),
            ("attachment name", |m| m.attachments[0].name.push('x')),
            ("attachment type", |m| m.attachments[0].media_type.push('x')),
            ("attachment size", |m| m.attachments[0].size_bytes += 1),
            ("attachment dropped", |m| m.attachments.clear()),
        ];
        let mut digests = vec![mail_digest(&base.content())];
        for (what, edit) in edits {
            let mut m = Owned::sample(key.user_id());
            edit(&mut m);
            assert_eq!(
                seal.verify(&m.content()),
                Err(SealError::Tampered),
                "{what}"
            );
            let d = mail_digest(&m.content());
            assert!(!digests.contains(&d), "{what} collides");
            digests.push(d);
        }
    }

    #[test]
    fn forged_seals_are_refused() {
        let alice = KeyPair::generate().unwrap();
        let mallory = KeyPair::generate().unwrap();
        let mail = Owned::sample(alice.user_id());
        // Mallory seals a mail claiming to be from alice.
        let forged = MailSeal::seal(&mallory, &mail.content());
        assert!(matches!(
            forged.verify(&mail.content()),
            Err(SealError::WrongSender { .. })
        ));
        // ...and relabels her seal as alice's.
        let mut relabelled = forged.clone();
        relabelled.sender = alice.user_id();
        assert_eq!(
            relabelled.verify(&mail.content()),
            Err(SealError::BadSignature)
        );
        // A good seal with a flipped signature bit.
        let mut bad = MailSeal::seal(&alice, &mail.content());
        bad.signature[0] ^= 1;
        assert_eq!(bad.verify(&mail.content()), Err(SealError::BadSignature));
        // Digest and content both swapped to another mail: signature fails.
        let mut other = Owned::sample(alice.user_id());
        other.body = "midnight".into();
        let mut swapped = MailSeal::seal(&alice, &mail.content());
        swapped.digest = mail_digest(&other.content());
        assert_eq!(
            swapped.verify(&other.content()),
            Err(SealError::BadSignature)
        );
    }

    #[test]
    fn mail_id_is_stable() {
        let mail = Owned::sample(UserId([9; 32]));
        let d = mail_digest(&mail.content());
        let id = mail_id(&d);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(id, mail_id(&mail_digest(&mail.content())));
        // Pinned: the encoding is a wire format; changing it re-ids all mail.
        assert_eq!(id, PINNED_ID);
    }

    const PINNED_ID: &str = "ee016c6cd297de37e0ff1afed01e2527";
}
