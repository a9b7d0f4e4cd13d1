//! Pairwise races of folder changes: two replicas each make one operation
//! on the same starting state without seeing the other's, and both arrival
//! orders must give the same `state-digest`, for either stamp order.
//!
//! Every pair is tried exhaustively here; longer random histories of the
//! same operations are in `converge_tests.rs`. The rules are in
//! `folder_log.rs` and `placement.rs`.

use crate::converge_tests::assert_same;
use crate::state::Mailbox;
use crate::testutil::{ctx, flags, mail, place, put};
use crate::wit::{MailFlags, OpContext};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Rename(&'static str, &'static str),
    DeleteFolder(&'static str),
    CreateFolder(&'static str),
    Move(&'static str, &'static str),
    Deliver(&'static str, &'static str),
    DeleteMail(&'static str),
    Seen(&'static str),
}

const MENU: &[Op] = &[
    Op::Rename("E", "X"),
    Op::Rename("E", "Y"),
    Op::Rename("A", "X"),
    Op::Rename("A", "B/A"),
    Op::Rename("A/sub", "E/sub"),
    Op::DeleteFolder("E"),
    Op::DeleteFolder("A/sub"),
    Op::DeleteFolder("B"),
    Op::CreateFolder("E/child"),
    Op::CreateFolder("A/sub/child"),
    Op::CreateFolder("X"),
    Op::Move("m1", "E"),
    Op::Move("m1", "A/sub"),
    Op::Move("m0", "INBOX"),
    Op::Move("m0", "B"),
    Op::Deliver("n", "E"),
    Op::Deliver("n", "A/sub/new"),
    Op::Deliver("n", "X"),
    Op::DeleteMail("m0"),
    Op::Seen("m1"),
];

/// INBOX (m1), A (m0) with child A/sub, E and B empty.
fn base() -> Mailbox {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "m0", 1, "A");
    mb.create_folder(&ctx(2), "A/sub").unwrap();
    mb.create_folder(&ctx(3), "E").unwrap();
    mb.create_folder(&ctx(4), "B").unwrap();
    put(&mut mb, 5, "m1", 2, "INBOX");
    mb
}

fn apply(mb: &mut Mailbox, c: &OpContext, op: Op) -> bool {
    match op {
        Op::Rename(a, b) => mb.rename_folder(c, a, b).is_ok(),
        Op::DeleteFolder(a) => mb.delete_folder(c, a).is_ok(),
        Op::CreateFolder(a) => mb.create_folder(c, a).is_ok(),
        Op::Move(id, f) => mb.move_mail(c, id, f).is_ok(),
        Op::Deliver(id, f) => mb.deliver(c, mail(id, 9), place(f)).is_ok(),
        Op::DeleteMail(id) => mb.delete_mail(c, id).is_ok(),
        Op::Seen(id) => mb
            .set_flags(
                c,
                id,
                &flags(MailFlags::SEEN, &[]),
                &flags(MailFlags::empty(), &[]),
            )
            .is_ok(),
    }
}

fn at(hlc: u64, replica: u64) -> OpContext {
    OpContext {
        now_ms: 1_700_000_000_000 + hlc as i64,
        hlc,
        replica,
    }
}

/// Whether `x` at replica 2 and `y` at replica 3, concurrent, converge.
/// Pairs where either is refused at its origin are vacuously fine.
fn converges(x: Op, y: Op, x_first_stamp: bool) -> bool {
    let (cx, cy) = if x_first_stamp {
        (at(100, 2), at(101, 3))
    } else {
        (at(101, 2), at(100, 3))
    };
    if !apply(&mut base(), &cx, x) || !apply(&mut base(), &cy, y) {
        return true;
    }
    // Each order as a third replica applies them: both replayed.
    let mut xy = base();
    xy.replaying = true;
    apply(&mut xy, &cx, x);
    apply(&mut xy, &cy, y);
    let mut yx = base();
    yx.replaying = true;
    apply(&mut yx, &cy, y);
    apply(&mut yx, &cx, x);
    if xy.state_digest() != yx.state_digest() {
        return false;
    }
    // Replaying either operation again changes nothing.
    let d = xy.state_digest();
    apply(&mut xy, &cx, x);
    apply(&mut xy, &cy, y);
    assert_eq!(
        xy.state_digest(),
        d,
        "replaying {x:?} / {y:?} changed the state"
    );
    true
}

#[test]
fn pairwise_folder_races_converge() {
    let mut diverging = Vec::new();
    for (i, &x) in MENU.iter().enumerate() {
        for &y in &MENU[i..] {
            for x_first in [true, false] {
                if !converges(x, y, x_first) {
                    diverging.push((x, y, x_first));
                }
            }
        }
    }
    assert!(diverging.is_empty(), "pairs that diverge: {diverging:?}");
}

/// The outcomes the rules promise, spelled out for the common races.
#[test]
fn folder_race_outcomes() {
    let folder_of =
        |mb: &Mailbox, id: &str| mb.folder_name_of(mb.state.mails[id].folder).to_string();
    // A move into a folder deleted concurrently re-creates it.
    for order in [[0, 1], [1, 0]] {
        let mut mb = base();
        mb.replaying = true;
        let ops = [
            (at(100, 2), Op::DeleteFolder("E")),
            (at(101, 3), Op::Move("m1", "E")),
        ];
        for i in order {
            apply(&mut mb, &ops[i].0, ops[i].1);
        }
        assert_eq!(folder_of(&mb, "m1"), "E");
    }
    // A move placed before a concurrent rename follows it; one placed
    // after it stays under the old name.
    for (move_hlc, want) in [(100, "X"), (102, "E")] {
        let mut a = base();
        a.replaying = true;
        apply(&mut a, &at(101, 2), Op::Rename("E", "X"));
        apply(&mut a, &at(move_hlc, 3), Op::Move("m1", "E"));
        let mut b = base();
        b.replaying = true;
        apply(&mut b, &at(move_hlc, 3), Op::Move("m1", "E"));
        apply(&mut b, &at(101, 2), Op::Rename("E", "X"));
        assert_same(&a, &b, "rename vs move");
        assert_eq!(folder_of(&a, "m1"), want);
    }
    // Two renames of one folder: the older one takes the folder and its
    // mails, the newer one still creates its name (nothing is lost, and
    // neither user's rename is silently undone).
    let mut a = base();
    a.replaying = true;
    apply(&mut a, &at(100, 2), Op::Rename("A", "X"));
    apply(&mut a, &at(101, 3), Op::Rename("A", "Y"));
    assert_eq!(folder_of(&a, "m0"), "X");
    assert!(a.state.folders.contains_key("X/sub") && a.state.folders.contains_key("Y"));
    assert!(!a.state.folders.contains_key("A"));
    // A rename onto a name created concurrently merges the two.
    for order in [[0, 1], [1, 0]] {
        let mut mb = base();
        mb.replaying = true;
        let ops = [
            (at(100, 2), Op::Rename("A", "E")),
            (at(101, 3), Op::Move("m1", "E")),
        ];
        for i in order {
            apply(&mut mb, &ops[i].0, ops[i].1);
        }
        assert_eq!(folder_of(&mb, "m0"), "E");
        assert_eq!(folder_of(&mb, "m1"), "E");
        assert!(mb.state.folders.contains_key("E/sub"));
    }
}
