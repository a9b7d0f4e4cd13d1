//! Sending and reading real mail (RFC 5322 messages kept as their exact
//! bytes) from the user's side; what `dem send` and `dem read` do, and
//! what IMAP and SMTP front ends will call.
//!
//! Sending splits the message (`dem_message::split`): its large part bodies
//! are uploaded as floating attachments ([`attachments::store_bytes`], not
//! sent again if the network holds them), the rest (the *stored* bytes) is
//! sealed with the references that put the parts back, and the sealed mail
//! goes to each recipient's holding host. Reading does the reverse: the
//! stored bytes come from the mailbox in ranges that fit a frame, are
//! checked against the hash the index holds, and the spliced attachments,
//! checked against their ids, are put back (`dem_message::rebuild`).
//!
//! Nothing a host answers is trusted for an allocation: every size is
//! checked against the `dem_message::limits` before it is used.

use dem_identity::{KeyPair, Name, SealedMail};
use dem_message::limits::{MESSAGE_BYTES_MAX, MIME_PARTS_MAX, STORED_BYTES_MAX};
use dem_message::{MessageError, Splice};
use dem_proto::mail::{AttachmentRef, ByteRange, GetParts, MailDetail};
use dem_proto::mailbox::verbs::Get;
use dem_proto::{AttachmentId, HostRequest, HostResponse};
use dem_seal::{Keyring, MailContents, Recipient};

use crate::attachments::{self, AttachmentError, Stored};
use crate::{MailboxRef, RefError, Session, Target, sealed};

/// The domain of DEM addresses: user `alice` is `alice@dem`.
pub const DOMAIN: &str = "dem";

/// The stored bytes are asked in ranges of this size (1 MiB): an answer
/// carries the range and the mail's detail, and must fit one frame.
pub const READ_RANGE_BYTES: u64 = 1 << 20;

/// What a send did.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The mail's id (the same on every recipient's mailbox).
    pub id: String,
    /// The parts cut out of the message and how each was stored.
    pub attachments: Vec<(AttachmentRef, Stored)>,
    /// The recipients whose host took the mail.
    pub delivered: Vec<String>,
    /// The recipients it was not delivered to, each with the reason.
    pub failed: Vec<(String, String)>,
}

/// Why a message could not be sent to anyone.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message breaks a limit (`dem_message::limits`).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// No recipient was given.
    #[error("the message has no recipient")]
    NoRecipients,
    /// A part cut out of the message could not be sealed or uploaded.
    #[error("storing the part {name:?} ({size_bytes} bytes): {source}")]
    Attachment {
        name: String,
        size_bytes: u64,
        #[source]
        source: sealed::SealPartError,
    },
    /// The sender's name is not a valid name.
    #[error("the sender's name: {0}")]
    Sender(String),
    /// No recipient has a key the mail can be sealed to.
    #[error("no recipient can take sealed mail: {}", .0.iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; "))]
    NoOneToSealTo(Vec<(String, String)>),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] dem_seal::SealMailError),
}

