//! The folder history: every folder create, rename and delete, kept in
//! stamp order, and the folder tree it replays to.
//!
//! Replicas see concurrent folder changes in different orders. Applying
//! each change to whatever tree a replica has at that moment made the
//! result depend on the order (a rename onto a name another replica just
//! created was refused in one order and applied in the other). Instead
//! the folder tree is a function of the *set* of changes: they are
//! replayed in (hlc, replica) order from a base tree, by rules that never
//! refuse, so every replica that has the same changes has the same tree,
//! whatever order they came in and however often.
//!
//! The rules of the replay, with `T` the tree so far:
//! - `Create(n)`: `n` and its ancestors join `T`.
//! - `Rename(a, b)`: `a` and everything under it move to `b` (merging with
//!   what is already there), and `b`'s ancestors join `T`. This happens
//!   even if `a` is not in `T` (deleted or renamed away concurrently): the
//!   rename still creates `b`, and mails placed into `a` before it follow
//!   it. A rename of INBOX or into itself does nothing (refused at its
//!   origin anyway).
//! - `Delete(n)`: `n` leaves `T` if nothing in `T` is under it.
//!
//! A delivery into a folder (a filter's `fileinto :create`) is a create
//! too, so that folder stays once its mails are gone, like one the user
//! made. Logging one per delivery would flood the history, so only the
//! newest delivery per folder name counts (`FolderLog::filed`): a
//! max-register per name, which merges in any order like the rest.
//!
//! Where a mail is, and which folders hold mails outside `T`, is
//! `placement.rs`. The history is bounded: past [`FOLDER_LOG_MAX`] entries
//! the oldest is folded into the base tree (see [`FolderLog::push`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits::FOLDER_LOG_MAX;
use crate::names::{INBOX, SEPARATOR, is_within, parent};
use crate::state::Stamp;

/// One folder change as its origin accepted it; names are canonical.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FolderOp {
    Create(String),
    Rename(String, String),
    Delete(String),
}

/// A rename that the replay applied, for mails to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    pub stamp: Stamp,
    pub from: String,
    pub to: String,
}

/// The replicated folder history (schema 3): a base tree and the changes
/// since, by stamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FolderLog {
    /// The tree before the first change in `ops`; closed under parents.
    pub base: BTreeSet<String>,
    /// By stamp; two changes never share one, but should they, the op
    /// breaks the tie so every replica still sees one order.
    pub ops: BTreeSet<(Stamp, FolderOp)>,
    /// Stamp of the newest delivery into each folder other than INBOX;
    /// replayed as a create at that stamp.
    pub filed: BTreeMap<String, Stamp>,
}

impl Default for FolderLog {
    fn default() -> Self {
        FolderLog {
            base: BTreeSet::from([INBOX.to_string()]),
            ops: BTreeSet::new(),
            filed: BTreeMap::new(),
        }
    }
}

/// What a delivery did to the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filed {
    /// Nothing: INBOX, or a newer delivery into that folder was there.
    Same,
    /// The tree gains the folder and nothing else changes: no change is
    /// stamped after this delivery or the folder's previous one.
    Added,
    /// The history changed in the middle; replay it.
    Replay,
}

/// What the history replays to: the tree, and the renames applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replayed {
    pub tree: BTreeSet<String>,
    /// In stamp order.
    pub renames: Vec<Rename>,
}

/// `name` and its ancestors.
pub fn with_ancestors(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |n| parent(n))
}

/// `name` with the prefix `from` replaced by `to`, if `name` is `from` or
/// under it.
pub fn rebase(name: &str, from: &str, to: &str) -> Option<String> {
    is_within(name, from).then(|| format!("{to}{}", &name[from.len()..]))
}

/// Adds `name` and its ancestors to a set closed under parents.
pub fn add_with_ancestors(tree: &mut BTreeSet<String>, name: &str) {
    for n in with_ancestors(name) {
        if !tree.insert(n.to_string()) {
            break;
        }
    }
}

/// Names strictly under `name` in a name-ordered set: `/` + 1 is `0`, so
/// `name/` .. `name0` spans exactly the descendants.
pub fn under<'a>(set: &'a BTreeSet<String>, name: &str) -> impl Iterator<Item = &'a String> {
    set.range(format!("{name}{SEPARATOR}")..format!("{name}0"))
}

