//! A move's log tail staged ahead of its import: named by the import that
//! staged it and by no other, dropped when the import does not follow,
//! swept when a crash left it, and never mixed into another log.

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ops(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    seqs.map(|s| (s, format!("op{s}").into_bytes())).collect()
}

fn snapshot_at(seq: u64) -> Option<ImportSnapshot> {
    Some(ImportSnapshot::Bytes(snap(seq, b"state")))
}

/// An empty store in a temp dir, which lives as long as the dir handle.
fn fresh_store() -> Result<(tempfile::TempDir, MailboxStore), std::io::Error> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    Ok((dir, store))
}

/// Stages `rows` for mailbox `id`, waiting for the commit.
fn stage(
    store: &MailboxStore,
    id: &str,
    rows: Vec<(u64, Vec<u8>)>,
) -> Result<StageToken, CommitError> {
    let (token, written) = store.stage_log(id, rows);
    written.wait_blocking()?;
    Ok(token)
}

/// Creates mailbox `id` here with ops 1 and 2 logged.
fn held_with_two_ops(store: &MailboxStore, id: &str, code: u8) -> Result<(), CommitError> {
    store.create(id, meta(code)).wait_blocking()?;
    append_n(store, id, 1..=2);
    Ok(())
}

/// Imports mailbox "a" with a snapshot at `first` - 1 and the tail that
/// `token` staged as seqs `first..=last`.
fn import_staged_tail(
    store: &MailboxStore,
    token: StageToken,
    (first, last): (u64, u64),
    replace: bool,
) -> Result<(), CommitError> {
    let tail = ImportTail::Staged { token, first, last };
    let snapshot = snapshot_at(first.saturating_sub(1));
    store
        .import_staged("a", meta(1), snapshot, tail, replace)
        .wait_blocking()
}

#[test]
fn an_import_names_a_staged_tail_and_counts_it() -> TestResult {
    let (_dir, store) = fresh_store()?;
    let token = stage(&store, "a", ops(4..=6))?;
    assert!(store.load("a")?.is_none(), "staged rows are no mailbox");
    import_staged_tail(&store, token, (4, 6), false)?;
    let rec = store.load("a")?.ok_or("mailbox a is gone")?;
    assert_eq!(rec.tail, ops(4..=6));
    assert_eq!(rec.last_seq, 6);
    let usage = store.usage("a")?.ok_or("mailbox a is gone")?;
    assert_eq!((usage.log_entries, usage.log_bytes), (3, 9));
    store.append("a", 7, b"op7".to_vec()).wait_blocking()?;
    // The staging ended with the import: dropping it now changes nothing.
    store.drop_staged_log("a", token).wait_blocking()?;
    assert_eq!(raw_log(&store, "a"), vec![4, 5, 6, 7]);
    Ok(())
}

#[test]
fn a_staged_tail_that_does_not_match_is_refused_and_writes_nothing() -> TestResult {
    let (_dir, store) = fresh_store()?;
    let token = stage(&store, "a", ops(4..=6))?;
    for range in [(4, 7), (4, 5), (3, 6)] {
        let r = import_staged_tail(&store, token, range, false);
        assert!(matches!(r, Err(CommitError::BadSnapshot(_))), "{r:?}");
        assert!(store.load("a")?.is_none());
    }
    Ok(())
}

#[test]
fn staging_is_refused_for_a_mailbox_here_and_a_drop_spares_its_log() -> TestResult {
    let (_dir, store) = fresh_store()?;
    held_with_two_ops(&store, "a", 1)?;
    let refused = stage(&store, "a", ops(1..=3));
    assert_eq!(refused, Err(CommitError::Exists("a".into())));
    let (token, _) = store.stage_log("b", vec![]);
    store.drop_staged_log("a", token).wait_blocking()?;
    assert_eq!(raw_log(&store, "a"), vec![1, 2]);
    // A staged tail cannot replace a mailbox either.
    assert_eq!(
        import_staged_tail(&store, token, (4, 6), true),
        Err(CommitError::Exists("a".into()))
    );
    Ok(())
}

#[test]
fn a_dropped_or_crashed_staging_leaves_no_rows() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = open(dir.path());
        held_with_two_ops(&store, "b", 2)?;
        let token = stage(&store, "a", ops(4..=6))?;
        store.drop_staged_log("a", token).wait_blocking()?;
        assert!(raw_log(&store, "a").is_empty());
        // Staged, then the process dies before the import.
        stage(&store, "a", ops(4..=6))?;
        stage(&store, "c", ops(1..=1))?;
        store.shutdown();
    }
    let store = open(dir.path());
    assert!(raw_log(&store, "a").is_empty());
    assert!(raw_log(&store, "c").is_empty());
    assert_eq!(raw_log(&store, "b"), vec![1, 2], "a named log stays");
    // Nothing is left staged: a new transfer may stage again.
    stage(&store, "a", ops(4..=6))?;
    Ok(())
}

#[test]
fn an_import_of_rows_clears_leftover_staged_ones() -> TestResult {
    let (_dir, store) = fresh_store()?;
    // A longer tail staged by another transfer, not yet dropped.
    let token = stage(&store, "a", ops(4..=9))?;
    store
        .import("a", meta(1), Some(snap(3, b"state")), ops(4..=5), false)
        .wait_blocking()?;
    let rec = store.load("a")?.ok_or("mailbox a is gone")?;
    assert_eq!(rec.tail, ops(4..=5));
    assert_eq!(raw_log(&store, "a"), vec![4, 5]);
    // That transfer's drop spares the imported log.
    store.drop_staged_log("a", token).wait_blocking()?;
    assert_eq!(raw_log(&store, "a"), vec![4, 5]);
    Ok(())
}

#[test]
fn two_transfers_of_one_mailbox_cannot_mix_their_logs() -> TestResult {
    let (_dir, store) = fresh_store()?;
    let first = stage(&store, "a", ops(4..=6))?;
    let second = stage(&store, "a", vec![(4, b"other".to_vec())]);
    assert_eq!(second, Err(CommitError::Staging("a".into())));
    // Another token, even with the right seqs, does not name those rows.
    let (other, _) = store.stage_log("z", vec![]);
    assert_eq!(
        import_staged_tail(&store, other, (4, 6), false),
        Err(CommitError::Staging("a".into()))
    );
    store.drop_staged_log("a", other).wait_blocking()?;
    assert_eq!(raw_log(&store, "a"), vec![4, 5, 6], "not its rows to drop");
    import_staged_tail(&store, first, (4, 6), false)?;
    assert_eq!(
        store.load("a")?.ok_or("mailbox a is gone")?.tail,
        ops(4..=6)
    );
    Ok(())
}
