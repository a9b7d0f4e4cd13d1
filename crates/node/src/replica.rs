//! Replication of mailboxes, sans-IO: version vectors (`vv`), the window of
//! recent ops a replica can ship to a peer (`window`), moves
//! that ship only those ops to an older copy (`delta`), and the keeper's
//! decisions about a replica set (`keeper`; `attachment` for attachments'
//! replica sets and references). The host daemon (`node::sync`,
//! `node::keeper`) drives them over QUIC; the mailbox actor applies ops.
//!
//! The model (paper §IV-C): every mailbox has R replicas on
//! distinct hosts, any of which serves calls. A mutation runs at the replica
//! that got the call, is stamped there with an [`OpId`], logged durably, and
//! pushed to the other replicas, which apply the same op with the same
//! context; the call is acknowledged once W replicas hold it durably.
//! Replicas apply each origin's ops in order, so a [`VersionVector`] says
//! exactly what a copy has and anti-entropy sends only the difference.

pub mod delta;
pub use dem_proto::vv;

pub use delta::{Delta, DeltaError, DeltaFrame, DeltaReceiver, delta_for, encode_delta};
pub use dem_core::replica::*;
pub use vv::{Fit, OpId, VV_ORIGINS_MAX, VersionVector};
