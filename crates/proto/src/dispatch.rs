//! Messages served by dispatch units.
//!
//! Hosts speak for themselves (their key is the connection's peer key):
//! join, heartbeat, leave, location updates. Users' requests carry their
//! signature where they claim something (a name, a home, a move). Units
//! replicate to each other with `Announce`, `Snapshot` and `Replicate`.
//!
//! The tables and answers these messages carry are data here; the rules
//! that change them are `dem-core`'s.

use serde::{Deserialize, Serialize};

use dem_identity::{DispatchId, Epoch, HostId, Signed, SignedNameClaim, UserId};

use crate::AttachmentId;

pub mod departure;
pub mod names;
pub mod objects;
pub mod placement;
pub mod status;
pub mod tables;
pub mod updates;

pub use departure::DeparturePlan;
pub use names::{AttachmentLookup, HostAddr, MailboxLookup, Registration};
pub use objects::ObjectRef;
pub use placement::Placement;
pub use status::StatusView;
pub use tables::{
    AttachmentRecord, DispatchTables, HostRecord, HostState, MailboxRecord, MoveGrant, NameRecord,
    UnitRecord,
};
pub use updates::Update;

/// Replicas per mailbox and attachment unless a network says otherwise.
pub const REPLICAS: usize = 3;
/// Replicas that must hold an op durably before it is acknowledged.
pub const WRITE_QUORUM: usize = 2;
/// How long an unreferenced attachment is kept before it is collected.
pub const ATTACHMENT_GRACE_MS: u64 = 24 * 3_600_000;

/// Most known dispatch units, this one included.
pub const MAX_UNITS: usize = 64;

/// Largest lookup frame in a pipeline (`dispatch::pipeline`); lookups name
/// one user, name or attachment, far below this.
pub const PIPELINE_FRAME_BYTES_MAX: usize = 4_096;

/// A pipeline with no lookup for this long is closed by the unit, so an
/// idle client does not hold one of its connection's stream slots.
pub const PIPELINE_IDLE_MS: u64 = 30_000;

/// A client closes its pipeline after this long without a lookup, well
/// before the unit would, so the two never race over an idle stream.
pub const PIPELINE_CLIENT_IDLE_MS: u64 = 10_000;

/// What a pipeline frame answers with, for clients.
pub type PipelineAnswer = Result<DispatchResponse, crate::WireError>;

/// The owner orders their mailbox moved to `to` (home pull, admin move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOrder {
    pub user: UserId,
    pub to: HostId,
}

/// Refusal code (in a `WireError`) for something that does not exist: an
/// unknown name, user, host or attachment.
pub const NOT_FOUND: crate::ErrorCode = crate::ErrorCode::NotFound;
/// Refusal code for a request that conflicts with the tables: a name held
/// by someone else, a stale epoch, a replayed envelope.
pub const CONFLICT: crate::ErrorCode = crate::ErrorCode::Conflict;

