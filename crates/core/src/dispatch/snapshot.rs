//! Whole-table copies between dispatch units.
//!
//! A new unit copies its tables from a running one (paper, section IV), a
//! restarted unit reloads its own, and two units that were cut off from
//! each other reconcile by exchanging snapshots. A snapshot is treated as
//! the set of updates that rebuilds it ([`updates_of`]), so it goes through
//! the same checks and the same merges as gossip, and merging snapshots
//! converges exactly like applying updates does. The tests here check that
//! convergence: the same updates in seeded random orders, with duplicates,
//! and split between two units that then swap snapshots, all give equal
//! tables.

use super::DispatchUnit;
use super::error::UpdateError;
use super::objects::ObjectRef;
use super::tables::DispatchTables;
use super::updates::Update;

/// The outcome of merging a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Updates that changed the tables.
    pub changed: usize,
    /// Records refused (malformed, or a table was full).
    pub refused: Vec<UpdateError>,
}

impl DispatchUnit {
    /// Merges a peer's whole tables into this unit's, record by record.
    pub fn merge_snapshot(&mut self, snapshot: &DispatchTables) -> MergeReport {
        let mut report = MergeReport::default();
        for update in updates_of(snapshot) {
            // A snapshot carries no clock of its own; merging is time-free.
            match self.apply_update(0, update) {
                Ok(true) => report.changed += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "snapshot record refused");
                    report.refused.push(err);
                }
            }
        }
        report
    }
}

