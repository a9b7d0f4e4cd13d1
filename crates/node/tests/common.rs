//! Helpers shared by the host's in-process integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use dem_node::mailbox::{Mailboxes, MailboxesConfig, Verb};
use dem_proto::ids::MailboxId;
use dem_proto::mail::{AttachmentRef, Header, NewMail};
use dem_runtime::RuntimeConfig;

pub fn open(dir: &std::path::Path) -> Arc<Mailboxes> {
    Mailboxes::open(dir, RuntimeConfig::default(), MailboxesConfig::default())
        .expect("open host data dir")
}

pub fn id(name: &str) -> MailboxId {
    MailboxId::new(name).unwrap()
}

pub fn mail(id: &str, from: &str, subject: &str, body: &str) -> NewMail {
    NewMail {
        id: id.into(),
        from: from.into(),
        to: vec!["alice@example.org".into()],
        cc: vec!["carol@example.org".into()],
        subject: subject.into(),
        date_ms: 1_700_000_000_000 + id.len() as i64,
        message_id: format!("<{id}@example.org>"),
        in_reply_to: None,
        headers: vec![Header {
            name: "X-Test".into(),
            value: "yes".into(),
        }],
        body: body.into(),
        attachments: vec![AttachmentRef {
            hash: "ab".repeat(32),
            name: "report.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 1234,
        }],
    }
}

/// `verb` on `who`'s mailbox, which must answer it.
pub async fn ask<V: Verb>(boxes: &Mailboxes, who: &str, verb: V) -> V::Answer {
    boxes
        .ask(&id(who), verb)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", V::NAME))
}
