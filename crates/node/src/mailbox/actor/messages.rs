//! The message bytes beside the mailbox: the actor reads a mail's stored
//! message from the host's blob store for `get`, hands a replica the
//! blobs of the ops it ships, and keeps the store's record of which blobs
//! this mailbox names in step with its index, so blobs no mailbox needs
//! are collected. Body and text search terms are looked up in the
//! full-text index of the messages (`search.rs`).
//!
//! Every read of a blob is checked against its hash by the store: a damaged
//! blob is an error naming it, never wrong bytes, and the owner's client
//! then reads another replica.

use std::collections::HashMap;
use std::sync::Arc;

use super::{E, MailboxActor};
use crate::mailbox::request::{Op, Request};
use dem_proto::mail::{GetParts, MailRead, hash_from_hex};

/// Blob hashes the mailbox lists per call when the host reconciles.
const REFS_PAGE: u32 = 10_000;
/// Converted messages taken from the mailbox per call after a restore.
const CONVERTED_PAGE: u32 = 64;
/// Bytes of converted messages put into the store per commit.
const CONVERTED_COMMIT_BYTES: usize = 16 << 20;

/// The hash of the message blob a logged op names, if it is a delivery.
pub(crate) fn message_of(op: &[u8]) -> Option<[u8; 32]> {
    match Op::decode(op) {
        Ok(Op {
            request: Request::Deliver { mail, .. },
            ..
        }) => mail.message.hash_bytes(),
        _ => None,
    }
}

impl MailboxActor {
    /// Fills in the asked range of the stored message.
    pub(super) fn read_message(&self, read: &mut MailRead, parts: GetParts) -> Result<(), E> {
        let Some(range) = parts.message else {
            return Ok(());
        };
        let unavailable = |reason: String| E::MessageUnavailable {
            hash: read.detail.message.hash.clone(),
            reason,
        };
        let Some(store) = &self.store else {
            return Err(unavailable(
                "this mailbox is not stored on this host".into(),
            ));
        };
        let hash = read
            .detail
            .message
            .hash_bytes()
            .ok_or_else(|| unavailable("the mailbox names a malformed hash".into()))?;
        let bytes = store
            .message(&hash)
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable("this host does not hold it".into()))?;
        let len = bytes.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len).max(range.start.min(len)) as usize;
        read.bytes = Some(bytes[start..end].to_vec());
        Ok(())
    }

    /// The message blobs the deliveries among `ops` name, as this host
    /// holds them; a blob it lacks is left out (the replica then holds the
    /// mail without its bytes until it gets them from another).
    pub(super) fn messages_for(&self, ops: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            let Some(hash) = message_of(op) else {
                continue;
            };
            if !seen.insert(hash) {
                continue;
            }
            // An op whose commit is still in flight: its bytes are here.
            if let Some((_, bytes)) = self.unsettled_messages.get(&hash) {
                out.push(bytes.to_vec());
                continue;
            }
            match store.message(&hash) {
                Ok(Some(bytes)) => out.push(bytes),
                Ok(None) => tracing::warn!(
                    message = %blake3::Hash::from_bytes(hash).to_hex(),
                    "a delivery to ship names a message this host does not hold"
                ),
                Err(e) => tracing::warn!("a message to ship is unreadable: {e}"),
            }
        }
        out
    }

    /// Sorts the blobs a replica sent by their hash, checking each.
    pub(super) fn by_hash(messages: Vec<Vec<u8>>) -> HashMap<[u8; 32], Vec<u8>> {
        messages
            .into_iter()
            .map(|m| (*blake3::hash(&m).as_bytes(), m))
            .collect()
    }

    /// Every blob hash the mailbox's index names.
    pub(super) async fn listed_messages(&mut self) -> Result<Vec<[u8; 32]>, E> {
        let mut out = Vec::new();
        let mut offset = 0u32;
        loop {
            let instance = self
                .instance
                .as_mut()
                .ok_or_else(|| E::Gone(self.id.clone()))?;
            let page = match instance.message_refs(offset, REFS_PAGE).await {
                Ok(p) => p,
                Err(trap) => {
                    self.drop_instance();
                    return Err(E::Trap(trap));
                }
            };
            if page.is_empty() {
                return Ok(out);
            }
            offset = offset.saturating_add(page.len() as u32);
            out.extend(page.iter().filter_map(|h| hash_from_hex(h)));
        }
    }

    /// Tells the store which blobs this mailbox still names, so it collects
    /// the ones no mailbox on this host needs. Queued behind every append
    /// made so far, so a blob of an op just logged is never dropped.
    pub(super) async fn reconcile_messages(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        match self.listed_messages().await {
            Ok(keep) => {
                let commit = store.retain_message_refs(self.id.as_str(), keep);
                tokio::spawn(async move {
                    if let Err(e) = commit.await {
                        tracing::warn!("collecting unneeded messages failed: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("listing the mailbox's messages failed: {e}"),
        }
    }

    /// After a restore: if the snapshot was older than schema 4, stores the
    /// messages the mailbox wrote from the bodies it held, before the
    /// mailbox is used (its index names them), then snapshots the converted
    /// state so the conversion is not done again at every wake.
    pub(super) async fn after_restore(&mut self) -> Result<(), E> {
        if self.store_converted().await? > 0
            && let Some(commit) = self.snapshot_now().await
        {
            commit.await?;
        }
        Ok(())
    }

    async fn store_converted(&mut self) -> Result<usize, E> {
        let Some(store) = self.store.clone() else {
            return Ok(0);
        };
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let mut stored = 0usize;
        loop {
            let instance = self
                .instance
                .as_mut()
                .ok_or_else(|| E::Gone(self.id.clone()))?;
            let page = match instance.take_converted(CONVERTED_PAGE).await {
                Ok(p) => p,
                Err(trap) => {
                    self.drop_instance();
                    return Err(E::Trap(trap));
                }
            };
            let done = page.is_empty();
            for m in page {
                batch_bytes += m.len();
                batch.push(m);
            }
            if (done && !batch.is_empty())
                || batch_bytes >= CONVERTED_COMMIT_BYTES
                || batch.len() >= dem_store::MESSAGES_PER_REQUEST_MAX
            {
                stored += batch.len();
                let chunk = std::mem::take(&mut batch);
                batch_bytes = 0;
                store.put_messages(self.id.as_str(), chunk).await?;
            }
            if done {
                if stored > 0 {
                    tracing::info!(
                        messages = stored,
                        "stored the messages of a mailbox converted from an older schema"
                    );
                }
                return Ok(stored);
            }
        }
    }
}
