//! The target's move driven through every branch, without sockets or disk,
//! and a seeded walk over random input orders that must never break its
//! rules.

use super::*;
use crate::migration::LOCATION_CHECK_BACKOFF_MS;
use TargetAction::*;

const ME: HostId = HostId([9; 32]);
const FROM: HostId = HostId([1; 32]);
const REPLICA: HostId = HostId([2; 32]);
const OTHER: HostId = HostId([3; 32]);
/// The mailbox's epoch before the move, and the move's.
const CURRENT: Epoch = Epoch(4);
const MOVE: Epoch = Epoch(5);

fn listing(epoch: Epoch, hosts: &[HostId]) -> Result<Listing, WireError> {
    Ok(Listing {
        epoch,
        hosts: hosts.to_vec(),
    })
}

/// No dispatch unit answered.
fn silent(why: &str) -> WireError {
    WireError::new(WireError::TIMEOUT, why)
}

fn update() -> TargetAction {
    UpdateLocation {
        epoch: MOVE,
        hosts: vec![ME, REPLICA],
    }
}

fn code(actions: &[TargetAction]) -> Option<dem_proto::ErrorCode> {
    actions.iter().find_map(|a| match a {
        Refuse(e) => Some(e.code),
        _ => None,
    })
}

/// A move whose holders are known, imported, with its update sent.
fn updating() -> TargetMove {
    let (mut mv, first) = TargetMove::new(0, ME, FROM, MOVE);
    assert_eq!(first, vec![LookupHolders]);
    assert_eq!(
        mv.handle_holders(1, listing(CURRENT, &[FROM, REPLICA]))
            .unwrap(),
        vec![]
    );
    assert_eq!(
        mv.handle_stream_ended(2, CopyHere::None).unwrap(),
        vec![Import { replace: false }]
    );
    assert_eq!(mv.handle_imported(3).unwrap(), vec![update()]);
    mv
}

/// An update whose answer was lost: the move asks dispatch.
fn checking() -> TargetMove {
    let mut mv = updating();
    assert_eq!(
        mv.handle_location_answer(4, LocationAnswer::Lost(silent("timed out")))
            .unwrap(),
        vec![CheckLocation { delay_ms: 0 }]
    );
    mv
}

#[test]
fn an_imported_move_is_reported_then_acknowledged_then_restored() {
    let mut mv = updating();
    assert_eq!(mv.outcome(), None);
    assert_eq!(
        mv.handle_location_answer(4, LocationAnswer::Applied)
            .unwrap(),
        vec![Acknowledge]
    );
    assert_eq!(mv.outcome(), Some(TargetOutcome::Acknowledged));
    assert_eq!(mv.poll_timeout(), None);
    assert_eq!(mv.handle_answered(5).unwrap(), vec![Restore]);
    assert_eq!(mv.handle_answered(6).unwrap(), vec![], "restored once only");
}

#[test]
fn a_stale_copy_here_is_replaced_and_a_live_one_refuses_the_move() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    assert_eq!(
        mv.handle_stream_ended(1, CopyHere::Stale).unwrap(),
        vec![Import { replace: true }]
    );
    for copy in [CopyHere::Live, CopyHere::TakenMeanwhile] {
        let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
        let actions = mv.handle_stream_ended(1, copy).unwrap();
        assert_eq!(actions[0], DiscardStaged);
        assert_eq!(code(&actions), Some(CONFLICT));
        assert_eq!(mv.outcome(), Some(TargetOutcome::Refused));
    }
}

#[test]
fn a_move_dispatch_already_passed_is_refused_before_the_import() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_holders(1, listing(MOVE, &[OTHER])).unwrap();
    let actions = mv.handle_stream_ended(2, CopyHere::None).unwrap();
    assert_eq!(actions[0], DiscardStaged);
    assert_eq!(code(&actions), Some(CONFLICT));
}

#[test]
fn the_holders_are_looked_up_again_once_imported_if_the_first_lookup_failed() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_holders(1, Err(silent("no unit"))).unwrap();
    mv.handle_stream_ended(2, CopyHere::None).unwrap();
    assert_eq!(mv.handle_imported(3).unwrap(), vec![LookupHolders]);
    assert_eq!(
        mv.handle_holders(4, listing(CURRENT, &[FROM, REPLICA]))
            .unwrap(),
        vec![update()]
    );
    // Failing twice, the import goes: no update was ever sent.
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_holders(1, Err(silent("no unit"))).unwrap();
    mv.handle_stream_ended(2, CopyHere::None).unwrap();
    mv.handle_imported(3).unwrap();
    let actions = mv.handle_holders(4, Err(silent("no unit"))).unwrap();
    assert_eq!(actions[0], DeleteImport);
    assert_eq!(code(&actions), Some(WireError::FORBIDDEN));
}

