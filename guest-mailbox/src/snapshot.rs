//! Snapshot and restore of the whole mailbox, in chunks, plus `stats`.
//!
//! Format: `DEMMBX` magic, the schema version as u32 little-endian, then
//! `MailboxState` as compact (positional) MessagePack. Positional encoding
//! is about a third smaller than named fields and quicker to decode; the
//! price is that any change to the state's shape needs a new schema version
//! with its own decode arm in [`decode`], which must keep decoding every
//! older version (golden fixture tests guard versions 1 to 5). Restoring
//! a snapshot older than schema 4 converts it (`schema_v3.rs`), which
//! writes out messages the host must take with `take-converted`. Schema 5
//! holds each mail as the bytes of its entry, so that a restore keeps the
//! buffer and decodes a mail only when it is read (`mails.rs`): a wake
//! then costs a check of each entry, not its decoding.
//!
//! The snapshot is encoded once at `snapshot-begin` and handed out in
//! bounded slices, and a restore is assembled from bounded writes, so no
//! single call copies the whole state across the component boundary. A
//! restore only replaces the state once it fully decoded and its indices
//! rebuilt; on any error the old state stays.

use std::io::Write;

use crate::error::{Result, snapshot, too_large};
use crate::limits::{RESTORE_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX};
use crate::schema_v1::MailboxStateV1;
use crate::schema_v2::MailboxStateV2;
use crate::schema_v3::{Converted, MailboxStateV3};
use crate::state::{Mailbox, MailboxState};
use crate::wit::{MailboxStats, SnapshotInfo};

/// Schema of the state this build writes, and the newest it reads.
/// 1: the first layout. 2: stamps and tombstones for replica merging
/// (`schema_v1.rs` converts 1 to 2). 3: the folder history and each
/// mail's placement (`schema_v2.rs` converts 2 to 3). 4: the mail index
/// with a message blob ref instead of headers and body (`schema_v3.rs`
/// converts 3 to 4). 5: each mail's entry as `bin`, so a restore can
/// decode it lazily (`snapshot/wire.rs`; the same `StoredMail`).
pub const SCHEMA_VERSION: u32 = 5;

/// First bytes of every snapshot.
pub const MAGIC: &[u8; 6] = b"DEMMBX";

const HEADER_LEN: usize = MAGIC.len() + 4;

/// A restore being assembled between `restore-begin` and `restore-finish`.
#[derive(Debug)]
pub struct Restore {
    schema: u32,
    declared: u64,
    buf: Vec<u8>,
}

/// Counts bytes instead of storing them, to size a snapshot cheaply.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn encode_into<W: Write>(state: &MailboxState, mut w: W) {
    // The state holds only strings, integers, floats and collections,
    // all of which MessagePack encodes; writers here never fail.
    w.write_all(MAGIC)
        .and_then(|()| w.write_all(&SCHEMA_VERSION.to_le_bytes()))
        .expect("in-memory write");
    rmp_serde::encode::write(&mut w, state).expect("state always encodes");
}

/// The snapshot bytes of `state`.
pub fn encode(state: &MailboxState, size_hint: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0));
    encode_into(state, &mut buf);
    buf
}

/// Size of the snapshot of `state`, without keeping the bytes.
pub fn encoded_len(state: &MailboxState) -> u64 {
    let mut c = Counter(0);
    encode_into(state, &mut c);
    c.0
}

/// A decoded snapshot, before any conversion.
pub enum Decoded {
    Current(MailboxState),
    /// Schema 3 or older (1 and 2 already brought to 3): needs
    /// [`Decoded::convert`], which writes out messages.
    Old(MailboxStateV3),
}

impl Decoded {
    /// The schema-4 state, and the messages a conversion wrote (none for
    /// a current snapshot).
    pub fn convert(self) -> std::result::Result<Converted, String> {
        match self {
            Decoded::Current(state) => Ok(Converted {
                state,
                messages: Default::default(),
            }),
            Decoded::Old(old) => old.convert(),
        }
    }
}

/// Decodes snapshot bytes announced as `schema`.
#[cfg(test)]
pub fn decode(schema: u32, bytes: &[u8]) -> std::result::Result<Decoded, String> {
    decode_owned(schema, bytes.to_vec())
}

/// Decodes snapshot bytes announced as `schema`; a schema-5 state keeps
/// `bytes` to decode its mails from.
pub fn decode_owned(schema: u32, bytes: Vec<u8>) -> std::result::Result<Decoded, String> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a mailbox snapshot (bad magic)".into());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[MAGIC.len()..HEADER_LEN]);
    let version = u32::from_le_bytes(v);
    if version != schema {
        return Err(format!(
            "snapshot says schema {version} but was announced as schema {schema}"
        ));
    }
    let body = &bytes[HEADER_LEN..];
    let old = match version {
        1 => decode_body::<MailboxStateV1>(body)
            .map(MailboxStateV2::from)
            .map(MailboxStateV3::from),
        2 => decode_body::<MailboxStateV2>(body).map(MailboxStateV3::from),
        3 => decode_body::<MailboxStateV3>(body),
        4 => return decode_body::<wire::StateV4>(body).map(|s| Decoded::Current(s.into())),
        5 => return wire::decode_v5(bytes, HEADER_LEN).map(Decoded::Current),
        v => Err(format!(
            "snapshot schema {v} is not supported by this mailbox build (schema {SCHEMA_VERSION})"
        )),
    };
    old.map(Decoded::Old)
}

