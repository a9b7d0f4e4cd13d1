//! The DEM host: runs users' mailbox components and their filter plugins,
//! keeps them durable, snapshots, hibernates, exports and imports them.
//!
//! - `runtime`: wasmtime engine, code store, guest bindings and limits.
//! - `store`: the redb operation log and snapshots, with group commit.
//! - `mailbox`: the per-mailbox actor and the host-wide registry of them.
//! - `export`: the streamed export/import format a migration sends.
//! - `attachments`: the content-addressed, chunk-checked attachment store.
//! - `cli`: the `dem` command line.

pub mod attachments;
pub mod builtin;
pub mod cli;
pub mod export;
pub mod ids;
pub mod mailbox;
pub mod runtime;
pub mod store;
