//! The redb tables of the store and the per-mailbox record kept in `META`.
//!
//! Layout, all keyed by mailbox id:
//! - `META`: id → [`MetaRecord`] (rmp-serde, named fields so later fields such
//!   as version vectors can be added with `#[serde(default)]`). It is the
//!   authority on which mailboxes exist, their last seq and their snapshot's
//!   header, and keeps running log counters so `usage` is O(1).
//! - `LOG`: (id, seq) → op bytes, exactly the seqs after the snapshot.
//! - `SNAPSHOT`: id → the snapshot's bytes alone, for snapshots under
//!   [`super::blobs::BLOB_BYTES_MIN`]; larger ones are files (`blobs.rs`)
//!   that the header names.
//! - `STAGED`: id → the token of the import whose log tail is staged in
//!   `LOG` without a `META` record yet (`import.rs`); created on demand,
//!   so older stores open as they are.
//! - `MESSAGE_PLACES`, `PACK_ENTRIES`, `PACK_LIVE`, `MESSAGE_REFS`,
//!   `MESSAGE_USERS`, `MESSAGE_USAGE`, `MESSAGE_WAITING`: where the mail
//!   bodies the logs name by hash are in the pack files
//!   (`messages/pack.rs`), who references them, and which ids referenced
//!   some before their mailbox was here (`messages.rs`); created on the
//!   first open of a store from before them.
//! - `MESSAGES`: the bodies themselves, as the build before the packs kept
//!   them; the open moves any it finds into packs.
//! - `SEARCH_STATE`, `SEARCH_DOCS`, `SEARCH_HASHES`, `SEARCH_POSTINGS`:
//!   the full-text index of each mailbox (`search.rs`), derived from the
//!   messages and local to this host: never replicated nor snapshotted,
//!   rebuilt whenever it is missing; created on the first open of a store
//!   from before them.
//! - `INFO`: "format" → [`FORMAT`], checked on open.

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::blobs::BlobName;
use super::error::{Corruption, Shared};
use super::{LoadError, MailboxMeta, MailboxUsage, OpenError};
use dem_proto::VersionVector;

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("mailbox_meta");
pub(super) const LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("mailbox_log");
pub(super) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("mailbox_snapshot");
pub(super) const STAGED: TableDefinition<&str, u64> = TableDefinition::new("mailbox_staged_log");
/// BLAKE3 of a message → its bytes, as stores before the packs kept them;
/// emptied into the packs on open (`messages::move_into_packs`).
pub(super) const MESSAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("messages");
/// BLAKE3 of a message → (pack, offset, length) of its bytes.
pub(super) const MESSAGE_PLACES: TableDefinition<&[u8; 32], (u32, u64, u32)> =
    TableDefinition::new("message_places");
/// (pack, message hash): the messages whose bytes a pack holds, for
/// compacting it without walking every place.
pub(super) const PACK_ENTRIES: TableDefinition<(u32, &[u8; 32]), ()> =
    TableDefinition::new("pack_entries");
/// Pack → bytes of it that places name (the rest is dead).
pub(super) const PACK_LIVE: TableDefinition<u32, u64> = TableDefinition::new("pack_live");
/// (mailbox id, message hash): the mailbox references the message.
pub(super) const MESSAGE_REFS: TableDefinition<(&str, &[u8; 32]), ()> =
    TableDefinition::new("message_refs");
/// (message hash, mailbox id): `MESSAGE_REFS` reversed, so whether anyone
/// still references a message is one range lookup.
pub(super) const MESSAGE_USERS: TableDefinition<(&[u8; 32], &str), ()> =
    TableDefinition::new("message_users");
/// [`USAGE_KEY`] → (messages stored, their bytes), kept by the writer so
/// that metrics need not walk every message.
pub(super) const MESSAGE_USAGE: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("message_usage");
/// Ids that [`super::MailboxStore::put_messages`] stored messages for
/// while no mailbox of that id was here (an import in flight): the next
/// open drops their references unless the mailbox came meanwhile.
pub(super) const MESSAGE_WAITING: TableDefinition<&str, ()> =
    TableDefinition::new("message_waiting");
/// Mailbox id → (documents handed out, the mailbox's seq when the index
/// last caught up with its messages).
pub(super) const SEARCH_STATE: TableDefinition<&str, (u32, u64)> =
    TableDefinition::new("search_state");
/// (mailbox id, message hash) → its document: what is indexed, in hash
/// order to compare with `MESSAGE_REFS`.
pub(super) const SEARCH_DOCS: TableDefinition<(&str, &[u8; 32]), u32> =
    TableDefinition::new("search_docs");
/// (mailbox id, document) → message hash.
pub(super) const SEARCH_HASHES: TableDefinition<(&str, u32), &[u8; 32]> =
    TableDefinition::new("search_hashes");
/// (mailbox id, word, first document of the batch) → that batch's posting
/// chunk for the word (`dem_message::search::encode_postings`).
pub(super) const SEARCH_POSTINGS: TableDefinition<(&str, &str, u32), &[u8]> =
    TableDefinition::new("search_postings");