#[test]
fn holders_answering_after_the_import_send_the_update_then() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_stream_ended(1, CopyHere::None).unwrap();
    assert_eq!(mv.handle_imported(2).unwrap(), vec![]);
    assert_eq!(
        mv.handle_holders(3, listing(CURRENT, &[FROM, REPLICA]))
            .unwrap(),
        vec![update()]
    );
    // Or showing dispatch past the move: the import goes.
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_stream_ended(1, CopyHere::None).unwrap();
    mv.handle_imported(2).unwrap();
    let actions = mv.handle_holders(3, listing(MOVE, &[OTHER])).unwrap();
    assert_eq!(actions[0], DeleteImport);
}

#[test]
fn a_broken_stream_or_a_failed_import_drops_only_what_was_staged() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    let broken = WireError::new(WireError::BAD_REQUEST, "digest mismatch");
    assert_eq!(
        mv.handle_stream_failed(1, broken.clone()).unwrap(),
        vec![DiscardStaged, Refuse(broken)]
    );
    assert_eq!(mv.outcome(), Some(TargetOutcome::Refused));
    let mut mv = TargetMove::new(0, ME, FROM, MOVE).0;
    mv.handle_stream_ended(1, CopyHere::None).unwrap();
    let failed = WireError::new(WireError::INTERNAL, "disk full");
    assert_eq!(
        mv.handle_import_failed(2, failed.clone()).unwrap(),
        vec![DiscardStaged, Refuse(failed)]
    );
}

#[test]
fn a_refused_update_deletes_the_import() {
    let mut mv = updating();
    let actions = mv
        .handle_location_answer(
            4,
            LocationAnswer::Refused(WireError::new(WireError::FORBIDDEN, "not the grantee")),
        )
        .unwrap();
    assert_eq!(actions[0], DeleteImport);
    assert_eq!(code(&actions), Some(WireError::FORBIDDEN));
    assert_eq!(mv.outcome(), Some(TargetOutcome::Refused));
}

#[test]
fn a_lost_answer_keeps_the_import_and_asks_dispatch() {
    // Dispatch took it: acknowledged.
    let mut mv = checking();
    assert_eq!(
        mv.handle_location(5, listing(MOVE, &[ME, REPLICA]))
            .unwrap(),
        vec![Acknowledge]
    );
    assert_eq!(mv.outcome(), Some(TargetOutcome::Acknowledged));
    // Dispatch is still below: the update goes again.
    let mut mv = checking();
    assert_eq!(
        mv.handle_location(5, listing(CURRENT, &[FROM, REPLICA]))
            .unwrap(),
        vec![update()]
    );
    assert_eq!(
        mv.handle_location_answer(6, LocationAnswer::Applied)
            .unwrap(),
        vec![Acknowledge]
    );
    // Dispatch moved past the move without this host: the update can
    // never land, so the import goes.
    let mut mv = checking();
    let actions = mv.handle_location(5, listing(MOVE, &[OTHER])).unwrap();
    assert_eq!(actions[0], DeleteImport);
    assert_eq!(mv.outcome(), Some(TargetOutcome::Refused));
}

#[test]
fn a_conflict_or_a_refusal_after_a_lost_answer_is_checked_not_trusted() {
    // Stale epoch: maybe this very update, taken by another unit.
    let mut mv = updating();
    assert_eq!(
        mv.handle_location_answer(
            4,
            LocationAnswer::Conflict(WireError::new(CONFLICT, "stale epoch"))
        )
        .unwrap(),
        vec![CheckLocation { delay_ms: 0 }]
    );
    assert_eq!(
        mv.handle_location(5, listing(MOVE, &[ME])).unwrap(),
        vec![Acknowledge]
    );
    // Refused on a retry: the first try may have landed.
    let mut mv = checking();
    mv.handle_location(5, listing(CURRENT, &[FROM])).unwrap();
    assert_eq!(
        mv.handle_location_answer(
            6,
            LocationAnswer::Refused(WireError::new(WireError::FORBIDDEN, "not the grantee"))
        )
        .unwrap(),
        vec![CheckLocation {
            delay_ms: LOCATION_CHECK_BACKOFF_MS
        }]
    );
}

