//! Writing a whole mailbox that arrives from another host, inside the
//! writer's transactions, and its log staged ahead of it.
//!
//! A move's target receives the log tail before the snapshot (export
//! format 3) and stages it (`Op::StageLog`): its rows go into `LOG` in a
//! commit of their own while the snapshot still streams, so the import
//! that follows only checks them and writes the `META` record that makes
//! them a mailbox's log. Until then `STAGED` names them, with the token of
//! the import they belong to, in the same transaction: an import takes
//! only rows staged under its own token (two transfers of one mailbox
//! cannot mix their logs), one that fails drops them (`Op::DropStagedLog`),
//! one cut short by a crash leaves an entry that the next open sweeps with
//! its rows ([`sweep_staged_logs`]), and an import of rows clears any
//! leftover rows and staging of the mailbox before it writes its own.

use redb::{Database, ReadableTable};

use super::error::Shared;
use super::writer::{Applied, BatchFiles, Slot, Tables, store_bytes};
use super::{CommitError, ImportSnapshot, MailboxMeta, OpenError};
use crate::tables::{LOG, META, MetaRecord, STAGED, SnapshotHeader};

/// Which import a staged log tail belongs to (unique while the store is
/// open; stagings do not outlive it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageToken(pub(super) u64);

/// The log tail of an import: its rows, or where they were staged.
#[derive(Debug)]
pub enum ImportTail {
    /// The ops after the snapshot, by seq.
    Rows(Vec<(u64, Vec<u8>)>),
    /// Staged by `MailboxStore::stage_log` under `token`: seqs
    /// `first..=last`.
    Staged {
        token: StageToken,
        first: u64,
        last: u64,
    },
}

impl ImportTail {
    pub(super) fn payload_bytes(&self) -> usize {
        match self {
            ImportTail::Rows(rows) => rows.iter().map(|(_, op)| op.len()).sum(),
            ImportTail::Staged { .. } => 0,
        }
    }
}

/// What an `Op::Import` carries, borrowed.
pub(super) struct Imported<'a> {
    pub meta: &'a MailboxMeta,
    pub snapshot: Option<&'a ImportSnapshot>,
    pub tail: &'a ImportTail,
    pub replace: bool,
}

pub(super) fn import(
    t: &mut Tables<'_>,
    files: &mut BatchFiles<'_>,
    slot: &mut Slot,
    id: &str,
    imported: Imported<'_>,
) -> Applied {
    let Imported {
        meta,
        snapshot,
        tail,
        replace,
    } = imported;
    if slot.rec.is_some() && (!replace || matches!(tail, ImportTail::Staged { .. })) {
        return Ok(Err(CommitError::Exists(id.to_owned())));
    }
    let base = snapshot.map_or(0, |s| s.seq());
    let bad_seq = |seq: u64, expected: Option<u64>| {
        let expected = expected.map_or_else(|| "nothing".to_owned(), |e| e.to_string());
        Ok(Err(CommitError::BadSnapshot(format!(
            "mailbox {id:?}: import tail has seq {seq} where {expected} was expected \
             (snapshot seq {base})"
        ))))
    };
    let (mut entries, mut bytes) = (0u64, 0u64);
    let last_seq = match tail {
        ImportTail::Rows(rows) => {
            let mut expected = base.checked_add(1);
            for &(seq, _) in rows {
                if expected != Some(seq) {
                    return bad_seq(seq, expected);
                }
                expected = seq.checked_add(1);
            }
            rows.last().map_or(base, |&(seq, _)| seq)
        }
        ImportTail::Staged { token, first, last } => {
            if base.checked_add(1) != Some(*first) {
                return bad_seq(*first, base.checked_add(1));
            }
            let staged_by = t.staged.get(id).map_err(CommitError::database)?;
            if staged_by.map(|g| g.value()) != Some(token.0) {
                return Ok(Err(CommitError::Staging(id.to_owned())));
            }
            match staged_rows(t, id, *first, *last)? {
                Ok((n, b)) => (entries, bytes) = (n, b),
                Err(e) => return Ok(Err(e)),
            }
            *last
        }
    };
    let file = match snapshot {
        Some(ImportSnapshot::Bytes(s)) => match store_bytes(t, files, id, &s.bytes)? {
            Ok(file) => file,
            Err(e) => return Ok(Err(e)),
        },
        Some(ImportSnapshot::Staged(s)) => match files.blobs.adopt(&s.staged) {
            Ok(name) => {
                files.written = true;
                t.snapshot.remove(id).map_err(CommitError::database)?;
                Some(name)
            }
            Err(e) => return Ok(Err(CommitError::SnapshotFile(Shared::new(e)))),
        },
        None => None,
    };
    if let Some(old) = &slot.rec {
        files.replaced(old.snapshot.as_ref(), file);
        if snapshot.is_none() {
            t.snapshot.remove(id).map_err(CommitError::database)?;
        }
    }
    let mut rec = MetaRecord::new(meta.clone());
    rec.last_seq = last_seq;
    if let Some(s) = snapshot {
        rec.snapshot = Some(SnapshotHeader {
            seq: s.seq(),
            schema_version: s.schema_version(),
            bytes: s.len() as u64,
            vv: s.vv().clone(),
            file,
        });
    }
    // The staging ends here: its rows are this mailbox's log now, or
    // (importing rows) another transfer's, whose import then fails.
    t.staged.remove(id).map_err(CommitError::database)?;
    if let ImportTail::Rows(rows) = tail {
        // Rows left by a replaced copy, or staged by another transfer.
        clear_log(t, id)?;
        for (seq, op) in rows {
            t.log
                .insert((id, *seq), op.as_slice())
                .map_err(CommitError::database)?;
            entries += 1;
            bytes += op.len() as u64;
        }
    }
    rec.log_entries = entries;
    rec.log_bytes = bytes;
    slot.rec = Some(rec);
    slot.dirty = true;
    Ok(Ok(()))
}

