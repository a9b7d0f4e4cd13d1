//! Replication between dispatch units.
//!
//! Every change a unit makes is emitted as an [`Update`] (through
//! [`super::Action::Replicate`]) that peers merge with
//! [`DispatchUnit::apply_update`]. Updates carry whole values (a whole host
//! record, a whole location), never deltas, and merge by the total orders
//! described in [`super::tables`]: applying is idempotent, commutative and
//! associative, so units that receive the same updates in any order, with
//! duplicates, converge to equal tables. A snapshot is just another set of
//! updates ([`super::snapshot::updates_of`]), which is how a new unit
//! copies a running one and how two units that drifted apart reconcile.
//!
//! Received updates are checked like local input (formats, list sizes,
//! table limits), so a faulty peer cannot plant what a host could not.

pub use dem_proto::dispatch::updates::*;

use super::error::UpdateError;
use super::limits::MAX_CAPACITY;
use super::tables::Merge;
use super::{DispatchUnit, validate};
use dem_identity::Epoch;

impl DispatchUnit {
    /// Merges an update from a peer unit. Returns whether the tables
    /// changed: the driver forwards only updates that were news, so gossip
    /// dies out once every unit has them.
    pub fn apply_update(&mut self, now_ms: u64, update: Update) -> Result<bool, UpdateError> {
        let limits = &self.limits;
        let per_object = limits.max_hosts_per_object;
        let tables = &mut self.tables;
        let changed = match update {
            Update::Host { host, record } => {
                validate::addr(&record.addr)?;
                if let Some(op) = &record.operator {
                    validate::operator(op)?;
                }
                if record.capacity == 0 || record.capacity > MAX_CAPACITY {
                    return Err(UpdateError::BadCapacity {
                        capacity: record.capacity,
                        max: MAX_CAPACITY,
                    });
                }
                tables.merge_host(limits, host, record)?
            }
            Update::NameRegistered { name, record } => {
                validate::name(&name)?;
                // Gossip repeats records: one kept here as it is was
                // checked when it came, so only a new one costs a signature
                // check. (The whole record must match: a kept claim under
                // another holder would be a forgery.)
                let kept = tables.names.get(&name) == Some(&record);
                if !kept {
                    validate::record_claim(&name, &record).map_err(|source| {
                        UpdateError::Claim {
                            name: name.clone(),
                            source,
                        }
                    })?;
                }
                tables.merge_name(limits, &name, record)?
            }
            Update::MailboxLocated { user, hosts, epoch } => {
                validate::host_list(&hosts, per_object, epoch == Epoch(0))?;
                tables.merge_mailbox_location(limits, user, hosts, epoch)?
            }
            Update::MailboxHome { user, home, set_ms } => {
                tables.merge_mailbox_home(limits, user, home, set_ms)?
            }
            Update::AttachmentLocated {
                id,
                hosts,
                size_bytes,
                epoch,
            } => {
                validate::host_list(&hosts, per_object, true)?;
                tables.merge_attachment_location(limits, &id, hosts, size_bytes, epoch)?
            }
            Update::AttachmentRemoved {
                id,
                size_bytes,
                epoch,
            } => tables.merge_attachment_location(limits, &id, Vec::new(), size_bytes, epoch)?,
            Update::AttachmentReferenced { id, until_ms } => {
                tables.merge_attachment_referenced(limits, &id, until_ms)?
            }
            Update::MoveAuthorized {
                object,
                target,
                grant,
            } => tables.merge_move_grant(limits, &object, target, grant)?,
            Update::Unit { unit, record } => {
                validate::addr(&record.addr)?;
                tables.merge_unit(limits, unit, record)?
            }
            Update::Settings(settings) => {
                super::settings::check(
                    settings.replicas,
                    settings.write_quorum,
                    limits.max_hosts_per_object,
                )?;
                super::settings::merge(&mut tables.settings, settings)
            }
        };
        tracing::trace!(now_ms, changed, "update applied");
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::AddrError;
    use super::super::limits::{Limit, LimitExceeded, Limits};
    use super::super::tables::{DispatchTables, HostState};
    use super::super::tables::{HostRecord, NameRecord};
    use super::super::testutil::*;
    use super::*;
    use dem_identity::DispatchId;

    #[test]
    fn duplicates_report_no_change_and_bad_records_are_refused() {
        let mut u = blank();
        let rec = HostRecord {
            addr: addr(1),
            capacity: 1,
            load: 0,
            lease_expires_ms: 10,
            last_seen_ms: 0,
            epoch: Epoch(1),
            state: HostState::Active,
            operator: None,
        };
        assert_eq!(
            u.apply_update(
                0,
                Update::Host {
                    host: host(1),
                    record: rec.clone()
                }
            ),
            Ok(true)
        );
        assert_eq!(
            u.apply_update(
                0,
                Update::Host {
                    host: host(1),
                    record: rec.clone()
                }
            ),
            Ok(false)
        );
        let bad = HostRecord {
            addr: "x".into(),
            ..rec.clone()
        };
        assert!(matches!(
            u.apply_update(
                0,
                Update::Host {
                    host: host(2),
                    record: bad
                }
            ),
            Err(UpdateError::Addr(AddrError::NotSocketAddr { .. }))
        ));
        let zero = HostRecord {
            capacity: 0,
            ..rec.clone()
        };
        assert!(matches!(
            u.apply_update(
                0,
                Update::Host {
                    host: host(2),
                    record: zero
                }
            ),
            Err(UpdateError::BadCapacity { .. })
        ));
        let name = Update::NameRegistered {
            name: "Bad".into(),
            record: NameRecord {
                user: user(1),
                issued_ms: 0,
                claim: None,
            },
        };
        assert!(matches!(u.apply_update(0, name), Err(UpdateError::Name(_))));
        let nowhere = Update::MailboxLocated {
            user: user(1),
            hosts: vec![],
            epoch: Epoch(1),
        };
        assert!(matches!(
            u.apply_update(0, nowhere),
            Err(UpdateError::HostList(_))
        ));
        let many = Update::MailboxLocated {
            user: user(1),
            hosts: (1..=9).map(host).collect(),
            epoch: Epoch(1),
        };
        assert!(matches!(
            u.apply_update(0, many),
            Err(UpdateError::HostList(_))
        ));

        let limits = Limits {
            max_hosts: 1,
            max_attachments: 1,
            ..Limits::default()
        };
        let mut small = DispatchUnit::from_snapshot(
            DispatchId([1; 32]),
            limits.clone(),
            &DispatchTables::default(),
        )
        .unwrap();
        small
            .apply_update(
                0,
                Update::Host {
                    host: host(1),
                    record: rec.clone(),
                },
            )
            .unwrap();
        assert_eq!(
            small.apply_update(
                0,
                Update::Host {
                    host: host(2),
                    record: rec.clone()
                }
            ),
            Err(UpdateError::Limit(LimitExceeded {
                limit: Limit::Hosts,
                max: 1
            }))
        );
        small
            .apply_update(
                0,
                Update::AttachmentRemoved {
                    id: att(1),
                    size_bytes: 0,
                    epoch: Epoch(1),
                },
            )
            .unwrap();
        assert!(
            small
                .apply_update(
                    0,
                    Update::AttachmentRemoved {
                        id: att(2),
                        size_bytes: 0,
                        epoch: Epoch(1)
                    }
                )
                .is_err()
        );
        // An oversized snapshot is refused whole.
        assert!(DispatchUnit::from_snapshot(DispatchId([1; 32]), limits, &u.snapshot()).is_ok());
        let mut big = u.snapshot();
        big.hosts.insert(host(2), rec);
        let limits = Limits {
            max_hosts: 1,
            ..Limits::default()
        };
        assert!(DispatchUnit::from_snapshot(DispatchId([1; 32]), limits, &big).is_err());
    }
}
