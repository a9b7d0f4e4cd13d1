//! Replication, as the node sees it: dem-core's decisions (keeper, op
//! window, delta moves, unlisted copies) and dem-proto's version vectors
//! under one name. The drivers are `node::sync`, `node::keeper` and
//! `node::delta_move`.

pub use dem_core::replica::*;
pub use dem_proto::vv::{self, Fit, OpId, VV_ORIGINS_MAX, VersionVector};
