//! Durable storage of mailboxes: an operation log plus periodic snapshots.
//!
//! A mailbox's state lives inside its WebAssembly guest, which the host can
//! drop and re-instantiate at any time (idle eviction, restart, crash). To
//! rebuild it, the host keeps per mailbox, in one redb database
//! (`<data dir>/mailboxes.redb`):
//! - a **log** of every mutating call (opaque bytes from the caller), each
//!   with an explicit per-mailbox seq, so replication can later speak in seqs;
//! - the latest **snapshot** of the guest's state (opaque bytes), at a seq.
//!
//! Beside the mailboxes, in the same database, it keeps the **messages**
//! their logs name by hash, once per host, with who references them
//! (`messages.rs`); they are written in the same transactions as the ops.
//!
//! Recovery ([`MailboxStore::load`]) is that snapshot plus the log after it.
//! Writing a snapshot deletes the log up to its seq in the same transaction.
//!
//! A mutating call is acknowledged only once its log entry is fsynced. To
//! make that affordable under load, all writes go through one writer thread
//! that groups every queued request into a single transaction and a single
//! fsync (see `writer.rs`); callers get a [`Commit`] future that resolves
//! when their request is durable or refused. Reads are plain redb read
//! transactions on the caller's thread and never wait for the writer.
//!
//! The store knows nothing of guests or code: the mailbox layer decides what
//! an op is and when to snapshot (using [`MailboxStore::usage`]), the runtime
//! produces and consumes the bytes.

pub mod attachments;
mod blobs;
mod buffers;
mod error;
mod import;
mod messages;
mod read;
mod search;
mod staging;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

pub use blobs::BLOB_BYTES_MIN;
use blobs::Blobs;
pub use error::{CommitError, Corruption, LoadError, OpenError, Shared};
pub use import::{ImportTail, StageToken};
pub use messages::{
    MESSAGE_BYTES_MAX, MESSAGES_PER_REQUEST_MAX, MESSAGES_REQUEST_BYTES_MAX, MessageUsage,
};
pub use search::{SearchBatch, SearchState, SearchWriteError};
pub use staging::{ImportSnapshot, SnapshotStaging, StagedRecord, StagedSnapshot, StagingError};
use tables::{META, MetaRecord};
use writer::{Op, Request, Writer};

pub use dem_proto::export::{MailboxMeta, SnapshotRecord, snapshot_hasher};

/// Largest single log entry. Ops are single mutating calls (a delivered
/// mail, a flag change); anything bigger is a bug or an attack.
pub const OP_BYTES_MAX: usize = 64 << 20;
/// Largest snapshot. redb refuses values over 3 GiB, so stay well below.
pub const SNAPSHOT_BYTES_MAX: usize = 2 << 30;
/// Longest mailbox id, in bytes (the same bound as `crate::ids`).
pub const MAILBOX_ID_BYTES_MAX: usize = 128;

/// File name of the database inside the data directory.
const DB_FILE: &str = "mailboxes.redb";

/// Tuning of a [`MailboxStore`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Most requests the writer puts into one transaction (default 4096).
    pub group_commit_ops_max: usize,
    /// Whether commits fsync (default true). `false` only for tests and
    /// benchmarks that measure without durability: a crash then loses writes.
    pub fsync: bool,
}

/// Everything needed to rebuild a mailbox.
#[derive(Debug)]
pub struct Recovery {
    /// The mailbox's meta.
    pub meta: MailboxMeta,
    /// The latest snapshot, if any was written.
    pub snapshot: Option<SnapshotRecord>,
    /// Ops after the snapshot, seq-ascending and contiguous.
    pub tail: Vec<(u64, Vec<u8>)>,
    /// Seq of the newest op (the snapshot's seq when the tail is empty).
    pub last_seq: u64,
    /// The snapshot file's name, its keyed BLAKE3 ([`snapshot_hasher`]),
    /// if the snapshot is kept as a file.
    pub snapshot_file: Option<[u8; 32]>,
}

