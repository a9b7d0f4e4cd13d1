//! Helpers shared by the unit tests: fixed contexts and sample mails, so
//! tests stay short and deterministic.

use crate::state::Mailbox;
use crate::wit::{
    AttachmentRef, Delivered, FlagState, Header, MailFlags, NewMail, OpContext, Placement,
};

/// Context of the `n`-th operation: time and hlc grow with `n`.
pub fn ctx(n: u64) -> OpContext {
    OpContext {
        now_ms: 1_700_000_000_000 + n as i64 * 1000,
        hlc: n,
        replica: 1,
    }
}

pub fn mail(id: &str, date_ms: i64) -> NewMail {
    NewMail {
        id: id.to_string(),
        from: "Alice <alice@example.com>".into(),
        to: vec!["bob@example.com".into()],
        cc: vec!["carol@example.org".into()],
        subject: format!("Hello {id}"),
        date_ms,
        message_id: format!("<{id}@example.com>"),
        in_reply_to: None,
        headers: vec![Header {
            name: "X-Test".into(),
            value: id.into(),
        }],
        body: format!("Body of {id}."),
        attachments: vec![],
    }
}

pub fn attachment() -> AttachmentRef {
    AttachmentRef {
        hash: "ab".repeat(32),
        name: "a.pdf".into(),
        media_type: "application/pdf".into(),
        size_bytes: 1234,
    }
}

pub fn place(folder: &str) -> Placement {
    Placement {
        folder: folder.into(),
        flags: MailFlags::empty(),
        keywords: vec![],
        spam_score: None,
    }
}

pub fn flags(f: MailFlags, kws: &[&str]) -> FlagState {
    FlagState {
        flags: f,
        keywords: kws.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn none() -> FlagState {
    flags(MailFlags::empty(), &[])
}

/// Delivers `mail(id, date)` into `folder` with context `n`.
pub fn put(mb: &mut Mailbox, n: u64, id: &str, date: i64, folder: &str) -> Delivered {
    mb.deliver(&ctx(n), mail(id, date), place(folder))
        .expect("test delivery")
}

pub fn ids(items: &[crate::wit::MailSummary]) -> Vec<&str> {
    items.iter().map(|s| s.id.as_str()).collect()
}
