//! A host carrying more mailboxes than it has instance slots: bursts of
//! creates on a fresh data dir compile the code once and all succeed;
//! deliveries to far more mailboxes than slots all succeed by hibernating
//! the least recently used idle ones; and a hibernated mailbox costs no
//! running actor.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{id, mail};
use dem_builtin as builtin;
use dem_node::mailbox::{Mailboxes, MailboxesConfig};
use dem_proto::ids::CodeHash;
use dem_proto::mail::GetParts;
use dem_proto::mailbox::verbs::{Get, Stats};
use dem_runtime::RuntimeConfig;
use tokio::task::JoinSet;

fn runtime(slots: u32) -> RuntimeConfig {
    RuntimeConfig {
        instance_slots: Some(slots),
        ..RuntimeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_creates_on_a_fresh_host_all_succeed_and_compile_once() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(dir.path(), runtime(64), MailboxesConfig::default()).unwrap();
    let mut creates = JoinSet::new();
    for n in 0..1000 {
        let boxes = boxes.clone();
        creates.spawn(async move { boxes.create(&id(&format!("box{n}")), None).await });
    }
    let mut failed = Vec::new();
    while let Some(done) = creates.join_next().await {
        if let Err(e) = done.unwrap() {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} creates failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(boxes.runtime().code().compiles(), 1);
    // The first wakes, all at once, are just as safe.
    let mut wakes = JoinSet::new();
    for n in 0..200 {
        let boxes = boxes.clone();
        wakes.spawn(async move {
            let who = id(&format!("box{n}"));
            boxes
                .deliver(&who, mail(&format!("m{n}"), "x@y.org", "hi", "first"))
                .await
        });
    }
    while let Some(done) = wakes.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(boxes.runtime().code().compiles(), 1);
    assert_eq!(boxes.list().unwrap().len(), 1000);
    boxes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_mailboxes_share_sixty_four_slots_without_a_failure() {
    const MAILBOXES: usize = 2000;
    const SLOTS: u32 = 64;
    let dir = tempfile::tempdir().unwrap();
    let boxes = Mailboxes::open(dir.path(), runtime(SLOTS), MailboxesConfig::default()).unwrap();
    let who = |n: usize| id(&format!("user{n}"));
    let mut creates = JoinSet::new();
    for n in 0..MAILBOXES {
        let boxes = boxes.clone();
        creates.spawn(async move { boxes.create(&who(n), None).await });
    }
    while let Some(done) = creates.join_next().await {
        done.unwrap().unwrap();
    }
    // A mailbox with a filter plugin needs two slots while it delivers.
    let spam = Mailboxes::builtin_plugin("spam-score").unwrap();
    let bytes = boxes.runtime().code().bytes(&spam).unwrap();
    for n in (0..MAILBOXES).step_by(100) {
        boxes
            .install_plugin(&who(n), "spam-score", &bytes, "", 1)
            .await
            .unwrap();
    }

    let deliver_all = |round: usize| {
        let mut deliveries = JoinSet::new();
        for n in 0..MAILBOXES {
            let boxes = boxes.clone();
            deliveries.spawn(async move {
                let mail = mail(&format!("r{round}-{n}"), "x@y.org", "hello", "body");
                boxes
                    .deliver(&who(n), mail)
                    .await
                    .map_err(|e| e.to_string())
            });
        }
        deliveries
    };
    let mut deliveries = deliver_all(0);
    let mut failed = Vec::new();
    while let Some(done) = deliveries.join_next().await {
        if let Err(e) = done.unwrap() {
            failed.push(e);
        }
    }
    assert!(
        failed.is_empty(),
        "{} deliveries failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let (awake, slots) = boxes.awake();
    assert!(awake <= SLOTS as usize, "{awake} awake with {SLOTS} slots");
    assert!(slots.evictions > 0, "{slots:?}");
    assert_eq!(slots.busy_refusals, 0, "{slots:?}");

    // Every mail is there, read back through more wakes and evictions.
    let mut reads = JoinSet::new();
    for n in 0..MAILBOXES {
        let boxes = boxes.clone();
        reads.spawn(async move {
            let get = Get {
                id: format!("r0-{n}"),
                parts: GetParts { message: None },
            };
            boxes
                .ask(&who(n), get)
                .await
                .map_err(|e| format!("{n}: {e}"))
        });
    }
    while let Some(done) = reads.join_next().await {
        let detail = done.unwrap().unwrap();
        assert_eq!(detail.detail.summary.subject, "hello");
    }
    let (_, slots) = boxes.awake();
    assert_eq!(slots.busy_refusals, 0, "{slots:?}");
    // Hibernated mailboxes keep no actor: at most the awake ones and the
    // few finishing remain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = boxes.actors_running();
    assert!(running <= 2 * SLOTS as usize, "{running} actors still run");
    boxes.shutdown().await;
}

/// When every slot is busy inside a long call for longer than the bound,
/// the caller is told "busy, retry", and nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_slots_give_a_retryable_refusal_not_an_instantiation_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        instance_slots: Some(1),
        slot_wait_ms: 200,
        ..RuntimeConfig::default()
    };
    let boxes = Mailboxes::open(dir.path(), config, MailboxesConfig::default()).unwrap();
    let (slow, other) = (id("slow"), id("other"));
    boxes.create(&slow, None).await.unwrap();
    boxes.create(&other, None).await.unwrap();
    // The slow mailbox delivers through a filter that spins until its fuel
    // runs out, holding the only slot (its own) the whole time, and needs
    // a second for the filter, which it cannot get either.
    let looping = std::fs::read(builtin::TEST_PLUGIN_LOOP_PATH).unwrap();
    let err = boxes
        .install_plugin(&slow, "loop", &looping, "", 1)
        .await
        .map(drop);
    // Installing needs only the mailbox's slot.
    err.unwrap();
    let boxes2 = boxes.clone();
    let slow_delivery = tokio::spawn(async move {
        boxes2
            .deliver(&slow, mail("s1", "x@y.org", "slow", "body"))
            .await
            .map(drop)
    });
    let err = slow_delivery.await.unwrap().unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(err.to_string().contains("busy, retry"), "{err}");
    // The other mailbox gets the slot once the first is idle again.
    boxes
        .deliver(&other, mail("o1", "x@y.org", "fine", "body"))
        .await
        .unwrap();
    let stats = boxes.ask(&other, Stats).await.unwrap();
    assert_eq!(stats.mails, 1);
    let code = CodeHash::of(&looping);
    assert!(boxes.runtime().code().contains(&code));
    let _: Arc<Mailboxes> = boxes;
}

/// An idle mailbox hibernates and its actor ends; calls that race with
/// that end are carried by the next actor, and none is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_retiring_actor_all_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = MailboxesConfig {
        idle_hibernate: Duration::from_millis(5),
        ..MailboxesConfig::default()
    };
    let boxes = Mailboxes::open(dir.path(), runtime(16), config).unwrap();
    let alice = id("alice");
    boxes.create(&alice, None).await.unwrap();
    let mut sent = 0u32;
    for round in 0..60u32 {
        // Bursts land just before, during and after the idle deadline.
        tokio::time::sleep(Duration::from_micros(u64::from(round % 12) * 700)).await;
        let mut burst = JoinSet::new();
        for k in 0..4 {
            let boxes = boxes.clone();
            let alice = alice.clone();
            burst.spawn(async move {
                let m = mail(&format!("m{round}-{k}"), "x@y.org", "race", "body");
                boxes.deliver(&alice, m).await
            });
        }
        while let Some(done) = burst.join_next().await {
            let delivered = done.unwrap().unwrap();
            assert!(!delivered.duplicate);
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(boxes.actors_running(), 0, "an idle mailbox keeps no actor");
    let stats = boxes.ask(&alice, Stats).await.unwrap();
    assert_eq!(stats.mails, sent);
    let (awake, slots) = boxes.awake();
    assert_eq!(awake, 1);
    assert_eq!(slots.busy_refusals, 0);
    boxes.shutdown().await;
}
