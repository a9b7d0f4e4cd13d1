//! Large snapshots kept as files: written before the commit that names
//! them, deleted after the one that stops naming them, swept when a crash
//! left them unnamed, and checked when read.

use super::*;

/// A snapshot just over the size that goes to a file, distinct per `n`.
fn big(seq: u64, n: u8) -> SnapshotRecord {
    snap(seq, &vec![n; blobs::BLOB_BYTES_MIN + usize::from(n)])
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut f: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

#[test]
fn large_snapshots_are_files_replaced_and_removed_with_their_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking().unwrap();
    append_n(&store, "a", 1..=3);
    store.snapshot("a", big(2, 1)).wait_blocking().unwrap();
    assert_eq!(files(dir.path()).len(), 1);
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.snapshot.unwrap(), big(2, 1));
    assert_eq!(rec.tail.len(), 1, "the log after the snapshot stays");

    // A newer snapshot replaces the file; a small one goes back inline.
    store.snapshot("a", big(3, 2)).wait_blocking().unwrap();
    assert_eq!(files(dir.path()).len(), 1);
    assert_eq!(
        store.load("a").unwrap().unwrap().snapshot.unwrap(),
        big(3, 2)
    );
    store
        .snapshot("a", snap(3, b"small"))
        .wait_blocking()
        .unwrap();
    assert!(files(dir.path()).is_empty());
    assert_eq!(
        store.load("a").unwrap().unwrap().snapshot.unwrap(),
        snap(3, b"small")
    );

    // Import over it as a file, then remove the mailbox: the file goes.
    store
        .import(
            "a",
            meta(1),
            Some(big(7, 3)),
            vec![(8, b"8".to_vec())],
            true,
        )
        .wait_blocking()
        .unwrap();
    assert_eq!(files(dir.path()).len(), 1);
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!((rec.snapshot.unwrap(), rec.last_seq), (big(7, 3), 8));
    store.remove("a").wait_blocking().unwrap();
    assert!(files(dir.path()).is_empty());
    assert!(store.load("a").unwrap().is_none());
}

#[test]
fn files_survive_a_reopen_and_unnamed_ones_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.create("a", meta(1)).wait_blocking().unwrap();
        append_n(&store, "a", 1..=2);
        store.snapshot("a", big(2, 4)).wait_blocking().unwrap();
        store.shutdown();
    }
    // What a crash can leave: a half-written temp file and a whole file
    // whose commit never happened.
    let snapshots = dir.path().join("snapshots");
    std::fs::write(snapshots.join("ab.tmp"), b"half").unwrap();
    std::fs::write(snapshots.join("cd".repeat(32)), b"never named").unwrap();
    let store = open(dir.path());
    assert_eq!(files(dir.path()).len(), 1);
    let rec = store.load("a").unwrap().unwrap();
    assert_eq!(rec.snapshot.unwrap(), big(2, 4));
}

#[test]
fn a_damaged_file_is_an_error_not_a_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking().unwrap();
    append_n(&store, "a", 1..=1);
    store.snapshot("a", big(1, 5)).wait_blocking().unwrap();
    let path = files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(store.load("a"), Err(LoadError::Corrupt(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.load("a"), Err(LoadError::Corrupt(_))));
}
