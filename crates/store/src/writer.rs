//! The store's single writer thread: group commit.
//!
//! redb allows one write transaction at a time and each durable commit costs
//! an fsync, so per-request commits would cap throughput at the disk's fsync
//! rate. Instead the thread blocks for one request, drains whatever else is
//! queued (up to `group_commit_ops_max` requests or [`BATCH_BYTES_MAX`]),
//! applies them all in one transaction, commits once and then answers each.
//! While it commits, new requests queue up and form the next batch, so batch
//! size grows with load by itself.
//!
//! Each request is validated inside the transaction against the state the
//! batch has left so far (a per-batch cache of `META` records), so a bad
//! request fails alone and writes nothing, while the others still commit.
//!
//! Message blobs (`messages.rs`) are written here too, so that a message
//! becomes durable with the op that names it, in the same fsync.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::oneshot;
use tracing::debug;

use super::blobs::{BLOB_BYTES_MIN, BlobName, Blobs};
use super::error::Shared;
use super::import::{
    ImportTail, Imported, StageToken, clear_log, drop_staged_log, import, stage_log,
};
use super::messages::pack::{PackBatch, Packs};
use super::messages::{self, Message};
use super::staging::ImportSnapshot;
use super::tables::{
    LOG, MESSAGE_PLACES, MESSAGE_REFS, MESSAGE_USAGE, MESSAGE_USERS, MESSAGE_WAITING, META,
    MetaRecord, PACK_ENTRIES, PACK_LIVE, SNAPSHOT, STAGED, SnapshotHeader,
};
use super::{CommitError, CommitHook, MailboxMeta, SnapshotRecord};

/// Stop draining the queue once a batch holds this many payload bytes, so a
/// burst of large snapshots or imports cannot build one huge transaction.
const BATCH_BYTES_MAX: usize = 256 << 20;

/// One queued write and where to send its outcome.
pub(super) struct Request {
    pub id: String,
    pub op: Op,
    pub reply: oneshot::Sender<Result<(), CommitError>>,
}

/// The mutating operations; see the methods of `MailboxStore` of the same names.
pub(super) enum Op {
    Create(MailboxMeta),
    Append {
        seq: u64,
        op: Vec<u8>,
    },
    Snapshot(SnapshotRecord),
    Import {
        meta: MailboxMeta,
        snapshot: Option<ImportSnapshot>,
        tail: ImportTail,
        replace: bool,
    },
    StageLog {
        token: StageToken,
        rows: Vec<(u64, Vec<u8>)>,
    },
    DropStagedLog(StageToken),
    Remove,
    /// An append whose messages are stored in the same transaction.
    AppendWithMessages {
        seq: u64,
        op: Vec<u8>,
        messages: Vec<Message>,
    },
    PutMessages(Vec<Message>),
    RepairMessage(Message),
    /// Sorted, for a binary search per reference.
    RetainMessageRefs(Vec<[u8; 32]>),
    DropOrphanMessageRefs,
}

/// State owned by the writer thread.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: Receiver<Request>,
    pub ops_max: usize,
    pub durability: Durability,
    pub commits: Arc<AtomicU64>,
    /// Told how long each batch took to become durable, once set
    /// ([`super::MailboxStore::on_commit`]).
    pub commit_hook: Arc<OnceLock<CommitHook>>,
    /// Where snapshots of at least `BLOB_BYTES_MIN` go.
    pub blobs: Arc<Blobs>,
    /// Where message bytes go.
    pub packs: Arc<Packs>,
}

/// The snapshot files one batch writes and the ones it stops naming.
pub(super) struct BatchFiles<'a> {
    pub blobs: &'a Blobs,
    /// Whether a file was written, so the folder needs an fsync.
    pub written: bool,
    /// Files no record names once the batch commits.
    pub doomed: Vec<BlobName>,
}

/// The data tables, opened once per batch.
pub(super) struct Tables<'txn> {
    pub meta: Table<'txn, &'static str, &'static [u8]>,
    pub log: Table<'txn, (&'static str, u64), &'static [u8]>,
    pub snapshot: Table<'txn, &'static str, &'static [u8]>,
    pub staged: Table<'txn, &'static str, u64>,
    pub places: Table<'txn, &'static [u8; 32], (u32, u64, u32)>,
    pub pack_entries: Table<'txn, (u32, &'static [u8; 32]), ()>,
    pub pack_live: Table<'txn, u32, u64>,
    pub message_refs: Table<'txn, (&'static str, &'static [u8; 32]), ()>,
    pub message_users: Table<'txn, (&'static [u8; 32], &'static str), ()>,
    pub message_usage: Table<'txn, &'static str, (u64, u64)>,
    pub message_waiting: Table<'txn, &'static str, ()>,
    /// The batch's message bytes, written before the commit.
    pub pack: PackBatch<'txn>,
    pub packs: &'txn Packs,
    /// Packs whose live bytes fell under half: compacted after the commit.
    pub compact: Vec<u32>,
    /// The mailboxes' search indexes, only to drop one with its mailbox.
    pub search: super::search::SearchTables<'txn>,
}

