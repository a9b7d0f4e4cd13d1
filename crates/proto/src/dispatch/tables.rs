//! The dispatch unit's tables as data: what units replicate and what a
//! new unit copies. The merge rules are in `dem-core`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use dem_identity::{DispatchId, Epoch, HostId, SignedNameClaim, UserId};

use super::objects::ObjectRef;
use crate::AttachmentId;

/// Where a host is in its session. Declared in session order: the derived
/// `Ord` is the merge order, so a later state always wins within an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Joined; may receive objects while its lease holds.
    Active,
    /// Leaving gracefully: still online and moving its objects away, but
    /// placement no longer picks it.
    Leaving,
    /// Reported that it moved everything and left; kept as a tombstone.
    Left,
}

/// A live (or formerly live) host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Where the host listens, `IP:PORT`.
    pub addr: String,
    /// How many objects (mailboxes + attachments) it is willing to hold.
    pub capacity: u64,
    /// How many objects it held at its last report.
    pub load: u64,
    /// The host is online while `now_ms < lease_expires_ms`. Online is not
    /// stored as a bool because it changes with time alone; see
    /// [`HostRecord::is_online`].
    pub lease_expires_ms: u64,
    pub last_seen_ms: u64,
    /// The host's session: bumped by every join.
    pub epoch: Epoch,
    pub state: HostState,
    /// Who runs the host, as its operator named it (`dem host --operator`);
    /// a label for the monitor and the admin console, not an identity.
    #[serde(default)]
    pub operator: Option<String>,
}

impl HostRecord {
    /// Whether the host's lease holds at `now_ms` (and it has not left).
    pub fn is_online(&self, now_ms: u64) -> bool {
        self.state != HostState::Left && now_ms < self.lease_expires_ms
    }

    /// Whether placement may send new objects here at `now_ms`.
    pub fn accepts_objects(&self, now_ms: u64) -> bool {
        self.state == HostState::Active && self.is_online(now_ms)
    }

    #[allow(clippy::type_complexity)]
    /// The merge order of two records of one host: the larger wins.
    pub fn version(&self) -> (Epoch, HostState, u64, u64, u64, u64, &str) {
        (
            self.epoch,
            self.state,
            self.last_seen_ms,
            self.lease_expires_ms,
            self.load,
            self.capacity,
            &self.addr,
        )
    }
}

/// Who holds a name, since when, and their current signed claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub user: UserId,
    /// When the holder first claimed the name, by their signed claim: the
    /// first-come order between users. A later claim by the same user (a
    /// key rotation) replaces `claim` but keeps this, so rotating never
    /// makes a holder lose the name to a later rival.
    pub issued_ms: u64,
    /// The holder's latest signed claim, which binds their encryption key
    /// to the name; lookups by name hand it out for the sender to check.
    /// `None` in records written before claims were kept.
    #[serde(default)]
    pub claim: Option<SignedNameClaim>,
}

impl NameRecord {
    /// The merge order of two records of one user (the larger claim is
    /// current): the claim's time, then its signature bytes so two claims
    /// signed in the same millisecond still have one winner everywhere.
    /// A record without a claim is smallest.
    pub fn claim_version(&self) -> Option<(i64, [u8; 64])> {
        self.claim.as_ref().map(|c| (c.0.issued_ms, c.0.signature))
    }

    /// When the current claim was made: the kept claim's time, or else the
    /// record's own. A new claim must be later to replace it.
    pub fn claim_ms(&self) -> i64 {
        match &self.claim {
            Some(c) => c.0.issued_ms,
            None => i64::try_from(self.issued_ms).unwrap_or(i64::MAX),
        }
    }
}

/// An authorization for `target` to report itself as a holder of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveGrant {
    /// The object's epoch when the grant was issued; the grant is void once
    /// the object moves past it (someone else's move won).
    pub base_epoch: Epoch,
    pub expires_ms: u64,
}

impl MoveGrant {
    /// Whether the grant may still be used at `now_ms` for an object at
    /// `epoch`.
    pub fn is_live(&self, now_ms: u64, epoch: Epoch) -> bool {
        now_ms < self.expires_ms && self.base_epoch >= epoch
    }

