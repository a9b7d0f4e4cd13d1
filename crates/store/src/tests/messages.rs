//! Message blobs: stored with the op that names them, once per host,
//! collected with their last reference, checked when read, and refused
//! over their limits.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use redb::{Durability, ReadableTable as _};
use tokio::sync::oneshot;

use super::super::messages::Message;
use super::super::tables::{MESSAGE_REFS, MESSAGE_USAGE, MESSAGE_USERS, MESSAGE_WAITING, MESSAGES};
use super::super::writer::{Op, Request, Writer};
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// A store with the empty mailboxes `ids`.
fn with_mailboxes(dir: &Path, ids: &[&str]) -> Result<MailboxStore, CommitError> {
    let store = open(dir);
    for id in ids {
        store.create(id, meta(1)).wait_blocking()?;
    }
    Ok(store)
}

/// Flips a byte of a stored message; fails the test if it is not stored.
fn corrupt(store: &MailboxStore, hash: &[u8; 32]) -> TestResult {
    assert!(store.corrupt_message_for_tests(hash)?, "message not stored");
    Ok(())
}

#[test]
fn appended_messages_are_read_back_and_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (m1, m2) = (b"Subject: one\r\n\r\nbody".to_vec(), b"two".to_vec());
    {
        let store = with_mailboxes(dir.path(), &["a"])?;
        let commits = store.commits();
        store
            .append_with_messages("a", 1, b"deliver".to_vec(), vec![m1.clone(), m2.clone()])
            .wait_blocking()?;
        // The op and its messages were one transaction.
        assert_eq!(store.commits(), commits + 1);
        assert_eq!(store.message(&hash(&m1))?, Some(m1.clone()));
        assert_eq!(store.message(&hash(b"absent"))?, None);
    }
    let store = open(dir.path());
    let rec = store.load("a")?.ok_or("mailbox a is gone")?;
    assert_eq!(rec.tail, vec![(1, b"deliver".to_vec())]);
    assert_eq!(store.message(&hash(&m1))?, Some(m1.clone()));
    assert_eq!(store.message(&hash(&m2))?, Some(m2.clone()));
    let mut refs = vec![hash(&m1), hash(&m2)];
    refs.sort();
    assert_eq!(store.message_refs("a")?, refs);
    assert_eq!(
        store.message_usage()?,
        MessageUsage {
            count: 2,
            bytes: (m1.len() + m2.len()) as u64,
        }
    );
    Ok(())
}

#[test]
fn a_refused_op_stores_no_message() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a"])?;
    let m = b"mail".to_vec();
    let err = store
        .append_with_messages("a", 2, b"op".to_vec(), vec![m.clone()])
        .wait_blocking();
    assert_eq!(
        err,
        Err(CommitError::SeqConflict {
            id: "a".into(),
            expected: 1,
            got: 2,
        })
    );
    let err = store
        .append_with_messages("nobody", 1, b"op".to_vec(), vec![m.clone()])
        .wait_blocking();
    assert_eq!(err, Err(CommitError::UnknownMailbox("nobody".into())));
    assert_eq!(store.has_messages(&[hash(&m)])?, vec![false]);
    assert!(store.message_refs("a")?.is_empty());
    assert!(store.message_refs("nobody")?.is_empty());
    assert_eq!(store.message_usage()?, MessageUsage::default());
    assert_eq!(store.last_seq("a")?, Some(0));
    Ok(())
}

#[test]
fn a_message_is_stored_once_and_goes_with_its_last_mailbox() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a", "b"])?;
    let m = b"to both".to_vec();
    store
        .append_with_messages("a", 1, b"1".to_vec(), vec![m.clone()])
        .wait_blocking()?;
    store
        .append_with_messages("b", 1, b"1".to_vec(), vec![m.clone()])
        .wait_blocking()?;
    let usage = MessageUsage {
        count: 1,
        bytes: m.len() as u64,
    };
    assert_eq!(store.message_usage()?, usage);
    assert_eq!(store.message_refs("a")?, vec![hash(&m)]);
    assert_eq!(store.message_refs("b")?, vec![hash(&m)]);

    store.remove("a").wait_blocking()?;
    assert!(store.message_refs("a")?.is_empty());
    assert_eq!(store.message(&hash(&m))?, Some(m.clone()));
    assert_eq!(store.message_usage()?, usage);
    store.remove("b").wait_blocking()?;
    assert_eq!(store.message(&hash(&m))?, None);
    assert_eq!(store.message_usage()?, MessageUsage::default());
    Ok(())
}