/// Applies one change to `tree` by the replay rules; returns whether it
/// was a rename that applied.
fn apply(tree: &mut BTreeSet<String>, op: &FolderOp) -> bool {
    match op {
        FolderOp::Create(n) => add_with_ancestors(tree, n),
        FolderOp::Rename(a, b) => {
            if a == INBOX || is_within(b, a) {
                return false;
            }
            let moving: Vec<String> = std::iter::once(a)
                .filter(|a| tree.contains(*a))
                .chain(under(tree, a))
                .cloned()
                .collect();
            for n in &moving {
                tree.remove(n);
            }
            // Moving `a` may leave its parent without children; the parent
            // stays, as it would in a sequential rename.
            add_with_ancestors(tree, b);
            for n in &moving {
                if let Some(to) = rebase(n, a, b) {
                    tree.insert(to);
                }
            }
            return true;
        }
        FolderOp::Delete(n) => {
            if n != INBOX && under(tree, n).next().is_none() {
                tree.remove(n);
            }
        }
    }
    false
}

impl FolderLog {
    /// Every change, deliveries' creates included, in replay order.
    fn events(&self) -> Vec<(Stamp, FolderOp)> {
        let mut all: Vec<(Stamp, FolderOp)> = self
            .filed
            .iter()
            .map(|(n, s)| (*s, FolderOp::Create(n.clone())))
            .chain(self.ops.iter().cloned())
            .collect();
        all.sort();
        all
    }

    pub fn replay(&self) -> Replayed {
        let mut tree = self.base.clone();
        let mut renames = Vec::new();
        for (stamp, op) in self.events() {
            if apply(&mut tree, &op)
                && let FolderOp::Rename(from, to) = op
            {
                renames.push(Rename { stamp, from, to });
            }
        }
        Replayed { tree, renames }
    }

    /// Records a change; false if it is already there (a replay).
    ///
    /// Trade-off: past `FOLDER_LOG_MAX` entries the oldest is folded into
    /// `base` and returned, so the caller can move mails placed before it
    /// along a rename. A change that arrives later with a stamp older than
    /// a folded one is then replayed after it rather than before, which
    /// only matters for a change delayed across that many folder changes.
    pub fn push(&mut self, stamp: Stamp, op: FolderOp) -> (bool, Option<(Stamp, FolderOp)>) {
        if !self.ops.insert((stamp, op)) {
            return (false, None);
        }
        (true, self.fold())
    }

    /// Records a delivery into `name` at `t`: what changed, and what was
    /// folded to make room (as [`FolderLog::push`]).
    pub fn note_filed(&mut self, name: &str, t: Stamp) -> (Filed, Option<(Stamp, FolderOp)>) {
        if name == INBOX {
            return (Filed::Same, None);
        }
        let old = self.filed.get(name).copied();
        if old.is_some_and(|s| s >= t) {
            return (Filed::Same, None);
        }
        self.filed.insert(name.to_string(), t);
        let since = old.map_or(t, |s| s.min(t));
        let quiet = self.ops.last().is_none_or(|(s, _)| *s < since);
        let folded = self.fold();
        let filed = if quiet && folded.is_none() {
            Filed::Added
        } else {
            Filed::Replay
        };
        (filed, folded)
    }

    /// Folds the oldest entry into `base` once there are too many.
    fn fold(&mut self) -> Option<(Stamp, FolderOp)> {
        if self.ops.len() + self.filed.len() <= FOLDER_LOG_MAX {
            return None;
        }
        let oldest_filed = self
            .filed
            .iter()
            .min_by_key(|(n, s)| (**s, *n))
            .map(|(n, s)| (*s, n.clone()));
        let op_first = self.ops.first().map(|(s, _)| *s);
        let folded = match (oldest_filed, op_first) {
            (Some((fs, name)), o) if o.is_none_or(|o| fs < o) => {
                self.filed.remove(&name);
                (fs, FolderOp::Create(name))
            }
            _ => self.ops.pop_first()?,
        };
        apply(&mut self.base, &folded.1);
        Some(folded)
    }

    /// Whether `name` ever appears in the history: a move into a name that
    /// was deleted or renamed away re-creates it, while one into a name
    /// never known is a typo.
    pub fn mentions(&self, name: &str) -> bool {
        self.base.contains(name)
            || self.filed.keys().any(|n| is_within(n, name))
            || self.ops.iter().any(|(_, op)| match op {
                FolderOp::Create(n) | FolderOp::Delete(n) => is_within(n, name),
                FolderOp::Rename(a, b) => [a, b]
                    .iter()
                    .any(|n| is_within(n, name) || is_within(name, n)),
            })
    }
}

