//! Changes an administrator orders through the unit's HTTP listener
//! (`monitor::act`): drain a host, set R and W for the network.
//!
//! They go through the same path as a request that changes the tables —
//! under the lock, replicated to the peer units, answered only once saved
//! — so an order is as durable as anything a host asked for. Who may order
//! them is the listener's business (the admin token); this handle only
//! carries them out.

use std::sync::Arc;

use super::{DispatchService, Shared, now_ms};
use crate::dispatch::{Action, DispatchUnit, Update};

/// Why an ordered change did not take.
#[derive(Debug, thiserror::Error)]
pub enum AdminChangeError<E: std::error::Error + 'static> {
    /// The unit refused it (unknown host, out-of-range setting, …).
    #[error(transparent)]
    Refused(E),
    /// It was made but not saved within `PERSIST_WAIT`: it may or may not
    /// survive a restart of this unit (its peers have it).
    #[error("the change was made but not saved in time; check again")]
    NotSaved,
}

/// A handle that makes administrator-ordered changes to a running unit.
#[derive(Clone)]
pub struct UnitAdmin(Arc<Shared>);

impl DispatchService {
    /// The handle for administrator-ordered changes (`monitor::act`).
    pub fn admin(&self) -> UnitAdmin {
        UnitAdmin(self.shared.clone())
    }
}

impl UnitAdmin {
    /// Runs `f` on the unit with the wall clock of now, replicates what it
    /// changed, and waits until that is saved. Returns whether anything
    /// changed (an order already in force changes nothing).
    pub async fn change<E: std::error::Error + 'static>(
        &self,
        f: impl FnOnce(&mut DispatchUnit, u64) -> Result<Vec<Action>, E>,
    ) -> Result<bool, AdminChangeError<E>> {
        let now = now_ms();
        let (result, generation) = self.0.change(|s| match f(&mut s.unit, now) {
            Ok(actions) => {
                let updates: Vec<Update> =
                    actions.into_iter().map(|Action::Replicate(u)| u).collect();
                let changed = !updates.is_empty();
                (Ok(changed), updates, changed)
            }
            Err(e) => (Err(e), Vec::new(), false),
        });
        let changed = result.map_err(AdminChangeError::Refused)?;
        if let Some(generation) = generation
            && !self.0.saved(generation).await
        {
            return Err(AdminChangeError::NotSaved);
        }
        Ok(changed)
    }
}
