//! The target side of a mailbox move, the driver of
//! `dem_core::migration::TargetMove`: for `Migrate` (the whole state, here)
//! and `MoveDelta` (the ops an older copy lacks, `delta_move.rs`). The
//! machine decides the steps (import only after the end of the stream,
//! report the location only once durable, what a refusal or a lost answer
//! from dispatch means, when to delete the import and when to keep it);
//! [`Inbound`] carries them out and feeds the results back.
//!
//! A whole state is received by `receive`: a large snapshot is staged as
//! its file while it streams, so after the last byte what remains is the
//! file's final fsync and a redb commit of the log tail. The move is
//! acknowledged once the state is durable, every checksum held and
//! dispatch records this host; the mailbox is restored once the source has
//! the answer, off its clock.

mod receive;

use std::collections::VecDeque;
use std::sync::Arc;

use tracing::Instrument as _;

use super::Node;
use super::migrate::{MoveClock, answer_move};
use super::move_stream::owner_of;
use super::serve::internal;
use crate::mailbox::request::Request;
use crate::replica::VersionVector;
use dem_core::migration::{CopyHere, StepError, TargetAction, TargetMove};
use dem_identity::{Epoch, HostId, UserId};
use dem_net::{Exchange, WireError};
use dem_proto::HostResponse;
use dem_proto::export::ExportHeader;
use dem_proto::ids::MailboxId;
use receive::Incoming;

/// How long a moved-in mailbox waits for its answer to be delivered
/// before it restores.
const ANSWER_DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// What a move brings in, until it is imported or thrown away (dropping
/// it drops what was staged).
pub(super) enum Arrival {
    /// A whole state (`Migrate`).
    Whole(Box<Incoming>),
    /// The ops of a `MoveDelta` for the older copy here, and the vector
    /// they must bring it to.
    Delta {
        ops: Vec<Vec<u8>>,
        messages: Vec<Vec<u8>>,
        vv: VersionVector,
    },
}

/// The target's driver: what it holds while its [`TargetMove`] runs.
pub(super) struct Inbound<'a> {
    node: &'a Node,
    user: UserId,
    id: MailboxId,
    clock: MoveClock,
    mv: TargetMove,
    /// Actions the machine returned, not yet carried out.
    todo: VecDeque<TargetAction>,
    /// What to import, until the import takes it or it is discarded.
    arrival: Option<Arrival>,
    /// Where the import's log ends, for the `Imported` answer.
    log_position: u64,
    /// What a refusal is logged as.
    refused: &'static str,
    /// The import was a delta: the copy here ran already, nothing to
    /// restore.
    delta: bool,
    started: std::time::Instant,
}

impl<'a> Inbound<'a> {
    /// A move of `user`'s mailbox onto this host from `from` at `epoch`.
    pub(super) fn new(
        node: &'a Node,
        user: UserId,
        from: HostId,
        epoch: Epoch,
        refused: &'static str,
    ) -> Result<Self, WireError> {
        let id = super::serve::mailbox_id(&user)?;
        let clock = MoveClock::start();
        let (mv, first) = TargetMove::new(clock.now_ms(), node.id, from, epoch);
        Ok(Inbound {
            node,
            user,
            id,
            clock,
            mv,
            todo: first.into(),
            arrival: None,
            log_position: 0,
            refused,
            delta: false,
            started: std::time::Instant::now(),
        })
    }

    /// Receives the stream with `receive` (what arrived and what this host
    /// keeps already) while the holders to report are looked up, as the
    /// machine first asks, both within the move's deadline.
    pub(super) async fn receive(
        &mut self,
        receive: impl Future<Output = Result<(Arrival, CopyHere), WireError>>,
    ) {
        let (node, user) = (self.node, self.user);
        let lookup = self.todo.front() == Some(&TargetAction::LookupHolders);
        if lookup {
            self.todo.pop_front();
        }
        let both = async {
            let listing = async {
                if lookup {
                    Some(node.mailbox_listing(user).await.map_err(WireError::from))
                } else {
                    None
                }
            };
            tokio::join!(receive, listing)
        };
        let Some((received, holders)) = self.clock.within(self.mv.poll_timeout(), both).await
        else {
            return self.timed_out();
        };
        tracing::debug!(
            received_ms = self.started.elapsed().as_secs_f64() * 1e3,
            "received the state"
        );
        if let Some(holders) = holders {
            self.feed(|mv, now| mv.handle_holders(now, holders));
        }
        match received {
            Ok((arrival, copy)) => {
                self.arrival = Some(arrival);
                self.feed(|mv, now| mv.handle_stream_ended(now, copy));
            }
            Err(e) => self.feed(|mv, now| mv.handle_stream_failed(now, e)),
        }
    }

