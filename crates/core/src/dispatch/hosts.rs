//! Host membership: join, heartbeat (lease renewal with a load report),
//! graceful leave, and the list of peer dispatch units.
//!
//! A host is online while its lease holds (`Limits::lease_ms` after its last join
//! or heartbeat); a crashed host simply stops renewing and goes offline
//! without anyone having to notice. Every change is replicated as the whole
//! host record, so peers converge whichever of them the host talks to.
//!
//! Callers must have verified that the request was signed by `host` (or by
//! the announcing unit); these methods trust the ids they are given.

use super::error::{HostError, UnitError};
use super::limits::MAX_CAPACITY;
use super::tables::Merge;
use super::tables::{HostRecord, HostState, UnitRecord};
use super::updates::Update;
use super::{Action, DispatchUnit, validate};
use dem_identity::{DispatchId, Epoch, HostId};

impl DispatchUnit {
    /// A host (re)joins: starts a new session (epoch + 1) as Active, online
    /// for a lease, with its address, capacity (objects it will hold) and
    /// current load (objects it holds).
    pub fn handle_join(
        &mut self,
        now_ms: u64,
        host: HostId,
        addr: &str,
        capacity: u64,
        load: u64,
    ) -> Result<Vec<Action>, HostError> {
        self.handle_join_as(now_ms, host, addr, capacity, load, None)
    }

