//! The source's side of a move: look up the epoch and ask the target for
//! an older copy, pause the mailbox, stream its state (or only the ops
//! that copy lacks), end the stream once dispatch granted the move, and
//! then let go (the target acknowledged, or dispatch records it) or resume
//! here. A delta the target refused falls back, once, to the whole state.
//! `node/migrate.rs` drives it; the target's side is [`super::target`].

use std::time::Duration;

use super::{LOCATION_CHECKS_MAX, Listing, MIGRATE_TIMEOUT_MS, StepError, check_delay_ms};
use dem_identity::{Epoch, HostId};
use dem_proto::WireError;

/// Why a mailbox could not be moved. In every case it stays live at the
/// source.
///
/// A failure of a peer or of dispatch is the [`WireError`] it answered
/// with; the driver turns a failure of its own on the way there (a
/// transport error, a timeout) into the `WireError` it amounts to, at one
/// place, so this machine sees one typed kind of refusal whatever the
/// transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The mailbox is not on this host.
    #[error("this host does not hold that mailbox")]
    NotHere,
    /// The mailbox could not be paused or exported (a local failure, as
    /// the driver reports it; its message says what failed).
    #[error("pausing the mailbox: {}", .0.message)]
    Pause(#[source] WireError),
    /// The dispatch unit did not answer or refused.
    #[error("the dispatch unit: {0}")]
    Dispatch(#[source] WireError),
    /// The dispatch unit did not authorize the move.
    #[error("the move was not authorized: {0}")]
    NotAuthorized(#[source] WireError),
    /// The target could not be reached, refused, or broke off.
    #[error("the target host: {0}")]
    Target(#[source] WireError),
    /// The move took longer than [`MIGRATE_TIMEOUT_MS`].
    #[error("the move timed out after {0:?}")]
    Timeout(Duration),
    /// The driver fed this machine an input out of order (a bug in the
    /// driver); the move was abandoned and the mailbox resumed.
    #[error("the move's driver: {0}")]
    Driver(#[from] StepError),
}

/// What the paused mailbox gave to ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipment {
    /// The whole durable state.
    Whole,
    /// Only the ops the target's older copy lacks.
    Delta,
}

/// What the source's driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAction {
    /// Look up the mailbox's epoch at dispatch and, side by side, ask the
    /// target whether it holds an older copy
    /// ([`SourceMove::handle_epoch`], [`SourceMove::handle_target_copy`]).
    LookUp,
    /// Pause the mailbox (calls queue) and take its state to ship: with
    /// `delta`, only the ops the target's copy lacks if the window reaches
    /// back to it ([`SourceMove::handle_paused`]).
    Pause { delta: bool },
    /// Stream the state to the target as the move to `epoch`: every frame,
    /// but not the end ([`SourceMove::handle_stream_written`],
    /// [`SourceMove::handle_stream_failed`]).
    Stream { epoch: Epoch },
    /// End the stream: the move is granted, the target may import
    /// ([`SourceMove::handle_target_answer`]).
    FinishStream,
    /// Reset the stream (if one is open): the target drops what it staged.
    ResetStream,
    /// After `delay_ms`, ask dispatch whether it records the target at
    /// `epoch`: the target may hold the mailbox though its answer never
    /// came ([`SourceMove::handle_location`]).
    CheckLocation { epoch: Epoch, delay_ms: u64 },
    /// The move failed: the mailbox resumes here, intact, with the calls
    /// that queued.
    Resume,
    /// The target holds the mailbox durably and dispatch points to it at
    /// `epoch`: forget it here and answer queued and later calls with
    /// where it went.
    Forward { epoch: Epoch },
}

/// Where the source's move stands.
#[derive(Debug)]
enum Step {
    /// Looking up the epoch and the target's copy.
    Preparing,
    /// Pausing the mailbox and taking its state.
    Pausing,
    /// Writing the stream.
    Streaming,
    /// Every frame is written; the end waits for dispatch's grant.
    AwaitingGrant,
    /// The stream has ended; the target imports and answers.
    AwaitingTarget,
    /// The move failed after the end of the stream: asking dispatch
    /// whether the target took over anyway.
    Checking { failure: MigrateError },
    /// Moved or failed: see [`SourceMove::outcome`].
    Done,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Preparing => "looking up the epoch",
            Step::Pausing => "pausing the mailbox",
            Step::Streaming => "streaming the state",
            Step::AwaitingGrant => "waiting for the grant",
            Step::AwaitingTarget => "waiting for the target",
            Step::Checking { .. } => "checking the location",
            Step::Done => "done",
        }
    }
}

