//! Mailbox migration between hosts (paper IV-B), the source's side: the
//! driver of `dem_core::migration::SourceMove`. The machine decides every
//! step (when to pause, whether a delta may do, when the stream may end,
//! whether a failure was only a lost answer, when to let go or resume);
//! this file carries the steps out and feeds their results back.
//!
//! The source reads the state to ship while the mailbox still runs, pauses
//! it (calls queue) to add the ops logged since, asks the target which
//! components it lacks (`MissingCode`), then sends `Migrate { header,
//! epoch }` and the export frames on one stream (`move_stream.rs`), and
//! ends it once dispatch granted the move (`grant.rs`). The target checks
//! the stream, imports durably and, as the grantee, reports the new
//! location at `epoch` (the old one + 1) (`migrate_in.rs`). Only after the
//! target answers `Imported`, or dispatch records it, does the source
//! forget the mailbox and forward queued and later calls ("moved"); on any
//! other failure the mailbox carries on at the source, intact.
//!
//! The owner's order to move a mailbox (`Pull`) arrives in `pull.rs`,
//! which calls [`Node::migrate_out`] with dispatch's grant of the target,
//! granted or still on its way.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::Instrument as _;

use super::Node;
use super::grant::PendingGrant;
use super::move_stream::MoveStream;
use super::serve::{internal, mailbox_id};
use crate::mailbox::MovedTo;
use crate::mailbox::actor::{MoveState, ReadAhead};
use crate::mailbox::registry::Migration;
use crate::replica::VersionVector;
use dem_client::{ClientError, SessionError};
use dem_core::migration::{MIGRATE_TIMEOUT_MS, Shipment, SourceAction, SourceMove, StepError};
use dem_identity::{HostId, UserId};
use dem_net::{Exchange, NetError, WireError};
use dem_proto::ids::MailboxId;
use dem_proto::{HostRequest, HostResponse};

pub use dem_core::migration::MigrateError;

/// How long one whole move may take, each side, before it is abandoned
/// (the source resumes the mailbox; the target drops a partial import).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_millis(MIGRATE_TIMEOUT_MS);

/// A failure to hear from a peer or dispatch, as a move's state machines
/// take it (`dem_core::migration` cannot name the transport): the refusal
/// itself if one came, from a host or a dispatch unit; else a `WireError`
/// that says what failed here, `Timeout` if the wait ran out and
/// `Internal` otherwise, never a code that reads as a considered refusal
/// (a lost answer must stay unsure: `LocationAnswer::from_refusal`). The
/// one place the drivers of a move turn their own errors into refusals.
pub(super) fn refusal(e: impl Into<SessionError>) -> WireError {
    let e = e.into();
    let code = match e {
        SessionError::Net(NetError::Remote(w))
        | SessionError::Dispatch(ClientError::Refused { error: w, .. }) => return w,
        SessionError::Net(NetError::Timeout { .. }) => WireError::TIMEOUT,
        _ => WireError::INTERNAL,
    };
    WireError::new(code, e.to_string())
}

/// A move's clock for its state machine: milliseconds since it started.
/// Tokio's, so paused test time drives it too.
#[derive(Debug, Clone, Copy)]
pub(super) struct MoveClock(tokio::time::Instant);

impl MoveClock {
    pub(super) fn start() -> Self {
        MoveClock(tokio::time::Instant::now())
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    /// `fut`'s output, unless the move's clock reaches `deadline_ms` first.
    pub(super) async fn within<F: std::future::Future>(
        &self,
        deadline_ms: Option<u64>,
        fut: F,
    ) -> Option<F::Output> {
        match deadline_ms {
            Some(ms) => {
                let at = self.0 + Duration::from_millis(ms);
                tokio::time::timeout_at(at, fut).await.ok()
            }
            None => Some(fut.await),
        }
    }
}

impl Node {
    /// Moves `user`'s mailbox to `to` at `to_addr`, as the dispatch unit
    /// grants it: `grant`, granted already or on its way, which the end of
    /// the stream waits for. Returns where it went; on error it stays here.
    /// `ahead`: its state, already being read (else the read starts here).
    pub async fn migrate_out(
        &self,
        user: UserId,
        to: HostId,
        to_addr: &str,
        ahead: Option<ReadAhead>,
        grant: PendingGrant,
    ) -> Result<MovedTo, MigrateError> {
        let id = mailbox_id(&user).map_err(MigrateError::Pause)?;
        let span = tracing::info_span!("migrate-out", mailbox = %user.short(), host = %self.id.short(), to = %to.short());
        async {
            if !self
                .mailboxes
                .contains(&id)
                .map_err(|e| MigrateError::Pause(internal(e)))?
            {
                return Err(MigrateError::NotHere);
            }
            // The state is read while the mailbox still runs, and the pause
            // adds only the ops logged since.
            let ahead = ahead.or_else(|| self.mailboxes.read_ahead(&id));
            let started = std::time::Instant::now();
            let clock = MoveClock::start();
            let (mv, first) = SourceMove::new(clock.now_ms(), to);
            let outcome = Outbound {
                node: self,
                user,
                id,
                to,
                to_addr,
                clock,
                mv,
                grant,
                todo: first.into(),
                ahead,
                peer: None,
                migration: None,
                stream: None,
                moved: None,
                started,
            }
            .run()
            .await;
            // A mailbox not held here never started a move: not counted.
            match &outcome {
                Ok(_) => self.metrics.moved("out", "moved", Some(started.elapsed())),
                Err(MigrateError::NotHere) => {}
                Err(_) => self.metrics.moved("out", "failed", None),
            }
            outcome
        }
        .instrument(span)
        .await
    }
}

/// The source's driver: what it holds while its [`SourceMove`] runs.
struct Outbound<'a> {
    node: &'a Node,
    user: UserId,
    id: MailboxId,
    to: HostId,
    to_addr: &'a str,
    clock: MoveClock,
    mv: SourceMove,
    grant: PendingGrant,
    /// Actions the machine returned, not yet carried out.
    todo: VecDeque<SourceAction>,
    /// The state being read ahead of the pause.
    ahead: Option<ReadAhead>,
    /// The vector of the target's older copy, for a delta.
    peer: Option<VersionVector>,
    /// The paused mailbox, settled by `Resume` or `Forward`; dropped
    /// unsettled, the mailbox resumes.
    migration: Option<Migration>,
    /// The written stream, until ended or reset.
    stream: Option<MoveStream>,
    /// Where the mailbox went, once forwarded.
    moved: Option<MovedTo>,
    started: std::time::Instant,
}

