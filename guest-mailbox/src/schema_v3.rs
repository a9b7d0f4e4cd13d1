//! The schema-3 state, kept only to decode old snapshots and convert them
//! to schema 4. Schemas 1 and 2 convert to this first (`schema_v1.rs`,
//! `schema_v2.rs`), so they take the same path.
//!
//! Up to schema 3 a mail held its extra headers and its text body in the
//! state. Schema 4 keeps only an index of each mail and names its message
//! by a BLAKE3 hash; the bytes live in the host's blob store beside the
//! mailbox. The conversion writes each old mail out as an RFC 5322
//! message (`render.rs`), names it by its hash, and queues the bytes in
//! `Mailbox::converted` for the host to store (`take-converted`). Every
//! replica converting the same old state writes the same bytes, so they
//! name the same blobs and keep equal digests.
//!
//! What else the conversion decides: an old mail had no References of its
//! own, so they are taken from its last extra `References` header (the
//! last `REFERENCES_MAX` ids that fit `MESSAGE_ID_BYTES_MAX`); old
//! attachments were floating references, never cut from the message, so
//! they keep no splice position; the stored and the exact size are both
//! the rendition's length.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::folder_log::FolderLog;
use crate::hash::{Hash, from_hex};
use crate::limits::{MESSAGE_ID_BYTES_MAX, REFERENCES_MAX};
use crate::lww::LwwMap;
use crate::render::render;
use crate::state::{
    Attachment, ContactRec, Folder, MailboxState, PluginRec, Stamp, StoredMail, TombstoneRec,
};

/// An attachment reference as schemas 1 to 3 kept it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachmentV3 {
    pub hash: String,
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
}

/// A mail as schemas 1 to 3 kept it, headers and body included; field
/// order matters, since snapshots are positional MessagePack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMailV3 {
    pub folder: u32,
    pub uid: u32,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date_ms: i64,
    pub received_ms: i64,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub attachments: Vec<AttachmentV3>,
    pub flags: u8,
    pub keywords: BTreeSet<String>,
    pub spam_score: Option<f32>,
    pub delivered: Stamp,
    pub moved: Stamp,
    pub flag_stamps: BTreeMap<u8, Stamp>,
    pub keyword_stamps: BTreeMap<String, Stamp>,
    /// Schema 3 only; schemas 1 and 2 decode it empty and their
    /// conversion fills it in.
    #[serde(default)]
    pub place: String,
}

/// `MailboxState` as schema 3 laid it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MailboxStateV3 {
    pub mails: BTreeMap<String, StoredMailV3>,
    pub folders: BTreeMap<String, Folder>,
    pub tombstones: BTreeMap<String, TombstoneRec>,
    pub contacts: LwwMap<ContactRec>,
    pub allow: LwwMap<()>,
    pub block: LwwMap<()>,
    pub preferences: LwwMap<String>,
    pub plugins: LwwMap<PluginRec>,
    pub next_uid_validity: u32,
    pub folder_log: FolderLog,
}

/// A schema-4 state converted from an older one, with the messages its
/// mails name, by hash.
pub struct Converted {
    pub state: MailboxState,
    pub messages: BTreeMap<Hash, Vec<u8>>,
}

impl MailboxStateV3 {
    /// Converts to schema 4. Fails only on an attachment hash that is not
    /// 64 lower-case hex digits, which no mailbox build ever accepted.
    pub fn convert(self) -> Result<Converted, String> {
        let mut messages = BTreeMap::new();
        let mut mails = BTreeMap::new();
        // Consumed one by one, so each old body is freed once written out
        // and a large old mailbox is not held twice.
        for (id, old) in self.mails {
            let bytes = render(&old);
            let blob = *blake3::hash(&bytes).as_bytes();
            let size = bytes.len() as u64;
            let mail = StoredMail {
                folder: old.folder,
                uid: old.uid,
                references: references(&old.headers),
                blob,
                blob_bytes: size,
                size_bytes: size,
                attachments: old
                    .attachments
                    .into_iter()
                    .map(|a| {
                        let hash = from_hex(&a.hash).ok_or_else(|| {
                            format!("mail {id:?} has a bad attachment hash {:?}", a.hash)
                        })?;
                        Ok(Attachment {
                            hash,
                            name: a.name,
                            media_type: a.media_type,
                            size_bytes: a.size_bytes,
                            splice_at: None,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                from: old.from,
                to: old.to,
                cc: old.cc,
                subject: old.subject,
                date_ms: old.date_ms,
                received_ms: old.received_ms,
                message_id: old.message_id,
                in_reply_to: old.in_reply_to,
                flags: old.flags,
                keywords: old.keywords,
                spam_score: old.spam_score,
                delivered: old.delivered,
                // Moves are stamped past the delivery, so equal means none.
                last_move: (old.moved != old.delivered).then_some(old.moved),
                flag_stamps: old.flag_stamps,
                keyword_stamps: old.keyword_stamps,
                place: old.place,
            };
            messages.insert(blob, bytes);
            mails.insert(id, mail);
        }
        let state = MailboxState {
            mails: mails.into(),
            folders: self.folders,
            tombstones: self.tombstones,
            contacts: self.contacts,
            allow: self.allow,
            block: self.block,
            preferences: self.preferences,
            plugins: self.plugins,
            next_uid_validity: self.next_uid_validity,
            folder_log: self.folder_log,
        };
        Ok(Converted { state, messages })
    }
}

/// The References of an old mail: the ids in its last `References`
/// header, the last `REFERENCES_MAX` of those that fit.
fn references(headers: &[(String, String)]) -> Vec<String> {
    let Some((_, value)) = headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case("references"))
    else {
        return Vec::new();
    };
    let ids: Vec<&str> = value
        .split_ascii_whitespace()
        .filter(|id| id.len() <= MESSAGE_ID_BYTES_MAX)
        .collect();
    let skip = ids.len().saturating_sub(REFERENCES_MAX);
    ids[skip..].iter().map(|id| id.to_string()).collect()
}

#[cfg(test)]
mod tests;
