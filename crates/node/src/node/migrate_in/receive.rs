//! Receiving a whole state for a move (`migrate_in.rs`): the export
//! frames checked by `Importer` in streaming mode, a large snapshot written
//! to a staged file chunk by chunk as it arrives, on a blocking thread fed
//! through a short channel (so QUIC flow control paces the sender when the
//! disk falls behind), and a log tail that comes first staged in the store
//! while the snapshot streams. Nothing here is imported: what was staged is
//! dropped with the [`Incoming`] unless the import takes it.

use tokio::sync::mpsc;

use super::super::Node;
use super::super::move_stream::MessageCommits;
use super::super::serve::internal;
use super::super::traffic::Kind;
use crate::mailbox::actor::{ExportedState, vv_after};
use crate::replica::VersionVector;
use dem_net::{Exchange, FrameReader, WireError};
use dem_proto::export::{ExportHeader, StreamedSnapshot};
use dem_proto::export::{FRAME_BYTES_MAX, Importer};
use dem_proto::ids::MailboxId;
use dem_store::{
    Commit, ImportTail, MailboxStore, SnapshotRecord, SnapshotStaging, StageToken, StagedRecord,
    StagingError,
};

/// Snapshot chunks (of up to 1 MiB) queued for the staging thread.
const STAGING_CHUNKS_QUEUED: usize = 4;

/// A frame's buffer and where its snapshot chunk lies in it: the chunk
/// goes to the staging thread without being copied out of its frame.
type FrameChunk = (Vec<u8>, std::ops::Range<usize>);

/// Where the chunks of an incoming snapshot go.
enum Sink {
    /// Small enough for the database: kept in memory.
    Memory(Vec<u8>),
    /// Written to a staged file by a blocking task, which hands each
    /// frame's buffer back for the next frame to be read into: a fresh
    /// 1 MiB buffer per frame costs hundreds of page faults.
    File {
        chunks: mpsc::Sender<FrameChunk>,
        emptied: mpsc::UnboundedReceiver<Vec<u8>>,
        writer: tokio::task::JoinHandle<Result<SnapshotStaging, StagingError>>,
    },
}

/// An incoming state: what the export carried, its snapshot staged if
/// large, and its log tail staged in the store if it came first.
pub(in crate::node) struct Incoming {
    state: ExportedState,
    staged: Option<StagedRecord>,
    staged_tail: Option<StagedTail>,
}

/// A log tail written to the store while the snapshot streams
/// (`MailboxStore::stage_log`), dropped from it again unless the import
/// took it.
struct StagedTail {
    store: MailboxStore,
    id: MailboxId,
    token: StageToken,
    first: u64,
    last: u64,
    written: Option<Commit>,
    imported: bool,
}

impl StagedTail {
    fn start(store: &MailboxStore, id: &MailboxId, tail: Vec<(u64, Vec<u8>)>) -> Option<Self> {
        let (first, last) = (tail.first()?.0, tail.last()?.0);
        let (token, written) = store.stage_log(id.as_str(), tail);
        Some(StagedTail {
            store: store.clone(),
            id: id.clone(),
            token,
            first,
            last,
            written: Some(written),
            imported: false,
        })
    }

    /// The import's tail, once its rows are committed.
    async fn written(&mut self) -> Result<ImportTail, WireError> {
        if let Some(written) = self.written.take() {
            written.await.map_err(internal)?;
        }
        Ok(ImportTail::Staged {
            token: self.token,
            first: self.first,
            last: self.last,
        })
    }
}

impl Drop for StagedTail {
    fn drop(&mut self) {
        if !self.imported {
            // Queued behind the staging, so the writer drops what it wrote.
            drop(self.store.drop_staged_log(self.id.as_str(), self.token));
            // The message blobs the stream carried, too: this host holds no
            // mailbox they could belong to.
            drop(self.store.drop_orphan_message_refs(self.id.as_str()));
        }
    }
}

impl Incoming {
    /// The vector the state is at.
    pub(super) fn vv(&self) -> Result<VersionVector, WireError> {
        let base = match (&self.staged, &self.state.snapshot) {
            (Some(s), _) => s.vv.clone(),
            (None, Some(s)) => s.vv.clone(),
            (None, None) => VersionVector::new(),
        };
        vv_after(base, &self.state.tail).map_err(|e| bad(&e))
    }

