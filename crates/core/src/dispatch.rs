//! The dispatch unit's core logic, sans-IO.
//!
//! In DEM (paper sections IV and V) a dispatch unit keeps the list of live
//! hosts and maps user ids and attachment ids to the hosts that hold them;
//! it is the match-maker that finds a new host when a mailbox or attachment
//! must move, and several units replicate their tables to one another.
//!
//! Like quinn-proto, this module does no I/O and reads no clock: every input
//! is a `handle_*`/service call that takes `now_ms`, and everything to send
//! comes back as a return value or as [`Action`]s. A driver runs it over the
//! network, verifies signatures before calling in (each method documents
//! what the caller must have checked) and persists [`DispatchUnit::snapshot`].
//!
//! - [`limits`]: named limits and timings;
//! - [`objects`]: mailbox and attachment ids;
//! - [`tables`]: the serialisable tables and their merge rules;
//! - [`hosts`]: join, heartbeat, leave, and peer units;
//! - [`names`]: first-come name registration and lookups;
//! - [`placement`]: choosing hosts for new objects, copies and moves;
//! - [`departure`]: where a leaving host's objects should go;
//! - [`rebalance`]: shedding replicas from the most loaded hosts;
//! - [`settings`]: R and W for the network, set at run time;
//! - [`location`]: authenticated location and home updates;
//! - [`references`]: attachment reference leases (garbage collection);
//! - [`updates`]: replicated updates and how a unit applies them;
//! - [`snapshot`]: copying and reconciling whole tables, and the
//!   convergence tests;
//! - [`status`]: the `dem admin status` view;
//! - [`error`]: typed errors per family of operations.
//!
//! The driver, which does I/O:
//!
//! - [`handle`]: one request in, one answer out: caller identity, user
//!   signatures, replays and input bounds, then the call into the unit;
//! - [`service`]: `DispatchService`, the QUIC server with the wall clock,
//!   durable tables and shutdown;
//! - [`persist`]: `tables.bin`, written atomically;
//! - [`peers`]: background replication to the other units;
//! - [`client`]: `DispatchClient`, which hosts and users use to reach any
//!   unit of the backbone.

pub mod admission;
pub mod departure;
pub mod error;
pub mod handle;
pub mod hosts;
pub mod limits;
pub mod location;
pub mod names;
pub mod placement;
pub mod rebalance;
pub mod references;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod tables;
pub mod updates;
mod validate;

pub use dem_proto::dispatch::{
    AttachmentLookup, DeparturePlan, HostAddr, MailboxLookup, ObjectRef, Placement, Registration,
    StatusView, Update, objects,
};
pub use dem_proto::{AttachmentId, AttachmentIdError};
pub use error::{
    AddrError, HostError, HostListError, LocationError, LookupError, NameError, NameFormatError,
    PlacementError, RecordClaimError, UnitError, UpdateError,
};
pub use limits::{LimitExceeded, Limits};
pub use snapshot::{MergeReport, updates_of};
pub use tables::{
    AttachmentRecord, DispatchTables, HostRecord, HostState, MailboxRecord, MoveGrant, NameRecord,
    UnitRecord,
};

use dem_identity::DispatchId;

/// Something the driver must do on the unit's behalf.
///
/// Exhaustive on purpose: a new action must fail to compile in every
/// driver until the driver carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this update to every peer unit (which applies it with
    /// [`DispatchUnit::apply_update`]).
    Replicate(Update),
}

/// One dispatch unit: its identity, limits and tables.
#[derive(Clone, Debug)]
pub struct DispatchUnit {
    id: DispatchId,
    limits: Limits,
    tables: DispatchTables,
    /// Replicas being moved away by [`rebalance`]: volatile, as the
    /// grants they pair with lapse within a minute.
    shedding: rebalance::Shedding,
}

impl DispatchUnit {
    /// A unit with empty tables that knows itself at `addr` (`IP:PORT`).
    pub fn new(now_ms: u64, id: DispatchId, addr: &str) -> Result<Self, UnitError> {
        Self::with_limits(now_ms, id, addr, Limits::default())
    }

    /// [`DispatchUnit::new`] with other table limits (tests, small networks).
    pub fn with_limits(
        now_ms: u64,
        id: DispatchId,
        addr: &str,
        limits: Limits,
    ) -> Result<Self, UnitError> {
        let mut unit = DispatchUnit {
            id,
            limits,
            tables: DispatchTables::default(),
            shedding: Default::default(),
        };
        unit.handle_unit_announce(now_ms, id, addr)?;
        Ok(unit)
    }

    /// A unit restarted from, or started as a copy of, `tables`. The tables
    /// are checked record by record as if replicated, so a corrupt or
    /// oversized snapshot is refused instead of trusted.
    pub fn from_snapshot(
        id: DispatchId,
        limits: Limits,
        tables: &DispatchTables,
    ) -> Result<Self, UpdateError> {
        let mut unit = DispatchUnit {
            id,
            limits,
            tables: DispatchTables::default(),
            shedding: Default::default(),
        };
        let report = unit.merge_snapshot(tables);
        match report.refused.into_iter().next() {
            Some(err) => Err(err),
            None => Ok(unit),
        }
    }

    /// A copy of the tables, to persist or to give to a new unit.
    pub fn snapshot(&self) -> DispatchTables {
        self.tables.clone()
    }

    pub fn tables(&self) -> &DispatchTables {
        &self.tables
    }

    pub fn id(&self) -> DispatchId {
        self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

#[cfg(any(test, feature = "testutil"))]
pub mod testutil {
    //! Shared fixtures for the unit tests of the submodules, and of the
    //! drivers' tests in other crates (feature `testutil`).
    use super::*;
    use dem_identity::{HostId, UserId};

    pub fn host(b: u8) -> HostId {
        HostId([b; 32])
    }

    pub fn user(b: u8) -> UserId {
        UserId([b; 32])
    }

    pub fn unit() -> DispatchUnit {
        DispatchUnit::new(0, DispatchId([0xd0; 32]), "10.0.0.1:4000").unwrap()
    }

    pub fn addr(b: u8) -> String {
        format!("10.0.1.{b}:4433")
    }

    /// A unit with hosts 1..=n joined at `now` with capacity 10 and load 0.
    pub fn unit_with_hosts(now: u64, n: u8) -> DispatchUnit {
        let mut u = unit();
        for b in 1..=n {
            u.handle_join(now, host(b), &addr(b), 10, 0).unwrap();
        }
        u
    }

    /// A unit with empty tables, not even its own unit record.
    pub fn blank() -> DispatchUnit {
        DispatchUnit::from_snapshot(
            DispatchId([0xee; 32]),
            Limits::default(),
            &DispatchTables::default(),
        )
        .unwrap()
    }

    /// An attachment id made of the byte `b`.
    pub fn att(b: u8) -> AttachmentId {
        format!("{b:02x}").repeat(32).parse().unwrap()
    }

    /// Records user `who`'s mailbox as held by `hosts` at epoch 1.
    pub fn located(u: &mut DispatchUnit, who: u8, hosts: Vec<HostId>) {
        let rec = super::tables::MailboxRecord {
            hosts,
            epoch: dem_identity::Epoch(1),
            ..Default::default()
        };
        u.tables.mailboxes.insert(user(who), rec);
    }

    /// All replicated updates among `actions`.
    pub fn updates(actions: &[Action]) -> Vec<Update> {
        actions
            .iter()
            .map(|Action::Replicate(u)| u.clone())
            .collect()
    }
}
