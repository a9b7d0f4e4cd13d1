//! Group commit: batches, concurrent callers, throughput.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use redb::Durability;
use tokio::sync::oneshot;

use super::super::writer::{Op, Request, Writer};
use super::*;

#[tokio::test]
async fn seq_conflicts_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("a", meta(1)).await.unwrap();
    // Submitted without awaiting, so most land in one batch; the outcome
    // must be the same however they are split.
    let commits = [
        store.append("a", 1, b"1".to_vec()),
        store.append("a", 3, b"3".to_vec()),
        store.append("a", 2, b"2".to_vec()),
        store.append("a", 2, b"2 again".to_vec()),
        store.append("nobody", 1, b"x".to_vec()),
        store.append("a", 3, b"3".to_vec()),
    ];
    let mut results = Vec::new();
    for c in commits {
        results.push(c.await);
    }
    let conflict = |expected, got| {
        Err(CommitError::SeqConflict {
            id: "a".into(),
            expected,
            got,
        })
    };
    assert_eq!(
        results,
        vec![
            Ok(()),
            conflict(2, 3),
            Ok(()),
            conflict(3, 2),
            Err(CommitError::UnknownMailbox("nobody".into())),
            Ok(()),
        ]
    );
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.last_seq, 3);
    assert_eq!(rec.tail[1], (2, b"2".to_vec()));
}

/// Drives the writer's transaction directly so the requests are certainly
/// in one batch.
#[test]
fn bad_request_in_one_batch_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.shutdown();
    let (_tx, rx) = std::sync::mpsc::channel();
    let writer = Writer {
        db: Arc::clone(&store.inner.db),
        rx,
        ops_max: 100,
        durability: Durability::Immediate,
        commits: Arc::new(AtomicU64::new(0)),
        commit_hook: Arc::default(),
        blobs: Arc::clone(&store.inner.blobs),
        packs: Arc::clone(&store.inner.packs),
    };
    let request = |id: &str, op| Request {
        id: id.into(),
        op,
        reply: oneshot::channel().0,
    };
    let append = |seq: u64| Op::Append {
        seq,
        op: vec![seq as u8],
    };
    let batch = vec![
        request("a", Op::Create(meta(1))),
        request("a", append(1)),
        request("a", Op::Create(meta(2))),
        request("a", append(5)),
        request("a", Op::Snapshot(snap(9, b"s"))),
        request("b", Op::Remove),
        request("a", append(2)),
        request("a", Op::Snapshot(snap(1, b"s1"))),
        request("a", append(3)),
    ];
    let results = writer.apply(&batch).unwrap();
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert_eq!(results[2], Err(CommitError::Exists("a".into())));
    assert!(matches!(
        results[3],
        Err(CommitError::SeqConflict {
            expected: 2,
            got: 5,
            ..
        })
    ));
    assert!(matches!(results[4], Err(CommitError::BadSnapshot(_))));
    assert_eq!(results[5], Err(CommitError::UnknownMailbox("b".into())));
    assert_eq!(&results[6..], &[Ok(()), Ok(()), Ok(())]);
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.meta, meta(1));
    assert_eq!(rec.snapshot, Some(snap(1, b"s1")));
    assert_eq!(rec.tail, vec![(2, vec![2]), (3, vec![3])]);
    assert_eq!(raw_log(&store, "a"), vec![2, 3]);
    assert!(store.load("b").unwrap().is_none());
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_survive_reopen() {
    const MAILBOXES: usize = 64;
    const OPS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut tasks = Vec::new();
        for m in 0..MAILBOXES {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("mb{m}");
                store.create(&id, meta(m as u8)).await.unwrap();
                for seq in 1..=OPS {
                    store
                        .append(&id, seq, format!("{id}/{seq}").into_bytes())
                        .await
                        .unwrap();
                    if seq == OPS / 2 {
                        store.snapshot(&id, snap(seq, id.as_bytes())).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let requests = MAILBOXES as u64 * (OPS + 2);
        assert!(store.commits() < requests, "{} commits", store.commits());
    }
    let store = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || open(&dir)
    })
    .await
    .unwrap();
    assert_eq!(store.list().unwrap().len(), MAILBOXES);
    for m in 0..MAILBOXES {
        let id = format!("mb{m}");
        let rec = store.load(&id).unwrap().unwrap();
        assert_eq!(rec.meta, meta(m as u8));
        assert_eq!(rec.last_seq, OPS);
        assert_eq!(rec.snapshot, Some(snap(OPS / 2, id.as_bytes())));
        let seqs: Vec<u64> = rec.tail.iter().map(|t| t.0).collect();
        assert_eq!(seqs, (OPS / 2 + 1..=OPS).collect::<Vec<_>>());
        assert_eq!(rec.tail[0].1, format!("{id}/{}", OPS / 2 + 1).into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_grouped() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let creates: Vec<_> = (0..N)
        .map(|m| store.create(&format!("mb{m}"), meta(1)))
        .collect();
    for c in creates {
        c.await.unwrap();
    }
    let before = store.commits();
    let tasks: Vec<_> = (0..N)
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move { store.append(&format!("mb{m}"), 1, vec![7; 1024]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = store.commits() - before;
    assert!(
        commits <= N as u64 / 10,
        "{N} appends took {commits} commits"
    );
}

/// Throughput and wake-up latency on this machine's disk; run with
/// `cargo test --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_durable_appends_and_load() {
    const MAILBOXES: usize = 256;
    const OPS: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for m in 0..MAILBOXES {
        store.create(&format!("mb{m}"), meta(1)).await.unwrap();
    }
    let (started, before) = (Instant::now(), store.commits());
    let tasks: Vec<_> = (0..MAILBOXES)
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("mb{m}");
                for seq in 1..=OPS {
                    store.append(&id, seq, vec![b'm'; 1024]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = MAILBOXES as u64 * OPS;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} durable 1 KiB appends in {secs:.2}s = {:.0}/s, {} commits",
        n as f64 / secs,
        store.commits() - before
    );

    store
        .snapshot("mb0", snap(90, &vec![5; 10 << 20]))
        .await
        .unwrap();
    let store2 = store.clone();
    let (rec, took) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let rec = store2.load("mb0").unwrap().unwrap();
        (rec, t.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(rec.snapshot.unwrap().bytes.len(), 10 << 20);
    assert_eq!(rec.tail.len(), 10);
    println!("load of a 10 MiB snapshot + 10 ops took {took:?}");
    let t = Instant::now();
    store.load("mb0").unwrap().unwrap();
    println!("again (redb cache warm): {:?}", t.elapsed());
}

/// The hook sees every durable commit, once, with its time: what a host's
/// fsync histogram counts.
#[tokio::test]
async fn the_commit_hook_is_told_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&told);
    assert!(store.on_commit(Arc::new(move |d| sink.lock().unwrap().push(d))));
    assert!(!store.on_commit(Arc::new(|_| {})), "one hook per store");
    store.create("mb", meta(1)).await.unwrap();
    store.append("mb", 1, b"op".to_vec()).await.unwrap();
    let n = told.lock().unwrap().len() as u64;
    assert_eq!(n, store.commits());
    assert!(n >= 1);
}
