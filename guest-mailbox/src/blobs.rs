//! What the mailbox tells the host's blob store: which message blobs its
//! mails name (`message-refs`, for collecting the ones nobody names), and
//! the messages it wrote itself while converting an old snapshot
//! (`take-converted`, see `schema_v3.rs`).
//!
//! The blob store sits beside the mailbox on each host; the mailbox never
//! holds message bytes in its state, only the hashes in `StoredMail`.

use crate::hash::to_hex;
use crate::limits::{PAGE_LIMIT_MAX, SNAPSHOT_CHUNK_BYTES_MAX};
use crate::state::Mailbox;

impl Mailbox {
    /// The message blobs of the mails held (deleted mails are gone from
    /// `mails`, so their blobs are not named), each once, in ascending
    /// hash order (raw and hex orders agree), from `offset`, at most
    /// `limit` (capped at `PAGE_LIMIT_MAX`). Attachment blobs are not
    /// listed: they are references the host keeps apart.
    pub fn message_refs(&self, offset: u32, limit: u32) -> Vec<String> {
        self.idx
            .blobs
            .keys()
            .skip(offset as usize)
            .take(limit.min(PAGE_LIMIT_MAX) as usize)
            .map(to_hex)
            .collect()
    }

    /// Hands out converted messages, each once, in hash order: at most
    /// `max` (capped at `PAGE_LIMIT_MAX`), and no more than add up to
    /// `SNAPSHOT_CHUNK_BYTES_MAX`, but always one if any are left, however
    /// large. Empty means none are left. The host stores each under its
    /// BLAKE3, which is the hash the converted mail names.
    pub fn take_converted(&mut self, max: u32) -> Vec<Vec<u8>> {
        let max = max.min(PAGE_LIMIT_MAX) as usize;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while out.len() < max {
            let Some(next) = self.converted.first_entry() else {
                break;
            };
            let len = next.get().len() as u64;
            if !out.is_empty() && bytes + len > u64::from(SNAPSHOT_CHUNK_BYTES_MAX) {
                break;
            }
            bytes += len;
            out.push(next.remove());
        }
        out
    }
}

#[cfg(test)]
mod tests;
