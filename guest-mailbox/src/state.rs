//! The mailbox state: one versioned serde structure plus derived indices.
//!
//! `MailboxState` is the only thing a snapshot contains. It uses `BTreeMap`
//! and `BTreeSet` throughout so that encoding it is deterministic: the same
//! operations in the same order give byte-identical snapshots, which is how
//! the host checks replays. Replicas may apply concurrent operations in
//! different orders, which changes UIDs but nothing else: they compare
//! `state-digest` (`digest.rs`) instead. `Indices` are derived from the state
//! (listing order, per-folder counters, tombstone age order); they are never
//! serialised and are rebuilt after a restore, so they can change shape
//! between builds without a schema bump.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::folder_log::{FolderLog, Replayed};
use crate::hash::Hash;
use crate::limits::MESSAGE_BYTES_MAX;
use crate::lww::LwwMap;
use crate::mails::{MailHead, Mails};
use crate::names::INBOX;
use crate::snapshot::Restore;
use crate::wit::{MailFlags, OpContext};

/// Orders concurrent changes: hybrid logical clock, then replica id.
/// Field order matters: the derived `Ord` compares `hlc` first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: u64,
    pub replica: u64,
}

impl Stamp {
    pub fn of(ctx: &OpContext) -> Self {
        Stamp {
            hlc: ctx.hlc,
            replica: ctx.replica,
        }
    }
}

/// An attachment reference; the bytes live outside the mailbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// BLAKE3 of the content, raw (see `hash.rs`).
    #[serde(with = "serde_bytes")]
    pub hash: Hash,
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
    /// Where the content goes back into the stored message: a MIME part
    /// body the host cut out verbatim. `None` for a floating reference
    /// that was never part of the message bytes (mail converted from
    /// schema 3 or older).
    pub splice_at: Option<u64>,
}

/// The index entry of one mail; its id is the key in
/// `MailboxState::mails`. The message's bytes are in the host's blob
/// store, named by `blob`. This is the per-mail cost of a snapshot, about
/// 300 bytes for an ordinary mail, so fields stay few and compact: hashes
/// are raw bytes, and nothing derivable from the message is repeated
/// beyond what listing and searching need without reading it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMail {
    /// Id of the folder holding it (the folder's uid-validity, which no
    /// other folder ever gets), so renaming a folder touches no mail.
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
    /// The References message ids, for threading without reading the
    /// message (at most `REFERENCES_MAX`).
    pub references: Vec<String>,
    /// BLAKE3 of the stored message bytes (large parts cut out).
    #[serde(with = "serde_bytes")]
    pub blob: Hash,
    /// Size of the stored message bytes, as the blob store holds them.
    pub blob_bytes: u64,
    /// Size of the exact message, cut parts included (RFC822.SIZE), as the
    /// host reported it.
    pub size_bytes: u64,
    pub attachments: Vec<Attachment>,
    /// `MailFlags` bits.
    pub flags: u8,
    pub keywords: BTreeSet<String>,
    pub spam_score: Option<f32>,
    /// Stamp of the delivery: the implied stamp of every flag and keyword
    /// not changed since, and of the folder until the first move.
    pub delivered: Stamp,
    /// Stamp of the last applied move (last-writer-wins), `None` until
    /// the first: a move's stamp is then `delivered`, and leaving it out
    /// saves some 19 bytes on most mails. Read it with `moved()`.
    pub last_move: Option<Stamp>,
    /// Stamp of the last change of each flag bit, only for flags changed
    /// after delivery (sparse, to keep snapshots small).
    pub flag_stamps: BTreeMap<u8, Stamp>,
    /// Stamp of the last change of each keyword, set or removed, only for
    /// keywords changed after delivery.
    pub keyword_stamps: BTreeMap<String, Stamp>,
    /// The folder the winning placement (the delivery, or the move stamped
    /// `last_move`) named. `folder` is where that leads once the folder history
    /// is replayed (`placement.rs`), so it can be recomputed when a folder
    /// change stamped earlier arrives late.
    pub place: String,
}

impl StoredMail {
    pub fn flags(&self) -> MailFlags {
        MailFlags::from_bits_truncate(self.flags)
    }

