//! `ReplayGuard`: accepts each signed envelope (signer, nonce) at most once.
//!
//! Sans-IO: the caller passes `now_ms`, so tests and simulations drive the
//! clock. An envelope is accepted only if its `issued_ms` is within
//! `±window_ms` of now; the guard then only has to remember nonces for that
//! window, because anything older is refused by time alone.
//!
//! Memory is bounded by a capacity ([`MAX_REMEMBERED_NONCES`] by default).
//! When full, the guard forgets the envelope with the oldest `issued_ms` and
//! raises a floor to just above it: from then on anything issued at or before
//! the floor is refused as too old, so a replay of a forgotten nonce can never
//! slip through. Under a flood the effective window narrows (honest but slow
//! or clock-lagging signers may be refused and must re-sign) — it never
//! widens into accepting a replay.

use std::collections::{BTreeSet, HashMap};

/// The default tolerance between a signer's clock and ours: 5 minutes.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The default bound on remembered nonces (about 10 MB at most).
pub const MAX_REMEMBERED_NONCES: usize = 100_000;

/// Why an envelope was refused by the replay guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// This (signer, nonce) was already accepted.
    #[error("replayed envelope (nonce already seen from this signer)")]
    Replayed,
    /// Issued before the oldest time the guard can still vouch for: outside
    /// the window, or at or below the floor left by evicted nonces.
    #[error("signed at {issued_ms} ms, older than the oldest accepted {oldest_ms} ms")]
    TooOld {
        /// When it claims to have been signed.
        issued_ms: i64,
        /// The oldest `issued_ms` currently accepted.
        oldest_ms: i64,
    },
    /// Issued further ahead of our clock than the window allows. Refused
    /// because accepting it would mean remembering it for that long.
    #[error("signed at {issued_ms} ms, more than the window ahead of {now_ms} ms")]
    FromTheFuture {
        /// When it claims to have been signed.
        issued_ms: i64,
        /// The guard's clock.
        now_ms: i64,
    },
}

type Key = ([u8; 32], [u8; 16]);

/// Remembers recently accepted (signer, nonce) pairs; see the module doc.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    window_ms: i64,
    capacity: usize,
    /// (signer, nonce) → issued_ms, for the replay lookup.
    seen: HashMap<Key, i64>,
    /// The same entries ordered by issued_ms, for expiry and eviction.
    by_time: BTreeSet<(i64, Key)>,
    /// Everything issued at or below this was forgotten to bound memory.
    floor_ms: Option<i64>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES)
    }
}

