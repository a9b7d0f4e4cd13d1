//! Departure plans: when a host leaves gracefully (paper IV-B), all the
//! mailboxes and attachments it holds must move to other live hosts. The
//! unit plans every move at once, adding each planned move to its target's
//! load as it goes, so a host with many objects spreads them over the
//! network instead of dumping them all on the currently emptiest host.
//! Every planned move is granted, which authorizes the target to report it.

pub use dem_proto::dispatch::departure::*;

use super::error::PlacementError;
use super::objects::ObjectRef;
use super::{Action, DispatchUnit};
use dem_identity::HostId;

impl DispatchUnit {
    /// Plans where every object held by the departing `host` should go,
    /// spreading them by adding each planned move to its target's load. An
    /// object that already has a live grant to a suitable host keeps that
    /// target, so asking twice gives the same plan. Each move is granted.
    pub fn plan_departure(
        &mut self,
        now_ms: u64,
        host: HostId,
    ) -> Result<(DeparturePlan, Vec<Action>), PlacementError> {
        if !self.tables.hosts.contains_key(&host) {
            return Err(PlacementError::UnknownHost(host));
        }
        let mailboxes = self
            .tables
            .mailboxes
            .iter()
            .filter(|(_, r)| r.hosts.contains(&host));
        let mailboxes =
            mailboxes.map(|(u, r)| (ObjectRef::Mailbox(*u), r.hosts.clone(), &r.pending, r.epoch));
        let attachments = self
            .tables
            .attachments
            .iter()
            .filter(|(_, r)| r.hosts.contains(&host));
        let attachments = attachments.map(|(id, r)| {
            (
                ObjectRef::Attachment(*id),
                r.hosts.clone(),
                &r.pending,
                r.epoch,
            )
        });
        let objects: Vec<_> = mailboxes
            .chain(attachments)
            .map(|(object, holders, pending, epoch)| {
                let kept = pending
                    .iter()
                    .filter(|(t, g)| {
                        g.is_live(now_ms, epoch)
                            && **t != host
                            && !holders.contains(t)
                            && self
                                .tables
                                .hosts
                                .get(t)
                                .is_some_and(|r| r.accepts_objects(now_ms))
                    })
                    .map(|(t, _)| *t)
                    .next();
                (object, holders, kept)
            })
            .collect();

        let mut loads = self.table_loads(now_ms);
        let mut plan = DeparturePlan::default();
        let mut actions = Vec::new();
        for (object, holders, kept) in objects {
            let target = kept.or_else(|| {
                let t = self.choose_with(now_ms, &object, &holders, &[host], &loads)?;
                *loads.entry(t).or_default() += 1;
                Some(t)
            });
            match target.map(|t| (t, self.grant(now_ms, &object, t))) {
                Some((t, Ok(update))) => {
                    actions.push(Action::Replicate(update));
                    plan.moves.push(self.placement(object, t));
                }
                _ => plan.unplaced.push(object),
            }
        }
        let (moves, unplaced) = (plan.moves.len(), plan.unplaced.len());
        tracing::info!(host = %host.short(), moves, unplaced, "departure planned");
        Ok((plan, actions))
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::PlacementError as E;
    use super::super::tables::AttachmentRecord;
    use super::super::testutil::*;
    use super::*;
    use dem_identity::Epoch;

    #[test]
    fn departure_plans_spread_load() {
        let mut u = unit_with_hosts(0, 1);
        u.handle_join(0, host(2), &addr(2), 10, 0).unwrap();
        u.handle_join(0, host(3), &addr(3), 20, 0).unwrap();
        u.handle_join(0, host(4), &addr(4), 10, 2).unwrap();
        for b in 1..=8 {
            located(&mut u, b, vec![host(1)]);
        }
        located(&mut u, 9, vec![host(1), host(3)]); // a replica already on 3
        let id = att(0xef);
        let rec = AttachmentRecord {
            hosts: vec![host(1)],
            size_bytes: 1,
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        u.handle_leave(1, host(1)).unwrap();

        let (plan, acts) = u.plan_departure(1, host(1)).unwrap();
        assert!(plan.unplaced.is_empty());
        assert_eq!((plan.moves.len(), acts.len()), (10, 10));
        let count = |h| plan.moves.iter().filter(|m| m.host == h).count();
        // Capacities 10, 20, 10 (the second holding mailbox 9, the last
        // reporting 2): 4, 5 and 1 more objects bring the ratios to 0.4,
        // 0.3 and 0.3 (13 objects over 40 slots cannot all be 0.325).
        assert_eq!(
            (
                count(host(1)),
                count(host(2)),
                count(host(3)),
                count(host(4))
            ),
            (0, 4, 5, 1)
        );
        let m9 = plan
            .moves
            .iter()
            .find(|m| m.object == ObjectRef::Mailbox(user(9)))
            .unwrap();
        assert_ne!(m9.host, host(3), "never onto a holder");

        // Asking again gives the same plan (existing grants are kept).
        let (again, _) = u.plan_departure(2, host(1)).unwrap();
        assert_eq!(again.moves, plan.moves);
        assert_eq!(u.plan_departure(2, host(9)), Err(E::UnknownHost(host(9))));
    }

    #[test]
    fn departure_reports_what_cannot_move() {
        let mut u = unit_with_hosts(0, 2);
        located(&mut u, 1, vec![host(1), host(2)]);
        located(&mut u, 2, vec![host(1)]);
        let (plan, _) = u.plan_departure(0, host(1)).unwrap();
        assert_eq!(plan.unplaced, vec![ObjectRef::Mailbox(user(1))]);
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.moves[0].host, host(2));
    }
}
