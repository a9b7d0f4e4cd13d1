//! `ReplayGuard`: accepts each signed envelope (signer, nonce) at most once.
//!
//! Sans-IO: the caller passes `now_ms`, so tests and simulations drive the
//! clock. An envelope is accepted only if its `issued_ms` is within
//! `±window_ms` of now; the guard then only has to remember nonces for that
//! window, because anything older is refused by time alone.
//!
//! Memory is bounded by a capacity ([`MAX_REMEMBERED_NONCES`] by default),
//! both in nonces and in signers. Nonces are kept per signer, and when the
//! guard is full it forgets the oldest nonce *of the signer holding the
//! most*, raising a floor for that signer only: from then on anything that
//! signer issued at or before its floor is refused as too old, so a replay
//! of a forgotten nonce never slips through. A signer that floods the
//! guard, even with envelopes dated at the far edge of the window, thus
//! narrows its own window and nobody else's: it cannot lock other signers
//! out. Only when more signers than the capacity have each been cut back
//! does the guard forget a whole signer (the one with the lowest floor),
//! and then it raises one floor shared by all; that takes as many distinct
//! keys the host accepts as the capacity, which the callers' own rules
//! (owners of mailboxes held here, admitted hosts) and rate limits bound.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// The default tolerance between a signer's clock and ours: 5 minutes.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The default bound on remembered nonces, and on signers (about 10 MB at
/// most).
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

type SignerKey = [u8; 32];
type Nonce = [u8; 16];
type IndexKey = (usize, Reverse<i64>, SignerKey);

/// What the guard remembers of one signer.
#[derive(Debug, Clone, Default)]
struct Signer {
    /// nonce → issued_ms.
    seen: HashMap<Nonce, i64>,
    /// The same, ordered by issued_ms: this signer's oldest goes first.
    oldest: BTreeSet<(i64, Nonce)>,
    /// Everything this signer issued at or below this was forgotten.
    floor_ms: Option<i64>,
}

/// Where a signer with nonces sits in `by_count`; `None` with none.
fn index_key(signer: SignerKey, record: &Signer) -> Option<IndexKey> {
    let &(oldest_ms, _) = record.oldest.first()?;
    Some((record.seen.len(), Reverse(oldest_ms), signer))
}

/// Remembers recently accepted (signer, nonce) pairs; see the module doc.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    window_ms: i64,
    capacity: usize,
    signers: HashMap<SignerKey, Signer>,
    /// Every remembered nonce by issued_ms, for expiry and per-signer
    /// eviction of the oldest.
    by_time: BTreeSet<(i64, SignerKey, Nonce)>,
    /// Signers by how many nonces they hold, then by how old their oldest
    /// is: the last is the one that gives up a nonce when the guard is
    /// full (the largest holder, and among equals the one holding the
    /// oldest nonce, so a newcomer is not cut back first).
    by_count: BTreeSet<IndexKey>,
    /// Signers that hold no nonce but a floor, by that floor: the ones a
    /// full table of signers forgets first.
    floors: BTreeSet<(i64, SignerKey)>,
    /// Nonces remembered, over all signers.
    total: usize,
    /// The floor of every signer forgotten whole, shared by all.
    forgotten_floor_ms: Option<i64>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES)
    }
}

