//! Full-text search of a mailbox: the host's driver of
//! `dem_message::search` (tokenizer, postings, query evaluation), over the
//! rows `dem-store` keeps for it (its `search` module).
//!
//! Before a query with body or text terms is answered, the index is
//! brought up to date: if the mailbox changed since it last caught up
//! (its seq moved), or this actor has not checked yet, every message the
//! mailbox references that the index lacks is read from the blob store
//! and indexed, in batches of bounded memory, each its own short write
//! that never holds up the writer's group commits for long. Deliveries do
//! no indexing, so their commits cost what they did; the first search
//! after many deliveries pays instead (the bench's `search_index_ms`).
//!
//! The words found name messages; the mailbox, the source of truth, is
//! then asked (`search-among`) which of its mails name one of them and
//! match the rest of the query, newest first. A mail deleted or expunged
//! since it was indexed is thus never returned, and the index never needs
//! to forget anything to stay correct; dropping it and indexing again
//! gives the same answers.

use dem_message::search::{Batch, Evaluation, PostingsError, Query, message_words};
use dem_proto::mail::{MailSummary, MailboxError, SearchQuery};
use dem_store::{Corruption, LoadError, MailboxStore, SearchBatch, SearchState, SearchWriteError};

use super::{E, MailboxActor};

/// Messages named per `search-among` call (the guest's limit): a word
/// most mails of a larger mailbox have takes several calls, whose hits
/// are merged.
const CANDIDATES_PER_CALL: usize = 1 << 16;
/// Mails asked of the guest per call (its page limit).
const GUEST_PAGE_MAX: u32 = 1000;
/// (word, document) pairs one indexing batch holds in memory before it
/// is written: some 30 MiB at worst.
const BATCH_POSTINGS_MAX: usize = 1 << 20;
/// Messages per indexing batch, so one write transaction stays short.
const BATCH_DOCS_MAX: usize = 512;

impl MailboxActor {
    /// Search with body or text terms, newest first, at most `limit`.
    pub(super) async fn search_text(
        &mut self,
        query: SearchQuery,
        limit: u32,
    ) -> Result<Vec<MailSummary>, E> {
        let words = Query::parse(&query.body_terms, &query.text_terms)
            .map_err(|e| E::Refused(MailboxError::InvalidArgument(e.to_string())))?;
        let Some(store) = self.store.clone() else {
            return Err(E::Refused(MailboxError::NotAllowed(
                "full-text search needs the mailbox's messages, which this host does not store"
                    .into(),
            )));
        };
        self.catch_up_index(&store).await?;
        let id = self.id.as_str().to_owned();
        let lookup = {
            let (store, id, words) = (store.clone(), id.clone(), words.clone());
            blocking(move || look_up(&store, &id, &words)).await
        };
        let mut hashes = match lookup {
            Ok(hashes) => hashes,
            Err(LookupError::Damaged(e)) => {
                // The index is derived: a damaged one is dropped and made
                // again, once.
                tracing::warn!("the search index is damaged ({e}); rebuilding it");
                store.search_drop(&id)?;
                self.index_checked = false;
                self.catch_up_index(&store).await?;
                blocking(move || look_up(&store, &id, &words))
                    .await
                    .map_err(LookupError::into_call_error)?
            }
            Err(e) => return Err(e.into_call_error()),
        };
        // The guest bisects them.
        hashes.sort_unstable();
        let mut envelope_query = SearchQuery {
            body_terms: Vec::new(),
            text_terms: Vec::new(),
            ..query
        };
        let limit = limit as usize;
        let mut found: Vec<MailSummary> = Vec::new();
        // With no candidate, the mailbox still checks the rest of the
        // query (an unknown folder is an error, as without terms).
        let chunks: Vec<&[[u8; 32]]> = if hashes.is_empty() {
            vec![&[]]
        } else {
            hashes.chunks(CANDIDATES_PER_CALL).collect()
        };
        for chunk in chunks {
            let flat = chunk.concat();
            // Each call answers newest first; the first `limit` of every
            // chunk hold the first `limit` of all.
            let mut from_chunk = 0usize;
            while from_chunk < limit {
                let want = (limit - from_chunk).min(GUEST_PAGE_MAX as usize) as u32;
                let instance = self
                    .instance
                    .as_mut()
                    .ok_or_else(|| E::Gone(self.id.clone()))?;
                let page = match instance
                    .search_among(&mut envelope_query, &flat, from_chunk as u32, want)
                    .await
                {
                    Ok(r) => r.map_err(E::Refused)?,
                    Err(trap) => {
                        self.drop_instance();
                        return Err(E::Trap(trap));
                    }
                };
                let got = page.len();
                from_chunk += got;
                found.extend(page);
                if got < want as usize {
                    break;
                }
            }
        }
        // The mailbox's order: (date, uid) newest first.
        found.sort_by(|a, b| (b.date_ms, b.uid, &b.id).cmp(&(a.date_ms, a.uid, &a.id)));
        found.truncate(limit);
        Ok(found)
    }

