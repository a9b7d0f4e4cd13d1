//! The host's checks on what peers send, sans-IO: owner calls, create
//! orders, plugin uploads, signed mail and mail sealed end to end. Every function takes the clock
//! (and, for mail, the sender key the dispatch unit resolved) as input, so
//! the refusals are unit-tested here without a network.

use crate::mailbox::Request;
use dem_identity::{
    Freshness, HostId, MailDigest, OWNER_CALL, ReplayGuard, SealedMail, Signed, UserId, mail_id,
};
// The mapping from a mail to what its seal covers is the sealing client's
// too, so it lives beside `SignedMail` in dem-proto.
use dem_proto::host::sealed_content as with_content;
use dem_proto::host::{PLUGIN_UPLOAD, PluginUpload, SEALED_CIPHERTEXT_BYTES_MAX};
use dem_proto::{CreateOrder, OwnerCall, SignedMail};

use crate::mailbox::{Incoming, IncomingError};

/// Why a host refused a request before running it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyCallError {
    /// The signature, its freshness or its body is bad.
    #[error("refused: {0}")]
    Envelope(#[from] dem_identity::VerifyError),
    /// The same signed call was seen before.
    #[error("refused: {0}")]
    Replay(#[from] dem_identity::ReplayError),
    /// Signed by someone other than the mailbox's owner.
    #[error("only the owner may {action} this mailbox")]
    NotOwner {
        /// What was attempted (`list-folder`, `delete-mail`, ...).
        action: &'static str,
    },
    /// A create order for another host or signed for another user.
    #[error("refused: {0}")]
    BadOrder(&'static str),
    /// Mail must arrive through `Deliver`, where its seal is checked.
    #[error("refused: deliver mail with `Deliver`, not as an owner call")]
    DeliverAsOwner,
}

/// Why a delivered mail was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyMailError {
    /// The `From` address is not the sender's registered name.
    #[error("refused as forged: From {from:?} is not the address of {name:?}")]
    FromMismatch { from: String, name: String },
    /// The seal does not match the sender's key or the content.
    #[error("refused as forged: {0}")]
    Seal(#[from] dem_identity::SealError),
    /// The message is over a limit or its attachments do not fit it.
    #[error("refused: {0}")]
    Message(#[from] IncomingError),
    /// A sealed mail's envelope does not hold: a bad signature, another
    /// signer than the sender name's key, another recipient, outside the
    /// delivery window, or another ciphertext than the one it names.
    #[error("refused: {0}")]
    Envelope(#[from] dem_identity::EnvelopeError),
    /// A sealed mail's ciphertext is over what a host stores.
    #[error(
        "refused: the sealed mail's ciphertext has {actual_bytes} bytes, more than the {limit_bytes} a host takes"
    )]
    CiphertextTooLarge {
        /// Its size.
        actual_bytes: usize,
        /// [`SEALED_CIPHERTEXT_BYTES_MAX`].
        limit_bytes: usize,
    },
}

// The ciphertext limit is a stored message's, sealed: the two crates'
// copies of the stored limit must agree.
const _: () =
    assert!(dem_proto::host::STORED_MESSAGE_BYTES_MAX == dem_message::limits::STORED_BYTES_MAX);

/// Checks an owner call: signature under `OWNER_CALL`, freshness, replay,
/// and that the signer owns the mailbox named in the signed body.
pub fn owner_call(
    call: &Signed<OwnerCall>,
    now_ms: i64,
    replay: &mut ReplayGuard,
) -> Result<OwnerCall, VerifyCallError> {
    let verified = call.verify(OWNER_CALL, now_ms, Freshness::default())?;
    if verified.signer != verified.body.mailbox {
        return Err(VerifyCallError::NotOwner {
            action: action_of(&verified.body.request),
        });
    }
    if matches!(verified.body.request, Request::Deliver { .. }) {
        return Err(VerifyCallError::DeliverAsOwner);
    }
    // Only after the signature checked out, so forgeries cannot fill it.
    replay.check_verified(&verified, now_ms)?;
    Ok(verified.body)
}

/// Checks a create order: signed by the user it names, for this host.
pub fn create_order(
    order: &Signed<CreateOrder>,
    now_ms: i64,
    host: HostId,
) -> Result<CreateOrder, VerifyCallError> {
    let verified = order.verify(OWNER_CALL, now_ms, Freshness::default())?;
    if verified.signer != verified.body.user {
        return Err(VerifyCallError::BadOrder(
            "a mailbox can only be created by its owner",
        ));
    }
    if verified.body.host != host {
        return Err(VerifyCallError::BadOrder("the order names another host"));
    }
    Ok(verified.body)
}

/// Checks a plugin upload like an owner call.
pub fn plugin_upload(
    upload: &Signed<PluginUpload>,
    now_ms: i64,
    replay: &mut ReplayGuard,
) -> Result<PluginUpload, VerifyCallError> {
    let verified = upload.verify(PLUGIN_UPLOAD, now_ms, Freshness::default())?;
    if verified.signer != verified.body.mailbox {
        return Err(VerifyCallError::NotOwner {
            action: "install plugins in",
        });
    }
    replay.check_verified(&verified, now_ms)?;
    Ok(verified.body)
}

/// Checks a sealed mail against `sender`, the key its `sender_name` is
/// registered to, and parses it. Returns the mail with the id of its
/// content, so delivering the same mail twice files it once.
///
/// The seal comes first: it is one hash of at most the stored limit, and a
/// forgery should cost the host no parse. The From the index shows must be
/// the sender's own address, so no one writes in another's name.
pub fn sealed_mail(signed: &SignedMail, sender: UserId) -> Result<Incoming, VerifyMailError> {
    let digest = digest_checked(signed, sender)?;
    let incoming = Incoming::parse(
        mail_id(&digest),
        signed.message.clone(),
        signed.attachments.clone(),
    )?;
    let from = &incoming.mail.from;
    if !address_of(address_in(from), &signed.sender_name) {
        return Err(VerifyMailError::FromMismatch {
            from: from.chars().take(200).collect(),
            name: signed.sender_name.chars().take(64).collect(),
        });
    }
    Ok(incoming)
}

/// Refuses a sealed mail whose ciphertext is over
/// [`SEALED_CIPHERTEXT_BYTES_MAX`]; a length check, so the host makes it
/// before resolving the sender or hashing anything.
pub fn sealed_size(mail: &SealedMail) -> Result<(), VerifyMailError> {
    if mail.ciphertext.len() > SEALED_CIPHERTEXT_BYTES_MAX {
        return Err(VerifyMailError::CiphertextTooLarge {
            actual_bytes: mail.ciphertext.len(),
            limit_bytes: SEALED_CIPHERTEXT_BYTES_MAX,
        });
    }
    Ok(())
}

/// Checks a mail sealed end to end for `mailbox` against `sender`, the key
/// dispatch resolved for its envelope's sender name, at `now_ms` (the
/// host's clock), and builds what the mailbox takes of it: an index and a
/// filter view made of the envelope alone, and the sealed mail as the
/// blob (see `Incoming::sealed`).
///
/// The size comes first (no hash of an oversize ciphertext), then the
/// envelope's own checks: the delivery window, the signature, the signer,
/// the recipient and the ciphertext's hash and size.
pub fn sealed_envelope(
    mail: &SealedMail,
    mailbox: UserId,
    sender: UserId,
    now_ms: i64,
) -> Result<Incoming, VerifyMailError> {
    sealed_size(mail)?;
    let envelope = mail.verify_delivery(mailbox, sender, now_ms)?;
    Ok(Incoming::sealed(mail, &envelope)?)
}

fn digest_checked(signed: &SignedMail, sender: UserId) -> Result<MailDigest, VerifyMailError> {
    if signed.message.len() > dem_message::limits::STORED_BYTES_MAX {
        return Err(IncomingError::from(dem_message::MessageError::TooLarge {
            what: dem_message::error::WHAT_STORED,
            limit: dem_message::limits::STORED_BYTES_MAX as u64,
            actual: signed.message.len() as u64,
        })
        .into());
    }
    let hash = *blake3::hash(&signed.message).as_bytes();
    Ok(with_content(
        &hash,
        signed.message.len() as u64,
        &signed.attachments,
        &sender,
        |c| signed.seal.verify(c),
    )?)
}

/// The address of a `Name <addr>` display string, or the string itself.
fn address_in(from: &str) -> &str {
    match (from.rfind('<'), from.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => from.trim(),
    }
}

/// `from` is `name` itself or `name@domain`.
fn address_of(from: &str, name: &str) -> bool {
    match from.strip_prefix(name) {
        Some(rest) => rest.is_empty() || rest.starts_with('@'),
        None => false,
    }
}

/// A verb phrase for refusals.
fn action_of(request: &Request) -> &'static str {
    if request.is_mutation() {
        match request {
            Request::DeleteMail { .. } => "delete mail in",
            _ => "change",
        }
    } else {
        "read"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_identity::KeyPair;
    use dem_proto::mail::AttachmentRef;

    fn message(from: &str) -> Vec<u8> {
        format!(
            "From: {from}\r\nTo: bob@dem\r\nSubject: hi\r\nMessage-ID: <m@dem>\r\n\r\nhello\r\n"
        )
        .into_bytes()
    }

    fn seal(key: &KeyPair, message: Vec<u8>) -> SignedMail {
        SignedMail::seal(key, "alice".into(), message, vec![])
    }

    #[test]
    fn genuine_mail_gets_its_content_id() -> Result<(), VerifyMailError> {
        let alice = KeyPair::from_seed(&[1; 32]);
        for from in ["alice@dem", "Alice Liddell <alice@dem>", "alice"] {
            let signed = seal(&alice, message(from));
            let got = sealed_mail(&signed, alice.user_id())?;
            assert_eq!(got.mail.id.len(), 32);
            assert_eq!(got.mail.id, signed.id());
            assert_eq!(got.mail.subject, "hi");
        }
        Ok(())
    }

    #[test]
    fn forged_and_tampered_mail_is_refused() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let mallory = KeyPair::from_seed(&[2; 32]);
        // Mallory seals a mail claiming to be alice's.
        let forged = seal(&mallory, message("alice@dem"));
        assert!(matches!(
            sealed_mail(&forged, alice.user_id()),
            Err(VerifyMailError::Seal(_))
        ));
        // Alice's mail altered on the way.
        let mut tampered = seal(&alice, message("alice@dem"));
        tampered.message[0] ^= 1;
        assert!(sealed_mail(&tampered, alice.user_id()).is_err());
        // An attachment reference moved.
        let mut moved = seal(&alice, message("alice@dem"));
        moved.attachments.push(AttachmentRef {
            hash: "ab".repeat(32),
            name: "x".into(),
            media_type: "text/plain".into(),
            size_bytes: 1,
            splice_at: Some(3),
        });
        assert!(sealed_mail(&moved, alice.user_id()).is_err());
        // A From address of someone else, sealed by alice herself.
        for from in [
            "carol@dem",
            "Alice <carol@dem>",
            "alice@dem <carol@dem>",
            "alicex@dem",
        ] {
            let wrong_from = seal(&alice, message(from));
            assert!(
                matches!(
                    sealed_mail(&wrong_from, alice.user_id()),
                    Err(VerifyMailError::FromMismatch { .. })
                ),
                "{from}"
            );
        }
        // Over the stored limit: refused before any parse.
        let big = seal(
            &alice,
            vec![b'a'; dem_message::limits::STORED_BYTES_MAX + 1],
        );
        assert!(matches!(
            sealed_mail(&big, alice.user_id()),
            Err(VerifyMailError::Message(_))
        ));
    }

    const NOW: i64 = 1_800_000_000_000;
    /// A word only the plaintext holds: it must show nowhere on the host.
    const CANARY: &str = "quokkazanzibar";

    /// A mail sealed by `signer` in alice's name for `to` at `at_ms`. The
    /// host never decrypts, so any bytes do as ciphertext: the plaintext,
    /// scrambled so that the canary is not in it as such.
    fn sealed(signer: &KeyPair, to: UserId, at_ms: i64) -> SealedMail {
        let plaintext =
            format!("From: alice@dem\r\nTo: bob@dem\r\nSubject: {CANARY}\r\n\r\n{CANARY}\r\n");
        let ciphertext: Vec<u8> = plaintext.bytes().map(|b| b ^ 0x5a).collect();
        let envelope = dem_identity::MailEnvelope {
            sender_name: dem_identity::Name::new("alice").unwrap(),
            recipient: to,
            ciphertext_hash: *blake3::hash(&ciphertext).as_bytes(),
            ciphertext_bytes: ciphertext.len() as u64,
            attachments: vec![dem_identity::EnvelopeAttachment {
                id: [0xab; 32],
                ciphertext_bytes: 99,
            }],
            wrapped_key: vec![1; 120],
        };
        SealedMail::seal(signer, &envelope, ciphertext, at_ms).unwrap()
    }

    #[test]
    fn sealed_mail_is_indexed_by_its_envelope_alone() {
        let (alice, bob) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let mail = sealed(&alice, bob.user_id(), NOW - 60_000);
        let got = sealed_envelope(&mail, bob.user_id(), alice.user_id(), NOW).unwrap();
        let envelope = mail.verify_stored().unwrap();
        let blob = mail.to_blob().unwrap();
        let m = &got.mail;
        assert_eq!(m.id, SealedMail::mail_id(&envelope));
        assert_eq!(m.from, "alice@dem");
        assert!(m.to.is_empty() && m.cc.is_empty() && m.subject.is_empty());
        assert_eq!(
            m.date_ms,
            NOW - 60_000,
            "the sending time the sender signed"
        );
        assert!(m.message_id.is_empty() && m.in_reply_to.is_none() && m.references.is_empty());
        assert_eq!(got.message, blob);
        assert!(SealedMail::is_blob(&got.message));
        assert_eq!(m.message, dem_proto::mail::BlobRef::of(&blob));
        assert_eq!(m.size_bytes, blob.len() as u64 + 99);
        assert_eq!(
            m.attachments,
            vec![AttachmentRef {
                hash: "ab".repeat(32),
                name: String::new(),
                media_type: String::new(),
                size_bytes: 99,
                splice_at: None,
            }]
        );
        let v = &got.view;
        assert_eq!(
            (v.id.as_str(), v.from.as_str()),
            (m.id.as_str(), "alice@dem")
        );
        assert!(v.headers.is_empty() && v.body_preview.is_empty() && v.subject.is_empty());
        assert_eq!((v.body_size_bytes, v.attachments.len()), (m.size_bytes, 1));
        // Nothing from the plaintext, anywhere the host keeps or shows.
        let debug = format!("{got:?}").to_lowercase();
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(
            !got.message
                .windows(CANARY.len())
                .any(|w| w == CANARY.as_bytes())
        );
        // The same mail delivered again files under the same id.
        let again = sealed_envelope(&mail, bob.user_id(), alice.user_id(), NOW + 1).unwrap();
        assert_eq!(again.mail.id, m.id);
    }

    #[test]
    fn bad_sealed_mail_is_refused_with_a_reason() {
        let (alice, bob) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let (carol, mallory) = (KeyPair::from_seed(&[3; 32]), KeyPair::from_seed(&[4; 32]));
        let refusal = |mail: &SealedMail, mailbox: &KeyPair, now_ms: i64| match sealed_envelope(
            mail,
            mailbox.user_id(),
            alice.user_id(),
            now_ms,
        ) {
            Ok(_) => panic!("taken"),
            Err(e) => (e.to_string(), e),
        };
        let good = sealed(&alice, bob.user_id(), NOW);
        // Sealed for bob, delivered to carol's mailbox.
        let (text, e) = refusal(&good, &carol, NOW);
        assert!(matches!(
            e,
            VerifyMailError::Envelope(dem_identity::EnvelopeError::WrongRecipient { .. })
        ));
        assert!(
            text.starts_with("refused: ") && text.contains("not for this mailbox"),
            "{text}"
        );
        // Replayed an hour later.
        let (text, e) = refusal(&good, &bob, NOW + 60 * 60 * 1000);
        assert!(matches!(
            e,
            VerifyMailError::Envelope(dem_identity::EnvelopeError::Expired { .. })
        ));
        assert!(text.contains("seal it again"), "{text}");
        // Dated ten minutes ahead of the host's clock.
        let (text, e) = refusal(
            &sealed(&alice, bob.user_id(), NOW + 10 * 60 * 1000),
            &bob,
            NOW,
        );
        assert!(matches!(
            e,
            VerifyMailError::Envelope(dem_identity::EnvelopeError::FromTheFuture { .. })
        ));
        assert!(text.contains("ahead of this host's clock"), "{text}");
        // Mallory seals in alice's name: dispatch resolved alice's key.
        let (text, e) = refusal(&sealed(&mallory, bob.user_id(), NOW), &bob, NOW);
        assert!(matches!(
            e,
            VerifyMailError::Envelope(dem_identity::EnvelopeError::WrongSender { .. })
        ));
        assert!(text.contains("not by alice's key"), "{text}");
        // The ciphertext changed on the way.
        let mut tampered = good.clone();
        tampered.ciphertext[0] ^= 1;
        let (text, e) = refusal(&tampered, &bob, NOW);
        assert!(matches!(
            e,
            VerifyMailError::Envelope(dem_identity::EnvelopeError::CiphertextMismatch(_))
        ));
        assert!(text.contains("does not match its envelope"), "{text}");
        // Over the limit: refused on its length, before its hash is
        // compared (which would refuse it as a mismatch).
        let mut big = good.clone();
        big.ciphertext = vec![7; SEALED_CIPHERTEXT_BYTES_MAX + 1];
        let (text, e) = refusal(&big, &bob, NOW);
        assert!(
            matches!(e, VerifyMailError::CiphertextTooLarge { .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("more than the {SEALED_CIPHERTEXT_BYTES_MAX}")),
            "{text}"
        );
        // At the limit exactly, the size is no reason.
        let mut edge = good;
        edge.ciphertext = vec![7; SEALED_CIPHERTEXT_BYTES_MAX];
        assert!(sealed_size(&edge).is_ok());
    }

    #[test]
    fn only_the_owner_may_call_and_only_once() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let bob = KeyPair::from_seed(&[2; 32]);
        let mut replay = ReplayGuard::new(60_000, 100);
        let call = |mailbox: UserId| OwnerCall {
            mailbox,
            request: Request::ListFolders,
        };
        let foreign = Signed::sign(&alice, OWNER_CALL, 1000, &call(bob.user_id())).unwrap();
        let err = owner_call(&foreign, 1000, &mut replay).unwrap_err();
        assert!(err.to_string().contains("only the owner may read"));
        let own = Signed::sign(&bob, OWNER_CALL, 1000, &call(bob.user_id())).unwrap();
        owner_call(&own, 1000, &mut replay).unwrap();
        assert!(matches!(
            owner_call(&own, 1000, &mut replay),
            Err(VerifyCallError::Replay(_))
        ));
    }

    #[test]
    fn create_orders_name_this_host_and_their_signer() {
        let alice = KeyPair::from_seed(&[1; 32]);
        let here = HostId([9; 32]);
        let order = |user, host| Signed::sign(&alice, OWNER_CALL, 5, &CreateOrder { user, host });
        create_order(&order(alice.user_id(), here).unwrap(), 5, here).unwrap();
        assert!(create_order(&order(alice.user_id(), HostId([8; 32])).unwrap(), 5, here).is_err());
        assert!(create_order(&order(UserId([3; 32]), here).unwrap(), 5, here).is_err());
    }
}
