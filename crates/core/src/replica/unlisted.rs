//! When a copy this host keeps but dispatch no longer lists may go.
//!
//! A keeper round that finds a local copy (of a mailbox or an attachment)
//! missing from dispatch's holder list must not delete it at once: a copy
//! that just arrived is listed only when its move or upload reports the
//! location, and a listing read in the middle of a change can be stale.
//! So a copy goes only after it has stayed unlisted for a grace period,
//! counted from the first round that saw it unlisted, and never within the
//! grace period after it arrived. Even then a stale copy goes only once
//! its host has made sure a listed replica holds what it holds
//! ([`super::handback`]); until then it is *held back*, and stays stale
//! round after round. Sans-IO: callers pass the time, in milliseconds of
//! a monotonic clock (a wall clock that jumps forward must not make a
//! copy look stale early).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// The arrival and first-unlisted times of the copies kept here.
#[derive(Debug)]
pub struct UnlistedCopies<K> {
    /// When a copy was first seen unlisted (since it was last listed).
    unlisted_since: HashMap<K, u64>,
    /// When a copy arrived or was created here, to let it get listed.
    arrived: HashMap<K, u64>,
    /// Stale copies kept because no listed replica was seen to hold all
    /// they hold (reported by `dem admin status`).
    held_back: HashSet<K>,
}

impl<K> Default for UnlistedCopies<K> {
    fn default() -> Self {
        UnlistedCopies {
            unlisted_since: HashMap::new(),
            arrived: HashMap::new(),
            held_back: HashSet::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> UnlistedCopies<K> {
    /// A copy of `id` arrived (or was created) here at `now_ms`.
    pub fn arrived(&mut self, id: &K, now_ms: u64) {
        self.arrived.insert(id.clone(), now_ms);
        self.unlisted_since.remove(id);
        self.held_back.remove(id);
    }

    /// Dispatch lists this host for `id`: any unlisted streak ends.
    pub fn listed(&mut self, id: &K) {
        self.unlisted_since.remove(id);
        self.held_back.remove(id);
    }

    /// A round found `id` unlisted at `now_ms`: whether the copy is stale,
    /// that is may go once a listed replica holds all it holds. The first
    /// such round starts the count; a stale copy stays stale until it is
    /// [`discarded`](Self::discarded) or listed again.
    pub fn stale(&mut self, id: &K, now_ms: u64, grace_ms: u64) -> bool {
        let within = |since_ms: &u64| now_ms.saturating_sub(*since_ms) < grace_ms;
        if self.arrived.get(id).is_some_and(within) {
            return false;
        }
        let since = self.unlisted_since.entry(id.clone()).or_insert(now_ms);
        !within(since)
    }

    /// The stale copy `id` is kept (`true`: no listed replica was seen to
    /// hold all of it) or about to go (`false`).
    pub fn hold_back(&mut self, id: &K, held: bool) {
        if held {
            self.held_back.insert(id.clone());
        } else {
            self.held_back.remove(id);
        }
    }

    /// The copies held back.
    pub fn held_back(&self) -> impl Iterator<Item = &K> {
        self.held_back.iter()
    }

    /// Whether the copy `id` is held back.
    pub fn is_held_back(&self, id: &K) -> bool {
        self.held_back.contains(id)
    }

    /// The copy `id` was discarded: forget it (one that comes back starts
    /// anew).
    pub fn discarded(&mut self, id: &K) {
        self.unlisted_since.remove(id);
        self.arrived.remove(id);
        self.held_back.remove(id);
    }

    /// Forgets copies no longer here (`here` says which are) and arrivals
    /// older than `grace_ms`, so the maps stay as small as the store.
    pub fn prune(&mut self, here: impl Fn(&K) -> bool, now_ms: u64, grace_ms: u64) {
        self.unlisted_since.retain(|id, _| here(id));
        self.held_back.retain(|id| here(id));
        self.arrived
            .retain(|id, t| here(id) && now_ms.saturating_sub(*t) < grace_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: u64 = 3_000;

    #[test]
    fn a_copy_goes_only_after_a_whole_grace_unlisted() {
        let t0: u64 = 1_000_000;
        let mut copies = UnlistedCopies::default();
        assert!(
            !copies.stale(&"a", t0, GRACE),
            "the first round only counts"
        );
        assert!(!copies.stale(&"a", t0 + GRACE / 2, GRACE));
        assert!(copies.stale(&"a", t0 + GRACE, GRACE));
        // Still stale while it is held back, round after round.
        copies.hold_back(&"a", true);
        assert!(copies.is_held_back(&"a"));
        assert!(copies.stale(&"a", t0 + GRACE * 3 / 2, GRACE));
        // Forgotten once discarded: a copy that comes back starts anew.
        copies.discarded(&"a");
        assert!(!copies.is_held_back(&"a"));
        assert!(!copies.stale(&"a", t0 + GRACE * 2, GRACE));
    }

    #[test]
    fn a_held_back_copy_listed_again_is_no_longer_held_back() {
        let t0: u64 = 1_000_000;
        let mut copies = UnlistedCopies::default();
        assert!(!copies.stale(&"a", t0, GRACE));
        assert!(copies.stale(&"a", t0 + GRACE, GRACE));
        copies.hold_back(&"a", true);
        copies.listed(&"a");
        assert!(!copies.is_held_back(&"a"));
        assert!(!copies.stale(&"a", t0 + GRACE, GRACE), "counting anew");
    }

    #[test]
    fn being_listed_restarts_the_count() {
        let t0: u64 = 1_000_000;
        let mut copies = UnlistedCopies::default();
        assert!(!copies.stale(&"a", t0, GRACE));
        copies.listed(&"a");
        assert!(!copies.stale(&"a", t0 + GRACE, GRACE));
        assert!(copies.stale(&"a", t0 + GRACE * 2, GRACE));
    }

    #[test]
    fn a_fresh_arrival_is_kept_through_its_grace() {
        let t0: u64 = 1_000_000;
        let mut copies = UnlistedCopies::default();
        assert!(!copies.stale(&"a", t0, GRACE));
        copies.arrived(&"a", t0 + GRACE);
        assert!(!copies.stale(&"a", t0 + GRACE * 3 / 2, GRACE));
        assert!(!copies.stale(&"a", t0 + GRACE * 2, GRACE), "counting anew");
        assert!(copies.stale(&"a", t0 + GRACE * 3, GRACE));
    }

    #[test]
    fn pruning_forgets_copies_gone_and_old_arrivals() {
        let t0: u64 = 1_000_000;
        let mut copies = UnlistedCopies::default();
        copies.arrived(&"old", t0);
        copies.arrived(&"gone", t0 + GRACE);
        assert!(!copies.stale(&"kept", t0, GRACE));
        copies.prune(|id| *id != "gone", t0 + GRACE, GRACE);
        assert!(!copies.arrived.contains_key("old"));
        assert!(!copies.arrived.contains_key("gone"));
        assert!(copies.unlisted_since.contains_key("kept"));
    }
}