    /// Carries out what the machine decides until it has answered the
    /// source (and restored the mailbox).
    pub(super) async fn run(mut self, ex: &mut Exchange) -> dem_net::Result<()> {
        let mut answered = None;
        while let Some(action) = self.todo.pop_front() {
            let deadline = self.mv.poll_timeout();
            let node = self.node;
            match action {
                TargetAction::LookupHolders => {
                    match self
                        .clock
                        .within(deadline, node.mailbox_listing(self.user))
                        .await
                    {
                        Some(found) => {
                            let found = found.map_err(WireError::from);
                            self.feed(|mv, now| mv.handle_holders(now, found))
                        }
                        None => self.timed_out(),
                    }
                }
                TargetAction::Import { replace } => self.import(replace).await,
                TargetAction::DiscardStaged => self.arrival = None,
                TargetAction::UpdateLocation { epoch, hosts } => {
                    let update = node.update_location(self.user, epoch, hosts);
                    match self.clock.within(deadline, update).await {
                        Some(answer) => self.feed(|mv, now| mv.handle_location_answer(now, answer)),
                        None => self.timed_out(),
                    }
                }
                TargetAction::CheckLocation { delay_ms } => {
                    let check = async {
                        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                        node.mailbox_listing(self.user)
                            .await
                            .map_err(WireError::from)
                    };
                    match self.clock.within(deadline, check).await {
                        Some(found) => self.feed(|mv, now| mv.handle_location(now, found)),
                        None => self.timed_out(),
                    }
                }
                TargetAction::DeleteImport => {
                    if let Err(e) = node.mailboxes.remove(&self.id).await {
                        tracing::warn!(error = %e, "dropping a refused import");
                    }
                }
                TargetAction::Acknowledge => {
                    tracing::info!(
                        log_position = self.log_position,
                        took_ms = self.started.elapsed().as_secs_f64() * 1e3,
                        "mailbox taken over"
                    );
                    let imported = HostResponse::Imported {
                        log_position: self.log_position,
                    };
                    node.metrics
                        .moved("in", "moved", Some(self.started.elapsed()));
                    answered = Some(answer_move(ex, Ok(imported), self.refused).await);
                    if self.restores() {
                        // Restoring takes a core for tens of ms: let the
                        // answer reach the source first, which waits on it
                        // to finish the move.
                        let _ = tokio::time::timeout(ANSWER_DELIVERY_WAIT, ex.send.stopped()).await;
                    }
                    self.feed(|mv, now| mv.handle_answered(now));
                }
                TargetAction::Refuse(refusal) => {
                    node.metrics.moved("in", "refused", None);
                    answered = Some(answer_move(ex, Err(refusal), self.refused).await);
                    self.feed(|mv, now| mv.handle_answered(now));
                }
                TargetAction::Restore => {
                    if self.restores()
                        && let Err(e) = node.mailboxes.call(&self.id, Request::ListPlugins).await
                    {
                        tracing::error!(error = %e, "a moved-in mailbox does not restore; its state stays on disk");
                    }
                }
            }
        }
        match answered {
            Some(answered) => answered,
            // Only a driver bug leaves the source unanswered.
            None => {
                let e = internal("the move's driver broke its state machine's order");
                answer_move(ex, Err(e), self.refused).await
            }
        }
    }

    /// Whether the import starts hibernated and is restored after the
    /// answer (a whole state; a delta's copy ran already).
    fn restores(&self) -> bool {
        !self.delta
    }