/// Decodes and converts, dropping any converted messages: for tests that
/// look only at the state.
#[cfg(test)]
pub fn decode_state(schema: u32, bytes: &[u8]) -> std::result::Result<MailboxState, String> {
    Ok(decode(schema, bytes)?.convert()?.state)
}

/// Decodes with rmp-serde's borrowing slice reader, about twice as fast as
/// its `Read`-based one. That reader does not report where it stopped, so
/// bytes after a complete state go unnoticed; the host hashes every
/// snapshot, which catches such corruption before a restore.
fn decode_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> std::result::Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| format!("snapshot does not decode: {e}"))
}

impl Mailbox {
    pub fn snapshot_begin(&mut self) -> SnapshotInfo {
        // Most of a snapshot is the mail index: its strings and hashes
        // plus some numbers per mail. Starting near that size saves most
        // of the reallocation copies of a growing Vec.
        let hint = self.idx.index_bytes + 64 * self.state.mails.len() as u64 + 4096;
        let bytes = encode(&self.state, hint);
        let info = SnapshotInfo {
            schema_version: SCHEMA_VERSION,
            size_bytes: bytes.len() as u64,
        };
        self.snapshot = Some(bytes);
        info
    }

    /// Up to `max_bytes` (capped at `SNAPSHOT_CHUNK_BYTES_MAX`) of the held
    /// snapshot from `offset`; empty past the end or with no snapshot held.
    pub fn snapshot_read(&self, offset: u64, max_bytes: u32) -> Vec<u8> {
        let Some(bytes) = &self.snapshot else {
            return Vec::new();
        };
        let len = bytes.len() as u64;
        let start = offset.min(len);
        let end = start
            .saturating_add(u64::from(max_bytes.min(SNAPSHOT_CHUNK_BYTES_MAX)))
            .min(len);
        bytes[start as usize..end as usize].to_vec()
    }

    pub fn snapshot_end(&mut self) {
        self.snapshot = None;
    }

    pub fn restore_begin(&mut self, schema: u32, size: u64) -> Result<()> {
        if schema > SCHEMA_VERSION {
            return Err(snapshot(format!(
                "snapshot schema {schema} is newer than this mailbox build (schema {SCHEMA_VERSION})"
            )));
        }
        if schema == 0 {
            return Err(snapshot("snapshot schema 0 does not exist"));
        }
        if size > RESTORE_BYTES_MAX {
            return Err(too_large("snapshot bytes", RESTORE_BYTES_MAX, size));
        }
        if size < HEADER_LEN as u64 {
            return Err(snapshot(format!(
                "a snapshot of {size} bytes is too small to be one"
            )));
        }
        // A previous unfinished restore is abandoned.
        self.restore = None;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size as usize)
            .map_err(|_| snapshot(format!("cannot allocate {size} bytes for the restore")))?;
        self.restore = Some(Restore {
            schema,
            declared: size,
            buf,
        });
        Ok(())
    }

    /// Appends a chunk. Writing past the declared size abandons the
    /// restore, since the stream is then known to be wrong.
    pub fn restore_write(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(r) = self.restore.as_mut() else {
            return Err(snapshot("no restore in progress"));
        };
        let total = r.buf.len() as u64 + chunk.len() as u64;
        if total > r.declared {
            let declared = r.declared;
            self.restore = None;
            return Err(snapshot(format!(
                "restore got {total} bytes, more than the declared {declared}"
            )));
        }
        r.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub fn restore_finish(&mut self) -> Result<()> {
        let Some(r) = self.restore.take() else {
            return Err(snapshot("no restore in progress"));
        };
        if r.buf.len() as u64 != r.declared {
            return Err(snapshot(format!(
                "restore got {} bytes of the declared {}",
                r.buf.len(),
                r.declared
            )));
        }
        // A schema-5 state keeps the buffer (its mails are read from it);
        // the old bodies a conversion renders are copies.
        let decoded = decode_owned(r.schema, r.buf).map_err(snapshot)?;
        let converted = decoded.convert().map_err(snapshot)?;
        let fresh = Mailbox::from_state(converted.state)
            .map_err(|e| snapshot(format!("snapshot state is inconsistent: {e}")))?;
        self.state = fresh.state;
        self.idx = fresh.idx;
        // Messages still waiting from an earlier conversion stay while a
        // mail of the new state names them (a host that restored before
        // taking them must not lose them); the others have no use.
        let names = &self.idx.blobs;
        self.converted.retain(|h, _| names.contains_key(h));
        self.converted.extend(converted.messages);
        Ok(())
    }

    pub fn stats(&self) -> MailboxStats {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        MailboxStats {
            mails: count(self.state.mails.len()),
            mail_bytes: self.idx.mail_bytes,
            folders: count(self.state.folders.len()),
            contacts: count(self.state.contacts.len()),
            tombstones: count(self.state.tombstones.len()),
            plugins: count(self.state.plugins.len()),
            state_bytes: encoded_len(&self.state),
        }
    }
}

#[cfg(test)]
mod tests;
mod wire;