    pub fn seen(&self) -> bool {
        self.flags().contains(MailFlags::SEEN)
    }

    /// Stamp of the winning placement: the last move, or the delivery.
    pub fn moved(&self) -> Stamp {
        self.last_move.unwrap_or(self.delivered)
    }

    /// Bytes of the index entry as counted against `MAIL_INDEX_BYTES_MAX`
    /// and `MAILBOX_INDEX_BYTES_MAX`: every string and hash it holds. The
    /// message and attachment contents are not here, only their hashes.
    pub fn index_bytes(&self) -> u64 {
        let strs = |v: &[String]| v.iter().map(String::len).sum::<usize>();
        let n = self.from.len()
            + strs(&self.to)
            + strs(&self.cc)
            + self.subject.len()
            + self.message_id.len()
            + self.in_reply_to.as_ref().map_or(0, String::len)
            + strs(&self.references)
            + self.blob.len()
            + self
                .attachments
                .iter()
                .map(|a| a.hash.len() + a.name.len() + a.media_type.len())
                .sum::<usize>();
        n as u64
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    /// IMAP UIDVALIDITY; doubles as the folder's stable id.
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// A deleted mail. Concurrent deletes of one id keep the earliest by
/// (hlc, replica), so every replica ends with the same record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TombstoneRec {
    pub deleted_ms: i64,
    pub hlc: u64,
    /// Replica of the delete; breaks `hlc` ties (schema 2).
    pub replica: u64,
}

impl TombstoneRec {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            replica: self.replica,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactRec {
    pub name: String,
    /// As the user gave it; the map key is the lower-cased form.
    pub address: String,
    pub note: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginRec {
    pub code_hash: String,
    pub config: String,
    pub order: u32,
}

/// Everything a snapshot holds (schema 5; `schema_v1.rs`, `schema_v2.rs`
/// and `schema_v3.rs` have the older ones, and schema 4 differs only in
/// how `mails` is encoded, see `snapshot/wire.rs`).
/// Changing this struct's shape needs a new schema version and a decode
/// arm in `snapshot.rs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MailboxState {
    /// Each mail decoded only when first read after a restore (`mails.rs`).
    pub mails: Mails,
    /// By canonical name: the folders the history replays to, plus those
    /// holding mails outside it (`placement.rs`). Every folder's parent
    /// exists.
    pub folders: BTreeMap<String, Folder>,
    pub tombstones: BTreeMap<String, TombstoneRec>,
    /// By lower-cased address.
    pub contacts: LwwMap<ContactRec>,
    /// Normalised patterns: `user@domain` or `@domain`, lower case.
    pub allow: LwwMap<()>,
    pub block: LwwMap<()>,
    pub preferences: LwwMap<String>,
    pub plugins: LwwMap<PluginRec>,
    /// Next uid-validity to hand out; only grows, so a folder re-created
    /// under an old name gets a fresh value and IMAP clients resync.
    pub next_uid_validity: u32,
    /// Every folder change, for replicas to replay in one order.
    pub folder_log: FolderLog,
}

impl Default for MailboxState {
    fn default() -> Self {
        let mut folders = BTreeMap::new();
        folders.insert(
            INBOX.to_string(),
            Folder {
                uid_validity: 1,
                uid_next: 1,
            },
        );
        MailboxState {
            mails: Mails::default(),
            folders,
            tombstones: BTreeMap::new(),
            contacts: LwwMap::default(),
            allow: LwwMap::default(),
            block: LwwMap::default(),
            preferences: LwwMap::default(),
            plugins: LwwMap::default(),
            next_uid_validity: 2,
            folder_log: FolderLog::default(),
        }
    }
}

/// Derived per-folder data.
#[derive(Debug, Default)]
pub struct FolderIndex {
    pub name: String,
    /// Mails by (date-ms, uid); iterate in reverse for newest first.
    pub by_date: BTreeMap<(i64, u32), String>,
    pub unseen: u32,
    /// Exact message sizes summed (folder-info size-bytes).
    pub bytes: u64,
}

/// A mail's folder, listing key (date-ms, uid) and id.
type Dated<'a> = (u32, (i64, u32), &'a String);

/// Everything derived from `MailboxState`; never serialised.
#[derive(Debug, Default)]
pub struct Indices {
    /// By folder id (uid-validity).
    pub folders: BTreeMap<u32, FolderIndex>,
    /// Tombstones oldest first: (deleted-ms, hlc, id).
    pub tomb_order: BTreeSet<(i64, u64, String)>,
    /// Exact message sizes of all mails summed (stats mail-bytes).
    pub mail_bytes: u64,
    /// `StoredMail::index_bytes` of all mails summed, for
    /// `MAILBOX_INDEX_BYTES_MAX`.
    pub index_bytes: u64,
    /// How many mails name each message blob: two mails may share one
    /// (the same message delivered under two ids), and `message-refs`
    /// lists it once, in hash order.
    pub blobs: BTreeMap<Hash, u32>,
    /// What `MailboxState::folder_log` replays to.
    pub history: Replayed,
}

impl Indices {
    /// Builds the indices, checking the invariants the rest of the crate
    /// relies on, since a restored state is input.
    pub fn build(state: &MailboxState) -> Result<Indices, String> {
        let mut idx = Indices {
            history: state.folder_log.replay(),
            ..Indices::default()
        };
        if !state.folders.contains_key(INBOX) {
            return Err("state has no INBOX".into());
        }
        for (name, f) in &state.folders {
            let fi = FolderIndex {
                name: name.clone(),
                ..FolderIndex::default()
            };
            if f.uid_validity >= state.next_uid_validity
                || idx.folders.insert(f.uid_validity, fi).is_some()
            {
                return Err(format!("folder {name:?} has a bad uid-validity"));
            }
        }
        // Heads only: a restored mail is checked here but decoded when
        // first read. Dates and blobs are collected, sorted and built into
        // their trees in bulk, which costs far less than a tree search per
        // mail in id order (this runs at every wake).
        let uid_nexts: BTreeMap<u32, u32> = state
            .folders
            .values()
            .map(|f| (f.uid_validity, f.uid_next))
            .collect();
        let mut dated: Vec<Dated<'_>> = Vec::with_capacity(state.mails.len());
        let mut blobs: Vec<Hash> = Vec::with_capacity(state.mails.len());
        for (id, m) in state.mails.heads() {
            let m = m?;
            let Some(&uid_next) = uid_nexts.get(&m.folder) else {
                return Err(format!("mail {id:?} is in a missing folder"));
            };
            if m.uid == 0 || m.uid >= uid_next {
                return Err(format!("mail {id:?} has uid {} >= uid-next", m.uid));
            }
            if m.size_bytes > MESSAGE_BYTES_MAX || m.blob_bytes > MESSAGE_BYTES_MAX {
                // Sums of sizes stay exact only under this bound.
                return Err(format!("mail {id:?} has an impossible size"));
            }
            let fi = idx.folder_mut(m.folder);
            fi.bytes += m.size_bytes;
            if !m.seen() {
                fi.unseen += 1;
            }
            idx.mail_bytes += m.size_bytes;
            idx.index_bytes += m.index_bytes;
            blobs.push(m.blob);
            dated.push((m.folder, (m.date_ms, m.uid), id));
        }
        dated.sort_unstable_by_key(|&(folder, key, _)| (folder, key));
        if let Some(w) = dated
            .windows(2)
            .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
        {
            return Err(format!("mail {:?} repeats uid {}", w[1].2, w[1].1.1));
        }
        for run in dated.chunk_by(|a, b| a.0 == b.0) {
            idx.folder_mut(run[0].0).by_date =
                run.iter().map(|&(_, key, id)| (key, id.clone())).collect();
        }
        // As two integers: an order the same as the bytes', and cheaper
        // to compare than slices.
        blobs.sort_unstable_by_key(|h| {
            let mut hi = [0u8; 16];
            let mut lo = [0u8; 16];
            hi.copy_from_slice(&h[..16]);
            lo.copy_from_slice(&h[16..]);
            (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
        });
        // A mail count per blob cannot pass the mail count, itself under
        // 2^32 (the restore's limit); saturate rather than assume it.
        idx.blobs = blobs
            .chunk_by(|a, b| a == b)
            .map(|run| (run[0], u32::try_from(run.len()).unwrap_or(u32::MAX)))
            .collect();
        for (id, t) in &state.tombstones {
            idx.tomb_order.insert((t.deleted_ms, t.hlc, id.clone()));
        }
        Ok(idx)
    }

    pub fn folder(&self, id: u32) -> &FolderIndex {
        // Indices are built from and updated with the state; a mail or
        // folder without an index entry is a bug, not bad input.
        self.folders.get(&id).expect("folder index out of sync")
    }

    pub fn folder_mut(&mut self, id: u32) -> &mut FolderIndex {
        self.folders.get_mut(&id).expect("folder index out of sync")
    }

    pub fn add_mail(&mut self, id: &str, m: &StoredMail) {
        self.add_head(id, &MailHead::of(m));
    }

    fn add_head(&mut self, id: &str, m: &MailHead) {
        let size = m.size_bytes;
        let fi = self.folder_mut(m.folder);
        let fresh = fi.by_date.insert((m.date_ms, m.uid), id.to_string());
        assert!(fresh.is_none(), "uid reused in folder");
        fi.bytes += size;
        if !m.seen() {
            fi.unseen += 1;
        }
        self.mail_bytes += size;
        self.index_bytes += m.index_bytes;
        *self.blobs.entry(m.blob).or_default() += 1;
    }

    pub fn remove_mail(&mut self, m: &StoredMail) {
        let size = m.size_bytes;
        let fi = self.folder_mut(m.folder);
        fi.by_date.remove(&(m.date_ms, m.uid));
        fi.bytes -= size;
        if !m.seen() {
            fi.unseen -= 1;
        }
        self.mail_bytes -= size;
        self.index_bytes -= m.index_bytes();
        let users = self.blobs.get_mut(&m.blob).expect("blob index out of sync");
        *users -= 1;
        if *users == 0 {
            self.blobs.remove(&m.blob);
        }
    }
}

/// The whole component state: the serialised part, its indices, the
/// in-flight snapshot or restore buffers and the converted messages
/// waiting for the host.
#[derive(Debug)]
pub struct Mailbox {
    pub state: MailboxState,
    pub idx: Indices,
    /// Encoded snapshot held between `snapshot-begin` and `snapshot-end`.
    pub snapshot: Option<Vec<u8>>,
    pub restore: Option<Restore>,
    /// Set by the host around replayed ops (`set-replaying`).
    pub replaying: bool,
    /// Messages written while converting a schema-3-or-older snapshot, by
    /// hash, until `take-converted` hands them to the host's blob store.
    /// Not state: they are the blobs the state names, and a replica that
    /// converts the same snapshot writes the same ones.
    pub converted: BTreeMap<Hash, Vec<u8>>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox::from_state(MailboxState::default()).expect("fresh state is valid")
    }
}

impl Mailbox {
    pub fn from_state(state: MailboxState) -> Result<Mailbox, String> {
        let idx = Indices::build(&state)?;
        Ok(Mailbox {
            state,
            idx,
            snapshot: None,
            restore: None,
            replaying: false,
            converted: BTreeMap::new(),
        })
    }

    /// Name of the folder with this id.
    pub fn folder_name_of(&self, id: u32) -> &str {
        &self.idx.folder(id).name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_state_has_inbox_with_validity_one() {
        let mb = Mailbox::default();
        assert_eq!(mb.state.folders[INBOX].uid_validity, 1);
        assert_eq!(mb.state.folders[INBOX].uid_next, 1);
        assert_eq!(mb.folder_name_of(1), INBOX);
    }

    #[test]
    fn stamp_orders_hlc_then_replica() {
        let a = Stamp { hlc: 1, replica: 9 };
        let b = Stamp { hlc: 2, replica: 0 };
        let c = Stamp { hlc: 2, replica: 1 };
        assert!(a < b && b < c);
    }

    #[test]
    fn build_rejects_broken_state() {
        let mut s = MailboxState::default();
        s.folders.clear();
        assert!(Indices::build(&s).is_err());
        let s = MailboxState {
            next_uid_validity: 1,
            ..MailboxState::default()
        };
        assert!(Indices::build(&s).is_err());
    }
}
