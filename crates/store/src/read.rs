//! The read side of the store: loading a mailbox's durable state (for a
//! wake, or to ship it, when the receiver checks the snapshot file) and
//! its meta, log position and usage. Reads are plain redb read
//! transactions on the caller's thread and never wait for the writer.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{LOG, META, MetaRecord, SNAPSHOT, SnapshotHeader};
use super::{LoadError, MailboxMeta, MailboxStore, MailboxUsage, Recovery, SnapshotRecord};

impl MailboxStore {
    /// Reads what is needed to rebuild a mailbox; `None` if it does not
    /// exist. Blocking (a 10 MiB snapshot is one read and one copy): call it
    /// from `spawn_blocking` in async code.
    pub fn load(&self, id: &str) -> Result<Option<Recovery>, LoadError> {
        match self.load_once(id, true) {
            // A snapshot written meanwhile deletes the file the record we
            // read named, after committing the one that replaces it.
            Err(LoadError::Corrupt(_)) => self.load_once(id, true),
            r => r,
        }
    }

    /// Like [`MailboxStore::load`], for a state about to be shipped: a
    /// snapshot file's bytes are not hashed here, because the receiver
    /// checks them against its name ([`Recovery::snapshot_file`]), which
    /// the export carries as the snapshot's checksum.
    pub fn load_to_ship(&self, id: &str) -> Result<Option<Recovery>, LoadError> {
        match self.load_once(id, false) {
            Err(LoadError::Corrupt(_)) => self.load_once(id, false),
            r => r,
        }
    }

    /// [`MailboxStore::load_to_ship`] again, keeping what `earlier` (such
    /// a load, made while the mailbox still ran) read wherever the mailbox
    /// has not changed since: the same snapshot file (named by its
    /// content), and the log up to `earlier`'s last seq, which only a new
    /// snapshot or a removal rewrites. A move reads ahead this way so that
    /// its pause reads only the ops logged since. Anything else changed:
    /// a whole load.
    pub fn reload_to_ship(
        &self,
        id: &str,
        earlier: Recovery,
    ) -> Result<Option<Recovery>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let Some(rec) = read_meta(&txn, id)? else {
            return Ok(None);
        };
        let same_snapshot = match (&rec.snapshot, &earlier.snapshot) {
            (None, None) => true,
            (Some(header), Some(snapshot)) => {
                header.file.is_some()
                    && header.file == earlier.snapshot_file
                    && header.seq == snapshot.seq
                    && header.bytes == snapshot.bytes.len() as u64
            }
            _ => false,
        };
        let Some(next) = earlier.last_seq.checked_add(1) else {
            return self.load_to_ship(id);
        };
        if !same_snapshot || rec.meta != earlier.meta || rec.last_seq < earlier.last_seq {
            drop(txn);
            return self.load_to_ship(id);
        }
        let mut tail = earlier.tail;
        read_log(&txn, id, next, &mut tail)?;
        check_log_end(id, &tail, &rec)?;
        Ok(Some(Recovery {
            meta: rec.meta,
            snapshot: earlier.snapshot,
            tail,
            last_seq: rec.last_seq,
            snapshot_file: earlier.snapshot_file,
        }))
    }

    fn load_once(&self, id: &str, check: bool) -> Result<Option<Recovery>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let Some(rec) = read_meta(&txn, id)? else {
            return Ok(None);
        };
        // A snapshot file is read (and hashed, with `check`) on a thread of
        // its own while the log is read here: a move waits on both.
        let file = match &rec.snapshot {
            Some(
                header @ SnapshotHeader {
                    file: Some(name), ..
                },
            ) => Some((name, header)),
            _ => None,
        };
        let (file, tail) = std::thread::scope(|scope| {
            let read = file.map(|(name, header)| {
                let read = move || self.inner.blobs.read(id, name, header.bytes, check);
                let thread = std::thread::Builder::new()
                    .name("dem-store-read".into())
                    .spawn_scoped(scope, read);
                (thread, read, header)
            });
            let tail = read_tail(&txn, id, &rec);
            let file = read.map(|(thread, read, header)| {
                let bytes = match thread {
                    Ok(thread) => thread.join().unwrap_or_else(|_| {
                        Err(LoadError::inconsistent(format!(
                            "mailbox {id:?}: reading the snapshot file failed"
                        )))
                    }),
                    // No thread to spare: one after the other.
                    Err(_) => read(),
                };
                (bytes, header)
            });
            (file, tail)
        });
        let snapshot = match (&rec.snapshot, file) {
            (None, _) => None,
            (Some(_), Some((bytes, header))) => Some(SnapshotRecord {
                seq: header.seq,
                schema_version: header.schema_version,
                bytes: bytes?,
                vv: header.vv.clone(),
            }),
            (Some(header), None) => Some(inline_snapshot(&txn, id, header)?),
        };
        Ok(Some(Recovery {
            meta: rec.meta,
            snapshot,
            tail: tail?,
            last_seq: rec.last_seq,
            snapshot_file: rec.snapshot.as_ref().and_then(|h| h.file),
        }))
    }

    /// The mailbox's meta, `None` if it does not exist.
    pub fn meta(&self, id: &str) -> Result<Option<MailboxMeta>, LoadError> {
        Ok(self.read_record(id)?.map(|r| r.meta))
    }

    /// All mailbox ids, sorted (redb orders `&str` keys like `str`).
    pub fn list(&self) -> Result<Vec<String>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(META).map_err(LoadError::database)?;
        let mut ids = Vec::with_capacity(table.len().map_err(LoadError::database)? as usize);
        for entry in table.iter().map_err(LoadError::database)? {
            let (key, _) = entry.map_err(LoadError::database)?;
            ids.push(key.value().to_owned());
        }
        Ok(ids)
    }

    /// Seq of the mailbox's newest op (0 before any), `None` if it does not exist.
    pub fn last_seq(&self, id: &str) -> Result<Option<u64>, LoadError> {
        Ok(self.read_record(id)?.map(|r| r.last_seq))
    }

    /// The mailbox's storage use, `None` if it does not exist. O(1): the
    /// counters are kept in its meta record.
    pub fn usage(&self, id: &str) -> Result<Option<MailboxUsage>, LoadError> {
        Ok(self.read_record(id)?.map(|r| r.usage()))
    }

    fn read_record(&self, id: &str) -> Result<Option<MetaRecord>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        read_meta(&txn, id)
    }
}

