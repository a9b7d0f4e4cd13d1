//! The calls a mailbox answers, as data: what a client sends, what the
//! actor queues, and — for mutations — what the operation log records and a
//! replica replays.
//!
//! Each variant maps to one export of the `api` interface. A mutation is
//! logged together with the `OpContext` the host gave it, which is all a
//! replay needs: the guest is deterministic given its arguments.
//!
//! [`verbs`] has one type per call, each tied to the answer it gets, for
//! callers that know what they ask; `Request` and `Response` stay the
//! formats on the wire and in the log.

use serde::{Deserialize, Serialize};

use crate::{OpId, VersionVector};

pub mod verbs;
pub use verbs::{UnexpectedAnswer, Verb};

use crate::mail::{
    Contact, Delivered, FlagState, FolderInfo, GetParts, MailPage, MailRead, MailSummary,
    MailboxStats, NewMail, OpContext, Placement, PluginEntry, SearchQuery, SenderList,
    SenderStatus, Tombstone,
};

/// One call on a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Files a mail where the filters decided; the actor builds this from an
    /// incoming mail after running the plugins.
    Deliver {
        mail: NewMail,
        place: Placement,
    },
    ListFolder {
        folder: String,
        offset: u32,
        limit: u32,
    },
    Get {
        id: String,
        parts: GetParts,
    },
    SetFlags {
        id: String,
        add: FlagState,
        remove: FlagState,
    },
    MoveMail {
        id: String,
        folder: String,
    },
    DeleteMail {
        id: String,
    },
    DeleteHistory {
        offset: u32,
        limit: u32,
    },
    Search {
        query: SearchQuery,
        limit: u32,
    },
    CreateFolder {
        name: String,
    },
    RenameFolder {
        name: String,
        new_name: String,
    },
    DeleteFolder {
        name: String,
    },
    ListFolders,
    AddContact {
        contact: Contact,
    },
    RemoveContact {
        address: String,
    },
    ListContacts,
    AddSender {
        which: SenderList,
        pattern: String,
    },
    RemoveSender {
        which: SenderList,
        pattern: String,
    },
    ListSenders {
        which: SenderList,
    },
    ClassifySender {
        address: String,
    },
    SetPreference {
        key: String,
        value: String,
    },
    RemovePreference {
        key: String,
    },
    GetPreference {
        key: String,
    },
    ListPreferences,
    InstallPlugin {
        entry: PluginEntry,
    },
    RemovePlugin {
        name: String,
    },
    ListPlugins,
    Stats,
}

impl Request {
    /// Whether the call changes state, and so must be logged and made durable
    /// before it is acknowledged.
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Request::Deliver { .. }
                | Request::SetFlags { .. }
                | Request::MoveMail { .. }
                | Request::DeleteMail { .. }
                | Request::CreateFolder { .. }
                | Request::RenameFolder { .. }
                | Request::DeleteFolder { .. }
                | Request::AddContact { .. }
                | Request::RemoveContact { .. }
                | Request::AddSender { .. }
                | Request::RemoveSender { .. }
                | Request::SetPreference { .. }
                | Request::RemovePreference { .. }
                | Request::InstallPlugin { .. }
                | Request::RemovePlugin { .. }
        )
    }

    /// The export's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Deliver { .. } => "deliver",
            Request::ListFolder { .. } => "list-folder",
            Request::Get { .. } => "get",
            Request::SetFlags { .. } => "set-flags",
            Request::MoveMail { .. } => "move-mail",
            Request::DeleteMail { .. } => "delete-mail",
            Request::DeleteHistory { .. } => "delete-history",
            Request::Search { .. } => "search",
            Request::CreateFolder { .. } => "create-folder",
            Request::RenameFolder { .. } => "rename-folder",
            Request::DeleteFolder { .. } => "delete-folder",
            Request::ListFolders => "list-folders",
            Request::AddContact { .. } => "add-contact",
            Request::RemoveContact { .. } => "remove-contact",
            Request::ListContacts => "list-contacts",
            Request::AddSender { .. } => "add-sender",
            Request::RemoveSender { .. } => "remove-sender",
            Request::ListSenders { .. } => "list-senders",
            Request::ClassifySender { .. } => "classify-sender",
            Request::SetPreference { .. } => "set-preference",
            Request::RemovePreference { .. } => "remove-preference",
            Request::GetPreference { .. } => "get-preference",
            Request::ListPreferences => "list-preferences",
            Request::InstallPlugin { .. } => "install-plugin",
            Request::RemovePlugin { .. } => "remove-plugin",
            Request::ListPlugins => "list-plugins",
            Request::Stats => "stats",
        }
    }
}

/// A mailbox's answer to one `Request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Delivered(Delivered),
    Page(MailPage),
    Detail(Box<MailRead>),
    Flags(FlagState),
    Uid(u32),
    Done,
    Tombstones(Vec<Tombstone>),
    Summaries(Vec<MailSummary>),
    Folder(FolderInfo),
    Folders(Vec<FolderInfo>),
    Contacts(Vec<Contact>),
    Senders(Vec<String>),
    SenderStatus(SenderStatus),
    Preference(Option<String>),
    Preferences(Vec<(String, String)>),
    Plugins(Vec<PluginEntry>),
    Stats(MailboxStats),
}

impl Response {
    /// The variant's name, for errors about an answer nobody expected.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Delivered(_) => "Delivered",
            Response::Page(_) => "Page",
            Response::Detail(_) => "Detail",
            Response::Flags(_) => "Flags",
            Response::Uid(_) => "Uid",
            Response::Done => "Done",
            Response::Tombstones(_) => "Tombstones",
            Response::Summaries(_) => "Summaries",
            Response::Folder(_) => "Folder",
            Response::Folders(_) => "Folders",
            Response::Contacts(_) => "Contacts",
            Response::Senders(_) => "Senders",
            Response::SenderStatus(_) => "SenderStatus",
            Response::Preference(_) => "Preference",
            Response::Preferences(_) => "Preferences",
            Response::Plugins(_) => "Plugins",
            Response::Stats(_) => "Stats",
        }
    }
}

/// One entry of the operation log: a mutation and the context it ran with.
///
/// `seq` numbers the ops made at the replica `ctx.replica` for this
/// mailbox, from 1; with it the op's identity is an [`OpId`]. Logs written
/// before replication have no `seq` (0): such an op is the next of its
/// origin when replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub ctx: OpContext,
    pub request: Request,
    #[serde(default)]
    pub seq: u64,
}

impl Op {
    /// The op's identity, given what was applied before it (for ops
    /// without a `seq`).
    pub fn id_after(&self, applied: &VersionVector) -> OpId {
        if self.seq == 0 {
            applied.next_of(self.ctx.replica)
        } else {
            OpId {
                origin: self.ctx.replica,
                seq: self.seq,
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("an Op always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Where a mailbox went: the forwarding answer a host gives after a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedTo {
    /// The new holder's host id (hex public key).
    pub host: String,
    /// Its address, `IP:PORT`.
    pub addr: String,
    /// The location epoch of the move.
    pub epoch: u64,
}