/// Storage used by one mailbox, for the snapshot policy and admin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    /// Seq of the snapshot, if any.
    pub snapshot_seq: Option<u64>,
    /// Size of the snapshot (0 without one).
    pub snapshot_bytes: u64,
    /// Number of log entries after the snapshot.
    pub log_entries: u64,
    /// Total size of those entries.
    pub log_bytes: u64,
}

/// Told the duration of each durable group commit
/// ([`MailboxStore::on_commit`]).
pub type CommitHook = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// The mailbox database. Cheap to clone; all clones share one database and
/// one writer thread, which stops once the last clone is dropped (or on
/// [`MailboxStore::shutdown`]) after finishing the queued writes.
#[derive(Clone)]
pub struct MailboxStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `None` after shutdown; a write lock only ever taken to shut down.
    tx: RwLock<Option<Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
    /// What the writer tells of each commit's duration.
    commit_hook: Arc<OnceLock<CommitHook>>,
    /// Large snapshots, as files the `META` records name.
    blobs: Arc<Blobs>,
    /// Message bytes, which `MESSAGE_PLACES` locates.
    packs: Arc<messages::pack::Packs>,
    /// The last [`StageToken`] handed out.
    stage_tokens: AtomicU64,
}

/// Completes when a write is durable (`Ok`) or refused. Await it, or call
/// [`Commit::wait_blocking`] outside async code. Dropping it does not cancel
/// the write.
#[must_use = "a Commit reports whether the write became durable"]
pub struct Commit {
    rx: oneshot::Receiver<Result<(), CommitError>>,
}