/// A request to a dispatch unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DispatchRequest {
    /// A host comes online at `addr` (`IP:PORT`) and takes a lease.
    Join {
        addr: String,
        capacity: u64,
        load: u64,
        /// Who runs the host (`dem host --operator`), at most
        /// `OPERATOR_CHARS_MAX` printable characters.
        #[serde(default)]
        operator: Option<String>,
    },
    /// A host renews its lease and reports its load.
    Heartbeat {
        load: u64,
    },
    /// A host starts a graceful leave; the answer plans where everything it
    /// holds goes.
    Leave,
    /// A host that left has moved everything off.
    Left,
    /// A user claims a name (first come); the answer places the new
    /// mailbox, which the client then asks that host to create.
    Register {
        claim: SignedNameClaim,
    },
    LookupName {
        name: String,
    },
    LookupUser {
        user: UserId,
    },
    LookupAttachment {
        id: AttachmentId,
    },
    /// Where to store a new attachment (it may already be stored).
    PlaceAttachment {
        id: AttachmentId,
        size_bytes: u64,
    },
    /// Some mail may still reference these attachments: renew their
    /// reference leases (at most `ATTACHMENT_REFS_MAX`). Sent by hosts for
    /// their mailboxes' mails and by senders reusing a stored attachment.
    AttachmentRefs {
        ids: Vec<AttachmentId>,
    },
    /// Where a host holding `object` should move it (departure, failover).
    Place {
        object: ObjectRef,
        exclude: Vec<HostId>,
    },
    /// The connection's host now holds `object` alone (`hosts`) at `epoch`,
    /// which must be higher than the current one; only a holder or the
    /// target of an authorized move may say so.
    LocationUpdate {
        object: ObjectRef,
        hosts: Vec<HostId>,
        epoch: Epoch,
    },
    /// The owner's host is online (`Some`) or going away (`None`); signed by
    /// the owner, so no host can claim to be someone's home.
    Home {
        user: UserId,
        home: Signed<Option<HostId>>,
    },
    /// Authorize an explicit migration ordered by the mailbox's owner.
    AuthorizeMove {
        order: Signed<MoveOrder>,
    },
    /// Everything, for `dem admin status`.
    Status,
    /// Another unit introduces itself, with the network key's signature
    /// over its id (`dispatch::admission`); also sent first on every
    /// connection a unit replicates over.
    Announce {
        addr: String,
        #[serde(with = "serde_bytes")]
        admission: Vec<u8>,
    },
    /// A new unit copies the tables.
    Snapshot,
    /// A unit pushes table changes.
    Replicate {
        updates: Vec<Update>,
    },
    /// Opens a lookup pipeline (`dispatch::pipeline`): every further frame
    /// the client sends on this stream is a lookup, answered by one frame
    /// each, in order, until the client finishes its side. A busy client
    /// keeps many lookups in flight this way without paying for a QUIC
    /// stream per lookup.
    Pipeline,
    /// A host or unit ships its recent events (at most
    /// `logs::LOG_BATCH_MAX`, each within `logs::LOG_EVENT_BYTES_MAX`) to
    /// the unit's log ring. The unit stamps them with the connection's
    /// key: a component only ever ships events as itself.
    Logs {
        events: Vec<crate::logs::LogEvent>,
    },
    /// Reads the unit's log ring: events after `after` (a `LogsPage::next`)
    /// oldest first, or with `after: None` the most recent ones; at most
    /// `limit`, itself at most `logs::LOG_QUERY_MAX`.
    LogsQuery {
        filter: crate::logs::LogFilter,
        after: Option<u64>,
        limit: usize,
    },
    /// The connection's host, as leader of some replica sets, asks whether
    /// one of them should shed a replica to a less loaded host
    /// (`dispatch::rebalance`); answered `Rebalance`.
    Rebalance,
}

impl DispatchRequest {
    /// Whether this is a read-only lookup, which may go through a
    /// pipeline: answered at once from the tables, never waiting on a save.
    pub fn is_lookup(&self) -> bool {
        matches!(
            self,
            DispatchRequest::LookupName { .. }
                | DispatchRequest::LookupUser { .. }
                | DispatchRequest::LookupAttachment { .. }
        )
    }
}

/// A dispatch unit's answer.
fn default_replicas() -> usize {
    REPLICAS
}

fn default_write_quorum() -> usize {
    WRITE_QUORUM
}

fn default_attachment_grace_ms() -> u64 {
    ATTACHMENT_GRACE_MS
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DispatchResponse {
    Done,
    /// Joined or renewed: the lease length, and the units this one knows
    /// (so hosts and clients learn the backbone).
    Lease {
        lease_ms: u64,
        units: Vec<(DispatchId, String)>,
        /// R: replicas per mailbox and attachment in this network.
        #[serde(default = "default_replicas")]
        replicas: usize,
        /// W: durable replicas before a mutation is acknowledged.
        #[serde(default = "default_write_quorum")]
        write_quorum: usize,
        /// How long an unreferenced attachment is kept; hosts renew their
        /// mailboxes' references every quarter of it.
        #[serde(default = "default_attachment_grace_ms")]
        attachment_grace_ms: u64,
        /// An administrator ordered this host drained: move everything
        /// away and leave, as on SIGTERM.
        #[serde(default)]
        draining: bool,
    },
    Plan(DeparturePlan),
    Registered {
        user: UserId,
        placement: Placement,
    },
    Mailbox(MailboxLookup),
    Attachment(AttachmentLookup),
    Placement(Placement),
    Status(Box<StatusView>),
    Tables(Box<DispatchTables>),
    Logs(crate::logs::LogsPage),
    /// A replica move for balance, authorized, or `None`.
    Rebalance(Option<placement::RebalanceMove>),
}
