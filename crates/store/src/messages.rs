//! Message blobs: the mail bodies that mailbox logs name by hash, stored
//! once per host beside the mailboxes.
//!
//! A mailbox's op log records only the BLAKE3 hash of each message (its
//! RFC 5322 bytes, large parts already split out as floating attachments,
//! `attachments.rs`); the bytes live here, keyed by that hash, so a mail
//! sent to many mailboxes of one host is stored once. The bytes are in
//! append-only pack files and their places in redb (`pack.rs` says why):
//! a batch's messages cost one sequential write and one `fdatasync` of
//! the pack, where files would cost an fsync each plus their folder's,
//! and redb values a rewrite of their neighbours at each commit.
//!
//! All writes go through the writer thread (`writer.rs`, the bodies of
//! the writes are in `messages/write.rs`), so they share its group commit:
//! [`MailboxStore::append_with_messages`] makes the messages durable in the
//! same transaction as the op that names them, and a refused op stores none.
//! Who references what is kept both ways (`MESSAGE_REFS` by mailbox,
//! `MESSAGE_USERS` by message, see `tables.rs`), so "does any mailbox still
//! reference this blob" is one range lookup. A blob is removed in the
//! transaction that removes its last reference; a blob stored for an
//! import in flight ([`MailboxStore::put_messages`]) is referenced by the
//! import's id, so it stays until the import fails
//! ([`MailboxStore::drop_orphan_message_refs`]) or the mailbox drops it.
//! An import does not outlive the process, so references an id took while
//! it had no mailbox (`MESSAGE_WAITING`) are dropped at the next open if
//! the mailbox has not come by then, as staged logs are (`import.rs`):
//! a crash between `put_messages` and a failed import's cleanup leaks
//! nothing.
//!
//! Reads run on the caller's thread, like the rest of `read.rs`: a redb
//! read transaction for the place, a `pread` of the pack for the bytes,
//! which are checked against their hash: damaged bytes are
//! [`Corruption::Message`], never handed out as a mail.

pub(crate) mod pack;
mod write;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use self::pack::{Packs, Place};
use super::error::{Corruption, Shared};
use super::tables::{
    MESSAGE_PLACES, MESSAGE_REFS, MESSAGE_USAGE, MESSAGE_WAITING, MESSAGES, PACK_ENTRIES,
    PACK_LIVE, USAGE_KEY,
};
use super::writer::Op;
use super::{Commit, CommitError, LoadError, MailboxStore, OP_BYTES_MAX, check_len};

pub(super) use write::{
    bytes, drop_refs, put, repair, retain_refs, stop_waiting, wait_for_mailbox,
};

/// Largest message, in bytes: a mail as stored (its large parts split out
/// as attachments, at most `dem_message::limits::STORED_BYTES_MAX`) or a
/// sealed mail's blob (its envelope and ciphertext, a little larger), as
/// [`dem_proto::host::BLOB_BYTES_MAX`] defines it.
pub const MESSAGE_BYTES_MAX: usize = dem_proto::host::BLOB_BYTES_MAX;
/// Most messages one request may carry, so that one request cannot make
/// one huge transaction (the writer's batch budget only stops *between*
/// requests). A replica catching up sends its messages in several requests;
/// they still share commits.
pub const MESSAGES_PER_REQUEST_MAX: usize = 1024;
/// Most message bytes one request may carry, for the same reason
/// ([`CommitError::TooLarge`] with `what` "messages").
pub const MESSAGES_REQUEST_BYTES_MAX: usize = 64 << 20;

/// What the stored messages take, for metrics ([`MailboxStore::message_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageUsage {
    /// Number of distinct messages stored.
    pub count: u64,
    /// Their total size.
    pub bytes: u64,
}

/// A message on its way to the writer, hashed on the caller's thread (a
/// 2 MiB message costs about a millisecond there, which the one writer
/// thread should not spend while every mailbox's appends wait on it).
pub(super) struct Message {
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

impl MailboxStore {
    /// Appends an op and stores the messages it names, in one transaction:
    /// the messages are durable before the op is acknowledged, and an op
    /// that is refused ([`CommitError::SeqConflict`],
    /// [`CommitError::UnknownMailbox`]) stores none of them. Each message is
    /// hashed here (BLAKE3 of its bytes, what [`MailboxStore::message`]
    /// takes) and recorded as referenced by `id`. A message over
    /// [`MESSAGE_BYTES_MAX`] is [`CommitError::MessageTooLarge`] and nothing
    /// is written.
    pub fn append_with_messages(
        &self,
        id: &str,
        seq: u64,
        op: Vec<u8>,
        messages: Vec<Vec<u8>>,
    ) -> Commit {
        if let Err(e) = check_len("op", op.len(), OP_BYTES_MAX) {
            return Commit::failed(e);
        }
        match hash_all(messages) {
            Ok(messages) => self.submit(id, Op::AppendWithMessages { seq, op, messages }),
            Err(e) => Commit::failed(e),
        }
    }

