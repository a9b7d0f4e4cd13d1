//! When a copy this host keeps but dispatch no longer lists may go.
//!
//! A keeper round that finds a local copy (of a mailbox or an attachment)
//! missing from dispatch's holder list must not delete it at once: a copy
//! that just arrived is listed only when its move or upload reports the
//! location, and a listing read in the middle of a change can be stale.
//! So a copy goes only after it has stayed unlisted for a grace period,
//! counted from the first round that saw it unlisted, and never within the
//! grace period after it arrived. Sans-IO: callers pass the time, in
//! milliseconds of a monotonic clock (a wall clock that jumps forward must
//! not make a copy look stale early).

use std::collections::HashMap;
use std::hash::Hash;

/// The arrival and first-unlisted times of the copies kept here.
#[derive(Debug)]
pub struct UnlistedCopies<K> {
    /// When a copy was first seen unlisted (since it was last listed).
    unlisted_since: HashMap<K, u64>,
    /// When a copy arrived or was created here, to let it get listed.
    arrived: HashMap<K, u64>,
}

impl<K> Default for UnlistedCopies<K> {
    fn default() -> Self {
        UnlistedCopies {
            unlisted_since: HashMap::new(),
            arrived: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> UnlistedCopies<K> {
    /// A copy of `id` arrived (or was created) here at `now_ms`.
    pub fn arrived(&mut self, id: &K, now_ms: u64) {
        self.arrived.insert(id.clone(), now_ms);
        self.unlisted_since.remove(id);
    }

    /// Dispatch lists this host for `id`: any unlisted streak ends.
    pub fn listed(&mut self, id: &K) {
        self.unlisted_since.remove(id);
    }

    /// A round found `id` unlisted at `now_ms`: whether the copy may go (it
    /// is then forgotten here). The first such round starts the count.
    pub fn stale(&mut self, id: &K, now_ms: u64, grace_ms: u64) -> bool {
        let within = |since_ms: &u64| now_ms.saturating_sub(*since_ms) < grace_ms;
        if self.arrived.get(id).is_some_and(within) {
            return false;
        }
        let since = self.unlisted_since.entry(id.clone()).or_insert(now_ms);
        if within(since) {
            return false;
        }
        self.unlisted_since.remove(id);
        self.arrived.remove(id);
        true
    }

    /// Forgets copies no longer here (`here` says which are) and arrivals
    /// older than `grace_ms`, so the maps stay as small as the store.
    pub fn prune(&mut self, here: impl Fn(&K) -> bool, now_ms: u64, grace_ms: u64) {
        self.unlisted_since.retain(|id, _| here(id));
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
        // Forgotten once it may go: a copy that comes back starts anew.
        assert!(!copies.stale(&"a", t0 + GRACE * 2, GRACE));
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
