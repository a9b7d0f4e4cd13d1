//! Hostile guests: plugins that loop, bomb memory or panic, and a mailbox
//! whose code loops. Each is trapped, no mail is lost, and the host keeps
//! serving other mailboxes.

mod common;

use std::time::Duration;

use common::{id, mail};
use dem_builtin as builtin;
use dem_node::mailbox::{Incoming, MailboxCallError, Mailboxes, MailboxesConfig};
use dem_proto::ids::CodeHash;
use dem_proto::mailbox::verbs::{CreateFolder, Stats};
use dem_runtime::RuntimeConfig;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        mailbox_fuel_per_call: 2_000_000_000,
        plugin_fuel_per_call: 50_000_000,
        ..RuntimeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_skipped_and_the_mail_still_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(dir.path(), config(), MailboxesConfig::default()).unwrap();
    let (alice, bob) = (id("alice"), id("bob"));
    boxes.create(&alice, None).await.unwrap();
    boxes.create(&bob, None).await.unwrap();
    let hostile = [
        ("loop", builtin::TEST_PLUGIN_LOOP_PATH),
        ("membomb", builtin::TEST_PLUGIN_MEMBOMB_PATH),
        ("panic", builtin::TEST_PLUGIN_PANIC_PATH),
    ];
    for (order, (name, path)) in hostile.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        boxes
            .install_plugin(&alice, name, &bytes, "", order as u32)
            .await
            .unwrap();
    }
    // Bob keeps being served while alice's plugins misbehave.
    let bob_side = {
        let boxes = boxes.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                boxes
                    .deliver(&bob, mail(&format!("b{i}"), "x@y.org", "hi", "hi"))
                    .await
                    .unwrap();
            }
        })
    };
    let delivered = boxes
        .deliver(&alice, mail("m1", "x@y.org", "hello", "body"))
        .await
        .unwrap();
    assert_eq!(delivered.folder, "INBOX");
    bob_side.await.unwrap();
    let s = boxes.ask(&bob, Stats).await.unwrap();
    assert_eq!(s.mails, 20);
    let s = boxes.ask(&alice, Stats).await.unwrap();
    assert_eq!(s.mails, 1);
    boxes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_mailbox_is_trapped_and_the_host_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(dir.path(), config(), MailboxesConfig::default()).unwrap();
    let bytes = std::fs::read(builtin::TEST_MAILBOX_LOOP_PATH).unwrap();
    let code: CodeHash = boxes.runtime().code().insert(&bytes).unwrap();
    let (evil, good) = (id("evil"), id("good"));
    boxes.create(&evil, Some(code)).await.unwrap();
    boxes.create(&good, None).await.unwrap();

    let started = std::time::Instant::now();
    let r = boxes.deliver(&evil, mail("m1", "x@y.org", "s", "b")).await;
    assert!(matches!(r, Err(MailboxCallError::Trap(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // The instance was rebuilt: calls that do not loop still work.
    assert!(boxes.ask(&evil, Stats).await.is_ok());
    // Its snapshot claims 3 GiB: refused before the host allocates it.
    let err = boxes.digest(&evil).await.unwrap_err();
    assert!(err.to_string().contains("snapshot is too large"), "{err}");
    // Other mailboxes never noticed.
    let d = boxes
        .deliver(&good, mail("m1", "x@y.org", "s", "b"))
        .await
        .unwrap();
    assert!(!d.duplicate);
    boxes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(dir.path(), config(), MailboxesConfig::default()).unwrap();
    let alice = id("alice");
    boxes.create(&alice, None).await.unwrap();
    boxes
        .deliver(&alice, mail("keep", "x@y.org", "s", "b"))
        .await
        .unwrap();

    // An oversized mail is refused before it reaches the mailbox: a host
    // takes at most the stored limit.
    let huge = "x".repeat(40 << 20);
    let r = Incoming::parse(
        "huge".into(),
        common::message("huge", "x@y.org", "s", &huge),
        vec![],
    );
    let e = r.unwrap_err();
    assert!(e.to_string().contains("STORED_BYTES_MAX"), "{e}");

    // An oversized folder name, and too many folders.
    let r = boxes
        .ask(
            &alice,
            CreateFolder {
                name: "n".repeat(10_000),
            },
        )
        .await;
    assert!(matches!(r, Err(MailboxCallError::Refused(_))), "{r:?}");
    let mut created = 0;
    let err = loop {
        match boxes
            .ask(
                &alice,
                CreateFolder {
                    name: format!("f{created}"),
                },
            )
            .await
        {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created < 100_000, "no folder limit");
    };
    assert!(err.to_string().contains("limit"), "{err}");

    // Bad names at the host boundary.
    assert!(dem_proto::ids::MailboxId::new("../etc").is_err());
    assert!(dem_proto::ids::MailboxId::new("x".repeat(500)).is_err());

    // A code hash mismatch.
    let claimed = CodeHash::of(b"real");
    assert!(
        boxes
            .runtime()
            .code()
            .insert_expecting(&claimed, b"fake")
            .is_err()
    );

    // Nothing was lost.
    let s = boxes.ask(&alice, Stats).await.unwrap();
    assert_eq!((s.mails as usize, s.folders as usize), (1, created + 1));
    boxes.shutdown().await;
}
