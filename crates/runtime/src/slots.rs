//! Instance slots: how many component instances (awake mailboxes and live
//! filters) may exist at once, and what a caller does when none is free.
//!
//! wasmtime's pooling allocator reserves a fixed number of instance slots
//! up front and refuses the next instantiation outright ("maximum
//! concurrent limit reached"). A host holds far more mailboxes than that,
//! so a full pool must be the normal case, not an error: every
//! instantiation first takes a [`Slot`] from [`InstanceSlots`], which never
//! hands out more than the pool holds. When none is free, the caller asks
//! the [`Evictor`] (the mailbox registry, which knows which mailboxes are
//! idle and when each was last used) to hibernate the least recently used
//! idle mailbox, and waits, within a bound, for its slot. Only when every
//! slot stays busy inside a call for the whole bound does the caller get
//! [`RuntimeError::Busy`], which the wire carries as "busy, retry".

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::RuntimeError;

/// Bytes of host memory one slot is budgeted for when the pool is sized
/// from the machine: a woken mailbox of some thousands of mails plus its
/// share of the compiled code, measured in `dem bench host`.
pub const SLOT_MEMORY_BYTES: u64 = 16 << 20;
/// Fewest slots a host runs with, whatever its memory.
pub const SLOTS_MIN: u32 = 16;
/// Most slots a host runs with. wasmtime reserves address space for every
/// slot's memories (each up to the mailbox memory cap plus guards); this
/// keeps the reservation well inside a 47-bit address space.
pub const SLOTS_MAX: u32 = 4096;
/// How often a waiting caller asks for another eviction while no slot has
/// come free: a mailbox busy in a call when first asked may be idle now.
const EVICT_RETRY: Duration = Duration::from_millis(20);

/// Frees slots on demand. The mailbox registry implements it: it asks the
/// least recently used idle mailbox to hibernate.
pub trait Evictor: Send + Sync {
    /// Asks one idle holder of a slot to let it go; `false` if none is idle.
    fn evict_one(&self) -> bool;
}

/// The slots of one runtime.
pub struct InstanceSlots {
    permits: Arc<Semaphore>,
    total: u32,
    wait: Duration,
    evictor: OnceLock<Weak<dyn Evictor>>,
    evictions: AtomicU64,
    busy_refusals: AtomicU64,
    /// Callers waiting for a slot now: an idle mailbox that sees any
    /// hibernates at once instead of waiting out its idle time.
    waiting: AtomicUsize,
}

/// One taken slot; dropping it frees the slot. Instances own theirs, so a
/// slot is free exactly when its instance is gone.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Counters of the slot pool, for status and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub total: u32,
    pub in_use: u32,
    /// Evictions asked for because a caller found the pool full.
    pub evictions: u64,
    /// Callers that waited the whole bound and were told "busy".
    pub busy_refusals: u64,
}

