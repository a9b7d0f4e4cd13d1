//! The sans-IO reader of an export stream: feed it encoded frames, then
//! `finish`. It checks the frame order, every announced size and count, the
//! snapshot's BLAKE3 and the stream digest in `End`, hashing as frames
//! arrive so that finishing costs no second pass over the snapshot.
//!
//! In streaming mode ([`Importer::streaming`]) it keeps no snapshot bytes:
//! each `Snapshot` chunk is handed back to the caller, which writes it
//! where the state will live while the rest is still arriving (a move's
//! target stages it as the snapshot file), so a 4 GiB snapshot never sits
//! in memory and the write overlaps the transfer.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{
    EXPORT_FORMAT_VERSION, EXPORT_FORMAT_VERSION_MIN, ExportHeader, FRAME_BYTES_MAX, FrameRef,
    IMPORT_CODE_BYTES_MAX, IMPORT_CODES_MAX, IMPORT_MESSAGE_BYTES_MAX, IMPORT_MESSAGES_MAX,
    IMPORT_OPS_MAX, IMPORT_SNAPSHOT_BYTES_MAX, ImportError, SnapshotHeader, StreamDigest,
};
use crate::export::ExportedState;
use crate::export::{MailboxMeta, SnapshotRecord};
use crate::ids::{CodeHash, MailboxId};

/// What an import stream yields once checked.
#[derive(Debug)]
pub struct Imported {
    pub mailbox: MailboxId,
    /// The state; in streaming mode without its snapshot, which the caller
    /// kept (see `streamed`).
    pub state: ExportedState,
    /// Components carried in the stream (their hashes are checked again by
    /// the code store when inserted).
    pub code: Vec<(CodeHash, Vec<u8>)>,
    /// In streaming mode, the checked header of the snapshot whose chunks
    /// were handed back.
    pub streamed: Option<StreamedSnapshot>,
    /// The message blobs not taken with [`Importer::take_messages`]. The
    /// store checks each against the hash an op names when it keeps it.
    pub messages: Vec<Vec<u8>>,
}

/// A snapshot that went by in chunks: every chunk was handed back, and
/// together they are `header.size_bytes` long and hash to `header.blake3`.
#[derive(Debug, Clone)]
pub struct StreamedSnapshot {
    pub header: SnapshotHeader,
}

/// Sans-IO reader of an export stream.
#[derive(Debug, Default)]
pub struct Importer {
    /// BLAKE3 of the encoded frames so far, checked against `End`.
    hasher: StreamDigest,
    header: Option<ExportHeader>,
    code: BTreeMap<CodeHash, (u64, Vec<u8>)>,
    /// Hand snapshot chunks back rather than keep them.
    streaming: bool,
    snapshot: Vec<u8>,
    snapshot_bytes: u64,
    snapshot_hasher: blake3::Hasher,
    tail: Vec<(u64, Vec<u8>)>,
    /// The tail's count and last seq once [`Importer::take_tail`] took it.
    taken: Option<(u64, u64)>,
    ended: bool,
    /// Message blobs received and not yet taken, and how many in all.
    messages: Vec<Vec<u8>>,
    messages_bytes: usize,
    messages_received: u64,
}

impl Importer {
    /// An importer that keeps the whole state.
    pub fn new() -> Self {
        Self::default()
    }

    /// An importer that hands each snapshot chunk back from
    /// [`Importer::handle_encoded`] instead of keeping it.
    pub fn streaming() -> Self {
        Importer {
            streaming: true,
            ..Self::default()
        }
    }

    /// The stream's header, once its first frame was taken.
    pub fn header(&self) -> Option<&ExportHeader> {
        self.header.as_ref()
    }

    /// The whole log tail, once every op the header announced arrived, in
    /// a stream of format 3 or later (where ops come before the snapshot),
    /// for the caller to write while the snapshot streams; once. The
    /// stream is still checked to its end as if it had kept them.
    pub fn take_tail(&mut self) -> Option<Vec<(u64, Vec<u8>)>> {
        let header = self.header.as_ref()?;
        if header.format_version < 3
            || self.taken.is_some()
            || self.tail.is_empty()
            || self.tail.len() as u64 != header.ops
        {
            return None;
        }
        let last = self.tail.last().map(|(seq, _)| *seq)?;
        self.taken = Some((self.tail.len() as u64, last));
        Some(std::mem::take(&mut self.tail))
    }

    /// The message blobs received since the last call, for the caller to
    /// store as they come rather than hold a mailbox's mail in memory.
    pub fn take_messages(&mut self) -> Vec<Vec<u8>> {
        self.messages_bytes = 0;
        std::mem::take(&mut self.messages)
    }

    /// Bytes of the message blobs waiting to be taken.
    pub fn messages_pending_bytes(&self) -> usize {
        self.messages_bytes
    }