    async fn import(&mut self, replace: bool) {
        let Some(arrival) = self.arrival.take() else {
            unreachable!("the machine imports only what arrived")
        };
        let node = self.node;
        let id = &self.id;
        self.delta = matches!(arrival, Arrival::Delta { .. });
        let import = async {
            match arrival {
                Arrival::Whole(incoming) => node.import_incoming(id, *incoming, replace).await,
                Arrival::Delta { ops, messages, vv } => {
                    node.apply_delta(id, ops, messages, &vv).await
                }
            }
        };
        match self.clock.within(self.mv.poll_timeout(), import).await {
            Some(Ok(log_position)) => {
                node.replication.forget(id);
                self.log_position = log_position;
                tracing::debug!(
                    imported_ms = self.started.elapsed().as_secs_f64() * 1e3,
                    "imported"
                );
                self.feed(|mv, now| mv.handle_imported(now));
            }
            Some(Err(e)) => self.feed(|mv, now| mv.handle_import_failed(now, e)),
            None => self.timed_out(),
        }
    }

    fn feed(
        &mut self,
        input: impl FnOnce(&mut TargetMove, u64) -> Result<Vec<TargetAction>, StepError>,
    ) {
        match input(&mut self.mv, self.clock.now_ms()) {
            Ok(actions) => self.todo.extend(actions),
            // A bug here: stop; the import, if any, stays (unlisted unless
            // dispatch took an update), and the source is told.
            Err(e) => {
                tracing::error!(error = %e, "the move's driver broke its state machine's order");
                self.todo.clear();
            }
        }
    }

    /// The deadline passed during a step: the machine says what follows.
    fn timed_out(&mut self) {
        let deadline = self.mv.poll_timeout().unwrap_or(0);
        self.feed(|mv, now| mv.handle_timeout(now.max(deadline)));
    }
}

impl Node {
    /// Target side of `Migrate`: reads the frames, imports, reports the
    /// location, answers `Imported`.
    pub(super) async fn migrate_in(
        self: Arc<Self>,
        header: Box<ExportHeader>,
        epoch: Epoch,
        mut ex: Exchange,
    ) -> dem_net::Result<()> {
        let span = tracing::info_span!("migrate-in", mailbox = %header.mailbox, host = %self.id.short(), %epoch);
        async {
            const REFUSED: &str = "refused an incoming mailbox";
            let from = HostId(ex.peer_key);
            let inbound =
                owner_of(&header).and_then(|user| Inbound::new(&self, user, from, epoch, REFUSED));
            let mut inbound = match inbound {
                Ok(inbound) => inbound,
                Err(e) => return answer_move(&mut ex, Err(e), REFUSED).await,
            };
            let user = inbound.user;
            let receive = async {
                let incoming = self.receive_staged(&header, &mut ex).await?;
                let copy = self.copy_here(user, &header.mailbox, &incoming).await?;
                Ok((Arrival::Whole(Box::new(incoming)), copy))
            };
            inbound.receive(receive).await;
            inbound.run(&mut ex).await
        }
        .instrument(span)
        .await
    }

    /// What this host keeps of `user`'s mailbox as a whole state for it
    /// arrived. A peer cannot overwrite a live replica here; a stale copy
    /// this host kept from before (it was down, others took over) may be
    /// replaced by a state that has everything it has.
    async fn copy_here(
        &self,
        user: UserId,
        id: &MailboxId,
        incoming: &Incoming,
    ) -> Result<CopyHere, WireError> {
        if !self.mailboxes.contains(id).map_err(internal)? {
            return Ok(CopyHere::None);
        }
        if incoming.tail_staged() {
            return Ok(CopyHere::TakenMeanwhile);
        }
        let listed = self
            .listing(user, true)
            .await?
            .members
            .iter()
            .any(|m| m.host == self.id);
        let (_, _, ours) = self
            .mailboxes
            .since(id, VersionVector::new(), 0)
            .await
            .map_err(internal)?;
        let covers = incoming.vv().is_ok_and(|vv| vv.covers(&ours));
        Ok(if listed || !covers {
            CopyHere::Live
        } else {
            CopyHere::Stale
        })
    }
}
