//! Sealing a whole mail for its recipients, and opening it as its owner.
//!
//! The sender's client seals the stored RFC 5322 message together with
//! what puts its floating attachments back (each attachment's id, its own
//! key, name, type, sizes and splice position) into one ciphertext under a
//! fresh content key, then wraps that key to each recipient. Each
//! recipient gets a [`SealedMail`] of its own (the envelope names the
//! recipient and carries only their wrapped key), and all share the one
//! ciphertext.
//!
//! The content's associated data names the sender, and each wrapped key's
//! HPKE info names the ciphertext's hash and the recipient, so a host can
//! neither move a wrapped key to another mail nor pass one sender's
//! ciphertext off as another's. Opening re-checks the sender's signature
//! and that the envelope's attachment list is the one inside, so the
//! owner trusts no host for any of it.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use dem_identity::{
    EnvelopeAttachment, EnvelopeError, KeyPair, MailEnvelope, Name, SealedMail, SignError, UserId,
};

use crate::content::{ContentKey, open_content, seal_content};
use crate::error::{OpenError, SealError};
use crate::keyring::Keyring;
use crate::keys::EncryptionPublicKey;
use crate::wrap::{WrappedKey, unwrap_key, wrap_key};

/// The associated-data prefix of a mail's content.
const CONTENT_AAD: &[u8] = b"dem/1 mail-content\0";
/// The HPKE info prefix of a mail's wrapped keys (after the wrap's own).
const WRAP_CONTEXT: &[u8] = b"dem/1 mail-key\0";
/// The most recipients one seal may have (To, Cc and the sender).
pub const RECIPIENTS_MAX: usize = 1024;

/// A floating attachment as the sealed content names it, with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentAttachment {
    /// BLAKE3 of the attachment's ciphertext: its id.
    #[serde(with = "serde_bytes")]
    pub id: [u8; 32],
    /// The attachment's own content key.
    #[serde(with = "serde_bytes")]
    pub key: [u8; 32],
    /// File name shown to the user.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size of the plaintext.
    pub plaintext_bytes: u64,
    /// Size of the ciphertext.
    pub ciphertext_bytes: u64,
    /// Where the plaintext goes back into the stored message.
    pub splice_at: Option<u64>,
}

/// What a mail's ciphertext holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailContents {
    /// The stored RFC 5322 message (large part bodies cut out).
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// The cut parts, ascending by `splice_at`.
    pub attachments: Vec<ContentAttachment>,
}

impl Drop for ContentAttachment {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Someone a mail is sealed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Whose mailbox takes it.
    pub user: UserId,
    /// Their current encryption key, from their signed name claim.
    pub key: EncryptionPublicKey,
}

/// Why a mail could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealMailError {
    /// Encrypting or wrapping failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Signing the envelope failed.
    #[error("signing the envelope: {0}")]
    Sign(#[from] SignError),
    /// The content or a wrapped key could not be encoded.
    #[error("encoding the mail: {0}")]
    Encoding(String),
    /// No recipient, or too many.
    #[error("a mail is sealed to 1 to {RECIPIENTS_MAX} recipients, not {0}")]
    Recipients(usize),
}

/// Why the owner could not open a mail.
#[derive(Debug, thiserror::Error)]
pub enum OpenMailError {
    /// The envelope does not hold (signature, ciphertext, limits).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Sealed to someone else.
    #[error("this mail is sealed for {sealed_for}, not for you ({owner})")]
    NotForYou {
        /// The envelope's recipient.
        sealed_for: UserId,
        /// Who tried to open it.
        owner: UserId,
    },
    /// The keyring lacks the key the mail was sealed to.
    #[error(
        "this mail is sealed to encryption key {0}, which this keyring does not hold (was it made in another home? `dem id import` brings keys over)"
    )]
    KeyNotInKeyring(String),
    /// Decryption failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The decrypted content does not decode or disagrees with the
    /// envelope.
    #[error("the mail's content is damaged: {0}")]
    Content(String),
}

