//! Rebalancing: moving one replica at a time from the most loaded host to
//! the least loaded, so that hosts which came back empty take their share.
//!
//! Placement alone spreads new objects and regenerated copies, but it never
//! moves what is already placed: a host that crashes and returns finds its
//! replicas regenerated elsewhere and holds nothing until the next failure,
//! while the others carry its share for good. So the leader of each replica
//! set (see [`crate::replica::plan`]) asks the unit, now and then, whether
//! one of its sets should shed a replica; the unit, which sees every host's
//! load, answers with a move from a holder to a non-holder, or none.
//!
//! A move is proposed only when it narrows the gap: after it, the source
//! is still at least as loaded (relative to capacity) as the target. Every
//! such move lowers the sum of squared loads, so rebalancing stops, and it
//! never swaps two hosts back and forth. Loads count the grants handed out
//! (towards the target) and the replicas being shed (away from the
//! source) until they expire, so that leaders asking at once do not all
//! pour into the same empty host and overshoot.
//!
//! Only mailboxes are rebalanced, and only sets that are complete (R
//! listed, all online and none leaving, no move pending), never away from
//! the owner's home host. Attachments are immutable and cheap to regenerate, but they are
//! not shed yet: a freshly returned host gets them from new uploads.

use std::collections::BTreeMap;

use super::limits::REBALANCE_SHED_MS;
use super::{Action, DispatchUnit};
use crate::dispatch::error::PlacementError;
use dem_identity::HostId;
use dem_proto::dispatch::ObjectRef;
pub use dem_proto::dispatch::placement::RebalanceMove;

/// Replicas being shed, by object: the source and when the grant lapses.
pub type Shedding = BTreeMap<ObjectRef, (HostId, u64)>;

impl DispatchUnit {
    /// A replica move for one of the mailbox sets that `leader` leads, if
    /// one narrows the spread; it is authorized (a grant towards the
    /// target) and the source counts as shed until the grant lapses.
    /// `None` when the hosts are balanced or `leader` leads no set that
    /// could help.
    pub fn rebalance(
        &mut self,
        now_ms: u64,
        leader: HostId,
    ) -> Result<Option<(RebalanceMove, Vec<Action>)>, PlacementError> {
        self.shedding.retain(|_, (_, until)| *until > now_ms);
        let loads = self.balance_loads(now_ms);
        // Cheap first: is anything out of balance at all?
        let capacity = |h: &HostId| self.tables.hosts.get(h).map_or(1, |r| r.capacity.max(1));
        let mut accepting = self
            .tables
            .hosts
            .iter()
            .filter(|(_, r)| r.accepts_objects(now_ms))
            .map(|(h, _)| *h);
        let Some(first) = accepting.next() else {
            return Ok(None);
        };
        let (mut most, mut least) = (first, first);
        for h in accepting {
            if ratio_lt(&loads, capacity, most, h) {
                most = h;
            }
            if ratio_lt(&loads, capacity, h, least) {
                least = h;
            }
        }
        if !narrows(&loads, capacity, most, least) {
            return Ok(None);
        }
        // The best (source, target) over the sets this leader leads: the
        // source with the highest load, then the target with the lowest.
        let r = self.replicas().max(1);
        let mut best: Option<(ObjectRef, HostId, HostId)> = None;
        for (user, rec) in &self.tables.mailboxes {
            if rec.hosts.len() != r || !rec.pending.values().all(|g| !g.is_live(now_ms, rec.epoch))
            {
                continue;
            }
            let object = ObjectRef::Mailbox(*user);
            if self.shedding.contains_key(&object) {
                continue;
            }
            let online = |h: &HostId| {
                self.tables
                    .hosts
                    .get(h)
                    .is_some_and(|x| x.is_online(now_ms))
            };
            // Every holder online and taking objects: a set with a leaving
            // host is the departure's to move, and two moves of one set at
            // once would only race for its epoch.
            let settled = |h: &HostId| {
                self.tables
                    .hosts
                    .get(h)
                    .is_some_and(|x| x.accepts_objects(now_ms))
            };
            if !rec.hosts.iter().all(settled) || rec.hosts.iter().min() != Some(&leader) {
                continue;
            }
            let home = rec.home.filter(online);
            let Some(source) = rec
                .hosts
                .iter()
                .filter(|h| Some(**h) != home)
                .copied()
                .reduce(|a, b| {
                    if ratio_lt(&loads, capacity, a, b) {
                        b
                    } else {
                        a
                    }
                })
            else {
                continue;
            };
            let Some(target) = self.choose_with(now_ms, &object, &rec.hosts, &[], &loads) else {
                continue;
            };
            if !narrows(&loads, capacity, source, target) {
                continue;
            }
            let better = best.as_ref().is_none_or(|(_, s, t)| {
                ratio_lt(&loads, capacity, *s, source)
                    || (!ratio_lt(&loads, capacity, source, *s)
                        && ratio_lt(&loads, capacity, target, *t))
            });
            if better {
                best = Some((object, source, target));
            }
        }
        let Some((object, source, target)) = best else {
            return Ok(None);
        };
        // The grant lasts as long as any move's (a large mailbox takes a
        // while to copy, and the listing needs it live); the shed replica
        // counts only for a minute, should the leader not make the move.
        let update = self.grant(now_ms, &object, target)?;
        let until_ms = now_ms.saturating_add(REBALANCE_SHED_MS);
        self.shedding.insert(object.clone(), (source, until_ms));
        tracing::debug!(%object, from = %source.short(), to = %target.short(), "rebalance granted");
        let placement = self.placement(object, target);
        Ok(Some((
            RebalanceMove {
                placement,
                shed: source,
            },
            vec![Action::Replicate(update)],
        )))
    }

