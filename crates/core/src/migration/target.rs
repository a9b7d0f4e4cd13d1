//! The target's side of a move: receive the stream (the holders to report
//! are looked up meanwhile), import only after its end, durably, then ask
//! dispatch to record this host at the move's epoch, and answer the source
//! `Imported` once it has, restoring the mailbox after that answer. A whole
//! state (`node/migrate_in.rs`) and a delta (`node/delta_move.rs`) differ
//! only in what "import" means. The source's side is [`super::source`].
//!
//! Where the driver once deleted the import on any error of the location
//! update, this machine deletes it only when dispatch can never record
//! this host at the move's epoch (see [`super`]); an answer that was lost
//! is settled by asking dispatch, and kept while that stays unknown.

use super::{
    LOCATION_CHECKS_MAX, LOCATION_UPDATE_TRIES, Listing, MIGRATE_TIMEOUT_MS, StepError,
    check_delay_ms, hosts_after_move,
};
use dem_identity::{Epoch, HostId};
use dem_proto::WireError;
use dem_proto::dispatch::{CONFLICT, NOT_FOUND};

/// What the target keeps of the mailbox already, checked once the stream
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyHere {
    /// No copy.
    None,
    /// A copy no listing names, with no op the incoming state lacks: the
    /// import may replace it (or, for a delta, bring it up to date).
    Stale,
    /// A copy dispatch lists here, or one with ops the incoming state
    /// lacks: a peer must not overwrite it.
    Live,
    /// A copy taken while the state streamed in (its log tail was staged
    /// for a host that had none).
    TakenMeanwhile,
}

/// Dispatch's answer to a location update, as far as the target can tell,
/// each failure with the refusal it came as (a failure on the way, as the
/// driver reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationAnswer {
    /// Dispatch recorded this host at the move's epoch.
    Applied,
    /// Refused for a reason no earlier or hedged try changes (not the
    /// grantee, an unknown host, a malformed list): dispatch will not
    /// record this host at the move's epoch.
    Refused(WireError),
    /// Refused as conflicting: dispatch is at the move's epoch or past it,
    /// which may be this very update taken by a unit whose answer was lost
    /// (the client asks a second unit when the first is slow).
    Conflict(WireError),
    /// No answer: the request failed on the way or timed out, and may have
    /// been applied (or a unit was busy or failing, which proves as
    /// little).
    Lost(WireError),
}

impl LocationAnswer {
    /// The answer a refusal from a dispatch unit amounts to.
    pub fn from_refusal(error: &WireError) -> Self {
        match error.code {
            WireError::FORBIDDEN | NOT_FOUND | WireError::BAD_REQUEST => {
                LocationAnswer::Refused(error.clone())
            }
            CONFLICT => LocationAnswer::Conflict(error.clone()),
            // Busy, failing or timed out: it may have been applied.
            _ => LocationAnswer::Lost(error.clone()),
        }
    }
}

/// How the target's side of a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOutcome {
    /// The mailbox is here durably and dispatch records it: `Imported` was
    /// answered.
    Acknowledged,
    /// Refused; nothing of the move stays (what was staged or imported is
    /// dropped, or no listing names it).
    Refused,
    /// Refused to the source, but the import stays: dispatch may yet
    /// record this host (an update's answer never came). No listing names
    /// it unless dispatch took the update; the keeper drops an unlisted
    /// copy after its grace.
    Kept,
}

/// What the target's driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAction {
    /// Look up the holders dispatch lists for the mailbox, to report the
    /// move with ([`TargetMove::handle_holders`]); while the state streams
    /// in, or again once imported if that failed.
    LookupHolders,
    /// The stream ended whole: write the state durably, `replace`-ing a
    /// stale copy this host keeps ([`TargetMove::handle_imported`],
    /// [`TargetMove::handle_import_failed`]).
    Import { replace: bool },
    /// Throw away what was staged (snapshot file, log rows): nothing was
    /// imported.
    DiscardStaged,
    /// Ask dispatch to record `hosts` at `epoch`, this host first
    /// ([`TargetMove::handle_location_answer`]).
    UpdateLocation { epoch: Epoch, hosts: Vec<HostId> },
    /// After `delay_ms`, ask dispatch where the mailbox is: the answer to
    /// an update was lost or may be its echo ([`TargetMove::handle_location`]).
    CheckLocation { delay_ms: u64 },
    /// Delete the imported mailbox: dispatch will never point here at the
    /// move's epoch.
    DeleteImport,
    /// Answer the source `Imported` (with the log position).
    Acknowledge,
    /// Answer the source with this refusal.
    Refuse(WireError),
    /// The source has its answer: restore the mailbox (it was imported
    /// hibernated).
    Restore,
}

