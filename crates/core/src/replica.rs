//! Replication of mailboxes and attachments, sans-IO: the window of recent
//! ops a replica can ship to a peer (`window`), moves that ship only
//! those ops to an older copy (`delta`), the keeper's decisions
//! about a replica set (`keeper`; `attachment` for attachments' replica
//! sets and references), the grace given to copies no listing names
//! (`unlisted`) and what such a copy hands back before it goes
//! (`handback`). Version vectors are data and live in `dem-proto`. The host
//! daemon drives all of it over QUIC; the mailbox actor applies ops.
//!
//! The model (paper §IV-C): every mailbox has R replicas on distinct
//! hosts, any of which serves calls. A mutation runs at the replica that
//! got the call, is stamped there with an `OpId`, logged durably, and
//! pushed to the other replicas, which apply the same op with the same
//! context; the call is acknowledged once W replicas hold it durably.
//! Replicas apply each origin's ops in order, so a `VersionVector` says
//! exactly what a copy has and anti-entropy sends only the difference.

pub mod attachment;
pub mod delta;
pub mod handback;
pub mod keeper;
pub mod unlisted;
pub mod window;

pub use delta::{Delta, DeltaError, DeltaFrame, DeltaReceiver, delta_for, encode_delta};
pub use handback::{HandBack, hand_back, missing_ops};
pub use keeper::{
    Freshness, KeeperPlan, LinkRetry, Member, link_after_failure, link_wanted, plan, plan_fresh,
};
pub use unlisted::UnlistedCopies;
pub use window::{Since, Window};
