//! Moves that ship only the missing ops, sans-IO.
//!
//! When a mailbox moves to a host that still holds an older copy of it (an
//! owner's host reconnecting with the copy it kept), and the source's
//! [`Window`] reaches back to that copy's version vector, the source sends
//! the ops the copy lacks instead of the whole state. [`delta_for`] decides
//! whether that is possible; [`encode_delta`] turns the components the
//! target lacks and the ops into frames; [`DeltaReceiver`] checks them on
//! the target (order, sizes, counts against the limits). `node::delta_move`
//! drives both sides over QUIC; the plain export (`dem_proto::export`) remains
//! the fallback.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::window::{Since, WINDOW_BYTES_MAX, WINDOW_OPS_MAX, Window};
use dem_proto::CodeHash;
use dem_proto::VersionVector;
use dem_proto::export::{
    EXPORT_CHUNK_BYTES, IMPORT_CODE_BYTES_MAX, IMPORT_CODES_MAX, IMPORT_MESSAGE_BYTES_MAX,
};

/// Most ops one delta may carry: no more than a window holds.
pub const DELTA_OPS_MAX: usize = WINDOW_OPS_MAX;
/// Most op bytes one delta may carry: no more than a window holds.
pub const DELTA_BYTES_MAX: usize = WINDOW_BYTES_MAX;
/// Op bytes per `Ops` frame (one larger op travels alone).
const OPS_FRAME_BYTES: usize = 1 << 20;
/// Most message bytes one delta may carry, since the target holds them
/// until the ops apply; a source with more sends the whole state instead.
pub const DELTA_MESSAGE_BYTES_MAX: usize = 256 << 20;

/// One frame of a delta stream: every `Code` chunk, then the `Message`
/// blobs the ops name, then `Ops` batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaFrame {
    /// A chunk of a component the target lacks.
    Code {
        hash: CodeHash,
        total_bytes: u64,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// Ops in the order the source applied them.
    Ops(Vec<serde_bytes::ByteBuf>),
    /// A message blob a delivery among the ops names.
    Message(serde_bytes::ByteBuf),
}

/// Why a delta stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// A frame did not decode.
    #[error("malformed delta frame: {0}")]
    Malformed(#[source] rmp_serde::decode::Error),
    /// Frames came out of order or did not add up to what was announced.
    #[error("delta stream out of order: {0}")]
    Order(String),
    /// A frame could not be encoded.
    #[error("encoding a delta frame: {0}")]
    Encode(#[source] rmp_serde::encode::Error),
    /// More than a limit allows.
    #[error("delta too large: {what} is {actual}, the limit is {limit}")]
    TooLarge {
        what: &'static str,
        actual: u64,
        limit: u64,
    },
}

/// What a checked delta stream carried.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Components, whole, by the hash they claim (checked when stored).
    pub code: Vec<(CodeHash, Vec<u8>)>,
    /// Ops, in order.
    pub ops: Vec<Vec<u8>>,
    /// The message blobs the ops name (checked against their hashes when
    /// the ops apply).
    pub messages: Vec<Vec<u8>>,
}

/// The ops a copy at `peer` lacks, if a delta can bring it up to
/// `current`: the copy has nothing this replica lacks, and the window
/// still holds every op the copy lacks (within the delta limits).
pub fn delta_for(
    window: &Window,
    current: &VersionVector,
    peer: &VersionVector,
) -> Option<Vec<Arc<[u8]>>> {
    if !current.covers(peer) {
        return None;
    }
    match window.since(peer, current, DELTA_BYTES_MAX) {
        Since::Ops { ops, more: false } if ops.len() <= DELTA_OPS_MAX => Some(ops),
        _ => None,
    }
}