    /// Whether its log tail was staged: the host had no copy when the
    /// stream began.
    pub(super) fn tail_staged(&self) -> bool {
        self.staged_tail.is_some()
    }

    /// The log position the import ends at.
    fn last_seq(&self) -> u64 {
        match (&self.staged_tail, &self.staged, self.state.tail.last()) {
            (Some(t), _, _) => t.last,
            (None, _, Some((seq, _))) => *seq,
            (None, Some(s), None) => s.seq,
            (None, None, None) => self.state.last_seq(),
        }
    }
}

fn bad(e: &dyn std::fmt::Display) -> WireError {
    WireError::new(WireError::BAD_REQUEST, e.to_string())
}

impl Node {
    /// Writes `incoming` durably as mailbox `id` (`replace`-ing a stale
    /// copy here); the log position it ends at. What was staged becomes
    /// the mailbox's, or is dropped if the import fails.
    pub(super) async fn import_incoming(
        &self,
        id: &MailboxId,
        incoming: Incoming,
        replace: bool,
    ) -> Result<u64, WireError> {
        let log_position = incoming.last_seq();
        let Incoming {
            state,
            staged,
            mut staged_tail,
        } = incoming;
        let staged_rows = match staged_tail.as_mut() {
            Some(t) => Some(t.written().await?),
            None => None,
        };
        self.mailboxes
            .import_durable(id, state, staged, staged_rows, replace)
            .await
            .map_err(internal)?;
        if let Some(t) = staged_tail.as_mut() {
            t.imported = true;
        }
        Ok(log_position)
    }

    /// Reads export frames after `header` off the exchange, checks them,
    /// stores the components they carry and stages a large snapshot as
    /// its file; the state is not imported yet.
    pub(super) async fn receive_staged(
        &self,
        header: &ExportHeader,
        ex: &mut Exchange,
    ) -> Result<Incoming, WireError> {
        let mut importer = Importer::streaming();
        let mut commits = MessageCommits::default();
        let mut sink: Option<Sink> = None;
        // A tail that comes before its snapshot is written meanwhile,
        // unless this host has a copy the import may replace.
        let stage_to = match self.mailboxes.store() {
            Some(store) if !self.mailboxes.contains(&header.mailbox).map_err(internal)? => {
                Some(store.clone())
            }
            _ => None,
        };
        let mut staged_tail = None;
        // Where the receive's time goes, for the debug log.
        let (mut check_ms, mut queue_ms, mut first_ms) = (0.0, 0.0, None);
        let started = std::time::Instant::now();
        let mut frames = FrameReader::new(&mut ex.recv);
        loop {
            let buffer = match &mut sink {
                Some(Sink::File { emptied, .. }) => emptied.try_recv().unwrap_or_default(),
                _ => Vec::new(),
            };
            let read = frames.next_into(FRAME_BYTES_MAX, buffer).await;
            let Some(bytes) = read.map_err(|e| bad(&e))? else {
                break;
            };
            first_ms.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
            self.traffic.frame(Kind::Full, bytes.len());
            let t = std::time::Instant::now();
            let handled = importer.handle_encoded(&bytes).map_err(|e| bad(&e))?;
            check_ms += t.elapsed().as_secs_f64() * 1e3;
            if importer.messages_pending_bytes() >= super::super::move_stream::MESSAGES_HELD_BYTES {
                self.keep_messages(&header.mailbox, importer.take_messages(), &mut commits)
                    .await?;
            }
            if staged_tail.is_none()
                && let Some(store) = &stage_to
                && importer.header().is_some_and(|h| h.snapshot.is_some())
                && let Some(tail) = importer.take_tail()
            {
                staged_tail = StagedTail::start(store, &header.mailbox, tail);
            }
            let Some(range) = handled else {
                continue;
            };
            if sink.is_none() {
                let (format, size) = importer.header().map_or((0, 0), |h| {
                    let size = h.snapshot.as_ref().map_or(0, |s| s.size_bytes);
                    (h.format_version, size)
                });
                sink = Some(self.snapshot_sink(format, size)?);
            }
            let t = std::time::Instant::now();
            match &mut sink {
                Some(Sink::Memory(kept)) => {
                    kept.extend_from_slice(bytes.get(range).unwrap_or_default())
                }
                // The writer stopped: its error says why.
                Some(Sink::File { chunks, .. }) if chunks.send((bytes, range)).await.is_err() => {
                    break;
                }
                Some(Sink::File { .. }) | None => {}
            }
            queue_ms += t.elapsed().as_secs_f64() * 1e3;
        }
        tracing::debug!(
            first_ms,
            check_ms,
            queue_ms,
            frames_ms = started.elapsed().as_secs_f64() * 1e3,
            "received the frames"
        );
        let staged_file = match sink {
            Some(Sink::File { chunks, writer, .. }) => {
                drop(chunks);
                let staging = writer.await.map_err(internal)?.map_err(internal)?;
                tracing::debug!(
                    written_ms = started.elapsed().as_secs_f64() * 1e3,
                    "wrote the snapshot file"
                );
                Some(staging)
            }
            Some(Sink::Memory(bytes)) => {
                return self
                    .finish_incoming(
                        &header.mailbox,
                        (importer, commits),
                        (Some(bytes), None),
                        staged_tail,
                    )
                    .await;
            }
            None => None,
        };
        self.finish_incoming(
            &header.mailbox,
            (importer, commits),
            (None, staged_file),
            staged_tail,
        )
        .await
    }

