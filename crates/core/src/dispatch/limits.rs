//! Named limits and timings of a dispatch unit.
//!
//! A unit takes records from hosts and from peer units that it does not
//! control, so every table and every per-object list is bounded: a buggy or
//! hostile peer can be refused, but cannot make the unit grow without end.
//! The table sizes live in [`Limits`] so tests can use small ones; format
//! limits (name and address length) and timings are plain constants because
//! every unit of a network must agree on them.

use std::fmt;

pub use dem_proto::dispatch::{
    ATTACHMENT_GRACE_MS, MAX_UNITS, PIPELINE_CLIENT_IDLE_MS, PIPELINE_FRAME_BYTES_MAX,
    PIPELINE_IDLE_MS, REPLICAS, WRITE_QUORUM,
};

/// Most host records (including hosts that left, kept as tombstones so a
/// late heartbeat cannot resurrect them).
pub const MAX_HOSTS: usize = 10_000;
/// Most registered names.
pub const MAX_NAMES: usize = 1_000_000;
/// Most mailbox records.
pub const MAX_MAILBOXES: usize = 1_000_000;
/// Most attachment records (removed attachments stay as tombstones).
pub const MAX_ATTACHMENTS: usize = 4_000_000;
/// Most hosts holding copies of one mailbox or attachment (replicas).
pub const MAX_HOSTS_PER_OBJECT: usize = 8;
/// Most outstanding move grants kept per object; beyond it the oldest grant
/// is dropped (deterministically, so peer units drop the same one).
pub const MAX_PENDING_MOVES_PER_OBJECT: usize = 8;
/// Longest user name: the rule of the signed claims.
pub use dem_identity::MAX_NAME_LEN;
/// Longest host or unit address (`IP:PORT`; a bracketed IPv6 address with a
/// port is at most 47 characters, plus room for a zone id).
pub const MAX_ADDR_LEN: usize = 64;
/// Largest capacity a host may announce; a sanity bound, far above what one
/// process can hold, that keeps load arithmetic far from overflow.
pub const MAX_CAPACITY: u64 = 1 << 32;
/// Largest jump a location update may make over the current epoch, so one
/// holder cannot push an epoch to `u64::MAX` and freeze the object forever.
pub const MAX_EPOCH_STEP: u64 = 1_000;

/// Longest operator label a host may give (`dem host --operator`).
pub const OPERATOR_CHARS_MAX: usize = 64;
/// How long a join or heartbeat keeps a host online.
pub const LEASE_MS: u64 = 15_000;
/// How often hosts are expected to heartbeat: three tries per lease, so one
/// lost heartbeat does not take a host offline.
pub const HEARTBEAT_INTERVAL_MS: u64 = 5_000;
/// How long a replica a rebalancing move sheds counts as gone from its
/// host's load: a move that is not made (the leader found its set out of
/// sync) must not skew placement for long.
pub const REBALANCE_SHED_MS: u64 = 60_000;
/// How long a move grant (a placement handed out) stays usable; a migration
/// that takes longer must ask for a new placement.
pub const MOVE_GRANT_MS: u64 = 10 * 60_000;
/// How far a name claim's `issued_ms` may lie from the unit's clock. First
/// come is decided by `issued_ms`, so without this bound a claim could be
/// back-dated to steal a name from a peer unit's earlier registration.
pub const MAX_CLAIM_SKEW_MS: u64 = 5 * 60_000;
/// Largest signed name claim body a unit keeps. A claim is a name, a user
/// id, a time and an encryption key: about 150 bytes. The body format
/// ignores unknown fields, so without this bound a user (or a peer unit)
/// could make every unit store a large blob per name.
pub const MAX_CLAIM_BODY_BYTES: usize = 512;
/// Most attachment ids one `AttachmentRefs` request may renew.
pub const ATTACHMENT_REFS_MAX: usize = 4_096;

/// Table-size limits of one unit; [`Limits::default`] uses the constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_hosts: usize,
    pub max_names: usize,
    pub max_mailboxes: usize,
    pub max_attachments: usize,
    pub max_units: usize,
    pub max_hosts_per_object: usize,
    pub max_pending_moves_per_object: usize,
    /// How long a join or heartbeat keeps a host online ([`LEASE_MS`];
    /// shorter in tests that watch hosts expire).
    pub lease_ms: u64,
    /// Replicas each mailbox and attachment should have (R). A network
    /// setting: give every unit the same.
    pub replicas: usize,
    /// Replicas a mutation must be durable on before it is acknowledged
    /// (W), at most `replicas`.
    pub write_quorum: usize,
    /// [`ATTACHMENT_GRACE_MS`], shorter in tests that watch collection.
    pub attachment_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_hosts: MAX_HOSTS,
            max_names: MAX_NAMES,
            max_mailboxes: MAX_MAILBOXES,
            max_attachments: MAX_ATTACHMENTS,
            max_units: MAX_UNITS,
            max_hosts_per_object: MAX_HOSTS_PER_OBJECT,
            max_pending_moves_per_object: MAX_PENDING_MOVES_PER_OBJECT,
            lease_ms: LEASE_MS,
            replicas: REPLICAS,
            write_quorum: WRITE_QUORUM,
            attachment_grace_ms: ATTACHMENT_GRACE_MS,
        }
    }
}

/// Which table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Hosts,
    Names,
    Mailboxes,
    Attachments,
    Units,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Hosts => "hosts",
            Limit::Names => "names",
            Limit::Mailboxes => "mailboxes",
            Limit::Attachments => "attachments",
            Limit::Units => "dispatch units",
        })
    }
}

/// A table is full: the new record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("table full: at most {max} {limit}")]
pub struct LimitExceeded {
    pub limit: Limit,
    pub max: usize,
}

/// Refuses a new entry in a table of `len` entries when it is at `max`.
pub(crate) fn check_room(limit: Limit, len: usize, max: usize) -> Result<(), LimitExceeded> {
    if len >= max {
        Err(LimitExceeded { limit, max })
    } else {
        Ok(())
    }
}