    /// [`Self::table_loads`] less the replicas being shed.
    fn balance_loads(&self, now_ms: u64) -> BTreeMap<HostId, u64> {
        let mut loads = self.table_loads(now_ms);
        for (object, (source, _)) in &self.shedding {
            let still_listed = self
                .tables
                .location(object)
                .is_some_and(|(hosts, _)| hosts.contains(source));
            if still_listed && let Some(l) = loads.get_mut(source) {
                *l = l.saturating_sub(1);
            }
        }
        loads
    }
}

/// Whether `a` is less loaded than `b`, relative to capacity.
fn ratio_lt(
    loads: &BTreeMap<HostId, u64>,
    capacity: impl Fn(&HostId) -> u64,
    a: HostId,
    b: HostId,
) -> bool {
    let la = u128::from(loads.get(&a).copied().unwrap_or(0));
    let lb = u128::from(loads.get(&b).copied().unwrap_or(0));
    la * u128::from(capacity(&b)) < lb * u128::from(capacity(&a))
}

/// Whether moving one replica from `source` to `target` narrows the gap:
/// afterwards the source is still at least as loaded as the target.
fn narrows(
    loads: &BTreeMap<HostId, u64>,
    capacity: impl Fn(&HostId) -> u64,
    source: HostId,
    target: HostId,
) -> bool {
    if source == target {
        return false;
    }
    let ls = loads.get(&source).copied().unwrap_or(0);
    let lt = loads.get(&target).copied().unwrap_or(0);
    let Some(after_source) = ls.checked_sub(1) else {
        return false;
    };
    let after_target = lt.saturating_add(1);
    u128::from(after_source) * u128::from(capacity(&target))
        >= u128::from(after_target) * u128::from(capacity(&source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testutil::*;
    use dem_identity::Epoch;

    const NOW: u64 = 1_000;

    fn place(u: &mut DispatchUnit, who: u8, hosts: &[u8]) {
        located(u, who, hosts.iter().map(|b| host(*b)).collect());
    }

    fn holders(u: &DispatchUnit, who: u8) -> Vec<HostId> {
        u.tables.mailboxes[&user(who)].hosts.clone()
    }

    /// Carries out a move as the leader would: the target listed in the
    /// source's place, at the next epoch.
    fn apply(u: &mut DispatchUnit, leader: HostId, mv: &RebalanceMove) {
        let ObjectRef::Mailbox(who) = mv.placement.object else {
            panic!("only mailboxes are rebalanced");
        };
        let rec = &u.tables.mailboxes[&who];
        let mut hosts: Vec<HostId> = rec
            .hosts
            .iter()
            .copied()
            .filter(|h| *h != mv.shed)
            .collect();
        hosts.push(mv.placement.host);
        let epoch = Epoch(rec.epoch.0 + 1);
        u.handle_location_update(NOW, leader, &mv.placement.object, hosts, epoch)
            .unwrap();
    }

    /// Six hosts, twelve mailboxes at R = 3 all on hosts 1–5, host 6
    /// empty (it came back after a crash). Rebalancing, asked by every
    /// leader in turn, fills host 6 to its share and then stops.
    #[test]
    fn an_empty_host_takes_its_share_and_then_it_stops() {
        let mut u = unit_with_hosts(NOW, 6);
        u.limits.replicas = 3;
        let sets: [[u8; 3]; 12] = [
            [1, 2, 3],
            [1, 2, 4],
            [1, 3, 5],
            [2, 4, 5],
            [1, 4, 5],
            [2, 3, 4],
            [3, 4, 5],
            [1, 2, 5],
            [1, 3, 4],
            [2, 3, 5],
            [1, 2, 3],
            [3, 4, 5],
        ];
        for (i, s) in sets.iter().enumerate() {
            place(&mut u, 100 + i as u8, s);
        }
        let mut moves = 0;
        for _round in 0..20 {
            let mut any = false;
            for leader in 1..=6 {
                if let Some((mv, _)) = u.rebalance(NOW, host(leader)).unwrap() {
                    assert_ne!(mv.shed, mv.placement.host);
                    assert_eq!(mv.placement.host, host(6), "the empty host is the target");
                    apply(&mut u, host(leader), &mv);
                    moves += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        let loads = u.table_loads(NOW);
        let max = loads.values().max().copied().unwrap();
        let min = loads.values().min().copied().unwrap();
        assert_eq!(loads.values().sum::<u64>(), 36);
        assert!(max - min <= 1, "balanced: {loads:?} after {moves} moves");
        assert_eq!(moves, 6, "host 6 took exactly its share of 36/6");
        for leader in 1..=6 {
            assert!(u.rebalance(NOW, host(leader)).unwrap().is_none());
        }
    }

    /// Leaders asking at once, before any move lands, do not pour more
    /// than the gap into the empty host: shed replicas and live grants
    /// count at once.
    #[test]
    fn concurrent_asks_do_not_overshoot() {
        let mut u = unit_with_hosts(NOW, 3);
        u.limits.replicas = 1;
        for i in 0..6 {
            place(&mut u, 10 + i, &[1]);
        }
        let mut granted = 0;
        while let Some((mv, _)) = u.rebalance(NOW, host(1)).unwrap() {
            assert_eq!(mv.shed, host(1));
            granted += 1;
            assert!(granted <= 6);
        }
        // 6 on host 1 → 2, 2, 2 once the four grants land.
        assert_eq!(granted, 4);
        // Grants lapse: the shed counts go with them.
        let later = NOW + REBALANCE_SHED_MS + 1;
        for (b, load) in [(1, 6), (2, 0), (3, 0)] {
            u.handle_heartbeat(later, host(b), load).unwrap();
        }
        assert!(u.rebalance(later, host(1)).unwrap().is_some());
    }

    #[test]
    fn balanced_hosts_incomplete_sets_and_the_home_host_stay() {
        let mut u = unit_with_hosts(NOW, 3);
        u.limits.replicas = 2;
        // Balanced (2, 1, 1): no move narrows a gap of one.
        place(&mut u, 1, &[1, 2]);
        place(&mut u, 2, &[1, 3]);
        assert!(u.rebalance(NOW, host(1)).unwrap().is_none());
        // Unbalanced, but the only set host 1 leads is incomplete.
        let mut u = unit_with_hosts(NOW, 4);
        u.limits.replicas = 2;
        for i in 0..4 {
            place(&mut u, 10 + i, &[1, 2]);
        }
        place(&mut u, 20, &[1]);
        let mut led_complete = 0;
        while let Some((mv, _)) = u.rebalance(NOW, host(1)).unwrap() {
            let ObjectRef::Mailbox(who) = mv.placement.object else {
                panic!()
            };
            assert_ne!(who, user(20), "an incomplete set is not rebalanced");
            led_complete += 1;
            assert!(led_complete <= 4);
        }
        // Only host 2 leads nothing; a follower's ask gets nothing.
        assert!(u.rebalance(NOW, host(2)).unwrap().is_none());
        // The owner's home host is never the source.
        let mut u = unit_with_hosts(NOW, 3);
        u.limits.replicas = 1;
        for i in 0..4 {
            place(&mut u, 30 + i, &[1]);
            u.tables.mailboxes.get_mut(&user(30 + i)).unwrap().home = Some(host(1));
        }
        assert!(u.rebalance(NOW, host(1)).unwrap().is_none());
    }

    #[test]
    fn a_set_with_a_leaving_holder_is_left_to_the_departure() {
        let mut u = unit_with_hosts(NOW, 3);
        u.limits.replicas = 1;
        for i in 0..4 {
            place(&mut u, 10 + i, &[1]);
        }
        u.handle_leave(NOW, host(1)).unwrap();
        assert!(u.rebalance(NOW, host(1)).unwrap().is_none());
    }

    #[test]
    fn offline_and_leaving_hosts_take_nothing() {
        let mut u = unit_with_hosts(NOW, 3);
        u.limits.replicas = 1;
        for i in 0..4 {
            place(&mut u, 10 + i, &[1]);
        }
        // Hosts 2 and 3 never renew: after their lease they are offline.
        let later = NOW + u.limits.lease_ms + 1;
        u.handle_heartbeat(later, host(1), 4).unwrap();
        assert!(u.rebalance(later, host(1)).unwrap().is_none());
        assert_eq!(holders(&u, 10), vec![host(1)]);
    }
}
