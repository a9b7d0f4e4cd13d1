//! The bytes of a move or a whole copy: asking the target which components
//! it lacks (`MissingCode`), writing the request and the export frames on
//! one stream (small ones batched, so QUIC flow control paces it), and
//! ending that stream for the target's answer ([`MoveStream`]); on the
//! receiving side, reading and checking export frames and storing the
//! components they carry. When a move's stream ends is decided by
//! `dem_core::migration::SourceMove` (`migrate.rs`); what the target does
//! with it by `TargetMove` (`migrate_in.rs`).

use super::Node;
use super::migrate::refusal;
use super::serve::internal;
use super::traffic::Kind;
use crate::mailbox::actor::ExportedState;
use dem_client::HOST_REQUEST_TIMEOUT;
use dem_core::migration::MigrateError;
use dem_identity::{HostId, UserId};
use dem_net::{
    Connection, Exchange, FrameBatch, FrameReader, NetError, RecvStream, SendStream, WireError,
    read_frame, write_frame,
};
use dem_proto::export::{
    self, EncodedFrame, ExportHeader, FRAME_BYTES_MAX, Frame, IMPORT_CODES_MAX, Importer,
};
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::PluginEntry;
use dem_proto::{HostRequest, HostResponse, MESSAGE_BYTES_MAX};

/// A stream with its request and every frame written, not yet ended.
/// Dropped without [`MoveStream::finish`] it is reset, never finished
/// (quinn finishes a dropped stream): the target imports only after an end
/// this side chose to send, so a move abandoned at any step (a refused
/// grant, a deadline) never reaches the target's import.
pub(super) struct MoveStream {
    /// `None` once ended or reset.
    send: Option<SendStream>,
    /// Where the target's answer comes.
    recv: RecvStream,
}

impl MoveStream {
    /// Ends the stream and reads the target's answer: the log position it
    /// imported up to.
    pub(super) async fn finish(mut self) -> Result<u64, MigrateError> {
        if let Some(mut send) = self.send.take() {
            send.finish()
                .map_err(|e| MigrateError::Target(refusal(NetError::from(e))))?;
        }
        match read_frame::<Result<HostResponse, WireError>>(&mut self.recv, MESSAGE_BYTES_MAX).await
        {
            Ok(Some(Ok(HostResponse::Imported { log_position }))) => Ok(log_position),
            Ok(Some(Ok(other))) => Err(MigrateError::Target(unexpected(&other))),
            Ok(Some(Err(w))) => Err(MigrateError::Target(w)),
            Ok(None) => Err(MigrateError::Target(WireError::new(
                WireError::INTERNAL,
                "closed the stream without an answer",
            ))),
            Err(e) => Err(MigrateError::Target(refusal(e))),
        }
    }

    /// Resets the stream: the target drops what it staged.
    pub(super) fn reset(mut self) {
        self.abandon();
    }

    fn abandon(&mut self) {
        if let Some(mut send) = self.send.take() {
            let _ = send.reset(quinn::VarInt::from_u32(0));
        }
    }
}