/// Seals `contents` from `sender` (registered as `sender_name`) to every
/// recipient at `now_ms`: one [`SealedMail`] per recipient, in order, all
/// sharing one ciphertext.
pub fn seal_mail(
    sender: &KeyPair,
    sender_name: &Name,
    contents: &MailContents,
    recipients: &[Recipient],
    now_ms: i64,
) -> Result<Vec<SealedMail>, SealMailError> {
    if recipients.is_empty() || recipients.len() > RECIPIENTS_MAX {
        return Err(SealMailError::Recipients(recipients.len()));
    }
    let plain = Zeroizing::new(
        rmp_serde::to_vec_named(contents).map_err(|e| SealMailError::Encoding(e.to_string()))?,
    );
    let key = ContentKey::generate()?;
    let ciphertext = seal_content(&key, &content_aad(&sender.user_id()), &plain)?;
    let ciphertext_hash = *blake3::hash(&ciphertext).as_bytes();
    let attachments: Vec<EnvelopeAttachment> = contents
        .attachments
        .iter()
        .map(|a| EnvelopeAttachment {
            id: a.id,
            ciphertext_bytes: a.ciphertext_bytes,
        })
        .collect();
    let mut out = Vec::with_capacity(recipients.len());
    for r in recipients {
        let wrapped = wrap_key(&key, &r.key, &wrap_context(&ciphertext_hash, &r.user))?;
        let envelope = MailEnvelope {
            sender_name: sender_name.clone(),
            recipient: r.user,
            ciphertext_hash,
            ciphertext_bytes: ciphertext.len() as u64,
            attachments: attachments.clone(),
            wrapped_key: rmp_serde::to_vec_named(&wrapped)
                .map_err(|e| SealMailError::Encoding(e.to_string()))?,
        };
        out.push(SealedMail::seal(
            sender,
            &envelope,
            ciphertext.clone(),
            now_ms,
        )?);
    }
    Ok(out)
}

/// Opens a mail as `owner`, with the keys of `keyring`: checks the
/// sender's signature and the ciphertext, unwraps the content key with
/// whichever key it was sealed to (old ones too), decrypts, and checks
/// the attachments inside against the envelope's.
pub fn open_mail(
    mail: &SealedMail,
    owner: UserId,
    keyring: &Keyring,
) -> Result<(MailEnvelope, MailContents), OpenMailError> {
    let envelope = mail.verify_stored()?;
    if envelope.recipient != owner {
        return Err(OpenMailError::NotForYou {
            sealed_for: envelope.recipient,
            owner,
        });
    }
    let wrapped: WrappedKey = rmp_serde::from_slice(&envelope.wrapped_key)
        .map_err(|e| OpenMailError::Content(format!("the wrapped key does not decode: {e}")))?;
    let Some(pair) = keyring.find(&wrapped.to) else {
        return Err(OpenMailError::KeyNotInKeyring(wrapped.to.to_hex()));
    };
    let key = unwrap_key(
        &wrapped,
        pair,
        &wrap_context(&envelope.ciphertext_hash, &envelope.recipient),
    )?;
    let plain = Zeroizing::new(open_content(
        &key,
        &content_aad(&mail.envelope.signer),
        &mail.ciphertext,
    )?);
    let contents: MailContents = rmp_serde::from_slice(&plain)
        .map_err(|e| OpenMailError::Content(format!("it does not decode: {e}")))?;
    let inside: Vec<EnvelopeAttachment> = contents
        .attachments
        .iter()
        .map(|a| EnvelopeAttachment {
            id: a.id,
            ciphertext_bytes: a.ciphertext_bytes,
        })
        .collect();
    if inside != envelope.attachments {
        return Err(OpenMailError::Content(
            "its attachments differ from the envelope's".into(),
        ));
    }
    Ok((envelope, contents))
}

fn content_aad(sender: &UserId) -> Vec<u8> {
    [CONTENT_AAD, &sender.0].concat()
}

