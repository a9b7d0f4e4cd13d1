//! Mailboxes on a host: one actor per mailbox (`actor`), the registry that
//! finds, creates, wakes, exports and imports them (`registry`), the filter
//! pipeline on the delivery path (`filters`), and the calls as data
//! (`request`, with one typed verb per call in `request::verbs`).
//!
//! The actor owns the wasm Store; the registry owns the actors; the store
//! module below owns durability. A call goes registry → actor channel →
//! guest → operation log → reply once durable.

pub mod actor;
pub mod clock;
pub mod filters;
pub mod incoming;
pub use incoming::{Incoming, IncomingError};
pub mod registry;
pub use dem_proto::mailbox as request;
mod residents;
mod restore;

use std::time::Duration;

use dem_proto::ids::{CodeHash, IdError, MailboxId};
use dem_proto::mail::MailboxError;
use dem_runtime::{CallError, RuntimeError};
use dem_store::{CommitError, LoadError};

pub use registry::Mailboxes;
pub use request::{Op, Request, Response, UnexpectedAnswer, Verb};

/// Why an import, or a batch of a replica's ops, was refused
/// ([`MailboxCallError::Import`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportRefusal {
    /// The export or batch contradicts itself, or this host cannot import;
    /// how.
    #[error("{0}")]
    Refused(String),
    /// A replicated op does not decode.
    #[error("a replicated op is malformed: {0}")]
    MalformedOp(#[source] rmp_serde::decode::Error),
    /// The imported state does not restore into its code; it was dropped.
    #[error("the imported state does not restore: {0}")]
    Restore(#[source] Box<MailboxCallError>),
}

/// How the host treats its mailboxes.
#[derive(Debug, Clone)]
pub struct MailboxesConfig {
    /// A mailbox with no calls for this long is snapshotted and its instance
    /// dropped; the next call wakes it.
    pub idle_hibernate: Duration,
    /// Calls queued for one mailbox before senders wait.
    pub queue_depth: usize,
    /// Snapshot once the log since the last snapshot holds at least this many
    /// bytes *and* at least as many as the last snapshot: replay stays
    /// bounded by about one snapshot's worth of work.
    pub snapshot_log_bytes_min: u64,
    /// Longest wait for in-flight commits before giving up on a wake.
    pub settle_timeout: Duration,
}

impl Default for MailboxesConfig {
    fn default() -> Self {
        Self {
            idle_hibernate: Duration::from_secs(60),
            queue_depth: 1024,
            snapshot_log_bytes_min: 1 << 20,
            settle_timeout: Duration::from_secs(30),
        }
    }
}

pub use dem_proto::mailbox::MovedTo;

/// How a migration that paused a mailbox ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationOutcome {
    /// The target imported and acknowledged it: this host lets go.
    Moved(MovedTo),
    /// The move failed: the mailbox carries on here, intact.
    Stay,
}

/// Why a call on a mailbox failed.
#[derive(Debug, thiserror::Error)]
pub enum MailboxCallError {
    /// The mailbox refused the call; nothing changed.
    #[error("{}", .0.describe())]
    Refused(MailboxError),
    /// A filter rejected the mail; it was not delivered.
    #[error("rejected by filter `{plugin}`: {reason}")]
    Rejected { plugin: String, reason: String },
    /// The mailbox code trapped. The instance was thrown away and will be
    /// rebuilt from durable state; the call had no effect.
    #[error("{0}; the mailbox was restarted from its durable state and the call had no effect")]
    Trap(CallError),
    /// No mailbox with this id on this host.
    #[error("no mailbox `{0}` on this host")]
    Unknown(MailboxId),
    /// A mailbox with this id already exists here.
    #[error("mailbox `{0}` already exists on this host")]
    Exists(MailboxId),
    /// A bad identifier.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The code could not be loaded or instantiated.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The operation could not be made durable; it was not acknowledged.
    #[error("could not make the call durable: {0}")]
    Commit(#[from] CommitError),
    /// Durable state could not be read.
    #[error("could not read durable state: {0}")]
    Load(#[from] LoadError),
    /// Durable state exists but could not be restored into the mailbox.
    #[error("mailbox `{id}` could not be restored: {reason}")]
    Restore { id: MailboxId, reason: String },
    /// Import refused: required code is missing or the export is malformed.
    #[error("import refused: {0}")]
    Import(#[source] ImportRefusal),
    /// The code hash named for a new mailbox is not on this host.
    #[error("no code {0} on this host")]
    MissingCode(CodeHash),
    /// The mailbox moved to another host; ask there.
    #[error("mailbox `{id}` moved to host {} at {} (epoch {})", .to.host, .to.addr, .to.epoch)]
    Moved { id: MailboxId, to: MovedTo },
    /// The mailbox answered with something the call cannot produce: a
    /// mismatched mailbox component.
    #[error(transparent)]
    Unexpected(#[from] UnexpectedAnswer),
    /// The mailbox's actor is gone (host shutting down, or mailbox moved).
    #[error("mailbox `{0}` is not available (shutting down or moved)")]
    Gone(MailboxId),
    /// This host cannot serve a mail's stored message: its copy is damaged
    /// or missing. Another replica may hold it intact.
    #[error("message {hash} is unavailable on this host: {reason}; read it from another replica")]
    MessageUnavailable { hash: String, reason: String },
}

impl MailboxCallError {
    /// Whether the host was too busy to run the call: nothing happened,
    /// and the same call may succeed later (the wire says "busy, retry").
    pub fn is_busy(&self) -> bool {
        matches!(self, MailboxCallError::Runtime(e) if e.is_busy())
    }
}
