//! Placement: the dispatch unit as match-maker between objects that must
//! move and live hosts that can take them.
//!
//! A candidate host is online, Active (not leaving), below its capacity,
//! not already a holder of the object and not excluded; among candidates
//! the one with the lowest load relative to capacity (the most free
//! capacity) wins. A host's load is what the tables know it holds — the
//! objects located there plus the live grants already handed out towards
//! it — or what it last reported, if more (copies it keeps unlisted). The
//! tables count at once what a heartbeat reports only later, so
//! placements between two heartbeats do not all pile onto the same host.
//! Ties go to a host drawn by a hash of the object and the host: equal
//! hosts share the work, yet every unit (and every test run) picks the
//! same host for the same object.
//!
//! Every placement handed out is recorded (and replicated) as a
//! [`MoveGrant`]: that is what later authorizes the target host to report
//! the object as its own (see [`super::location`]). Scanning all grants is
//! O(objects) per call; fine at the table limits and at the rate users
//! register or hosts leave. Departure plans are in [`super::departure`].

pub use dem_proto::dispatch::placement::*;
use std::collections::BTreeMap;

use super::error::PlacementError;
use super::limits::{LimitExceeded, MOVE_GRANT_MS};
use super::tables::Merge;
use super::tables::MoveGrant;
use super::updates::Update;
use super::{Action, DispatchUnit};
use dem_identity::{HostId, UserId};
use dem_proto::AttachmentId;
use dem_proto::dispatch::ObjectRef;

impl DispatchUnit {
    /// The host that should take `object`, which is held by `holders`,
    /// avoiding `exclude`; `None` if no host qualifies. Pure: no grant is
    /// recorded.
    pub fn choose_host(
        &self,
        now_ms: u64,
        object: &ObjectRef,
        holders: &[HostId],
        exclude: &[HostId],
    ) -> Option<HostId> {
        let loads = self.table_loads(now_ms);
        self.choose_with(now_ms, object, holders, exclude, &loads)
    }

    /// Chooses the host for a new mailbox of `user` (who must hold a
    /// registered name) and authorizes it to create the mailbox at epoch 1.
    pub fn place_new_mailbox(
        &mut self,
        now_ms: u64,
        user: UserId,
    ) -> Result<(Placement, Vec<Action>), PlacementError> {
        if !self.tables.names.values().any(|r| r.user == user) {
            return Err(PlacementError::UnknownUser(user));
        }
        self.place_new(now_ms, ObjectRef::Mailbox(user), Vec::new())
    }

    /// Chooses the host for a new attachment and authorizes it to report
    /// holding it. An attachment that was removed may be placed again (same
    /// content, same id); one that is still located is refused, as the
    /// caller can use the existing copy.
    pub fn place_new_attachment(
        &mut self,
        now_ms: u64,
        id: &AttachmentId,
        size_bytes: u64,
    ) -> Result<(Placement, Vec<Action>), PlacementError> {
        let object = ObjectRef::Attachment(*id);
        if let Some((hosts, _)) = self.tables.location(&object)
            && !hosts.is_empty()
        {
            let hosts = hosts.to_vec();
            let live = hosts.iter().any(|h| {
                self.tables
                    .hosts
                    .get(h)
                    .is_some_and(|r| r.is_online(now_ms))
            });
            if live {
                return Err(PlacementError::AlreadyPlaced { object, hosts });
            }
            // Every holder is down: the content may be on no live host (an
            // upload whose only holder crashed before copying it out). A
            // new upload goes to a live host beside them; it lists itself
            // with them and copies out, and the keeper drops the dead ones.
            let host = self
                .choose_host(now_ms, &object, &hosts, &[])
                .ok_or_else(|| PlacementError::NoLiveHost(object.clone()))?;
            let until_ms = now_ms.saturating_add(self.limits.attachment_grace_ms);
            let mut actions: Vec<Action> =
                self.renew_attachment(id, until_ms).into_iter().collect();
            actions.push(Action::Replicate(self.grant(now_ms, &object, host)?));
            return Ok((self.placement(object, host), actions));
        }
        let epoch = self
            .tables
            .attachments
            .get(id)
            .map(|r| r.epoch)
            .unwrap_or_default();
        let mut actions = Vec::new();
        if self
            .tables
            .merge_attachment_location(&self.limits, id, Vec::new(), size_bytes, epoch)?
        {
            actions.push(Action::Replicate(Update::AttachmentLocated {
                id: *id,
                hosts: Vec::new(),
                size_bytes,
                epoch,
            }));
        }
        // The mail referencing it comes after the upload: a full grace
        // period for it to be delivered and renewed by its mailboxes.
        let until_ms = now_ms.saturating_add(self.limits.attachment_grace_ms);
        actions.extend(self.renew_attachment(id, until_ms));
        self.place_new(now_ms, object, actions)
    }