impl Replayed {
    /// Where a mail placed into `name` at `t` is now: it follows every
    /// applied rename of its folder or an ancestor stamped after `t`, as
    /// if it had been there when the rename happened.
    pub fn follow(&self, name: &str, t: Stamp) -> String {
        let start = self.renames.partition_point(|r| r.stamp <= t);
        let mut name = name.to_string();
        for r in &self.renames[start..] {
            if let Some(to) = rebase(&name, &r.from, &r.to) {
                name = to;
            }
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hlc: u64) -> Stamp {
        Stamp { hlc, replica: 1 }
    }

    fn log(ops: &[(u64, FolderOp)]) -> FolderLog {
        let mut l = FolderLog::default();
        for (h, op) in ops {
            l.push(at(*h), op.clone());
        }
        l
    }

    fn names(r: &Replayed) -> Vec<&str> {
        r.tree.iter().map(String::as_str).collect()
    }

    fn c(n: &str) -> FolderOp {
        FolderOp::Create(n.into())
    }

    fn r(a: &str, b: &str) -> FolderOp {
        FolderOp::Rename(a.into(), b.into())
    }

    fn d(n: &str) -> FolderOp {
        FolderOp::Delete(n.into())
    }

    #[test]
    fn replay_is_in_stamp_order_whatever_the_push_order() {
        let ops = [(1, c("A/x")), (2, r("A", "B")), (3, c("A")), (4, d("B/x"))];
        let forward = log(&ops).replay();
        let mut rev = ops.to_vec();
        rev.reverse();
        assert_eq!(log(&rev).replay(), forward);
        assert_eq!(names(&forward), ["A", "B", "INBOX"]);
    }

    #[test]
    fn rename_merges_into_an_existing_name_and_creates_from_a_missing_one() {
        let t = log(&[(1, c("X/keep")), (2, c("E/sub")), (3, r("E", "X"))]).replay();
        assert_eq!(names(&t), ["INBOX", "X", "X/keep", "X/sub"]);
        let t = log(&[(1, r("gone", "new/name"))]).replay();
        assert_eq!(names(&t), ["INBOX", "new", "new/name"]);
        let t = log(&[(1, c("A")), (2, r("A", "A/B")), (3, r("INBOX", "Z"))]).replay();
        assert_eq!(names(&t), ["A", "INBOX"]);
    }

    #[test]
    fn delete_keeps_a_folder_with_children() {
        let t = log(&[(1, c("A/b")), (2, d("A")), (3, d("INBOX"))]).replay();
        assert_eq!(names(&t), ["A", "A/b", "INBOX"]);
        let t = log(&[(1, c("A/b")), (2, d("A/b")), (3, d("A"))]).replay();
        assert_eq!(names(&t), ["INBOX"]);
    }

    #[test]
    fn mails_follow_renames_stamped_after_their_placement() {
        let t = log(&[(2, c("A")), (5, r("A", "B")), (7, r("B/x", "C"))]).replay();
        assert_eq!(t.follow("A/x", at(1)), "C");
        assert_eq!(t.follow("A/x", at(5)), "A/x");
        assert_eq!(t.follow("B/x", at(6)), "C");
        assert_eq!(t.follow("INBOX", at(0)), "INBOX");
    }

    #[test]
    fn a_replayed_change_is_recorded_once() {
        let mut l = log(&[(1, c("A"))]);
        assert_eq!(l.push(at(1), c("A")), (false, None));
        assert_eq!(l.ops.len(), 1);
    }

    #[test]
    fn the_oldest_change_folds_into_the_base_past_the_limit() {
        let mut l = FolderLog::default();
        for i in 0..FOLDER_LOG_MAX as u64 {
            assert_eq!(l.push(at(i + 10), c(&format!("f{i}"))), (true, None));
        }
        let (added, folded) = l.push(at(1), r("f0", "g"));
        assert!(added);
        assert_eq!(folded, Some((at(1), r("f0", "g"))));
        assert_eq!(l.ops.len(), FOLDER_LOG_MAX);
        assert!(l.base.contains("g"));
        // The rename came first in stamp order, before `f0` was created.
        let tree = l.replay().tree;
        assert!(tree.contains("g") && tree.contains("f0"));
        assert_eq!(tree.len(), FOLDER_LOG_MAX + 2);
    }

    #[test]
    fn deliveries_create_their_folder_at_the_newest_delivery() {
        let mut l = log(&[(5, d("L"))]);
        assert_eq!(l.note_filed("L", at(3)), (Filed::Replay, None));
        assert!(!l.replay().tree.contains("L"), "deleted after the delivery");
        assert_eq!(l.note_filed("L", at(2)), (Filed::Same, None), "older");
        assert_eq!(l.note_filed("L", at(7)), (Filed::Replay, None));
        assert!(l.replay().tree.contains("L"));
        assert_eq!(l.note_filed("M/x", at(8)), (Filed::Added, None));
        assert_eq!(l.note_filed("INBOX", at(9)), (Filed::Same, None));
        assert!(l.replay().tree.contains("M"));
    }

    #[test]
    fn mentions_knows_every_name_the_history_touched() {
        let l = log(&[(1, c("A/b")), (2, r("A", "Z")), (3, d("Q"))]);
        for n in ["A", "A/b", "Z", "Z/b", "Q", "INBOX"] {
            assert!(l.mentions(n), "{n}");
        }
        assert!(!l.mentions("typo"));
    }
}
