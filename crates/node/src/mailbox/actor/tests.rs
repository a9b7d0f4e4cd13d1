//! Tests of what the actor logs for a delivery: the placement the guest
//! reports it applied, not the one asked for. Replaying the log (as an
//! import, a restart or a replica does, none of which holds the folder
//! limit) must give the origin's state byte for byte, on each path: filed
//! as asked, fallen back to INBOX at the folder limit, and a duplicate of
//! either.

use std::sync::Arc;

use super::super::{MailboxCallError as E, Mailboxes, MailboxesConfig};
use super::{Op, Request, Response};
use dem_proto::ids::MailboxId;
use dem_proto::mail::{Delivered, MailFlags, MailboxError, Placement};
use dem_runtime::RuntimeConfig;

fn open(dir: &std::path::Path) -> Arc<Mailboxes> {
    let config = MailboxesConfig {
        // Keep every op in the log tail, where the test reads it.
        snapshot_log_bytes_min: u64::MAX,
        ..MailboxesConfig::default()
    };
    Mailboxes::open(dir, RuntimeConfig::default(), config).unwrap()
}

fn place(folder: &str, keywords: &[&str]) -> Placement {
    Placement {
        folder: folder.into(),
        flags: MailFlags::SEEN,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        spam_score: None,
    }
}

async fn deliver(boxes: &Mailboxes, who: &MailboxId, id: &str, place: Placement) -> Delivered {
    let message = b"From: a@x\r\nTo: b@y\r\nSubject: s\r\n\r\nhi\r\n".to_vec();
    let m = super::super::Incoming::parse(id.into(), message, vec![])
        .unwrap()
        .mail;
    let request = Request::Deliver { mail: m, place };
    match boxes.call(who, request).await.unwrap() {
        Response::Delivered(d) => d,
        other => panic!("{other:?}"),
    }
}

/// Creates folders until the guest refuses one for its folder limit.
/// Concurrently, so their commits share fsyncs.
async fn fill_folders(boxes: &Arc<Mailboxes>, who: &MailboxId) {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1100 {
        let (boxes, who) = (boxes.clone(), who.clone());
        let name = format!("f{i}");
        calls.spawn(async move { boxes.call(&who, Request::CreateFolder { name }).await });
    }
    let mut refused = 0;
    while let Some(r) = calls.join_next().await {
        match r.unwrap() {
            Ok(_) => {}
            Err(E::Refused(MailboxError::LimitReached(_))) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "the folder limit was never reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_logged_where_the_guest_filed_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let origin = open(a.path());
    let who = MailboxId::new("alice").unwrap();
    origin.create(&who, None).await.unwrap();

    // As asked, in the form the guest keeps (keywords once each).
    let d = deliver(&origin, &who, "a", place("Lists/rust", &["k", "k"])).await;
    assert_eq!((d.folder.as_str(), d.duplicate), ("Lists/rust", false));
    // A duplicate is logged with its own placement, not where the mail is.
    let d = deliver(&origin, &who, "a", place("Other", &[])).await;
    assert_eq!((d.folder.as_str(), d.duplicate), ("Lists/rust", true));
    fill_folders(&origin, &who).await;
    // At the folder limit: filed into INBOX, and a replay must not make
    // the folder asked for.
    let d = deliver(&origin, &who, "b", place("new", &[])).await;
    assert_eq!((d.folder.as_str(), d.duplicate), ("INBOX", false));
    let d = deliver(&origin, &who, "a", place("newer", &[])).await;
    assert_eq!((d.folder.as_str(), d.duplicate), ("Lists/rust", true));

    let exported = origin.export(&who).await.unwrap();
    let logged: Vec<(String, Placement)> = exported
        .tail
        .iter()
        .map(|(_, bytes)| Op::decode(bytes).unwrap().request)
        .filter_map(|r| match r {
            Request::Deliver { mail, place } => Some((mail.id, place)),
            _ => None,
        })
        .collect();
    let want = [
        ("a", place("Lists/rust", &["k"])),
        ("a", place("Other", &[])),
        ("b", place("INBOX", &[])),
        ("a", place("INBOX", &[])),
    ]
    .map(|(id, p)| (id.to_string(), p));
    assert_eq!(logged, want);

    // The import replays that tail into a fresh instance.
    let copy = open(b.path());
    copy.import(&who, exported, false).await.unwrap();
    assert_eq!(
        copy.digest(&who).await.unwrap(),
        origin.digest(&who).await.unwrap()
    );
    origin.shutdown().await;
    copy.shutdown().await;
}
