//! The dispatch unit's tables and how two copies of a record are merged.
//!
//! The tables are plain serde data so a driver can snapshot them to disk and
//! hand them to a new unit. Every record merges as a register with a total
//! order ("the larger version wins"), and every local change goes through
//! the same `merge_*` function a replicated update does: that is what makes
//! units that saw the same updates, in any order and with duplicates, end up
//! with equal tables. The orders are:
//!
//! - host: `(epoch, state, last_seen_ms, lease, load, capacity, addr)`; the
//!   epoch counts the host's sessions (joins) and the state only moves
//!   Active → Leaving → Left within one session, so a late heartbeat never
//!   undoes a leave;
//! - name: the smaller `(issued_ms, user)` wins (first come);
//! - mailbox/attachment location: `(epoch, hosts)` (attachments then
//!   `size_bytes`); at equal epochs the lexicographically larger host list
//!   wins, so an empty list (removal) loses to any location;
//! - attachment reference lease: the larger `referenced_until_ms`;
//! - mailbox home: `(set_ms, home)`;
//! - move grants, per target: `(base_epoch, expires_ms)`; grants issued
//!   before the object's current epoch are void and dropped, and beyond the
//!   per-object limit the smallest grants go (keeping the N largest of a set
//!   is itself an order-independent merge);
//! - dispatch unit: `(seen_ms, addr)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits::{Limit, LimitExceeded, Limits, check_room};
use super::objects::{AttachmentId, ObjectRef};
use crate::identity::id::{DispatchId, Epoch, HostId, UserId};

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
    fn version(&self) -> (Epoch, HostState, u64, u64, u64, u64, &str) {
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

/// Who holds a name, and since when by their own signed claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub user: UserId,
    pub issued_ms: u64,
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

    fn version(&self) -> (Epoch, u64) {
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
}

/// Drops void grants, then the smallest ones beyond `max`.
fn normalize_pending(pending: &mut BTreeMap<HostId, MoveGrant>, epoch: Epoch, max: usize) {
    pending.retain(|_, g| g.base_epoch >= epoch);
    while pending.len() > max {
        let smallest = pending
            .iter()
            .min_by_key(|(target, g)| (g.version(), **target))
            .map(|(target, _)| *target);
        match smallest {
            Some(target) => pending.remove(&target),
            None => break,
        };
    }
}

/// Merges one grant into a pending map; true if the map changed.
fn merge_grant(
    pending: &mut BTreeMap<HostId, MoveGrant>,
    epoch: Epoch,
    max: usize,
    target: HostId,
    grant: MoveGrant,
) -> bool {
    let before = pending.clone();
    match pending.get_mut(&target) {
        Some(cur) if cur.version() >= grant.version() => return false,
        Some(cur) => *cur = grant,
        None => {
            pending.insert(target, grant);
        }
    }
    normalize_pending(pending, epoch, max);
    *pending != before
}

impl DispatchTables {
    /// Merges a host record; true if anything changed.
    pub(crate) fn merge_host(
        &mut self,
        limits: &Limits,
        host: HostId,
        incoming: HostRecord,
    ) -> Result<bool, LimitExceeded> {
        match self.hosts.get_mut(&host) {
            Some(cur) if cur.version() >= incoming.version() => Ok(false),
            Some(cur) => {
                *cur = incoming;
                Ok(true)
            }
            None => {
                check_room(Limit::Hosts, self.hosts.len(), limits.max_hosts)?;
                self.hosts.insert(host, incoming);
                Ok(true)
            }
        }
    }

    /// Merges a name claim: the earlier `(issued_ms, user)` keeps the name.
    pub(crate) fn merge_name(
        &mut self,
        limits: &Limits,
        name: &str,
        incoming: NameRecord,
    ) -> Result<bool, LimitExceeded> {
        match self.names.get_mut(name) {
            Some(cur) if (cur.issued_ms, cur.user) <= (incoming.issued_ms, incoming.user) => {
                Ok(false)
            }
            Some(cur) => {
                *cur = incoming;
                Ok(true)
            }
            None => {
                check_room(Limit::Names, self.names.len(), limits.max_names)?;
                self.names.insert(name.to_string(), incoming);
                Ok(true)
            }
        }
    }

    /// The mailbox record of `user`, created empty (epoch 0) if need be.
    fn mailbox_entry(
        &mut self,
        limits: &Limits,
        user: UserId,
    ) -> Result<(&mut MailboxRecord, bool), LimitExceeded> {
        let created = !self.mailboxes.contains_key(&user);
        if created {
            check_room(Limit::Mailboxes, self.mailboxes.len(), limits.max_mailboxes)?;
        }
        Ok((self.mailboxes.entry(user).or_default(), created))
    }

    /// The attachment record of `id`, created empty (epoch 0) if need be.
    fn attachment_entry(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
    ) -> Result<(&mut AttachmentRecord, bool), LimitExceeded> {
        let created = !self.attachments.contains_key(id);
        if created {
            check_room(
                Limit::Attachments,
                self.attachments.len(),
                limits.max_attachments,
            )?;
        }
        Ok((self.attachments.entry(id.clone()).or_default(), created))
    }

    /// Merges a mailbox location by `(epoch, hosts)`.
    pub(crate) fn merge_mailbox_location(
        &mut self,
        limits: &Limits,
        user: UserId,
        hosts: Vec<HostId>,
        epoch: Epoch,
    ) -> Result<bool, LimitExceeded> {
        let (rec, created) = self.mailbox_entry(limits, user)?;
        if (epoch, &hosts) <= (rec.epoch, &rec.hosts) {
            return Ok(created);
        }
        rec.hosts = hosts;
        rec.epoch = epoch;
        normalize_pending(&mut rec.pending, epoch, limits.max_pending_moves_per_object);
        Ok(true)
    }

    /// Merges a mailbox's home by `(set_ms, home)`.
    pub(crate) fn merge_mailbox_home(
        &mut self,
        limits: &Limits,
        user: UserId,
        home: Option<HostId>,
        set_ms: u64,
    ) -> Result<bool, LimitExceeded> {
        let (rec, created) = self.mailbox_entry(limits, user)?;
        if (set_ms, home) <= (rec.home_set_ms, rec.home) {
            return Ok(created);
        }
        rec.home = home;
        rec.home_set_ms = set_ms;
        Ok(true)
    }

    /// Merges an attachment location by `(epoch, hosts, size_bytes)`.
    pub(crate) fn merge_attachment_location(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
        hosts: Vec<HostId>,
        size_bytes: u64,
        epoch: Epoch,
    ) -> Result<bool, LimitExceeded> {
        let (rec, created) = self.attachment_entry(limits, id)?;
        if (epoch, &hosts, size_bytes) <= (rec.epoch, &rec.hosts, rec.size_bytes) {
            return Ok(created);
        }
        rec.hosts = hosts;
        rec.size_bytes = size_bytes;
        rec.epoch = epoch;
        normalize_pending(&mut rec.pending, epoch, limits.max_pending_moves_per_object);
        Ok(true)
    }

    /// Merges an attachment's reference lease: the later expiry wins. A
    /// lease replicated before the record's location creates the record
    /// (as a grant does), so the order updates arrive in does not matter.
    pub(crate) fn merge_attachment_referenced(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
        until_ms: u64,
    ) -> Result<bool, LimitExceeded> {
        let (rec, created) = self.attachment_entry(limits, id)?;
        if rec.referenced_until_ms >= Some(until_ms) {
            return Ok(created);
        }
        rec.referenced_until_ms = Some(until_ms);
        Ok(true)
    }

    /// Merges a move grant for `object` (creating an empty record for an
    /// object not yet located, as a new mailbox's first placement does).
    pub(crate) fn merge_move_grant(
        &mut self,
        limits: &Limits,
        object: &ObjectRef,
        target: HostId,
        grant: MoveGrant,
    ) -> Result<bool, LimitExceeded> {
        let max = limits.max_pending_moves_per_object;
        Ok(match object {
            ObjectRef::Mailbox(user) => {
                let (rec, created) = self.mailbox_entry(limits, *user)?;
                merge_grant(&mut rec.pending, rec.epoch, max, target, grant) || created
            }
            ObjectRef::Attachment(id) => {
                let (rec, created) = self.attachment_entry(limits, id)?;
                merge_grant(&mut rec.pending, rec.epoch, max, target, grant) || created
            }
        })
    }

    /// Merges a dispatch unit record by `(seen_ms, addr)`.
    pub(crate) fn merge_unit(
        &mut self,
        limits: &Limits,
        unit: DispatchId,
        incoming: UnitRecord,
    ) -> Result<bool, LimitExceeded> {
        match self.units.get_mut(&unit) {
            Some(cur) if (cur.seen_ms, &cur.addr) >= (incoming.seen_ms, &incoming.addr) => {
                Ok(false)
            }
            Some(cur) => {
                *cur = incoming;
                Ok(true)
            }
            None => {
                check_room(Limit::Units, self.units.len(), limits.max_units)?;
                self.units.insert(unit, incoming);
                Ok(true)
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> HostId {
        HostId([b; 32])
    }

    #[test]
    fn grants_drop_void_and_smallest() {
        let mut p = BTreeMap::new();
        let g = |e, x| MoveGrant {
            base_epoch: Epoch(e),
            expires_ms: x,
        };
        assert!(merge_grant(&mut p, Epoch(1), 2, h(1), g(1, 10)));
        assert!(
            !merge_grant(&mut p, Epoch(1), 2, h(1), g(1, 5)),
            "older grant loses"
        );
        assert!(
            !merge_grant(&mut p, Epoch(1), 2, h(2), g(0, 99)),
            "void grant dropped"
        );
        assert!(merge_grant(&mut p, Epoch(1), 2, h(3), g(1, 20)));
        assert!(merge_grant(&mut p, Epoch(1), 2, h(4), g(2, 1)));
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), vec![h(3), h(4)]);
    }

    #[test]
    fn tables_round_trip_through_json_and_msgpack() {
        let mut t = DispatchTables::default();
        let l = Limits::default();
        let user = UserId([7; 32]);
        t.merge_mailbox_location(&l, user, vec![h(1)], Epoch(1))
            .unwrap();
        let grant = MoveGrant {
            base_epoch: Epoch(1),
            expires_ms: 9,
        };
        t.merge_move_grant(&l, &ObjectRef::Mailbox(user), h(2), grant)
            .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<DispatchTables>(&json).unwrap(), t);
        let bin = rmp_serde::to_vec_named(&t).unwrap();
        assert_eq!(rmp_serde::from_slice::<DispatchTables>(&bin).unwrap(), t);
    }
}
