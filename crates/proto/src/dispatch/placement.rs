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
