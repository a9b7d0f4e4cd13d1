//! Which mailboxes are awake on this host, how recently each was used, and
//! which of them are idle: what the runtime's instance slots need to make
//! room by hibernating the least recently used idle mailbox.
//!
//! An actor enters when it gets an instance and leaves when it drops it.
//! Use is counted with a host-wide tick rather than a clock, so "least
//! recently used" is exact and costs one atomic add per call. The choice
//! scans the awake mailboxes, which are at most the pool's slots (a few
//! thousand), and happens only when the pool is full.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use dem_proto::ids::MailboxId;
use dem_runtime::Evictor;

/// One awake mailbox, as its actor reports it.
#[derive(Debug, Default)]
pub(crate) struct Resident {
    last_used: AtomicU64,
    /// Waiting for its next command, nothing in hand.
    idle: AtomicBool,
    /// Asked to hibernate already; not asked twice.
    asked: AtomicBool,
    /// Wakes the actor when it is asked to hibernate.
    evict: Notify,
}

impl Resident {
    /// Resolves once the mailbox is asked to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }

    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }
}

/// How many recent wake times are kept for percentiles.
const WAKE_TIMES_KEPT: usize = 1 << 16;

/// The awake mailboxes of one host.
#[derive(Debug, Default)]
pub(crate) struct Residents {
    tick: AtomicU64,
    awake: Mutex<HashMap<MailboxId, Arc<Resident>>>,
    /// The most recent wakes' durations, in µs, newest last.
    wake_us: Mutex<VecDeque<u32>>,
}

impl Residents {
    /// Records that `id` is awake, as just used.
    pub(crate) fn enter(&self, id: &MailboxId) -> Arc<Resident> {
        let resident = Arc::new(Resident::default());
        self.touch(&resident);
        self.lock().insert(id.clone(), resident.clone());
        resident
    }

    /// Records that `id` let its instance go. Only its own entry goes: a
    /// newer one (after a restart of the actor) stays.
    pub(crate) fn leave(&self, id: &MailboxId, resident: &Arc<Resident>) {
        let mut awake = self.lock();
        if awake.get(id).is_some_and(|r| Arc::ptr_eq(r, resident)) {
            awake.remove(id);
        }
    }

    /// Marks a use: the mailbox moves to the back of the eviction order.
    pub(crate) fn touch(&self, resident: &Resident) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        resident.last_used.store(tick, Ordering::Relaxed);
        resident.asked.store(false, Ordering::Relaxed);
    }

    /// How many mailboxes are awake.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Records how long a wake took (instance slot, load, restore).
    pub(crate) fn record_wake(&self, took: Duration) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let mut times = self.wake_us.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() == WAKE_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back(us);
    }

    /// The recent wakes' durations, oldest first.
    pub(crate) fn wake_times(&self) -> Vec<Duration> {
        let times = self.wake_us.lock().unwrap_or_else(|p| p.into_inner());
        times
            .iter()
            .map(|&us| Duration::from_micros(us.into()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, Arc<Resident>>> {
        self.awake.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Evictor for Residents {
    fn evict_one(&self) -> bool {
        let awake = self.lock();
        let oldest = awake
            .values()
            .filter(|r| r.idle.load(Ordering::Acquire) && !r.asked.load(Ordering::Relaxed))
            .min_by_key(|r| r.last_used.load(Ordering::Relaxed));
        match oldest {
            Some(r) => {
                r.asked.store(true, Ordering::Relaxed);
                r.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> MailboxId {
        MailboxId::new(format!("m{n}")).unwrap()
    }

    #[test]
    fn the_least_recently_used_idle_mailbox_goes_first_and_only_once() {
        let residents = Residents::default();
        let a = residents.enter(&id(1));
        let b = residents.enter(&id(2));
        let c = residents.enter(&id(3));
        for r in [&a, &b, &c] {
            r.set_idle(true);
        }
        residents.touch(&a);
        // b is now the oldest.
        assert!(residents.evict_one());
        assert!(b.asked.load(Ordering::Relaxed));
        assert!(!a.asked.load(Ordering::Relaxed));
        // Then c, then a; then nobody is left to ask.
        assert!(residents.evict_one());
        assert!(c.asked.load(Ordering::Relaxed));
        assert!(residents.evict_one());
        assert!(!residents.evict_one());
    }

    #[test]
    fn a_busy_mailbox_is_never_asked() {
        let residents = Residents::default();
        let busy = residents.enter(&id(1));
        busy.set_idle(false);
        assert!(!residents.evict_one());
        busy.set_idle(true);
        assert!(residents.evict_one());
    }

    #[test]
    fn leaving_removes_only_ones_own_entry() {
        let residents = Residents::default();
        let old = residents.enter(&id(1));
        let new = residents.enter(&id(1));
        residents.leave(&id(1), &old);
        assert_eq!(residents.len(), 1);
        residents.leave(&id(1), &new);
        assert_eq!(residents.len(), 0);
    }
}