/// Where the target's move stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The state streams in.
    Receiving,
    /// The stream ended whole; the state is being written.
    Importing,
    /// Imported; waiting for the holders to report.
    Listing,
    /// The location update is on its way.
    Updating,
    /// Asking dispatch whether it took an update whose answer was lost.
    Checking,
    /// Answered `Imported`; restores once the source has it.
    Acknowledged,
    /// Ended: see [`TargetMove::outcome`].
    Done,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Receiving => "receiving the state",
            Step::Importing => "importing",
            Step::Listing => "looking up the holders",
            Step::Updating => "updating the location",
            Step::Checking => "checking the location",
            Step::Acknowledged => "acknowledged",
            Step::Done => "done",
        }
    }
}

/// The holders to report the move with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holders {
    /// Being looked up while the state streams in.
    Asked,
    /// Listed below the move's epoch.
    Known(Vec<HostId>),
    /// The lookup failed; looked up again once imported.
    Failed,
    /// Dispatch is already at this epoch, the move's or past it: it will
    /// not take the move's update.
    Superseded(Epoch),
}

/// One move of a mailbox onto this host, from the target's side.
#[derive(Debug)]
pub struct TargetMove {
    /// This host.
    me: HostId,
    /// The source, whose place this host takes in the listing.
    from: HostId,
    /// The move's epoch.
    epoch: Epoch,
    deadline_ms: u64,
    step: Step,
    holders: Holders,
    /// The state is durable here.
    imported: bool,
    /// Location updates sent.
    updates: u32,
    /// An update may have been applied though no answer said so: the
    /// import is deleted only once dispatch shows it was not.
    maybe_applied: bool,
    /// Lookups made to settle an answer that was lost.
    checks: u32,
    outcome: Option<TargetOutcome>,
}

impl TargetMove {
    /// A move of a mailbox from `from` onto `me` at `epoch`, and the first
    /// thing to do (look up the holders while the state streams in).
    pub fn new(now_ms: u64, me: HostId, from: HostId, epoch: Epoch) -> (Self, Vec<TargetAction>) {
        let mv = TargetMove {
            me,
            from,
            epoch,
            deadline_ms: now_ms + MIGRATE_TIMEOUT_MS,
            step: Step::Receiving,
            holders: Holders::Asked,
            imported: false,
            updates: 0,
            maybe_applied: false,
            checks: 0,
            outcome: None,
        };
        (mv, vec![TargetAction::LookupHolders])
    }

    /// How the move ended once it has answered the source; `None` before.
    pub fn outcome(&self) -> Option<TargetOutcome> {
        self.outcome
    }