/// A mailbox's `META` record as the batch has left it so far.
pub(super) struct Slot {
    pub rec: Option<MetaRecord>,
    pub dirty: bool,
}

/// Outcome of one request: the outer error aborts the whole batch (redb
/// failed mid-transaction, so its state is unknown), the inner one fails only
/// this request, which has then written nothing.
pub(super) type Applied = Result<Result<(), CommitError>, CommitError>;

impl Op {
    /// Bytes this request carries, for the batch byte budget.
    fn payload_bytes(&self) -> usize {
        match self {
            Op::Create(_)
            | Op::Remove
            | Op::DropStagedLog(_)
            | Op::DropOrphanMessageRefs
            | Op::RetainMessageRefs(_) => 0,
            Op::Append { op, .. } => op.len(),
            Op::AppendWithMessages { op, messages, .. } => op.len() + messages::bytes(messages),
            Op::PutMessages(messages) => messages::bytes(messages),
            Op::RepairMessage(m) => m.bytes.len(),
            Op::Snapshot(s) => s.bytes.len(),
            Op::Import { snapshot, tail, .. } => {
                snapshot.as_ref().map_or(0, |s| s.len()) + tail.payload_bytes()
            }
            Op::StageLog { rows, .. } => rows.iter().map(|(_, op)| op.len()).sum(),
        }
    }
}

