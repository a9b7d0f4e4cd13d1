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

/// A handle that makes administrator-ordered changes to a running unit,
/// and speaks to hosts as the unit.
#[derive(Clone)]
pub struct UnitAdmin {
    shared: Arc<Shared>,
    endpoint: dem_net::Endpoint,
}

/// Why the unit could not speak to hosts as itself.
#[derive(Debug, thiserror::Error)]
pub enum UnitSessionError {
    #[error("the unit's key: {0}")]
    Key(#[from] dem_identity::KeyError),
    #[error(transparent)]
    Session(#[from] dem_client::SessionError),
}

impl DispatchService {
    /// The handle for administrator-ordered changes (`monitor::act`).
    pub fn admin(&self) -> UnitAdmin {
        UnitAdmin {
            shared: self.shared.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

impl UnitAdmin {
    /// A client session over the unit's own endpoint, under its key: hosts
    /// answer `Describe` only to a unit of their backbone.
    pub fn session(&self) -> Result<dem_client::Session, UnitSessionError> {
        let (key, _) = dem_identity::Home::new(&self.shared.data_dir)
            .load_or_create_key(dem_identity::KeyRole::Dispatch)?;
        Ok(dem_client::Session::with_endpoint(
            Arc::new(key),
            self.endpoint.clone(),
            Vec::new(),
        )?)
    }

    /// Runs `f` on the unit with the wall clock of now, replicates what it
    /// changed, and waits until that is saved. Returns whether anything
    /// changed (an order already in force changes nothing).
    pub async fn change<E: std::error::Error + 'static>(
        &self,
        f: impl FnOnce(&mut DispatchUnit, u64) -> Result<Vec<Action>, E>,
    ) -> Result<bool, AdminChangeError<E>> {
        let now = now_ms();
        let (result, generation) = self.shared.change(|s| match f(&mut s.unit, now) {
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
            && !self.shared.saved(generation).await
        {
            return Err(AdminChangeError::NotSaved);
        }
        Ok(changed)
    }
}
