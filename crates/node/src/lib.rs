//! The DEM host daemon and dispatch service: the drivers that carry out
//! what `dem-core` decides, with tokio, `dem-net`'s QUIC, `dem-store`'s redb
//! and `dem-runtime`'s wasmtime.
//!
//! - [`mailbox`]: the per-mailbox actor (one tokio task per mailbox) and
//!   the host-wide registry of them; the filter pipeline; the hybrid
//!   logical clock.
//! - [`node`]: the host daemon: join, lease, serve owners, sealed mail,
//!   attachments, replication, migrations, leave.
//! - [`dispatch`]: the dispatch service that runs
//!   `dem_core::dispatch::DispatchUnit` over QUIC, and its peers.
//! - [`logs`]: collected logs: the layer that catches a process's events,
//!   a host's shipping to the units, a unit's ring of them.
//! - [`monitor`]: a dispatch unit's HTTP listener: the monitor page, its
//!   JSON API (status, events, inspect) and the admin token.
//! - [`replica`]: dem-core's replica decisions and dem-proto's version
//!   vectors under one name, for the drivers.

pub mod dispatch;
pub mod http;
pub mod logs;
pub mod mailbox;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod replica;
