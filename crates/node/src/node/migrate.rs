//! Mailbox migration between hosts (paper IV-B). The source
//! reads the state to ship while the mailbox still runs, pauses it (calls
//! queue) to add the ops logged since, asks the target which components
//! it lacks (`MissingCode`), then sends `Migrate { header, epoch }`
//! followed by the export frames (`export::encode_export`, only the
//! missing code) on the same stream, small ones batched, so QUIC flow
//! control paces it.
//! The target checks the stream (`export::Importer`), inserts the code by
//! hash, imports durably, and, as the grantee of the move the dispatch
//! unit authorized, reports the new location at `epoch` (the old one + 1).
//! Only after the target answers `Imported` does the source forget the
//! mailbox and forward queued and later calls ("moved"); on any failure
//! the mailbox carries on at the source, intact.
//!
//! The owner's order to move a mailbox (`Pull`) arrives in `pull.rs`,
//! which calls [`Node::migrate_out`] with dispatch's grant of the target,
//! granted or still on its way (`grant.rs`): the stream's end waits for it.

use std::time::Duration;

use tracing::Instrument as _;

use super::Node;
use super::grant::PendingGrant;
use super::serve::mailbox_id;
use super::traffic::Kind;
use crate::mailbox::MovedTo;
use crate::mailbox::actor::{ExportedState, MoveState, ReadAhead};
use dem_client::HOST_REQUEST_TIMEOUT;
use dem_identity::{Epoch, HostId, UserId};
use dem_net::{Connection, Exchange, FrameBatch, FrameReader, WireError, read_frame, write_frame};
use dem_proto::export::{
    self, EncodedFrame, ExportHeader, FRAME_BYTES_MAX, Frame, IMPORT_CODES_MAX, Importer,
};
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::mail::PluginEntry;
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse, MESSAGE_BYTES_MAX};

/// How long one whole move may take, each side, before it is abandoned
/// (the source resumes the mailbox; the target drops a partial import).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a mailbox could not be moved. In every case it stays live here.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The mailbox is not on this host.
    #[error("this host does not hold that mailbox")]
    NotHere,
    /// The mailbox could not be paused or exported.
    #[error("pausing the mailbox: {0}")]
    Pause(String),
    /// The dispatch unit did not answer or refused.
    #[error("the dispatch unit: {0}")]
    Dispatch(String),
    /// The dispatch unit did not authorize the move.
    #[error("the move was not authorized: {0}")]
    NotAuthorized(String),
    /// The target could not be reached, refused, or broke off.
    #[error("the target host: {0}")]
    Target(String),
    /// The move took longer than [`MIGRATE_TIMEOUT`].
    #[error("the move timed out after {0:?}")]
    Timeout(Duration),
}

