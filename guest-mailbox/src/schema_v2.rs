//! The schema-2 state, kept only to decode old snapshots and convert them
//! (to schema 3, which `schema_v3.rs` converts on).
//!
//! Schema 3 replaced schema 2's per-name records of deleted and renamed
//! folders (and each folder's "named since" stamp) with the whole folder
//! history (`folder_log.rs`), and records on each mail the folder its
//! placement named. The conversion starts the history from the folders
//! as they are, and names each mail's current folder as its placement,
//! which is where a replay of nothing new leaves them. The old records of
//! gone folders are dropped: a change made before the upgrade that
//! arrives after it treats those names as never known.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::folder_log::FolderLog;
use crate::lww::LwwMap;
use crate::schema_v3::{MailboxStateV3, StoredMailV3};
use crate::state::{ContactRec, Folder, PluginRec, Stamp, TombstoneRec};

#[derive(Deserialize)]
pub struct FolderV2 {
    pub uid_validity: u32,
    pub uid_next: u32,
    #[allow(dead_code)]
    pub named: Stamp,
}

#[derive(Deserialize)]
pub struct GoneFolderV2 {
    #[allow(dead_code)]
    pub stamp: Stamp,
    #[allow(dead_code)]
    pub renamed_to: Option<String>,
}

/// `MailboxState` as schema 2 laid it out; field order matters, since
/// snapshots are positional MessagePack. Its mails lack the trailing
/// `place`, which decodes empty.
#[derive(Deserialize)]
pub struct MailboxStateV2 {
    pub mails: BTreeMap<String, StoredMailV3>,
    pub folders: BTreeMap<String, FolderV2>,
    pub tombstones: BTreeMap<String, TombstoneRec>,
    pub contacts: LwwMap<ContactRec>,
    pub allow: LwwMap<()>,
    pub block: LwwMap<()>,
    pub preferences: LwwMap<String>,
    pub plugins: LwwMap<PluginRec>,
    pub next_uid_validity: u32,
    #[allow(dead_code)]
    pub gone_folders: BTreeMap<String, GoneFolderV2>,
}

impl From<MailboxStateV2> for MailboxStateV3 {
    fn from(v2: MailboxStateV2) -> Self {
        let names: BTreeMap<u32, String> = v2
            .folders
            .iter()
            .map(|(n, f)| (f.uid_validity, n.clone()))
            .collect();
        let mut mails = v2.mails;
        for m in mails.values_mut() {
            if let Some(n) = names.get(&m.folder) {
                m.place = n.clone();
            }
        }
        let folder_log = FolderLog {
            base: v2.folders.keys().cloned().collect(),
            ops: Default::default(),
            filed: Default::default(),
        };
        MailboxStateV3 {
            mails,
            folders: v2
                .folders
                .into_iter()
                .map(|(n, f)| {
                    let f = Folder {
                        uid_validity: f.uid_validity,
                        uid_next: f.uid_next,
                    };
                    (n, f)
                })
                .collect(),
            tombstones: v2.tombstones,
            contacts: v2.contacts,
            allow: v2.allow,
            block: v2.block,
            preferences: v2.preferences,
            plugins: v2.plugins,
            next_uid_validity: v2.next_uid_validity,
            folder_log,
        }
    }
}