impl Drop for MoveStream {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl Node {
    /// The transfer itself: missing code, then `request` (made from the
    /// export's header) and the export frames, not yet ended.
    pub(super) async fn send_mailbox(
        &self,
        id: &MailboxId,
        state: &ExportedState,
        (to, to_addr): (HostId, &str),
        request: impl FnOnce(Box<ExportHeader>) -> HostRequest,
    ) -> Result<MoveStream, MigrateError> {
        let conn = self
            .session
            .connect(to_addr, to)
            .await
            .map_err(|e| MigrateError::Target(refusal(e)))?;
        let t = std::time::Instant::now();
        let code = self
            .missing_code_at(&conn, CodeHash(state.meta.code_hash), &state.plugins)
            .await?;
        let lacking = self.missing_messages_at(&conn, id, &state.messages).await?;
        let asked_ms = t.elapsed().as_secs_f64() * 1e3;
        let read = message_source(self.mailboxes.store().cloned());
        // How long reading the blobs takes, for the debug log.
        let read_us = std::sync::atomic::AtomicU64::new(0);
        // Only the blobs the target's copy does not name travel.
        let source = |h: &[u8; 32]| {
            if lacking.contains(h) {
                let t = std::time::Instant::now();
                let found = read(h);
                read_us.fetch_add(
                    t.elapsed().as_micros() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                found
            } else {
                Ok(None)
            }
        };
        let mut frames = export::encode_export(id, state, &code, &source);
        let first = match frames.next() {
            Some(Ok(first)) => first,
            Some(Err(e)) => return Err(MigrateError::Pause(internal(e))),
            None => return Err(MigrateError::Pause(internal("the export has no header"))),
        };
        let header = match rmp_serde::from_slice::<Frame>(&first.head) {
            Ok(Frame::Header(h)) => h,
            _ => return Err(MigrateError::Pause(internal("the export has no header"))),
        };
        let frames = std::iter::once(Ok(first)).chain(frames);
        tracing::debug!(
            asked_ms,
            header_ms = t.elapsed().as_secs_f64() * 1e3,
            missing = code.len(),
            "sending the state"
        );
        let before = conn.quinn().stats().path;
        let sent = self
            .write_stream(&conn, &request(Box::new(header)), frames)
            .await;
        // Loss on a bulk transfer means the receiver's socket buffer
        // overflowed (`TransportConfig::socket_buffer_bytes`).
        let after = conn.quinn().stats().path;
        tracing::debug!(
            sent_ms = t.elapsed().as_secs_f64() * 1e3,
            read_ms = read_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e3,
            sent_packets = after.sent_packets.saturating_sub(before.sent_packets),
            lost_packets = after.lost_packets.saturating_sub(before.lost_packets),
            congestion_events = after
                .congestion_events
                .saturating_sub(before.congestion_events),
            "sent the state"
        );
        sent
    }

    /// Asks the target which of the mailbox's components (`code` and the
    /// plugins') it lacks; those, with their bytes.
    pub(super) async fn missing_code_at(
        &self,
        conn: &Connection,
        code: CodeHash,
        plugins: &[PluginEntry],
    ) -> Result<Vec<(CodeHash, Vec<u8>)>, MigrateError> {
        let mut hashes = vec![code];
        for plugin in plugins {
            if let Ok(h) = plugin.code_hash.parse::<CodeHash>()
                && !hashes.contains(&h)
            {
                hashes.push(h);
            }
        }
        let missing = match conn
            .request(
                &HostRequest::MissingCode {
                    hashes: hashes.clone(),
                },
                MESSAGE_BYTES_MAX,
                HOST_REQUEST_TIMEOUT,
            )
            .await
        {
            Ok(HostResponse::Missing(m)) => m,
            Ok(other) => return Err(MigrateError::Target(unexpected(&other))),
            Err(e) => return Err(MigrateError::Target(refusal(e))),
        };
        let mut code = Vec::new();
        for hash in missing.into_iter().filter(|h| hashes.contains(h)) {
            let bytes = self
                .mailboxes
                .runtime()
                .code()
                .bytes(&hash)
                .map_err(|e| MigrateError::Pause(internal(e)))?;
            code.push((hash, bytes));
        }
        Ok(code)
    }

    /// Sends `request` then `frames` as raw frames on one stream, without
    /// ending it. A frame that could not be made resets the stream, so the
    /// target drops what it took.
    pub(super) async fn write_stream<E: std::fmt::Display>(
        &self,
        conn: &Connection,
        request: &HostRequest,
        frames: impl IntoIterator<Item = Result<EncodedFrame, E>>,
    ) -> Result<MoveStream, MigrateError> {
        let target = |e: NetError| MigrateError::Target(refusal(e));
        let (send, recv) = conn.open_stream().await.map_err(target)?;
        // From here on a failure, or this future being dropped, resets it.
        let mut stream = MoveStream {
            send: Some(send),
            recv,
        };
        let written = {
            let Some(send) = stream.send.as_mut() else {
                unreachable!("a stream just opened")
            };
            write_frame(send, request).await.map_err(target)?;
            let mut batch = FrameBatch::new(send);
            let mut written = Ok(());
            // Time spent waiting for the stream (flow control) against
            // making the frames, for the debug log.
            let (started, mut waited) = (std::time::Instant::now(), std::time::Duration::ZERO);
            for frame in frames {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => {
                        return Err(MigrateError::Pause(internal(format_args!(
                            "encoding the state: {e}"
                        ))));
                    }
                };
                let t = std::time::Instant::now();
                written = batch.push_parts(&frame.head, frame.body).await;
                waited += t.elapsed();
                if written.is_err() {
                    break;
                }
            }
            if written.is_ok() {
                written = batch.flush().await;
            }
            tracing::debug!(
                frames_ms = started.elapsed().as_secs_f64() * 1e3,
                waited_ms = waited.as_secs_f64() * 1e3,
                "wrote the frames"
            );
            written
        };
        if let Err(e) = written {
            // A refusing target says why before it stops reading.
            return Err(
                match read_frame::<Result<HostResponse, WireError>>(
                    &mut stream.recv,
                    MESSAGE_BYTES_MAX,
                )
                .await
                {
                    Ok(Some(Err(w))) => MigrateError::Target(w),
                    _ => target(e),
                },
            );
        }
        Ok(stream)
    }