#[test]
fn retain_collects_unreferenced_blobs_and_keeps_shared_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a", "b"])?;
    let (own, shared) = (b"own".to_vec(), b"shared".to_vec());
    store
        .append_with_messages("a", 1, b"1".to_vec(), vec![own.clone(), shared.clone()])
        .wait_blocking()?;
    store
        .put_messages("b", vec![shared.clone()])
        .wait_blocking()?;

    // `a` lets go of both: its own goes, the shared one stays for `b`; a
    // hash `a` never referenced is not added.
    store
        .retain_message_refs("a", vec![hash(b"never stored")])
        .wait_blocking()?;
    assert!(store.message_refs("a")?.is_empty());
    assert_eq!(
        store.has_messages(&[hash(&own), hash(&shared)])?,
        vec![false, true]
    );
    // Keeping what is referenced changes nothing.
    store
        .retain_message_refs("b", vec![hash(&shared), hash(&shared)])
        .wait_blocking()?;
    assert_eq!(store.message_refs("b")?, vec![hash(&shared)]);
    store.retain_message_refs("b", vec![]).wait_blocking()?;
    assert_eq!(store.has_messages(&[hash(&shared)])?, vec![false]);
    assert_eq!(store.message_usage()?, MessageUsage::default());
    Ok(())
}

#[test]
fn orphan_refs_go_only_without_a_mailbox() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["here"])?;
    let (m, n) = (b"imported".to_vec(), b"kept".to_vec());
    // An import in flight: its messages arrive before its mailbox. They
    // are referenced by its id, so the last other mailbox going does not
    // collect them.
    store
        .put_messages("here", vec![m.clone()])
        .wait_blocking()?;
    store
        .put_messages("incoming", vec![m.clone()])
        .wait_blocking()?;
    store.remove("here").wait_blocking()?;
    assert_eq!(store.message(&hash(&m))?, Some(m.clone()));

    // The import failed.
    store.drop_orphan_message_refs("incoming").wait_blocking()?;
    assert!(store.message_refs("incoming")?.is_empty());
    assert_eq!(store.message(&hash(&m))?, None);

    // A mailbox that exists keeps its references.
    store.create("there", meta(2)).wait_blocking()?;
    store
        .put_messages("there", vec![n.clone()])
        .wait_blocking()?;
    store.drop_orphan_message_refs("there").wait_blocking()?;
    assert_eq!(store.message_refs("there")?, vec![hash(&n)]);
    assert_eq!(store.message(&hash(&n))?, Some(n.clone()));
    Ok(())
}

/// Ids that took references before their mailbox was here, as the
/// `MESSAGE_WAITING` table lists them.
fn waiting(store: &MailboxStore) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let txn = store.inner.db.begin_read()?;
    let table = txn.open_table(MESSAGE_WAITING)?;
    let mut ids = Vec::new();
    for entry in table.iter()? {
        ids.push(entry?.0.value().to_owned());
    }
    Ok(ids)
}

#[test]
fn an_open_drops_the_refs_of_imports_the_last_run_left() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (lost, came) = (b"lost".to_vec(), b"came".to_vec());
    {
        let store = with_mailboxes(dir.path(), &["here"])?;
        // A crash cuts short one import; the other's mailbox arrives.
        store
            .put_messages("cut short", vec![lost.clone()])
            .wait_blocking()?;
        store
            .put_messages("arrived", vec![came.clone()])
            .wait_blocking()?;
        store.create("arrived", meta(2)).wait_blocking()?;
        // A mailbox that is here takes references without waiting.
        store
            .put_messages("here", vec![came.clone()])
            .wait_blocking()?;
        assert_eq!(waiting(&store)?, vec!["arrived", "cut short"]);
    }
    let store = open(dir.path());
    // The open's requests are first in the queue: once a later one is
    // durable, so are they.
    store.create("flush", meta(3)).wait_blocking()?;
    assert!(waiting(&store)?.is_empty());
    assert!(store.message_refs("cut short")?.is_empty());
    assert_eq!(store.message(&hash(&lost))?, None);
    assert_eq!(store.message_refs("arrived")?, vec![hash(&came)]);
    assert_eq!(store.message(&hash(&came))?, Some(came.clone()));
    Ok(())
}

#[test]
fn a_damaged_message_is_an_error_not_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a"])?;
    let m = b"Subject: tamper with me".to_vec();
    store.put_messages("a", vec![m.clone()]).wait_blocking()?;
    corrupt(&store, &hash(&m))?;
    assert_eq!(
        store.message(&hash(&m)),
        Err(LoadError::Corrupt(Corruption::Message { hash: hash(&m) }))
    );
    assert!(!store.corrupt_message_for_tests(&hash(b"not stored"))?);
    // Good bytes from a replica repair it; bytes no mailbox names are not
    // stored by a repair.
    store.repair_message("a", m.clone()).wait_blocking()?;
    assert_eq!(store.message(&hash(&m))?, Some(m.clone()));
    let stray = b"named by nobody".to_vec();
    store.repair_message("a", stray.clone()).wait_blocking()?;
    assert_eq!(store.message(&hash(&stray))?, None);
    assert_eq!(store.message_usage()?.count, 1);
    Ok(())
}

