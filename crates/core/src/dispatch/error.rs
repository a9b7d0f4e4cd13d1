//! Typed errors of the dispatch unit, one enum per family of operations, so
//! the driver can answer a host or peer precisely (and tests can match on
//! the exact refusal) instead of passing strings around.

use std::sync::Arc;

use super::limits::LimitExceeded;
use dem_identity::{Epoch, HostId, NameClaimError, UserId};
use dem_proto::AttachmentId;
use dem_proto::dispatch::ObjectRef;

/// A host or unit address that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Longer than [`super::limits::MAX_ADDR_LEN`].
    #[error("address is {len} bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    /// Not an `IP:PORT` socket address.
    #[error("address {addr:?} is not IP:PORT")]
    NotSocketAddr { addr: String },
}

/// An operator label that cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an operator label is 1 to {max} printable characters")]
pub struct OperatorError {
    pub max: usize,
}

/// A malformed user name: the rule is `identity::name`'s.
pub use dem_identity::name::NameError as NameFormatError;

/// A list of holder hosts that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostListError {
    /// More hosts than [`super::limits::Limits::max_hosts_per_object`].
    #[error("{len} hosts for one object, at most {max} allowed")]
    TooMany { len: usize, max: usize },
    /// The same host listed twice.
    #[error("host {0} listed twice")]
    Duplicate(HostId),
    /// A mailbox must always be somewhere; only attachments can be removed.
    #[error("a mailbox cannot be located nowhere")]
    EmptyMailbox,
}

/// Refusals of join, heartbeat and leave.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The announced address is unusable.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The operator label is unusable.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// Capacity is zero or above [`super::limits::MAX_CAPACITY`].
    #[error("capacity {capacity} out of range 1..={max}")]
    BadCapacity { capacity: u64, max: u64 },
    /// The host never joined (or this unit has not heard of it yet): it
    /// should join.
    #[error("host {0} is not known; join first")]
    UnknownHost(HostId),
    /// The host left; it must join again to start a new session.
    #[error("host {0} has left; join again")]
    HostLeft(HostId),
    /// The host reported leaving complete while the tables still place
    /// objects on it.
    #[error("host {host} still holds {mailboxes} mailboxes and {attachments} attachments")]
    StillHolding {
        host: HostId,
        mailboxes: usize,
        attachments: usize,
    },
    /// The host table is full.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// Refusals of name registration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is not well formed.
    #[error(transparent)]
    Format(#[from] NameFormatError),
    /// Someone else holds the name.
    #[error("name {name:?} is taken by {holder}")]
    Taken { name: String, holder: UserId },
    /// The claim's `issued_ms` is too far from this unit's clock.
    #[error("claim issued at {issued_ms} ms is more than {max_skew_ms} ms from now ({now_ms} ms)")]
    ClaimClock {
        issued_ms: u64,
        now_ms: u64,
        max_skew_ms: u64,
    },
    /// The name table is full.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The claim is dated before 1970.
    #[error("claim issued at {issued_ms} ms, before 1970")]
    BeforeEpoch { issued_ms: i64 },
    /// The signed claim's body is larger than
    /// [`super::limits::MAX_CLAIM_BODY_BYTES`] (the format ignores unknown
    /// fields, so a valid signature alone does not bound it).
    #[error("claim body is {len} bytes, at most {max} allowed")]
    ClaimTooLarge { len: usize, max: usize },
}

