//! Helpers shared by the host's in-process integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use dem_node::mailbox::{Incoming, Mailboxes, MailboxesConfig, Verb};
use dem_proto::ids::MailboxId;
use dem_proto::mail::AttachmentRef;
use dem_runtime::RuntimeConfig;

pub fn open(dir: &std::path::Path) -> Arc<Mailboxes> {
    Mailboxes::open(dir, RuntimeConfig::default(), MailboxesConfig::default())
        .expect("open host data dir")
}

pub fn id(name: &str) -> MailboxId {
    MailboxId::new(name).unwrap()
}

/// The exact bytes of the test message `mail` delivers: a text/plain
/// RFC 5322 message with an `X-Test: yes` field.
pub fn message(id: &str, from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.org\r\nCc: carol@example.org\r\n\
         Subject: {subject}\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <{id}@example.org>\r\nX-Test: yes\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

/// Mail `id` as a host takes it: `message` parsed into its index, with a
/// reference to an attachment that is no part of the bytes (as mail from
/// before real messages has).
pub fn mail(id: &str, from: &str, subject: &str, body: &str) -> Incoming {
    let attachments = vec![AttachmentRef {
        hash: "ab".repeat(32),
        name: "report.pdf".into(),
        media_type: "application/pdf".into(),
        size_bytes: 1234,
        splice_at: None,
    }];
    Incoming::parse(id.into(), message(id, from, subject, body), attachments)
        .expect("the test message parses")
}

/// `verb` on `who`'s mailbox, which must answer it.
pub async fn ask<V: Verb>(boxes: &Mailboxes, who: &str, verb: V) -> V::Answer {
    boxes
        .ask(&id(who), verb)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", V::NAME))
}
