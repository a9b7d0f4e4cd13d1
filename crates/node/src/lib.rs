//! The DEM host: runs users' mailbox components and their filter plugins,
//! keeps them durable, snapshots, hibernates, exports and imports them.
//!
//! - `runtime`: wasmtime engine, code store, typed guest calls and limits.
//! - `store`: the redb operation log and snapshots, with group commit.
//! - `mailbox`: the per-mailbox actor and the host-wide registry of them.
//! - `export`: the streamed export/import format a migration sends.
//! - `attachments`: the content-addressed, chunk-checked attachment store.
//! - `identity`: ed25519 keys, key files, signed envelopes, replay guard,
//!   name claims and mail seals.
//! - `net`: QUIC transport (quinn, rustls) with self-signed ed25519
//!   certificates pinned by key, ALPN `dem/1`, length-prefixed frames.
//! - `dispatch`: the dispatch unit's tables, placement, epochs and
//!   replication, sans-IO.
//! - `node`: the host daemon: join, lease, serve owners, mail and
//!   attachments.
//! - `replica`: version vectors, the op window and the keeper's replica
//!   set decisions, sans-IO.
//! - `client`: `MailboxRef` and the user side of the network.
//! - `cli`: the `dem` command line.

pub use dem_store::attachments;
pub use dem_builtin as builtin;
pub mod cli;
pub use dem_client as client;
pub mod dispatch;
pub use dem_proto::export;
pub use dem_identity as identity;
pub use dem_proto::ids;
pub mod mailbox;
pub use dem_net as net;
pub mod node;
pub use dem_proto as proto;
pub mod replica;
pub use dem_runtime as runtime;
pub use dem_store as store;