/// A snapshot small enough to live in the database.
fn inline_snapshot(
    txn: &redb::ReadTransaction,
    id: &str,
    header: &SnapshotHeader,
) -> Result<SnapshotRecord, LoadError> {
    let table = txn.open_table(SNAPSHOT).map_err(LoadError::database)?;
    let guard = table
        .get(id)
        .map_err(LoadError::database)?
        .ok_or_else(|| LoadError::inconsistent(format!("mailbox {id:?}: snapshot missing")))?;
    let bytes = guard.value();
    if bytes.len() as u64 != header.bytes {
        return Err(LoadError::inconsistent(format!(
            "mailbox {id:?}: snapshot is {} bytes, meta says {}",
            bytes.len(),
            header.bytes
        )));
    }
    Ok(SnapshotRecord {
        seq: header.seq,
        schema_version: header.schema_version,
        bytes: bytes::Bytes::copy_from_slice(bytes),
        vv: header.vv.clone(),
    })
}

fn read_meta(txn: &redb::ReadTransaction, id: &str) -> Result<Option<MetaRecord>, LoadError> {
    let table = txn.open_table(META).map_err(LoadError::database)?;
    let guard = table.get(id).map_err(LoadError::database)?;
    guard.map(|g| MetaRecord::decode(id, g.value())).transpose()
}

/// Reads the log after the snapshot and checks it matches the meta record.
fn read_tail(
    txn: &redb::ReadTransaction,
    id: &str,
    rec: &MetaRecord,
) -> Result<Vec<(u64, Vec<u8>)>, LoadError> {
    let Some(first) = rec.snapshot_seq().checked_add(1) else {
        return Ok(Vec::new());
    };
    // Bound the pre-allocation: the counter comes from disk.
    let mut tail = Vec::with_capacity(rec.log_entries.min(1 << 16) as usize);
    read_log(txn, id, first, &mut tail)?;
    check_log_end(id, &tail, rec)?;
    Ok(tail)
}

/// Appends the log from seq `first` on to `tail`, checking that the seqs
/// follow one another.
fn read_log(
    txn: &redb::ReadTransaction,
    id: &str,
    first: u64,
    tail: &mut Vec<(u64, Vec<u8>)>,
) -> Result<(), LoadError> {
    let table = txn.open_table(LOG).map_err(LoadError::database)?;
    let mut expected = first;
    for entry in table
        .range((id, first)..=(id, u64::MAX))
        .map_err(LoadError::database)?
    {
        let (key, value) = entry.map_err(LoadError::database)?;
        let seq = key.value().1;
        if seq != expected {
            return Err(LoadError::inconsistent(format!(
                "mailbox {id:?}: log has seq {seq} where {expected} was expected"
            )));
        }
        tail.push((seq, value.value().to_vec()));
        expected = seq.saturating_add(1);
    }
    Ok(())
}

/// Checks that `tail` ends where the meta record says the log does.
fn check_log_end(id: &str, tail: &[(u64, Vec<u8>)], rec: &MetaRecord) -> Result<(), LoadError> {
    let last = tail.last().map_or(rec.snapshot_seq(), |&(seq, _)| seq);
    if last != rec.last_seq {
        return Err(LoadError::inconsistent(format!(
            "mailbox {id:?}: log ends at seq {last}, meta says {}",
            rec.last_seq
        )));
    }
    Ok(())
}