fn wrap_context(ciphertext_hash: &[u8; 32], recipient: &UserId) -> Vec<u8> {
    [WRAP_CONTEXT, ciphertext_hash, &recipient.0].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    struct User {
        key: KeyPair,
        ring: Keyring,
    }

    fn user() -> User {
        User {
            key: KeyPair::generate().unwrap(),
            ring: Keyring::generate(NOW).unwrap(),
        }
    }

    fn to(u: &User) -> Recipient {
        Recipient {
            user: u.key.user_id(),
            key: u.ring.current().public(),
        }
    }

    fn contents() -> MailContents {
        MailContents {
            message: b"From: alice@dem\r\nSubject: canary-word\r\n\r\nbody".to_vec(),
            attachments: vec![ContentAttachment {
                id: [3; 32],
                key: [4; 32],
                name: "plan.pdf".into(),
                media_type: "application/pdf".into(),
                plaintext_bytes: 10,
                ciphertext_bytes: 99,
                splice_at: Some(20),
            }],
        }
    }

    #[test]
    fn each_recipient_opens_its_own_copy_and_hosts_see_no_content() {
        let (alice, bob, carol) = (user(), user(), user());
        let name = Name::new("alice").unwrap();
        let mails =
            seal_mail(&alice.key, &name, &contents(), &[to(&bob), to(&carol)], NOW).unwrap();
        assert_eq!(mails.len(), 2);
        assert_eq!(mails[0].ciphertext, mails[1].ciphertext);
        for (m, u) in mails.iter().zip([&bob, &carol]) {
            m.verify_delivery(u.key.user_id(), alice.key.user_id(), NOW)
                .unwrap();
            let (env, back) = open_mail(m, u.key.user_id(), &u.ring).unwrap();
            assert_eq!(back, contents());
            assert_eq!(env.sender_name, name);
            let blob = m.to_blob().unwrap();
            for secret in [&b"canary-word"[..], b"plan.pdf", b"application/pdf"] {
                assert!(
                    !blob.windows(secret.len()).any(|w| w == secret),
                    "{:?} in the stored blob",
                    String::from_utf8_lossy(secret)
                );
            }
        }
        // Bob cannot open Carol's copy, even with his own keys.
        assert!(matches!(
            open_mail(&mails[1], bob.key.user_id(), &bob.ring),
            Err(OpenMailError::NotForYou { .. })
        ));
    }

    #[test]
    fn old_mail_opens_after_a_rotation_and_new_mail_uses_the_new_key() {
        let (alice, mut bob) = (user(), user());
        let name = Name::new("alice").unwrap();
        let old = seal_mail(&alice.key, &name, &contents(), &[to(&bob)], NOW).unwrap();
        bob.ring.rotate(NOW + 1).unwrap();
        let new = seal_mail(&alice.key, &name, &contents(), &[to(&bob)], NOW + 2).unwrap();
        for m in [&old[0], &new[0]] {
            open_mail(m, bob.key.user_id(), &bob.ring).unwrap();
        }
        let wrapped: WrappedKey =
            rmp_serde::from_slice(&new[0].verify_stored().unwrap().wrapped_key).unwrap();
        assert_eq!(wrapped.to, bob.ring.current().public());
        // A home without the old key says so.
        let fresh = Keyring::generate(NOW).unwrap();
        let err = open_mail(&old[0], bob.key.user_id(), &fresh).unwrap_err();
        assert!(matches!(err, OpenMailError::KeyNotInKeyring(_)), "{err}");
    }

    #[test]
    fn tampering_fails_with_a_clear_error() {
        let (alice, bob, carol) = (user(), user(), user());
        let name = Name::new("alice").unwrap();
        let mails =
            seal_mail(&alice.key, &name, &contents(), &[to(&bob), to(&carol)], NOW).unwrap();
        // A host flips a ciphertext byte: the envelope's hash catches it.
        let mut m = mails[0].clone();
        m.ciphertext[40] ^= 1;
        assert!(matches!(
            open_mail(&m, bob.key.user_id(), &bob.ring),
            Err(OpenMailError::Envelope(EnvelopeError::CiphertextMismatch(
                _
            )))
        ));
        // A host moves Carol's wrapped key into Bob's envelope: it would
        // need to re-sign the envelope, and cannot.
        let mut m = mails[0].clone();
        m.envelope.body = mails[1].envelope.body.clone();
        assert!(matches!(
            open_mail(&m, bob.key.user_id(), &bob.ring),
            Err(OpenMailError::Envelope(EnvelopeError::Signature(_)))
        ));
        // A sender who alters a wrapped key signs it, but it fails to open.
        let env = mails[0].verify_stored().unwrap();
        let mut wrapped: WrappedKey = rmp_serde::from_slice(&env.wrapped_key).unwrap();
        let last = wrapped.wrapped.len() - 1;
        wrapped.wrapped[last] ^= 1;
        let bad = MailEnvelope {
            wrapped_key: rmp_serde::to_vec_named(&wrapped).unwrap(),
            ..env
        };
        let m = SealedMail::seal(&alice.key, &bad, mails[0].ciphertext.clone(), NOW).unwrap();
        let err = open_mail(&m, bob.key.user_id(), &bob.ring).unwrap_err();
        assert!(
            matches!(err, OpenMailError::Open(OpenError::Authentication)),
            "{err}"
        );
    }

    #[test]
    fn another_sender_cannot_re_envelope_a_ciphertext() {
        let (alice, bob, mallory) = (user(), user(), user());
        let mails = seal_mail(
            &alice.key,
            &Name::new("alice").unwrap(),
            &contents(),
            &[to(&bob)],
            NOW,
        )
        .unwrap();
        // Mallory signs Alice's envelope (and so her ciphertext) as his own.
        let env = mails[0].verify_stored().unwrap();
        let env = MailEnvelope {
            sender_name: Name::new("mallory").unwrap(),
            ..env
        };
        let m = SealedMail::seal(&mallory.key, &env, mails[0].ciphertext.clone(), NOW).unwrap();
        let err = open_mail(&m, bob.key.user_id(), &bob.ring).unwrap_err();
        assert!(
            matches!(err, OpenMailError::Open(OpenError::Authentication)),
            "{err}"
        );
    }

    #[test]
    fn recipient_count_is_bounded() {
        let alice = user();
        assert!(matches!(
            seal_mail(
                &alice.key,
                &Name::new("alice").unwrap(),
                &contents(),
                &[],
                NOW
            ),
            Err(SealMailError::Recipients(0))
        ));
    }
}