    /// [`Self::handle_join`] with the operator's label for the host.
    pub fn handle_join_as(
        &mut self,
        now_ms: u64,
        host: HostId,
        addr: &str,
        capacity: u64,
        load: u64,
        operator: Option<&str>,
    ) -> Result<Vec<Action>, HostError> {
        validate::addr(addr)?;
        if let Some(op) = operator {
            validate::operator(op)?;
        }
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(HostError::BadCapacity {
                capacity,
                max: MAX_CAPACITY,
            });
        }
        let (epoch, last_seen) = match self.tables.hosts.get(&host) {
            // Saturating: a peer could have sent u64::MAX; never panic.
            Some(cur) => (
                Epoch(cur.epoch.0.saturating_add(1)),
                cur.last_seen_ms.max(now_ms),
            ),
            None => (Epoch(1), now_ms),
        };
        let record = HostRecord {
            addr: addr.to_string(),
            capacity,
            load,
            lease_expires_ms: now_ms.saturating_add(self.limits.lease_ms),
            last_seen_ms: last_seen,
            epoch,
            state: HostState::Active,
            operator: operator.map(str::to_owned),
        };
        tracing::info!(host = %host.short(), %addr, %epoch, operator, "host joined");
        self.put_host(host, record)
    }

    /// A host renews its lease and reports its load. A leaving host keeps
    /// heartbeating while it moves its objects, and stays leaving.
    pub fn handle_heartbeat(
        &mut self,
        now_ms: u64,
        host: HostId,
        load: u64,
    ) -> Result<Vec<Action>, HostError> {
        let mut record = self.renewable(host)?;
        record.load = load;
        record.last_seen_ms = record.last_seen_ms.max(now_ms);
        record.lease_expires_ms = record
            .lease_expires_ms
            .max(now_ms.saturating_add(self.limits.lease_ms));
        self.put_host(host, record)
    }

    /// A host starts leaving gracefully: placement stops choosing it, and
    /// [`DispatchUnit::plan_departure`] says where its objects should go.
    /// Idempotent. Also renews the lease: the host is still up, moving.
    pub fn handle_leave(&mut self, now_ms: u64, host: HostId) -> Result<Vec<Action>, HostError> {
        let mut record = self.renewable(host)?;
        record.state = HostState::Leaving;
        record.last_seen_ms = record.last_seen_ms.max(now_ms);
        record.lease_expires_ms = record
            .lease_expires_ms
            .max(now_ms.saturating_add(self.limits.lease_ms));
        tracing::info!(host = %host.short(), "host leaving");
        self.put_host(host, record)
    }

    /// An administrator orders `host` drained: it is marked Leaving, so
    /// placement no longer picks it, and its next lease answer tells it to
    /// move everything away and leave, as on SIGTERM. Precondition: the
    /// driver has checked that an administrator ordered it. A host that
    /// joins again afterwards (a restart) is Active again: the order is
    /// for the running process.
    pub fn order_drain(&mut self, now_ms: u64, host: HostId) -> Result<Vec<Action>, HostError> {
        let mut record = self.renewable(host)?;
        if record.state == HostState::Leaving {
            return Ok(Vec::new());
        }
        record.state = HostState::Leaving;
        record.last_seen_ms = record.last_seen_ms.max(now_ms);
        tracing::info!(host = %host.short(), "drain ordered");
        self.put_host(host, record)
    }

    /// Whether `host` is marked Leaving: it left on its own, or a drain
    /// was ordered (what its lease answers tell it).
    pub fn is_draining(&self, host: &HostId) -> bool {
        self.tables
            .hosts
            .get(host)
            .is_some_and(|r| r.state == HostState::Leaving)
    }

    /// A leaving host reports that it moved everything away: it is marked
    /// Left (offline, kept as a tombstone). Refused while the tables still
    /// place any object on it, so no mailbox is lost to a premature leave.
    pub fn handle_left(&mut self, now_ms: u64, host: HostId) -> Result<Vec<Action>, HostError> {
        let Some(cur) = self.tables.hosts.get(&host) else {
            return Err(HostError::UnknownHost(host));
        };
        if cur.state == HostState::Left {
            return Ok(Vec::new());
        }
        let mailboxes = self
            .tables
            .mailboxes
            .values()
            .filter(|r| r.hosts.contains(&host))
            .count();
        let attachments = self
            .tables
            .attachments
            .values()
            .filter(|r| r.hosts.contains(&host))
            .count();
        if mailboxes + attachments > 0 {
            return Err(HostError::StillHolding {
                host,
                mailboxes,
                attachments,
            });
        }
        let mut record = cur.clone();
        record.state = HostState::Left;
        record.load = 0;
        record.last_seen_ms = record.last_seen_ms.max(now_ms);
        tracing::info!(host = %host.short(), "host left");
        self.put_host(host, record)
    }

    /// A dispatch unit announces itself (or this unit itself, on start).
    /// The caller has verified the announcement was signed by `unit`.
    pub fn handle_unit_announce(
        &mut self,
        now_ms: u64,
        unit: DispatchId,
        addr: &str,
    ) -> Result<Vec<Action>, UnitError> {
        validate::addr(addr)?;
        let seen_ms = match self.tables.units.get(&unit) {
            Some(cur) => cur.seen_ms.max(now_ms),
            None => now_ms,
        };
        let record = UnitRecord {
            addr: addr.to_string(),
            seen_ms,
        };
        if !self.tables.merge_unit(&self.limits, unit, record.clone())? {
            return Ok(Vec::new());
        }
        Ok(vec![Action::Replicate(Update::Unit { unit, record })])
    }

    /// This unit's own announcement, to send to peers when it starts (and
    /// now and then after): its record refreshed to `now_ms`. Always
    /// returns the update, even when nothing changed, since a peer that
    /// just connected may never have seen it.
    pub fn announce(&mut self, now_ms: u64) -> Vec<Action> {
        let Some(cur) = self.tables.units.get(&self.id) else {
            // Only a unit restored from a foreign snapshot lacks its own
            // record; it must announce with an address first.
            return Vec::new();
        };
        let record = UnitRecord {
            addr: cur.addr.clone(),
            seen_ms: cur.seen_ms.max(now_ms),
        };
        // Cannot fail: the record exists, so no table grows.
        let _ = self
            .tables
            .merge_unit(&self.limits, self.id, record.clone());
        vec![Action::Replicate(Update::Unit {
            unit: self.id,
            record,
        })]
    }

    /// The current record of a host that may heartbeat or leave.
    fn renewable(&self, host: HostId) -> Result<HostRecord, HostError> {
        match self.tables.hosts.get(&host) {
            None => Err(HostError::UnknownHost(host)),
            Some(r) if r.state == HostState::Left => Err(HostError::HostLeft(host)),
            Some(r) => Ok(r.clone()),
        }
    }

    fn put_host(&mut self, host: HostId, record: HostRecord) -> Result<Vec<Action>, HostError> {
        if !self.tables.merge_host(&self.limits, host, record.clone())? {
            return Ok(Vec::new());
        }
        Ok(vec![Action::Replicate(Update::Host { host, record })])
    }
}

