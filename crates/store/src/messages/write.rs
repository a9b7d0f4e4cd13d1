//! The message writes, inside the writer thread's batch transaction
//! (`writer.rs` calls them per request): storing blobs with their
//! references, dropping references, and removing each blob in the
//! transaction that drops its last reference. The bytes go to the batch's
//! pack appends (`pack.rs`), their places to `MESSAGE_PLACES`.
//!
//! They work on the transaction's tables directly, not on a per-batch
//! cache as `META` does: redb's write transaction sees its own writes, so
//! a later request of the batch sees what an earlier one stored or
//! removed (a blob one mailbox let go of and another stores again in the
//! same batch is simply written back). Every error here is redb's, and
//! aborts the batch.

use redb::ReadableTable;

use super::Message;
use super::pack::Place;
use crate::CommitError;
use crate::tables::USAGE_KEY;
use crate::writer::Tables;

/// Bytes of `messages`, for the writer's batch budget.
pub(crate) fn bytes(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.bytes.len()).sum()
}

/// Stores each message once per host (a message already here is not
/// written again) and records that `id` references it.
pub(crate) fn put(t: &mut Tables<'_>, id: &str, messages: &[Message]) -> Result<(), CommitError> {
    for m in messages {
        let stored = t
            .places
            .get(&m.hash)
            .map_err(CommitError::database)?
            .is_some();
        if !stored {
            place(t, &m.hash, &m.bytes)?;
            count_usage(t, Change::Added, m.bytes.len())?;
        }
        t.message_refs
            .insert((id, &m.hash), ())
            .map_err(CommitError::database)?;
        t.message_users
            .insert((&m.hash, id), ())
            .map_err(CommitError::database)?;
    }
    Ok(())
}

/// Writes `m` over its damaged or missing copy, if any mailbox names it.
pub(crate) fn repair(t: &mut Tables<'_>, m: &Message) -> Result<(), CommitError> {
    let named = t
        .message_users
        .range((&m.hash, "")..)
        .map_err(CommitError::database)?
        .next()
        .transpose()
        .map_err(CommitError::database)?
        .is_some_and(|(k, _)| k.value().0 == &m.hash);
    if !named {
        return Ok(());
    }
    let old = unplace(t, &m.hash)?.map(|p| p.len as usize);
    place(t, &m.hash, &m.bytes)?;
    match old {
        Some(len) if len != m.bytes.len() => {
            count_usage(t, Change::Removed, len)?;
            count_usage(t, Change::Added, m.bytes.len())?;
        }
        Some(_) => {}
        None => count_usage(t, Change::Added, m.bytes.len())?,
    }
    Ok(())
}

/// Notes that `id` took references while it had no mailbox here.
pub(crate) fn wait_for_mailbox(t: &mut Tables<'_>, id: &str) -> Result<(), CommitError> {
    t.message_waiting
        .insert(id, ())
        .map_err(CommitError::database)?;
    Ok(())
}

/// `id` no longer waits: its mailbox came, or its references were dropped.
pub(crate) fn stop_waiting(t: &mut Tables<'_>, id: &str) -> Result<(), CommitError> {
    t.message_waiting
        .remove(id)
        .map_err(CommitError::database)?;
    Ok(())
}

/// Drops the references of `id` that `keep` (sorted) does not list.
pub(crate) fn retain_refs(
    t: &mut Tables<'_>,
    id: &str,
    keep: &[[u8; 32]],
) -> Result<(), CommitError> {
    for hash in refs_of(t, id)? {
        if keep.binary_search(&hash).is_err() {
            unref(t, id, &hash)?;
        }
    }
    Ok(())
}

/// Drops every reference of `id` (its mailbox is removed, or its import
/// failed).
pub(crate) fn drop_refs(t: &mut Tables<'_>, id: &str) -> Result<(), CommitError> {
    for hash in refs_of(t, id)? {
        unref(t, id, &hash)?;
    }
    Ok(())
}

/// The hashes `id` references, collected first so that the tables can be
/// changed while going through them.
fn refs_of(t: &Tables<'_>, id: &str) -> Result<Vec<[u8; 32]>, CommitError> {
    let mut hashes = Vec::new();
    for entry in t
        .message_refs
        .range((id, &[0u8; 32])..=(id, &[0xff; 32]))
        .map_err(CommitError::database)?
    {
        let (key, _) = entry.map_err(CommitError::database)?;
        hashes.push(*key.value().1);
    }
    Ok(hashes)
}