/// One move of a mailbox away from this host, from the source's side.
#[derive(Debug)]
pub struct SourceMove {
    /// The target host.
    to: HostId,
    step: Step,
    /// Dispatch's answer to the grant, once it came. The stream ends only
    /// after an `Ok`.
    grant: Option<Result<(), WireError>>,
    /// The move's epoch (the current one + 1), once looked up.
    epoch: Option<Epoch>,
    /// Whether the target holds an older copy, once it said.
    target_copy: Option<bool>,
    /// Whether the state being shipped is a delta: a delta the target
    /// refuses is sent again as the whole state.
    delta: bool,
    /// When the current attempt's stream and answer are abandoned.
    deadline_ms: Option<u64>,
    /// Lookups made to settle the current failure.
    checks: u32,
    /// The move's epoch once it moved, or why it did not.
    outcome: Option<Result<Epoch, MigrateError>>,
}

impl SourceMove {
    /// A move of the mailbox to `to`, and the first thing to do. Dispatch's
    /// grant comes through [`SourceMove::handle_grant`] (at once if it was
    /// given before the move started).
    pub fn new(_now_ms: u64, to: HostId) -> (Self, Vec<SourceAction>) {
        let mv = SourceMove {
            to,
            step: Step::Preparing,
            grant: None,
            epoch: None,
            target_copy: None,
            delta: false,
            deadline_ms: None,
            checks: 0,
            outcome: None,
        };
        (mv, vec![SourceAction::LookUp])
    }

    /// The move's epoch, once known.
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// The epoch the mailbox moved at, or why it stays here; `None` while
    /// the move runs.
    pub fn outcome(&self) -> Option<&Result<Epoch, MigrateError>> {
        self.outcome.as_ref()
    }