    /// Where the chunks of a snapshot of `size_bytes` go.
    fn snapshot_sink(&self, format_version: u32, size_bytes: u64) -> Result<Sink, WireError> {
        let store = self
            .mailboxes
            .store()
            .ok_or_else(|| internal("this host keeps no store"))?
            .clone();
        // A format-1 checksum is not the file's name: keep it for the
        // store to write (only older peers send it).
        if size_bytes < dem_store::BLOB_BYTES_MIN as u64 || format_version < 2 {
            return Ok(Sink::Memory(Vec::with_capacity(size_bytes as usize)));
        }
        let (chunks, mut rx) = mpsc::channel::<FrameChunk>(STAGING_CHUNKS_QUEUED);
        let (empty, emptied) = mpsc::unbounded_channel();
        let writer = tokio::task::spawn_blocking(move || {
            let mut staging = store.stage_snapshot()?;
            while let Some((frame, range)) = rx.blocking_recv() {
                let chunk = frame.get(range).ok_or_else(|| {
                    std::io::Error::other("a snapshot chunk lies outside its frame")
                })?;
                staging.write(chunk)?;
                // At most the queue's buffers and two more circulate.
                let _ = empty.send(frame);
            }
            Ok(staging)
        });
        Ok(Sink::File {
            chunks,
            emptied,
            writer,
        })
    }

    /// Checks the end of the stream and puts the state together: the kept
    /// snapshot bytes, or the staged file made durable.
    async fn finish_incoming(
        &self,
        id: &MailboxId,
        (importer, mut commits): (Importer, MessageCommits),
        (kept, staging): (Option<Vec<u8>>, Option<SnapshotStaging>),
        staged_tail: Option<StagedTail>,
    ) -> Result<Incoming, WireError> {
        let imported = importer.finish().map_err(|e| bad(&e))?;
        self.keep_messages(id, imported.messages, &mut commits)
            .await?;
        commits.settle().await?;
        self.insert_carried_code(imported.code)?;
        let mut state = imported.state;
        let streamed = imported.streamed;
        let staged = match (streamed, kept, staging) {
            (None, None, None) => None,
            (Some(StreamedSnapshot { header: s }), kept, None)
                if kept.is_some() || s.size_bytes == 0 =>
            {
                let bytes = kept.unwrap_or_default();
                state.snapshot = Some(SnapshotRecord {
                    seq: s.seq,
                    schema_version: s.schema_version,
                    bytes: bytes.into(),
                    vv: s.vv,
                });
                None
            }
            (Some(StreamedSnapshot { header: s }), None, Some(staging)) => {
                let name = s.blake3.0;
                let staged = tokio::task::spawn_blocking(move || staging.finish(name))
                    .await
                    .map_err(internal)?
                    .map_err(internal)?;
                Some(StagedRecord {
                    seq: s.seq,
                    schema_version: s.schema_version,
                    vv: s.vv,
                    staged,
                })
            }
            _ => return Err(bad(&"the snapshot did not arrive whole")),
        };
        if imported.mailbox != *id {
            return Err(bad(&"the stream is for another mailbox"));
        }
        Ok(Incoming {
            state,
            staged,
            staged_tail,
        })
    }
}
