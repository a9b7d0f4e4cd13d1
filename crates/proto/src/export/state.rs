//! A mailbox's durable state as it leaves a host, and the records it is
//! made of: what `export` yields, what an import takes, and what a store
//! keeps. Plain data, so the export format and its importer need no store.

use serde::{Deserialize, Serialize};

use crate::mail::PluginEntry;
use crate::mailbox::Op;
use crate::{Fit, VersionVector};

/// What the host records about a mailbox besides its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxMeta {
    /// blake3 of the guest component the mailbox runs.
    pub code_hash: [u8; 32],
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A snapshot of a mailbox's guest state taken after op `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Seq of the last op the snapshot includes (0: before any op).
    pub seq: u64,
    /// The guest's state schema version, so a newer guest can migrate.
    pub schema_version: u32,
    /// The guest's opaque state; shared, so that a move sends slices of it
    /// without copying them.
    pub bytes: bytes::Bytes,
    /// The replicated ops the state includes.
    pub vv: VersionVector,
}

/// A hasher that, fed a snapshot of mailbox `id`, yields its keyed BLAKE3:
/// the name a store files it under, and its checksum in an export.
pub fn snapshot_hasher(id: &str) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id.as_bytes());
    h
}

/// A mailbox's durable state as it leaves the host: what `export` yields
/// and `import` takes.
#[derive(Debug, Clone)]
pub struct ExportedState {
    pub meta: MailboxMeta,
    pub snapshot: Option<SnapshotRecord>,
    /// Ops after the snapshot, by sequence number.
    pub tail: Vec<(u64, Vec<u8>)>,
    /// Installed plugins, whose code must travel along.
    pub plugins: Vec<PluginEntry>,
    /// The snapshot's keyed BLAKE3 ([`snapshot_hasher`]) when already
    /// known: the name of the file it was read from, unhashed, so the
    /// receiver's check also catches a file damaged here.
    pub snapshot_checksum: Option<[u8; 32]>,
    /// The message blobs the mailbox names (BLAKE3 of each), which travel
    /// with it; an import hands their bytes over as they arrive.
    pub messages: Vec<[u8; 32]>,
}

/// Why a log tail does not follow its snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// An entry is not an encoded op.
    #[error("log entry {seq} is malformed: {source}")]
    Malformed {
        seq: u64,
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// An entry is not the next op of its origin.
    #[error("log entry {seq} is out of order")]
    OutOfOrder { seq: u64 },
}

impl ExportedState {
    /// The replicated ops the state includes: the snapshot's vector plus
    /// the tail's ops.
    pub fn vv(&self) -> Result<VersionVector, TailError> {
        let base = self
            .snapshot
            .as_ref()
            .map(|s| s.vv.clone())
            .unwrap_or_default();
        vv_after(base, &self.tail)
    }

    /// The log position the state reaches.
    pub fn last_seq(&self) -> u64 {
        self.tail
            .last()
            .map(|(s, _)| *s)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0)
    }
}

/// The replicated ops a snapshot at `vv` plus `tail` include.
pub fn vv_after(
    mut vv: VersionVector,
    tail: &[(u64, Vec<u8>)],
) -> Result<VersionVector, TailError> {
    for (seq, bytes) in tail {
        let op = Op::decode(bytes).map_err(|source| TailError::Malformed { seq: *seq, source })?;
        let id = op.id_after(&vv);
        if vv.fit(id) != Fit::Next {
            return Err(TailError::OutOfOrder { seq: *seq });
        }
        vv.record(id);
    }
    Ok(vv)
}
