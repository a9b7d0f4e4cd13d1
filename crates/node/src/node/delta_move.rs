//! Moves that ship only the missing ops, the driver around
//! `crate::replica::delta`.
//!
//! Before pausing a mailbox for a move, the source asks the target whether
//! it holds an older copy (`Holds`). If it does, and the source's window
//! still holds every op that copy lacks, the source sends `MoveDelta`: the
//! components the target lacks (`MissingCode`, as for a whole move), then
//! the ops as `DeltaFrame`s on the same stream. The target checks that its
//! copy is unlisted and still at the vector the ops were chosen against,
//! applies them durably, and then, as the grantee of the move, records
//! itself at the next epoch exactly as `migrate_in` does (the same
//! `TargetMove` decides both). Anything else (no copy, a copy with ops of
//! its own, a window that does not reach back, a refusal) falls back to
//! the whole state, as `SourceMove` decides (`migrate.rs`).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::Node;
use super::migrate::{MigrateError, answer_move, refusal};
use super::migrate_in::{Arrival, Inbound};
use super::move_stream::MoveStream;
use super::serve::{internal, mailbox_id};
use super::traffic::Kind;
use crate::mailbox::MailboxCallError;
use crate::mailbox::actor::DeltaState;
use crate::replica::{DeltaError, DeltaReceiver, VV_ORIGINS_MAX, VersionVector, encode_delta};
use dem_core::migration::CopyHere;
use dem_identity::{Epoch, HostId, UserId};
use dem_net::{Exchange, FrameReader, WireError};
use dem_proto::dispatch::CONFLICT;
use dem_proto::export::{EncodedFrame, FRAME_BYTES_MAX};
use dem_proto::host::DeltaHeader;
use dem_proto::host::NOT_HERE;
use dem_proto::ids::{CodeHash, MailboxId};
use dem_proto::{HostRequest, HostResponse};

