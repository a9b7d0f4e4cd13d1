//! Answers about names and locations: registration outcomes, lookups.

use serde::{Deserialize, Serialize};

use dem_identity::{Epoch, HostId, UserId};

use crate::AttachmentId;

/// The outcome of a successful registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The name is now the user's.
    New,
    /// The user already held the name: nothing changed.
    AlreadyYours,
}

/// A holder host, resolved for a client to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAddr {
    pub host: HostId,
    /// `None` if this unit has not yet heard of the host itself (its record
    /// is still being replicated).
    pub addr: Option<String>,
    pub online: bool,
}

/// Where a user's mailbox is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxLookup {
    pub user: UserId,
    pub epoch: Epoch,
    /// Holders in the order the holders reported them.
    pub hosts: Vec<HostAddr>,
    /// The owner's own host, while connected.
    pub home: Option<HostAddr>,
}

/// Where an attachment is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentLookup {
    pub id: AttachmentId,
    pub size_bytes: u64,
    pub epoch: Epoch,
    pub hosts: Vec<HostAddr>,
    /// Whether its reference lease holds: some mail may reference it, so
    /// it must not be collected yet.
    #[serde(default = "referenced_by_default")]
    pub referenced: bool,
}

/// An answer from a unit that predates reference leases: keep everything.
fn referenced_by_default() -> bool {
    true
}