#[test]
fn an_answer_that_stays_unknown_keeps_the_import() {
    // Dispatch does not answer the lookups either.
    let mut mv = checking();
    for n in 1..LOCATION_CHECKS_MAX {
        assert_eq!(
            mv.handle_location(5, Err(silent("no unit"))).unwrap(),
            vec![CheckLocation {
                delay_ms: u64::from(n) * LOCATION_CHECK_BACKOFF_MS
            }]
        );
    }
    let actions = mv.handle_location(9, Err(silent("no unit"))).unwrap();
    assert_eq!(code(&actions), Some(WireError::TIMEOUT));
    assert!(!actions.contains(&DeleteImport), "{actions:?}");
    assert_eq!(mv.outcome(), Some(TargetOutcome::Kept));
    // Every try lost while dispatch stays below.
    let mut mv = checking();
    for _ in 1..LOCATION_UPDATE_TRIES {
        assert_eq!(
            mv.handle_location(5, listing(CURRENT, &[FROM])).unwrap(),
            vec![UpdateLocation {
                epoch: MOVE,
                hosts: vec![ME, REPLICA]
            }]
        );
        assert!(matches!(
            mv.handle_location_answer(6, LocationAnswer::Lost(silent("reset")))
                .unwrap()[..],
            [CheckLocation { .. }]
        ));
    }
    let actions = mv.handle_location(7, listing(CURRENT, &[FROM])).unwrap();
    assert_eq!(code(&actions), Some(WireError::TIMEOUT));
    assert!(!actions.contains(&DeleteImport));
    assert_eq!(mv.outcome(), Some(TargetOutcome::Kept));
}

#[test]
fn the_deadline_drops_what_no_update_named_and_keeps_the_rest() {
    let deadline = MIGRATE_TIMEOUT_MS;
    // Still receiving.
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    assert_eq!(mv.poll_timeout(), Some(deadline));
    assert_eq!(mv.handle_timeout(deadline - 1).unwrap(), vec![]);
    let actions = mv.handle_timeout(deadline).unwrap();
    assert_eq!(actions[0], DiscardStaged);
    assert_eq!(code(&actions), Some(WireError::TIMEOUT));
    // Imported, still looking up the holders: no update was sent.
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    mv.handle_stream_ended(1, CopyHere::None).unwrap();
    mv.handle_imported(2).unwrap();
    assert_eq!(mv.handle_timeout(deadline).unwrap()[0], DeleteImport);
    // The update is out: it may land.
    let mut mv = updating();
    let actions = mv.handle_timeout(deadline).unwrap();
    assert!(!actions.contains(&DeleteImport));
    assert_eq!(mv.outcome(), Some(TargetOutcome::Kept));
    let mut mv = checking();
    assert!(!mv.handle_timeout(deadline).unwrap().contains(&DeleteImport));
    // Acknowledged: nothing.
    let mut mv = updating();
    mv.handle_location_answer(4, LocationAnswer::Applied)
        .unwrap();
    assert_eq!(mv.handle_timeout(deadline).unwrap(), vec![]);
}

#[test]
fn duplicate_and_late_inputs_are_refused_without_changing_the_move() {
    let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
    assert_eq!(
        mv.handle_imported(1),
        Err(StepError::OutOfOrder {
            input: "the import",
            step: "receiving the state"
        })
    );
    assert!(matches!(
        mv.handle_location_answer(1, LocationAnswer::Applied),
        Err(StepError::OutOfOrder { .. })
    ));
    assert!(matches!(
        mv.handle_answered(1),
        Err(StepError::OutOfOrder { .. })
    ));
    mv.handle_holders(1, listing(CURRENT, &[FROM])).unwrap();
    assert_eq!(
        mv.handle_holders(2, listing(CURRENT, &[FROM])),
        Err(StepError::Duplicate {
            input: "the holders"
        })
    );
    mv.handle_stream_ended(3, CopyHere::None).unwrap();
    assert!(matches!(
        mv.handle_stream_ended(4, CopyHere::None),
        Err(StepError::OutOfOrder { .. })
    ));
    assert!(matches!(
        mv.handle_location(4, listing(MOVE, &[ME])),
        Err(StepError::OutOfOrder { .. })
    ));
    mv.handle_imported(5).unwrap();
    mv.handle_location_answer(6, LocationAnswer::Applied)
        .unwrap();
    assert_eq!(
        mv.handle_location_answer(7, LocationAnswer::Applied),
        Err(StepError::Ended {
            input: "the location update's answer"
        })
    );
    assert_eq!(mv.outcome(), Some(TargetOutcome::Acknowledged));
}