impl MailboxStore {
    /// Opens (creating if needed) `dir/mailboxes.redb` and starts the writer
    /// thread "dem-store-writer".
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir)?;
        let db = Database::builder()
            .create(dir.join(DB_FILE))
            .map_err(redb::Error::from)?;
        tables::init(&db)?;
        let blobs = Arc::new(Blobs::open(dir)?);
        let durability = if config.fsync {
            Durability::Immediate
        } else {
            Durability::None
        };
        let packs = Arc::new(messages::pack::Packs::open(dir, config.fsync)?);
        let moved = messages::move_into_packs(&db, &packs, durability)
            .map_err(|e| OpenError::Io(std::io::Error::other(e)))?;
        if moved > 0 {
            tracing::info!(
                moved,
                "moved the stored messages from the database into packs"
            );
        }
        match named_files(&db)? {
            Some(named) => {
                let swept = blobs.sweep(&named)?;
                if swept > 0 {
                    tracing::info!(swept, "removed snapshot files no record names");
                }
            }
            // Which files are named is unknown: keep them all.
            None => tracing::warn!("a mailbox record does not decode; snapshot files kept"),
        }
        let swept = import::sweep_staged_logs(&db)?;
        if swept > 0 {
            tracing::info!(
                swept,
                "dropped log tails staged by imports a crash cut short"
            );
        }
        let db = Arc::new(db);
        let commits = Arc::new(AtomicU64::new(0));
        let commit_hook = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            rx,
            ops_max: config.group_commit_ops_max.max(1),
            durability,
            commits: Arc::clone(&commits),
            commit_hook: Arc::clone(&commit_hook),
            blobs: Arc::clone(&blobs),
            packs: Arc::clone(&packs),
        };
        let handle = std::thread::Builder::new()
            .name("dem-store-writer".to_owned())
            .spawn(move || writer.run())?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                tx: RwLock::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                commits,
                commit_hook,
                blobs,
                packs,
                stage_tokens: AtomicU64::new(0),
            }),
        };
        let orphans = messages::drop_orphans_of_last_run(&store)?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "dropping message references of imports the last run did not finish"
            );
        }
        Ok(store)
    }

    /// Creates an empty mailbox (last seq 0). [`CommitError::Exists`] if present.
    pub fn create(&self, id: &str, meta: MailboxMeta) -> Commit {
        self.submit(id, Op::Create(meta))
    }

    /// Appends op `seq`, which must be exactly the last seq + 1
    /// ([`CommitError::SeqConflict`] otherwise).
    pub fn append(&self, id: &str, seq: u64, op: Vec<u8>) -> Commit {
        if let Err(e) = check_len("op", op.len(), OP_BYTES_MAX) {
            return Commit::failed(e);
        }
        self.submit(id, Op::Append { seq, op })
    }

    /// Replaces the snapshot and deletes the log up to `snapshot.seq`, which
    /// must lie between the current snapshot's seq and the last seq
    /// (inclusive; [`CommitError::BadSnapshot`] otherwise).
    pub fn snapshot(&self, id: &str, snapshot: SnapshotRecord) -> Commit {
        if let Err(e) = check_len("snapshot", snapshot.bytes.len(), SNAPSHOT_BYTES_MAX) {
            return Commit::failed(e);
        }
        self.submit(id, Op::Snapshot(snapshot))
    }

    /// Writes a whole mailbox atomically (it moves here from another host).
    /// `tail` must continue the snapshot's seq (or start at 1 without one);
    /// an existing mailbox is replaced only if `replace`, else
    /// [`CommitError::Exists`].
    pub fn import(
        &self,
        id: &str,
        meta: MailboxMeta,
        snapshot: Option<SnapshotRecord>,
        tail: Vec<(u64, Vec<u8>)>,
        replace: bool,
    ) -> Commit {
        let sizes = snapshot
            .iter()
            .map(|s| check_len("snapshot", s.bytes.len(), SNAPSHOT_BYTES_MAX))
            .chain(
                tail.iter()
                    .map(|(_, op)| check_len("op", op.len(), OP_BYTES_MAX)),
            );
        for size in sizes {
            if let Err(e) = size {
                return Commit::failed(e);
            }
        }
        self.submit(
            id,
            Op::Import {
                meta,
                snapshot: snapshot.map(ImportSnapshot::Bytes),
                tail: ImportTail::Rows(tail),
                replace,
            },
        )
    }

    /// Writes the log tail of a mailbox that an import will bring (a move's
    /// target has it before the snapshot), so that the import only checks
    /// the rows ([`ImportTail::Staged`] with the token returned here);
    /// refused if the mailbox is here or another import stages it. Call
    /// [`MailboxStore::drop_staged_log`] if the import does not follow.
    pub fn stage_log(&self, id: &str, tail: Vec<(u64, Vec<u8>)>) -> (StageToken, Commit) {
        let token = StageToken(self.inner.stage_tokens.fetch_add(1, Ordering::Relaxed) + 1);
        for (_, op) in &tail {
            if let Err(e) = check_len("op", op.len(), OP_BYTES_MAX) {
                return (token, Commit::failed(e));
            }
        }
        (token, self.submit(id, Op::StageLog { token, rows: tail }))
    }

    /// Deletes the log tail `token`'s import staged, if it did not take it.
    pub fn drop_staged_log(&self, id: &str, token: StageToken) -> Commit {
        self.submit(id, Op::DropStagedLog(token))
    }

    /// A file to write a snapshot into as it arrives, for
    /// [`MailboxStore::import_staged`]. Blocking file I/O.
    pub fn stage_snapshot(&self) -> std::io::Result<SnapshotStaging> {
        SnapshotStaging::create(self.inner.blobs.dir())
    }

    /// Like [`MailboxStore::import`], for a move's target: the snapshot
    /// may already be written to a staged file (the commit only names it),
    /// and the tail staged ([`MailboxStore::stage_log`]; the commit only
    /// checks its rows, and refuses to replace a mailbox).
    pub fn import_staged(
        &self,
        id: &str,
        meta: MailboxMeta,
        snapshot: Option<ImportSnapshot>,
        tail: ImportTail,
        replace: bool,
    ) -> Commit {
        if let Some(ImportSnapshot::Bytes(s)) = &snapshot
            && let Err(e) = check_len("snapshot", s.bytes.len(), SNAPSHOT_BYTES_MAX)
        {
            return Commit::failed(e);
        }
        if let ImportTail::Rows(rows) = &tail {
            for (_, op) in rows {
                if let Err(e) = check_len("op", op.len(), OP_BYTES_MAX) {
                    return Commit::failed(e);
                }
            }
        }
        self.submit(
            id,
            Op::Import {
                meta,
                snapshot,
                tail,
                replace,
            },
        )
    }

    /// Deletes a mailbox's meta, snapshot and log, and its message
    /// references: a message no other mailbox references goes in the same
    /// transaction.
    pub fn remove(&self, id: &str) -> Commit {
        self.submit(id, Op::Remove)
    }

    /// Number of write transactions committed since open: with group commit
    /// far fewer than requests. For tests and benchmarks.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Has `hook` told, on the writer thread, how long each group commit
    /// took to become durable (its fsyncs), for a latency histogram that
    /// the caller keeps: the store itself knows no metrics format. One
    /// hook per store; `false` if one was set already. The hook must be
    /// quick, as the next batch waits on it.
    pub fn on_commit(&self, hook: CommitHook) -> bool {
        self.inner.commit_hook.set(hook).is_ok()
    }

    /// Stops accepting writes (later ones fail with [`CommitError::WriterGone`]
    /// on every clone), then waits for the writer to commit what is queued.
    /// Reads keep working. Blocks for at most about one batch.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Queues a write after the checks every request shares.
    fn submit(&self, id: &str, op: Op) -> Commit {
        if id.is_empty() {
            return Commit::failed(CommitError::InvalidId(id.to_owned()));
        }
        if let Err(e) = check_len("mailbox id", id.len(), MAILBOX_ID_BYTES_MAX) {
            return Commit::failed(e);
        }
        let (reply, rx) = oneshot::channel();
        let request = Request {
            id: id.to_owned(),
            op,
            reply,
        };
        let tx = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
        // If the writer is gone, the request and its reply sender are dropped
        // here, which resolves the Commit to WriterGone.
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(request);
        }
        Commit { rx }
    }
}