/// Drops one reference, and the blob with it if it was the last.
fn unref(t: &mut Tables<'_>, id: &str, hash: &[u8; 32]) -> Result<(), CommitError> {
    t.message_refs
        .remove((id, hash))
        .map_err(CommitError::database)?;
    t.message_users
        .remove((hash, id))
        .map_err(CommitError::database)?;
    // "" is the least id, so this range starts at the blob's first user.
    let still_used = match t
        .message_users
        .range((hash, "")..)
        .map_err(CommitError::database)?
        .next()
    {
        Some(entry) => entry.map_err(CommitError::database)?.0.value().0 == hash,
        None => false,
    };
    if still_used {
        return Ok(());
    }
    let removed = unplace(t, hash)?.map(|p| p.len as usize);
    // A reference without its blob would be a bug of this module, but the
    // reference is the thing to drop then, and there are no bytes to count.
    if let Some(len) = removed {
        count_usage(t, Change::Removed, len)?;
    }
    Ok(())
}

/// Whether a blob came or went, for [`count_usage`].
#[derive(Clone, Copy)]
enum Change {
    Added,
    Removed,
}

/// Keeps `MESSAGE_USAGE` in step with `MESSAGES`.
fn count_usage(t: &mut Tables<'_>, change: Change, len: usize) -> Result<(), CommitError> {
    let (count, bytes) = t
        .message_usage
        .get(USAGE_KEY)
        .map_err(CommitError::database)?
        .map_or((0, 0), |g| g.value());
    let len = len as u64;
    // Saturating: a sum that went wrong (a store edited by hand) must not
    // stop the writer; the metric is then off, nothing else.
    let sums = match change {
        Change::Added => (count.saturating_add(1), bytes.saturating_add(len)),
        Change::Removed => (count.saturating_sub(1), bytes.saturating_sub(len)),
    };
    t.message_usage
        .insert(USAGE_KEY, sums)
        .map_err(CommitError::database)?;
    Ok(())
}

/// Appends `bytes` to the batch's pack and records where they are.
pub(crate) fn place(t: &mut Tables<'_>, hash: &[u8; 32], bytes: &[u8]) -> Result<(), CommitError> {
    let p = t
        .pack
        .append(bytes)
        .map_err(|e| CommitError::MessagePack(crate::error::Shared::new(e)))?;
    t.places
        .insert(hash, p.row())
        .map_err(CommitError::database)?;
    t.pack_entries
        .insert((p.pack, hash), ())
        .map_err(CommitError::database)?;
    add_live(t, p.pack, i64::from(p.len)).map(drop)
}

/// Forgets where `hash`'s bytes are, which makes them dead; its pack is
/// queued for compaction once less than half of it is live.
pub(crate) fn unplace(t: &mut Tables<'_>, hash: &[u8; 32]) -> Result<Option<Place>, CommitError> {
    let Some(p) = t
        .places
        .remove(hash)
        .map_err(CommitError::database)?
        .map(|g| Place::from_row(g.value()))
    else {
        return Ok(None);
    };
    t.pack_entries
        .remove((p.pack, hash))
        .map_err(CommitError::database)?;
    let live = add_live(t, p.pack, -i64::from(p.len))?;
    if p.pack != t.pack.pack()
        && !t.compact.contains(&p.pack)
        && live.saturating_mul(2) < t.packs.file_len(p.pack)
    {
        t.compact.push(p.pack);
    }
    Ok(Some(p))
}

/// Changes a pack's live bytes by `delta`; the new sum. Saturating, like
/// [`count_usage`]: a sum gone wrong costs an early or late compaction.
fn add_live(t: &mut Tables<'_>, pack: u32, delta: i64) -> Result<u64, CommitError> {
    let live = t
        .pack_live
        .get(pack)
        .map_err(CommitError::database)?
        .map_or(0, |g| g.value());
    let live = live.saturating_add_signed(delta);
    if live == 0 {
        t.pack_live.remove(pack).map_err(CommitError::database)?;
    } else {
        t.pack_live
            .insert(pack, live)
            .map_err(CommitError::database)?;
    }
    Ok(live)
}