impl Writer {
    /// Runs until every sender is dropped and the queue is empty.
    pub fn run(self) {
        let mut batch = Vec::new();
        while let Ok(first) = self.rx.recv() {
            let mut bytes = first.op.payload_bytes();
            batch.push(first);
            while batch.len() < self.ops_max && bytes < BATCH_BYTES_MAX {
                match self.rx.try_recv() {
                    Ok(req) => {
                        bytes += req.op.payload_bytes();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch, bytes);
        }
        debug!("store writer exiting: all handles dropped");
    }

    /// Applies and commits `batch`, answers every request, leaves it empty.
    fn commit_batch(&self, batch: &mut Vec<Request>, bytes: usize) {
        let started = Instant::now();
        let outcome = self.apply(batch);
        let elapsed_us = started.elapsed().as_micros() as u64;
        match outcome {
            Ok(results) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                let failed = results.iter().filter(|r| r.is_err()).count();
                debug!(
                    requests = batch.len(),
                    failed, bytes, elapsed_us, "store batch committed"
                );
                for (req, result) in batch.drain(..).zip(results) {
                    // The caller may have stopped waiting; that is fine.
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(
                    requests = batch.len(),
                    bytes,
                    elapsed_us,
                    error = %e,
                    "store batch failed"
                );
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Runs one write transaction over the batch; `Err` if nothing committed.
    pub(super) fn apply(
        &self,
        batch: &[Request],
    ) -> Result<Vec<Result<(), CommitError>>, CommitError> {
        let mut txn = self.db.begin_write().map_err(CommitError::database)?;
        txn.set_durability(self.durability)
            .map_err(CommitError::database)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut files = BatchFiles {
            blobs: &self.blobs,
            written: false,
            doomed: Vec::new(),
        };
        let (pack, compact) = {
            let mut t = Tables {
                meta: txn.open_table(META).map_err(CommitError::database)?,
                log: txn.open_table(LOG).map_err(CommitError::database)?,
                snapshot: txn.open_table(SNAPSHOT).map_err(CommitError::database)?,
                staged: txn.open_table(STAGED).map_err(CommitError::database)?,
                places: txn
                    .open_table(MESSAGE_PLACES)
                    .map_err(CommitError::database)?,
                pack_entries: txn
                    .open_table(PACK_ENTRIES)
                    .map_err(CommitError::database)?,
                pack_live: txn.open_table(PACK_LIVE).map_err(CommitError::database)?,
                message_refs: txn
                    .open_table(MESSAGE_REFS)
                    .map_err(CommitError::database)?,
                message_users: txn
                    .open_table(MESSAGE_USERS)
                    .map_err(CommitError::database)?,
                message_usage: txn
                    .open_table(MESSAGE_USAGE)
                    .map_err(CommitError::database)?,
                message_waiting: txn
                    .open_table(MESSAGE_WAITING)
                    .map_err(CommitError::database)?,
                pack: self
                    .packs
                    .batch()
                    .map_err(|e| CommitError::MessagePack(Shared::new(e)))?,
                packs: &self.packs,
                compact: Vec::new(),
                search: super::search::SearchTables::open(&txn)?,
            };
            let mut cache: HashMap<&str, Slot> = HashMap::new();
            for req in batch {
                results.push(apply_one(&mut t, &mut files, &mut cache, req)?);
            }
            // Each touched record is encoded and written once per batch, not
            // once per request: a batch often holds many appends to one mailbox.
            for (id, slot) in cache.into_iter().filter(|(_, s)| s.dirty) {
                match slot.rec {
                    Some(rec) => t.meta.insert(id, rec.encode().as_slice()),
                    None => t.meta.remove(id),
                }
                .map_err(CommitError::database)?;
            }
            (t.pack, t.compact)
        };
        // What the hook is told: the fsyncs (the folder's, the commit's),
        // not the applying before them, which grows with the batch.
        let durable = Instant::now();
        // The files must outlive a crash before a record names them.
        pack.flush()
            .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
        if files.written {
            files
                .blobs
                .sync_dir()
                .map_err(|e| CommitError::SnapshotFolderSync(Shared::new(e)))?;
        }
        txn.commit().map_err(CommitError::database)?;
        if let Some(hook) = self.commit_hook.get() {
            hook(durable.elapsed());
        }
        for name in &files.doomed {
            files.blobs.delete(name);
        }
        for pack in compact {
            // The batch is durable whatever happens here: a compaction
            // that fails leaves the pack as it was, to be tried again at
            // its next removal.
            if let Err(e) = messages::compact(&self.db, &self.packs, self.durability, pack) {
                tracing::warn!(pack, "compacting a message pack: {e}");
            }
        }
        Ok(results)
    }
}

/// Validates `req` against the batch's view of its mailbox, then writes it.
fn apply_one<'b>(
    t: &mut Tables<'_>,
    files: &mut BatchFiles<'_>,
    cache: &mut HashMap<&'b str, Slot>,
    req: &'b Request,
) -> Applied {
    let id = req.id.as_str();
    let slot = match cache.entry(id) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => {
            let stored = t.meta.get(id).map_err(CommitError::database)?;
            let rec = match stored.map(|g| MetaRecord::decode(id, g.value())) {
                None => None,
                Some(Ok(rec)) => Some(rec),
                Some(Err(e)) => return Ok(Err(CommitError::Record(e))),
            };
            v.insert(Slot { rec, dirty: false })
        }
    };
    match &req.op {
        Op::Create(meta) => Ok(create(slot, id, meta)),
        Op::Append { seq, op } => append(t, slot, id, *seq, op),
        Op::Snapshot(snapshot) => snapshot_op(t, files, slot, id, snapshot),
        Op::Import {
            meta,
            snapshot,
            tail,
            replace,
        } => import(
            t,
            files,
            slot,
            id,
            Imported {
                meta,
                snapshot: snapshot.as_ref(),
                tail,
                replace: *replace,
            },
        ),
        Op::StageLog { token, rows } => stage_log(t, slot, id, *token, rows),
        Op::DropStagedLog(token) => drop_staged_log(t, id, *token),
        Op::Remove => remove(t, files, slot, id),
        Op::AppendWithMessages { seq, op, messages } => {
            // The op is checked first: a refused op stores no message.
            if let Err(e) = append(t, slot, id, *seq, op)? {
                return Ok(Err(e));
            }
            messages::put(t, id, messages)?;
            Ok(Ok(()))
        }
        Op::PutMessages(messages) => {
            messages::put(t, id, messages)?;
            if slot.rec.is_none() {
                messages::wait_for_mailbox(t, id)?;
            }
            Ok(Ok(()))
        }
        Op::RepairMessage(m) => {
            messages::repair(t, m)?;
            Ok(Ok(()))
        }
        Op::RetainMessageRefs(keep) => {
            messages::retain_refs(t, id, keep)?;
            Ok(Ok(()))
        }
        Op::DropOrphanMessageRefs => {
            // The batch's view: a mailbox created earlier in this batch
            // exists, one removed earlier does not.
            if slot.rec.is_none() {
                messages::drop_refs(t, id)?;
            }
            messages::stop_waiting(t, id)?;
            Ok(Ok(()))
        }
    }
}

fn create(slot: &mut Slot, id: &str, meta: &MailboxMeta) -> Result<(), CommitError> {
    if slot.rec.is_some() {
        return Err(CommitError::Exists(id.to_owned()));
    }
    slot.rec = Some(MetaRecord::new(meta.clone()));
    slot.dirty = true;
    Ok(())
}

fn append(t: &mut Tables<'_>, slot: &mut Slot, id: &str, seq: u64, op: &[u8]) -> Applied {
    let Some(rec) = slot.rec.as_mut() else {
        return Ok(Err(CommitError::UnknownMailbox(id.to_owned())));
    };
    let expected = rec.last_seq.checked_add(1);
    if expected != Some(seq) {
        return Ok(Err(CommitError::SeqConflict {
            id: id.to_owned(),
            expected: expected.unwrap_or(u64::MAX),
            got: seq,
        }));
    }
    t.log.insert((id, seq), op).map_err(CommitError::database)?;
    rec.last_seq = seq;
    rec.log_entries += 1;
    rec.log_bytes += op.len() as u64;
    slot.dirty = true;
    Ok(Ok(()))
}

fn snapshot_op(
    t: &mut Tables<'_>,
    files: &mut BatchFiles<'_>,
    slot: &mut Slot,
    id: &str,
    snapshot: &SnapshotRecord,
) -> Applied {
    let Some(rec) = slot.rec.as_mut() else {
        return Ok(Err(CommitError::UnknownMailbox(id.to_owned())));
    };
    if snapshot.seq > rec.last_seq {
        return Ok(Err(CommitError::BadSnapshot(format!(
            "mailbox {id:?}: snapshot seq {} is after the last seq {}",
            snapshot.seq, rec.last_seq
        ))));
    }
    if let Some(current) = &rec.snapshot
        && snapshot.seq < current.seq
    {
        return Ok(Err(CommitError::BadSnapshot(format!(
            "mailbox {id:?}: snapshot seq {} is before the current snapshot's seq {}",
            snapshot.seq, current.seq
        ))));
    }
    let file = match store_bytes(t, files, id, &snapshot.bytes)? {
        Ok(file) => file,
        Err(e) => return Ok(Err(e)),
    };
    files.replaced(rec.snapshot.as_ref(), file);
    // The log keeps only the ops after the snapshot: recovery never needs
    // the older ones, and this keeps the log bounded by the snapshot policy.
    let (mut removed, mut removed_bytes) = (0u64, 0u64);
    t.log
        .retain_in((id, 0u64)..=(id, snapshot.seq), |_, op| {
            removed += 1;
            removed_bytes += op.len() as u64;
            false
        })
        .map_err(CommitError::database)?;
    rec.log_entries = rec.log_entries.saturating_sub(removed);
    rec.log_bytes = rec.log_bytes.saturating_sub(removed_bytes);
    rec.snapshot = Some(SnapshotHeader {
        seq: snapshot.seq,
        schema_version: snapshot.schema_version,
        bytes: snapshot.bytes.len() as u64,
        vv: snapshot.vv.clone(),
        file,
    });
    slot.dirty = true;
    Ok(Ok(()))
}

/// Stores a snapshot's bytes: a file if large (the inline copy, if any,
/// is dropped), else inline in `SNAPSHOT`. The file it went to, if any.
pub(super) fn store_bytes(
    t: &mut Tables<'_>,
    files: &mut BatchFiles<'_>,
    id: &str,
    bytes: &[u8],
) -> Result<Result<Option<BlobName>, CommitError>, CommitError> {
    if bytes.len() < BLOB_BYTES_MIN {
        t.snapshot
            .insert(id, bytes)
            .map_err(CommitError::database)?;
        return Ok(Ok(None));
    }
    let name = Blobs::name(id, bytes);
    if let Err(e) = files.blobs.write(&name, bytes) {
        return Ok(Err(CommitError::SnapshotFile(Shared::new(e))));
    }
    files.written = true;
    t.snapshot.remove(id).map_err(CommitError::database)?;
    Ok(Ok(Some(name)))
}

impl BatchFiles<'_> {
    /// The snapshot `old` gives way to one stored in `new`: its file, if
    /// it had one of another name, goes once the batch commits.
    pub(super) fn replaced(&mut self, old: Option<&SnapshotHeader>, new: Option<BlobName>) {
        if let Some(old) = old.and_then(|h| h.file)
            && Some(old) != new
        {
            self.doomed.push(old);
        }
    }
}

fn remove(t: &mut Tables<'_>, files: &mut BatchFiles<'_>, slot: &mut Slot, id: &str) -> Applied {
    let Some(rec) = &slot.rec else {
        return Ok(Err(CommitError::UnknownMailbox(id.to_owned())));
    };
    files.replaced(rec.snapshot.as_ref(), None);
    t.snapshot.remove(id).map_err(CommitError::database)?;
    clear_log(t, id)?;
    // Its messages go with it, unless another mailbox references them,
    // and so does its search index.
    messages::drop_refs(t, id)?;
    t.search.drop_rows(id)?;
    slot.rec = None;
    slot.dirty = true;
    Ok(Ok(()))
}