/// The frames of a delta: each component in 1 MiB chunks, then the ops in
/// batches of about 1 MiB.
pub fn encode_delta(
    code: &[(CodeHash, Vec<u8>)],
    messages: &[Vec<u8>],
    ops: &[Arc<[u8]>],
) -> Result<Vec<Vec<u8>>, DeltaError> {
    let mut frames = Vec::new();
    for (hash, bytes) in code {
        for chunk in bytes.chunks(EXPORT_CHUNK_BYTES) {
            frames.push(DeltaFrame::Code {
                hash: *hash,
                total_bytes: bytes.len() as u64,
                chunk: chunk.to_vec(),
            });
        }
    }
    for m in messages {
        frames.push(DeltaFrame::Message(serde_bytes::ByteBuf::from(m.clone())));
    }
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for op in ops {
        if !batch.is_empty() && batch_bytes + op.len() > OPS_FRAME_BYTES {
            frames.push(DeltaFrame::Ops(std::mem::take(&mut batch)));
            batch_bytes = 0;
        }
        batch_bytes += op.len();
        batch.push(serde_bytes::ByteBuf::from(op.to_vec()));
    }
    if !batch.is_empty() {
        frames.push(DeltaFrame::Ops(batch));
    }
    frames
        .iter()
        .map(|f| rmp_serde::to_vec(f).map_err(DeltaError::Encode))
        .collect()
}

/// Checks a delta stream frame by frame against the number of ops its
/// request announced.
#[derive(Debug)]
pub struct DeltaReceiver {
    announced_ops: u64,
    delta: Delta,
    /// The component being received and the size it announced.
    code_in_progress: Option<(CodeHash, u64, Vec<u8>)>,
    op_bytes: u64,
    message_bytes: u64,
}

impl DeltaReceiver {
    /// Expects `announced_ops` ops (at most [`DELTA_OPS_MAX`]).
    pub fn new(announced_ops: u64) -> Result<Self, DeltaError> {
        if announced_ops > DELTA_OPS_MAX as u64 {
            return Err(DeltaError::TooLarge {
                what: "the number of ops",
                actual: announced_ops,
                limit: DELTA_OPS_MAX as u64,
            });
        }
        Ok(Self {
            announced_ops,
            delta: Delta::default(),
            code_in_progress: None,
            op_bytes: 0,
            message_bytes: 0,
        })
    }

    /// Takes one encoded frame.
    pub fn handle_encoded(&mut self, bytes: &[u8]) -> Result<(), DeltaError> {
        let frame: DeltaFrame = rmp_serde::from_slice(bytes).map_err(DeltaError::Malformed)?;
        match frame {
            DeltaFrame::Code {
                hash,
                total_bytes,
                chunk,
            } => self.handle_code(hash, total_bytes, chunk),
            DeltaFrame::Message(bytes) => {
                self.finish_code()?;
                if !self.delta.ops.is_empty() {
                    return Err(DeltaError::Order("a message after ops".into()));
                }
                if bytes.len() > IMPORT_MESSAGE_BYTES_MAX {
                    return Err(DeltaError::TooLarge {
                        what: "a message",
                        actual: bytes.len() as u64,
                        limit: IMPORT_MESSAGE_BYTES_MAX as u64,
                    });
                }
                // No more blobs than ops could name.
                if self.delta.messages.len() as u64 >= self.announced_ops {
                    return Err(DeltaError::Order("more messages than ops".into()));
                }
                self.message_bytes += bytes.len() as u64;
                if self.message_bytes > DELTA_MESSAGE_BYTES_MAX as u64 {
                    return Err(DeltaError::TooLarge {
                        what: "the message bytes",
                        actual: self.message_bytes,
                        limit: DELTA_MESSAGE_BYTES_MAX as u64,
                    });
                }
                self.delta.messages.push(bytes.into_vec());
                Ok(())
            }
            DeltaFrame::Ops(ops) => {
                self.finish_code()?;
                let count = self.delta.ops.len() as u64 + ops.len() as u64;
                if count > self.announced_ops {
                    return Err(DeltaError::Order(format!(
                        "{count} ops, {} announced",
                        self.announced_ops
                    )));
                }
                for op in ops {
                    self.op_bytes += op.len() as u64;
                    if self.op_bytes > DELTA_BYTES_MAX as u64 {
                        return Err(DeltaError::TooLarge {
                            what: "the op bytes",
                            actual: self.op_bytes,
                            limit: DELTA_BYTES_MAX as u64,
                        });
                    }
                    self.delta.ops.push(op.into_vec());
                }
                Ok(())
            }
        }
    }

