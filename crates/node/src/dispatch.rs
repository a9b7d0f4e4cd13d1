//! The dispatch unit's drivers: the QUIC service that runs
//! `dem_core::dispatch::DispatchUnit` with the wall clock and durable
//! tables, the replication to peer units, and the client hosts and users
//! reach the backbone with. The unit's logic itself is `dem-core`'s.
//!
//! - [`service`]: `DispatchService`, the QUIC server with the wall clock,
//!   durable tables and shutdown;
//! - [`pipeline`]: the unit's side of a lookup pipeline;
//! - [`persist`]: `tables.bin`, written atomically;
//! - [`peers`]: background replication to the other units;
//! - `client`: `DispatchClient`, which hosts and users use to reach any
//!   unit of the backbone (`dem-client`'s, named here for the drivers).

pub use dem_core::dispatch::*;

pub use dem_client::dispatch as client;
pub mod peers;
pub mod persist;
pub mod pipeline;
pub mod service;