impl InstanceSlots {
    pub fn new(total: u32, wait: Duration) -> Self {
        let total = total.max(1);
        Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            wait,
            evictor: OnceLock::new(),
            evictions: AtomicU64::new(0),
            busy_refusals: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Registers who frees slots. Only the first registration counts: one
    /// runtime serves one registry.
    pub fn set_evictor(&self, evictor: Weak<dyn Evictor>) {
        let _ = self.evictor.set(evictor);
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn stats(&self) -> SlotStats {
        SlotStats {
            total: self.total,
            in_use: self.total - self.permits.available_permits() as u32,
            evictions: self.evictions.load(Ordering::Relaxed),
            busy_refusals: self.busy_refusals.load(Ordering::Relaxed),
        }
    }

    /// Whether a caller would have to wait for a slot now.
    pub fn is_full(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// Whether callers are waiting for a slot now.
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Takes a slot, evicting idle mailboxes and waiting up to the bound
    /// when none is free.
    pub async fn acquire(&self, what: &'static str) -> Result<Slot, RuntimeError> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let started = Instant::now();
        let deadline = started + self.wait;
        loop {
            self.ask_eviction();
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let step = (deadline - now).min(EVICT_RETRY);
            let acquired =
                tokio::time::timeout(step, Arc::clone(&self.permits).acquire_owned()).await;
            if let Ok(Ok(permit)) = acquired {
                return Ok(Slot { _permit: permit });
            }
        }
        self.busy_refusals.fetch_add(1, Ordering::Relaxed);
        Err(RuntimeError::Busy {
            what,
            slots: self.total,
            waited_ms: started.elapsed().as_millis() as u64,
        })
    }

    fn ask_eviction(&self) {
        let Some(evictor) = self.evictor.get().and_then(Weak::upgrade) else {
            return;
        };
        if evictor.evict_one() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts a caller out of the waiters however it leaves (slot, busy, or
/// its future dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many slots a host with `memory_bytes` of RAM gets when the operator
/// names no number: a quarter of the memory at [`SLOT_MEMORY_BYTES`] each,
/// within [`SLOTS_MIN`]..=[`SLOTS_MAX`]. The rest stays for the page cache,
/// the store and hibernated mailboxes.
pub fn slots_for_memory(memory_bytes: u64) -> u32 {
    let slots = memory_bytes / 4 / SLOT_MEMORY_BYTES;
    slots.clamp(SLOTS_MIN as u64, SLOTS_MAX as u64) as u32
}

/// This machine's memory, from `/proc/meminfo`; `None` where that is not
/// readable (not Linux), and the caller falls back to a fixed size.
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn slots_follow_memory_within_bounds() {
        assert_eq!(slots_for_memory(0), SLOTS_MIN);
        assert_eq!(slots_for_memory(1 << 30), SLOTS_MIN);
        assert_eq!(slots_for_memory(16 << 30), 256);
        assert_eq!(slots_for_memory(u64::MAX), SLOTS_MAX);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        if cfg!(target_os = "linux") {
            assert!(host_memory_bytes().is_some_and(|m| m > 64 << 20));
        }
    }

    /// Frees a slot that the test holds, as a hibernating mailbox would.
    struct Holder {
        held: Mutex<Vec<Slot>>,
        asked: AtomicUsize,
    }

    impl Evictor for Holder {
        fn evict_one(&self) -> bool {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.held.lock().unwrap().pop().is_some()
        }
    }

    #[tokio::test]
    async fn a_full_pool_evicts_an_idle_holder_instead_of_failing() {
        let slots = InstanceSlots::new(2, Duration::from_secs(5));
        let holder = Arc::new(Holder {
            held: Mutex::new(vec![
                slots.acquire("mailbox").await.unwrap(),
                slots.acquire("mailbox").await.unwrap(),
            ]),
            asked: AtomicUsize::new(0),
        });
        let weak: Weak<dyn Evictor> = Arc::downgrade(&(holder.clone() as Arc<dyn Evictor>));
        slots.set_evictor(weak);
        assert!(slots.is_full());
        let third = slots.acquire("mailbox").await.unwrap();
        assert_eq!(holder.asked.load(Ordering::Relaxed), 1);
        assert_eq!(slots.stats().in_use, 2);
        assert_eq!(slots.stats().evictions, 1);
        drop(third);
        assert_eq!(slots.stats().in_use, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_only_after_the_bound_and_then_retryable() {
        let slots = InstanceSlots::new(1, Duration::from_millis(300));
        let busy = slots.acquire("mailbox").await.unwrap();
        let started = tokio::time::Instant::now();
        let err = slots.acquire("mailbox").await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(err, RuntimeError::Busy { slots: 1, .. }), "{err}");
        assert!(err.to_string().contains("busy"), "{err}");
        assert_eq!(slots.stats().busy_refusals, 1);
        // A slot freed while a caller waits goes to that caller.
        let waiter = tokio::spawn(async move {
            let slot = slots.acquire("mailbox").await;
            (slot.is_ok(), slots)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(busy);
        let (ok, _) = waiter.await.unwrap();
        assert!(ok);
    }
}
