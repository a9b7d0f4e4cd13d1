//! Error types of the mailbox store, one enum per operation family.
//!
//! One failed commit is reported to every request of its batch, so
//! [`CommitError`] (and the [`LoadError`] it may carry) must be `Clone`;
//! redb's, std's and rmp's errors are not. They keep their source errors
//! in a [`Shared`], which clones the pointer, not the error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// Why [`MailboxStore::open`](super::MailboxStore::open) failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The data directory could not be created or the writer thread not spawned.
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// redb could not open, create or initialise the database file.
    #[error("store database: {0}")]
    Database(#[from] redb::Error),
    /// The file was written by an incompatible version of this module.
    #[error("store format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// Format recorded in the file.
        found: u64,
        /// Format this build reads and writes.
        supported: u64,
    },
}

/// Why a write ([`Commit`](super::Commit)) did not become durable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CommitError {
    /// No mailbox with this id exists.
    #[error("unknown mailbox {0:?}")]
    UnknownMailbox(String),
    /// A mailbox with this id already exists.
    #[error("mailbox {0:?} already exists")]
    Exists(String),
    /// The appended op's seq is not the mailbox's last seq + 1.
    #[error("mailbox {id:?}: expected seq {expected}, got {got}")]
    SeqConflict {
        /// Mailbox id.
        id: String,
        /// The only seq the mailbox accepts next.
        expected: u64,
        /// The seq the request carried.
        got: u64,
    },
    /// A snapshot seq outside the allowed range, or an import tail that is
    /// not contiguous after its snapshot.
    #[error("bad snapshot or import: {0}")]
    BadSnapshot(String),
    /// The mailbox id is empty (over-long ids are [`CommitError::TooLarge`]).
    #[error("invalid mailbox id {0:?}")]
    InvalidId(String),
    /// A request exceeds one of the store's size limits.
    #[error("{what} is {actual} bytes, over the limit of {limit}")]
    TooLarge {
        /// Which part of the request is too large.
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
        /// The request's size in bytes.
        actual: u64,
    },
    /// A message is over [`MESSAGE_BYTES_MAX`](super::MESSAGE_BYTES_MAX);
    /// nothing of the request is stored (neither its other messages nor
    /// the op that names them).
    #[error("message {index} of the request is {actual} bytes, over the limit of {limit}")]
    MessageTooLarge {
        /// Position of the message in the request's list.
        index: usize,
        /// The limit in bytes.
        limit: u64,
        /// The message's size in bytes.
        actual: u64,
    },
    /// A request names more messages than
    /// [`MESSAGES_PER_REQUEST_MAX`](super::MESSAGES_PER_REQUEST_MAX);
    /// nothing of it is stored. Split it.
    #[error("the request holds {actual} messages, over the limit of {limit}")]
    TooManyMessages {
        /// The limit.
        limit: usize,
        /// How many the request holds.
        actual: usize,
    },
    /// Another import is staging this mailbox's log tail.
    #[error("mailbox {0:?} is being imported by another transfer")]
    Staging(String),
    /// A large snapshot's file could not be written (or a staged one not
    /// moved into place); nothing of this request is stored.
    #[error("writing the snapshot file: {0}")]
    SnapshotFile(#[source] Shared<std::io::Error>),
    /// The folder of the batch's new snapshot files could not be synced, so
    /// no record may name them yet; no request of the batch is durable.
    #[error("store database: syncing the snapshot folder: {0}")]
    SnapshotFolderSync(#[source] Shared<std::io::Error>),
    /// The message pack could not be written or synced, so no record may
    /// name its new bytes; no request of the batch is durable.
    #[error("writing the message pack: {0}")]
    MessagePack(#[source] Shared<std::io::Error>),
    /// redb failed to write or commit the batch; no request of it is durable.
    #[error("store database: {0}")]
    Database(#[source] Shared<redb::Error>),
    /// A stored record the request builds on could not be read; no
    /// request of the batch is durable.
    #[error("store database: {0}")]
    Record(#[source] LoadError),
    /// The writer thread has stopped (store shut down, or it panicked).
    #[error("store writer is gone")]
    WriterGone,
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LoadError {
    /// redb failed to read.
    #[error("store database: {0}")]
    Database(#[source] Shared<redb::Error>),
    /// Stored data contradicts itself or cannot be decoded.
    #[error("store data corrupt: {0}")]
    Corrupt(#[source] Corruption),
    /// A message pack could not be read.
    #[error("reading the message pack: {0}")]
    MessagePack(#[source] Shared<std::io::Error>),
}

/// What is wrong with a mailbox's stored data ([`LoadError::Corrupt`]).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Corruption {
    /// Records contradict one another (or a file its record); what was found.
    #[error("{0}")]
    Inconsistent(String),
    /// A mailbox's meta record does not decode.
    #[error("meta of mailbox {id:?}: {source}")]
    Meta {
        /// Mailbox id.
        id: String,
        /// The decoder's complaint.
        #[source]
        source: Shared<rmp_serde::decode::Error>,
    },
    /// A stored message's bytes do not hash to the name they are stored
    /// under: they were damaged on disk, and no one is handed them.
    #[error("message {} does not match its hash", Hex(hash))]
    Message {
        /// The BLAKE3 hash the message is stored under.
        hash: [u8; 32],
    },
    /// A mailbox's snapshot file could not be opened or read.
    #[error("mailbox {id:?}: snapshot file {}: {source}", path.display())]
    SnapshotFile {
        /// Mailbox id.
        id: String,
        /// The file its meta record names.
        path: PathBuf,
        /// The failed open, stat or read.
        #[source]
        source: Shared<std::io::Error>,
    },
}

/// A source error shared by the clones of one failure: cloning copies the
/// pointer, and two are equal only when they are clones of one error (the
/// errors inside have no `PartialEq`). Displays as the error it holds, and
/// derefs to it.
#[derive(Debug)]
pub struct Shared<E>(Arc<E>);

impl<E> Shared<E> {
    /// Wraps `e`.
    pub fn new(e: E) -> Self {
        Self(Arc::new(e))
    }
}

/// Lower-case hex of a hash, for messages.
struct Hex<'a>(&'a [u8; 32]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl LoadError {
    /// Wraps any redb error (they all convert into [`redb::Error`]).
    pub(super) fn database(e: impl Into<redb::Error>) -> Self {
        LoadError::Database(Shared::new(e.into()))
    }

    /// Stored data that contradicts itself: `what` says how.
    pub(super) fn inconsistent(what: String) -> Self {
        LoadError::Corrupt(Corruption::Inconsistent(what))
    }
}

impl CommitError {
    /// Wraps any redb error (they all convert into [`redb::Error`]).
    pub(super) fn database(e: impl Into<redb::Error>) -> Self {
        CommitError::Database(Shared::new(e.into()))
    }
}

impl<E> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<E> PartialEq for Shared<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<E> Eq for Shared<E> {}

impl<E> std::ops::Deref for Shared<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: fmt::Display> fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Shared<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