    fn handle_code(
        &mut self,
        hash: CodeHash,
        total_bytes: u64,
        chunk: Vec<u8>,
    ) -> Result<(), DeltaError> {
        if !self.delta.ops.is_empty() {
            return Err(DeltaError::Order("a component after ops".into()));
        }
        if total_bytes > IMPORT_CODE_BYTES_MAX {
            return Err(DeltaError::TooLarge {
                what: "a component",
                actual: total_bytes,
                limit: IMPORT_CODE_BYTES_MAX,
            });
        }
        if self
            .code_in_progress
            .as_ref()
            .is_some_and(|(h, _, _)| *h != hash)
        {
            self.finish_code()?;
        }
        let (_, total, bytes) = self.code_in_progress.get_or_insert_with(|| {
            (
                hash,
                total_bytes,
                Vec::with_capacity(total_bytes.min(EXPORT_CHUNK_BYTES as u64) as usize),
            )
        });
        if *total != total_bytes || bytes.len() as u64 + chunk.len() as u64 > total_bytes {
            return Err(DeltaError::Order(format!(
                "component {hash} is larger than the {total} bytes it announced"
            )));
        }
        bytes.extend_from_slice(&chunk);
        Ok(())
    }

    fn finish_code(&mut self) -> Result<(), DeltaError> {
        let Some((hash, total, bytes)) = self.code_in_progress.take() else {
            return Ok(());
        };
        if bytes.len() as u64 != total {
            return Err(DeltaError::Order(format!(
                "component {hash} has {} of its {total} bytes",
                bytes.len()
            )));
        }
        if self.delta.code.len() >= IMPORT_CODES_MAX {
            return Err(DeltaError::TooLarge {
                what: "the number of components",
                actual: self.delta.code.len() as u64 + 1,
                limit: IMPORT_CODES_MAX as u64,
            });
        }
        self.delta.code.push((hash, bytes));
        Ok(())
    }

