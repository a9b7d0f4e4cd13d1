//! Error types of the mailbox store, one enum per operation family.
//!
//! [`CommitError`] carries strings rather than source errors because one
//! failed commit is reported to every request of its batch, so it must be
//! `Clone`; redb's errors are not.

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
    /// Another import is staging this mailbox's log tail.
    #[error("mailbox {0:?} is being imported by another transfer")]
    Staging(String),
    /// A large snapshot's file could not be written; nothing of this
    /// request is stored.
    #[error("writing the snapshot file: {0}")]
    SnapshotFile(String),
    /// redb failed to write or commit the batch; no request of it is durable.
    #[error("store database: {0}")]
    Database(String),
    /// The writer thread has stopped (store shut down, or it panicked).
    #[error("store writer is gone")]
    WriterGone,
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LoadError {
    /// redb failed to read.
    #[error("store database: {0}")]
    Database(String),
    /// Stored data contradicts itself or cannot be decoded.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

impl LoadError {
    /// Wraps any redb error (they all convert into [`redb::Error`]).
    pub(super) fn database(e: impl Into<redb::Error>) -> Self {
        LoadError::Database(e.into().to_string())
    }
}

impl CommitError {
    /// Wraps any redb error (they all convert into [`redb::Error`]).
    pub(super) fn database(e: impl Into<redb::Error>) -> Self {
        CommitError::Database(e.into().to_string())
    }
}
