//! DEM's wire protocol as data: what clients, hosts and dispatch units say
//! to each other, and the formats a mailbox travels in. No I/O happens
//! here (the crate cannot name tokio, quinn, redb or wasmtime): `dem-net`
//! moves the frames, `dem-core` decides, `dem-node` drives.
//!
//! - [`ids`]: mailbox, mail and code ids;
//! - [`attachment`]: the one attachment id, BLAKE3 of the content;
//! - [`error`]: the error a server answers with;
//! - [`dispatch`]: what dispatch units are asked and answer, and their tables;
//! - [`mail`]: the records of the mailbox's WIT interface, as plain data;
//! - [`mailbox`]: one call on a mailbox and its answer, as the op log
//!   records it and a replica replays it;
//! - [`vv`]: version vectors and op ids.

pub mod attachment;
pub mod dispatch;
pub mod error;
pub mod ids;
pub mod mail;
pub mod mailbox;
pub mod vv;

pub use attachment::{ATTACHMENT_ID_HEX_LEN, AttachmentId, AttachmentIdError};
pub use dem_identity::{DispatchId, Epoch, HostId, UserId};
pub use error::WireError;
pub use ids::{CodeHash, IdError, MailboxId};
pub use vv::{Fit, OpId, VV_ORIGINS_MAX, VersionVector};