impl Inner {
    fn shutdown(&self) {
        // Dropping the only sender ends the writer's loop once it has drained.
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl Commit {
    /// A commit already resolved to `error` (request refused before queueing).
    fn failed(error: CommitError) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        Self { rx }
    }

    /// Blocks the thread until the write is durable or refused.
    ///
    /// # Panics
    /// If called on a thread that is running async tasks (tokio forbids
    /// blocking there); await the `Commit` instead.
    pub fn wait_blocking(self) -> Result<(), CommitError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(CommitError::WriterGone))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            group_commit_ops_max: 4096,
            fsync: true,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Future for Commit {
    type Output = Result<(), CommitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The writer drops the reply sender only if it died mid-batch.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(CommitError::WriterGone)))
    }
}

/// Refuses `actual` bytes of `what` over `limit`.
fn check_len(what: &'static str, actual: usize, limit: usize) -> Result<(), CommitError> {
    if actual > limit {
        return Err(CommitError::TooLarge {
            what,
            limit: limit as u64,
            actual: actual as u64,
        });
    }
    Ok(())
}

/// Every snapshot file a `META` record names; `None` if a record does not
/// decode.
fn named_files(
    db: &Database,
) -> Result<Option<std::collections::HashSet<blobs::BlobName>>, OpenError> {
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let table = txn.open_table(META).map_err(redb::Error::from)?;
    let mut named = std::collections::HashSet::new();
    for entry in table.iter().map_err(redb::Error::from)? {
        let (key, value) = entry.map_err(redb::Error::from)?;
        let Ok(rec) = MetaRecord::decode(key.value(), value.value()) else {
            return Ok(None);
        };
        if let Some(name) = rec.snapshot.and_then(|h| h.file) {
            named.insert(name);
        }
    }
    Ok(Some(named))
}
