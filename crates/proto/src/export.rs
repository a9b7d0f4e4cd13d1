//! The export/import format: how a whole mailbox leaves one host and is
//! rebuilt on another (the primitive of migration and replica creation).
//!
//! An export is a stream of length-prefixed rmp-serde frames:
//! `Header`, then `Code` chunks for components the receiver may lack, then
//! the `Message` blobs the mailbox's mails name (format 4: the message
//! bytes live beside the mailbox, not in its snapshot), then
//! `Op` log entries after the snapshot, then `Snapshot` chunks, then `End`,
//! which carries the BLAKE3 of every encoded frame before it but the
//! snapshot chunks, which the header's snapshot checksum covers, so a
//! flipped bit anywhere (the header included) is caught.
//! Nothing needs the whole mailbox in one buffer on the wire, every frame is
//! bounded, and the receiver checks sizes, the snapshot's checksum, the code
//! hashes and the op sequence before anything is imported.
//!
//! `Importer` is sans-IO: feed it frames, then `finish`. The file and QUIC
//! drivers only move frames.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::VersionVector;
use crate::ids::{CodeHash, MailboxId};
use crate::mail::PluginEntry;
mod importer;
mod state;
pub use importer::{Imported, Importer, StreamedSnapshot};
pub use state::{ExportedState, MailboxMeta, SnapshotRecord, TailError, snapshot_hasher, vv_after};

/// Version of this format that is written. 4 carries the `Message` blobs
/// the mailbox names, before the ops. 3 sends the `Op` frames before
/// the `Snapshot` ones, so a move's target can write the log while the
/// snapshot streams (2 and 1 send them after). 2 checks the snapshot by
/// its BLAKE3 keyed by the mailbox id ([`snapshot_checksum`]), and the
/// `End` digest leaves the `Snapshot` frames out (that checksum covers
/// their bytes and order, so no one hashes the bulk twice); 1 used the
/// plain BLAKE3 and a digest of every frame. All three are read; a
/// receiver refuses others.
pub const EXPORT_FORMAT_VERSION: u32 = 4;
/// Oldest format still read.
pub const EXPORT_FORMAT_VERSION_MIN: u32 = 1;
/// Payload bytes per `Code` or `Snapshot` frame.
pub const EXPORT_CHUNK_BYTES: usize = 1 << 20;
/// Largest frame a reader accepts.
pub const FRAME_BYTES_MAX: usize = 4 << 20;
/// Largest snapshot an importer accepts.
pub const IMPORT_SNAPSHOT_BYTES_MAX: u64 = 4 << 30;
/// Most log entries an export may carry after its snapshot.
pub const IMPORT_OPS_MAX: usize = 10_000_000;
/// Most distinct components an export may carry.
pub const IMPORT_CODES_MAX: usize = 64;
/// Largest component an export may carry.
pub const IMPORT_CODE_BYTES_MAX: u64 = crate::ids::CODE_BYTES_MAX as u64;
/// Largest message blob an export may carry: a stored message (large parts
/// cut out) or a sealed mail's blob ([`crate::host::BLOB_BYTES_MAX`]).
pub const IMPORT_MESSAGE_BYTES_MAX: usize = crate::host::BLOB_BYTES_MAX;
/// Most message blobs an export may carry.
pub const IMPORT_MESSAGES_MAX: u64 = 10_000_000;

/// Where an export reads the message blobs it carries: the host's store.
/// `Ok(None)` for a blob the host does not hold (a mail deleted since the
/// list was taken); the export then goes without it.
pub type MessageSource<'a> = &'a (dyn Fn(&[u8; 32]) -> Result<Option<Vec<u8>>, String> + Sync);

/// First frame: what follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format_version: u32,
    pub mailbox: MailboxId,
    pub code_hash: CodeHash,
    pub created_ms: i64,
    pub plugins: Vec<PluginEntry>,
    /// Schema version, sequence number, size and BLAKE3 of the snapshot, if
    /// the mailbox has one.
    pub snapshot: Option<SnapshotHeader>,
    /// Number of `Op` frames.
    pub ops: u64,
    /// The log position the state reaches.
    pub log_position: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub schema_version: u32,
    pub seq: u64,
    pub size_bytes: u64,
    pub blake3: CodeHash,
    /// The replicated ops the snapshot includes (absent in older exports).
    #[serde(default)]
    pub vv: VersionVector,
}