#[test]
fn message_limits_are_refused_and_write_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a"])?;
    let small = b"small".to_vec();
    let over = vec![7; MESSAGE_BYTES_MAX + 1];
    let err = store
        .append_with_messages("a", 1, b"1".to_vec(), vec![small.clone(), over.clone()])
        .wait_blocking();
    assert_eq!(
        err,
        Err(CommitError::MessageTooLarge {
            index: 1,
            limit: MESSAGE_BYTES_MAX as u64,
            actual: MESSAGE_BYTES_MAX as u64 + 1,
        })
    );
    let err = store
        .put_messages("a", vec![small.clone(), over])
        .wait_blocking();
    assert!(
        matches!(err, Err(CommitError::MessageTooLarge { index: 1, .. })),
        "{err:?}"
    );
    let err = store
        .put_messages("a", vec![vec![]; MESSAGES_PER_REQUEST_MAX + 1])
        .wait_blocking();
    assert_eq!(
        err,
        Err(CommitError::TooManyMessages {
            limit: MESSAGES_PER_REQUEST_MAX,
            actual: MESSAGES_PER_REQUEST_MAX + 1,
        })
    );
    // Each within its limit, too many bytes together.
    let count = MESSAGES_REQUEST_BYTES_MAX / MESSAGE_BYTES_MAX + 1;
    let err = store
        .put_messages("a", vec![vec![0; MESSAGE_BYTES_MAX]; count])
        .wait_blocking();
    assert!(
        matches!(
            err,
            Err(CommitError::TooLarge {
                what: "messages",
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(store.has_messages(&[hash(&small)])?, vec![false]);
    assert!(store.message_refs("a")?.is_empty());
    assert_eq!(store.last_seq("a")?, Some(0));
    assert_eq!(store.message_usage()?, MessageUsage::default());

    // The limit itself is allowed.
    let largest = vec![9; MESSAGE_BYTES_MAX];
    store
        .append_with_messages("a", 1, b"1".to_vec(), vec![largest.clone()])
        .wait_blocking()?;
    assert_eq!(store.message(&hash(&largest))?, Some(largest));
    Ok(())
}

#[test]
fn has_messages_refs_and_usage() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a"])?;
    let messages: Vec<Vec<u8>> = (0..5u8).map(|n| vec![n; usize::from(n) * 10]).collect();
    store.put_messages("a", messages.clone()).wait_blocking()?;
    // The same bytes twice in one request are one blob and one reference.
    store
        .put_messages("a", vec![messages[1].clone(), messages[1].clone()])
        .wait_blocking()?;
    let mut hashes: Vec<_> = messages.iter().map(|m| hash(m)).collect();
    assert_eq!(
        store.has_messages(&[hashes[3], hash(b"x"), hashes[0]])?,
        vec![true, false, true]
    );
    hashes.sort();
    assert_eq!(store.message_refs("a")?, hashes);
    assert!(store.message_refs("b")?.is_empty());
    assert_eq!(
        store.message_usage()?,
        MessageUsage {
            count: 5,
            bytes: 100,
        }
    );
    // The empty message is a message like any other.
    assert_eq!(store.message(&hash(b""))?, Some(vec![]));
    Ok(())
}

/// Drives the writer's transaction directly so the requests are certainly
/// in one batch: each sees what the ones before it left.
#[test]
fn requests_of_one_batch_see_one_another() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a", "b"])?;
    let m = b"passed on".to_vec();
    store.put_messages("a", vec![m.clone()]).wait_blocking()?;
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
    let message = || Message {
        hash: hash(&m),
        bytes: m.clone(),
    };
    let batch = vec![
        // `a` drops its last reference, then `b` stores the blob again.
        request("a", Op::RetainMessageRefs(vec![])),
        request(
            "b",
            Op::AppendWithMessages {
                seq: 1,
                op: b"1".to_vec(),
                messages: vec![message()],
            },
        ),
        // Refused, so its message is not referenced by `b` twice or by `c`.
        request(
            "c",
            Op::AppendWithMessages {
                seq: 1,
                op: b"1".to_vec(),
                messages: vec![message()],
            },
        ),
        // Created in this batch: not an orphan.
        request("d", Op::Create(meta(4))),
        request("d", Op::PutMessages(vec![message()])),
        request("d", Op::DropOrphanMessageRefs),
        // Removed in this batch: an orphan.
        request("b", Op::Remove),
        request("b", Op::DropOrphanMessageRefs),
    ];
    let results = writer.apply(&batch)?;
    assert_eq!(results[2], Err(CommitError::UnknownMailbox("c".into())));
    assert!(
        results.iter().enumerate().all(|(i, r)| i == 2 || r.is_ok()),
        "{results:?}"
    );
    assert!(store.message_refs("a")?.is_empty());
    assert!(store.message_refs("b")?.is_empty());
    assert!(store.message_refs("c")?.is_empty());
    assert_eq!(store.message_refs("d")?, vec![hash(&m)]);
    assert_eq!(store.message(&hash(&m))?, Some(m.clone()));
    assert_eq!(
        store.message_usage()?,
        MessageUsage {
            count: 1,
            bytes: m.len() as u64,
        }
    );
    Ok(())
}

/// A store from before message blobs has none of their tables; opening
/// it creates them, so reads and writes work at once.
#[test]
fn a_store_from_before_messages_gets_their_tables() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = with_mailboxes(dir.path(), &["a"])?;
        store.shutdown();
        let txn = store.inner.db.begin_write()?;
        txn.delete_table(MESSAGES)?;
        txn.delete_table(MESSAGE_REFS)?;
        txn.delete_table(MESSAGE_USERS)?;
        txn.delete_table(MESSAGE_USAGE)?;
        txn.delete_table(MESSAGE_WAITING)?;
        txn.commit()?;
    }
    let store = open(dir.path());
    assert_eq!(store.message_usage()?, MessageUsage::default());
    assert!(store.message_refs("a")?.is_empty());
    assert_eq!(store.has_messages(&[hash(b"m")])?, vec![false]);
    store
        .append_with_messages("a", 1, b"1".to_vec(), vec![b"m".to_vec()])
        .wait_blocking()?;
    assert_eq!(store.message(&hash(b"m"))?, Some(b"m".to_vec()));
    Ok(())
}