    fn place_new(
        &mut self,
        now_ms: u64,
        object: ObjectRef,
        mut actions: Vec<Action>,
    ) -> Result<(Placement, Vec<Action>), PlacementError> {
        if let Some((hosts, _)) = self.tables.location(&object)
            && !hosts.is_empty()
        {
            return Err(PlacementError::AlreadyPlaced {
                object,
                hosts: hosts.to_vec(),
            });
        }
        let host = self
            .choose_host(now_ms, &object, &[], &[])
            .ok_or_else(|| PlacementError::NoLiveHost(object.clone()))?;
        actions.push(Action::Replicate(self.grant(now_ms, &object, host)?));
        Ok((self.placement(object, host), actions))
    }

    /// Chooses a host for another copy of (or a move of) a located object,
    /// avoiding its holders and `exclude`, and authorizes it.
    pub fn place(
        &mut self,
        now_ms: u64,
        object: &ObjectRef,
        exclude: &[HostId],
    ) -> Result<(Placement, Vec<Action>), PlacementError> {
        let (holders, _) = self
            .tables
            .location(object)
            .ok_or_else(|| PlacementError::UnknownObject(object.clone()))?;
        let host = self
            .choose_host(now_ms, object, holders, exclude)
            .ok_or_else(|| PlacementError::NoLiveHost(object.clone()))?;
        let update = self.grant(now_ms, object, host)?;
        Ok((
            self.placement(object.clone(), host),
            vec![Action::Replicate(update)],
        ))
    }

    /// Authorizes moving `object` to `target` on an administrator's order.
    /// Precondition: the caller has verified the order's signature.
    pub fn authorize_move(
        &mut self,
        now_ms: u64,
        object: &ObjectRef,
        target: HostId,
    ) -> Result<(Placement, Vec<Action>), PlacementError> {
        let (holders, _) = self
            .tables
            .location(object)
            .ok_or_else(|| PlacementError::UnknownObject(object.clone()))?;
        if holders.contains(&target) {
            return Err(PlacementError::AlreadyHolder {
                host: target,
                object: object.clone(),
            });
        }
        match self.tables.hosts.get(&target) {
            None => return Err(PlacementError::UnknownHost(target)),
            Some(r) if !r.accepts_objects(now_ms) => {
                return Err(PlacementError::HostNotLive(target));
            }
            Some(_) => {}
        }
        let update = self.grant(now_ms, object, target)?;
        Ok((
            self.placement(object.clone(), target),
            vec![Action::Replicate(update)],
        ))
    }

    /// Each host's load: the objects located there or its reported load,
    /// whichever is more, plus the live grants towards it (placements
    /// handed out but not yet confirmed). One pass over the tables.
    pub(crate) fn table_loads(&self, now_ms: u64) -> BTreeMap<HostId, u64> {
        let mut located: BTreeMap<HostId, u64> = BTreeMap::new();
        let mut pending: BTreeMap<HostId, u64> = BTreeMap::new();
        let mailboxes = self
            .tables
            .mailboxes
            .values()
            .map(|r| (&r.hosts, &r.pending, r.epoch));
        let attachments = self
            .tables
            .attachments
            .values()
            .map(|r| (&r.hosts, &r.pending, r.epoch));
        for (hosts, grants, epoch) in mailboxes.chain(attachments) {
            for host in hosts {
                *located.entry(*host).or_insert(0u64) += 1;
            }
            for (target, g) in grants {
                if g.is_live(now_ms, epoch) {
                    *pending.entry(*target).or_insert(0u64) += 1;
                }
            }
        }
        self.tables
            .hosts
            .iter()
            .map(|(id, rec)| {
                let held = rec.load.max(located.get(id).copied().unwrap_or(0));
                let granted = pending.get(id).copied().unwrap_or(0);
                (*id, held.saturating_add(granted))
            })
            .collect()
    }