impl Outbound<'_> {
    async fn run(mut self) -> Result<MovedTo, MigrateError> {
        loop {
            if let Some(action) = self.todo.pop_front() {
                self.act(action).await?;
                continue;
            }
            if let Some(outcome) = self.mv.outcome() {
                return match outcome.clone() {
                    // The machine ends a move as moved only after its
                    // `Forward`, which recorded where to.
                    Ok(_) => self
                        .moved
                        .take()
                        .ok_or(MigrateError::Driver(StepError::OutOfOrder {
                            input: "the end of the move",
                            step: "not forwarded",
                        })),
                    Err(e) => Err(e),
                };
            }
            // Nothing to do but wait for dispatch's grant, or the deadline.
            let deadline = self.mv.poll_timeout();
            let answer = self.clock.within(deadline, self.grant.answer()).await;
            let now = self.clock.now_ms();
            let actions = match answer {
                Some(answer) => self.mv.handle_grant(now, answer),
                None => self.mv.handle_timeout(now.max(deadline.unwrap_or(0))),
            };
            self.push(actions)?;
        }
    }

    async fn act(&mut self, action: SourceAction) -> Result<(), MigrateError> {
        let (node, user, to, to_addr) = (self.node, self.user, self.to, self.to_addr);
        match action {
            SourceAction::LookUp => {
                // The epoch is read before the pause, so the pause is as
                // short as the transfer itself; meanwhile the target is asked
                // for its copy (one holding an older copy may need only the
                // ops it lacks), which also sets up the connection.
                let (found, peer) = tokio::join!(
                    node.mailbox_listing(user),
                    node.target_copy(user, to, to_addr),
                );
                tracing::debug!(
                    since_start_ms = self.started.elapsed().as_secs_f64() * 1e3,
                    "asked the target for its copy"
                );
                let has_copy = peer.is_some();
                self.peer = peer;
                let current = found.map(|l| l.epoch).map_err(WireError::from);
                self.feed(|mv, now| mv.handle_epoch(now, current))?;
                self.feed(|mv, now| mv.handle_target_copy(now, has_copy))
            }
            SourceAction::Pause { delta } => {
                let peer = if delta { self.peer.take() } else { None };
                let paused = node
                    .mailboxes
                    .begin_migration(&self.id, peer, self.ahead.take())
                    .await
                    .map_err(|e| MigrateError::Pause(internal(e)));
                let paused = paused.map(|migration| {
                    let full = migration.state.full();
                    tracing::debug!(
                        since_start_ms = self.started.elapsed().as_secs_f64() * 1e3,
                        snapshot_bytes = full
                            .and_then(|s| s.snapshot.as_ref())
                            .map_or(0, |s| s.bytes.len()),
                        tail_ops = full.map_or(0, |s| s.tail.len()),
                        "paused with the state to send"
                    );
                    let shipment = match migration.state {
                        MoveState::Delta(_) => Shipment::Delta,
                        MoveState::Full(_) => Shipment::Whole,
                    };
                    self.migration = Some(migration);
                    shipment
                });
                self.feed(|mv, now| mv.handle_paused(now, paused))
            }
            SourceAction::Stream { epoch } => {
                let Some(migration) = &self.migration else {
                    unreachable!("the machine streams only a paused mailbox")
                };
                let open = async {
                    match &migration.state {
                        MoveState::Delta(d) => node.send_delta(user, d, (to, to_addr), epoch).await,
                        MoveState::Full(state) => {
                            let request = |header| HostRequest::Migrate { header, epoch };
                            node.send_mailbox(&self.id, state, (to, to_addr), request)
                                .await
                        }
                    }
                };
                match self.clock.within(self.mv.poll_timeout(), open).await {
                    Some(Ok(stream)) => {
                        self.stream = Some(stream);
                        self.feed(|mv, now| mv.handle_stream_written(now))
                    }
                    Some(Err(e)) => self.feed(|mv, now| mv.handle_stream_failed(now, e)),
                    None => self.timed_out(),
                }
            }
            SourceAction::FinishStream => {
                let Some(stream) = self.stream.take() else {
                    unreachable!("the machine ends only a written stream")
                };
                match self
                    .clock
                    .within(self.mv.poll_timeout(), stream.finish())
                    .await
                {
                    Some(answer) => {
                        self.feed(|mv, now| mv.handle_target_answer(now, answer.map(drop)))
                    }
                    None => self.timed_out(),
                }
            }
            SourceAction::ResetStream => {
                if let Some(stream) = self.stream.take() {
                    stream.reset();
                }
                Ok(())
            }
            SourceAction::CheckLocation { epoch, delay_ms } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                tracing::debug!(%epoch, "asking dispatch whether the target took the mailbox");
                let found = node.mailbox_listing(user).await.map_err(WireError::from);
                self.feed(|mv, now| mv.handle_location(now, found))
            }
            SourceAction::Resume => {
                if let Some(migration) = self.migration.take() {
                    migration.stay();
                }
                Ok(())
            }
            SourceAction::Forward { epoch } => {
                let Some(migration) = self.migration.take() else {
                    unreachable!("the machine forwards only a paused mailbox")
                };
                let moved = MovedTo {
                    host: to.to_hex(),
                    addr: to_addr.to_string(),
                    epoch: epoch.0,
                };
                // The target holds it durably and dispatch points there: the
                // local copy is only a stale duplicate now (the forwarding
                // entry stays), so the move is done without waiting for its
                // delete to be synced.
                if let Some(removal) = migration.moved(moved.clone()) {
                    tokio::spawn(async move {
                        if let Err(e) = removal.await {
                            tracing::warn!(error = %e, "removing the moved mailbox's local copy");
                        }
                    });
                }
                tracing::info!(
                    epoch = epoch.0,
                    took_ms = self.started.elapsed().as_secs_f64() * 1e3,
                    "mailbox moved"
                );
                self.moved = Some(moved);
                Ok(())
            }
        }
    }

    /// Feeds the machine `input`, after dispatch's grant if it has come
    /// meanwhile (so a refusal stops the move before the next step, not
    /// after it). An input the grant made moot is dropped.
    fn feed(
        &mut self,
        input: impl FnOnce(&mut SourceMove, u64) -> Result<Vec<SourceAction>, StepError>,
    ) -> Result<(), MigrateError> {
        let now = self.clock.now_ms();
        if let Some(answer) = self.grant.take() {
            let actions = self.mv.handle_grant(now, answer);
            self.push(actions)?;
        }
        if self.mv.outcome().is_some() {
            return Ok(());
        }
        let actions = input(&mut self.mv, now);
        self.push(actions)
    }

    /// The deadline passed during a step: the machine says what follows.
    fn timed_out(&mut self) -> Result<(), MigrateError> {
        let now = self.clock.now_ms();
        let deadline = self.mv.poll_timeout().unwrap_or(0);
        let actions = self.mv.handle_timeout(now.max(deadline));
        self.push(actions)
    }

    fn push(&mut self, actions: Result<Vec<SourceAction>, StepError>) -> Result<(), MigrateError> {
        match actions {
            Ok(actions) => {
                self.todo.extend(actions);
                Ok(())
            }
            // A grant settled after the move ended: nothing to do.
            Err(StepError::Ended { .. }) => Ok(()),
            // A bug here: give up; dropping the migration resumes the
            // mailbox, dropping the stream resets it.
            Err(e) => {
                tracing::error!(error = %e, "the move's driver broke its state machine's order");
                Err(MigrateError::Driver(e))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_passes_as_it_came_and_a_local_failure_never_reads_as_one() {
        let busy = WireError::new(WireError::BUSY, "try later");
        assert_eq!(refusal(NetError::Remote(busy.clone())), busy);
        let refused = ClientError::Refused {
            addr: "127.0.0.1:1".into(),
            error: busy.clone(),
        };
        assert_eq!(refusal(refused), busy);
        let timeout = refusal(NetError::Timeout { ms: 5 });
        assert_eq!(timeout.code, WireError::TIMEOUT);
        assert_eq!(timeout.message, NetError::Timeout { ms: 5 }.to_string());
        let none = refusal(ClientError::NoUnits);
        assert_eq!(none.code, WireError::INTERNAL);
        assert_eq!(none.message, ClientError::NoUnits.to_string());
    }
}
