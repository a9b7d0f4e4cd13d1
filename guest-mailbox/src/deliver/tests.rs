//! Tests of delivery: concurrent deliveries of one id settle alike in
//! any order, and the placement each answer reports is one the host can
//! log: replayed on the state before, with the replay rules (no folder
//! limit), it gives the origin's state byte for byte, on every path.

use super::*;
use crate::limits::FOLDERS_MAX;
use crate::snapshot::encode;
use crate::testutil::{flags, mail, none, place};
use crate::wit::OpContext;

fn at(hlc: u64, replica: u64) -> OpContext {
    OpContext {
        now_ms: 1_000 + hlc as i64,
        hlc,
        replica,
    }
}

fn filed(folder: &str, f: MailFlags, kws: &[&str]) -> Placement {
    let mut p = place(folder);
    p.flags = f;
    p.keywords = kws.iter().map(|k| k.to_string()).collect();
    p
}

/// The same id delivered on two replicas, plus a flag change made
/// after the earlier delivery: either arrival order gives the earlier
/// delivery's placement and received time, with the flag change kept.
#[test]
fn earliest_concurrent_delivery_wins_in_either_order() {
    let early = (at(5, 2), filed("Work", MailFlags::FLAGGED, &["x"]));
    let late = (at(7, 1), filed("Other", MailFlags::SEEN, &["y"]));
    let seen_later = at(6, 2);
    let mut results = Vec::new();
    for early_first in [true, false] {
        let order = if early_first {
            [(&early, true), (&late, false)]
        } else {
            [(&late, false), (&early, true)]
        };
        let mut mb = Mailbox::default();
        for (i, ((c, p), is_early)) in order.into_iter().enumerate() {
            let d = mb.deliver(c, mail("m", 1), p.clone()).unwrap();
            assert_eq!(d.duplicate, i == 1);
            if is_early {
                mb.set_flags(&seen_later, "m", &flags(MailFlags::SEEN, &[]), &none())
                    .unwrap();
            }
        }
        let m = &mb.state.mails["m"];
        assert_eq!(mb.folder_name_of(m.folder), "Work");
        assert_eq!(m.received_ms, early.0.now_ms);
        assert_eq!(m.flags(), MailFlags::FLAGGED | MailFlags::SEEN);
        assert_eq!(m.keywords.iter().collect::<Vec<_>>(), ["x"]);
        // The later delivery's folder exists too, whoever won.
        assert!(mb.state.folders.contains_key("Other"));
        results.push(mb.state_digest());
    }
    assert_eq!(results[0], results[1]);
}

/// A move made after the earlier delivery keeps the mail where it was
/// moved when the earlier delivery arrives second.
#[test]
fn winner_keeps_later_moves() {
    let mut mb = Mailbox::default();
    mb.deliver(&at(7, 1), mail("m", 1), place("INBOX")).unwrap();
    mb.deliver(&at(5, 2), mail("m", 1), place("Lists")).unwrap();
    mb.create_folder(&at(8, 2), "Kept").unwrap();
    mb.move_mail(&at(9, 2), "m", "Kept").unwrap();
    let mut other = Mailbox::default();
    other
        .deliver(&at(5, 2), mail("m", 1), place("Lists"))
        .unwrap();
    other.create_folder(&at(8, 2), "Kept").unwrap();
    other.move_mail(&at(9, 2), "m", "Kept").unwrap();
    other
        .deliver(&at(7, 1), mail("m", 1), place("INBOX"))
        .unwrap();
    assert_eq!(mb.state_digest(), other.state_digest());
    assert_eq!(mb.folder_name_of(mb.state.mails["m"].folder), "Kept");
}

/// Concurrent deletes keep the earliest record; a delivery after a
/// delete of an id never seen stays deleted.
#[test]
fn deletes_keep_earliest_and_block_late_deliveries() {
    let mut a = Mailbox::default();
    a.delete_mail(&at(9, 1), "m").unwrap();
    a.delete_mail(&at(8, 3), "m").unwrap();
    let d = a.deliver(&at(5, 2), mail("m", 1), place("Late")).unwrap();
    assert!(d.duplicate && a.state.mails.is_empty());
    let mut b = Mailbox::default();
    b.deliver(&at(5, 2), mail("m", 1), place("Late")).unwrap();
    b.delete_mail(&at(8, 3), "m").unwrap();
    b.delete_mail(&at(9, 1), "m").unwrap();
    assert_eq!(a.state_digest(), b.state_digest());
    assert_eq!(a.delete_history(0, 9)[0].hlc, 8);
    assert_eq!(a.stats().tombstones, 1);
}

/// Delivers `id` as an origin does, then replays the op the host logs for
/// it (the asked mail with the answer's placement) on a copy of the state
/// before, as a restart or a replica does: both end in the same bytes.
/// Also says whether replaying the asked placement instead would have.
fn deliver_logged(mb: &mut Mailbox, c: &OpContext, id: &str, p: Placement) -> (Delivered, bool) {
    let replica = || {
        let mut r = Mailbox::from_state(mb.state.clone()).unwrap();
        r.replaying = true;
        r
    };
    let (mut logged, mut asked) = (replica(), replica());
    let d = mb.deliver(c, mail(id, 1), p.clone()).unwrap();
    logged.deliver(c, mail(id, 1), d.placement.clone()).unwrap();
    assert_eq!(encode(&logged.state, 0), encode(&mb.state, 0), "{d:?}");
    asked.deliver(c, mail(id, 1), p).unwrap();
    let asked_would_do = encode(&asked.state, 0) == encode(&mb.state, 0);
    (d, asked_would_do)
}