    /// Indexes what the mailbox references and the index lacks, unless
    /// nothing changed since the last time this actor checked.
    pub(super) async fn catch_up_index(&mut self, store: &MailboxStore) -> Result<(), E> {
        // The references of every op handed to the writer are committed.
        self.settle().await?;
        let (store, id) = (store.clone(), self.id.as_str().to_owned());
        let (seq, checked) = (self.applied_seq, self.index_checked);
        let indexed = blocking(move || index_up_to(&store, &id, seq, checked)).await?;
        if indexed > 0 {
            tracing::debug!(indexed, "indexed messages for search");
        }
        self.index_checked = true;
        Ok(())
    }
}

/// Why a lookup failed.
enum LookupError {
    Load(LoadError),
    /// Stored postings do not decode.
    Damaged(PostingsError),
}

impl From<LoadError> for LookupError {
    fn from(e: LoadError) -> Self {
        LookupError::Load(e)
    }
}

impl LookupError {
    fn into_call_error(self) -> E {
        match self {
            LookupError::Load(e) => E::Load(e),
            LookupError::Damaged(e) => E::Load(LoadError::Corrupt(Corruption::Inconsistent(
                format!("the search index: {e}"),
            ))),
        }
    }
}

/// The messages of `id` that have every word of `words`, by document.
fn look_up(store: &MailboxStore, id: &str, words: &Query) -> Result<Vec<[u8; 32]>, LookupError> {
    let SearchState { docs, .. } = store.search_state(id)?;
    let mut eval = Evaluation::new(docs);
    for word in &words.words {
        for (from, to) in word.ranges() {
            store.search_chunks(id, &from, &to, |chunk| {
                eval.add_chunk(chunk).map_err(LookupError::Damaged)
            })?;
        }
        eval.end_word();
        if eval.is_hopeless() {
            break;
        }
    }
    let docs: Vec<u32> = eval.finish().iter().collect();
    Ok(store.search_hashes(id, &docs)?)
}

/// Brings the index of `id` up to the mailbox at `seq`; how many messages
/// it indexed. Skipped when the index already saw `seq` and `checked`.
/// A message the store lacks or cannot read is left for a later catch-up.
pub(crate) fn index_up_to(
    store: &MailboxStore,
    id: &str,
    seq: u64,
    checked: bool,
) -> Result<usize, E> {
    let state = store.search_state(id)?;
    if checked && state.seen_seq == seq {
        return Ok(0);
    }
    let mut batch = Batch::new(state.docs);
    let mut hashes = Vec::new();
    let mut indexed = 0;
    for hash in store.search_unindexed(id)? {
        let words = match store.message(&hash) {
            Ok(Some(bytes)) => message_words(&bytes),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("a message to index is unreadable: {e}");
                continue;
            }
        };
        if let Err(e) = batch.add(words) {
            // Only a damaged count gets here: start the numbering again.
            store.search_drop(id)?;
            return Err(E::Load(LoadError::Corrupt(Corruption::Inconsistent(
                format!("{e}; it was dropped and is rebuilt at the next search"),
            ))));
        }
        hashes.push(hash);
        if batch.postings() >= BATCH_POSTINGS_MAX || hashes.len() >= BATCH_DOCS_MAX {
            indexed += hashes.len();
            write(store, id, &mut batch, &mut hashes, None)?;
        }
    }
    indexed += hashes.len();
    write(store, id, &mut batch, &mut hashes, Some(seq))?;
    Ok(indexed)
}

/// Writes `batch` and starts the next one.
fn write(
    store: &MailboxStore,
    id: &str,
    batch: &mut Batch,
    hashes: &mut Vec<[u8; 32]>,
    seen_seq: Option<u64>,
) -> Result<(), E> {
    let done = std::mem::replace(batch, Batch::new(batch.next_doc()));
    let first_doc = done.first_doc();
    let rows = SearchBatch {
        first_doc,
        hashes: std::mem::take(hashes),
        chunks: done.encode(),
    };
    store.search_write(id, rows, seen_seq).map_err(|e| match e {
        SearchWriteError::Commit(e) => E::Commit(e),
        e => E::Load(LoadError::Corrupt(Corruption::Inconsistent(e.to_string()))),
    })
}

/// Runs `f` on the blocking pool: the index reads and writes redb and
/// decodes messages, which must not hold up the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
