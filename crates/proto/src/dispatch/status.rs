//! The `dem admin status` view: hosts, users, each mailbox's replicas.

use serde::{Deserialize, Serialize};

use dem_identity::{DispatchId, Epoch, HostId, UserId};

use super::tables::HostState;
use crate::AttachmentId;

/// The whole status view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub now_ms: u64,
    /// The unit answering.
    pub unit: DispatchId,
    pub summary: Summary,
    pub units: Vec<UnitStatus>,
    pub hosts: Vec<HostStatus>,
    pub users: Vec<UserStatus>,
    /// Located attachments and their holders, by id, at most
    /// [`STATUS_ATTACHMENTS_MAX`] (the summary counts them all).
    #[serde(default)]
    pub attachments: Vec<AttachmentStatus>,
}

/// Most attachments one status answer lists, to keep it within a frame.
pub const STATUS_ATTACHMENTS_MAX: usize = 10_000;

/// Counts at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub units: usize,
    pub hosts_online: usize,
    pub hosts_known: usize,
    pub users_online: usize,
    pub users_offline: usize,
    pub mailboxes: usize,
    /// Attachments currently located (removed ones not counted).
    pub attachments: usize,
}

/// A known dispatch unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub id: DispatchId,
    pub addr: String,
    pub seen_ms: u64,
    pub is_self: bool,
}

/// A known host and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub id: HostId,
    pub addr: String,
    pub online: bool,
    pub state: HostState,
    pub epoch: Epoch,
    pub capacity: u64,
    /// As last reported by the host.
    pub load: u64,
    pub lease_expires_ms: u64,
    pub last_seen_ms: u64,
    /// Mailboxes held, by the owner's first name, or user id (hex) for
    /// owners without a known name.
    pub mailboxes: Vec<String>,
    /// How many attachments it holds. A count, not ids: attachment ids are
    /// opaque hashes; `lookup_attachment` gives the details of one.
    pub attachments: usize,
    /// Who runs it, as its operator named it.
    #[serde(default)]
    pub operator: Option<String>,
}

/// A located attachment: who holds it, and until when a mail may
/// reference it (`None`: a record older than reference leases).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentStatus {
    pub id: AttachmentId,
    pub hosts: Vec<HostId>,
    pub epoch: Epoch,
    pub size_bytes: u64,
    pub referenced_until_ms: Option<u64>,
}

/// A user: names, whether they are online, where their mailbox is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    pub user: UserId,
    /// The first of `names`, for display.
    pub name: Option<String>,
    pub names: Vec<String>,
    /// Their home host is online.
    pub online: bool,
    pub home: Option<HostId>,
    pub hosts: Vec<HostId>,
    pub epoch: Epoch,
}
