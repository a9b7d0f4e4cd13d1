//! Tests of the mailbox store against real redb files in temp dirs: single
//! operations here, batching and concurrency in `concurrency.rs`.

mod concurrency;
mod files;
mod messages;
mod search;
mod staged_log;

use redb::ReadableDatabase;

use super::tables::LOG;
use super::*;

fn meta(n: u8) -> MailboxMeta {
    MailboxMeta {
        code_hash: [n; 32],
        created_ms: 1_700_000_000_000 + i64::from(n),
    }
}

fn open(dir: &Path) -> MailboxStore {
    MailboxStore::open(dir, StoreConfig::default()).unwrap()
}

fn snap(seq: u64, bytes: &[u8]) -> SnapshotRecord {
    SnapshotRecord {
        seq,
        schema_version: 3,
        bytes: bytes.to_vec().into(),
        vv: Default::default(),
    }
}

/// Raw LOG seqs of `id`, bypassing the meta record.
fn raw_log(store: &MailboxStore, id: &str) -> Vec<u64> {
    let txn = store.inner.db.begin_read().unwrap();
    let table = txn.open_table(LOG).unwrap();
    table
        .range((id, 0u64)..=(id, u64::MAX))
        .unwrap()
        .map(|e| e.unwrap().0.value().1)
        .collect()
}

fn append_n(store: &MailboxStore, id: &str, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        store
            .append(id, seq, format!("op{seq}").into_bytes())
            .wait_blocking()
            .unwrap();
    }
}
#[test]
fn create_append_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.load("a").unwrap().is_none());
    store.create("a", meta(1)).wait_blocking().unwrap();
    assert_eq!(store.last_seq("a").unwrap(), Some(0));
    append_n(&store, "a", 1..=3);
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.meta, meta(1));
    assert!(rec.snapshot.is_none());
    assert_eq!(rec.last_seq, 3);
    let expected: Vec<_> = (1..=3)
        .map(|s| (s, format!("op{s}").into_bytes()))
        .collect();
    assert_eq!(rec.tail, expected);
    assert_eq!(store.meta("a").unwrap(), Some(meta(1)));
    assert_eq!(store.meta("b").unwrap(), None);
    assert_eq!(
        store.create("a", meta(2)).wait_blocking(),
        Err(CommitError::Exists("a".into()))
    );
    assert_eq!(
        store.append("b", 1, vec![1]).wait_blocking(),
        Err(CommitError::UnknownMailbox("b".into()))
    );
}
#[test]
fn snapshot_compacts_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking().unwrap();
    append_n(&store, "a", 1..=10);
    store
        .snapshot("a", snap(6, b"state6"))
        .wait_blocking()
        .unwrap();
    assert_eq!(raw_log(&store, "a"), (7..=10).collect::<Vec<_>>());
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.snapshot, Some(snap(6, b"state6")));
    assert_eq!(
        rec.tail.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    assert_eq!(rec.tail[0].1, b"op7");
    assert_eq!(rec.last_seq, 10);
    let usage = store.usage("a").unwrap().unwrap();
    assert_eq!(
        usage,
        MailboxUsage {
            snapshot_seq: Some(6),
            snapshot_bytes: 6,
            log_entries: 4,
            log_bytes: 3 + 3 + 3 + 4,
        }
    );
    // A snapshot at the last seq empties the log; the same seq again is a
    // permitted rewrite (e.g. after a schema migration).
    store
        .snapshot("a", snap(10, b"state10"))
        .wait_blocking()
        .unwrap();
    store
        .snapshot("a", snap(10, b"again"))
        .wait_blocking()
        .unwrap();
    let rec = store.load("a").unwrap().unwrap();
    assert!(rec.tail.is_empty());
    assert_eq!(rec.last_seq, 10);
    assert_eq!(rec.snapshot.unwrap().bytes, b"again"[..]);
    assert!(raw_log(&store, "a").is_empty());
    append_n(&store, "a", 11..=11);
    assert_eq!(
        store.load("a").unwrap().unwrap().tail,
        vec![(11, b"op11".to_vec())]
    );
}

#[test]
fn snapshot_range_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.snapshot("a", snap(0, b"")).wait_blocking(),
        Err(CommitError::UnknownMailbox("a".into()))
    );
    store.create("a", meta(1)).wait_blocking().unwrap();
    // Seq 0 is the state before any op, allowed on a fresh mailbox.
    store
        .snapshot("a", snap(0, b"empty"))
        .wait_blocking()
        .unwrap();
    append_n(&store, "a", 1..=5);
    let err = store.snapshot("a", snap(6, b"x")).wait_blocking();
    assert!(matches!(err, Err(CommitError::BadSnapshot(_))), "{err:?}");
    store.snapshot("a", snap(4, b"s4")).wait_blocking().unwrap();
    let err = store.snapshot("a", snap(3, b"x")).wait_blocking();
    assert!(matches!(err, Err(CommitError::BadSnapshot(_))), "{err:?}");
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.snapshot, Some(snap(4, b"s4")));
    assert_eq!(rec.tail, vec![(5, b"op5".to_vec())]);
}