    /// The whole delta, once the stream ended.
    pub fn finish(mut self) -> Result<Delta, DeltaError> {
        self.finish_code()?;
        if self.delta.ops.len() as u64 != self.announced_ops {
            return Err(DeltaError::Order(format!(
                "{} ops, {} announced",
                self.delta.ops.len(),
                self.announced_ops
            )));
        }
        Ok(self.delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::OpId;

    fn window(ids: &[(u64, u64)]) -> (Window, VersionVector) {
        let mut w = Window::starting_at(VersionVector::new());
        let mut vv = VersionVector::new();
        for &(origin, seq) in ids {
            let id = OpId { origin, seq };
            vv.record(id);
            w.push(id, Arc::from(vec![seq as u8; 100]));
        }
        (w, vv)
    }

    #[test]
    fn a_covered_copy_gets_only_what_it_lacks() {
        let (w, vv) = window(&[(1, 1), (1, 2), (2, 1), (1, 3)]);
        let stale: VersionVector = [(1, 2)].into_iter().collect();
        assert_eq!(delta_for(&w, &vv, &stale).map(|o| o.len()), Some(2));
        assert_eq!(delta_for(&w, &vv, &vv).map(|o| o.len()), Some(0));
    }

    #[test]
    fn a_copy_with_ops_of_its_own_or_behind_the_window_needs_the_state() {
        let (w, vv) = window(&[(1, 1), (1, 2)]);
        let diverged: VersionVector = [(1, 1), (3, 1)].into_iter().collect();
        assert_eq!(delta_for(&w, &vv, &diverged), None);
        let later = Window::starting_at(vv.clone());
        let mut now = vv.clone();
        now.record(OpId { origin: 1, seq: 3 });
        let behind: VersionVector = [(1, 1)].into_iter().collect();
        assert_eq!(delta_for(&later, &now, &behind), None);
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn frames_round_trip_through_the_receiver() -> TestResult {
        let ops: Vec<Arc<[u8]>> = (0..300u32)
            .map(|i| Arc::from(vec![i as u8; 10_000]))
            .collect();
        let code = vec![(CodeHash::of(b"x"), vec![7u8; EXPORT_CHUNK_BYTES + 5])];
        let messages = vec![b"a message".to_vec(), vec![3u8; 100_000]];
        let frames = encode_delta(&code, &messages, &ops)?;
        assert!(
            frames.len() >= 7,
            "code in 2 chunks, 2 messages, ops in 3 batches"
        );
        let mut rx = DeltaReceiver::new(ops.len() as u64)?;
        for f in &frames {
            rx.handle_encoded(f)?;
        }
        let delta = rx.finish()?;
        assert_eq!(delta.code, code);
        assert_eq!(delta.messages, messages);
        assert_eq!(delta.ops.len(), 300);
        assert_eq!(delta.ops[299], vec![299u32 as u8; 10_000]);
        Ok(())
    }

    #[test]
    fn refuses_bad_streams() -> TestResult {
        assert!(matches!(
            DeltaReceiver::new(DELTA_OPS_MAX as u64 + 1),
            Err(DeltaError::TooLarge { .. })
        ));
        let ops: Vec<Arc<[u8]>> = vec![Arc::from(vec![1u8; 4])];
        // More message blobs than ops could name, and a blob after the ops.
        let two = encode_delta(&[], &[vec![1], vec![2]], &ops)?;
        let mut rx = DeltaReceiver::new(1)?;
        rx.handle_encoded(&two[0])?;
        assert!(matches!(
            rx.handle_encoded(&two[1]),
            Err(DeltaError::Order(_))
        ));
        let late = encode_delta(&[], &[vec![1]], &ops)?;
        let mut rx = DeltaReceiver::new(1)?;
        rx.handle_encoded(&late[1])?;
        assert!(matches!(
            rx.handle_encoded(&late[0]),
            Err(DeltaError::Order(_))
        ));
        // Fewer ops than announced.
        let mut rx = DeltaReceiver::new(2)?;
        for f in encode_delta(&[], &[], &ops)? {
            rx.handle_encoded(&f)?;
        }
        assert!(matches!(rx.finish(), Err(DeltaError::Order(_))));
        // More ops than announced.
        let mut rx = DeltaReceiver::new(0)?;
        let f = &encode_delta(&[], &[], &ops)?[0];
        assert!(matches!(rx.handle_encoded(f), Err(DeltaError::Order(_))));
        // Garbage.
        let mut rx = DeltaReceiver::new(0)?;
        assert!(matches!(
            rx.handle_encoded(b"\xc1"),
            Err(DeltaError::Malformed(_))
        ));
        // A component after ops, and a short component.
        let code = vec![(CodeHash::of(b"y"), vec![1u8; 10])];
        let mut frames = encode_delta(&[], &[], &ops)?;
        frames.extend(encode_delta(&code, &[], &[])?);
        let mut rx = DeltaReceiver::new(1)?;
        rx.handle_encoded(&frames[0])?;
        assert!(matches!(
            rx.handle_encoded(&frames[1]),
            Err(DeltaError::Order(_))
        ));
        let short = rmp_serde::to_vec(&DeltaFrame::Code {
            hash: CodeHash::of(b"z"),
            total_bytes: 20,
            chunk: vec![0; 10],
        })?;
        let mut rx = DeltaReceiver::new(0)?;
        rx.handle_encoded(&short)?;
        assert!(matches!(rx.finish(), Err(DeltaError::Order(_))));
        Ok(())
    }
}