#[test]
fn refusals_of_dispatch_are_sorted_by_what_they_prove() {
    let wire = |code| WireError::new(code, "x");
    let refused = |code| LocationAnswer::from_refusal(&wire(code));
    assert_eq!(
        refused(WireError::FORBIDDEN),
        LocationAnswer::Refused(wire(WireError::FORBIDDEN))
    );
    assert_eq!(refused(NOT_FOUND), LocationAnswer::Refused(wire(NOT_FOUND)));
    assert_eq!(refused(CONFLICT), LocationAnswer::Conflict(wire(CONFLICT)));
    assert_eq!(
        refused(WireError::BUSY),
        LocationAnswer::Lost(wire(WireError::BUSY))
    );
    assert_eq!(
        refused(WireError::TIMEOUT),
        LocationAnswer::Lost(wire(WireError::TIMEOUT))
    );
}

/// A small deterministic generator (xorshift), so a failing walk replays
/// from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn random_input_orders_never_delete_an_import_dispatch_may_point_to() {
    // Every ending, and a deletion after an unsure answer, must be reached
    // for the walk to prove anything.
    let (mut endings, mut deleted_after_check) = (Vec::new(), false);
    for seed in 1..=2_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (mut mv, _) = TargetMove::new(0, ME, FROM, MOVE);
        // Whether an update went out whose answer was not a plain refusal,
        // and whether dispatch since showed it past the move without us.
        let (mut unsure, mut passed) = (false, false);
        let mut now = 0;
        for _ in 0..40 {
            now += rng.below(MIGRATE_TIMEOUT_MS / 8);
            let epoch = Epoch(CURRENT.0 + rng.below(3));
            let hosts = if rng.below(2) == 0 {
                vec![ME]
            } else {
                vec![OTHER]
            };
            let found = if rng.below(4) == 0 {
                Err(silent("no unit"))
            } else {
                listing(epoch, &hosts)
            };
            let answer = match rng.below(4) {
                0 => LocationAnswer::Applied,
                1 => LocationAnswer::Refused(WireError::new(WireError::FORBIDDEN, "no")),
                2 => LocationAnswer::Conflict(WireError::new(CONFLICT, "stale")),
                _ => LocationAnswer::Lost(silent("lost")),
            };
            let copy = [CopyHere::None, CopyHere::Stale, CopyHere::Live][rng.below(3) as usize];
            let step = mv.step;
            let result = match rng.below(9) {
                0 => mv.handle_holders(now, found.clone()),
                1 => mv.handle_stream_ended(now, copy),
                2 => mv.handle_stream_failed(now, WireError::new(WireError::BAD_REQUEST, "bad")),
                3 => mv.handle_imported(now),
                4 => mv.handle_import_failed(now, WireError::new(WireError::INTERNAL, "disk")),
                5 => {
                    if step == Step::Updating
                        && matches!(
                            answer,
                            LocationAnswer::Conflict(_) | LocationAnswer::Lost(_)
                        )
                    {
                        unsure = true;
                    }
                    mv.handle_location_answer(now, answer)
                }
                6 => {
                    if step == Step::Checking
                        && let Ok(l) = &found
                        && l.epoch >= MOVE
                        && !l.hosts.contains(&ME)
                    {
                        passed = true;
                    }
                    mv.handle_location(now, found)
                }
                7 => mv.handle_timeout(now),
                _ => mv.handle_answered(now),
            };
            let Ok(actions) = result else {
                assert_eq!(
                    mv.step, step,
                    "seed {seed}: a refused input changed the move"
                );
                continue;
            };
            if actions.contains(&DeleteImport) {
                assert!(
                    !unsure || passed,
                    "seed {seed}: deleted an import dispatch may point to"
                );
                deleted_after_check |= unsure;
            }
            if actions.iter().any(|a| matches!(a, UpdateLocation { .. })) {
                assert!(mv.imported, "seed {seed}: an update before the import");
            }
            if actions.contains(&Acknowledge) {
                assert!(mv.imported, "seed {seed}: acknowledged without the import");
            }
            if actions.iter().any(|a| matches!(a, Import { .. })) {
                assert_eq!(
                    step,
                    Step::Receiving,
                    "seed {seed}: imported before the end"
                );
            }
        }
        if let Some(outcome) = mv.outcome()
            && !endings.contains(&outcome)
        {
            endings.push(outcome);
        }
    }
    assert_eq!(endings.len(), 3, "{endings:?}");
    assert!(deleted_after_check);
}
