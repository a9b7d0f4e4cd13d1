//! A placement: the hosts chosen for an object, and the epoch.

use serde::{Deserialize, Serialize};

use dem_identity::HostId;

/// An object and the host it should go to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub object: super::objects::ObjectRef,
    pub host: HostId,
    pub addr: String,
}

/// A replica to move for balance: copy the object to `placement.host`,
/// then list it in place of `shed` at the next epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceMove {
    pub placement: Placement,
    pub shed: HostId,
}