#[test]
fn messages_kept_in_the_database_by_an_older_build_move_into_packs() -> TestResult {
    use super::super::tables::{MESSAGE_PLACES, PACK_ENTRIES, PACK_LIVE};
    let dir = tempfile::tempdir()?;
    let old = b"Subject: kept in redb\r\n\r\nas the build before the packs did".to_vec();
    {
        let store = with_mailboxes(dir.path(), &["a"])?;
        store.put_messages("a", vec![old.clone()]).wait_blocking()?;
        store.shutdown();
        // Rewrite it as the older build stored it: bytes in `MESSAGES`.
        let txn = store.inner.db.begin_write()?;
        {
            let h = hash(&old);
            let mut places = txn.open_table(MESSAGE_PLACES)?;
            let (pack, _, _) = places.remove(&h)?.map(|g| g.value()).ok_or("no place")?;
            txn.open_table(PACK_ENTRIES)?.remove((pack, &h))?;
            txn.open_table(PACK_LIVE)?.remove(pack)?;
            txn.open_table(MESSAGES)?.insert(&h, old.as_slice())?;
        }
        txn.commit()?;
    }
    let store = open(dir.path());
    assert_eq!(store.message(&hash(&old))?, Some(old.clone()));
    assert_eq!(store.message_refs("a")?, vec![hash(&old)]);
    let read = store.inner.db.begin_read()?;
    assert!(
        read.open_table(MESSAGES)?.iter()?.next().is_none(),
        "moved out of redb"
    );
    Ok(())
}

#[test]
fn a_pack_mostly_dead_is_compacted_and_its_live_messages_stay_readable() -> TestResult {
    use super::super::messages::pack::PACK_BYTES_MAX;
    let dir = tempfile::tempdir()?;
    let store = with_mailboxes(dir.path(), &["a", "b"])?;
    // Two megabytes each, distinct: enough to fill the first pack and
    // roll over to a second.
    let message = |i: u32| {
        let mut m = vec![b'x'; 2 << 20];
        m[..4].copy_from_slice(&i.to_le_bytes());
        m
    };
    let count = (PACK_BYTES_MAX / (2 << 20)) as u32 + 2;
    for i in 0..count {
        let id = if i % 8 == 0 { "b" } else { "a" };
        store.put_messages(id, vec![message(i)]).wait_blocking()?;
    }
    let packs_dir = dir.path().join("messages");
    let files = || std::fs::read_dir(&packs_dir).map(|d| d.count());
    assert_eq!(files()?, 2, "rolled over to a second pack");
    // "a" lets go of all of its: most of the first pack is dead.
    store.retain_message_refs("a", vec![]).wait_blocking()?;
    assert_eq!(files()?, 1, "the first pack was compacted away");
    for i in (0..count).filter(|i| i % 8 == 0) {
        assert_eq!(store.message(&hash(&message(i)))?, Some(message(i)));
    }
    assert_eq!(store.message(&hash(&message(1)))?, None);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.message(&hash(&message(8)))?, Some(message(8)));
    Ok(())
}
