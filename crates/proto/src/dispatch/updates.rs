//! Replicated updates, as data: what one unit sends its peers.

use serde::{Deserialize, Serialize};

use dem_identity::{DispatchId, Epoch, HostId, UserId};

use super::objects::ObjectRef;
use super::tables::{HostRecord, MoveGrant, NameRecord, NetworkSettings, UnitRecord};
use crate::AttachmentId;

/// A replicated change. Conflicts are settled by the merge orders of
/// [`super::tables`]: higher epochs win; at equal epochs the
/// lexicographically larger host list wins; names go to the smaller
/// `(issued_ms, user)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// A host joined, heartbeat, started leaving or left: the whole record,
    /// whose `epoch` (session) and `state` say which.
    Host { host: HostId, record: HostRecord },
    /// A name was registered.
    NameRegistered { name: String, record: NameRecord },
    /// A mailbox is held by `hosts` from `epoch` on (empty only at epoch 0:
    /// placed but not yet confirmed).
    MailboxLocated {
        user: UserId,
        hosts: Vec<HostId>,
        epoch: Epoch,
    },
    /// A user's home host changed.
    MailboxHome {
        user: UserId,
        home: Option<HostId>,
        set_ms: u64,
    },
    /// An attachment is held by `hosts` from `epoch` on.
    AttachmentLocated {
        id: AttachmentId,
        hosts: Vec<HostId>,
        size_bytes: u64,
        epoch: Epoch,
    },
    /// An attachment was removed at `epoch` (a location with no hosts).
    AttachmentRemoved {
        id: AttachmentId,
        size_bytes: u64,
        epoch: Epoch,
    },
    /// Some mail may reference an attachment until `until_ms` (its
    /// reference lease, renewed; the later expiry wins).
    AttachmentReferenced { id: AttachmentId, until_ms: u64 },
    /// `target` may report holding `object` (a placement was handed out).
    MoveAuthorized {
        object: ObjectRef,
        target: HostId,
        grant: MoveGrant,
    },
    /// A dispatch unit announced itself.
    Unit {
        unit: DispatchId,
        record: UnitRecord,
    },
    /// An administrator set the network's R and W.
    Settings(NetworkSettings),
}
