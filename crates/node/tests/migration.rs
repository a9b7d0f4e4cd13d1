//! The host side of a migration: the mailbox pauses (calls queue), its
//! export is imported elsewhere, and then either this host forwards every
//! call ("moved to H at epoch E"), or, if the move failed, the mailbox
//! carries on here intact.

mod common;

use common::{id, mail, open};
use dem_node::mailbox::actor::MoveState;
use dem_node::mailbox::{MailboxCallError, MovedTo};
use dem_node::replica::VersionVector;
use dem_proto::mailbox::verbs::Stats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_mailbox_forwards_queued_and_later_calls() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(a.path()), open(b.path()));
    let alice = id("alice");
    source.create(&alice, None).await.unwrap();
    let mut ahead = None;
    for i in 0..20 {
        source
            .deliver(&alice, mail(&format!("m{i}"), "x@y.org", "s", "b"))
            .await
            .unwrap();
        if i == 9 {
            // The state read ahead misses the later mails: the pause adds them.
            ahead = source.read_ahead(&alice);
        }
    }
    let digest = source.digest(&alice).await.unwrap();

    let migration = source.begin_migration(&alice, None, ahead).await.unwrap();
    // A call made while paused waits in the queue.
    let queued = {
        let source = source.clone();
        let alice = alice.clone();
        tokio::spawn(async move {
            source
                .deliver(&alice, mail("late", "x@y.org", "s", "b"))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!queued.is_finished(), "calls must queue during a move");

    target
        .import(&alice, migration.state.full().cloned().unwrap(), false)
        .await
        .unwrap();
    let to = MovedTo {
        host: "b".into(),
        addr: "127.0.0.2:4000".into(),
        epoch: 2,
    };
    // The local copy's delete is queued at once; the move's caller need
    // not wait for it, the test does.
    if let Some(removal) = migration.moved(to.clone()) {
        removal.await.unwrap();
    }

    let r = queued.await.unwrap();
    assert!(
        matches!(&r, Err(MailboxCallError::Moved { to: t, .. }) if *t == to),
        "{r:?}"
    );
    let r = source.ask(&alice, Stats).await;
    assert!(matches!(&r, Err(MailboxCallError::Moved { .. })), "{r:?}");
    assert!(
        !source.list().unwrap().contains(&alice),
        "the source keeps no copy"
    );
    assert_eq!(target.digest(&alice).await.unwrap(), digest);
    source.shutdown().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_leaves_the_mailbox_live_at_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(dir.path());
    let alice = id("alice");
    source.create(&alice, None).await.unwrap();
    source
        .deliver(&alice, mail("m1", "x@y.org", "s", "b"))
        .await
        .unwrap();
    let migration = source.begin_migration(&alice, None, None).await.unwrap();
    let queued = {
        let source = source.clone();
        let alice = alice.clone();
        tokio::spawn(async move {
            source
                .deliver(&alice, mail("m2", "x@y.org", "s", "b"))
                .await
        })
    };
    // The target died part-way: the move is abandoned.
    drop(migration);
    assert!(!queued.await.unwrap().unwrap().duplicate);
    let s = source.ask(&alice, Stats).await.unwrap();
    assert_eq!(s.mails, 2);
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_onto_an_older_copy_ships_only_the_missing_ops() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(a.path()), open(b.path()));
    let alice = id("alice");
    source.create(&alice, None).await.unwrap();
    for i in 0..10 {
        source
            .deliver(&alice, mail(&format!("m{i}"), "x@y.org", "s", "b"))
            .await
            .unwrap();
    }
    // The target keeps the copy it had, then the source takes 5 more mails.
    let old = source.export(&alice).await.unwrap();
    target.import(&alice, old, false).await.unwrap();
    for i in 10..15 {
        source
            .deliver(&alice, mail(&format!("m{i}"), "x@y.org", "s", "b"))
            .await
            .unwrap();
    }
    let digest = source.digest(&alice).await.unwrap();
    let (_, _, stale) = target.since(&alice, VersionVector::new(), 0).await.unwrap();

    let migration = source
        .begin_migration(&alice, Some(stale.clone()), None)
        .await
        .unwrap();
    let MoveState::Delta(delta) = &migration.state else {
        panic!("the window reaches back to the copy: expected a delta");
    };
    assert_eq!(delta.ops.len(), 5, "only the 5 new mails travel");
    assert_eq!(delta.base, stale);
    let ops = delta.ops.iter().map(|o| o.to_vec()).collect();
    assert_eq!(delta.messages.len(), 5, "with the 5 new messages");
    let vv = target
        .apply(&alice, ops, delta.messages.clone())
        .await
        .unwrap();
    assert_eq!(vv, delta.vv);
    assert_eq!(target.digest(&alice).await.unwrap(), digest);
    migration.stay();

    // A copy with a change of its own is not covered: the whole state.
    target
        .deliver(&alice, mail("own", "x@y.org", "s", "b"))
        .await
        .unwrap();
    let (_, _, diverged) = target.since(&alice, VersionVector::new(), 0).await.unwrap();
    let migration = source
        .begin_migration(&alice, Some(diverged), None)
        .await
        .unwrap();
    assert!(migration.state.full().is_some(), "expected the whole state");
    migration.stay();
    // The source carries on.
    source
        .deliver(&alice, mail("after", "x@y.org", "s", "b"))
        .await
        .unwrap();
}