impl Node {
    /// Moves `user`'s mailbox to `to` at `to_addr`, as the dispatch unit
    /// grants it: `grant`, granted already or on its way, which the end of
    /// the stream waits for (`grant.rs`). Returns where it went; on error
    /// it stays here. `ahead`: its state, already being read (else the read
    /// starts here).
    pub async fn migrate_out(
        &self,
        user: UserId,
        to: HostId,
        to_addr: &str,
        ahead: Option<ReadAhead>,
        mut grant: PendingGrant,
    ) -> Result<MovedTo, MigrateError> {
        let id = mailbox_id(&user).map_err(|e| MigrateError::Pause(e.message))?;
        let span = tracing::info_span!("migrate-out", mailbox = %user.short(), host = %self.id.short(), to = %to.short());
        async {
            if !self
                .mailboxes
                .contains(&id)
                .map_err(|e| MigrateError::Pause(e.to_string()))?
            {
                return Err(MigrateError::NotHere);
            }
            let started = std::time::Instant::now();
            // The state is read while the mailbox still runs, and the pause
            // adds only the ops logged since.
            let mut ahead = ahead.or_else(|| self.mailboxes.read_ahead(&id));
            // Read the epoch before pausing, so the pause is as short as the
            // transfer itself; meanwhile ask the target for its copy (one
            // holding an older copy may need only the ops it lacks), which
            // also sets up the connection the state will go over.
            let lookup = DispatchRequest::LookupUser { user };
            let (found, mut peer) = tokio::join!(
                self.session.dispatch(&lookup),
                self.target_copy(user, to, to_addr),
            );
            let epoch = match found {
                Ok(DispatchResponse::Mailbox(found)) => found.epoch.next(),
                Ok(other) => return Err(MigrateError::Dispatch(format!("answered {other:?}"))),
                Err(e) => return Err(MigrateError::Dispatch(e.to_string())),
            };
            tracing::debug!(
                since_start_ms = started.elapsed().as_secs_f64() * 1e3,
                "asked the target for its copy"
            );
            let migration = loop {
                if let Some(refused) = grant.refused() {
                    return Err(refused);
                }
                let migration = self
                    .mailboxes
                    .begin_migration(&id, peer.take(), ahead.take())
                    .await
                    .map_err(|e| MigrateError::Pause(e.to_string()))?;
                let full = migration.state.full();
                tracing::debug!(
                    since_start_ms = started.elapsed().as_secs_f64() * 1e3,
                    snapshot_bytes = full
                        .and_then(|s| s.snapshot.as_ref())
                        .map_or(0, |s| s.bytes.len()),
                    tail_ops = full.map_or(0, |s| s.tail.len()),
                    "paused with the state to send"
                );
                let delta = matches!(migration.state, MoveState::Delta(_));
                let sent = tokio::time::timeout(MIGRATE_TIMEOUT, async {
                    match &migration.state {
                        MoveState::Delta(d) => {
                            self.send_delta(user, d, (to, to_addr), epoch, &mut grant)
                                .await
                        }
                        MoveState::Full(state) => {
                            let request = |header| HostRequest::Migrate { header, epoch };
                            self.send_mailbox(&id, state, (to, to_addr), request, &mut grant)
                                .await
                        }
                    }
                })
                .await
                .unwrap_or(Err(MigrateError::Timeout(MIGRATE_TIMEOUT)));
                let Err(e) = sent else { break migration };
                // The target may have taken it and only its answer got lost:
                // the dispatch tables say who holds it now.
                if self.dispatch_says_held_by(user, to, epoch).await {
                    break migration;
                }
                migration.stay();
                if delta && matches!(e, MigrateError::Target(_)) {
                    // The copy changed or the delta was refused: the whole
                    // state always does (the mailbox ran on for a moment).
                    tracing::info!(error = %e, "the delta move failed; sending the whole state");
                    continue;
                }
                tracing::warn!(error = %e, "move failed; the mailbox stays here");
                return Err(e);
            };
            let moved = MovedTo {
                host: to.to_hex(),
                addr: to_addr.to_string(),
                epoch: epoch.0,
            };
            // The target holds it durably and dispatch points there: the local
            // copy is only a stale duplicate now (the forwarding entry stays),
            // so the move is done without waiting for its delete to be synced.
            if let Some(removal) = migration.moved(moved.clone()) {
                tokio::spawn(async move {
                    if let Err(e) = removal.await {
                        tracing::warn!(error = %e, "removing the moved mailbox's local copy");
                    }
                });
            }
            tracing::info!(
                epoch = epoch.0,
                took_ms = started.elapsed().as_secs_f64() * 1e3,
                "mailbox moved"
            );
            Ok(moved)
        }
        .instrument(span)
        .await
    }

    /// Whether dispatch records `to` as holding `user`'s mailbox at
    /// `epoch` or later.
    async fn dispatch_says_held_by(&self, user: UserId, to: HostId, epoch: Epoch) -> bool {
        matches!(
            self.session.dispatch(&DispatchRequest::LookupUser { user }).await,
            Ok(DispatchResponse::Mailbox(found))
                if found.epoch >= epoch && found.hosts.iter().any(|h| h.host == to)
        )
    }