    /// When [`TargetMove::handle_timeout`] is due, until the source is
    /// answered.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outcome.is_none().then_some(self.deadline_ms)
    }

    /// Dispatch's listing of the mailbox (or why there is none): the
    /// holders to report the move with.
    pub fn handle_holders(
        &mut self,
        _now_ms: u64,
        found: Result<Listing, WireError>,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the holders";
        self.expect_running(INPUT)?;
        let again = match (self.step, &self.holders) {
            (Step::Receiving | Step::Importing | Step::Listing, Holders::Asked) => false,
            (Step::Listing, Holders::Failed) => true,
            (Step::Receiving | Step::Importing | Step::Listing, _) => {
                return Err(StepError::Duplicate { input: INPUT });
            }
            _ => return Err(self.out_of_order(INPUT)),
        };
        self.holders = match found {
            Ok(listing) if listing.epoch < self.epoch => Holders::Known(listing.hosts),
            Ok(listing) => Holders::Superseded(listing.epoch),
            Err(why) if again => {
                // Nothing was sent: dispatch cannot point here.
                return Ok(self.delete(WireError::new(
                    WireError::FORBIDDEN,
                    format!("the dispatch unit did not accept the move: {}", why.message),
                )));
            }
            Err(_) => Holders::Failed,
        };
        Ok(match (self.step, &self.holders) {
            // The lookup made while the state streamed in failed: once more.
            (Step::Listing, Holders::Failed) => vec![TargetAction::LookupHolders],
            (Step::Listing, _) => self.report(),
            _ => vec![],
        })
    }

    /// The stream ended and checked out (every frame, the digest, the
    /// components stored); `copy` is what this host already keeps.
    pub fn handle_stream_ended(
        &mut self,
        _now_ms: u64,
        copy: CopyHere,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the end of the stream";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Receiving, INPUT)?;
        let conflict = |m: &str| WireError::new(CONFLICT, m);
        let refusal = match (&self.holders, copy) {
            (Holders::Superseded(at), _) => conflict(&format!(
                "dispatch lists the mailbox at {at}, past this move's {}",
                self.epoch
            )),
            (_, CopyHere::TakenMeanwhile) => {
                conflict("this host took a copy of that mailbox meanwhile")
            }
            (_, CopyHere::Live) => conflict("this host already holds that mailbox"),
            (_, CopyHere::None | CopyHere::Stale) => {
                self.step = Step::Importing;
                return Ok(vec![TargetAction::Import {
                    replace: copy == CopyHere::Stale,
                }]);
            }
        };
        Ok(self.refuse_unimported(refusal))
    }

    /// The stream broke or did not check out before its end, or the state
    /// may not come here: nothing is imported.
    pub fn handle_stream_failed(
        &mut self,
        _now_ms: u64,
        error: WireError,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "a failed stream";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Receiving, INPUT)?;
        Ok(self.refuse_unimported(error))
    }

    /// The state is durable here.
    pub fn handle_imported(&mut self, _now_ms: u64) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the import";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Importing, INPUT)?;
        self.imported = true;
        self.step = Step::Listing;
        Ok(match self.holders {
            Holders::Asked => vec![],
            Holders::Failed => vec![TargetAction::LookupHolders],
            Holders::Known(_) | Holders::Superseded(_) => self.report(),
        })
    }

    /// The import failed: nothing names this host, and what it wrote (if
    /// anything: a delta's ops on a copy no listing names) stays unlisted.
    pub fn handle_import_failed(
        &mut self,
        _now_ms: u64,
        error: WireError,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "a failed import";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Importing, INPUT)?;
        Ok(self.refuse_unimported(error))
    }

    /// Dispatch's answer to [`TargetAction::UpdateLocation`].
    pub fn handle_location_answer(
        &mut self,
        _now_ms: u64,
        answer: LocationAnswer,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the location update's answer";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Updating, INPUT)?;
        Ok(match answer {
            LocationAnswer::Applied => self.acknowledge(),
            LocationAnswer::Refused(why) if !self.maybe_applied => self.delete(WireError::new(
                WireError::FORBIDDEN,
                format!("the dispatch unit did not accept the move: {}", why.message),
            )),
            // An earlier try may have landed: this refusal says nothing
            // about that one.
            LocationAnswer::Refused(why)
            | LocationAnswer::Conflict(why)
            | LocationAnswer::Lost(why) => {
                tracing::info!(error = %why, "the location update's answer is unsure; asking dispatch");
                self.maybe_applied = true;
                self.check()
            }
        })
    }

    /// Dispatch's answer to [`TargetAction::CheckLocation`].
    pub fn handle_location(
        &mut self,
        _now_ms: u64,
        found: Result<Listing, WireError>,
    ) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the location";
        self.expect_running(INPUT)?;
        self.expect(self.step == Step::Checking, INPUT)?;
        Ok(match found {
            Ok(listing) if listing.records(self.me, self.epoch) => self.acknowledge(),
            // At the move's epoch or past it without this host: the update
            // can never be taken now.
            Ok(listing) if listing.epoch >= self.epoch => {
                self.maybe_applied = false;
                self.delete(WireError::new(
                    WireError::FORBIDDEN,
                    format!(
                        "the dispatch unit moved on to {} without this host",
                        listing.epoch
                    ),
                ))
            }
            // Still below: not taken, at least not yet.
            Ok(_) if self.updates < LOCATION_UPDATE_TRIES => self.report(),
            Err(why) if self.checks < LOCATION_CHECKS_MAX => {
                tracing::debug!(error = %why, "no answer from dispatch; asking again");
                self.check()
            }
            _ => self.keep(),
        })
    }

    /// The clock reached [`TargetMove::poll_timeout`]; earlier calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<Vec<TargetAction>, StepError> {
        if self.outcome.is_some() || now_ms < self.deadline_ms {
            return Ok(vec![]);
        }
        let timeout = WireError::new(
            WireError::TIMEOUT,
            format!("the move took longer than {MIGRATE_TIMEOUT_MS} ms"),
        );
        Ok(match self.step {
            // Nothing names this host: what was staged goes, and an import
            // the driver abandoned mid-write stays unlisted.
            Step::Receiving | Step::Importing => self.refuse_unimported(timeout),
            // Imported, but no update was sent.
            Step::Listing => self.delete(timeout),
            // An update is out: it may land.
            Step::Updating | Step::Checking => self.keep(),
            Step::Acknowledged | Step::Done => vec![],
        })
    }

    /// The answer reached the source (or waiting for it ended).
    pub fn handle_answered(&mut self, _now_ms: u64) -> Result<Vec<TargetAction>, StepError> {
        const INPUT: &str = "the delivered answer";
        match self.step {
            Step::Acknowledged => {
                self.step = Step::Done;
                Ok(vec![TargetAction::Restore])
            }
            // A refusal needs nothing more.
            Step::Done => Ok(vec![]),
            _ => Err(self.out_of_order(INPUT)),
        }
    }

    /// Sends the location update, or ends the move if it cannot succeed.
    fn report(&mut self) -> Vec<TargetAction> {
        assert!(self.imported, "a location update before the import");
        match &self.holders {
            Holders::Known(listed) => {
                let hosts = hosts_after_move(listed, self.from, self.me);
                self.updates += 1;
                self.step = Step::Updating;
                vec![TargetAction::UpdateLocation {
                    epoch: self.epoch,
                    hosts,
                }]
            }
            Holders::Superseded(at) => {
                let at = *at;
                self.delete(WireError::new(
                    CONFLICT,
                    format!(
                        "dispatch lists the mailbox at {at}, past this move's {}",
                        self.epoch
                    ),
                ))
            }
            Holders::Asked | Holders::Failed => unreachable!("reporting unknown holders"),
        }
    }

    fn check(&mut self) -> Vec<TargetAction> {
        self.checks += 1;
        self.step = Step::Checking;
        vec![TargetAction::CheckLocation {
            delay_ms: check_delay_ms(self.checks),
        }]
    }

    fn acknowledge(&mut self) -> Vec<TargetAction> {
        assert!(self.imported, "acknowledging a move not imported");
        self.step = Step::Acknowledged;
        self.outcome = Some(TargetOutcome::Acknowledged);
        vec![TargetAction::Acknowledge]
    }

    /// Drops the import: only while no update may have been taken.
    fn delete(&mut self, refusal: WireError) -> Vec<TargetAction> {
        assert!(self.imported, "deleting an import that is not there");
        assert!(
            !self.maybe_applied,
            "deleting an import dispatch may point to"
        );
        self.finish(TargetOutcome::Refused);
        vec![TargetAction::DeleteImport, TargetAction::Refuse(refusal)]
    }

    fn refuse_unimported(&mut self, refusal: WireError) -> Vec<TargetAction> {
        assert!(!self.imported, "an import to delete, not to discard");
        self.finish(TargetOutcome::Refused);
        vec![TargetAction::DiscardStaged, TargetAction::Refuse(refusal)]
    }

    /// The update's fate stays unknown: refuse the source (which asks
    /// dispatch itself) but keep the import.
    fn keep(&mut self) -> Vec<TargetAction> {
        assert!(
            self.imported && self.updates > 0,
            "keeping an import no update named"
        );
        tracing::warn!(epoch = %self.epoch, "dispatch's answer to the location update never came; keeping the import");
        self.finish(TargetOutcome::Kept);
        vec![TargetAction::Refuse(WireError::new(
            WireError::TIMEOUT,
            "the dispatch unit's answer to the location update was lost; \
             this host keeps the import until dispatch says",
        ))]
    }

    fn finish(&mut self, outcome: TargetOutcome) {
        self.step = Step::Done;
        self.outcome = Some(outcome);
    }

    fn expect_running(&self, input: &'static str) -> Result<(), StepError> {
        match self.step {
            Step::Done | Step::Acknowledged => Err(StepError::Ended { input }),
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