    /// Ops received so far, taken or not.
    fn ops_received(&self) -> u64 {
        self.taken.map_or(self.tail.len() as u64, |(n, _)| n)
    }

    /// Takes the next encoded frame. In streaming mode, a snapshot chunk
    /// comes back for the caller to keep, as where it lies in `bytes` (so
    /// the caller can keep the frame's buffer rather than copy the chunk
    /// out); otherwise always `None`.
    pub fn handle_encoded(&mut self, bytes: &[u8]) -> Result<Option<Range<usize>>, ImportError> {
        if bytes.len() > FRAME_BYTES_MAX {
            return Err(ImportError::TooLarge {
                what: "frame",
                actual: bytes.len() as u64,
                limit: FRAME_BYTES_MAX as u64,
            });
        }
        let frame: FrameRef<'_> = rmp_serde::from_slice(bytes)?;
        if let FrameRef::End { digest } = &frame
            && self.header.is_some()
            && *digest != self.hasher.digest()
        {
            return Err(ImportError::StreamChecksum);
        }
        // Format 2 leaves snapshot chunks to the snapshot checksum.
        let digested = match (&frame, &self.header) {
            (FrameRef::Snapshot(_), Some(h)) => h.format_version < 2,
            _ => true,
        };
        if digested {
            self.hasher.update(bytes);
        }
        let Some(chunk) = self.handle(frame)? else {
            return Ok(None);
        };
        // The payload was borrowed from `bytes`: find where it lies.
        let start = (chunk.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
        let range = start..start.saturating_add(chunk.len());
        match bytes.get(range.clone()) {
            Some(found) if std::ptr::eq(found, chunk) => Ok(Some(range)),
            _ => Err(ImportError::ChunkOutsideFrame),
        }
    }

    fn handle<'a>(&mut self, frame: FrameRef<'a>) -> Result<Option<&'a [u8]>, ImportError> {
        let bad = |m: &str| Err(ImportError::Malformed(m.into()));
        if self.ended {
            return bad("frame after End");
        }
        let Some(header) = &self.header else {
            let FrameRef::Header(h) = frame else {
                return bad("the first frame must be Header");
            };
            check_header(&h)?;
            if h.format_version >= 2 {
                self.snapshot_hasher = crate::export::snapshot_hasher(h.mailbox.as_str());
            }
            self.header = Some(*h);
            return Ok(None);
        };
        match frame {
            FrameRef::Header(_) => bad("second Header"),
            FrameRef::Code {
                hash,
                total_bytes,
                chunk,
            } => {
                if self.snapshot_bytes > 0 || self.ops_received() > 0 {
                    return bad("Code after Snapshot or Op");
                }
                if total_bytes > IMPORT_CODE_BYTES_MAX {
                    return Err(ImportError::TooLarge {
                        what: "component",
                        actual: total_bytes,
                        limit: IMPORT_CODE_BYTES_MAX,
                    });
                }
                if !self.code.contains_key(&hash) && self.code.len() >= IMPORT_CODES_MAX {
                    return Err(ImportError::TooLarge {
                        what: "component count",
                        actual: self.code.len() as u64 + 1,
                        limit: IMPORT_CODES_MAX as u64,
                    });
                }
                let (total, bytes) = self
                    .code
                    .entry(hash)
                    .or_insert_with(|| (total_bytes, Vec::new()));
                if *total != total_bytes || bytes.len() as u64 + chunk.len() as u64 > total_bytes {
                    return bad("Code chunks exceed their announced size");
                }
                bytes.extend_from_slice(chunk);
                Ok(None)
            }
            FrameRef::Snapshot(chunk) => {
                let Some(s) = &header.snapshot else {
                    return bad("Snapshot frame but the header has none");
                };
                // Format 3 sends the ops first, older ones after.
                if header.format_version >= 3 {
                    if self.ops_received() < header.ops {
                        return bad("Snapshot before the last Op");
                    }
                } else if !self.tail.is_empty() {
                    return bad("Snapshot after Op");
                }
                if self.snapshot_bytes + chunk.len() as u64 > s.size_bytes {
                    return bad("Snapshot chunks exceed the announced size");
                }
                self.snapshot_bytes += chunk.len() as u64;
                self.snapshot_hasher.update(chunk);
                if self.streaming {
                    return Ok(Some(chunk));
                }
                if self.snapshot.is_empty() {
                    self.snapshot
                        .reserve_exact(usize::try_from(s.size_bytes).unwrap_or(0));
                }
                self.snapshot.extend_from_slice(chunk);
                Ok(None)
            }
            FrameRef::Op { seq, bytes } => {
                if header.format_version >= 3 && self.snapshot_bytes > 0 {
                    return bad("Op after Snapshot");
                }
                if self.taken.is_some() {
                    return bad("more Op frames than announced");
                }
                let expected = match self.tail.last() {
                    Some((last, _)) => last + 1,
                    None => header.snapshot.as_ref().map_or(1, |s| s.seq + 1),
                };
                if seq != expected {
                    return Err(ImportError::Malformed(format!(
                        "op {seq} out of order, expected {expected}"
                    )));
                }
                if self.tail.len() as u64 >= header.ops {
                    return bad("more Op frames than announced");
                }
                self.tail.push((seq, bytes.to_vec()));
                Ok(None)
            }
            FrameRef::Message(bytes) => {
                if header.format_version < 4 {
                    return bad("Message frame in a stream of format 3 or older");
                }
                if self.snapshot_bytes > 0 || self.ops_received() > 0 {
                    return bad("Message after Snapshot or Op");
                }
                if bytes.len() > IMPORT_MESSAGE_BYTES_MAX {
                    return Err(ImportError::TooLarge {
                        what: "message",
                        actual: bytes.len() as u64,
                        limit: IMPORT_MESSAGE_BYTES_MAX as u64,
                    });
                }
                if self.messages_received >= IMPORT_MESSAGES_MAX {
                    return Err(ImportError::TooLarge {
                        what: "message count",
                        actual: self.messages_received + 1,
                        limit: IMPORT_MESSAGES_MAX,
                    });
                }
                self.messages_received += 1;
                self.messages_bytes += bytes.len();
                self.messages.push(bytes.to_vec());
                Ok(None)
            }
            FrameRef::End { .. } => {
                self.ended = true;
                Ok(None)
            }
        }
    }

    /// Checks the whole stream and yields the mailbox.
    pub fn finish(self) -> Result<Imported, ImportError> {
        let header = self
            .header
            .ok_or_else(|| ImportError::Malformed("empty export".into()))?;
        if !self.ended {
            return Err(ImportError::Malformed("export ended without End".into()));
        }
        let received = self.taken.map_or(self.tail.len() as u64, |(n, _)| n);
        if received != header.ops {
            return Err(ImportError::Malformed(format!(
                "{} ops announced, {received} sent",
                header.ops,
            )));
        }
        let (snapshot, streamed) = match &header.snapshot {
            Some(s) => {
                if self.snapshot_bytes != s.size_bytes {
                    return Err(ImportError::Malformed(
                        "snapshot shorter than announced".into(),
                    ));
                }
                if CodeHash(*self.snapshot_hasher.finalize().as_bytes()) != s.blake3 {
                    return Err(ImportError::Checksum);
                }
                if self.streaming {
                    (None, Some(StreamedSnapshot { header: s.clone() }))
                } else {
                    let record = SnapshotRecord {
                        seq: s.seq,
                        schema_version: s.schema_version,
                        bytes: self.snapshot.into(),
                        vv: s.vv.clone(),
                    };
                    (Some(record), None)
                }
            }
            None => (None, None),
        };
        let reached = self
            .tail
            .last()
            .map(|(s, _)| *s)
            .or(self.taken.map(|(_, last)| last))
            .or(header.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0);
        if reached != header.log_position {
            return Err(ImportError::Malformed(format!(
                "header says log position {}, the frames reach {reached}",
                header.log_position
            )));
        }
        let mut code = Vec::new();
        for (hash, (total, bytes)) in self.code {
            if bytes.len() as u64 != total {
                return Err(ImportError::Malformed(format!(
                    "component {} is incomplete",
                    hash.short()
                )));
            }
            code.push((hash, bytes));
        }
        let state = ExportedState {
            meta: MailboxMeta {
                code_hash: header.code_hash.0,
                created_ms: header.created_ms,
            },
            snapshot,
            tail: self.tail,
            plugins: header.plugins,
            snapshot_checksum: None,
            messages: Vec::new(),
        };
        Ok(Imported {
            mailbox: header.mailbox,
            state,
            code,
            streamed,
            messages: self.messages,
        })
    }
}

/// Refuses a header of another format or beyond this host's limits.
fn check_header(h: &ExportHeader) -> Result<(), ImportError> {
    if !(EXPORT_FORMAT_VERSION_MIN..=EXPORT_FORMAT_VERSION).contains(&h.format_version) {
        return Err(ImportError::Malformed(format!(
            "export format {} is not supported (this host reads \
             {EXPORT_FORMAT_VERSION_MIN} to {EXPORT_FORMAT_VERSION})",
            h.format_version
        )));
    }
    if h.ops > IMPORT_OPS_MAX as u64 {
        return Err(ImportError::TooLarge {
            what: "op count",
            actual: h.ops,
            limit: IMPORT_OPS_MAX as u64,
        });
    }
    if let Some(s) = &h.snapshot
        && s.size_bytes > IMPORT_SNAPSHOT_BYTES_MAX
    {
        return Err(ImportError::TooLarge {
            what: "snapshot",
            actual: s.size_bytes,
            limit: IMPORT_SNAPSHOT_BYTES_MAX,
        });
    }
    Ok(())
}