/// Refusals of placement, departure plans and move authorization.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No live, active, non-full host that does not already hold a copy.
    #[error("no live host can take {0}")]
    NoLiveHost(ObjectRef),
    /// The host is not in the host table.
    #[error("host {0} is not known")]
    UnknownHost(HostId),
    /// The target host cannot take objects now (offline, leaving or left).
    #[error("host {0} is not live and active")]
    HostNotLive(HostId),
    /// The target host already holds the object.
    #[error("host {host} already holds {object}")]
    AlreadyHolder { host: HostId, object: ObjectRef },
    /// A new mailbox for a user without a registered name.
    #[error("user {0} has no registered name")]
    UnknownUser(UserId),
    /// A "new" object that is already located somewhere.
    #[error("{object} is already placed on {hosts:?}")]
    AlreadyPlaced {
        object: ObjectRef,
        hosts: Vec<HostId>,
    },
    /// The object has no record.
    #[error("{0} is not known")]
    UnknownObject(ObjectRef),
    /// The mailbox or attachment table is full.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// Refusals of location and home updates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The object has no record.
    #[error("{0} is not known")]
    UnknownObject(ObjectRef),
    /// `from` neither holds the object nor has a live grant to move it in.
    #[error("host {from} may not relocate {object}")]
    NotAuthorized { from: HostId, object: ObjectRef },
    /// The offered epoch is not above the current one.
    #[error("stale epoch {offered} for {object}, current is {current}")]
    StaleEpoch {
        object: ObjectRef,
        current: Epoch,
        offered: Epoch,
    },
    /// The offered epoch jumps more than [`super::limits::MAX_EPOCH_STEP`].
    #[error("epoch {offered} for {object} jumps too far past {current}")]
    EpochJump {
        object: ObjectRef,
        current: Epoch,
        offered: Epoch,
    },
    /// The new host list is malformed.
    #[error(transparent)]
    HostList(#[from] HostListError),
    /// A listed host is unknown or has left.
    #[error("host {0} is not a known, present host")]
    UnknownHost(HostId),
    /// The new listing names a host that neither held the object nor was
    /// placed for it by the units (a live grant): no host may list
    /// another that nobody placed there.
    #[error(
        "host {host} may not be listed for {object}: it holds no copy and was not placed for it"
    )]
    NotPlaced { host: HostId, object: ObjectRef },
    /// A grantee reported a location that does not include itself.
    #[error("host {from} moved {object} in but does not list itself")]
    TargetNotListed { from: HostId, object: ObjectRef },
    /// An attachment's removal was refused: its reference lease holds, so
    /// some mail may still reference it.
    #[error("{0} is still referenced and cannot be removed yet")]
    StillReferenced(ObjectRef),
    /// The mailbox table is full (setting a home creates no record, but a
    /// replicated one may).
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// Lookup misses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such registered name.
    #[error("no user named {0:?}")]
    UnknownName(String),
    /// No mailbox record for the user.
    #[error("user {0} has no mailbox")]
    UnknownUser(UserId),
    /// No record for the attachment.
    #[error("attachment {0} is not known")]
    UnknownAttachment(AttachmentId),
    /// The object was placed but no host has confirmed holding it yet.
    #[error("{0} is not placed yet")]
    NotPlaced(ObjectRef),
    /// The attachment was removed.
    #[error("attachment {0} was removed")]
    Removed(AttachmentId),
}

/// Refusals of dispatch unit announcements.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The announced address is unusable.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The unit table is full.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// Refusals of replicated updates and snapshots from peer units.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A replicated address is unusable.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// A replicated operator label is unusable.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A replicated name is malformed.
    #[error(transparent)]
    Name(#[from] NameFormatError),
    /// A replicated host list is malformed.
    #[error(transparent)]
    HostList(#[from] HostListError),
    /// A replicated host record has an out-of-range capacity.
    #[error("capacity {capacity} out of range 1..={max}")]
    BadCapacity { capacity: u64, max: u64 },
    /// A table is full. Units with equal limits only hit this when the
    /// network as a whole is full; the update is dropped on this unit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A replicated R/W setting is out of range.
    #[error(transparent)]
    Settings(#[from] super::settings::SettingsError),
    /// A replicated name record carries a claim that does not check out.
    #[error("name {name:?}: {source}")]
    Claim {
        name: String,
        #[source]
        source: RecordClaimError,
    },
}

/// Why a name record's kept claim is refused: a peer unit must not plant a
/// claim (and so an encryption key) that the holder did not sign.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RecordClaimError {
    /// The body is larger than [`super::limits::MAX_CLAIM_BODY_BYTES`].
    #[error("its claim body is {len} bytes, at most {max} allowed")]
    TooLarge { len: usize, max: usize },
    /// The signature or body is bad, or the claim is not self-signed.
    /// Shared so the error stays `Clone` like the others here.
    #[error("its claim does not verify")]
    Invalid(#[source] Arc<NameClaimError>),
    /// The claim is for another name than the record's.
    #[error("its claim is for the name {claimed:?}")]
    OtherName { claimed: String },
    /// The claim is for another user than the record's holder.
    #[error("its claim is for {claimed}, the record for {holder}")]
    OtherUser { claimed: UserId, holder: UserId },
    /// The claim predates the holder's first claim, which a join of the
    /// holder's records never produces.
    #[error("its claim, at {claim_ms} ms, predates the holder's first claim at {since_ms} ms")]
    BeforeFirst { claim_ms: i64, since_ms: u64 },
}

impl PartialEq for RecordClaimError {
    /// Tests compare refusals; an invalid claim's source has no equality,
    /// so two are equal when they read the same.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Invalid(a), Self::Invalid(b)) => a.to_string() == b.to_string(),
            (Self::TooLarge { len: a, max: m }, Self::TooLarge { len: b, max: n }) => {
                (a, m) == (b, n)
            }
            (Self::OtherName { claimed: a }, Self::OtherName { claimed: b }) => a == b,
            (
                Self::OtherUser {
                    claimed: a,
                    holder: h,
                },
                Self::OtherUser {
                    claimed: b,
                    holder: k,
                },
            ) => (a, h) == (b, k),
            (
                Self::BeforeFirst {
                    claim_ms: a,
                    since_ms: s,
                },
                Self::BeforeFirst {
                    claim_ms: b,
                    since_ms: t,
                },
            ) => (a, s) == (b, t),
            _ => false,
        }
    }
}

impl Eq for RecordClaimError {}
