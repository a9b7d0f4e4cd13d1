//! DEM's wire protocol as data: what clients, hosts and dispatch units say
//! to each other, and the formats a mailbox travels in. No I/O happens
//! here (the crate cannot name tokio, quinn, redb or wasmtime): `dem-net`
//! moves the frames, `dem-core` decides, `dem-node` drives.
//!
//! One bidirectional QUIC stream carries one request frame and its answer
//! frame (`Result<Response, WireError>`); transfers (a migrating mailbox's
//! export frames, attachment chunks) follow on the same stream as further
//! frames. The connection's TLS client certificate names the peer's key, so
//! a host or dispatch unit talking for itself needs no other signature;
//! anything done on behalf of a user carries that user's signature.
//!
//! - [`ids`]: mailbox, mail and code ids;
//! - [`attachment`]: the one attachment id, BLAKE3 of the content;
//! - [`vv`]: version vectors and op ids;
//! - [`error`]: the error a server answers with;
//! - [`mail`]: the records of the mailbox's WIT interface, as plain data;
//! - [`mailbox`]: one call on a mailbox and its answer, as the op log
//!   records it and a replica replays it, and one typed verb per call
//!   (`mailbox::verbs`);
//! - [`host`]: what hosts are asked and answer: owner calls, sealed mail,
//!   migrations, replication, attachments;
//! - [`dispatch`]: what dispatch units are asked and answer, and their tables;
//! - [`logs`]: collected log events and the filter that reads them;
//! - [`export`]: the streamed export format a migration sends, and its
//!   sans-IO `Importer`.

pub mod attachment;
pub mod dispatch;
pub mod error;
pub mod export;
pub mod host;
pub mod ids;
pub mod logs;
pub mod mail;
pub mod mailbox;
pub mod vv;

pub use attachment::{ATTACHMENT_ID_HEX_LEN, AttachmentId, AttachmentIdError};
pub use dem_identity::{DispatchId, Epoch, HostId, UserId};
pub use dispatch::{DispatchRequest, DispatchResponse};
pub use error::{ErrorCode, WireError};
pub use host::{CreateOrder, HostRequest, HostResponse, MoveOrder, OwnerCall, SignedMail};
pub use ids::{CodeHash, IdError, MailboxId};
pub use vv::{Fit, OpId, VV_ORIGINS_MAX, VersionVector};

/// Largest request or answer frame other than transfer chunks.
pub const MESSAGE_BYTES_MAX: usize = 36 << 20;
/// Largest status answer (it lists every host, user and attachment).
pub const STATUS_BYTES_MAX: usize = 16 << 20;