    /// The merge order of two grants to one target: the larger wins.
    pub fn version(&self) -> (Epoch, u64) {
        (self.base_epoch, self.expires_ms)
    }
}

/// Where a user's mailbox is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Hosts holding a copy; empty until the first placement is confirmed.
    pub hosts: Vec<HostId>,
    pub epoch: Epoch,
    /// The owner's own host while they are connected.
    pub home: Option<HostId>,
    /// When `home` was set, for last-writer-wins between units.
    pub home_set_ms: u64,
    /// Outstanding move grants by target host.
    pub pending: BTreeMap<HostId, MoveGrant>,
}

/// Where an attachment is. Empty `hosts` with a non-zero epoch is a removed
/// attachment (a tombstone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub hosts: Vec<HostId>,
    pub size_bytes: u64,
    pub epoch: Epoch,
    pub pending: BTreeMap<HostId, MoveGrant>,
    /// The reference lease: some mail may reference the attachment until
    /// then (see [`super::references`]). `None` for records written before
    /// leases existed: never collected until a renewal sets it.
    #[serde(default)]
    pub referenced_until_ms: Option<u64>,
}

impl AttachmentRecord {
    /// Whether a mail may still reference the attachment at `now_ms`, so
    /// it must not be collected.
    pub fn is_referenced(&self, now_ms: u64) -> bool {
        self.referenced_until_ms.is_none_or(|until| now_ms < until)
    }
}

/// A known dispatch unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub addr: String,
    /// When the unit last announced itself.
    pub seen_ms: u64,
}

/// Everything a dispatch unit knows; what peers replicate and what a new
/// unit copies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchTables {
    pub hosts: BTreeMap<HostId, HostRecord>,
    pub names: BTreeMap<String, NameRecord>,
    pub mailboxes: BTreeMap<UserId, MailboxRecord>,
    pub attachments: BTreeMap<AttachmentId, AttachmentRecord>,
    pub units: BTreeMap<DispatchId, UnitRecord>,
    /// R and W as an administrator last set them for the whole network;
    /// `None` until then (each unit's configured values apply). Tables
    /// saved before this field existed read as `None`.
    #[serde(default)]
    pub settings: Option<NetworkSettings>,
}

/// The network's replication settings, set at run time by an
/// administrator (`dem admin replication`); the latest `set_ms` wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// R: replicas of each mailbox and attachment.
    pub replicas: usize,
    /// W: replicas a mutation is durable on before it is acknowledged.
    pub write_quorum: usize,
    /// When it was set, by the unit that took the order.
    pub set_ms: u64,
}

impl NetworkSettings {
    /// The merge order of two settings: the larger wins.
    pub fn version(&self) -> (u64, usize, usize) {
        (self.set_ms, self.replicas, self.write_quorum)
    }
}

impl DispatchTables {
    /// The hosts and epoch of an object, if it has a record.
    pub fn location(&self, object: &ObjectRef) -> Option<(&[HostId], Epoch)> {
        match object {
            ObjectRef::Mailbox(user) => self.mailboxes.get(user).map(|r| (&r.hosts[..], r.epoch)),
            ObjectRef::Attachment(id) => self.attachments.get(id).map(|r| (&r.hosts[..], r.epoch)),
        }
    }

    /// The outstanding grants of an object, if it has a record.
    pub fn pending(&self, object: &ObjectRef) -> Option<&BTreeMap<HostId, MoveGrant>> {
        match object {
            ObjectRef::Mailbox(user) => self.mailboxes.get(user).map(|r| &r.pending),
            ObjectRef::Attachment(id) => self.attachments.get(id).map(|r| &r.pending),
        }
    }

    /// The names registered to `user`, in name order.
    pub fn names_of(&self, user: UserId) -> Vec<String> {
        self.names
            .iter()
            .filter(|(_, r)| r.user == user)
            .map(|(name, _)| name.clone())
            .collect()
    }
}
