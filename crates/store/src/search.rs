//! The storage of each mailbox's full-text index: rows in the store's
//! redb, which the host's search driver (`dem-node`) fills and reads. What
//! the rows mean (words, posting chunks, documents) is
//! `dem_message::search`'s business; this module only keeps them, so that
//! the index can move to the owner's machine with another driver.
//!
//! The index is derived from the messages and local to this host: never
//! replicated, never in a snapshot, and it may lag the mailbox or name
//! messages the mailbox dropped (the driver checks every hit against the
//! mailbox). It can be dropped and rebuilt at any time.
//!
//! Writes do not go through the writer thread: they are not part of any
//! op, and a batch of them must not delay the group commits of
//! deliveries. Each is its own short redb write transaction, committed
//! without fsync (`Durability::None`): the writer's next commit makes it
//! durable, and a crash before that loses a batch together with the state
//! that says it was indexed, so the driver indexes it again.

use redb::{Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use thiserror::Error;

use super::tables::{MESSAGE_REFS, SEARCH_DOCS, SEARCH_HASHES, SEARCH_POSTINGS, SEARCH_STATE};
use super::{CommitError, LoadError, MailboxStore};

/// Documents from which [`MailboxStore::search_hashes`] reads their
/// whole range instead of looking each up.
const HASHES_SCAN_MIN: usize = 256;

/// Where a mailbox's index stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchState {
    /// Documents handed out: the next message indexed gets this one.
    pub docs: u32,
    /// The mailbox's seq when the index last caught up with the messages
    /// it names (0: never).
    pub seen_seq: u64,
}

/// One batch of the index, written in one transaction: the messages it
/// indexes, documents `first_doc..first_doc + hashes.len()`, and a posting
/// chunk per word.
#[derive(Clone, Debug, Default)]
pub struct SearchBatch {
    pub first_doc: u32,
    pub hashes: Vec<[u8; 32]>,
    /// (word, chunk), each word once.
    pub chunks: Vec<(String, Vec<u8>)>,
}