/// One frame of an export stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    Header(ExportHeader),
    Code {
        hash: CodeHash,
        total_bytes: u64,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    Snapshot(#[serde(with = "serde_bytes")] Vec<u8>),
    Op {
        seq: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// BLAKE3 of the encoded frames before this one.
    End {
        digest: CodeHash,
    },
    /// One message blob a mail of the mailbox names (format 4). Last, so
    /// the encodings of the older variants keep their indices.
    Message(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Why an export stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The stream broke the frame order or a size it announced.
    #[error("malformed export: {0}")]
    Malformed(String),
    /// The stream is bigger than this host accepts.
    #[error("export too large: {what} is {actual}, the limit is {limit}")]
    TooLarge {
        what: &'static str,
        actual: u64,
        limit: u64,
    },
    /// The snapshot bytes do not hash to what the header says.
    #[error("snapshot checksum mismatch: the export is damaged")]
    Checksum,
    /// The stream checksum in `End` does not match the frames.
    #[error("export checksum mismatch: the export is damaged")]
    StreamChecksum,
    /// A frame could not be read.
    #[error("reading the export")]
    Io(#[from] std::io::Error),
    /// A frame is not valid rmp-serde.
    #[error("undecodable frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A snapshot chunk's payload does not lie inside its own frame.
    #[error("undecodable frame: a snapshot chunk outside its frame")]
    ChunkOutsideFrame,
    /// A frame could not be encoded.
    #[error("encoding an export frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The encoder of this build does not write an empty snapshot frame as
    /// the splicing of chunks into frames assumes.
    #[error("encoding an export frame: an empty snapshot frame did not end in an empty bin")]
    SnapshotFrameHead,
    /// The host could not read a message blob it holds.
    #[error("reading a message blob: {0}")]
    MessageSource(String),
    /// A chunk is too large for a MessagePack bin.
    #[error("encoding an export frame: a chunk of {len_bytes} bytes")]
    ChunkTooLarge { len_bytes: usize },
}

/// One encoded frame as a head and the body that follows it. A snapshot
/// chunk's body is a shared slice of the snapshot, so the sender neither
/// copies the chunk into its frame nor hands QUIC a copy of it; every other
/// frame is all head.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedFrame {
    pub head: Vec<u8>,
    pub body: Bytes,
}

impl EncodedFrame {
    /// Bytes of the frame, without its length prefix.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }
}

impl From<Vec<u8>> for EncodedFrame {
    fn from(head: Vec<u8>) -> Self {
        EncodedFrame {
            head,
            body: Bytes::new(),
        }
    }
}

/// The encoded frames of one export, ready to be length-prefixed and sent:
/// the frames of `frames` with a real stream digest in `End`. A frame that
/// cannot be encoded is an error item; the stream must stop there.
pub fn encode_export<'a>(
    id: &MailboxId,
    state: &'a ExportedState,
    with_code: &'a [(CodeHash, Vec<u8>)],
    messages: MessageSource<'a>,
) -> impl Iterator<Item = Result<EncodedFrame, ImportError>> + 'a {
    let mut hasher = StreamDigest::default();
    let mut snapshot_head = None;
    frames(id, state, with_code)
        .flat_map(move |frame| {
            // A blob is read as its frame is due, so an export never holds
            // more than one; one the host no longer holds is left out.
            let read = match frame {
                Outgoing::MessageHash(hash) => match messages(hash) {
                    Ok(Some(bytes)) => Some(Ok(Outgoing::Message(bytes))),
                    Ok(None) => None,
                    Err(e) => Some(Err(ImportError::MessageSource(e))),
                },
                other => Some(Ok(other)),
            };
            read.into_iter()
        })
        .map(move |frame| {
            let frame = match frame? {
                Outgoing::Message(bytes) => {
                    let bytes = encode_frame(&FrameRef::Message(&bytes))?;
                    hasher.update(&bytes);
                    return Ok(EncodedFrame::from(bytes));
                }
                Outgoing::MessageHash(_) => unreachable!("read above"),
                Outgoing::Frame(FrameRef::End { .. }) => FrameRef::End {
                    digest: hasher.digest(),
                },
                Outgoing::Frame(other) => other,
                // Snapshot chunks are not digested (their checksum covers them).
                Outgoing::Snapshot(body) => {
                    let head = match &snapshot_head {
                        Some(head) => head,
                        None => snapshot_head.insert(snapshot_frame_head()?),
                    };
                    return Ok(EncodedFrame {
                        head: with_bin_len(head, body.len())?,
                        body,
                    });
                }
            };
            let bytes = encode_frame(&frame)?;
            hasher.update(&bytes);
            Ok(EncodedFrame::from(bytes))
        })
}

/// The encoding of a `Snapshot` frame up to its payload's length: the
/// encoding of an empty one without the empty bin's two bytes (`c4 00`).
fn snapshot_frame_head() -> Result<Vec<u8>, ImportError> {
    let mut head = encode_frame(&FrameRef::Snapshot(&[]))?;
    match head.len().checked_sub(2) {
        Some(cut) if head.get(cut..) == Some(&[0xc4, 0][..]) => {
            head.truncate(cut);
            Ok(head)
        }
        _ => Err(ImportError::SnapshotFrameHead),
    }
}

/// `head` followed by the MessagePack bin header for `len` bytes.
fn with_bin_len(head: &[u8], len: usize) -> Result<Vec<u8>, ImportError> {
    let mut out = Vec::with_capacity(head.len() + 5);
    out.extend_from_slice(head);
    if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        let n = u32::try_from(len).map_err(|_| ImportError::ChunkTooLarge { len_bytes: len })?;
        out.push(0xc6);
        out.extend_from_slice(&n.to_be_bytes());
    }
    Ok(out)
}

