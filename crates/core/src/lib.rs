//! DEM's decisions, sans-IO: the dispatch unit's tables, placement, epochs
//! and move grants; replica decisions; the steps of a migration. Nothing
//! here reads a clock, touches a socket or a disk, or runs a guest: this
//! crate cannot name tokio, quinn, redb or wasmtime (the layer check in
//! `scripts/layers.py` refuses it). Inputs come in as calls that take
//! `now_ms`; what to do comes back as return values and actions, which
//! `dem-node` carries out.
//!
//! - [`dispatch`]: the dispatch unit;
//! - [`logs`]: the unit's bounded ring of collected log events;
//! - [`replica`]: replica sets, the op window, copies no listing names;
//! - [`migration`]: the steps of a mailbox move, source and target.

pub mod dispatch;
pub mod logs;
pub mod migration;
pub mod replica;
