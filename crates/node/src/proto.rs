//! The wire protocol `dem/1`: what clients, hosts and dispatch units say to
//! each other. Only data and limits here, no I/O: `net` moves the frames,
//! the dispatch service and the host daemon answer them.
//!
//! One bidirectional QUIC stream carries one request frame and its answer
//! frame (`Result<Response, WireError>`); transfers (a migrating mailbox's
//! export frames, attachment chunks) follow on the same stream as further
//! frames. The connection's TLS client certificate names the peer's key, so
//! a host or dispatch unit talking for itself needs no other signature;
//! anything done on behalf of a user carries that user's signature.

pub use dem_proto::dispatch;
pub mod host;
pub use dem_proto::mail;

pub use dispatch::{DispatchRequest, DispatchResponse};
pub use host::{CreateOrder, HostRequest, HostResponse, MoveOrder, OwnerCall, SignedMail};

/// Largest request or answer frame other than transfer chunks.
pub const MESSAGE_BYTES_MAX: usize = 36 << 20;
/// Largest status answer (it lists every host, user and attachment).
pub const STATUS_BYTES_MAX: usize = 16 << 20;
