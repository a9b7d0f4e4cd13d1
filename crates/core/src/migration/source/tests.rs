//! The source's move driven through every branch, without sockets.

use super::*;
use crate::migration::{LOCATION_CHECK_BACKOFF_MS, StepError};
use SourceAction::*;
use dem_proto::ErrorCode;

const TO: HostId = HostId([9; 32]);
const OTHER: HostId = HostId([3; 32]);
/// The mailbox's epoch before the move; the move goes to the next.
const CURRENT: Epoch = Epoch(4);
const MOVE: Epoch = Epoch(5);

fn target(why: &str) -> MigrateError {
    MigrateError::Target(WireError::new(ErrorCode::Conflict, why))
}

/// Dispatch's refusal of the grant.
fn refused(why: &str) -> WireError {
    WireError::new(ErrorCode::Forbidden, why)
}

/// No dispatch unit answered.
fn silent(why: &str) -> WireError {
    WireError::new(ErrorCode::Timeout, why)
}

/// A move prepared (epoch known, the target's copy answered) and paused
/// as `shipment`, streaming; `grant` settled first if given.
fn streaming(grant: Option<Result<(), WireError>>, copy: bool, shipment: Shipment) -> SourceMove {
    let (mut mv, first) = SourceMove::new(0, TO);
    assert_eq!(first, vec![LookUp]);
    if let Some(grant) = grant {
        assert_eq!(mv.handle_grant(1, grant).unwrap(), vec![]);
    }
    assert_eq!(mv.handle_epoch(2, Ok(CURRENT)).unwrap(), vec![]);
    assert_eq!(
        mv.handle_target_copy(3, copy).unwrap(),
        vec![Pause { delta: copy }]
    );
    assert_eq!(
        mv.handle_paused(10, Ok(shipment)).unwrap(),
        vec![Stream { epoch: MOVE }]
    );
    mv
}

/// A granted move whose stream has ended, waiting for the target.
fn awaiting_target(shipment: Shipment) -> SourceMove {
    let mut mv = streaming(Some(Ok(())), shipment == Shipment::Delta, shipment);
    assert_eq!(mv.handle_stream_written(20).unwrap(), vec![FinishStream]);
    mv
}

fn listing(epoch: Epoch, hosts: &[HostId]) -> Result<Listing, WireError> {
    Ok(Listing {
        epoch,
        hosts: hosts.to_vec(),
    })
}

#[test]
fn a_granted_move_streams_ends_and_lets_go() {
    let mut mv = awaiting_target(Shipment::Whole);
    assert_eq!(mv.epoch(), Some(MOVE));
    assert_eq!(mv.outcome(), None);
    assert_eq!(
        mv.handle_target_answer(30, Ok(())).unwrap(),
        vec![Forward { epoch: MOVE }]
    );
    assert_eq!(mv.outcome(), Some(&Ok(MOVE)));
    assert_eq!(mv.poll_timeout(), None);
}

#[test]
fn the_end_of_the_stream_waits_for_a_grant_still_on_its_way() {
    let mut mv = streaming(None, false, Shipment::Whole);
    assert_eq!(mv.poll_timeout(), Some(10 + MIGRATE_TIMEOUT_MS));
    // Every frame is out; nothing more until dispatch answers.
    assert_eq!(mv.handle_stream_written(20).unwrap(), vec![]);
    // The target's answer cannot come to a stream never ended.
    assert_eq!(
        mv.handle_target_answer(21, Ok(())),
        Err(StepError::OutOfOrder {
            input: "the target's answer",
            step: "waiting for the grant"
        })
    );
    assert_eq!(mv.handle_grant(25, Ok(())).unwrap(), vec![FinishStream]);
    assert_eq!(
        mv.handle_target_answer(30, Ok(())).unwrap(),
        vec![Forward { epoch: MOVE }]
    );
}

#[test]
fn a_grant_refused_before_the_pause_stops_the_move_untouched() {
    let (mut mv, _) = SourceMove::new(0, TO);
    assert_eq!(
        mv.handle_grant(1, Err(refused("not live"))).unwrap(),
        vec![]
    );
    assert_eq!(
        mv.outcome(),
        Some(&Err(MigrateError::NotAuthorized(refused("not live"))))
    );
    // The lookups' late answers find the move over.
    assert_eq!(
        mv.handle_epoch(2, Ok(CURRENT)),
        Err(StepError::Ended { input: "the epoch" })
    );
}

#[test]
fn a_grant_refused_while_pausing_resumes_without_streaming() {
    let (mut mv, _) = SourceMove::new(0, TO);
    mv.handle_epoch(1, Ok(CURRENT)).unwrap();
    mv.handle_target_copy(2, false).unwrap();
    assert_eq!(mv.handle_grant(3, Err(refused("gone"))).unwrap(), vec![]);
    assert_eq!(
        mv.handle_paused(4, Ok(Shipment::Whole)).unwrap(),
        vec![Resume]
    );
    assert!(matches!(
        mv.outcome(),
        Some(Err(MigrateError::NotAuthorized(_)))
    ));
}