/// How long the source waits for `Holds` before trying a fresh connection.
const HOLDS_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// The vector of the copy of `user`'s mailbox that `to` holds, if it
    /// holds one. Any failure counts as "none": the move then sends the
    /// whole state, which is always right.
    ///
    /// A target that restarted (the reconnecting home host) sits behind a
    /// cached connection to its dead process, which would only fail at the
    /// idle timeout: a live host answers `Holds` at once, so after
    /// [`HOLDS_TIMEOUT`] the connection is dropped and the question asked
    /// once more on a fresh one.
    pub(super) async fn target_copy(
        &self,
        user: UserId,
        to: HostId,
        to_addr: &str,
    ) -> Option<VersionVector> {
        let req = HostRequest::Holds { mailbox: user };
        for _ in 0..2 {
            let asked =
                tokio::time::timeout(HOLDS_TIMEOUT, self.session.host_request(to_addr, to, &req))
                    .await;
            match asked {
                Ok(Ok(HostResponse::Holds { vv })) => {
                    return vv.filter(|vv| vv.len() <= VV_ORIGINS_MAX);
                }
                Ok(Ok(_)) => return None,
                Ok(Err(_)) | Err(_) => self.session.drop_connection(to_addr).await,
            }
        }
        None
    }

    /// Sends `delta` of `user`'s mailbox to `to` as the move to `epoch`,
    /// every frame but not the end (which the source's `SourceMove`
    /// decides).
    pub(super) async fn send_delta(
        &self,
        user: UserId,
        delta: &DeltaState,
        (to, to_addr): (HostId, &str),
        epoch: Epoch,
    ) -> Result<MoveStream, MigrateError> {
        let conn = self
            .session
            .connect(to_addr, to)
            .await
            .map_err(|e| MigrateError::Target(refusal(e)))?;
        let code = self
            .missing_code_at(&conn, CodeHash(delta.meta.code_hash), &delta.plugins)
            .await?;
        // A copy that missed a blob (its delivery was shipped before the
        // bytes, or a repair never came) would lose that mail for good once
        // the source lets go: such a copy gets the whole state instead,
        // which carries exactly the blobs it lacks.
        let id = mailbox_id(&user).map_err(MigrateError::Pause)?;
        let mut lacking = self.missing_messages_at(&conn, &id, &delta.listed).await?;
        for m in &delta.messages {
            lacking.remove(blake3::hash(m).as_bytes());
        }
        if !lacking.is_empty() {
            return Err(MigrateError::Target(WireError::new(
                CONFLICT,
                format!(
                    "the target's copy lacks {} message(s) the mailbox names",
                    lacking.len()
                ),
            )));
        }
        let frames = encode_delta(&code, &delta.messages, &delta.ops)
            .map_err(|e| MigrateError::Pause(internal(e)))?;
        let request = HostRequest::MoveDelta(Box::new(DeltaHeader {
            mailbox: user,
            epoch,
            code_hash: CodeHash(delta.meta.code_hash),
            base: delta.base.clone(),
            vv: delta.vv.clone(),
            ops: delta.ops.len() as u64,
        }));
        let bytes: usize = frames.iter().map(|f| f.len() + 4).sum();
        let stream = self
            .write_stream(
                &conn,
                &request,
                frames
                    .into_iter()
                    .map(|f| Ok::<_, DeltaError>(EncodedFrame::from(f))),
            )
            .await?;
        tracing::info!(ops = delta.ops.len(), bytes, "sent the move as a delta");
        Ok(stream)
    }

    /// `Holds`: this host's copy's vector, if it has one.
    pub(super) async fn holds(&self, user: UserId) -> Result<HostResponse, WireError> {
        let id = mailbox_id(&user)?;
        if self.mailboxes.moved_to(&id).is_some()
            || !self.mailboxes.contains(&id).map_err(internal)?
        {
            return Ok(HostResponse::Holds { vv: None });
        }
        let vv = match self.mailboxes.since(&id, VersionVector::new(), 0).await {
            Ok((_, _, vv)) => Some(vv),
            Err(MailboxCallError::Unknown(_) | MailboxCallError::Moved { .. }) => None,
            Err(e) => return Err(internal(e)),
        };
        Ok(HostResponse::Holds { vv })
    }

    /// Target side of `MoveDelta`: reads the frames, applies the ops to the
    /// older copy, reports the location, answers `Imported`, as
    /// `TargetMove` decides (`migrate_in.rs` drives it).
    pub(super) async fn move_delta_in(
        self: Arc<Self>,
        header: Box<DeltaHeader>,
        mut ex: Exchange,
    ) -> dem_net::Result<()> {
        let span = tracing::info_span!("delta-in", mailbox = %header.mailbox.short(), host = %self.id.short(), epoch = %header.epoch);
        async {
            const REFUSED: &str = "refused a delta move";
            let from = HostId(ex.peer_key);
            let mut inbound = match Inbound::new(&self, header.mailbox, from, header.epoch, REFUSED)
            {
                Ok(inbound) => inbound,
                Err(e) => return answer_move(&mut ex, Err(e), REFUSED).await,
            };
            let receive = async {
                let arrival = self.receive_delta(&header, &mut ex).await?;
                // `receive_delta` refused any other copy.
                Ok((arrival, CopyHere::Stale))
            };
            inbound.receive(receive).await;
            inbound.run(&mut ex).await
        }
        .instrument(span)
        .await
    }

    /// Checks that this host keeps an unlisted copy at the delta's base,
    /// reads the frames and stores the components they carry; the ops are
    /// not applied yet.
    async fn receive_delta(
        &self,
        header: &DeltaHeader,
        ex: &mut Exchange,
    ) -> Result<Arrival, WireError> {
        let conflict = |m: String| WireError::new(CONFLICT, m);
        let bad = |e: &dyn std::fmt::Display| WireError::new(WireError::BAD_REQUEST, e.to_string());
        let user = header.mailbox;
        let id = mailbox_id(&user)?;
        if header.base.len() > VV_ORIGINS_MAX || header.vv.len() > VV_ORIGINS_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                "version vector too long",
            ));
        }
        if !self.mailboxes.contains(&id).map_err(internal)? {
            return Err(WireError::new(
                NOT_HERE,
                "this host holds no older copy; send the whole state",
            ));
        }
        // Keep the keeper from discarding the unlisted copy meanwhile.
        self.keeper_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copied(&id);
        if self
            .listing(user, true)
            .await?
            .members
            .iter()
            .any(|m| m.host == self.id)
        {
            return Err(conflict("this host already holds that mailbox".into()));
        }
        let mut receiver = DeltaReceiver::new(header.ops).map_err(|e| bad(&e))?;
        let mut frames = FrameReader::new(&mut ex.recv);
        while let Some(bytes) = frames.next(FRAME_BYTES_MAX).await.map_err(|e| bad(&e))? {
            self.traffic.frame(Kind::Delta, bytes.len());
            receiver.handle_encoded(&bytes).map_err(|e| bad(&e))?;
        }
        let delta = receiver.finish().map_err(|e| bad(&e))?;
        self.check_copy(&id, header).await?;
        self.insert_carried_code(delta.code)?;
        Ok(Arrival::Delta {
            ops: delta.ops,
            messages: delta.messages,
            vv: header.vv.clone(),
        })
    }

    /// Applies a delta's ops durably to the copy here, which must then
    /// cover `vv`; the log position it ends at.
    pub(super) async fn apply_delta(
        &self,
        id: &MailboxId,
        ops: Vec<Vec<u8>>,
        messages: Vec<Vec<u8>>,
        vv: &VersionVector,
    ) -> Result<u64, WireError> {
        let count = ops.len();
        let now = self
            .mailboxes
            .apply(id, ops, messages)
            .await
            .map_err(|e| match e {
                MailboxCallError::Import(m) => {
                    WireError::new(WireError::BAD_REQUEST, m.to_string())
                }
                e => internal(e),
            })?;
        if !now.covers(vv) {
            return Err(WireError::new(
                CONFLICT,
                format!("the ops left this copy at {now}, short of {vv}; send the whole state"),
            ));
        }
        let log_position = self
            .mailboxes
            .store()
            .and_then(|s| s.last_seq(id.as_str()).ok().flatten())
            .unwrap_or(0);
        tracing::info!(
            ops = count,
            log_position,
            "mailbox caught up by a delta move"
        );
        Ok(log_position)
    }

    /// The copy here must be exactly what the source chose the ops
    /// against, and run the same mailbox component.
    async fn check_copy(&self, id: &MailboxId, header: &DeltaHeader) -> Result<(), WireError> {
        let (_, _, ours) = self
            .mailboxes
            .since(id, VersionVector::new(), 0)
            .await
            .map_err(internal)?;
        if ours != header.base {
            return Err(WireError::new(
                CONFLICT,
                format!(
                    "this copy is at {ours}, not {}; send the whole state",
                    header.base
                ),
            ));
        }
        let code = self
            .mailboxes
            .store()
            .and_then(|s| s.meta(id.as_str()).ok().flatten())
            .map(|m| CodeHash(m.code_hash));
        if code != Some(header.code_hash) {
            return Err(WireError::new(
                CONFLICT,
                "this copy runs another mailbox component; send the whole state",
            ));
        }
        Ok(())
    }
}