/// Counts the staged rows of `id` (entries, bytes), checking that they
/// are exactly seqs `first..=last`.
fn staged_rows(
    t: &Tables<'_>,
    id: &str,
    first: u64,
    last: u64,
) -> Result<Result<(u64, u64), CommitError>, CommitError> {
    let (mut expected, mut bytes) = (first, 0u64);
    for entry in t
        .log
        .range((id, 0u64)..=(id, u64::MAX))
        .map_err(CommitError::database)?
    {
        let (key, value) = entry.map_err(CommitError::database)?;
        if key.value().1 != expected || expected > last {
            return Ok(Err(CommitError::BadSnapshot(format!(
                "mailbox {id:?}: the staged log has seq {} where {expected} was expected",
                key.value().1
            ))));
        }
        bytes += value.value().len() as u64;
        expected += 1;
    }
    if expected != last.wrapping_add(1) {
        return Ok(Err(CommitError::BadSnapshot(format!(
            "mailbox {id:?}: the staged log ends before seq {last}"
        ))));
    }
    Ok(Ok((last.wrapping_add(1).wrapping_sub(first), bytes)))
}

/// Writes the rows of a log that the import holding `token` will name;
/// refused if a mailbox of that id is here or another import stages it.
pub(super) fn stage_log(
    t: &mut Tables<'_>,
    slot: &Slot,
    id: &str,
    token: StageToken,
    rows: &[(u64, Vec<u8>)],
) -> Applied {
    if slot.rec.is_some() {
        return Ok(Err(CommitError::Exists(id.to_owned())));
    }
    if t.staged.get(id).map_err(CommitError::database)?.is_some() {
        return Ok(Err(CommitError::Staging(id.to_owned())));
    }
    let mut expected = rows.first().map(|&(seq, _)| seq);
    for &(seq, _) in rows {
        if expected != Some(seq) {
            return Ok(Err(CommitError::BadSnapshot(format!(
                "mailbox {id:?}: a staged log has seq {seq} out of order"
            ))));
        }
        expected = seq.checked_add(1);
    }
    clear_log(t, id)?;
    for (seq, op) in rows {
        t.log
            .insert((id, *seq), op.as_slice())
            .map_err(CommitError::database)?;
    }
    t.staged
        .insert(id, token.0)
        .map_err(CommitError::database)?;
    Ok(Ok(()))
}

/// Drops the rows `token`'s import staged, if they are still its (an
/// import that took them, or another transfer's, leaves nothing to drop).
pub(super) fn drop_staged_log(t: &mut Tables<'_>, id: &str, token: StageToken) -> Applied {
    let staged_by = t.staged.get(id).map_err(CommitError::database)?;
    if staged_by.map(|g| g.value()) == Some(token.0) {
        clear_log(t, id)?;
        t.staged.remove(id).map_err(CommitError::database)?;
    }
    Ok(Ok(()))
}

/// Deletes a mailbox's whole log.
pub(super) fn clear_log(t: &mut Tables<'_>, id: &str) -> Result<(), CommitError> {
    t.log
        .retain_in((id, 0u64)..=(id, u64::MAX), |_, _| false)
        .map_err(CommitError::database)
}

/// Drops every staging left by an import a crash cut short, with its
/// rows (a mailbox record never names staged rows: the import that names
/// them ends the staging in the same transaction); how many.
pub(super) fn sweep_staged_logs(db: &Database) -> Result<u64, OpenError> {
    let txn = db.begin_write().map_err(redb::Error::from)?;
    let mut swept = 0;
    {
        let mut staged = txn.open_table(STAGED).map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        let mut log = txn.open_table(LOG).map_err(redb::Error::from)?;
        let mut ids = Vec::new();
        for entry in staged.iter().map_err(redb::Error::from)? {
            ids.push(entry.map_err(redb::Error::from)?.0.value().to_owned());
        }
        for id in &ids {
            if meta.get(id.as_str()).map_err(redb::Error::from)?.is_none() {
                log.retain_in((id.as_str(), 0u64)..=(id.as_str(), u64::MAX), |_, _| false)
                    .map_err(redb::Error::from)?;
            }
            staged.remove(id.as_str()).map_err(redb::Error::from)?;
            swept += 1;
        }
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(swept)
}
