//! Authenticated location updates: hosts telling the unit where an object
//! now lives, and users telling it which host is their home.
//!
//! The middleware of the paper kept references valid by itself; here the
//! host that moved an object reports it, and the unit must not let just any
//! host redirect a mailbox. An update is accepted only from a current holder
//! of the object, or from a host holding a live grant (a placement, departure
//! plan or admin move handed out earlier), and only with an epoch above the
//! current one, so a delayed or replayed report can never roll a location
//! back. Of two concurrent moves, the first confirmed wins: it raises the
//! epoch, which voids the other grant.
//!
//! The driver verifies signatures; these methods get the verified `from`.

use super::error::LocationError;
use super::limits::MAX_EPOCH_STEP;
use super::objects::ObjectRef;
use super::tables::HostState;
use super::tables::Merge;
use super::updates::Update;
use super::{Action, DispatchUnit, validate};
use dem_identity::{Epoch, HostId, UserId};

impl DispatchUnit {
    /// Host `from` reports that `object` is now held by `new_hosts` (in
    /// preference order) at `epoch`. An empty list removes an attachment
    /// (mailboxes cannot be removed). A grantee must list itself.
    pub fn handle_location_update(
        &mut self,
        now_ms: u64,
        from: HostId,
        object: &ObjectRef,
        new_hosts: Vec<HostId>,
        epoch: Epoch,
    ) -> Result<Vec<Action>, LocationError> {
        let (holders, current) = self
            .tables
            .location(object)
            .ok_or_else(|| LocationError::UnknownObject(object.clone()))?;
        let is_holder = holders.contains(&from);
        let granted = self
            .tables
            .pending(object)
            .and_then(|p| p.get(&from))
            .is_some_and(|g| g.is_live(now_ms, current));
        if !is_holder && !granted {
            tracing::debug!(%object, from = %from.short(), "location update not authorized");
            return Err(LocationError::NotAuthorized {
                from,
                object: object.clone(),
            });
        }
        if epoch <= current {
            return Err(LocationError::StaleEpoch {
                object: object.clone(),
                current,
                offered: epoch,
            });
        }
        if epoch.0 - current.0 > MAX_EPOCH_STEP {
            return Err(LocationError::EpochJump {
                object: object.clone(),
                current,
                offered: epoch,
            });
        }
        let is_attachment = matches!(object, ObjectRef::Attachment(_));
        // Removal is collection: only once no mail may reference it.
        if let ObjectRef::Attachment(id) = object
            && new_hosts.is_empty()
            && self
                .tables
                .attachments
                .get(id)
                .is_some_and(|r| r.is_referenced(now_ms))
        {
            return Err(LocationError::StillReferenced(object.clone()));
        }
        validate::host_list(&new_hosts, self.limits.max_hosts_per_object, is_attachment)?;
        if let Some(bad) = new_hosts.iter().find(|h| {
            self.tables
                .hosts
                .get(h)
                .is_none_or(|r| r.state == HostState::Left)
        }) {
            return Err(LocationError::UnknownHost(*bad));
        }
        if !is_holder && !new_hosts.contains(&from) {
            return Err(LocationError::TargetNotListed {
                from,
                object: object.clone(),
            });
        }
        // A new listing holds only the old holders and the hosts the units
        // placed for this object: a holder (or a grantee) cannot hand an
        // object to hosts of its own choosing.
        let placed = |h: &HostId| {
            self.tables
                .pending(object)
                .and_then(|p| p.get(h))
                .is_some_and(|g| g.is_live(now_ms, current))
        };
        let holders_now: Vec<HostId> = self
            .tables
            .location(object)
            .map(|(h, _)| h.to_vec())
            .unwrap_or_default();
        if let Some(stranger) = new_hosts
            .iter()
            .find(|h| !holders_now.contains(h) && !placed(h))
        {
            return Err(LocationError::NotPlaced {
                host: *stranger,
                object: object.clone(),
            });
        }

        let update = match object {
            ObjectRef::Mailbox(user) => {
                self.tables.merge_mailbox_location(
                    &self.limits,
                    *user,
                    new_hosts.clone(),
                    epoch,
                )?;
                Update::MailboxLocated {
                    user: *user,
                    hosts: new_hosts,
                    epoch,
                }
            }
            ObjectRef::Attachment(id) => {
                let size_bytes = self
                    .tables
                    .attachments
                    .get(id)
                    .map(|r| r.size_bytes)
                    .unwrap_or(0);
                let hosts = new_hosts.clone();
                self.tables.merge_attachment_location(
                    &self.limits,
                    id,
                    hosts,
                    size_bytes,
                    epoch,
                )?;
                if new_hosts.is_empty() {
                    Update::AttachmentRemoved {
                        id: *id,
                        size_bytes,
                        epoch,
                    }
                } else {
                    Update::AttachmentLocated {
                        id: *id,
                        hosts: new_hosts,
                        size_bytes,
                        epoch,
                    }
                }
            }
        };
        tracing::debug!(%object, from = %from.short(), %epoch, "location updated");
        Ok(vec![Action::Replicate(update)])
    }

