//! Where a leaving host's objects should go.

use serde::{Deserialize, Serialize};

use super::objects::ObjectRef;
use super::placement::Placement;

/// Where the objects of a departing host should go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeparturePlan {
    pub moves: Vec<Placement>,
    /// Objects no live host can take now; ask again later.
    pub unplaced: Vec<ObjectRef>,
}