    /// The best candidate for `object` given `loads` ([`Self::table_loads`],
    /// plus whatever the caller already assigned; a host missing from it
    /// counts its reported load).
    pub(crate) fn choose_with(
        &self,
        now_ms: u64,
        object: &ObjectRef,
        holders: &[HostId],
        exclude: &[HostId],
        loads: &BTreeMap<HostId, u64>,
    ) -> Option<HostId> {
        let salt = object_salt(object);
        // (host, load, capacity, tie-break) of the best candidate so far.
        let mut best: Option<(HostId, u64, u64, u64)> = None;
        for (id, rec) in &self.tables.hosts {
            if !rec.accepts_objects(now_ms) || holders.contains(id) || exclude.contains(id) {
                continue;
            }
            let load = loads.get(id).copied().unwrap_or(rec.load);
            if load >= rec.capacity {
                continue;
            }
            let draw = tie_break(salt, id);
            // load/capacity vs best_load/best_capacity, without division.
            let better = best.is_none_or(|(_, bl, bc, bd)| {
                let ours = u128::from(load) * u128::from(bc);
                let theirs = u128::from(bl) * u128::from(rec.capacity);
                ours < theirs || (ours == theirs && draw < bd)
            });
            if better {
                best = Some((*id, load, rec.capacity, draw));
            }
        }
        best.map(|(id, _, _, _)| id)
    }

    pub(crate) fn grant(
        &mut self,
        now_ms: u64,
        object: &ObjectRef,
        target: HostId,
    ) -> Result<Update, LimitExceeded> {
        self.grant_until(object, target, now_ms.saturating_add(MOVE_GRANT_MS))
    }

    /// [`Self::grant`], lapsing at `expires_ms`.
    pub(crate) fn grant_until(
        &mut self,
        object: &ObjectRef,
        target: HostId,
        expires_ms: u64,
    ) -> Result<Update, LimitExceeded> {
        let base_epoch = self
            .tables
            .location(object)
            .map(|(_, e)| e)
            .unwrap_or_default();
        let grant = MoveGrant {
            base_epoch,
            expires_ms,
        };
        self.tables
            .merge_move_grant(&self.limits, object, target, grant)?;
        tracing::debug!(%object, target = %target.short(), "move granted");
        Ok(Update::MoveAuthorized {
            object: object.clone(),
            target,
            grant,
        })
    }

    pub(crate) fn placement(&self, object: ObjectRef, host: HostId) -> Placement {
        let addr = self
            .tables
            .hosts
            .get(&host)
            .map(|r| r.addr.clone())
            .unwrap_or_default();
        Placement { object, host, addr }
    }
}

/// A stable hash of the object, to draw among equally loaded hosts.
fn object_salt(object: &ObjectRef) -> u64 {
    let bytes: &[u8] = match object {
        ObjectRef::Mailbox(user) => &user.0,
        ObjectRef::Attachment(id) => id.as_bytes(),
    };
    fnv1a(0xcbf2_9ce4_8422_2325, bytes)
}

