//! The owner's side of sealed mail (issue 17): sealing on send, opening on
//! read, so plaintext exists only on the sender's and the recipient's own
//! machines.
//!
//! Sending: each part cut out of the message is encrypted under its own
//! fresh key and uploaded as the floating attachment named by the BLAKE3 of
//! its ciphertext (one stored copy for all recipients of the send, and no
//! convergent encryption: the same file sent twice is two ciphertexts).
//! The stored message and those keys are sealed once, and each recipient's
//! current key comes from its signed name claim, which this client checks
//! itself ([`crate::recipient::recipient_key`]).
//!
//! Reading: the stored blob of a sealed mail is the [`SealedMail`]; the
//! owner's client checks the sender's signature and the ciphertext again
//! (no host is trusted for them), opens it with the keyring, checks that
//! the message's From is the signing sender's own address (the host can no
//! longer see it), and fills the index fields hosts do not see (subject,
//! To, Cc, Message-ID...) from the decrypted headers.

use dem_identity::{Name, SealedMail, UserId};
use dem_message::Cut;
use dem_proto::dispatch::{DispatchRequest, DispatchResponse};
use dem_proto::mail::{AttachmentRef, MailDetail, MailSummary};
use dem_seal::{
    ContentAttachment, ContentKey, EncryptionPublicKey, Keyring, MailContents, OpenMailError,
    Recipient, open_attachment, seal_attachment,
};

use dem_message::search::{Query, message_words};
use dem_proto::mailbox::verbs::{ListFolder, ListFolders};

use crate::attachments::{self, AttachmentError, Stored};
use crate::message::{DOMAIN, read_stored};
use crate::recipient::recipient_key;
use crate::{MailboxRef, RefError, Session};