impl ReplayGuard {
    /// A guard accepting `issued_ms` within `±window_ms` of now and
    /// remembering at most `capacity` nonces and signers (at least 1).
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms: window_ms.max(0),
            capacity: capacity.max(1),
            signers: HashMap::new(),
            by_time: BTreeSet::new(),
            by_count: BTreeSet::new(),
            floors: BTreeSet::new(),
            total: 0,
            forgotten_floor_ms: None,
        }
    }

    /// How many nonces are remembered now.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many signers the guard keeps a record of (nonces or a floor).
    pub fn signers(&self) -> usize {
        self.signers.len()
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
        let floors = [
            self.forgotten_floor_ms,
            self.signers.get(&signer).and_then(|s| s.floor_ms),
        ];
        let oldest_ms = floors
            .into_iter()
            .flatten()
            .fold(window_start, |oldest, floor| {
                oldest.max(floor.saturating_add(1))
            });
        if issued_ms < oldest_ms {
            return Err(ReplayError::TooOld {
                issued_ms,
                oldest_ms,
            });
        }
        if issued_ms > now_ms.saturating_add(self.window_ms) {
            return Err(ReplayError::FromTheFuture { issued_ms, now_ms });
        }
        let record = self.signers.entry(signer).or_default();
        if record.seen.contains_key(&nonce) {
            return Err(ReplayError::Replayed);
        }
        let before = index_key(signer, record);
        record.seen.insert(nonce, issued_ms);
        record.oldest.insert((issued_ms, nonce));
        let after = index_key(signer, record);
        if before.is_none()
            && let Some(floor) = record.floor_ms
        {
            self.floors.remove(&(floor, signer));
        }
        self.reindex(before, after);
        self.by_time.insert((issued_ms, signer, nonce));
        self.total += 1;
        while self.total > self.capacity {
            // The largest holder gives up its oldest; that may be the new
            // entry itself, which is still safe: the floor rises above it.
            let Some(&(_, _, largest)) = self.by_count.last() else {
                break;
            };
            self.evict_oldest_of(largest);
        }
        while self.signers.len() > self.capacity {
            let Some((floor, forgotten)) = self.floors.pop_first() else {
                break;
            };
            self.signers.remove(&forgotten);
            self.forgotten_floor_ms = Some(self.forgotten_floor_ms.map_or(floor, |f| f.max(floor)));
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

    /// Forgets `signer`'s oldest nonce and raises its floor above it.
    fn evict_oldest_of(&mut self, signer: SignerKey) {
        let Some(record) = self.signers.get(&signer) else {
            return;
        };
        let Some(&(issued_ms, nonce)) = record.oldest.first() else {
            return;
        };
        self.by_time.remove(&(issued_ms, signer, nonce));
        self.forget(signer, nonce, issued_ms);
        let Some(record) = self.signers.get_mut(&signer) else {
            return;
        };
        let floor = record.floor_ms.map_or(issued_ms, |f| f.max(issued_ms));
        record.floor_ms = Some(floor);
        if record.seen.is_empty() {
            self.floors.insert((floor, signer));
        }
    }

    /// Removes one nonce from its signer's record and the counts (not from
    /// `by_time`, which the caller handles).
    fn forget(&mut self, signer: SignerKey, nonce: Nonce, issued_ms: i64) {
        let Some(record) = self.signers.get_mut(&signer) else {
            return;
        };
        let before = index_key(signer, record);
        if record.seen.remove(&nonce).is_none() {
            return;
        }
        record.oldest.remove(&(issued_ms, nonce));
        let after = index_key(signer, record);
        self.reindex(before, after);
        self.total -= 1;
    }

    fn reindex(&mut self, before: Option<IndexKey>, after: Option<IndexKey>) {
        if let Some(k) = before {
            self.by_count.remove(&k);
        }
        if let Some(k) = after {
            self.by_count.insert(k);
        }
    }

    /// Drops entries the window refuses anyway, and signers whose floor the
    /// window has passed.
    fn expire(&mut self, window_start: i64) {
        while let Some(&(issued_ms, signer, nonce)) = self.by_time.first() {
            if issued_ms >= window_start {
                break;
            }
            self.by_time.pop_first();
            self.forget(signer, nonce, issued_ms);
            if let Some(record) = self.signers.get(&signer)
                && record.seen.is_empty()
            {
                match record.floor_ms {
                    Some(floor) if floor >= window_start => {
                        self.floors.insert((floor, signer));
                    }
                    _ => {
                        self.signers.remove(&signer);
                    }
                }
            }
        }
        while let Some(&(floor, signer)) = self.floors.first() {
            if floor >= window_start {
                break;
            }
            self.floors.pop_first();
            self.signers.remove(&signer);
        }
        if self.forgotten_floor_ms.is_some_and(|f| f < window_start) {
            self.forgotten_floor_ms = None;
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
        // ...and so is anything new from A before its floor, though in
        // window.
        assert!(matches!(
            g.check(A, nonce(7), NOW - 10, NOW),
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
        // Another signer keeps its whole window.
        assert_eq!(g.check(B, nonce(7), NOW - 10, NOW), Ok(()));
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

    /// The attack of a host-wide guard: one signer floods it with calls
    /// dated at the far edge of the window. It narrows only its own window.
    #[test]
    fn a_flood_dated_in_the_future_locks_out_nobody_else() {
        let mut g = ReplayGuard::new(DEFAULT_WINDOW_MS, 1000);
        g.check(B, nonce(1), NOW, NOW).unwrap();
        for i in 0..10_000u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            let _ = g.check(A, n, NOW + DEFAULT_WINDOW_MS, NOW);
        }
        assert_eq!(g.len(), 1000);
        // B, and a signer never seen, still get the whole window, and B's
        // nonce is still remembered.
        assert_eq!(g.check(B, nonce(2), NOW, NOW), Ok(()));
        assert_eq!(g.check(B, nonce(1), NOW, NOW), Err(ReplayError::Replayed));
        assert_eq!(g.check([3; 32], nonce(1), NOW - 1000, NOW), Ok(()));
        // The flooder itself is refused below its floor.
        assert!(matches!(
            g.check(A, nonce(9), NOW, NOW),
            Err(ReplayError::TooOld { .. })
        ));
    }

    #[test]
    fn many_signers_stay_bounded_and_still_refuse_replays() {
        let mut g = ReplayGuard::new(60_000, 64);
        let key = |i: u32| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k
        };
        for i in 0..1000u32 {
            g.check(key(i), nonce(1), NOW + i64::from(i), NOW).unwrap();
            g.check(key(i), nonce(2), NOW + i64::from(i), NOW).unwrap();
            assert!(
                g.len() <= 64 && g.signers() <= 64,
                "{} {}",
                g.len(),
                g.signers()
            );
        }
        for i in 0..1000u32 {
            for n in [1, 2] {
                assert!(g.check(key(i), nonce(n), NOW + i64::from(i), NOW).is_err());
            }
        }
    }

    /// A seeded random walk over signers, nonces and clocks: a (signer,
    /// nonce) accepted once is never accepted again, and memory stays
    /// within the capacity.
    #[test]
    fn random_walk_never_accepts_a_replay() {
        let seed = std::env::var("DEM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!(
            "random_walk_never_accepts_a_replay: seed {seed} (replay with DEM_TEST_SEED={seed})"
        );
        let mut x = seed | 1;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let window = 1000;
        let mut g = ReplayGuard::new(window, 32);
        let mut accepted = std::collections::HashSet::new();
        let mut now = NOW;
        for _ in 0..20_000 {
            now += next(40) as i64;
            let signer = [next(6) as u8; 32];
            let n = nonce(next(200) as u8);
            let issued = now - window + next(2 * window as u64 + 1) as i64;
            if g.check(signer, n, issued, now).is_ok() {
                // A replay carries the very envelope: the same signer,
                // nonce and issued time. None is ever accepted twice.
                assert!(
                    accepted.insert((signer, n, issued)),
                    "seed {seed}: a replay of {n:?} issued at {issued} was accepted"
                );
            }
            assert!(g.len() <= 32 && g.signers() <= 32, "seed {seed}");
        }
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