#[test]
fn a_grant_refused_after_the_stream_resets_it_and_resumes() {
    let mut mv = streaming(None, false, Shipment::Whole);
    mv.handle_stream_written(20).unwrap();
    assert_eq!(
        mv.handle_grant(25, Err(refused("not live"))).unwrap(),
        vec![ResetStream, Resume]
    );
    assert!(matches!(
        mv.outcome(),
        Some(Err(MigrateError::NotAuthorized(_)))
    ));
    // Refused while the frames were still going out: the same.
    let mut mv = streaming(None, false, Shipment::Whole);
    assert_eq!(mv.handle_grant(15, Err(refused("no"))).unwrap(), vec![]);
    assert_eq!(
        mv.handle_stream_written(20).unwrap(),
        vec![ResetStream, Resume]
    );
}

#[test]
fn a_failed_lookup_or_pause_ends_the_move_with_nothing_to_undo() {
    let (mut mv, _) = SourceMove::new(0, TO);
    assert_eq!(mv.handle_epoch(1, Err(silent("no unit"))).unwrap(), vec![]);
    assert_eq!(
        mv.outcome(),
        Some(&Err(MigrateError::Dispatch(silent("no unit"))))
    );
    let (mut mv, _) = SourceMove::new(0, TO);
    mv.handle_target_copy(1, false).unwrap();
    mv.handle_epoch(2, Ok(CURRENT)).unwrap();
    let paused = Err(MigrateError::Pause(WireError::new(
        ErrorCode::Internal,
        "busy",
    )));
    assert_eq!(mv.handle_paused(3, paused.clone()).unwrap(), vec![]);
    assert_eq!(mv.outcome(), Some(&paused.map(|_| MOVE)));
}

#[test]
fn a_broken_stream_resumes_the_mailbox_without_asking_dispatch() {
    let mut mv = streaming(Some(Ok(())), false, Shipment::Whole);
    assert_eq!(
        mv.handle_stream_failed(15, target("reset")).unwrap(),
        vec![ResetStream, Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(target("reset"))));
}

#[test]
fn a_refused_delta_is_sent_again_whole_once() {
    let mut mv = streaming(Some(Ok(())), true, Shipment::Delta);
    assert_eq!(
        mv.handle_stream_failed(15, target("copy changed")).unwrap(),
        vec![ResetStream, Resume, Pause { delta: false }]
    );
    assert_eq!(mv.poll_timeout(), None);
    assert_eq!(
        mv.handle_paused(16, Ok(Shipment::Whole)).unwrap(),
        vec![Stream { epoch: MOVE }]
    );
    // The whole state failing too is final.
    assert_eq!(
        mv.handle_stream_failed(17, target("gone")).unwrap(),
        vec![ResetStream, Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(target("gone"))));
}

#[test]
fn a_delta_the_target_refused_after_the_end_is_checked_then_sent_whole() {
    let mut mv = awaiting_target(Shipment::Delta);
    assert_eq!(
        mv.handle_target_answer(30, Err(target("short of vv")))
            .unwrap(),
        vec![CheckLocation {
            epoch: MOVE,
            delay_ms: 0
        }]
    );
    assert_eq!(
        mv.handle_location(31, listing(CURRENT, &[OTHER])).unwrap(),
        vec![Resume, Pause { delta: false }]
    );
    mv.handle_paused(32, Ok(Shipment::Whole)).unwrap();
    assert_eq!(mv.handle_stream_written(33).unwrap(), vec![FinishStream]);
    assert_eq!(
        mv.handle_target_answer(34, Ok(())).unwrap(),
        vec![Forward { epoch: MOVE }]
    );
}

#[test]
fn a_delta_whose_grant_was_refused_is_not_sent_again() {
    let mut mv = streaming(None, true, Shipment::Delta);
    assert_eq!(
        mv.handle_grant(12, Err(refused("not live"))).unwrap(),
        vec![]
    );
    assert_eq!(
        mv.handle_stream_failed(15, target("refused")).unwrap(),
        vec![ResetStream, Resume]
    );
    assert!(matches!(
        mv.outcome(),
        Some(Err(MigrateError::NotAuthorized(_)))
    ));
}

#[test]
fn a_failed_import_at_the_target_resumes_here_once_dispatch_confirms() {
    let mut mv = awaiting_target(Shipment::Whole);
    assert_eq!(
        mv.handle_target_answer(30, Err(target("import failed")))
            .unwrap(),
        vec![CheckLocation {
            epoch: MOVE,
            delay_ms: 0
        }]
    );
    assert_eq!(
        mv.handle_location(31, listing(CURRENT, &[OTHER])).unwrap(),
        vec![Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(target("import failed"))));
}