/// Why a sealed part could not be uploaded.
#[derive(Debug, thiserror::Error)]
pub enum SealPartError {
    /// Encrypting failed.
    #[error("sealing: {0}")]
    Seal(#[from] dem_seal::SealError),
    /// Uploading failed.
    #[error(transparent)]
    Upload(#[from] AttachmentError),
}

/// Encrypts `cut` under a fresh key and uploads the ciphertext (the host
/// learns neither its name nor its type); what the sealed content needs to
/// put it back.
pub async fn store_sealed_part(
    session: &Session,
    cut: &Cut,
) -> Result<(ContentAttachment, Stored), SealPartError> {
    let key = ContentKey::generate()?;
    let (ciphertext, sealed) = seal_attachment(&key, &cut.content)?;
    // A constant name and type: hosts learn nothing from them.
    let (_, stored) =
        attachments::store_bytes(session, "sealed", "application/octet-stream", &ciphertext)
            .await?;
    Ok((
        ContentAttachment {
            id: sealed.ciphertext_hash,
            key: *key.as_bytes(),
            name: cut.name.clone(),
            media_type: cut.media_type.clone(),
            plaintext_bytes: cut.content.len() as u64,
            ciphertext_bytes: sealed.ciphertext_bytes,
            splice_at: Some(cut.offset),
        },
        stored,
    ))
}

/// `name`'s holder and current encryption key, from a dispatch lookup
/// whose signed name claim this client verifies; the reason if there is
/// none to seal to.
pub async fn recipient(session: &Session, name: &str) -> Result<Recipient, String> {
    let lookup = match session
        .dispatch(&DispatchRequest::LookupName {
            name: name.to_string(),
        })
        .await
    {
        Ok(DispatchResponse::Mailbox(l)) => l,
        Ok(other) => return Err(format!("unexpected answer from dispatch: {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    match recipient_key(&lookup, name) {
        Ok(Some(key)) => Ok(Recipient {
            user: lookup.user,
            key: EncryptionPublicKey(key),
        }),
        Ok(None) => Err(format!(
            "{name} has published no encryption key yet (a name claimed before sealing); they must run `dem id rotate`"
        )),
        Err(e) => Err(format!("refusing to seal to {name}: {e}")),
    }
}

/// A sealed mail opened by its owner.
#[derive(Debug)]
pub struct Opened {
    /// The sender's registered name.
    pub sender_name: Name,
    /// The sender's key (the envelope's signer).
    pub sender: UserId,
    /// When the sender sealed it.
    pub sealed_ms: i64,
    /// The stored message and its parts' keys.
    pub contents: MailContents,
}

/// Why the owner could not open a stored mail.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoredError {
    /// The blob does not open.
    #[error(transparent)]
    Open(#[from] OpenMailError),
    /// The blob is not a sealed mail.
    #[error(transparent)]
    Envelope(#[from] dem_identity::EnvelopeError),
    /// The message inside names another From than its signing sender.
    #[error("forged: the message says it is from {from:?}, but {sender_name}@dem sealed it")]
    FromMismatch {
        /// The From inside.
        from: String,
        /// The sealing sender's name.
        sender_name: String,
    },
}

/// Opens `stored`, a sealed mail's blob, as `owner` with `keyring`.
pub fn open_stored(
    stored: &[u8],
    owner: UserId,
    keyring: &Keyring,
) -> Result<Opened, OpenStoredError> {
    let mail = SealedMail::from_blob(stored)?;
    let (envelope, contents) = dem_seal::open_mail(&mail, owner, keyring)?;
    let opened = Opened {
        sender_name: envelope.sender_name,
        sender: mail.envelope.signer,
        sealed_ms: mail.envelope.issued_ms,
        contents,
    };
    // The From a reader is shown must be the sealing sender's own address;
    // a message with no From at all (garbage the sender sent) stays
    // readable raw, as before sealing.
    if let Ok(parsed) = dem_message::parse(&opened.contents.message) {
        let from = parsed.envelope.from;
        if !from.is_empty() && !is_address_of(&from, opened.sender_name.as_str()) {
            return Err(OpenStoredError::FromMismatch {
                from: from.chars().take(200).collect(),
                sender_name: opened.sender_name.to_string(),
            });
        }
    }
    Ok(opened)
}

/// Whether `from` (an address, perhaps `Name <addr>`) is `name@dem`.
fn is_address_of(from: &str, name: &str) -> bool {
    let addr = match (from.rfind('<'), from.trim().strip_suffix('>')) {
        (Some(open), Some(inner)) if open < inner.len() => inner[open + 1..].trim(),
        _ => from.trim(),
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) => local == name && domain.eq_ignore_ascii_case(DOMAIN),
        None => false,
    }
}

/// Fills the fields hosts do not see (and `detail`'s parts) from an
/// opened mail, so callers show a sealed mail like any other.
pub fn fill_detail(detail: &mut MailDetail, opened: &Opened) {
    fill_summary(&mut detail.summary, opened);
    if let Ok(parsed) = dem_message::parse(&opened.contents.message) {
        detail.references = parsed.envelope.references;
    }
    let contents = &opened.contents;
    if let Some(size) = dem_message::rebuilt_len(
        contents.message.len() as u64,
        contents
            .attachments
            .iter()
            .filter(|a| a.splice_at.is_some())
            .map(|a| a.plaintext_bytes),
    ) {
        detail.summary.size_bytes = size;
    }
    detail.attachments = opened
        .contents
        .attachments
        .iter()
        .map(|a| AttachmentRef {
            hash: hex(&a.id),
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size_bytes: a.plaintext_bytes,
            splice_at: a.splice_at,
        })
        .collect();
}

/// Fills a listing's fields from an opened mail's headers.
pub fn fill_summary(summary: &mut MailSummary, opened: &Opened) {
    let Ok(parsed) = dem_message::parse(&opened.contents.message) else {
        return;
    };
    let env = parsed.envelope;
    if !env.from.is_empty() {
        summary.from = env.from;
    }
    summary.to = env.to;
    summary.cc = env.cc;
    summary.subject = env.subject;
    summary.date_ms = env.date_ms.unwrap_or(opened.sealed_ms);
    summary.message_id = env.message_id.map(|m| format!("<{m}>")).unwrap_or_default();
    summary.in_reply_to = env.in_reply_to.map(|m| format!("<{m}>"));
}

/// Why a sealed part could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum OpenPartError {
    /// Fetching the ciphertext failed.
    #[error(transparent)]
    Fetch(#[from] AttachmentError),
    /// The ciphertext does not open under the key the mail holds.
    #[error("the part does not open: {0}")]
    Open(#[from] dem_seal::OpenError),
    /// It opened to another size than the mail says.
    #[error("the part opened to {got} bytes, not the {expected} the mail says")]
    Size {
        /// The size inside the mail.
        expected: u64,
        /// What came out.
        got: u64,
    },
}

/// Fetches a sealed part's ciphertext (checked against its id) and opens
/// it with the key the sealed mail holds.
pub async fn fetch_sealed_part(
    session: &Session,
    part: &ContentAttachment,
) -> Result<Vec<u8>, OpenPartError> {
    let ciphertext = attachments::fetch_bytes(
        session,
        &dem_proto::AttachmentId::from_bytes(part.id),
        part.ciphertext_bytes,
    )
    .await?;
    let plain = open_attachment(&ContentKey::from_bytes(&part.key), &ciphertext)?;
    if plain.len() as u64 != part.plaintext_bytes {
        return Err(OpenPartError::Size {
            expected: part.plaintext_bytes,
            got: plain.len() as u64,
        });
    }
    Ok(plain)
}

/// Whether a listing entry may be a sealed mail's: hosts fill only what
/// the envelope shows, so the subject, To and Message-ID are empty. (A
/// plaintext mail with none of them is read once and left as it is.)
pub fn looks_sealed(s: &MailSummary) -> bool {
    s.subject.is_empty() && s.to.is_empty() && s.message_id.is_empty()
}

/// Opens the sealed mails among `items` in place, so a listing shows their
/// subjects and addresses; the ids that could not be opened, each with the
/// reason (the entry keeps what the host showed).
pub async fn open_summaries(
    session: &Session,
    mailbox: &mut MailboxRef,
    keyring: &Keyring,
    items: &mut [MailSummary],
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for s in items.iter_mut().filter(|s| looks_sealed(s)) {
        if let Err(why) = open_summary(session, mailbox, keyring, s).await {
            failed.push((s.id.clone(), why));
        }
    }
    failed
}

/// Opens one listing entry's mail; `Ok(None)` if it is not sealed, else
/// the message's words for a search.
async fn open_summary(
    session: &Session,
    mailbox: &mut MailboxRef,
    keyring: &Keyring,
    s: &mut MailSummary,
) -> Result<Option<Opened>, String> {
    let (_, stored) = read_stored(session, mailbox, &s.id)
        .await
        .map_err(|e| e.to_string())?;
    if !SealedMail::is_blob(&stored) {
        return Ok(None);
    }
    let opened =
        open_stored(&stored, session.key().user_id(), keyring).map_err(|e| e.to_string())?;
    fill_summary(s, &opened);
    Ok(Some(opened))
}

/// The part `part_id` (its ciphertext's id) of sealed mail `mail_id`, as
/// the owner opens it: its key, name, type and sizes.
pub async fn part_of(
    session: &Session,
    mailbox: &mut MailboxRef,
    keyring: &Keyring,
    mail_id: &str,
    part_id: &[u8; 32],
) -> Result<ContentAttachment, String> {
    let (_, stored) = read_stored(session, mailbox, mail_id)
        .await
        .map_err(|e| e.to_string())?;
    if !SealedMail::is_blob(&stored) {
        return Err(format!("mail {mail_id} is not sealed"));
    }
    let opened =
        open_stored(&stored, session.key().user_id(), keyring).map_err(|e| e.to_string())?;
    opened
        .contents
        .attachments
        .iter()
        .find(|a| &a.id == part_id)
        .cloned()
        .ok_or_else(|| format!("mail {mail_id} carries no attachment {}", hex(part_id)))
}

/// Mails listed per call while a search walks the mailbox.
const SEARCH_PAGE_MAILS: u32 = 500;

/// Searches the sealed mail of the owner's mailbox for `query` on the
/// owner's side: every folder is listed, each sealed mail opened and its
/// words matched as a host's index would match plaintext. Newest first,
/// at most `limit`.
///
/// This reads and opens every sealed mail of the mailbox on each search;
/// an index kept on the owner's machine is what makes it fast, and is not
/// built yet.
pub async fn search_sealed(
    session: &Session,
    mailbox: &mut MailboxRef,
    keyring: &Keyring,
    query: &Query,
    limit: usize,
) -> Result<Vec<MailSummary>, RefError> {
    let mut hits = Vec::new();
    for folder in mailbox.ask(session, ListFolders {}).await? {
        let mut offset = 0;
        loop {
            let page = mailbox
                .ask(
                    session,
                    ListFolder {
                        folder: folder.name.clone(),
                        offset,
                        limit: SEARCH_PAGE_MAILS,
                    },
                )
                .await?;
            let n = page.items.len() as u32;
            for mut s in page.items.into_iter().filter(looks_sealed) {
                match open_summary(session, mailbox, keyring, &mut s).await {
                    Ok(Some(opened)) => {
                        if query.matches(&message_words(&opened.contents.message)) {
                            hits.push(s);
                        }
                    }
                    Ok(None) => {}
                    Err(why) => {
                        tracing::warn!(mail = %s.id, %why, "a sealed mail does not open; not searched")
                    }
                }
            }
            offset += n;
            if n < SEARCH_PAGE_MAILS || offset >= page.total {
                break;
            }
        }
    }
    hits.sort_by(|a, b| b.date_ms.cmp(&a.date_ms).then_with(|| a.id.cmp(&b.id)));
    hits.truncate(limit);
    Ok(hits)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_identity::KeyPair;

    #[test]
    fn from_must_be_the_sealing_sender() {
        assert!(is_address_of("alice@dem", "alice"));
        assert!(is_address_of("Alice <alice@DEM>", "alice"));
        assert!(!is_address_of("ceo@dem", "alice"));
        assert!(!is_address_of("alice@example.org", "alice"));
    }

    fn sealed_blob(from_header: &str) -> (Vec<u8>, KeyPair, Keyring) {
        let alice = KeyPair::generate().unwrap();
        let bob = KeyPair::generate().unwrap();
        let ring = Keyring::generate(1).unwrap();
        let contents = MailContents {
            message: format!(
                "From: {from_header}\r\nTo: bob@dem\r\nSubject: hi there\r\n\r\nbody\r\n"
            )
            .into_bytes(),
            attachments: vec![],
        };
        let mails = dem_seal::seal_mail(
            &alice,
            &Name::new("alice").unwrap(),
            &contents,
            &[Recipient {
                user: bob.user_id(),
                key: ring.current().public(),
            }],
            crate::now_ms(),
        )
        .unwrap();
        (mails[0].to_blob().unwrap(), bob, ring)
    }

    #[test]
    fn the_owner_opens_and_sees_the_headers() {
        let (blob, bob, ring) = sealed_blob("Alice <alice@dem>");
        let opened = open_stored(&blob, bob.user_id(), &ring).unwrap();
        let mut s = MailSummary {
            id: "m".into(),
            folder: "INBOX".into(),
            uid: 1,
            from: "alice@dem".into(),
            to: vec![],
            cc: vec![],
            subject: String::new(),
            date_ms: 0,
            received_ms: 0,
            message_id: String::new(),
            in_reply_to: None,
            flags: dem_proto::mail::MailFlags::empty(),
            keywords: vec![],
            size_bytes: 0,
            attachment_count: 0,
            spam_score: None,
        };
        fill_summary(&mut s, &opened);
        assert_eq!(s.subject, "hi there");
        assert_eq!(s.to, vec!["bob@dem".to_string()]);
    }

    #[test]
    fn a_sender_cannot_write_in_another_name() {
        let (blob, bob, ring) = sealed_blob("ceo@dem");
        let err = open_stored(&blob, bob.user_id(), &ring).unwrap_err();
        assert!(matches!(err, OpenStoredError::FromMismatch { .. }), "{err}");
        assert!(err.to_string().contains("forged"));
    }
}
