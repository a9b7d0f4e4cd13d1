//! The hybrid logical clock that stamps every mutation.
//!
//! The guest never reads a clock: the host passes the time in. An HLC stamp
//! is the physical time in milliseconds shifted left 16 bits plus a counter,
//! so stamps from one host only grow even if the wall clock steps back, and
//! stamps from different hosts still order roughly by real time. Replicas
//! settle concurrent flag and folder changes by (hlc, replica).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dem_proto::mail::OpContext;

/// A host's clock. Shared by all its mailboxes.
#[derive(Debug)]
pub struct HybridClock {
    last: AtomicU64,
    replica: u64,
}

impl HybridClock {
    pub fn new(replica: u64) -> Self {
        Self {
            last: AtomicU64::new(0),
            replica,
        }
    }

    /// Wall-clock milliseconds since the Unix epoch, from the one place
    /// a DEM process reads the wall clock (`dem_client::now_ms`).
    pub fn wall_ms() -> i64 {
        dem_client::now_ms()
    }

    /// The next stamp: strictly greater than every stamp before it.
    pub fn tick(&self, now_ms: i64) -> u64 {
        let physical = (now_ms.max(0) as u64) << 16;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves the clock past a stamp seen from elsewhere (a replica's op).
    pub fn observe(&self, stamp: u64) {
        self.last.fetch_max(stamp, Ordering::Relaxed);
    }

    /// The context for one mutation happening now.
    pub fn context(&self) -> OpContext {
        let now_ms = Self::wall_ms();
        OpContext {
            now_ms,
            hlc: self.tick(now_ms),
            replica: self.replica,
        }
    }

    pub fn replica(&self) -> u64 {
        self.replica
    }
}

/// Milliseconds of a monotonic clock since this process first asked: the
/// time the sans-IO decisions that measure grace periods take (a wall
/// clock that jumps forward must not make a copy look stale early).
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow_even_when_the_wall_clock_steps_back() {
        let clock = HybridClock::new(7);
        let a = clock.tick(1_000);
        let b = clock.tick(1_000);
        let c = clock.tick(500);
        assert!(a < b && b < c);
        assert_eq!(a >> 16, 1_000);
        clock.observe(5_000 << 16);
        assert!(clock.tick(1_000) > 5_000 << 16);
    }
}