#[test]
fn a_lost_answer_is_a_move_when_dispatch_records_the_target() {
    let mut mv = awaiting_target(Shipment::Whole);
    mv.handle_target_answer(30, Err(target("connection lost")))
        .unwrap();
    assert_eq!(
        mv.handle_location(31, listing(MOVE, &[TO, OTHER])).unwrap(),
        vec![Forward { epoch: MOVE }]
    );
    assert_eq!(mv.outcome(), Some(&Ok(MOVE)));
    // At the move's epoch but without the target: someone else won.
    let mut mv = awaiting_target(Shipment::Whole);
    mv.handle_target_answer(30, Err(target("refused"))).unwrap();
    assert_eq!(
        mv.handle_location(31, listing(MOVE, &[OTHER])).unwrap(),
        vec![Resume]
    );
}

#[test]
fn a_silent_dispatch_is_asked_again_then_the_mailbox_resumes() {
    let mut mv = awaiting_target(Shipment::Whole);
    mv.handle_target_answer(30, Err(target("lost"))).unwrap();
    for n in 1..LOCATION_CHECKS_MAX {
        assert_eq!(
            mv.handle_location(31, Err(silent("no unit"))).unwrap(),
            vec![CheckLocation {
                epoch: MOVE,
                delay_ms: u64::from(n) * LOCATION_CHECK_BACKOFF_MS
            }]
        );
    }
    assert_eq!(
        mv.handle_location(40, Err(silent("no unit"))).unwrap(),
        vec![Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(target("lost"))));
}

#[test]
fn a_deadline_before_the_end_resets_and_after_it_asks_dispatch() {
    let timeout = MigrateError::Timeout(Duration::from_millis(MIGRATE_TIMEOUT_MS));
    let deadline = 10 + MIGRATE_TIMEOUT_MS;
    // Early: nothing.
    let mut mv = streaming(Some(Ok(())), false, Shipment::Whole);
    assert_eq!(mv.handle_timeout(deadline - 1).unwrap(), vec![]);
    assert_eq!(
        mv.handle_timeout(deadline).unwrap(),
        vec![ResetStream, Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(timeout.clone())));
    // Waiting for a grant that never comes.
    let mut mv = streaming(None, false, Shipment::Whole);
    mv.handle_stream_written(20).unwrap();
    assert_eq!(
        mv.handle_timeout(deadline).unwrap(),
        vec![ResetStream, Resume]
    );
    // The stream ended; the answer never came.
    let mut mv = awaiting_target(Shipment::Whole);
    assert_eq!(
        mv.handle_timeout(deadline).unwrap(),
        vec![CheckLocation {
            epoch: MOVE,
            delay_ms: 0
        }]
    );
    assert_eq!(mv.poll_timeout(), None);
    assert_eq!(
        mv.handle_location(deadline + 1, listing(CURRENT, &[]))
            .unwrap(),
        vec![Resume]
    );
    assert_eq!(mv.outcome(), Some(&Err(timeout)));
    // Nothing is timed before the stream.
    let (mut mv, _) = SourceMove::new(0, TO);
    assert_eq!(mv.handle_timeout(u64::MAX).unwrap(), vec![]);
}

#[test]
fn duplicate_and_late_inputs_are_refused_without_changing_the_move() {
    let (mut mv, _) = SourceMove::new(0, TO);
    assert_eq!(
        mv.handle_paused(1, Ok(Shipment::Whole)),
        Err(StepError::OutOfOrder {
            input: "the pause",
            step: "looking up the epoch"
        })
    );
    mv.handle_epoch(1, Ok(CURRENT)).unwrap();
    assert_eq!(
        mv.handle_epoch(2, Ok(CURRENT)),
        Err(StepError::Duplicate { input: "the epoch" })
    );
    mv.handle_grant(3, Ok(())).unwrap();
    assert_eq!(
        mv.handle_grant(4, Err(refused("late"))),
        Err(StepError::Duplicate { input: "the grant" })
    );
    mv.handle_target_copy(5, false).unwrap();
    assert_eq!(
        mv.handle_target_copy(6, true),
        Err(StepError::OutOfOrder {
            input: "the target's copy",
            step: "pausing the mailbox"
        })
    );
    assert!(matches!(
        mv.handle_stream_written(7),
        Err(StepError::OutOfOrder { .. })
    ));
    assert!(matches!(
        mv.handle_location(7, listing(MOVE, &[TO])),
        Err(StepError::OutOfOrder { .. })
    ));
    mv.handle_paused(8, Ok(Shipment::Whole)).unwrap();
    mv.handle_stream_written(9).unwrap();
    assert!(matches!(
        mv.handle_stream_written(10),
        Err(StepError::OutOfOrder { .. })
    ));
    assert!(matches!(
        mv.handle_stream_failed(10, target("late")),
        Err(StepError::OutOfOrder { .. })
    ));
    mv.handle_target_answer(11, Ok(())).unwrap();
    assert_eq!(
        mv.handle_target_answer(12, Ok(())),
        Err(StepError::Ended {
            input: "the target's answer"
        })
    );
    assert_eq!(
        mv.handle_grant(13, Ok(())),
        Err(StepError::Ended { input: "the grant" })
    );
    assert_eq!(mv.handle_timeout(u64::MAX).unwrap(), vec![]);
    assert_eq!(mv.outcome(), Some(&Ok(MOVE)));
}