/// A mailbox with as many folders as it may have.
fn full() -> Mailbox {
    let mut mb = Mailbox::default();
    for i in 1..FOLDERS_MAX {
        mb.create_folder(&at(1, 1), &format!("f{i}")).unwrap();
    }
    mb
}

/// A delivery as asked reports the placement in the form it is stored:
/// canonical folder name, keywords sorted once each, no NaN score.
#[test]
fn a_delivery_reports_its_placement_as_stored() {
    let mut mb = Mailbox::default();
    let mut p = filed(
        "inbox/Lists",
        MailFlags::SEEN | MailFlags::FLAGGED,
        &["b", "a", "b"],
    );
    p.spam_score = Some(f32::NAN);
    let (d, _) = deliver_logged(&mut mb, &at(5, 1), "m", p);
    assert_eq!(
        (d.uid, d.folder.as_str(), d.duplicate),
        (1, "INBOX/Lists", false)
    );
    let mut want = filed(
        "INBOX/Lists",
        MailFlags::SEEN | MailFlags::FLAGGED,
        &["a", "b"],
    );
    want.spam_score = None;
    assert_eq!(d.placement, want);
    let mut p = filed("Work", MailFlags::empty(), &[]);
    p.spam_score = Some(0.5);
    let (d, asked_would_do) = deliver_logged(&mut mb, &at(6, 1), "n", p.clone());
    assert_eq!(d.placement, p);
    assert!(asked_would_do);
}

/// A folder name that is no folder name files into INBOX, and says so.
#[test]
fn a_bad_folder_name_reports_inbox() {
    let mut mb = Mailbox::default();
    let (d, _) = deliver_logged(
        &mut mb,
        &at(5, 1),
        "m",
        filed("bad//name", MailFlags::SEEN, &["k"]),
    );
    assert_eq!(d.folder, INBOX);
    assert_eq!(d.placement, filed(INBOX, MailFlags::SEEN, &["k"]));
}

/// At the folder limit a delivery into a new folder files into INBOX.
/// A replay holds no limit, so the asked placement would make the folder
/// there; the reported one does not.
#[test]
fn the_folder_limit_reports_inbox() {
    let mut mb = full();
    let (d, asked_would_do) =
        deliver_logged(&mut mb, &at(5, 1), "m", filed("new", MailFlags::DRAFT, &[]));
    assert_eq!((d.folder.as_str(), d.duplicate), (INBOX, false));
    assert_eq!(d.placement, filed(INBOX, MailFlags::DRAFT, &[]));
    assert!(!mb.state.folders.contains_key("new"));
    assert!(!asked_would_do);
    // An existing folder still takes mail, and says so.
    let (d, _) = deliver_logged(&mut mb, &at(6, 1), "n", place("f7"));
    assert_eq!(
        (d.folder.as_str(), d.placement.folder.as_str()),
        ("f7", "f7")
    );
}

/// A folder whose UIDs are used up sends new mail to INBOX.
#[test]
fn used_up_uids_report_inbox() {
    let mut mb = Mailbox::default();
    deliver_logged(&mut mb, &at(5, 1), "m", place("Work"));
    mb.state.folders.get_mut("Work").unwrap().uid_next = u32::MAX;
    let (d, asked_would_do) = deliver_logged(&mut mb, &at(6, 1), "n", place("Work"));
    assert_eq!(d.folder, INBOX);
    assert_eq!(d.placement, place(INBOX));
    assert!(!asked_would_do);
}

/// A duplicate reports where the mail is in `folder` and `uid`, and this
/// delivery's own placement: its folder is noted (and would win on a
/// replica where this delivery is the earlier), so the replay needs it.
#[test]
fn a_duplicate_reports_its_own_placement() {
    let mut mb = Mailbox::default();
    deliver_logged(&mut mb, &at(5, 1), "m", place("Work"));
    let (d, _) = deliver_logged(
        &mut mb,
        &at(6, 1),
        "m",
        filed("Other", MailFlags::SEEN, &[]),
    );
    assert_eq!((d.uid, d.folder.as_str(), d.duplicate), (1, "Work", true));
    assert_eq!(d.placement, filed("Other", MailFlags::SEEN, &[]));
    assert!(mb.state.folders.contains_key("Other"));
}

/// A duplicate at the folder limit is noted as filed into INBOX, and the
/// replay must not make the folder it asked for.
#[test]
fn a_duplicate_at_the_folder_limit_reports_inbox() {
    let mut mb = full();
    deliver_logged(&mut mb, &at(5, 1), "m", place("f7"));
    let (d, asked_would_do) = deliver_logged(&mut mb, &at(6, 1), "m", place("new"));
    assert_eq!((d.folder.as_str(), d.duplicate), ("f7", true));
    assert_eq!(d.placement, place(INBOX));
    assert!(!mb.state.folders.contains_key("new"));
    assert!(!asked_would_do);
}

/// A delivery of a deleted id has no folder or uid, but its placement.
#[test]
fn a_deleted_duplicate_reports_its_placement() {
    let mut mb = Mailbox::default();
    deliver_logged(&mut mb, &at(5, 1), "m", place("Work"));
    mb.delete_mail(&at(6, 1), "m").unwrap();
    let (d, _) = deliver_logged(&mut mb, &at(7, 1), "m", place("Late"));
    assert_eq!((d.uid, d.folder.as_str(), d.duplicate), (0, "", true));
    assert_eq!(d.placement, place("Late"));
}
