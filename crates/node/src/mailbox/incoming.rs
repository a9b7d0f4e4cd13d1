//! An incoming mail as a host takes it: the stored bytes of an RFC 5322
//! message, parsed once into the index the mailbox keeps (`NewMail`) and
//! what its filters see (`MailView`); or a mail sealed end to end, whose
//! index and view hold only what its envelope shows (`Incoming::sealed`).
//!
//! The index comes from the bytes, never from anything the sender states
//! beside them: the seal covers the bytes, so what the mailbox lists is
//! what the sender signed. A message that does not parse is still taken
//! (those are the sender's bytes, readable raw); its index holds what could
//! be parsed. Only a message over the limits is refused. A sealed mail is
//! never parsed: the host cannot read it, and the owner's client indexes
//! it after opening it.

use dem_identity::{EnvelopeError, MailEnvelope, SealedMail};
use dem_message::{MessageError, limits::STORED_BYTES_MAX};
use dem_proto::host::BLOB_BYTES_MAX;
use dem_proto::mail::{AttachmentRef, BlobRef, Header, MailView, NewMail, SenderStatus};

/// References the index keeps: the newest ones, which thread a reply. The
/// mailbox refuses more (`guest-mailbox` `REFERENCES_MAX`), so the host
/// trims a long chain instead of refusing the mail.
pub const REFERENCES_KEPT: usize = 32;
/// Header fields a filter sees.
pub const VIEW_HEADERS_MAX: usize = 200;

/// A mail ready for its mailbox: the index, the stored bytes, and what a
/// filter may look at (the sender's status is filled in by the mailbox).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub mail: NewMail,
    pub message: Vec<u8>,
    pub view: MailView,
}

/// Why an incoming mail was refused.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(
        "attachment {index} is spliced at {at}, past the stored message ({len} bytes) or before the previous one"
    )]
    Splice { index: usize, at: u64, len: u64 },
    #[error("the message with its attachments would be over 2^64 bytes")]
    Size,
    /// A sealed mail that does not encode, or whose blob is over
    /// [`BLOB_BYTES_MAX`].
    #[error(transparent)]
    Sealed(#[from] EnvelopeError),
}

