//! Snapshot, then restore into a fresh Engine: the state digest is equal and
//! snapshotting again gives identical bytes. Also hibernation and waking.

mod common;

use common::{id, mail, open};
use dem_builtin as builtin;
use dem_node::mailbox::clock::HybridClock;
use dem_node::mailbox::{Request, Verb};
use dem_proto::ids::CodeHash;
use dem_proto::mail::{FlagState, MailFlags, Placement};
use dem_proto::mailbox::verbs::Stats;
use dem_runtime::{Runtime, RuntimeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restores_into_a_fresh_engine_bit_for_bit() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(a.path(), RuntimeConfig::default()).unwrap();
    let code = runtime.code().insert(builtin::MAILBOX).unwrap();
    let mut first = runtime
        .instantiate_mailbox(&code, "a".into())
        .await
        .unwrap();
    let clock = HybridClock::new(3);
    let place = Placement {
        folder: "INBOX".into(),
        flags: MailFlags::empty(),
        keywords: vec![],
        spam_score: None,
    };
    for i in 0..200 {
        let mut r = Request::Deliver {
            mail: mail(&format!("m{i}"), "x@y.org", "s", &"b".repeat(i)).mail,
            place: place.clone(),
        };
        first
            .call(Some(clock.context()), &mut r)
            .await
            .unwrap()
            .unwrap();
    }
    let add = FlagState {
        flags: MailFlags::SEEN,
        keywords: vec!["k".into()],
    };
    let none = FlagState {
        flags: MailFlags::empty(),
        keywords: vec![],
    };
    first
        .call(
            Some(clock.context()),
            &mut Request::SetFlags {
                id: "m3".into(),
                add,
                remove: none,
            },
        )
        .await
        .unwrap()
        .unwrap();
    first
        .call(
            Some(clock.context()),
            &mut Request::CreateFolder { name: "A/B".into() },
        )
        .await
        .unwrap()
        .unwrap();
    let (schema, bytes) = first.snapshot().await.unwrap();

    // A different process would have a different Engine and code dir.
    let fresh = Runtime::new(b.path(), RuntimeConfig::default()).unwrap();
    assert_eq!(fresh.code().insert(builtin::MAILBOX).unwrap(), code);
    let mut second = fresh.instantiate_mailbox(&code, "b".into()).await.unwrap();
    second.restore(schema, &bytes).await.unwrap().unwrap();
    let (schema2, bytes2) = second.snapshot().await.unwrap();
    assert_eq!(schema, schema2);
    assert_eq!(CodeHash::of(&bytes), CodeHash::of(&bytes2));
    assert_eq!(bytes, bytes2);
    let stats = |r| Stats::answer(r).unwrap();
    let s1 = stats(
        first
            .call(None, &mut Request::Stats)
            .await
            .unwrap()
            .unwrap(),
    );
    let s2 = stats(
        second
            .call(None, &mut Request::Stats)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(s1, s2);

    // A snapshot from a newer schema is refused with a clear error.
    let mut third = fresh.instantiate_mailbox(&code, "c".into()).await.unwrap();
    let refused = third
        .restore(schema + 100, &bytes)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused.describe().contains("newer"),
        "{}",
        refused.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernated_mailboxes_wake_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = open(dir.path());
    let alice = id("alice");
    boxes.create(&alice, None).await.unwrap();
    for i in 0..50 {
        boxes
            .deliver(&alice, mail(&format!("m{i}"), "x@y.org", "s", "b"))
            .await
            .unwrap();
    }
    let before = boxes.digest(&alice).await.unwrap();
    boxes.hibernate(&alice).await.unwrap();
    assert_eq!(boxes.digest(&alice).await.unwrap(), before);
    boxes
        .deliver(&alice, mail("late", "x@y.org", "s", "b"))
        .await
        .unwrap();
    let s = boxes.ask(&alice, Stats).await.unwrap();
    assert_eq!(s.mails, 51);
    boxes.shutdown().await;
}
