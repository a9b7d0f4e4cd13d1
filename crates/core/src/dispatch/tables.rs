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
//! - name: between users, the smaller `(issued_ms, user)` wins (first
//!   come, by the holder's first claim); two records of the same user join:
//!   the earlier `issued_ms` and the later claim ([`NameRecord::claim_version`]),
//!   so a key rotation spreads and an old claim never rolls it back. One
//!   race is not order-free, because a record that loses to a rival is
//!   dropped whole: if a user claimed the name at two units at once (two
//!   first-claim times) and a rival's claim falls between them, a unit
//!   that saw the rival before the user's earlier record may keep that
//!   record's older claim. A snapshot exchange with a unit that kept the
//!   newer claim, or the user's next claim, restores it, since records of
//!   one user always join;
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

pub use dem_proto::dispatch::tables::*;
use std::collections::BTreeMap;

use super::limits::{Limit, LimitExceeded, Limits, check_room};
use dem_identity::{DispatchId, Epoch, HostId, UserId};
use dem_proto::AttachmentId;
use dem_proto::dispatch::ObjectRef;

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

/// The merge rules of the tables: every local change and every replicated
/// update goes through one of these, so units that saw the same updates in
/// any order end with equal tables. A trait because the tables are
/// `dem-proto`'s data and their rules are this crate's.
pub(crate) trait Merge {
    /// Merges a host record; true if anything changed.
    fn merge_host(
        &mut self,
        limits: &Limits,
        host: HostId,
        incoming: HostRecord,
    ) -> Result<bool, LimitExceeded>;
    /// Merges a name record: the earlier `(issued_ms, user)` keeps the
    /// name; records of the same user join (see the module doc).
    fn merge_name(
        &mut self,
        limits: &Limits,
        name: &str,
        incoming: NameRecord,
    ) -> Result<bool, LimitExceeded>;
    /// The mailbox record of `user`, created empty (epoch 0) if need be.
    fn mailbox_entry(
        &mut self,
        limits: &Limits,
        user: UserId,
    ) -> Result<(&mut MailboxRecord, bool), LimitExceeded>;
    /// The attachment record of `id`, created empty (epoch 0) if need be.
    fn attachment_entry(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
    ) -> Result<(&mut AttachmentRecord, bool), LimitExceeded>;
    /// Merges a mailbox location by `(epoch, hosts)`.
    fn merge_mailbox_location(
        &mut self,
        limits: &Limits,
        user: UserId,
        hosts: Vec<HostId>,
        epoch: Epoch,
    ) -> Result<bool, LimitExceeded>;
    /// Merges a mailbox's home by `(set_ms, home)`.
    fn merge_mailbox_home(
        &mut self,
        limits: &Limits,
        user: UserId,
        home: Option<HostId>,
        set_ms: u64,
    ) -> Result<bool, LimitExceeded>;
    /// Merges an attachment location by `(epoch, hosts, size_bytes)`.
    fn merge_attachment_location(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
        hosts: Vec<HostId>,
        size_bytes: u64,
        epoch: Epoch,
    ) -> Result<bool, LimitExceeded>;
    /// Merges an attachment's reference lease: the later expiry wins. A
    /// lease replicated before the record's location creates the record
    /// (as a grant does), so the order updates arrive in does not matter.
    fn merge_attachment_referenced(
        &mut self,
        limits: &Limits,
        id: &AttachmentId,
        until_ms: u64,
    ) -> Result<bool, LimitExceeded>;
    /// Merges a move grant for `object` (creating an empty record for an
    /// object not yet located, as a new mailbox's first placement does).
    fn merge_move_grant(
        &mut self,
        limits: &Limits,
        object: &ObjectRef,
        target: HostId,
        grant: MoveGrant,
    ) -> Result<bool, LimitExceeded>;
    /// Merges a dispatch unit record by `(seen_ms, addr)`.
    fn merge_unit(
        &mut self,
        limits: &Limits,
        unit: DispatchId,
        incoming: UnitRecord,
    ) -> Result<bool, LimitExceeded>;
}

impl Merge for DispatchTables {
    fn merge_host(
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

    fn merge_name(
        &mut self,
        limits: &Limits,
        name: &str,
        incoming: NameRecord,
    ) -> Result<bool, LimitExceeded> {
        match self.names.get_mut(name) {
            Some(cur) if cur.user == incoming.user => {
                let renewed = incoming.claim_version() > cur.claim_version();
                let earlier = incoming.issued_ms < cur.issued_ms;
                if earlier {
                    cur.issued_ms = incoming.issued_ms;
                }
                if renewed {
                    cur.claim = incoming.claim;
                }
                Ok(earlier || renewed)
            }
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
        Ok((self.attachments.entry(*id).or_default(), created))
    }

    fn merge_mailbox_location(
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

    fn merge_mailbox_home(
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

    fn merge_attachment_location(
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

    fn merge_attachment_referenced(
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

    fn merge_move_grant(
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

    fn merge_unit(
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