    /// `user` says their own host is now `home` (or `None`: disconnected).
    /// Precondition: the caller has verified the request is signed by
    /// `user`. The home decides whether the user shows as online.
    pub fn handle_home(
        &mut self,
        now_ms: u64,
        user: UserId,
        home: Option<HostId>,
    ) -> Result<Vec<Action>, LocationError> {
        let Some(cur) = self.tables.mailboxes.get(&user) else {
            return Err(LocationError::UnknownObject(ObjectRef::Mailbox(user)));
        };
        if let Some(h) = home
            && self
                .tables
                .hosts
                .get(&h)
                .is_none_or(|r| r.state == HostState::Left)
        {
            return Err(LocationError::UnknownHost(h));
        }
        // Strictly after the current stamp, so a newer call always wins
        // locally even if this unit's clock is behind the last writer's.
        let set_ms = now_ms.max(cur.home_set_ms.saturating_add(1));
        self.tables
            .merge_mailbox_home(&self.limits, user, home, set_ms)?;
        Ok(vec![Action::Replicate(Update::MailboxHome {
            user,
            home,
            set_ms,
        })])
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::{HostListError, LocationError as E};
    use super::super::limits::MOVE_GRANT_MS;
    use super::super::tables::{AttachmentRecord, MailboxRecord};
    use super::super::testutil::*;
    use super::*;
    use dem_proto::AttachmentId;

    fn setup() -> DispatchUnit {
        let mut u = unit_with_hosts(0, 4);
        let rec = MailboxRecord {
            hosts: vec![host(1)],
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.mailboxes.insert(user(1), rec);
        u
    }

    #[test]
    fn holders_update_with_strictly_higher_epochs() {
        let mut u = setup();
        let mb = ObjectRef::Mailbox(user(1));
        // A holder cannot list a host the units did not place for it…
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![host(1), host(2)], Epoch(2)),
            Err(E::NotPlaced {
                host: host(2),
                object: mb.clone()
            })
        );
        // …but can once they did.
        u.grant(1, &mb, host(2)).unwrap();
        let acts = u
            .handle_location_update(1, host(1), &mb, vec![host(1), host(2)], Epoch(2))
            .unwrap();
        assert_eq!(
            updates(&acts),
            vec![Update::MailboxLocated {
                user: user(1),
                hosts: vec![host(1), host(2)],
                epoch: Epoch(2)
            }]
        );
        // Either holder may update now; equal or lower epochs are stale.
        for e in [1, 2] {
            assert!(matches!(
                u.handle_location_update(1, host(2), &mb, vec![host(2)], Epoch(e)),
                Err(E::StaleEpoch { .. })
            ));
        }
        assert!(matches!(
            u.handle_location_update(1, host(2), &mb, vec![host(2)], Epoch(3 + MAX_EPOCH_STEP)),
            Err(E::EpochJump { .. })
        ));
        u.handle_location_update(1, host(2), &mb, vec![host(2)], Epoch(2 + MAX_EPOCH_STEP))
            .unwrap();
        // Host 1 no longer holds it.
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![host(1)], Epoch(5_000)),
            Err(E::NotAuthorized {
                from: host(1),
                object: mb.clone()
            })
        );
    }

    /// The attack of issue 22: a holder hands a mailbox to hosts of its
    /// own choosing (its sybils), or a grantee lists others beside itself.
    #[test]
    fn nobody_lists_a_host_the_units_did_not_place() {
        let mut u = setup();
        let mb = ObjectRef::Mailbox(user(1));
        for hosts in [vec![host(3)], vec![host(1), host(3), host(4)]] {
            assert!(matches!(
                u.handle_location_update(1, host(1), &mb, hosts, Epoch(2)),
                Err(E::NotPlaced { .. })
            ));
        }
        u.grant(1, &mb, host(2)).unwrap();
        assert!(matches!(
            u.handle_location_update(1, host(2), &mb, vec![host(2), host(3)], Epoch(2)),
            Err(E::NotPlaced { host: h, .. }) if h == host(3)
        ));
        // An expired grant places nobody.
        assert!(matches!(
            u.handle_location_update(
                MOVE_GRANT_MS + 2,
                host(1),
                &mb,
                vec![host(1), host(2)],
                Epoch(2)
            ),
            Err(E::NotPlaced { .. })
        ));
        // Dropping to a subset of the holders needs no grant.
        u.grant(1, &mb, host(2)).unwrap();
        u.handle_location_update(1, host(1), &mb, vec![host(1), host(2)], Epoch(2))
            .unwrap();
        u.handle_location_update(1, host(2), &mb, vec![host(2)], Epoch(3))
            .unwrap();
        assert_eq!(u.tables.mailboxes[&user(1)].hosts, vec![host(2)]);
    }

    #[test]
    fn strangers_and_bad_lists_are_refused() {
        let mut u = setup();
        let mb = ObjectRef::Mailbox(user(1));
        assert_eq!(
            u.handle_location_update(1, host(3), &mb, vec![host(3)], Epoch(2)),
            Err(E::NotAuthorized {
                from: host(3),
                object: mb.clone()
            })
        );
        let other = ObjectRef::Mailbox(user(2));
        assert_eq!(
            u.handle_location_update(1, host(1), &other, vec![host(1)], Epoch(2)),
            Err(E::UnknownObject(other))
        );
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![], Epoch(2)),
            Err(E::HostList(HostListError::EmptyMailbox))
        );
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![host(2), host(2)], Epoch(2)),
            Err(E::HostList(HostListError::Duplicate(host(2))))
        );
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![host(9)], Epoch(2)),
            Err(E::UnknownHost(host(9)))
        );
        u.handle_leave(1, host(4)).unwrap();
        u.handle_left(1, host(4)).unwrap();
        assert_eq!(
            u.handle_location_update(1, host(1), &mb, vec![host(4)], Epoch(2)),
            Err(E::UnknownHost(host(4)))
        );
        assert_eq!(u.tables().mailboxes[&user(1)].epoch, Epoch(1));
    }

    #[test]
    fn grantees_may_move_in_until_the_grant_is_void() {
        let mut u = unit_with_hosts(0, 3);
        u.register_name(0, "alice", user(1), 0).unwrap();
        let mb = ObjectRef::Mailbox(user(1));
        let (first, _) = u.place_new_mailbox(0, user(1)).unwrap();
        let (second, _) = u.place_new_mailbox(0, user(1)).unwrap();
        assert_ne!(first.host, second.host, "the first grant counts as load");
        let third = (1..=3)
            .map(host)
            .find(|h| *h != first.host && *h != second.host)
            .unwrap();
        assert_eq!(
            u.handle_location_update(1, first.host, &mb, vec![third], Epoch(1)),
            Err(E::TargetNotListed {
                from: first.host,
                object: mb.clone()
            })
        );
        u.handle_location_update(1, first.host, &mb, vec![first.host], Epoch(1))
            .unwrap();
        assert!(
            u.tables().mailboxes[&user(1)].pending.is_empty(),
            "grants at epoch 0 are void"
        );
        assert_eq!(
            u.handle_location_update(1, second.host, &mb, vec![second.host], Epoch(2)),
            Err(E::NotAuthorized {
                from: second.host,
                object: mb.clone()
            })
        );
        // A grant expires.
        let (p, _) = u.place(10, &mb, &[]).unwrap();
        assert_eq!(
            u.handle_location_update(10 + MOVE_GRANT_MS, p.host, &mb, vec![p.host], Epoch(2)),
            Err(E::NotAuthorized {
                from: p.host,
                object: mb.clone()
            })
        );
        u.handle_location_update(9 + MOVE_GRANT_MS, p.host, &mb, vec![p.host], Epoch(2))
            .unwrap();
        assert_eq!(u.tables().mailboxes[&user(1)].hosts, vec![p.host]);
    }

    #[test]
    fn attachments_can_be_removed_by_holders() {
        let mut u = setup();
        let id: AttachmentId = "01".repeat(32).parse().unwrap();
        let rec = AttachmentRecord {
            hosts: vec![host(2)],
            size_bytes: 9,
            epoch: Epoch(1),
            referenced_until_ms: Some(5),
            ..Default::default()
        };
        u.tables.attachments.insert(id, rec);
        let obj = ObjectRef::Attachment(id);
        // Not while its reference lease holds (nor forever for a record
        // without one).
        assert_eq!(
            u.handle_location_update(4, host(2), &obj, vec![], Epoch(2)),
            Err(E::StillReferenced(obj.clone()))
        );
        u.tables
            .attachments
            .get_mut(&id)
            .unwrap()
            .referenced_until_ms = None;
        assert_eq!(
            u.handle_location_update(9, host(2), &obj, vec![], Epoch(2)),
            Err(E::StillReferenced(obj.clone()))
        );
        u.tables
            .attachments
            .get_mut(&id)
            .unwrap()
            .referenced_until_ms = Some(1);
        let acts = u
            .handle_location_update(1, host(2), &obj, vec![], Epoch(2))
            .unwrap();
        assert_eq!(
            updates(&acts),
            vec![Update::AttachmentRemoved {
                id,
                size_bytes: 9,
                epoch: Epoch(2)
            }]
        );
        assert!(u.tables().attachments[&id].hosts.is_empty());
    }

    #[test]
    fn homes_are_set_by_users() {
        let mut u = setup();
        assert_eq!(
            u.handle_home(5, user(2), Some(host(1))),
            Err(E::UnknownObject(ObjectRef::Mailbox(user(2))))
        );
        assert_eq!(
            u.handle_home(5, user(1), Some(host(9))),
            Err(E::UnknownHost(host(9)))
        );
        u.handle_home(5, user(1), Some(host(3))).unwrap();
        // A second call at the same ms still wins.
        let acts = u.handle_home(5, user(1), None).unwrap();
        assert_eq!(
            updates(&acts),
            vec![Update::MailboxHome {
                user: user(1),
                home: None,
                set_ms: 6
            }]
        );
        assert_eq!(u.tables().mailboxes[&user(1)].home, None);
    }
}