    /// Reads export frames after `header` off the exchange, checks them and
    /// stores the components they carry; the state is not imported yet.
    pub(super) async fn receive_export(
        &self,
        header: &ExportHeader,
        ex: &mut Exchange,
    ) -> Result<(UserId, ExportedState), WireError> {
        let bad = |e: &dyn std::fmt::Display| WireError::new(WireError::BAD_REQUEST, e.to_string());
        let user = owner_of(header)?;
        let id = &header.mailbox;
        let received = async {
            let mut commits = MessageCommits::default();
            let mut importer = Importer::new();
            let mut frames = FrameReader::new(&mut ex.recv);
            while let Some(bytes) = frames.next(FRAME_BYTES_MAX).await.map_err(|e| bad(&e))? {
                self.traffic.frame(Kind::Full, bytes.len());
                importer.handle_encoded(&bytes).map_err(|e| bad(&e))?;
                if importer.messages_pending_bytes() >= MESSAGES_HELD_BYTES {
                    self.keep_messages(id, importer.take_messages(), &mut commits)
                        .await?;
                }
            }
            let imported = importer.finish().map_err(|e| bad(&e))?;
            if imported.mailbox != header.mailbox {
                return Err(bad(&"the stream is for another mailbox"));
            }
            self.keep_messages(id, imported.messages, &mut commits)
                .await?;
            commits.settle().await?;
            self.insert_carried_code(imported.code)?;
            Ok((user, imported.state))
        }
        .await;
        if received.is_err() {
            self.forget_messages(id).await;
        }
        received
    }

    /// Puts the components a stream carried into the code store, each
    /// checked against its hash.
    pub(super) fn insert_carried_code(
        &self,
        code: Vec<(CodeHash, Vec<u8>)>,
    ) -> Result<(), WireError> {
        let bad = |e: &dyn std::fmt::Display| WireError::new(WireError::BAD_REQUEST, e.to_string());
        if code.len() > IMPORT_CODES_MAX {
            return Err(bad(&"too many components"));
        }
        for (hash, bytes) in code {
            // File I/O and a hash check: keep it off the other tasks' way.
            tokio::task::block_in_place(|| {
                self.mailboxes
                    .runtime()
                    .code()
                    .insert_expecting(&hash, &bytes)
            })
            .map_err(|e| bad(&e))?;
        }
        Ok(())
    }

    /// Which of `hashes` the target's copy of mailbox `id` does not name:
    /// all of them if it cannot say (an older build, or no copy).
    pub(super) async fn missing_messages_at(
        &self,
        conn: &Connection,
        id: &MailboxId,
        hashes: &[[u8; 32]],
    ) -> Result<std::collections::HashSet<[u8; 32]>, MigrateError> {
        let all = || hashes.iter().copied().collect();
        let Ok(user) = id.as_str().parse::<UserId>() else {
            return Ok(all());
        };
        let mut lacking = std::collections::HashSet::new();
        for chunk in hashes.chunks(dem_proto::host::MISSING_MESSAGES_MAX) {
            let req = HostRequest::MissingMessages {
                mailbox: user,
                hashes: serde_bytes::ByteBuf::from(chunk.concat()),
            };
            match conn
                .request(&req, MESSAGE_BYTES_MAX, HOST_REQUEST_TIMEOUT)
                .await
            {
                Ok(HostResponse::MissingMessages(m)) => {
                    for h in m.chunks_exact(32) {
                        let mut hash = [0u8; 32];
                        hash.copy_from_slice(h);
                        lacking.insert(hash);
                    }
                }
                // A target that cannot tell gets every blob.
                Ok(_) | Err(_) => lacking.extend(chunk.iter().copied()),
            }
        }
        Ok(lacking)
    }