    /// The transfer itself: missing code, then `request` (made from the
    /// export's header) and the export frames, finished once `grant` is.
    pub(super) async fn send_mailbox(
        &self,
        id: &MailboxId,
        state: &ExportedState,
        (to, to_addr): (HostId, &str),
        request: impl FnOnce(Box<ExportHeader>) -> HostRequest,
        grant: &mut PendingGrant,
    ) -> Result<u64, MigrateError> {
        let conn = self
            .session
            .connect(to_addr, to)
            .await
            .map_err(|e| MigrateError::Target(e.to_string()))?;
        let t = std::time::Instant::now();
        let code = self
            .missing_code_at(&conn, CodeHash(state.meta.code_hash), &state.plugins)
            .await?;
        let asked_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut frames = export::encode_export(id, state, &code);
        let first = match frames.next() {
            Some(Ok(first)) => first,
            Some(Err(e)) => return Err(MigrateError::Pause(e.to_string())),
            None => return Err(MigrateError::Pause("the export has no header".into())),
        };
        let header = match rmp_serde::from_slice::<Frame>(&first.head) {
            Ok(Frame::Header(h)) => h,
            _ => return Err(MigrateError::Pause("the export has no header".into())),
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
            .stream_to(&conn, &request(Box::new(header)), frames, grant)
            .await;
        // Loss on a bulk transfer means the receiver's socket buffer
        // overflowed (`TransportConfig::socket_buffer_bytes`).
        let after = conn.quinn().stats().path;
        tracing::debug!(
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
        let target = |e: &dyn std::fmt::Display| MigrateError::Target(e.to_string());
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
            Ok(other) => return Err(target(&format!("answered {other:?}"))),
            Err(e) => return Err(target(&e)),
        };
        let mut code = Vec::new();
        for hash in missing.into_iter().filter(|h| hashes.contains(h)) {
            let bytes = self
                .mailboxes
                .runtime()
                .code()
                .bytes(&hash)
                .map_err(|e| MigrateError::Pause(e.to_string()))?;
            code.push((hash, bytes));
        }
        Ok(code)
    }

    /// Sends `request` then `frames` as raw frames on one stream, and ends
    /// it once `grant` is granted; the log position the target answers
    /// with `Imported`. A frame that could not be made, or a refused grant,
    /// resets the stream, so the target drops what it took.
    pub(super) async fn stream_to<E: std::fmt::Display>(
        &self,
        conn: &Connection,
        request: &HostRequest,
        frames: impl IntoIterator<Item = Result<EncodedFrame, E>>,
        grant: &mut PendingGrant,
    ) -> Result<u64, MigrateError> {
        let target = |e: &dyn std::fmt::Display| MigrateError::Target(e.to_string());
        let (mut send, mut recv) = conn.open_stream().await.map_err(|e| target(&e))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| target(&e))?;
        let mut batch = FrameBatch::new(&mut send);
        let mut written = Ok(());
        for frame in frames {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    let _ = batch.stream().reset(quinn::VarInt::from_u32(0));
                    return Err(MigrateError::Pause(format!("encoding the state: {e}")));
                }
            };
            written = batch.push_parts(&frame.head, frame.body).await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = batch.flush().await;
        }
        if let Err(e) = written {
            // A refusing target says why before it stops reading.
            return Err(
                match read_frame::<Result<HostResponse, WireError>>(&mut recv, MESSAGE_BYTES_MAX)
                    .await
                {
                    Ok(Some(Err(w))) => target(&w),
                    _ => target(&e),
                },
            );
        }
        if let Err(e) = grant.granted().await {
            let _ = send.reset(quinn::VarInt::from_u32(0));
            return Err(e);
        }
        send.finish().map_err(|e| target(&e))?;
        match read_frame::<Result<HostResponse, WireError>>(&mut recv, MESSAGE_BYTES_MAX).await {
            Ok(Some(Ok(HostResponse::Imported { log_position }))) => Ok(log_position),
            Ok(Some(Ok(other))) => Err(target(&format!("answered {other:?}"))),
            Ok(Some(Err(w))) => Err(target(&w)),
            Ok(None) => Err(target(&"closed the stream without an answer")),
            Err(e) => Err(target(&e)),
        }
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
        let mut importer = Importer::new();
        let mut frames = FrameReader::new(&mut ex.recv);
        while let Some(bytes) = frames.next(FRAME_BYTES_MAX).await.map_err(|e| bad(&e))? {
            self.traffic.frame(Kind::Full, bytes.len());
            importer.handle_encoded(&bytes).map_err(|e| bad(&e))?;
        }
        let imported = importer.finish().map_err(|e| bad(&e))?;
        if imported.mailbox != header.mailbox {
            return Err(bad(&"the stream is for another mailbox"));
        }
        self.insert_carried_code(imported.code)?;
        Ok((user, imported.state))
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

/// The user whose mailbox an incoming export says it carries.
pub(super) fn owner_of(header: &ExportHeader) -> Result<UserId, WireError> {
    header
        .mailbox
        .as_str()
        .parse()
        .map_err(|_| WireError::new(WireError::BAD_REQUEST, "the mailbox id is not a user key"))
}

/// An incoming move's answer, or a timeout after [`MIGRATE_TIMEOUT`].
pub(super) async fn within_move_timeout(
    work: impl std::future::Future<Output = Result<HostResponse, WireError>>,
) -> Result<HostResponse, WireError> {
    tokio::time::timeout(MIGRATE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(WireError::new(
                WireError::TIMEOUT,
                format!("the move took longer than {MIGRATE_TIMEOUT:?}"),
            ))
        })
}

/// Sends an incoming move's answer, logging a refusal as `refused`.
pub(super) async fn answer_move(
    ex: &mut Exchange,
    answer: Result<HostResponse, WireError>,
    refused: &str,
) -> dem_net::Result<()> {
    match answer {
        Ok(r) => ex.reply(&r).await,
        Err(e) => {
            tracing::warn!(error = %e.message, "{refused}");
            ex.reply_err(&e).await
        }
    }
}