#[cfg(test)]
mod tests {
    use super::super::MailboxRecord;
    use super::super::limits::{LEASE_MS, Limit, LimitExceeded, Limits};
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn lease_expires_exactly_after_lease_ms() {
        let mut u = unit();
        let acts = u.handle_join(1_000, host(1), &addr(1), 10, 0).unwrap();
        assert_eq!(acts.len(), 1);
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!(rec.epoch, Epoch(1));
        assert!(rec.is_online(1_000 + LEASE_MS - 1));
        assert!(!rec.is_online(1_000 + LEASE_MS));

        // A heartbeat extends it from the heartbeat's time.
        u.handle_heartbeat(10_000, host(1), 3).unwrap();
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!(rec.load, 3);
        assert!(rec.is_online(10_000 + LEASE_MS - 1));
        assert!(!rec.is_online(10_000 + LEASE_MS));
        // A late (reordered) heartbeat never shortens the lease.
        u.handle_heartbeat(5_000, host(1), 3).unwrap();
        assert_eq!(
            u.tables().hosts[&host(1)].lease_expires_ms,
            10_000 + LEASE_MS
        );
    }

    #[test]
    fn join_checks_input_and_rejoin_bumps_epoch() {
        let mut u = unit();
        assert!(matches!(
            u.handle_join(0, host(1), "nope", 10, 0),
            Err(HostError::Addr(_))
        ));
        assert!(matches!(
            u.handle_join(0, host(1), &addr(1), 0, 0),
            Err(HostError::BadCapacity { .. })
        ));
        assert!(matches!(
            u.handle_join(0, host(1), &addr(1), MAX_CAPACITY + 1, 0),
            Err(HostError::BadCapacity { .. })
        ));
        assert_eq!(
            u.handle_heartbeat(0, host(1), 0),
            Err(HostError::UnknownHost(host(1)))
        );
        u.handle_join(0, host(1), &addr(1), 10, 0).unwrap();
        u.handle_join(5, host(1), &addr(2), 10, 0).unwrap();
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!((rec.epoch, rec.addr.as_str()), (Epoch(2), addr(2).as_str()));
    }

    #[test]
    fn leave_then_left_only_when_empty() {
        let mut u = unit_with_hosts(0, 2);
        u.handle_leave(100, host(1)).unwrap();
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!(rec.state, HostState::Leaving);
        assert!(rec.is_online(100) && !rec.accepts_objects(100));
        // Heartbeats keep it leaving.
        u.handle_heartbeat(200, host(1), 1).unwrap();
        assert_eq!(u.tables().hosts[&host(1)].state, HostState::Leaving);

        let mb = MailboxRecord {
            hosts: vec![host(1)],
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.mailboxes.insert(user(9), mb);
        assert_eq!(
            u.handle_left(300, host(1)),
            Err(HostError::StillHolding {
                host: host(1),
                mailboxes: 1,
                attachments: 0
            })
        );
        u.tables.mailboxes.get_mut(&user(9)).unwrap().hosts = vec![host(2)];
        u.handle_left(300, host(1)).unwrap();
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!(rec.state, HostState::Left);
        assert!(!rec.is_online(300));
        assert_eq!(
            u.handle_heartbeat(400, host(1), 0),
            Err(HostError::HostLeft(host(1)))
        );
        assert!(
            u.handle_left(400, host(1)).unwrap().is_empty(),
            "idempotent"
        );
        // Rejoining starts a new session.
        u.handle_join(500, host(1), &addr(1), 10, 0).unwrap();
        let rec = &u.tables().hosts[&host(1)];
        assert_eq!((rec.state, rec.epoch), (HostState::Active, Epoch(2)));
    }

    #[test]
    fn host_and_unit_tables_are_bounded() {
        let limits = Limits {
            max_hosts: 2,
            max_units: 2,
            ..Limits::default()
        };
        let mut u =
            DispatchUnit::with_limits(0, DispatchId([1; 32]), "10.0.0.1:1", limits).unwrap();
        u.handle_join(0, host(1), &addr(1), 1, 0).unwrap();
        u.handle_join(0, host(2), &addr(2), 1, 0).unwrap();
        assert_eq!(
            u.handle_join(0, host(3), &addr(3), 1, 0),
            Err(HostError::Limit(LimitExceeded {
                limit: Limit::Hosts,
                max: 2
            }))
        );
        // Known hosts can still rejoin.
        u.handle_join(1, host(2), &addr(2), 1, 0).unwrap();
        assert_eq!(u.announce(7).len(), 1);
        assert_eq!(u.tables().units[&u.id()].seen_ms, 7);
        assert!(u.handle_unit_announce(8, DispatchId([2; 32]), "x").is_err());
        u.handle_unit_announce(0, DispatchId([2; 32]), "10.0.0.2:1")
            .unwrap();
        assert!(matches!(
            u.handle_unit_announce(0, DispatchId([3; 32]), "10.0.0.3:1"),
            Err(UnitError::Limit(_))
        ));
    }
}