impl ReplayGuard {
    /// A guard accepting `issued_ms` within `±window_ms` of now and
    /// remembering at most `capacity` nonces (at least 1).
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms: window_ms.max(0),
            capacity: capacity.max(1),
            seen: HashMap::new(),
            by_time: BTreeSet::new(),
            floor_ms: None,
        }
    }

    /// How many nonces are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Accepts (signer, nonce, issued_ms) once; refuses replays and anything
    /// outside the window. Only call this after the signature checked out,
    /// or forged envelopes could fill the guard.
    pub fn check(
        &mut self,
        signer: [u8; 32],
        nonce: [u8; 16],
        issued_ms: i64,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        let window_start = now_ms.saturating_sub(self.window_ms);
        self.expire(window_start);
        let oldest_ms = match self.floor_ms {
            Some(floor) => window_start.max(floor.saturating_add(1)),
            None => window_start,
        };
        if issued_ms < oldest_ms {
            return Err(ReplayError::TooOld {
                issued_ms,
                oldest_ms,
            });
        }
        if issued_ms > now_ms.saturating_add(self.window_ms) {
            return Err(ReplayError::FromTheFuture { issued_ms, now_ms });
        }
        let key = (signer, nonce);
        if self.seen.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        self.seen.insert(key, issued_ms);
        self.by_time.insert((issued_ms, key));
        while self.seen.len() > self.capacity {
            // The new entry may itself be the oldest; forgetting it is still
            // safe because the floor rises above its issued_ms.
            let Some((evicted_ms, evicted)) = self.by_time.pop_first() else {
                break;
            };
            self.seen.remove(&evicted);
            self.floor_ms = Some(self.floor_ms.map_or(evicted_ms, |f| f.max(evicted_ms)));
        }
        Ok(())
    }

    /// [`Self::check`] for a verified envelope.
    pub fn check_verified<T, K: super::keys::KeyId>(
        &mut self,
        verified: &super::signed::Verified<T, K>,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        self.check(
            verified.signer.key_bytes(),
            verified.nonce,
            verified.issued_ms,
            now_ms,
        )
    }

    /// Drops entries the window refuses anyway.
    fn expire(&mut self, window_start: i64) {
        while let Some(&(issued_ms, key)) = self.by_time.first() {
            if issued_ms >= window_start {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn nonce(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn accepts_once_then_refuses_replay() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(A, nonce(1), NOW, NOW), Ok(()));
        assert_eq!(g.check(A, nonce(1), NOW, NOW), Err(ReplayError::Replayed));
        assert_eq!(
            g.check(A, nonce(1), NOW, NOW + 1000),
            Err(ReplayError::Replayed)
        );
        // Same nonce from another signer, or another nonce, is fine.
        assert_eq!(g.check(B, nonce(1), NOW, NOW), Ok(()));
        assert_eq!(g.check(A, nonce(2), NOW, NOW), Ok(()));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn window_edges() {
        let mut g = ReplayGuard::new(1000, 10);
        assert_eq!(g.check(A, nonce(1), NOW - 1000, NOW), Ok(()));
        assert_eq!(g.check(A, nonce(2), NOW + 1000, NOW), Ok(()));
        assert_eq!(
            g.check(A, nonce(3), NOW - 1001, NOW),
            Err(ReplayError::TooOld {
                issued_ms: NOW - 1001,
                oldest_ms: NOW - 1000
            })
        );
        assert_eq!(
            g.check(A, nonce(4), NOW + 1001, NOW),
            Err(ReplayError::FromTheFuture {
                issued_ms: NOW + 1001,
                now_ms: NOW
            })
        );
    }

    #[test]
    fn expired_entries_are_dropped_and_their_replays_refused_by_time() {
        let mut g = ReplayGuard::new(1000, 10);
        g.check(A, nonce(1), NOW, NOW).unwrap();
        g.check(A, nonce(2), NOW + 500, NOW + 500).unwrap();
        assert_eq!(g.check(A, nonce(9), NOW + 1000, NOW + 1000), Ok(()));
        assert_eq!(g.len(), 3, "the entry from NOW is still in the window");
        assert_eq!(g.check(A, nonce(8), NOW + 1001, NOW + 1001), Ok(()));
        assert_eq!(g.len(), 3, "the entry from NOW has expired");
        assert!(matches!(
            g.check(A, nonce(1), NOW, NOW + 1001),
            Err(ReplayError::TooOld { .. })
        ));
    }

    #[test]
    fn eviction_bounds_memory_and_raises_the_floor() {
        let mut g = ReplayGuard::new(DEFAULT_WINDOW_MS, 3);
        for i in 0..3u8 {
            g.check(A, nonce(i), NOW + i64::from(i), NOW).unwrap();
        }
        assert_eq!(g.len(), 3);
        // A fourth forgets the oldest (issued NOW) and raises the floor.
        g.check(A, nonce(3), NOW + 3, NOW).unwrap();
        assert_eq!(g.len(), 3);
        // A replay of the forgotten nonce is refused as too old...
        assert_eq!(
            g.check(A, nonce(0), NOW, NOW),
            Err(ReplayError::TooOld {
                issued_ms: NOW,
                oldest_ms: NOW + 1
            })
        );
        // ...and so is anything new from before the floor, though in window.
        assert!(matches!(
            g.check(B, nonce(7), NOW - 10, NOW),
            Err(ReplayError::TooOld { .. })
        ));
        // Remembered ones are still refused as replays.
        assert_eq!(
            g.check(A, nonce(1), NOW + 1, NOW),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            g.check(A, nonce(3), NOW + 3, NOW),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn evicting_the_new_entry_itself_still_blocks_its_replay() {
        let mut g = ReplayGuard::new(DEFAULT_WINDOW_MS, 1);
        g.check(A, nonce(1), NOW, NOW).unwrap();
        // Older than the one remembered: accepted, then immediately forgotten.
        assert_eq!(g.check(A, nonce(2), NOW - 5, NOW), Ok(()));
        assert_eq!(g.len(), 1);
        assert!(matches!(
            g.check(A, nonce(2), NOW - 5, NOW),
            Err(ReplayError::TooOld { .. })
        ));
        assert_eq!(g.check(A, nonce(1), NOW, NOW), Err(ReplayError::Replayed));
    }

    #[test]
    fn default_capacity_holds() {
        let mut g = ReplayGuard::new(DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES);
        for i in 0..(MAX_REMEMBERED_NONCES as u32 + 10) {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            g.check(A, n, NOW + i64::from(i), NOW).unwrap();
        }
        assert_eq!(g.len(), MAX_REMEMBERED_NONCES);
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        let mut g = ReplayGuard::default();
        assert!(g.check(A, nonce(1), i64::MIN, i64::MIN).is_ok());
        assert!(g.check(A, nonce(2), i64::MAX, i64::MAX).is_ok());
        assert!(matches!(
            g.check(A, nonce(3), i64::MIN, i64::MAX),
            Err(ReplayError::TooOld { .. })
        ));
    }
}