    /// Stores messages for `id` (a replica catching up, an import in flight)
    /// and records that `id` references them; `id` need not be a mailbox
    /// here yet. Limits as [`MailboxStore::append_with_messages`], plus
    /// [`MESSAGES_PER_REQUEST_MAX`] and [`MESSAGES_REQUEST_BYTES_MAX`].
    /// If the mailbox never comes (a failed import), call
    /// [`MailboxStore::drop_orphan_message_refs`]; if `id` still has no
    /// mailbox when the store is next opened, the open drops them.
    pub fn put_messages(&self, id: &str, messages: Vec<Vec<u8>>) -> Commit {
        match hash_all(messages) {
            Ok(messages) => self.submit(id, Op::PutMessages(messages)),
            Err(e) => Commit::failed(e),
        }
    }

    /// Keeps only these references of `id` (the mailbox's index says which
    /// mails it still holds); blobs no mailbox references any more are
    /// removed in the same transaction. Hashes in `keep` that `id` does
    /// not reference are ignored. Requests of one caller are applied in
    /// order, so `keep` must include the messages of every op `id` queued
    /// before this call.
    pub fn retain_message_refs(&self, id: &str, mut keep: Vec<[u8; 32]>) -> Commit {
        keep.sort_unstable();
        keep.dedup();
        self.submit(id, Op::RetainMessageRefs(keep))
    }

    /// Writes `message` over a damaged or missing copy of itself, for the
    /// mailbox `id` that names it: the bytes are keyed by their own hash,
    /// so good bytes can only replace what should have been them. A blob
    /// no mailbox here names is not stored.
    pub fn repair_message(&self, id: &str, message: Vec<u8>) -> Commit {
        match hash_all(vec![message]) {
            Ok(mut messages) => match messages.pop() {
                Some(m) => self.submit(id, Op::RepairMessage(m)),
                None => self.submit(id, Op::PutMessages(Vec::new())),
            },
            Err(e) => Commit::failed(e),
        }
    }

    /// Drops every reference of `id` if this store holds no mailbox `id`
    /// (an import that failed), removing the blobs no one else references;
    /// a no-op when the mailbox exists.
    pub fn drop_orphan_message_refs(&self, id: &str) -> Commit {
        self.submit(id, Op::DropOrphanMessageRefs)
    }

    /// The bytes of a message, checked against their hash: a damaged blob
    /// is [`LoadError::Corrupt`] with [`Corruption::Message`], never wrong
    /// bytes. `None` if this store does not hold it.
    pub fn message(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, LoadError> {
        // A pack compacted between the look-up and the read is gone, and
        // the message is then in the current pack: look once more.
        let mut retried = false;
        loop {
            let Some(place) = self.message_place(hash)? else {
                return Ok(None);
            };
            let bytes = match self.inner.packs.read(place) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !retried => {
                    retried = true;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(LoadError::Corrupt(Corruption::Message { hash: *hash }));
                }
                Err(e) => return Err(LoadError::MessagePack(Shared::new(e))),
            };
            if blake3::hash(&bytes).as_bytes() != hash {
                return Err(LoadError::Corrupt(Corruption::Message { hash: *hash }));
            }
            return Ok(Some(bytes));
        }
    }

    fn message_place(&self, hash: &[u8; 32]) -> Result<Option<Place>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn
            .open_table(MESSAGE_PLACES)
            .map_err(LoadError::database)?;
        Ok(table
            .get(hash)
            .map_err(LoadError::database)?
            .map(|g| Place::from_row(g.value())))
    }

