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
//! A mail sealed end to end is stored as ciphertext (`SealedMail::is_blob`)
//! and indexed under no word: its words are the owner's to index, on the
//! owner's machine, and the ciphertext's bytes mean nothing. It is still
//! recorded as indexed, so it is not read again at every catch-up. Body
//! and text terms thus never match sealed mail on a host.
//!
//! The words found name messages; the mailbox, the source of truth, is
//! then asked (`search-among`) which of its mails name one of them and
//! match the rest of the query, newest first. A mail deleted or expunged
//! since it was indexed is thus never returned, and the index never needs
//! to forget anything to stay correct; dropping it and indexing again
//! gives the same answers.

use std::collections::BTreeSet;

use dem_identity::SealedMail;
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
            Ok(Some(bytes)) => blob_words(&bytes),
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

/// The words a stored blob is indexed under: a plaintext message's, and
/// none for a sealed mail's ciphertext.
fn blob_words(bytes: &[u8]) -> BTreeSet<String> {
    if SealedMail::is_blob(bytes) {
        return BTreeSet::new();
    }
    message_words(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{Incoming, Mailboxes, MailboxesConfig, Request, Response};
    use dem_identity::{EnvelopeAttachment, KeyPair, MailEnvelope, Name};
    use dem_proto::ids::MailboxId;

    /// A sealed mail whose "ciphertext" is a readable message, the worst
    /// case: the indexer must not look inside it.
    fn sealed_over(bytes: &[u8], to: &KeyPair) -> (SealedMail, MailEnvelope) {
        let alice = KeyPair::from_seed(&[1; 32]);
        let envelope = MailEnvelope {
            sender_name: Name::new("alice").unwrap(),
            recipient: to.user_id(),
            ciphertext_hash: *blake3::hash(bytes).as_bytes(),
            ciphertext_bytes: bytes.len() as u64,
            attachments: vec![EnvelopeAttachment {
                id: [3; 32],
                ciphertext_bytes: 10,
            }],
            wrapped_key: vec![1; 100],
        };
        let mail = SealedMail::seal(&alice, &envelope, bytes.to_vec(), 1_000).unwrap();
        (mail, envelope)
    }

    const READABLE: &[u8] =
        b"From: alice@dem\r\nTo: bob@dem\r\nSubject: kumquat\r\n\r\nkumquat pie\r\n";

    #[test]
    fn a_sealed_blob_has_no_words() {
        let bob = KeyPair::from_seed(&[2; 32]);
        let (mail, _) = sealed_over(READABLE, &bob);
        assert!(blob_words(&mail.to_blob().unwrap()).is_empty());
        assert!(blob_words(READABLE).contains("kumquat"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn body_search_never_finds_sealed_mail() {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::open(
            dir.path(),
            dem_runtime::RuntimeConfig::default(),
            MailboxesConfig::default(),
        )
        .unwrap();
        let bob = KeyPair::from_seed(&[2; 32]);
        let who = MailboxId::new(bob.user_id().to_hex()).unwrap();
        boxes.create(&who, None).await.unwrap();
        let (mail, envelope) = sealed_over(READABLE, &bob);
        let sealed = Incoming::sealed(&mail, &envelope).unwrap();
        let sealed_id = sealed.mail.id.clone();
        boxes.deliver(&who, sealed).await.unwrap();
        let plain = Incoming::parse("plain".into(), READABLE.to_vec(), vec![]).unwrap();
        boxes.deliver(&who, plain).await.unwrap();
        let terms = |t: &[&str]| t.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let search = |body: &[&str], text: &[&str]| Request::Search {
            query: SearchQuery {
                body_terms: terms(body),
                text_terms: terms(text),
                ..SearchQuery::default()
            },
            limit: 10,
        };
        // Words of the plaintext message, and the sender's name: only the
        // plaintext mail has them in the host's index.
        for request in [
            search(&["kumquat"], &[]),
            search(&[], &["alice"]),
            search(&[], &["kumquat"]),
        ] {
            match boxes.call(&who, request).await.unwrap() {
                Response::Summaries(found) => {
                    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
                    assert_eq!(ids, vec!["plain"]);
                }
                other => panic!("{other:?}"),
            }
        }
        // The sealed mail is filed, and listed by its envelope.
        let all = Request::Search {
            query: SearchQuery::default(),
            limit: 10,
        };
        match boxes.call(&who, all).await.unwrap() {
            Response::Summaries(found) => {
                assert!(
                    found
                        .iter()
                        .any(|m| m.id == sealed_id && m.from == "alice@dem")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
