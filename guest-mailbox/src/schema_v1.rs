//! The schema-1 state, kept only to decode old snapshots and convert them
//! (to schema 2, which `schema_v2.rs` converts on).
//!
//! Schema 2 added what replicas need to merge concurrent changes: stamps
//! on contacts, allow/block patterns, preferences and plugins (with
//! tombstones for removals), the replica of each mail tombstone, the stamp
//! since which each folder has its name, and the names of deleted or
//! renamed folders. Schema 1 had none of these, so the
//! conversion stamps every entry zero (any stamped write supersedes it),
//! which is also what a replica that replays the same log reaches.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::schema_v2::{FolderV2, MailboxStateV2};
use crate::schema_v3::StoredMailV3;
use crate::state::{ContactRec, PluginRec, Stamp, TombstoneRec};

#[derive(Deserialize)]
struct FolderV1 {
    uid_validity: u32,
    uid_next: u32,
}

#[derive(Deserialize)]
struct TombstoneV1 {
    deleted_ms: i64,
    hlc: u64,
}

/// `MailboxState` as schema 1 laid it out; field order matters, since
/// snapshots are positional MessagePack.
#[derive(Deserialize)]
pub struct MailboxStateV1 {
    mails: BTreeMap<String, StoredMailV3>,
    folders: BTreeMap<String, FolderV1>,
    tombstones: BTreeMap<String, TombstoneV1>,
    contacts: BTreeMap<String, ContactRec>,
    allow: BTreeSet<String>,
    block: BTreeSet<String>,
    preferences: BTreeMap<String, String>,
    plugins: BTreeMap<String, PluginRec>,
    next_uid_validity: u32,
}

impl From<MailboxStateV1> for MailboxStateV2 {
    fn from(v1: MailboxStateV1) -> Self {
        let set = |s: BTreeSet<String>| s.into_iter().map(|p| (p, ())).collect();
        MailboxStateV2 {
            mails: v1.mails,
            folders: v1
                .folders
                .into_iter()
                .map(|(name, f)| {
                    let f = FolderV2 {
                        uid_validity: f.uid_validity,
                        uid_next: f.uid_next,
                        named: Stamp::default(),
                    };
                    (name, f)
                })
                .collect(),
            tombstones: v1
                .tombstones
                .into_iter()
                .map(|(id, t)| {
                    let rec = TombstoneRec {
                        deleted_ms: t.deleted_ms,
                        hlc: t.hlc,
                        replica: 0,
                    };
                    (id, rec)
                })
                .collect(),
            contacts: v1.contacts.into_iter().collect(),
            allow: set(v1.allow),
            block: set(v1.block),
            preferences: v1.preferences.into_iter().collect(),
            plugins: v1.plugins.into_iter().collect(),
            next_uid_validity: v1.next_uid_validity,
            gone_folders: BTreeMap::new(),
        }
    }
}