/// The rank of `host` among equally loaded hosts for the object `salt`
/// names: a pseudo-random order, the same on every unit.
fn tie_break(salt: u64, host: &HostId) -> u64 {
    // FNV-1a then a splitmix64 finalizer, so nearby salts spread.
    let mut x = fnv1a(salt, &host.0);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::super::error::PlacementError as E;
    use super::super::limits::{LEASE_MS, Limit, Limits};
    use super::super::tables::{AttachmentRecord, MailboxRecord};
    use super::super::testutil::*;
    use super::*;
    use dem_identity::{DispatchId, Epoch};
    use std::collections::BTreeSet;

    #[test]
    fn picks_least_loaded_live_non_holding_non_leaving() {
        let mut u = unit();
        u.handle_join(0, host(1), &addr(1), 10, 5).unwrap(); // 0.5
        u.handle_join(0, host(2), &addr(2), 100, 40).unwrap(); // 0.4
        u.handle_join(0, host(6), &addr(6), 2, 2).unwrap(); // full
        let later = LEASE_MS / 2;
        u.handle_join(later, host(3), &addr(3), 4, 1).unwrap(); // 0.25
        u.handle_join(later, host(4), &addr(4), 10, 0).unwrap(); // leaving
        u.handle_leave(later, host(4)).unwrap();
        u.handle_join(later, host(5), &addr(5), 10, 0).unwrap(); // holder
        let now = LEASE_MS + 1; // hosts 1, 2 and 6 have expired
        assert_eq!(u.choose_host(now, &any(), &[host(5)], &[]), Some(host(3)));
        assert_eq!(u.choose_host(now, &any(), &[host(5)], &[host(3)]), None);
        u.handle_heartbeat(now, host(1), 5).unwrap();
        u.handle_heartbeat(now, host(2), 40).unwrap();
        u.handle_heartbeat(now, host(6), 2).unwrap();
        assert_eq!(
            u.choose_host(now, &any(), &[host(5)], &[host(3)]),
            Some(host(2))
        );
        assert_eq!(
            u.choose_host(now, &any(), &[host(5), host(2)], &[host(3)]),
            Some(host(1))
        );
        assert_eq!(u.choose_host(now, &any(), &[], &[]), Some(host(5)));
    }

    /// An object to place in tests that do not care which.
    fn any() -> ObjectRef {
        ObjectRef::Mailbox(user(200))
    }

    #[test]
    fn grants_count_as_load_and_equal_hosts_share() {
        let mut u = unit_with_hosts(0, 3);
        for b in 1..=4 {
            u.register_name(0, &format!("u{b}"), user(b), 0).unwrap();
        }
        let picks: Vec<_> = (1..=3)
            .map(|b| u.place_new_mailbox(0, user(b)).unwrap().0.host)
            .collect();
        let distinct: BTreeSet<_> = picks.iter().collect();
        assert_eq!(distinct.len(), 3, "one each while grants are live");
        // Grants expire, and stop counting.
        assert_eq!(
            u.choose_host(MOVE_GRANT_MS, &any(), &[], &[]),
            None,
            "leases are over too"
        );
        u.handle_heartbeat(MOVE_GRANT_MS, host(3), 0).unwrap();
        u.handle_heartbeat(MOVE_GRANT_MS, host(2), 0).unwrap();
        let pick = u.choose_host(MOVE_GRANT_MS, &any(), &[], &[]);
        assert!(pick == Some(host(2)) || pick == Some(host(3)));
        // The same object always draws the same host.
        assert_eq!(u.choose_host(MOVE_GRANT_MS, &any(), &[], &[]), pick);
    }

    #[test]
    fn located_objects_count_before_the_next_heartbeat() {
        let mut u = unit_with_hosts(0, 3);
        u.tables.mailboxes.insert(
            user(1),
            MailboxRecord {
                hosts: vec![host(1), host(2)],
                epoch: Epoch(1),
                ..MailboxRecord::default()
            },
        );
        // Hosts 1 and 2 still report no load; the tables know better.
        assert_eq!(u.choose_host(0, &any(), &[], &[]), Some(host(3)));
    }

    #[test]
    fn twelve_mailboxes_at_three_replicas_spread_over_six_hosts() {
        let mut u = unit_with_hosts(0, 6);
        for b in 1..=12 {
            u.register_name(0, &format!("u{b}"), user(b), 0).unwrap();
            let (first, _) = u.place_new_mailbox(0, user(b)).unwrap();
            let mut hosts = vec![first.host];
            u.handle_location_update(
                0,
                first.host,
                &ObjectRef::Mailbox(user(b)),
                hosts.clone(),
                Epoch(1),
            )
            .unwrap();
            for epoch in 2..=3 {
                let object = ObjectRef::Mailbox(user(b));
                let (p, _) = u.place(0, &object, &[]).unwrap();
                hosts.push(p.host);
                u.handle_location_update(0, hosts[0], &object, hosts.clone(), Epoch(epoch))
                    .unwrap();
            }
        }
        let mut per_host: BTreeMap<HostId, usize> = BTreeMap::new();
        for r in u.tables.mailboxes.values() {
            for h in &r.hosts {
                *per_host.entry(*h).or_default() += 1;
            }
        }
        let total: usize = per_host.values().sum();
        assert_eq!(total, 36);
        let max = per_host.values().copied().max().unwrap_or(0);
        // Mean 6; the bound is 1.5x the mean.
        assert!(max <= 9, "{per_host:?}");
        assert_eq!(per_host.len(), 6, "every host holds some: {per_host:?}");
    }

    #[test]
    fn new_objects_need_names_and_must_be_new() {
        let mut u = unit_with_hosts(0, 1);
        assert_eq!(
            u.place_new_mailbox(0, user(1)),
            Err(E::UnknownUser(user(1)))
        );
        u.register_name(0, "a", user(1), 0).unwrap();
        let (p, acts) = u.place_new_mailbox(0, user(1)).unwrap();
        assert_eq!(
            (p.host, p.addr.as_str(), acts.len()),
            (host(1), addr(1).as_str(), 1)
        );
        assert_eq!(
            u.tables().mailboxes[&user(1)].pending[&host(1)].base_epoch,
            Epoch(0)
        );
        located(&mut u, 1, vec![host(1)]);
        assert!(matches!(
            u.place_new_mailbox(0, user(1)),
            Err(E::AlreadyPlaced { .. })
        ));

        let id: AttachmentId = "cd".repeat(32).parse().unwrap();
        let (p, acts) = u.place_new_attachment(0, &id, 77).unwrap();
        // The record, its reference lease and the grant.
        assert_eq!((p.host, acts.len()), (host(1), 3));
        assert_eq!(u.tables().attachments[&id].size_bytes, 77);
        let rec = AttachmentRecord {
            hosts: vec![host(1)],
            size_bytes: 77,
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        assert!(matches!(
            u.place_new_attachment(0, &id, 77),
            Err(E::AlreadyPlaced { .. })
        ));
        // Nowhere to go: the only host already holds it.
        let obj = ObjectRef::Attachment(id);
        assert_eq!(u.place(0, &obj, &[]), Err(E::NoLiveHost(obj.clone())));
        let unknown = ObjectRef::Mailbox(user(9));
        assert_eq!(u.place(0, &unknown, &[]), Err(E::UnknownObject(unknown)));
    }

    #[test]
    fn an_attachment_whose_holders_are_all_down_is_placed_afresh() {
        let mut u = unit();
        u.handle_join(0, host(1), &addr(1), 10, 0).unwrap();
        u.handle_join(0, host(2), &addr(2), 10, 0).unwrap();
        let id: AttachmentId = "ef".repeat(32).parse().unwrap();
        let rec = AttachmentRecord {
            hosts: vec![host(1)],
            size_bytes: 5,
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        assert!(matches!(
            u.place_new_attachment(0, &id, 5),
            Err(E::AlreadyPlaced { .. })
        ));
        // Host 1 crashed (its lease lapsed) before copying the upload out;
        // host 2 renews.
        let later = LEASE_MS + 1;
        u.handle_heartbeat(later, host(2), 0).unwrap();
        let (p, _) = u.place_new_attachment(later, &id, 5).unwrap();
        assert_eq!(p.host, host(2));
        assert_eq!(u.tables().attachments[&id].hosts, vec![host(1)]);
    }

    #[test]
    fn mailbox_table_is_bounded() {
        let limits = Limits {
            max_mailboxes: 1,
            ..Limits::default()
        };
        let mut u =
            DispatchUnit::with_limits(0, DispatchId([1; 32]), "10.0.0.1:1", limits).unwrap();
        u.handle_join(0, host(1), &addr(1), 10, 0).unwrap();
        u.register_name(0, "a", user(1), 0).unwrap();
        u.register_name(0, "b", user(2), 0).unwrap();
        u.place_new_mailbox(0, user(1)).unwrap();
        assert!(matches!(
            u.place_new_mailbox(0, user(2)),
            Err(E::Limit(l)) if l.limit == Limit::Mailboxes
        ));
    }

    #[test]
    fn admin_moves_check_the_target() {
        let mut u = unit_with_hosts(0, 3);
        located(&mut u, 1, vec![host(1)]);
        let obj = ObjectRef::Mailbox(user(1));
        assert!(matches!(
            u.authorize_move(0, &obj, host(1)),
            Err(E::AlreadyHolder { .. })
        ));
        assert_eq!(
            u.authorize_move(0, &obj, host(9)),
            Err(E::UnknownHost(host(9)))
        );
        u.handle_leave(0, host(2)).unwrap();
        assert_eq!(
            u.authorize_move(0, &obj, host(2)),
            Err(E::HostNotLive(host(2)))
        );
        let (p, _) = u.authorize_move(0, &obj, host(3)).unwrap();
        assert_eq!(p.host, host(3));
        assert!(
            u.tables().mailboxes[&user(1)]
                .pending
                .contains_key(&host(3))
        );
    }
}
