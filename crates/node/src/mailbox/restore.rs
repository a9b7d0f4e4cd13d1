//! Rebuilding a mailbox instance from durable state: instantiate its
//! component, restore the snapshot, replay the log tail in order. The actor
//! does this when it wakes (from what the store loads); an import does it
//! from the state it was sent, while the store writes that same state, so
//! proving that an incoming mailbox restores costs no time after its
//! commit and leaves it awake.

use std::sync::Arc;

use super::MailboxCallError as E;
use super::clock::HybridClock;
use super::request::Op;
use crate::replica::{Fit, VersionVector, Window};
use dem_proto::ids::{CodeHash, MailboxId};
use dem_runtime::{MailboxInstance, Runtime};
use dem_store::{MailboxMeta, SnapshotRecord};

/// A running instance at the state of a snapshot plus a log tail, and what
/// the actor keeps track of about that state.
pub(crate) struct Restored {
    pub instance: MailboxInstance,
    /// The replicated ops the state includes.
    pub vv: VersionVector,
    /// The tail's ops, to ship to replicas that lack them.
    pub window: Window,
    /// Seq of the newest op (the snapshot's when the tail is empty).
    pub last_seq: u64,
    pub snapshot_seq: u64,
    pub snapshot_bytes: u64,
    /// Bytes of the tail, for the snapshot policy.
    pub log_bytes: u64,
}

/// The durable state to rebuild from, borrowed from wherever it is.
pub(crate) struct Source<'a> {
    pub snapshot: Option<&'a SnapshotRecord>,
    /// Ops after the snapshot, seq-ascending and contiguous.
    pub tail: &'a [(u64, Vec<u8>)],
    pub last_seq: u64,
}

/// Instantiates `meta`'s component and brings it to `source`'s state.
pub(crate) async fn restore(
    runtime: &Runtime,
    clock: &HybridClock,
    id: &MailboxId,
    label: Arc<str>,
    meta: &MailboxMeta,
    source: Source<'_>,
) -> Result<Restored, E> {
    let mut instance = runtime
        .instantiate_mailbox(&CodeHash(meta.code_hash), label)
        .await?;
    let restore_err = |reason: String| E::Restore {
        id: id.clone(),
        reason,
    };
    let mut vv = source.snapshot.map(|s| s.vv.clone()).unwrap_or_default();
    let mut window = Window::starting_at(vv.clone());
    if let Some(snap) = source.snapshot {
        instance
            .restore(snap.schema_version, &snap.bytes)
            .await
            .map_err(|e| restore_err(e.to_string()))?
            .map_err(|e| restore_err(e.to_string()))?;
    }
    let mut log_bytes = 0;
    if !source.tail.is_empty() {
        instance
            .set_replaying(true)
            .await
            .map_err(|e| restore_err(e.to_string()))?;
    }
    for (seq, bytes) in source.tail {
        log_bytes += bytes.len() as u64;
        let mut op = Op::decode(bytes).map_err(|e| restore_err(format!("log entry {seq}: {e}")))?;
        let op_id = op.id_after(&vv);
        if vv.fit(op_id) != Fit::Next {
            return Err(restore_err(format!(
                "log entry {seq} is op {op_id:?}, out of order after {vv}"
            )));
        }
        vv.record(op_id);
        window.push(op_id, bytes.as_slice().into());
        clock.observe(op.ctx.hlc);
        match instance.call(Some(op.ctx), &mut op.request).await {
            Ok(Ok(_)) => {}
            Ok(Err(refusal)) => {
                // Ops from other replicas are logged even when they change
                // nothing here (a concurrent change won).
                tracing::debug!(seq, "replayed {} was refused: {refusal}", op.request.name())
            }
            Err(trap) => {
                return Err(restore_err(format!("replaying log entry {seq}: {trap}")));
            }
        }
    }
    instance
        .set_replaying(false)
        .await
        .map_err(|e| restore_err(e.to_string()))?;
    Ok(Restored {
        instance,
        vv,
        window,
        last_seq: source.last_seq,
        snapshot_seq: source.snapshot.map_or(0, |s| s.seq),
        snapshot_bytes: source.snapshot.map_or(0, |s| s.bytes.len() as u64),
        log_bytes,
    })
}