/// A message read back: the mailbox's detail and the exact bytes.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    pub detail: MailDetail,
    /// The exact message; the stored bytes only, when read with
    /// `with_attachments` false.
    pub bytes: Vec<u8>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The mailbox call failed (not found, refused, unreachable...).
    #[error(transparent)]
    Mailbox(#[from] RefError),
    /// The host's answer breaks a limit or contradicts itself; `host`
    /// names it.
    #[error("host {host} answered badly: {why}")]
    BadAnswer { host: String, why: String },
    /// The stored bytes do not hash to the index's hash: the host (or
    /// what it read from its disk) altered the mail.
    #[error("host {host} sent a message that does not match its hash {expected} (got {actual})")]
    Tampered {
        host: String,
        expected: String,
        actual: String,
    },
    /// A spliced attachment could not be fetched (or did not match its id).
    #[error("fetching the part {name:?} of the message: {source}")]
    Attachment {
        name: String,
        #[source]
        source: AttachmentError,
    },
    /// The message does not rebuild from its parts, or would be too large.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A sealed mail does not open for its owner (not theirs, a key not in
    /// the keyring, altered, forged).
    #[error("the sealed mail does not open: {0}")]
    Sealed(#[from] sealed::OpenStoredError),
    /// A sealed part could not be fetched or opened.
    #[error("the part {name:?} of the sealed mail: {source}")]
    SealedPart {
        name: String,
        #[source]
        source: sealed::OpenPartError,
    },
}

/// Sends `raw`, an RFC 5322 message, as `key`'s under `sender_name` to the
/// DEM users named in `recipients` (see the module doc). The message's From
/// must be the sender's address (`sender_name@dem`), or hosts refuse it.
/// A recipient whose host does not take the mail is reported in
/// [`SendReport::failed`]; only a failure before any delivery is an error.
pub async fn send_message(
    session: &Session,
    key: &KeyPair,
    sender_name: &str,
    raw: Vec<u8>,
    recipients: &[String],
) -> Result<SendReport, SendError> {
    if recipients.is_empty() {
        return Err(SendError::NoRecipients);
    }
    if raw.len() > MESSAGE_BYTES_MAX {
        return Err(MessageError::TooLarge {
            what: dem_message::error::WHAT_MESSAGE,
            limit: MESSAGE_BYTES_MAX as u64,
            actual: raw.len() as u64,
        }
        .into());
    }
    let split = dem_message::split(&raw)?;
    drop(raw);
    let sender = Name::new(sender_name).map_err(|e| SendError::Sender(e.to_string()))?;
    // Resolve every recipient's key before uploading anything: a send to
    // nobody who can open it stores nothing.
    let mut sealed_to = Vec::with_capacity(recipients.len());
    let mut failed = Vec::new();
    for to in recipients {
        match sealed::recipient(session, to).await {
            Ok(r) => sealed_to.push((to.clone(), r)),
            Err(why) => failed.push((to.clone(), why)),
        }
    }
    if sealed_to.is_empty() {
        return Err(SendError::NoOneToSealTo(failed));
    }
    let mut stored_parts = Vec::with_capacity(split.cuts.len());
    let mut parts = Vec::with_capacity(split.cuts.len());
    for cut in &split.cuts {
        let (part, stored) = sealed::store_sealed_part(session, cut)
            .await
            .map_err(|source| SendError::Attachment {
                name: cut.name.clone(),
                size_bytes: cut.content.len() as u64,
                source,
            })?;
        stored_parts.push((
            AttachmentRef {
                hash: blake3::Hash::from_bytes(part.id).to_hex().to_string(),
                name: cut.name.clone(),
                media_type: cut.media_type.clone(),
                size_bytes: cut.content.len() as u64,
                splice_at: Some(cut.offset),
            },
            stored,
        ));
        parts.push(part);
    }
    let contents = MailContents {
        message: split.stored,
        attachments: parts,
    };
    let keys: Vec<Recipient> = sealed_to.iter().map(|(_, r)| *r).collect();
    let mails = dem_seal::seal_mail(key, &sender, &contents, &keys, crate::now_ms())?;
    let mut id = String::new();
    let mut delivered = Vec::new();
    for ((to, _), mail) in sealed_to.iter().zip(mails) {
        if let Ok(env) = mail.verify_stored() {
            id = SealedMail::mail_id(&env);
        }
        match deliver(session, mail).await {
            Ok(()) => delivered.push(to.clone()),
            Err(why) => failed.push((to.clone(), why)),
        }
    }
    Ok(SendReport {
        id,
        attachments: stored_parts,
        delivered,
        failed,
    })
}

/// Delivers `mail` to the mailbox its envelope names (the one its key was
/// wrapped for); the reason if it was not.
async fn deliver(session: &Session, mail: SealedMail) -> Result<(), String> {
    let recipient = match mail.verify_stored() {
        Ok(env) => env.recipient,
        Err(e) => return Err(e.to_string()),
    };
    let mut r = MailboxRef::new(Target::User(recipient));
    let mail = Box::new(mail);
    let answer = r
        .call(session, |_| {
            Ok(HostRequest::DeliverSealed { mail: mail.clone() })
        })
        .await;
    match answer {
        Ok(HostResponse::Delivered(_)) => Ok(()),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads mail `id` from `mailbox`: its detail and its exact bytes (see the
/// module doc). With `with_attachments` false, only the stored bytes are
/// read (every header is there; the large parts are not): for showing
/// headers without fetching what may be megabytes.
pub async fn read_message(
    session: &Session,
    mailbox: &mut MailboxRef,
    id: &str,
    with_attachments: bool,
    keyring: &Keyring,
) -> Result<ReadMessage, ReadError> {
    let (mut detail, stored) = read_from_a_good_replica(session, mailbox, id).await?;
    if SealedMail::is_blob(&stored) {
        let opened = sealed::open_stored(&stored, session.key().user_id(), keyring)?;
        sealed::fill_detail(&mut detail, &opened);
        return read_opened(session, detail, opened, with_attachments).await;
    }
    if !with_attachments {
        return Ok(ReadMessage {
            detail,
            bytes: stored,
        });
    }
    let host = holder_of(mailbox);
    let spliced = spliced(&detail, stored.len() as u64, &host)?;
    let mut contents = Vec::with_capacity(spliced.len());
    for a in &spliced {
        let failed = |source| ReadError::Attachment {
            name: a.name.clone(),
            source,
        };
        let aid: AttachmentId = a
            .hash
            .parse()
            .map_err(|e| failed(AttachmentError::BadHash(e)))?;
        let content = attachments::fetch_bytes(session, &aid, a.size_bytes)
            .await
            .map_err(failed)?;
        if content.len() as u64 != a.size_bytes {
            return Err(bad(
                &host,
                format!(
                    "the part {:?} is {} bytes, not the {} its reference says",
                    a.name,
                    content.len(),
                    a.size_bytes
                ),
            ));
        }
        contents.push(content);
    }
    let splices: Vec<Splice<'_>> = spliced
        .iter()
        .zip(&contents)
        .map(|(a, content)| Splice {
            offset: a.splice_at.unwrap_or_default(),
            content,
        })
        .collect();
    let bytes = dem_message::rebuild(&stored, &splices)?;
    Ok(ReadMessage { detail, bytes })
}

/// The rest of [`read_message`] for a sealed mail the owner opened: its
/// parts are fetched as ciphertext and opened with the keys inside.
async fn read_opened(
    session: &Session,
    detail: MailDetail,
    opened: sealed::Opened,
    with_attachments: bool,
) -> Result<ReadMessage, ReadError> {
    let stored = opened.contents.message;
    if !with_attachments {
        return Ok(ReadMessage {
            detail,
            bytes: stored,
        });
    }
    let spliced = spliced(&detail, stored.len() as u64, "(the sealed mail)")?;
    // `detail`'s references came from these parts in this order, so the
    // spliced ones pair up with `spliced`.
    let mut contents = Vec::with_capacity(spliced.len());
    for part in opened
        .contents
        .attachments
        .iter()
        .filter(|a| a.splice_at.is_some())
    {
        let content = sealed::fetch_sealed_part(session, part)
            .await
            .map_err(|source| ReadError::SealedPart {
                name: part.name.clone(),
                source,
            })?;
        contents.push(content);
    }
    let splices: Vec<Splice<'_>> = spliced
        .iter()
        .zip(&contents)
        .map(|(a, content)| Splice {
            offset: a.splice_at.unwrap_or_default(),
            content,
        })
        .collect();
    let bytes = dem_message::rebuild(&stored, &splices)?;
    Ok(ReadMessage { detail, bytes })
}

/// Replicas tried for one read when a holder's copy of the message is
/// damaged or does not match its hash: as many as a mailbox usually has.
pub const READ_REPLICAS_MAX: usize = 3;

/// [`read_stored`] from the mailbox's holder, or, when that holder's copy
/// of the message is unavailable or does not match its hash, from the next
/// listed replica (the holder repairs its copy meanwhile).
async fn read_from_a_good_replica(
    session: &Session,
    mailbox: &mut MailboxRef,
    id: &str,
) -> Result<(MailDetail, Vec<u8>), ReadError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let read = read_stored(session, mailbox, id).await;
        let another = match &read {
            Err(ReadError::Tampered { .. } | ReadError::BadAnswer { .. }) => true,
            Err(ReadError::Mailbox(RefError::Refused(wire))) => {
                wire.code == dem_proto::host::MESSAGE_UNAVAILABLE
            }
            _ => false,
        };
        if !another || tries >= READ_REPLICAS_MAX {
            return read;
        }
        if let Err(e) = &read {
            tracing::warn!(error = %e, "reading the message from another replica");
        }
        mailbox.avoid_holder();
    }
}

/// The detail of mail `id` and its stored bytes, fetched in ranges of
/// [`READ_RANGE_BYTES`] and checked against the index's hash.
pub async fn read_stored(
    session: &Session,
    mailbox: &mut MailboxRef,
    id: &str,
) -> Result<(MailDetail, Vec<u8>), ReadError> {
    let first = ask_range(session, mailbox, id, 0, READ_RANGE_BYTES).await?;
    let host = holder_of(mailbox);
    let detail = first.detail;
    let size = detail.message.size_bytes;
    if size > STORED_BYTES_MAX as u64 {
        return Err(bad(
            &host,
            format!("its stored message is {size} bytes; the limit is {STORED_BYTES_MAX}"),
        ));
    }
    if detail.message.hash_bytes().is_none() {
        return Err(bad(
            &host,
            format!("the message hash {:?} is not a hash", detail.message.hash),
        ));
    }
    let mut stored = Vec::with_capacity(size as usize);
    let mut chunk = first.bytes;
    loop {
        let start = stored.len() as u64;
        let asked = (size - start).min(READ_RANGE_BYTES);
        let got = chunk.take().unwrap_or_default();
        if got.len() as u64 != asked {
            return Err(bad(
                &host,
                format!(
                    "bytes {start}..{} of the message came as {} bytes",
                    start + asked,
                    got.len()
                ),
            ));
        }
        stored.extend_from_slice(&got);
        if stored.len() as u64 >= size {
            break;
        }
        let start = stored.len() as u64;
        let next = ask_range(session, mailbox, id, start, start + READ_RANGE_BYTES).await?;
        if next.detail.message != detail.message {
            return Err(bad(
                &holder_of(mailbox),
                "the message changed between two ranges".into(),
            ));
        }
        chunk = next.bytes;
    }
    check_stored(&detail, &stored, &holder_of(mailbox))?;
    Ok((detail, stored))
}

/// The stored bytes `host` sent are the ones the index names: their
/// BLAKE3 is the index's hash, so a host cannot alter a mail unnoticed.
fn check_stored(detail: &MailDetail, stored: &[u8], host: &str) -> Result<(), ReadError> {
    let actual = blake3::hash(stored);
    if detail.message.hash_bytes() != Some(*actual.as_bytes()) {
        return Err(ReadError::Tampered {
            host: host.to_string(),
            expected: detail.message.hash.clone(),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(())
}

/// One `get` of bytes `start..end` of the stored message.
async fn ask_range(
    session: &Session,
    mailbox: &mut MailboxRef,
    id: &str,
    start: u64,
    end: u64,
) -> Result<dem_proto::mail::MailRead, ReadError> {
    let get = Get {
        id: id.to_string(),
        parts: GetParts {
            message: Some(ByteRange { start, end }),
        },
    };
    Ok(*mailbox.ask(session, get).await?)
}

/// The spliced attachments of `detail`, checked: ascending offsets within
/// the stored bytes, at most `MIME_PARTS_MAX`, and a rebuilt message of at
/// most `MESSAGE_BYTES_MAX` bytes. References without a splice point (mail
/// from before real messages) are no part of the bytes.
fn spliced<'a>(
    detail: &'a MailDetail,
    stored_len: u64,
    host: &str,
) -> Result<Vec<&'a AttachmentRef>, ReadError> {
    let spliced: Vec<&AttachmentRef> = detail
        .attachments
        .iter()
        .filter(|a| a.splice_at.is_some())
        .collect();
    if spliced.len() > MIME_PARTS_MAX {
        return Err(bad(
            host,
            format!(
                "the message has {} spliced parts; the limit is {MIME_PARTS_MAX}",
                spliced.len()
            ),
        ));
    }
    let mut previous = None;
    for a in &spliced {
        let at = a.splice_at.unwrap_or_default();
        if at > stored_len || previous.is_some_and(|p| at <= p) {
            return Err(bad(
                host,
                format!(
                    "the part {:?} goes at offset {at}, out of order or past the {stored_len} stored bytes",
                    a.name
                ),
            ));
        }
        previous = Some(at);
    }
    let total = dem_message::rebuilt_len(stored_len, spliced.iter().map(|a| a.size_bytes));
    match total {
        Some(n) if n <= MESSAGE_BYTES_MAX as u64 => Ok(spliced),
        n => Err(MessageError::TooLarge {
            what: dem_message::error::WHAT_REBUILT,
            limit: MESSAGE_BYTES_MAX as u64,
            actual: n.unwrap_or(u64::MAX),
        }
        .into()),
    }
}

/// How errors name the host `mailbox` last reached.
fn holder_of(mailbox: &MailboxRef) -> String {
    match mailbox.holder() {
        Some(h) => format!("{} at {}", h.host.short(), h.addr),
        None => "(unknown)".into(),
    }
}

fn bad(host: &str, why: String) -> ReadError {
    ReadError::BadAnswer {
        host: host.to_string(),
        why,
    }
}

/// The DEM names an envelope's To and Cc address, in order, each once:
/// `bob@dem` (any case of the domain) is `bob`. Addresses in another
/// domain are refused, all of them named.
pub fn dem_recipients(envelope: &dem_message::Envelope) -> Result<Vec<String>, RecipientsError> {
    let mut names: Vec<String> = Vec::new();
    let mut foreign = Vec::new();
    for shown in envelope.to.iter().chain(&envelope.cc) {
        let address = address_in(shown);
        match address.rsplit_once('@') {
            Some((name, domain)) if domain.eq_ignore_ascii_case(DOMAIN) && !name.is_empty() => {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            _ => foreign.push(address.to_string()),
        }
    }
    if !foreign.is_empty() {
        return Err(RecipientsError::Foreign(foreign));
    }
    if names.is_empty() {
        return Err(RecipientsError::None);
    }
    Ok(names)
}

/// Why a message's own recipients cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientsError {
    /// Addresses outside `@dem`, which DEM cannot deliver to.
    #[error("not DEM addresses (only name@{DOMAIN} can be delivered): {}", .0.join(", "))]
    Foreign(Vec<String>),
    /// The message names no recipient in To or Cc.
    #[error("the message has no To or Cc recipient")]
    None,
}

/// The address of a `Name <addr>` display string, or the string itself.
fn address_in(shown: &str) -> &str {
    match (shown.rfind('<'), shown.trim().strip_suffix('>')) {
        (Some(open), Some(inner)) if open < inner.len() => inner[open + 1..].trim(),
        _ => shown.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::mail::{BlobRef, MailFlags, MailSummary};

    fn envelope(to: &[&str], cc: &[&str]) -> dem_message::Envelope {
        dem_message::Envelope {
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: cc.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn recipients_are_dem_names() {
        let e = envelope(&["Bob <bob@dem>", "carol@DEM"], &["bob@dem", "dave@dem"]);
        assert_eq!(
            dem_recipients(&e),
            Ok(vec!["bob".into(), "carol".into(), "dave".into()])
        );
        let e = envelope(&["bob@dem", "Eve <eve@example.org>"], &["x@dem.org"]);
        let err = dem_recipients(&e).unwrap_err();
        assert_eq!(
            err,
            RecipientsError::Foreign(vec!["eve@example.org".into(), "x@dem.org".into()])
        );
        assert!(err.to_string().contains("eve@example.org, x@dem.org"));
        assert_eq!(
            dem_recipients(&envelope(&[], &[])),
            Err(RecipientsError::None)
        );
        assert_eq!(
            dem_recipients(&envelope(&["@dem"], &[])),
            Err(RecipientsError::Foreign(vec!["@dem".into()]))
        );
    }

    fn detail(stored_len: u64, parts: &[(u64, u64)]) -> MailDetail {
        MailDetail {
            summary: MailSummary {
                id: "m".into(),
                folder: "INBOX".into(),
                uid: 1,
                from: String::new(),
                to: vec![],
                cc: vec![],
                subject: String::new(),
                date_ms: 0,
                received_ms: 0,
                message_id: String::new(),
                in_reply_to: None,
                flags: MailFlags::empty(),
                keywords: vec![],
                size_bytes: 0,
                attachment_count: 0,
                spam_score: None,
            },
            references: vec![],
            message: BlobRef {
                hash: String::new(),
                size_bytes: stored_len,
            },
            attachments: parts
                .iter()
                .map(|&(at, size_bytes)| AttachmentRef {
                    hash: "ab".repeat(32),
                    name: "p".into(),
                    media_type: "application/octet-stream".into(),
                    size_bytes,
                    splice_at: Some(at),
                })
                .collect(),
        }
    }

    #[test]
    fn altered_stored_bytes_are_refused_naming_the_host() {
        let stored = b"From: alice@dem\r\n\r\nhello\r\n".to_vec();
        let mut d = detail(stored.len() as u64, &[]);
        d.message = BlobRef::of(&stored);
        assert!(check_stored(&d, &stored, "h1").is_ok());
        let mut altered = stored.clone();
        altered[20] ^= 1;
        let e = check_stored(&d, &altered, "h1 at 127.0.0.1:1").unwrap_err();
        assert!(matches!(e, ReadError::Tampered { .. }));
        assert!(e.to_string().contains("h1 at 127.0.0.1:1"), "{e}");
        d.message.hash = "not a hash".into();
        assert!(check_stored(&d, &stored, "h1").is_err());
    }

    #[test]
    fn untrusted_splices_are_checked_before_any_fetch() {
        assert_eq!(
            spliced(&detail(10, &[(2, 5), (10, 5)]), 10, "h")
                .unwrap()
                .len(),
            2
        );
        for bad in [
            detail(10, &[(11, 5)]),
            detail(10, &[(5, 5), (5, 5)]),
            detail(10, &[(6, 5), (5, 5)]),
        ] {
            assert!(matches!(
                spliced(&bad, 10, "h"),
                Err(ReadError::BadAnswer { .. })
            ));
        }
        let huge = detail(10, &[(1, MESSAGE_BYTES_MAX as u64)]);
        assert!(matches!(
            spliced(&huge, 10, "h"),
            Err(ReadError::Message(MessageError::TooLarge { .. }))
        ));
        let overflow = detail(10, &[(1, u64::MAX), (2, u64::MAX)]);
        assert!(matches!(
            spliced(&overflow, 10, "h"),
            Err(ReadError::Message(MessageError::TooLarge { .. }))
        ));
        let many: Vec<(u64, u64)> = (0..=MIME_PARTS_MAX as u64).map(|i| (i, 1)).collect();
        assert!(matches!(
            spliced(&detail(2000, &many), 2000, "h"),
            Err(ReadError::BadAnswer { .. })
        ));
    }
}