/// Why writing to a search index failed.
#[derive(Debug, Error)]
pub enum SearchWriteError {
    /// The batch does not start where the index ends: two writers, or a
    /// driver that lost count.
    #[error("search batch starts at document {first_doc}, the index has {docs}")]
    OutOfOrder { first_doc: u32, docs: u32 },
    /// The batch would number documents past 2^32: the index must be
    /// dropped and rebuilt, which numbers from 0 again.
    #[error("search index of {docs} documents cannot take {added} more (at most 2^32)")]
    DocumentsExhausted { docs: u32, added: usize },
    /// The database failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl MailboxStore {
    /// Where the index of `id` stands (all zero when there is none).
    pub fn search_state(&self, id: &str) -> Result<SearchState, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(SEARCH_STATE).map_err(LoadError::database)?;
        Ok(table
            .get(id)
            .map_err(LoadError::database)?
            .map_or(SearchState::default(), |g| {
                let (docs, seen_seq) = g.value();
                SearchState { docs, seen_seq }
            }))
    }

    /// The messages `id` references that its index lacks, ascending: one
    /// merge of two ranges in hash order.
    pub fn search_unindexed(&self, id: &str) -> Result<Vec<[u8; 32]>, LoadError> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let refs = txn.open_table(MESSAGE_REFS).map_err(LoadError::database)?;
        let docs = txn.open_table(SEARCH_DOCS).map_err(LoadError::database)?;
        let range = (id, &[0u8; 32])..=(id, &[0xff; 32]);
        let mut indexed = docs.range(range.clone()).map_err(LoadError::database)?;
        // The smallest indexed hash not yet passed, read one at a time so
        // that a read error is returned as it comes.
        let mut next_indexed = || -> Result<Option<[u8; 32]>, LoadError> {
            match indexed.next() {
                Some(entry) => Ok(Some(*entry.map_err(LoadError::database)?.0.value().1)),
                None => Ok(None),
            }
        };
        let mut current = next_indexed()?;
        let mut out = Vec::new();
        for entry in refs.range(range).map_err(LoadError::database)? {
            let hash = *entry.map_err(LoadError::database)?.0.value().1;
            while current.is_some_and(|c| c < hash) {
                current = next_indexed()?;
            }
            if current != Some(hash) {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Adds a batch to the index of `id`; with `seen_seq`, also records
    /// that the index has caught up with the mailbox at that seq.
    pub fn search_write(
        &self,
        id: &str,
        batch: SearchBatch,
        seen_seq: Option<u64>,
    ) -> Result<(), SearchWriteError> {
        let mut txn = self.inner.db.begin_write().map_err(CommitError::database)?;
        txn.set_durability(Durability::None)
            .map_err(CommitError::database)?;
        {
            let mut state = txn
                .open_table(SEARCH_STATE)
                .map_err(CommitError::database)?;
            let (docs, old_seq) = state
                .get(id)
                .map_err(CommitError::database)?
                .map_or((0, 0), |g| g.value());
            if batch.first_doc != docs {
                return Err(SearchWriteError::OutOfOrder {
                    first_doc: batch.first_doc,
                    docs,
                });
            }
            let next = u32::try_from(batch.hashes.len())
                .ok()
                .and_then(|count| docs.checked_add(count))
                .ok_or(SearchWriteError::DocumentsExhausted {
                    docs,
                    added: batch.hashes.len(),
                })?;
            state
                .insert(id, (next, seen_seq.unwrap_or(old_seq)))
                .map_err(CommitError::database)?;
            let mut by_hash = txn.open_table(SEARCH_DOCS).map_err(CommitError::database)?;
            let mut by_doc = txn
                .open_table(SEARCH_HASHES)
                .map_err(CommitError::database)?;
            for (doc, hash) in (docs..).zip(&batch.hashes) {
                by_hash
                    .insert((id, hash), doc)
                    .map_err(CommitError::database)?;
                by_doc
                    .insert((id, doc), hash)
                    .map_err(CommitError::database)?;
            }
            let mut postings = txn
                .open_table(SEARCH_POSTINGS)
                .map_err(CommitError::database)?;
            for (word, chunk) in &batch.chunks {
                postings
                    .insert((id, word.as_str(), batch.first_doc), chunk.as_slice())
                    .map_err(CommitError::database)?;
            }
        }
        txn.commit().map_err(CommitError::database)?;
        Ok(())
    }

    /// Calls `each` with every posting chunk of `id` whose word is in
    /// `from..to`, in word order, until it returns an error.
    pub fn search_chunks<E: From<LoadError>>(
        &self,
        id: &str,
        from: &str,
        to: &str,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn
            .open_table(SEARCH_POSTINGS)
            .map_err(LoadError::database)?;
        for entry in table
            .range((id, from, 0)..(id, to, 0))
            .map_err(LoadError::database)?
        {
            let (_, chunk) = entry.map_err(LoadError::database)?;
            each(chunk.value())?;
        }
        Ok(())
    }

    /// The message of each document of `id`; `docs` must ascend. A
    /// document the index does not have is an inconsistency.
    pub fn search_hashes(&self, id: &str, docs: &[u32]) -> Result<Vec<[u8; 32]>, LoadError> {
        assert!(docs.windows(2).all(|w| w[0] < w[1]), "documents ascend");
        let lacks = |doc: u32| {
            LoadError::inconsistent(format!("the search index of {id} lacks document {doc}"))
        };
        let txn = self.inner.db.begin_read().map_err(LoadError::database)?;
        let table = txn.open_table(SEARCH_HASHES).map_err(LoadError::database)?;
        let (Some(&first), Some(&last)) = (docs.first(), docs.last()) else {
            return Ok(Vec::new());
        };
        if docs.len() < HASHES_SCAN_MIN {
            return docs
                .iter()
                .map(|&doc| {
                    let found = table.get((id, doc)).map_err(LoadError::database)?;
                    found.map(|g| *g.value()).ok_or_else(|| lacks(doc))
                })
                .collect();
        }
        // Many documents: one pass over their range beats a lookup each.
        let mut out = Vec::with_capacity(docs.len());
        let mut wanted = docs.iter().copied().peekable();
        for entry in table
            .range((id, first)..=(id, last))
            .map_err(LoadError::database)?
        {
            let (key, hash) = entry.map_err(LoadError::database)?;
            let doc = key.value().1;
            match wanted.peek() {
                Some(&want) if want == doc => {
                    out.push(*hash.value());
                    wanted.next();
                }
                Some(&want) if want < doc => return Err(lacks(want)),
                Some(_) => {}
                None => break,
            }
        }
        match wanted.next() {
            Some(doc) => Err(lacks(doc)),
            None => Ok(out),
        }
    }

    /// Drops the whole index of `id`, to rebuild it, in one transaction
    /// (removing a mailbox drops its index in the same transaction).
    pub fn search_drop(&self, id: &str) -> Result<(), CommitError> {
        let mut txn = self.inner.db.begin_write().map_err(CommitError::database)?;
        txn.set_durability(Durability::None)
            .map_err(CommitError::database)?;
        SearchTables::open(&txn)?.drop_rows(id)?;
        txn.commit().map_err(CommitError::database)?;
        Ok(())
    }
}

/// The index's tables, open in one write transaction.
pub(super) struct SearchTables<'txn> {
    state: Table<'txn, &'static str, (u32, u64)>,
    docs: Table<'txn, (&'static str, &'static [u8; 32]), u32>,
    hashes: Table<'txn, (&'static str, u32), &'static [u8; 32]>,
    postings: Table<'txn, (&'static str, &'static str, u32), &'static [u8]>,
}

impl<'txn> SearchTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, CommitError> {
        let db = |e: redb::TableError| CommitError::database(e);
        Ok(SearchTables {
            state: txn.open_table(SEARCH_STATE).map_err(db)?,
            docs: txn.open_table(SEARCH_DOCS).map_err(db)?,
            hashes: txn.open_table(SEARCH_HASHES).map_err(db)?,
            postings: txn.open_table(SEARCH_POSTINGS).map_err(db)?,
        })
    }

    /// Removes every row of `id`'s index.
    pub(super) fn drop_rows(&mut self, id: &str) -> Result<(), CommitError> {
        let db = |e: redb::StorageError| CommitError::database(e);
        self.state.remove(id).map_err(db)?;
        self.docs
            .retain_in((id, &[0u8; 32])..=(id, &[0xff; 32]), |_, _| false)
            .map_err(db)?;
        self.hashes
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
            .map_err(db)?;
        // Every word sorts below "\u{10ffff}" twice.
        self.postings
            .retain_in(
                (id, "", 0)..=(id, "\u{10ffff}\u{10ffff}", u32::MAX),
                |_, _| false,
            )
            .map_err(db)?;
        Ok(())
    }
}