    /// When [`SourceMove::handle_timeout`] is due, while the stream or the
    /// target's answer is awaited.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.step {
            Step::Streaming | Step::AwaitingGrant | Step::AwaitingTarget => self.deadline_ms,
            _ => None,
        }
    }

    /// Dispatch's answer to the move's grant: `Ok` lets the stream end, an
    /// error stops the move (before the pause if it comes in time).
    pub fn handle_grant(
        &mut self,
        _now_ms: u64,
        answer: Result<(), WireError>,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the grant";
        self.expect_running(INPUT)?;
        if self.grant.is_some() {
            return Err(StepError::Duplicate { input: INPUT });
        }
        let refused = answer.as_ref().err().cloned();
        self.grant = Some(answer);
        Ok(match (&self.step, refused) {
            // Refused before anything was paused: nothing to undo.
            (Step::Preparing, Some(why)) => {
                self.finish(Err(MigrateError::NotAuthorized(why)));
                vec![]
            }
            (Step::AwaitingGrant, None) => self.end_stream(),
            (Step::AwaitingGrant, Some(why)) => {
                self.finish(Err(MigrateError::NotAuthorized(why)));
                vec![SourceAction::ResetStream, SourceAction::Resume]
            }
            // The stream ends only after a grant.
            (Step::AwaitingTarget, _) => unreachable!("the stream ended without a grant"),
            // Decided once the pause, the stream or the check is done.
            _ => vec![],
        })
    }

    /// Dispatch's answer to the lookup: the mailbox's current epoch (the
    /// move goes to the next), or why there is none.
    pub fn handle_epoch(
        &mut self,
        _now_ms: u64,
        current: Result<Epoch, WireError>,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the epoch";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::Preparing), INPUT)?;
        if self.epoch.is_some() {
            return Err(StepError::Duplicate { input: INPUT });
        }
        match current {
            Ok(current) => {
                self.epoch = Some(current.next());
                Ok(self.pause_if_prepared())
            }
            Err(why) => {
                self.finish(Err(MigrateError::Dispatch(why)));
                Ok(vec![])
            }
        }
    }

    /// The target's answer to `Holds`: whether it keeps an older copy (any
    /// failure counts as none; the whole state is always right).
    pub fn handle_target_copy(
        &mut self,
        _now_ms: u64,
        has_copy: bool,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the target's copy";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::Preparing), INPUT)?;
        if self.target_copy.is_some() {
            return Err(StepError::Duplicate { input: INPUT });
        }
        self.target_copy = Some(has_copy);
        Ok(self.pause_if_prepared())
    }

    /// The mailbox is paused with its state taken, or could not be (then it
    /// was never paused and runs on).
    pub fn handle_paused(
        &mut self,
        now_ms: u64,
        paused: Result<Shipment, MigrateError>,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the pause";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::Pausing), INPUT)?;
        let shipment = match paused {
            Ok(shipment) => shipment,
            Err(e) => {
                self.finish(Err(e));
                return Ok(vec![]);
            }
        };
        if let Some(Err(why)) = &self.grant {
            // Refused while pausing: no point sending the state.
            let why = why.clone();
            self.finish(Err(MigrateError::NotAuthorized(why)));
            return Ok(vec![SourceAction::Resume]);
        }
        self.delta = shipment == Shipment::Delta;
        self.step = Step::Streaming;
        self.deadline_ms = Some(now_ms + MIGRATE_TIMEOUT_MS);
        Ok(vec![SourceAction::Stream {
            epoch: self.epoch_known(),
        }])
    }

    /// Every frame of the stream is written; its end waits for the grant.
    pub fn handle_stream_written(&mut self, _now_ms: u64) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the written stream";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::Streaming), INPUT)?;
        Ok(match &self.grant {
            None => {
                self.step = Step::AwaitingGrant;
                vec![]
            }
            Some(Ok(())) => self.end_stream(),
            Some(Err(why)) => {
                let why = why.clone();
                self.finish(Err(MigrateError::NotAuthorized(why)));
                vec![SourceAction::ResetStream, SourceAction::Resume]
            }
        })
    }

    /// Writing the stream failed (the target refused or broke off, the
    /// state could not be encoded). It never ended, so the target cannot
    /// have imported it: resume, or send a refused delta again whole.
    pub fn handle_stream_failed(
        &mut self,
        _now_ms: u64,
        error: MigrateError,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "a failed stream";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::Streaming), INPUT)?;
        let mut actions = vec![SourceAction::ResetStream];
        actions.extend(self.resume_after(error));
        Ok(actions)
    }

    /// The target's answer to the ended stream: it imported the mailbox and
    /// dispatch records it, or an error (which may hide a move that
    /// happened: only the answer may have been lost).
    pub fn handle_target_answer(
        &mut self,
        _now_ms: u64,
        answer: Result<(), MigrateError>,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the target's answer";
        self.expect_running(INPUT)?;
        self.expect(matches!(self.step, Step::AwaitingTarget), INPUT)?;
        Ok(match answer {
            Ok(()) => self.forward(),
            Err(failure) => self.check(failure),
        })
    }

    /// Dispatch's answer to [`SourceAction::CheckLocation`].
    pub fn handle_location(
        &mut self,
        _now_ms: u64,
        found: Result<Listing, WireError>,
    ) -> Result<Vec<SourceAction>, StepError> {
        const INPUT: &str = "the location";
        self.expect_running(INPUT)?;
        let Step::Checking { failure } = &self.step else {
            return Err(self.out_of_order(INPUT));
        };
        let failure = failure.clone();
        Ok(match found {
            Ok(listing) if listing.records(self.to, self.epoch_known()) => {
                tracing::info!("the target's answer was lost, but dispatch records it");
                self.forward()
            }
            Err(why) if self.checks < LOCATION_CHECKS_MAX => {
                tracing::debug!(error = %why, "no answer from dispatch; asking again");
                self.check(failure)
            }
            // Not recorded there, or dispatch stayed silent: the mailbox
            // goes on here.
            _ => self.resume_after(failure),
        })
    }

    /// The clock reached [`SourceMove::poll_timeout`]: the stream or the
    /// target's answer took too long. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<Vec<SourceAction>, StepError> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(vec![]);
        };
        if now_ms < deadline {
            return Ok(vec![]);
        }
        let timeout = MigrateError::Timeout(Duration::from_millis(MIGRATE_TIMEOUT_MS));
        Ok(match self.step {
            // Never ended: the target cannot have imported it.
            Step::Streaming | Step::AwaitingGrant => {
                self.finish(Err(timeout));
                vec![SourceAction::ResetStream, SourceAction::Resume]
            }
            Step::AwaitingTarget => self.check(timeout),
            _ => vec![],
        })
    }

    fn pause_if_prepared(&mut self) -> Vec<SourceAction> {
        let (Some(_), Some(copy)) = (self.epoch, self.target_copy) else {
            return vec![];
        };
        // A refusal ended the move when it came.
        assert!(
            !matches!(self.grant, Some(Err(_))),
            "refused, yet preparing"
        );
        self.step = Step::Pausing;
        vec![SourceAction::Pause { delta: copy }]
    }

    fn end_stream(&mut self) -> Vec<SourceAction> {
        assert!(
            matches!(self.grant, Some(Ok(()))),
            "the stream ends only once granted"
        );
        self.step = Step::AwaitingTarget;
        vec![SourceAction::FinishStream]
    }

    fn check(&mut self, failure: MigrateError) -> Vec<SourceAction> {
        self.checks += 1;
        let delay_ms = check_delay_ms(self.checks);
        self.step = Step::Checking { failure };
        vec![SourceAction::CheckLocation {
            epoch: self.epoch_known(),
            delay_ms,
        }]
    }

    fn forward(&mut self) -> Vec<SourceAction> {
        // Only an ended stream gets here, and it ended only once granted.
        assert!(
            matches!(self.step, Step::AwaitingTarget | Step::Checking { .. }),
            "letting go before the stream ended"
        );
        assert!(matches!(self.grant, Some(Ok(()))), "letting go ungranted");
        let epoch = self.epoch_known();
        self.finish(Ok(epoch));
        vec![SourceAction::Forward { epoch }]
    }

    /// The mailbox resumes after `failure`; a refused delta is tried once
    /// more as the whole state.
    fn resume_after(&mut self, failure: MigrateError) -> Vec<SourceAction> {
        let mut actions = vec![SourceAction::Resume];
        let retry = self.delta && matches!(failure, MigrateError::Target(_));
        match &self.grant {
            // The mailbox ran on for a moment; the whole state always does.
            Some(Ok(())) | None if retry => {
                tracing::info!(error = %failure, "the delta move failed; sending the whole state");
                self.delta = false;
                self.checks = 0;
                self.deadline_ms = None;
                self.step = Step::Pausing;
                actions.push(SourceAction::Pause { delta: false });
            }
            Some(Err(why)) if retry => {
                let why = why.clone();
                self.finish(Err(MigrateError::NotAuthorized(why)));
            }
            _ => {
                tracing::warn!(error = %failure, "move failed; the mailbox stays here");
                self.finish(Err(failure));
            }
        }
        actions
    }

    fn finish(&mut self, outcome: Result<Epoch, MigrateError>) {
        self.step = Step::Done;
        self.deadline_ms = None;
        self.outcome = Some(outcome);
    }

    fn epoch_known(&self) -> Epoch {
        self.epoch
            .expect("the epoch is looked up before the mailbox is paused")
    }

    fn expect_running(&self, input: &'static str) -> Result<(), StepError> {
        match self.step {
            Step::Done => Err(StepError::Ended { input }),
            _ => Ok(()),
        }
    }

    fn expect(&self, fits: bool, input: &'static str) -> Result<(), StepError> {
        if fits {
            Ok(())
        } else {
            Err(self.out_of_order(input))
        }
    }

    fn out_of_order(&self, input: &'static str) -> StepError {
        StepError::OutOfOrder {
            input,
            step: self.step.name(),
        }
    }
}

#[cfg(test)]
mod tests;