/// Bytes [`StreamDigest`] gathers before hashing them in one go.
const DIGEST_BATCH_BYTES: usize = 64 * 1024;

/// The BLAKE3 of a stream of frames, hashed in batches: BLAKE3 hashes
/// many 1 KiB chunks at once with SIMD only when it is given them at once,
/// so the thousands of ~1 KiB op frames of a log tail, hashed one by one,
/// would cost several times as much. The digest is the same either way.
#[derive(Debug, Default)]
pub struct StreamDigest {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

impl StreamDigest {
    pub fn update(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > DIGEST_BATCH_BYTES {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        if bytes.len() >= DIGEST_BATCH_BYTES {
            self.hasher.update(bytes);
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The digest of everything so far; more may still be added.
    pub fn digest(&mut self) -> CodeHash {
        self.hasher.update(&self.pending);
        self.pending.clear();
        CodeHash(*self.hasher.finalize().as_bytes())
    }
}

/// One frame as rmp-serde bytes.
pub fn encode_frame(frame: &impl Serialize) -> Result<Vec<u8>, ImportError> {
    Ok(rmp_serde::to_vec(frame)?)
}

/// A [`Frame`] borrowing its payload, encoded to the same bytes: the
/// sender encodes from the state without copying it first, and the
/// receiver decodes without copying the payload out of the frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename = "Frame")]
enum FrameRef<'a> {
    Header(Box<ExportHeader>),
    Code {
        hash: CodeHash,
        total_bytes: u64,
        #[serde(with = "serde_bytes", borrow)]
        chunk: &'a [u8],
    },
    Snapshot(#[serde(with = "serde_bytes", borrow)] &'a [u8]),
    Op {
        seq: u64,
        #[serde(with = "serde_bytes", borrow)]
        bytes: &'a [u8],
    },
    End {
        digest: CodeHash,
    },
    Message(#[serde(with = "serde_bytes", borrow)] &'a [u8]),
}

/// The snapshot checksum of format 2: BLAKE3 keyed by the mailbox id, the
/// name a store keeps the snapshot's file under (format 1 used the plain
/// BLAKE3 of the bytes).
pub fn snapshot_checksum(id: &MailboxId, bytes: &[u8]) -> CodeHash {
    let mut h = state::snapshot_hasher(id.as_str());
    h.update(bytes);
    CodeHash(*h.finalize().as_bytes())
}

/// A frame to encode, a snapshot chunk, which goes out as it is, or a
/// message blob, to be read when its frame is due.
enum Outgoing<'a> {
    Frame(FrameRef<'a>),
    Snapshot(Bytes),
    MessageHash(&'a [u8; 32]),
    Message(Vec<u8>),
}

/// Frames of one export, code first (only the hashes in `with_code`). The
/// `End` digest is left zero: `encode_export` fills it in.
fn frames<'a>(
    id: &MailboxId,
    state: &'a ExportedState,
    with_code: &'a [(CodeHash, Vec<u8>)],
) -> impl Iterator<Item = Outgoing<'a>> + 'a {
    let snapshot = state.snapshot.as_ref().map(|s| SnapshotHeader {
        schema_version: s.schema_version,
        seq: s.seq,
        size_bytes: s.bytes.len() as u64,
        blake3: state
            .snapshot_checksum
            .map(CodeHash)
            .unwrap_or_else(|| snapshot_checksum(id, &s.bytes)),
        vv: s.vv.clone(),
    });
    let header = FrameRef::Header(Box::new(ExportHeader {
        format_version: EXPORT_FORMAT_VERSION,
        mailbox: id.clone(),
        code_hash: CodeHash(state.meta.code_hash),
        created_ms: state.meta.created_ms,
        plugins: state.plugins.clone(),
        snapshot,
        ops: state.tail.len() as u64,
        log_position: state.last_seq(),
    }));
    let code = with_code.iter().flat_map(|(hash, bytes)| {
        let total = bytes.len() as u64;
        bytes
            .chunks(EXPORT_CHUNK_BYTES)
            .map(move |c| FrameRef::Code {
                hash: *hash,
                total_bytes: total,
                chunk: c,
            })
    });
    let mut rest = state
        .snapshot
        .as_ref()
        .map(|s| s.bytes.clone())
        .unwrap_or_default();
    let snap = std::iter::from_fn(move || {
        let n = rest.len().min(EXPORT_CHUNK_BYTES);
        (n > 0).then(|| Outgoing::Snapshot(rest.split_to(n)))
    });
    let ops = state
        .tail
        .iter()
        .map(|(seq, bytes)| FrameRef::Op { seq: *seq, bytes });
    let end = FrameRef::End {
        digest: CodeHash([0; 32]),
    };
    let messages = state.messages.iter().map(Outgoing::MessageHash);
    std::iter::once(header)
        .chain(code)
        .map(Outgoing::Frame)
        .chain(messages)
        .chain(ops.map(Outgoing::Frame))
        .chain(snap)
        .chain(std::iter::once(Outgoing::Frame(end)))
}

/// Writes one encoded frame: a 4-byte big-endian length, then the bytes.
pub fn write_frame(w: &mut impl Write, encoded: &EncodedFrame) -> std::io::Result<()> {
    let len = u32::try_from(encoded.len())
        .map_err(|_| std::io::Error::other(format!("a frame of {} bytes", encoded.len())))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&encoded.head)?;
    w.write_all(&encoded.body)
}

/// Reads one encoded frame; `None` at a clean end of input.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, ImportError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(ImportError::TooLarge {
            what: "frame",
            actual: len as u64,
            limit: FRAME_BYTES_MAX as u64,
        });
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            ImportError::Malformed("the export ends in the middle of a frame".into())
        }
        _ => e.into(),
    })?;
    Ok(Some(buf))
}

/// Reads a whole export stream.
pub fn read_export(r: &mut impl Read) -> Result<Imported, ImportError> {
    let mut importer = Importer::new();
    while let Some(frame) = read_frame(r)? {
        importer.handle_encoded(&frame)?;
    }
    importer.finish()
}

#[cfg(test)]
mod tests;
