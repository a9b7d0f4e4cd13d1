//! The network's replication settings (R and W), changeable while it runs.
//!
//! Each unit starts with the R and W it was configured with. An
//! administrator may set new ones for the whole network (`dem admin
//! replication`, behind the admin token): the unit that takes the order
//! records them in its tables, stamped with its clock, and they replicate
//! like any record, the latest stamp winning. Hosts learn them from every
//! lease answer, and their keepers add or trim replicas to match; so a
//! change reaches the data within a heartbeat and a few keeper rounds.

pub use dem_proto::dispatch::tables::NetworkSettings;

use super::updates::Update;
use super::{Action, DispatchUnit};

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// R is zero or above the hosts an object may list.
    #[error("R = {replicas} is out of range 1..={max}")]
    Replicas { replicas: usize, max: usize },
    /// W is zero or above R.
    #[error("W = {write_quorum} is out of range 1..=R ({replicas})")]
    WriteQuorum {
        write_quorum: usize,
        replicas: usize,
    },
}

/// Checks `1 ≤ W ≤ R ≤ max`.
pub fn check(replicas: usize, write_quorum: usize, max: usize) -> Result<(), SettingsError> {
    if replicas == 0 || replicas > max {
        return Err(SettingsError::Replicas { replicas, max });
    }
    if write_quorum == 0 || write_quorum > replicas {
        return Err(SettingsError::WriteQuorum {
            write_quorum,
            replicas,
        });
    }
    Ok(())
}

impl DispatchUnit {
    /// R in force: the network's setting, else this unit's configuration.
    pub fn replicas(&self) -> usize {
        self.tables
            .settings
            .map_or(self.limits.replicas, |s| s.replicas)
    }

    /// W in force, like [`Self::replicas`].
    pub fn write_quorum(&self) -> usize {
        self.tables
            .settings
            .map_or(self.limits.write_quorum, |s| s.write_quorum)
    }

    /// Sets R and W for the network at `now_ms`. Precondition: the driver
    /// has checked that an administrator ordered it.
    pub fn set_replication(
        &mut self,
        now_ms: u64,
        replicas: usize,
        write_quorum: usize,
    ) -> Result<Vec<Action>, SettingsError> {
        check(replicas, write_quorum, self.limits.max_hosts_per_object)?;
        // Strictly later than what is in force, so an order taken on a unit
        // whose clock lags still wins over the previous one.
        let set_ms = self
            .tables
            .settings
            .map_or(now_ms, |s| now_ms.max(s.set_ms.saturating_add(1)));
        let settings = NetworkSettings {
            replicas,
            write_quorum,
            set_ms,
        };
        if !merge(&mut self.tables.settings, settings) {
            return Ok(Vec::new());
        }
        tracing::info!(replicas, write_quorum, "network replication set");
        Ok(vec![Action::Replicate(Update::Settings(settings))])
    }
}

/// Merges `incoming` into `current` by [`NetworkSettings::version`];
/// whether it changed.
pub(crate) fn merge(current: &mut Option<NetworkSettings>, incoming: NetworkSettings) -> bool {
    if current.is_some_and(|c| c.version() >= incoming.version()) {
        return false;
    }
    *current = Some(incoming);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testutil::*;

    #[test]
    fn bounds_are_checked() {
        let mut u = unit();
        let max = u.limits.max_hosts_per_object;
        assert!(matches!(
            u.set_replication(1, 0, 0),
            Err(SettingsError::Replicas { .. })
        ));
        assert!(matches!(
            u.set_replication(1, max + 1, 1),
            Err(SettingsError::Replicas { .. })
        ));
        assert!(matches!(
            u.set_replication(1, 3, 4),
            Err(SettingsError::WriteQuorum { .. })
        ));
        assert!(matches!(
            u.set_replication(1, 3, 0),
            Err(SettingsError::WriteQuorum { .. })
        ));
        assert_eq!(u.replicas(), u.limits.replicas, "nothing was set");
    }

    #[test]
    fn a_setting_replicates_and_the_latest_wins_on_every_unit() {
        let mut a = unit();
        let mut b = blank();
        assert_eq!(a.replicas(), crate::dispatch::limits::REPLICAS);
        let first = updates(&a.set_replication(100, 5, 3).unwrap());
        assert_eq!((a.replicas(), a.write_quorum()), (5, 3));
        // An order on a unit whose clock lags still wins.
        let second = updates(&a.set_replication(50, 2, 1).unwrap());
        assert_eq!((a.replicas(), a.write_quorum()), (2, 1));
        // Delivered out of order, with a duplicate: the same result.
        for u in second.iter().chain(&first).chain(&second) {
            b.apply_update(0, u.clone()).unwrap();
        }
        assert_eq!((b.replicas(), b.write_quorum()), (2, 1));
        // A snapshot carries it to a new unit.
        let c =
            DispatchUnit::from_snapshot(b.id(), crate::dispatch::Limits::default(), &b.snapshot())
                .unwrap();
        assert_eq!((c.replicas(), c.write_quorum()), (2, 1));
        // A peer cannot plant an out-of-range setting.
        let bad = Update::Settings(NetworkSettings {
            replicas: 0,
            write_quorum: 0,
            set_ms: u64::MAX,
        });
        assert!(b.apply_update(0, bad).is_err());
        assert_eq!(b.replicas(), 2);
    }
}