    /// Stores the message blobs a stream carried for mailbox `id`, in
    /// commits the store takes (each blob keyed by its own hash, so a peer
    /// cannot pass off other bytes as a message an op names). Returns once
    /// they are handed to the store and the commit before them is durable,
    /// so the next batch is read off the stream while this one is written;
    /// [`MessageCommits::settle`] waits for the last.
    pub(super) async fn keep_messages(
        &self,
        id: &MailboxId,
        messages: Vec<Vec<u8>>,
        commits: &mut MessageCommits,
    ) -> Result<(), WireError> {
        let Some(store) = self.mailboxes.store() else {
            return Ok(());
        };
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for m in messages {
            if !batch.is_empty()
                && (batch.len() >= dem_store::MESSAGES_PER_REQUEST_MAX
                    || bytes + m.len() > dem_store::MESSAGES_REQUEST_BYTES_MAX)
            {
                commits
                    .push(store.put_messages(id.as_str(), std::mem::take(&mut batch)))
                    .await?;
                bytes = 0;
            }
            bytes += m.len();
            batch.push(m);
        }
        if !batch.is_empty() {
            commits.push(store.put_messages(id.as_str(), batch)).await?;
        }
        Ok(())
    }

    /// After an import of `id` failed: the blobs it stored for a mailbox
    /// this host does not hold are let go.
    pub(super) async fn forget_messages(&self, id: &MailboxId) {
        if let Some(store) = self.mailboxes.store()
            && let Err(e) = store.drop_orphan_message_refs(id.as_str()).await
        {
            tracing::warn!("dropping the messages of a failed import: {e}");
        }
    }

    /// `MissingCode`: which of these components this host lacks.
    pub(super) fn missing_code(&self, hashes: &[CodeHash]) -> Result<HostResponse, WireError> {
        if hashes.len() > IMPORT_CODES_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                format!("{} hashes, at most {IMPORT_CODES_MAX}", hashes.len()),
            ));
        }
        let code = self.mailboxes.runtime().code();
        Ok(HostResponse::Missing(
            hashes
                .iter()
                .filter(|h| !code.contains(h))
                .copied()
                .collect(),
        ))
    }
}

/// A peer's answer that is not the one its request expects, as a
/// refusal.
fn unexpected(answer: &HostResponse) -> WireError {
    WireError::new(WireError::INTERNAL, format!("answered {answer:?}"))
}

/// The user whose mailbox an incoming export says it carries.
pub(super) fn owner_of(header: &ExportHeader) -> Result<UserId, WireError> {
    header
        .mailbox
        .as_str()
        .parse()
        .map_err(|_| WireError::new(WireError::BAD_REQUEST, "the mailbox id is not a user key"))
}

/// Message bytes a receiver holds before it stores them.
pub(super) const MESSAGES_HELD_BYTES: usize = 16 << 20;

/// The message commits of one incoming transfer, at most one in flight
/// while the next batch is read: the receiver holds at most two batches
/// ([`MESSAGES_HELD_BYTES`] each) whatever the sender's pace.
#[derive(Default)]
pub(super) struct MessageCommits {
    in_flight: Option<dem_store::Commit>,
}

impl MessageCommits {
    /// Waits for the commit in flight, then puts `commit` in its place.
    async fn push(&mut self, commit: dem_store::Commit) -> Result<(), WireError> {
        let earlier = self.in_flight.replace(commit);
        match earlier {
            Some(c) => c.await.map_err(internal),
            None => Ok(()),
        }
    }

    /// Waits until every batch handed to the store is durable.
    pub(super) async fn settle(&mut self) -> Result<(), WireError> {
        match self.in_flight.take() {
            Some(c) => c.await.map_err(internal),
            None => Ok(()),
        }
    }
}

/// Reads the message blobs an export carries from `store`. A blob that is
/// damaged here is left out like a missing one rather than stop the move:
/// the target then lacks it until a replica repairs it.
pub(super) fn message_source(
    store: Option<dem_store::MailboxStore>,
) -> impl Fn(&[u8; 32]) -> Result<Option<Vec<u8>>, String> + Sync {
    move |hash| {
        let Some(store) = &store else {
            return Ok(None);
        };
        match store.message(hash) {
            Ok(found) => Ok(found),
            Err(dem_store::LoadError::Corrupt(e)) => {
                tracing::warn!("an export leaves out a damaged message: {e}");
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