#[test]
fn import_fresh_exists_replace_and_bad_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tail = |seqs: &[u64]| seqs.iter().map(|&s| (s, vec![s as u8])).collect::<Vec<_>>();
    store
        .import("a", meta(1), Some(snap(10, b"s10")), tail(&[11, 12]), false)
        .wait_blocking()
        .unwrap();
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!((rec.meta, rec.last_seq), (meta(1), 12));
    assert_eq!(rec.snapshot, Some(snap(10, b"s10")));
    assert_eq!(rec.tail, tail(&[11, 12]));
    append_n(&store, "a", 13..=13);

    assert_eq!(
        store
            .import("a", meta(2), None, vec![], false)
            .wait_blocking(),
        Err(CommitError::Exists("a".into()))
    );
    // Replacing without a snapshot removes the old snapshot and log.
    store
        .import("a", meta(2), None, tail(&[1, 2]), true)
        .wait_blocking()
        .unwrap();
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!((rec.meta, rec.last_seq), (meta(2), 2));
    assert!(rec.snapshot.is_none());
    assert_eq!(rec.tail, tail(&[1, 2]));
    assert_eq!(raw_log(&store, "a"), vec![1, 2]);

    // A snapshot alone: last_seq is the snapshot's.
    store
        .import("b", meta(3), Some(snap(7, b"s7")), vec![], false)
        .wait_blocking()
        .unwrap();
    assert_eq!(store.last_seq("b").unwrap(), Some(7));
    store
        .import("c", meta(3), None, vec![], false)
        .wait_blocking()
        .unwrap();
    assert_eq!(store.last_seq("c").unwrap(), Some(0));

    for (snapshot, bad) in [
        (None, tail(&[2, 3])),
        (None, tail(&[1, 3])),
        (Some(snap(5, b"")), tail(&[5, 6])),
        (Some(snap(5, b"")), tail(&[6, 6])),
        (Some(snap(5, b"")), tail(&[7])),
    ] {
        let err = store
            .import("d", meta(4), snapshot, bad, true)
            .wait_blocking();
        assert!(matches!(err, Err(CommitError::BadSnapshot(_))), "{err:?}");
    }
    assert!(store.load("d").unwrap().is_none());
    // A refused replace leaves the old mailbox untouched.
    let err = store
        .import("a", meta(9), None, tail(&[2]), true)
        .wait_blocking();
    assert!(matches!(err, Err(CommitError::BadSnapshot(_))));
    assert_eq!(store.load("a").unwrap().unwrap().tail, tail(&[1, 2]));
}

#[test]
fn remove_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.list().unwrap().is_empty());
    for id in ["zed", "alice", "bob", "Carol"] {
        store.create(id, meta(1)).wait_blocking().unwrap();
    }
    append_n(&store, "bob", 1..=4);
    store
        .snapshot("bob", snap(2, b"s"))
        .wait_blocking()
        .unwrap();
    assert_eq!(store.list().unwrap(), vec!["Carol", "alice", "bob", "zed"]);
    store.remove("bob").wait_blocking().unwrap();
    assert!(store.load("bob").unwrap().is_none());
    assert!(store.usage("bob").unwrap().is_none());
    assert!(raw_log(&store, "bob").is_empty());
    assert_eq!(store.list().unwrap(), vec!["Carol", "alice", "zed"]);
    assert_eq!(
        store.remove("bob").wait_blocking(),
        Err(CommitError::UnknownMailbox("bob".into()))
    );
    // A re-created mailbox starts from scratch.
    store.create("bob", meta(2)).wait_blocking().unwrap();
    let rec = store.load("bob").unwrap().unwrap();
    assert!(rec.snapshot.is_none() && rec.tail.is_empty() && rec.last_seq == 0);
}

#[test]
fn durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let clone = store.clone();
        store.create("a", meta(1)).wait_blocking().unwrap();
        append_n(&clone, "a", 1..=5);
        store.snapshot("a", snap(3, b"s3")).wait_blocking().unwrap();
        // Queued but not awaited: the last drop must still commit it.
        drop(store.append("a", 6, b"op6".to_vec()));
    }
    let store = open(dir.path());
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.snapshot, Some(snap(3, b"s3")));
    assert_eq!(
        rec.tail.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(rec.last_seq, 6);
}

#[test]
fn limits_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let long = "x".repeat(MAILBOX_ID_BYTES_MAX + 1);
    assert_eq!(
        store.create(&long, meta(1)).wait_blocking(),
        Err(CommitError::TooLarge {
            what: "mailbox id",
            limit: MAILBOX_ID_BYTES_MAX as u64,
            actual: long.len() as u64,
        })
    );
    let longest = "x".repeat(MAILBOX_ID_BYTES_MAX);
    store.create(&longest, meta(1)).wait_blocking().unwrap();
    assert_eq!(
        store.create("", meta(1)).wait_blocking(),
        Err(CommitError::InvalidId(String::new()))
    );
    let err = store
        .append(&longest, 1, vec![0; OP_BYTES_MAX + 1])
        .wait_blocking();
    assert!(
        matches!(err, Err(CommitError::TooLarge { what: "op", .. })),
        "{err:?}"
    );
    // Zeroed allocations are lazily mapped, so this costs no real memory.
    let huge = SnapshotRecord {
        seq: 0,
        schema_version: 1,
        bytes: vec![0; SNAPSHOT_BYTES_MAX + 1].into(),
        vv: Default::default(),
    };
    let err = store
        .import("big", meta(1), Some(huge), vec![], false)
        .wait_blocking();
    assert!(
        matches!(
            err,
            Err(CommitError::TooLarge {
                what: "snapshot",
                ..
            })
        ),
        "{err:?}"
    );
    let err = store
        .import(
            "big",
            meta(1),
            None,
            vec![(1, vec![0; OP_BYTES_MAX + 1])],
            false,
        )
        .wait_blocking();
    assert!(
        matches!(err, Err(CommitError::TooLarge { what: "op", .. })),
        "{err:?}"
    );
    assert_eq!(store.list().unwrap(), vec![longest]);
}

#[test]
fn writer_gone_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking().unwrap();
    store.clone().shutdown();
    assert_eq!(
        store.append("a", 1, vec![]).wait_blocking(),
        Err(CommitError::WriterGone)
    );
    assert_eq!(store.last_seq("a").unwrap(), Some(0));
}