impl Incoming {
    /// Parses `message` (the stored bytes, large parts cut out into
    /// `attachments`) into the index of mail `id`.
    pub fn parse(
        id: String,
        message: Vec<u8>,
        attachments: Vec<AttachmentRef>,
    ) -> Result<Self, IncomingError> {
        if message.len() > STORED_BYTES_MAX {
            return Err(MessageError::TooLarge {
                what: dem_message::error::WHAT_STORED,
                limit: STORED_BYTES_MAX as u64,
                actual: message.len() as u64,
            }
            .into());
        }
        let len = message.len() as u64;
        let mut last = None;
        for (index, a) in attachments.iter().enumerate() {
            if let Some(at) = a.splice_at {
                if at > len || last.is_some_and(|l| at <= l) {
                    return Err(IncomingError::Splice { index, at, len });
                }
                last = Some(at);
            }
        }
        let size_bytes = dem_message::rebuilt_len(
            len,
            attachments
                .iter()
                .filter(|a| a.splice_at.is_some())
                .map(|a| a.size_bytes),
        )
        .ok_or(IncomingError::Size)?;
        let parsed = dem_message::parse(&message)?;
        let env = parsed.envelope;
        let mut references = env.references;
        if references.len() > REFERENCES_KEPT {
            references.drain(..references.len() - REFERENCES_KEPT);
        }
        let bracket = |id: String| format!("<{id}>");
        let mail = NewMail {
            id,
            from: env.from,
            to: env.to,
            cc: env.cc,
            subject: env.subject,
            date_ms: env.date_ms.unwrap_or(0),
            message_id: env.message_id.map(bracket).unwrap_or_default(),
            in_reply_to: env.in_reply_to.map(bracket),
            references: references.into_iter().map(bracket).collect(),
            message: BlobRef::of(&message),
            size_bytes,
            attachments,
        };
        let view = MailView {
            id: mail.id.clone(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            cc: mail.cc.clone(),
            subject: mail.subject.clone(),
            date_ms: mail.date_ms,
            message_id: mail.message_id.clone(),
            headers: parsed
                .headers
                .into_iter()
                .take(VIEW_HEADERS_MAX)
                .map(|(name, value)| Header { name, value })
                .collect(),
            body_preview: parsed.preview,
            body_size_bytes: size_bytes,
            attachments: mail.attachments.clone(),
            sender: SenderStatus::Unknown,
        };
        Ok(Self {
            mail,
            message,
            view,
        })
    }

    /// The index of a sealed mail, from its checked `envelope` (what
    /// `SealedMail::verify_delivery` returned for `mail`) alone: the id the
    /// envelope gives it, the sender's address, the sending time, the
    /// sizes and the attachments by ciphertext id. No recipient, subject,
    /// header or text: the host never sees them, and the owner's client
    /// reads them from the opened message. The stored blob is the whole
    /// sealed mail, so the owner checks the sender's signature again.
    pub fn sealed(mail: &SealedMail, envelope: &MailEnvelope) -> Result<Self, IncomingError> {
        let message = mail.to_blob()?;
        if message.len() > BLOB_BYTES_MAX {
            return Err(EnvelopeError::TooLarge {
                what: "stored blob",
                got: message.len(),
                max: BLOB_BYTES_MAX,
            }
            .into());
        }
        let attachments: Vec<AttachmentRef> = envelope
            .attachments
            .iter()
            .map(|a| AttachmentRef {
                hash: hex(&a.id),
                name: String::new(),
                media_type: String::new(),
                size_bytes: a.ciphertext_bytes,
                // The ciphertext never goes back into the blob: the owner's
                // client splices the opened attachment into the opened
                // message, at the position the sealed content names.
                splice_at: None,
            })
            .collect();
        let size_bytes = attachments
            .iter()
            .try_fold(message.len() as u64, |sum, a| sum.checked_add(a.size_bytes))
            .ok_or(IncomingError::Size)?;
        let from = format!("{}@dem", envelope.sender_name.as_str());
        let mail = NewMail {
            id: SealedMail::mail_id(envelope),
            from,
            to: Vec::new(),
            cc: Vec::new(),
            subject: String::new(),
            // The sending time the sender signed; the message's own Date
            // is inside the ciphertext.
            date_ms: mail.envelope.issued_ms,
            message_id: String::new(),
            in_reply_to: None,
            references: Vec::new(),
            message: BlobRef::of(&message),
            size_bytes,
            attachments,
        };
        // The envelope stage: filters judge by sender, size, time and
        // attachment count; nothing else exists on the host.
        let view = MailView {
            id: mail.id.clone(),
            from: mail.from.clone(),
            to: Vec::new(),
            cc: Vec::new(),
            subject: String::new(),
            date_ms: mail.date_ms,
            message_id: String::new(),
            headers: Vec::new(),
            body_preview: String::new(),
            body_size_bytes: size_bytes,
            attachments: mail.attachments.clone(),
            sender: SenderStatus::Unknown,
        };
        Ok(Self {
            mail,
            message,
            view,
        })
    }
}

/// Lower-case hex, as index hashes are written.
fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"From: Alice <alice@dem>\r\nTo: bob@dem\r\nSubject: lunch\r\n\
        Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@dem>\r\n\
        References: <a@dem> <b@dem>\r\nIn-Reply-To: <b@dem>\r\n\r\nnoon?\r\n";

    #[test]
    fn the_index_comes_from_the_bytes() -> Result<(), IncomingError> {
        let inc = Incoming::parse("id1".into(), MESSAGE.to_vec(), vec![])?;
        assert_eq!(inc.mail.from, "Alice <alice@dem>");
        assert_eq!(inc.mail.to, vec!["bob@dem".to_string()]);
        assert_eq!(inc.mail.subject, "lunch");
        assert_eq!(inc.mail.message_id, "<m1@dem>");
        assert_eq!(inc.mail.in_reply_to.as_deref(), Some("<b@dem>"));
        assert_eq!(inc.mail.references, vec!["<a@dem>", "<b@dem>"]);
        assert_eq!(inc.mail.size_bytes, MESSAGE.len() as u64);
        assert_eq!(inc.mail.message, BlobRef::of(MESSAGE));
        assert!(inc.view.body_preview.starts_with("noon?"));
        Ok(())
    }

    #[test]
    fn garbage_is_still_taken() -> Result<(), IncomingError> {
        let garbage = b"\xff\xfe not a message";
        let inc = Incoming::parse("id2".into(), garbage.to_vec(), vec![])?;
        assert_eq!(inc.mail.size_bytes, garbage.len() as u64);
        assert_eq!(inc.message, garbage);
        Ok(())
    }

    #[test]
    fn bad_splices_and_sizes_are_refused() {
        let att = |at| AttachmentRef {
            hash: "ab".repeat(32),
            name: "a".into(),
            media_type: "application/octet-stream".into(),
            size_bytes: 10,
            splice_at: Some(at),
        };
        let len = MESSAGE.len() as u64;
        assert!(Incoming::parse("i".into(), MESSAGE.to_vec(), vec![att(len + 1)]).is_err());
        assert!(Incoming::parse("i".into(), MESSAGE.to_vec(), vec![att(5), att(5)]).is_err());
        assert!(Incoming::parse("i".into(), MESSAGE.to_vec(), vec![att(5), att(9)]).is_ok());
        assert!(Incoming::parse("i".into(), vec![b'a'; STORED_BYTES_MAX + 1], vec![]).is_err());
    }
}