    /// Whether mailbox `id` names the message `hash` here.
    pub fn names_message(&self, id: &str, hash: &[u8; 32]) -> Result<bool, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(MESSAGE_REFS).map_err(LoadError::database)?;
        Ok(table
            .get((id, hash))
            .map_err(LoadError::database)?
            .is_some())
    }

    /// Which of these hashes this store holds, in the same order. Does not
    /// check the bytes (that is for [`MailboxStore::message`]).
    pub fn has_messages(&self, hashes: &[[u8; 32]]) -> Result<Vec<bool>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn
            .open_table(MESSAGE_PLACES)
            .map_err(LoadError::database)?;
        hashes
            .iter()
            .map(|h| {
                table
                    .get(h)
                    .map(|g| g.is_some())
                    .map_err(LoadError::database)
            })
            .collect()
    }

    /// Every message hash `id` references, ascending.
    pub fn message_refs(&self, id: &str) -> Result<Vec<[u8; 32]>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(MESSAGE_REFS).map_err(LoadError::database)?;
        let mut hashes = Vec::new();
        for entry in table
            .range((id, &[0u8; 32])..=(id, &[0xff; 32]))
            .map_err(LoadError::database)?
        {
            let (key, _) = entry.map_err(LoadError::database)?;
            hashes.push(*key.value().1);
        }
        Ok(hashes)
    }

    /// Count and bytes of the messages stored, for metrics. O(1): the
    /// writer keeps the sums.
    pub fn message_usage(&self) -> Result<MessageUsage, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(MESSAGE_USAGE).map_err(LoadError::database)?;
        let (count, bytes) = table
            .get(USAGE_KEY)
            .map_err(LoadError::database)?
            .map_or((0, 0), |g| g.value());
        Ok(MessageUsage { count, bytes })
    }

    /// Flips the first byte of a stored message, so that tests (here and
    /// in other crates' process tests) can show damage is detected. Exists
    /// only for tests: never call it on a store that matters. `false` if
    /// the message is not stored, or empty.
    #[doc(hidden)]
    pub fn corrupt_message_for_tests(&self, hash: &[u8; 32]) -> Result<bool, LoadError> {
        match self.message_place(hash)? {
            Some(place) if place.len > 0 => {
                self.inner
                    .packs
                    .corrupt_for_tests(place)
                    .map_err(|e| LoadError::MessagePack(Shared::new(e)))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Most messages moved from redb into the packs per transaction when a
/// store from before the packs is opened.
const MOVED_PER_COMMIT: usize = 1024;

/// Moves the message bytes a store from before the packs kept in redb
/// (`MESSAGES`) into packs, [`MOVED_PER_COMMIT`] per transaction, each
/// removed from redb in the transaction that records its place. Runs at
/// open, before the writer thread starts. How many were moved.
pub(super) fn move_into_packs(
    db: &Database,
    packs: &Packs,
    durability: Durability,
) -> Result<u64, CommitError> {
    let mut moved = 0u64;
    loop {
        let mut txn = db.begin_write().map_err(CommitError::database)?;
        txn.set_durability(durability)
            .map_err(CommitError::database)?;
        let mut batch = packs
            .batch()
            .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
        let count = {
            let mut old = txn.open_table(MESSAGES).map_err(CommitError::database)?;
            let mut places = txn
                .open_table(MESSAGE_PLACES)
                .map_err(CommitError::database)?;
            let mut entries = txn
                .open_table(PACK_ENTRIES)
                .map_err(CommitError::database)?;
            let mut live = txn.open_table(PACK_LIVE).map_err(CommitError::database)?;
            let mut taken = Vec::new();
            for entry in old.iter().map_err(CommitError::database)? {
                let (k, v) = entry.map_err(CommitError::database)?;
                let place = batch
                    .append(v.value())
                    .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
                taken.push((*k.value(), place));
                if taken.len() >= MOVED_PER_COMMIT {
                    break;
                }
            }
            let mut added = 0u64;
            for (hash, place) in &taken {
                old.remove(hash).map_err(CommitError::database)?;
                places
                    .insert(hash, place.row())
                    .map_err(CommitError::database)?;
                entries
                    .insert((place.pack, hash), ())
                    .map_err(CommitError::database)?;
                added += u64::from(place.len);
            }
            if added > 0 {
                let pack = batch.pack();
                let before = live
                    .get(pack)
                    .map_err(CommitError::database)?
                    .map_or(0, |g| g.value());
                live.insert(pack, before.saturating_add(added))
                    .map_err(CommitError::database)?;
            }
            taken.len()
        };
        if count == 0 {
            return Ok(moved);
        }
        batch
            .flush()
            .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
        txn.commit().map_err(CommitError::database)?;
        moved += count as u64;
    }
}

/// Copies the live messages of `pack` to the current pack in one
/// transaction, then deletes its file. The writer thread runs it between
/// batches, so nothing else writes meanwhile.
pub(super) fn compact(
    db: &Database,
    packs: &Packs,
    durability: Durability,
    pack: u32,
) -> Result<(), CommitError> {
    let mut txn = db.begin_write().map_err(CommitError::database)?;
    txn.set_durability(durability)
        .map_err(CommitError::database)?;
    let mut batch = packs
        .batch()
        .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
    if batch.pack() == pack {
        // It became the current pack again (it cannot, numbers only grow,
        // but a pack being appended to is never deleted).
        return Ok(());
    }
    {
        let mut places = txn
            .open_table(MESSAGE_PLACES)
            .map_err(CommitError::database)?;
        let mut entries = txn
            .open_table(PACK_ENTRIES)
            .map_err(CommitError::database)?;
        let mut live = txn.open_table(PACK_LIVE).map_err(CommitError::database)?;
        let mut hashes = Vec::new();
        for entry in entries
            .range((pack, &[0u8; 32])..=(pack, &[0xff; 32]))
            .map_err(CommitError::database)?
        {
            hashes.push(*entry.map_err(CommitError::database)?.0.value().1);
        }
        let mut added = 0u64;
        for hash in &hashes {
            let Some(old) = places
                .get(hash)
                .map_err(CommitError::database)?
                .map(|g| Place::from_row(g.value()))
            else {
                continue;
            };
            // Copied as they are, damaged or not: reading checks them.
            let bytes = packs
                .read(old)
                .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
            let new = batch
                .append(&bytes)
                .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
            places
                .insert(hash, new.row())
                .map_err(CommitError::database)?;
            entries
                .remove((pack, hash))
                .map_err(CommitError::database)?;
            entries
                .insert((new.pack, hash), ())
                .map_err(CommitError::database)?;
            added += u64::from(new.len);
        }
        live.remove(pack).map_err(CommitError::database)?;
        if added > 0 {
            let to = batch.pack();
            let before = live
                .get(to)
                .map_err(CommitError::database)?
                .map_or(0, |g| g.value());
            live.insert(to, before.saturating_add(added))
                .map_err(CommitError::database)?;
        }
    }
    batch
        .flush()
        .map_err(|e| CommitError::MessagePack(Shared::new(e)))?;
    txn.commit().map_err(CommitError::database)?;
    packs.delete(pack);
    Ok(())
}

/// Queues, on a store just opened, the dropping of the references that
/// ids took for imports the last run did not finish: each id that has no
/// mailbox now loses them. Not awaited, so that opening stays quick; the
/// requests are first in the writer's queue, so nothing sent after the
/// open is dropped. How many ids were queued.
pub(super) fn drop_orphans_of_last_run(store: &MailboxStore) -> Result<usize, redb::Error> {
    let ids = {
        let txn = store.inner.db.begin_read()?;
        let table = txn.open_table(MESSAGE_WAITING)?;
        let mut ids = Vec::new();
        for entry in table.iter()? {
            ids.push(entry?.0.value().to_owned());
        }
        ids
    };
    for id in &ids {
        // Dropping the Commit does not cancel it; a failure is logged by
        // the writer, and the entry stays for the next open.
        drop(store.drop_orphan_message_refs(id));
    }
    Ok(ids.len())
}

/// Checks the limits of one request's messages, all before hashing any,
/// then hashes them.
fn hash_all(messages: Vec<Vec<u8>>) -> Result<Vec<Message>, CommitError> {
    if messages.len() > MESSAGES_PER_REQUEST_MAX {
        return Err(CommitError::TooManyMessages {
            limit: MESSAGES_PER_REQUEST_MAX,
            actual: messages.len(),
        });
    }
    if let Some((index, m)) = messages
        .iter()
        .enumerate()
        .find(|(_, m)| m.len() > MESSAGE_BYTES_MAX)
    {
        return Err(CommitError::MessageTooLarge {
            index,
            limit: MESSAGE_BYTES_MAX as u64,
            actual: m.len() as u64,
        });
    }
    let total: usize = messages.iter().map(Vec::len).sum();
    check_len("messages", total, MESSAGES_REQUEST_BYTES_MAX)?;
    Ok(messages
        .into_iter()
        .map(|bytes| Message {
            hash: *blake3::hash(&bytes).as_bytes(),
            bytes,
        })
        .collect())
}