/// The one key of `MESSAGE_USAGE`.
pub(super) const USAGE_KEY: &str = "all";
const INFO: TableDefinition<&str, u64> = TableDefinition::new("store_info");

/// On-disk format of this module; bump on incompatible layout changes.
pub(super) const FORMAT: u64 = 1;

/// Header of the stored snapshot; its bytes live in `SNAPSHOT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SnapshotHeader {
    pub seq: u64,
    pub schema_version: u32,
    pub bytes: u64,
    /// What the snapshot includes, for replication (absent before it).
    #[serde(default)]
    pub vv: VersionVector,
    /// The file holding the bytes (`blobs.rs`); `None`: they are in
    /// `SNAPSHOT` (small snapshots, and stores from before files).
    #[serde(default)]
    pub file: Option<BlobName>,
}

/// Everything the store knows about one mailbox besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MetaRecord {
    pub meta: MailboxMeta,
    /// Seq of the newest op (0 before the first one).
    pub last_seq: u64,
    pub snapshot: Option<SnapshotHeader>,
    /// Number of entries in `LOG` for this mailbox.
    pub log_entries: u64,
    /// Sum of the op lengths in `LOG` for this mailbox.
    pub log_bytes: u64,
}

impl MetaRecord {
    /// A freshly created, empty mailbox.
    pub fn new(meta: MailboxMeta) -> Self {
        Self {
            meta,
            last_seq: 0,
            snapshot: None,
            log_entries: 0,
            log_bytes: 0,
        }
    }

    /// Seq of the snapshot, 0 when there is none (the log then starts at 1).
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.seq)
    }

    pub fn usage(&self) -> MailboxUsage {
        MailboxUsage {
            snapshot_seq: self.snapshot.as_ref().map(|s| s.seq),
            snapshot_bytes: self.snapshot.as_ref().map_or(0, |s| s.bytes),
            log_entries: self.log_entries,
            log_bytes: self.log_bytes,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain integers and a byte array into a Vec cannot fail.
        rmp_serde::to_vec_named(self).expect("MetaRecord serializes")
    }

    pub fn decode(id: &str, bytes: &[u8]) -> Result<Self, LoadError> {
        rmp_serde::from_slice(bytes).map_err(|source| {
            LoadError::Corrupt(Corruption::Meta {
                id: id.to_owned(),
                source: Shared::new(source),
            })
        })
    }
}

/// Creates the tables if missing and checks the recorded format, so that
/// later read transactions never meet a missing table.
pub(super) fn init(db: &Database) -> Result<(), OpenError> {
    {
        let read = db.begin_read().map_err(redb::Error::from)?;
        match read.open_table(INFO) {
            Ok(info) => {
                let found = info.get("format").map_err(redb::Error::from)?;
                match found.map(|g| g.value()) {
                    // The message, pack and search tables came later
                    // within this format: a store without them holds no
                    // messages in packs (or no index) and gets them below,
                    // so that reads never meet a missing table.
                    Some(FORMAT)
                        if has_table(&read, MESSAGE_PLACES)?
                            && has_table(&read, MESSAGE_USAGE)?
                            && has_table(&read, MESSAGES)?
                            && has_table(&read, SEARCH_POSTINGS)? =>
                    {
                        return Ok(());
                    }
                    Some(FORMAT) => {}
                    Some(found) => {
                        return Err(OpenError::UnsupportedFormat {
                            found,
                            supported: FORMAT,
                        });
                    }
                    None => {}
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(redb::Error::from(e).into()),
        }
    }
    let txn = db.begin_write().map_err(redb::Error::from)?;
    {
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.open_table(LOG).map_err(redb::Error::from)?;
        txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        txn.open_table(MESSAGES).map_err(redb::Error::from)?;
        txn.open_table(MESSAGE_PLACES).map_err(redb::Error::from)?;
        txn.open_table(PACK_ENTRIES).map_err(redb::Error::from)?;
        txn.open_table(PACK_LIVE).map_err(redb::Error::from)?;
        txn.open_table(MESSAGE_REFS).map_err(redb::Error::from)?;
        txn.open_table(MESSAGE_USERS).map_err(redb::Error::from)?;
        txn.open_table(MESSAGE_USAGE).map_err(redb::Error::from)?;
        txn.open_table(MESSAGE_WAITING).map_err(redb::Error::from)?;
        txn.open_table(SEARCH_STATE).map_err(redb::Error::from)?;
        txn.open_table(SEARCH_DOCS).map_err(redb::Error::from)?;
        txn.open_table(SEARCH_HASHES).map_err(redb::Error::from)?;
        txn.open_table(SEARCH_POSTINGS).map_err(redb::Error::from)?;
        let mut info = txn.open_table(INFO).map_err(redb::Error::from)?;
        info.insert("format", FORMAT).map_err(redb::Error::from)?;
    }
    txn.commit().map_err(redb::Error::from)?;
    Ok(())
}

/// Whether `table` exists (tables of one kind are created together).
fn has_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<bool, OpenError> {
    match read.open_table(table) {
        Ok(_) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(redb::Error::from(e).into()),
    }
}
