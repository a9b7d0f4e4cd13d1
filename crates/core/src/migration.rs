//! The steps of a mailbox move (paper IV-B), sans-IO: the source's side
//! ([`SourceMove`]) and the target's ([`TargetMove`]), each a state machine
//! that is told what happened through `handle_*(now_ms, ..)` (dispatch
//! granted or refused the move, the stream was written or broke, the
//! target answered, dispatch took or refused a location update, or its
//! answer was lost, a deadline passed) and answers with what its driver
//! must do next ([`SourceAction`], [`TargetAction`]). `dem-node` carries
//! the actions out (`node/migrate.rs`, `node/migrate_in.rs`,
//! `node/delta_move.rs`: QUIC, the store, the mailbox actor) and feeds the
//! results back; what travels on the stream is checked beside this, by
//! `dem_proto::export::Importer` for a whole state and
//! [`crate::replica::delta`] for a delta.
//!
//! The rules both sides keep, whatever order things happen in:
//!
//! - the source ends its stream only once dispatch granted the move, and
//!   the target imports only after the end of the stream, so a refused
//!   grant never gets past the target's staging and the mailbox resumes
//!   at the source intact;
//! - the target holds the mailbox durably before it asks dispatch to
//!   record it at the move's epoch (the old one + 1), and the source lets
//!   go only once the target acknowledged, or dispatch already records
//!   the target at that epoch (only the answer was lost);
//! - a target deletes its import only when dispatch can never record it
//!   at the move's epoch: the update was refused outright, or a lookup
//!   shows dispatch at that epoch or past it without this host. An answer
//!   that was lost, timed out or may be an echo of this very update (the
//!   client hedges across units) is settled by asking dispatch where the
//!   mailbox is; while that stays unknown the import is kept (no listing
//!   names it unless dispatch took the update, and the keeper drops an
//!   unlisted copy after its grace).

pub mod source;
pub mod target;

pub use source::{MigrateError, Shipment, SourceAction, SourceMove};
pub use target::{CopyHere, LocationAnswer, TargetAction, TargetMove, TargetOutcome};

use dem_identity::{Epoch, HostId};

/// How long one attempt of a move may take, each side, before it is
/// abandoned: the source's stream and the target's answer to it; the
/// target's receive, import and location update.
pub const MIGRATE_TIMEOUT_MS: u64 = 120_000;

/// Location updates a target sends for one move. Another follows only a
/// lost answer and a lookup showing dispatch still below the move's epoch.
pub const LOCATION_UPDATE_TRIES: u32 = 3;

/// Lookups either side makes to learn whether dispatch took a location
/// update whose answer it did not get.
pub const LOCATION_CHECKS_MAX: u32 = 4;

/// The pause before a further lookup: this times the lookups made so far
/// (dispatch just failed to answer one).
pub const LOCATION_CHECK_BACKOFF_MS: u64 = 250;

/// What dispatch lists for a mailbox: its location epoch and holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub epoch: Epoch,
    pub hosts: Vec<HostId>,
}

impl Listing {
    /// Whether this listing records `host` holding the mailbox at `epoch`
    /// or later.
    pub fn records(&self, host: HostId, epoch: Epoch) -> bool {
        self.epoch >= epoch && self.hosts.contains(&host)
    }
}

/// Why a move's state machine refused an input: it does not fit the step
/// the move is at. The move is unchanged; the driver has a bug or fed a
/// stale result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The input does not fit the current step (for instance the target's
    /// answer to a stream the source never ended).
    #[error("{input} while the move is {step}")]
    OutOfOrder {
        input: &'static str,
        step: &'static str,
    },
    /// The input settles something that was settled already (dispatch's
    /// grant comes once).
    #[error("{input} came twice")]
    Duplicate { input: &'static str },
    /// The move has ended; it expects nothing more.
    #[error("{input} after the move ended")]
    Ended { input: &'static str },
}

/// The holders a target reports after a move from `from`: itself first,
/// then the other replicas as listed, without `from`.
pub fn hosts_after_move(listed: &[HostId], from: HostId, to: HostId) -> Vec<HostId> {
    let mut hosts = vec![to];
    hosts.extend(listed.iter().filter(|h| **h != from && **h != to));
    hosts
}

/// The pause before the `checks`-th lookup of a move (the first is
/// immediate).
fn check_delay_ms(checks: u32) -> u64 {
    LOCATION_CHECK_BACKOFF_MS * u64::from(checks.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_reports_itself_first_in_the_sources_place() {
        let (a, b, c, t) = (
            HostId([1; 32]),
            HostId([2; 32]),
            HostId([3; 32]),
            HostId([9; 32]),
        );
        assert_eq!(hosts_after_move(&[a, b, c], b, t), vec![t, a, c]);
        // Listed already (a stale replica it kept): not twice.
        assert_eq!(hosts_after_move(&[a, t], a, t), vec![t]);
        assert_eq!(hosts_after_move(&[], a, t), vec![t]);
    }

    #[test]
    fn a_listing_records_a_host_at_its_epoch_or_later() {
        let (a, t) = (HostId([1; 32]), HostId([9; 32]));
        let listing = Listing {
            epoch: Epoch(5),
            hosts: vec![t, a],
        };
        assert!(listing.records(t, Epoch(5)));
        assert!(listing.records(t, Epoch(4)));
        assert!(!listing.records(t, Epoch(6)));
        assert!(!listing.records(HostId([7; 32]), Epoch(5)));
    }

    #[test]
    fn lookups_back_off_after_the_first() {
        assert_eq!(check_delay_ms(1), 0);
        assert_eq!(check_delay_ms(2), LOCATION_CHECK_BACKOFF_MS);
        assert_eq!(check_delay_ms(3), 2 * LOCATION_CHECK_BACKOFF_MS);
    }
}