/// The updates that rebuild `tables` from nothing.
pub fn updates_of(tables: &DispatchTables) -> Vec<Update> {
    let mut out = Vec::new();
    if let Some(settings) = tables.settings {
        out.push(Update::Settings(settings));
    }
    for (unit, record) in &tables.units {
        out.push(Update::Unit {
            unit: *unit,
            record: record.clone(),
        });
    }
    for (host, record) in &tables.hosts {
        out.push(Update::Host {
            host: *host,
            record: record.clone(),
        });
    }
    for (name, record) in &tables.names {
        out.push(Update::NameRegistered {
            name: name.clone(),
            record: record.clone(),
        });
    }
    for (user, r) in &tables.mailboxes {
        out.push(Update::MailboxLocated {
            user: *user,
            hosts: r.hosts.clone(),
            epoch: r.epoch,
        });
        if r.home_set_ms != 0 || r.home.is_some() {
            out.push(Update::MailboxHome {
                user: *user,
                home: r.home,
                set_ms: r.home_set_ms,
            });
        }
        for (target, grant) in &r.pending {
            let object = ObjectRef::Mailbox(*user);
            out.push(Update::MoveAuthorized {
                object,
                target: *target,
                grant: *grant,
            });
        }
    }
    for (id, r) in &tables.attachments {
        out.push(Update::AttachmentLocated {
            id: *id,
            hosts: r.hosts.clone(),
            size_bytes: r.size_bytes,
            epoch: r.epoch,
        });
        if let Some(until_ms) = r.referenced_until_ms {
            out.push(Update::AttachmentReferenced { id: *id, until_ms });
        }
        for (target, grant) in &r.pending {
            let object = ObjectRef::Attachment(*id);
            out.push(Update::MoveAuthorized {
                object,
                target: *target,
                grant: *grant,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Action;
    use super::super::limits::Limits;
    use super::super::tables::{HostState, MoveGrant};
    use super::super::testutil::*;
    use super::*;
    use dem_identity::{DispatchId, Epoch};

    /// splitmix64: a tiny seeded generator, so a failing order can be
    /// replayed from the printed seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn collect(out: &mut Vec<Update>, actions: Vec<Action>) {
        out.extend(updates(&actions));
    }

    /// Two units that act concurrently on the same start, plus hand-made
    /// conflicting records: every update either of them would gossip.
    fn scenario() -> Vec<Update> {
        let mut all = Vec::new();
        let mut a = unit();
        let mut b = DispatchUnit::new(0, DispatchId([0xd1; 32]), "10.0.0.2:4000").unwrap();
        for h in 1..=4 {
            collect(
                &mut all,
                a.handle_join(0, host(h), &addr(h), 10, 0).unwrap(),
            );
        }
        b.merge_snapshot(a.tables());
        collect(&mut all, a.announce(0));
        collect(&mut all, b.announce(5));
        // Conflicting names: b's claim was issued first.
        collect(
            &mut all,
            a.register_name(100, "alice", user(1), 100).unwrap().1,
        );
        collect(
            &mut all,
            b.register_name(100, "alice", user(2), 50).unwrap().1,
        );
        collect(
            &mut all,
            a.register_name(100, "bob", user(3), 100).unwrap().1,
        );
        // Kept claims: a rotation on a, and b's unaware registration of
        // the same user in between; the latest claim must win everywhere.
        let carol = dem_identity::KeyPair::from_seed(&[3; 32]);
        for (on_a, at, enc) in [(true, 100, 1), (false, 150, 2), (true, 200, 3)] {
            let name = dem_identity::Name::new("carol").unwrap();
            let s = dem_identity::SignedNameClaim::sign(&carol, name, Some([enc; 32]), at).unwrap();
            let c = s.verify().unwrap();
            let unit = if on_a { &mut a } else { &mut b };
            collect(&mut all, unit.register_claim(at as u64, &c, s).unwrap().1);
        }
        // A late heartbeat on a must not undo the leave on b.
        collect(&mut all, b.handle_leave(1_500, host(1)).unwrap());
        collect(&mut all, a.handle_heartbeat(2_000, host(1), 3).unwrap());
        collect(&mut all, a.handle_heartbeat(2_000, host(2), 1).unwrap());
        // Placements and their confirmation.
        let (p, acts) = a.place_new_mailbox(2_000, user(3)).unwrap();
        collect(&mut all, acts);
        let mb3 = ObjectRef::Mailbox(user(3));
        collect(
            &mut all,
            a.handle_location_update(2_001, p.host, &mb3, vec![p.host], Epoch(1))
                .unwrap(),
        );
        collect(
            &mut all,
            a.handle_home(2_002, user(3), Some(host(4))).unwrap(),
        );
        b.apply_update_ok(&all);
        let (_, acts) = b.place_new_attachment(2_100, &att(7), 70).unwrap();
        collect(&mut all, acts);
        // Conflicting locations at equal epochs, and void grants.
        let grant = |e, x| MoveGrant {
            base_epoch: Epoch(e),
            expires_ms: x,
        };
        all.extend([
            Update::MailboxLocated {
                user: user(5),
                hosts: vec![host(2)],
                epoch: Epoch(1),
            },
            Update::MailboxLocated {
                user: user(5),
                hosts: vec![host(1)],
                epoch: Epoch(2),
            },
            Update::MailboxLocated {
                user: user(5),
                hosts: vec![host(3)],
                epoch: Epoch(2),
            },
            Update::MoveAuthorized {
                object: ObjectRef::Mailbox(user(5)),
                target: host(4),
                grant: grant(1, 9_999),
            },
            Update::MoveAuthorized {
                object: ObjectRef::Mailbox(user(5)),
                target: host(2),
                grant: grant(2, 9_999),
            },
            Update::MailboxHome {
                user: user(5),
                home: Some(host(1)),
                set_ms: 10,
            },
            Update::MailboxHome {
                user: user(5),
                home: None,
                set_ms: 10,
            },
            Update::AttachmentLocated {
                id: att(9),
                hosts: vec![host(2)],
                size_bytes: 5,
                epoch: Epoch(1),
            },
            Update::AttachmentRemoved {
                id: att(9),
                size_bytes: 5,
                epoch: Epoch(2),
            },
            Update::AttachmentLocated {
                id: att(9),
                hosts: vec![host(3)],
                size_bytes: 5,
                epoch: Epoch(2),
            },
            Update::AttachmentRemoved {
                id: att(8),
                size_bytes: 5,
                epoch: Epoch(3),
            },
            Update::AttachmentReferenced {
                id: att(9),
                until_ms: 50,
            },
            Update::AttachmentReferenced {
                id: att(9),
                until_ms: 40,
            },
            Update::AttachmentLocated {
                id: att(8),
                hosts: vec![host(3)],
                size_bytes: 5,
                epoch: Epoch(2),
            },
        ]);
        all
    }

    impl DispatchUnit {
        /// Applies all `updates`, which must all be accepted.
        fn apply_update_ok(&mut self, updates: &[Update]) {
            for u in updates {
                self.apply_update(0, u.clone()).unwrap();
            }
        }
    }

    #[test]
    fn any_order_with_duplicates_converges() {
        let all = scenario();
        let mut reference = blank();
        for u in &all {
            reference.apply_update(0, u.clone()).unwrap();
        }
        let t = reference.tables();
        assert_eq!(t.names["alice"].user, user(2), "first issued claim wins");
        let carol = &t.names["carol"];
        let key = carol
            .claim
            .as_ref()
            .unwrap()
            .verify()
            .unwrap()
            .encryption_key;
        assert_eq!((carol.issued_ms, key), (100, Some([3; 32])), "latest claim");
        assert_eq!(
            t.hosts[&host(1)].state,
            HostState::Leaving,
            "leave beats a later heartbeat"
        );
        assert_eq!(
            t.mailboxes[&user(5)].hosts,
            vec![host(3)],
            "larger host list wins a tie"
        );
        assert_eq!(
            t.mailboxes[&user(5)].pending.keys().collect::<Vec<_>>(),
            vec![&host(2)]
        );
        assert_eq!(t.mailboxes[&user(5)].home, Some(host(1)));
        assert_eq!(
            t.attachments[&att(9)].hosts,
            vec![host(3)],
            "a location beats a removal"
        );
        assert!(
            t.attachments[&att(8)].hosts.is_empty(),
            "a later removal wins"
        );
        assert_eq!(t.attachments[&att(7)].size_bytes, 70);
        assert_eq!(t.units.len(), 2);

        for seed in 1..=50u64 {
            eprintln!("convergence seed {seed}");
            let mut rng = Rng(seed);
            let mut order = all.clone();
            for _ in 0..all.len() / 2 {
                order.push(all[rng.below(all.len())].clone());
            }
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let mut u = blank();
            for up in order {
                u.apply_update(0, up).unwrap();
            }
            assert_eq!(u.tables(), reference.tables(), "seed {seed}");
        }
    }

    #[test]
    fn snapshots_merge_both_ways_and_restore() {
        let all = scenario();
        let mut reference = blank();
        reference.apply_update_ok(&all);
        let seed = 7;
        eprintln!("snapshot split seed {seed}");
        let mut rng = Rng(seed);
        let (mut x, mut y) = (blank(), blank());
        for u in all.iter().rev() {
            let target = if rng.below(2) == 0 { &mut x } else { &mut y };
            target.apply_update(0, u.clone()).unwrap();
        }
        let (sx, sy) = (x.snapshot(), y.snapshot());
        assert!(x.merge_snapshot(&sy).refused.is_empty());
        assert!(y.merge_snapshot(&sx).refused.is_empty());
        assert_eq!(x.tables(), reference.tables());
        assert_eq!(y.tables(), reference.tables());
        assert_eq!(
            x.merge_snapshot(&sy).changed,
            0,
            "merging again changes nothing"
        );
        let bytes = rmp_serde::to_vec_named(&x.snapshot()).unwrap();
        let restored: DispatchTables = rmp_serde::from_slice(&bytes).unwrap();
        let z =
            DispatchUnit::from_snapshot(DispatchId([3; 32]), Limits::default(), &restored).unwrap();
        assert_eq!(z.tables(), reference.tables());
    }
}
