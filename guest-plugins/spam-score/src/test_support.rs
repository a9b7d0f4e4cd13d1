//! Mails for the unit tests: one clean mail that no default rule fires on,
//! for each test to spoil in just the way it needs.

use crate::dem::mail::types::{AttachmentRef, Header, MailView, SenderStatus};

/// A wanted mail that scores zero under the default config.
pub fn clean_mail() -> MailView {
    MailView {
        id: "mail-1".to_string(),
        from: "Alice Example <alice@example.org>".to_string(),
        to: vec!["bob@example.net".to_string()],
        cc: vec![],
        subject: "Lunch on Friday".to_string(),
        date_ms: 1_700_000_000_000,
        message_id: "<1234@example.org>".to_string(),
        headers: vec![Header {
            name: "X-Mailer".to_string(),
            value: "Thunderbird".to_string(),
        }],
        body_preview: "Shall we meet at noon? The usual place.".to_string(),
        body_size_bytes: 40,
        attachments: vec![],
        sender: SenderStatus::Unknown,
    }
}

/// An attachment with the given name and media type.
pub fn attachment(name: &str, media_type: &str) -> AttachmentRef {
    AttachmentRef {
        hash: "0".repeat(64),
        name: name.to_string(),
        media_type: media_type.to_string(),
        size_bytes: 1234,
        splice_at: None,
    }
}
