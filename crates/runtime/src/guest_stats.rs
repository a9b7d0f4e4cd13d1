//! What guests cost and how often they failed, for the host's `/metrics`:
//! traps (a dead instance each, rebuilt from durable state) and the fuel
//! burned, across every mailbox and filter instance of the runtime.
//!
//! Plain atomics, added to as calls end and read whenever the host asks:
//! the runtime knows no metrics format, and counting costs a relaxed add
//! per call, nothing per instruction.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wasmtime::Store;

use super::guest_state::GuestState;

/// The runtime's totals since it started.
#[derive(Debug, Default)]
pub struct GuestStats {
    traps: AtomicU64,
    fuel_used: AtomicU64,
}

impl GuestStats {
    /// Guest calls (and instantiations) that trapped.
    pub fn traps(&self) -> u64 {
        self.traps.load(Relaxed)
    }

    /// Fuel (≈ wasm instructions) guests burned.
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used.load(Relaxed)
    }

    pub(crate) fn trapped(&self) {
        self.traps.fetch_add(1, Relaxed);
    }

    /// Counts what `store` burned of its `budget` and gives it a fresh
    /// one: every refuel goes through here, so no burned fuel is lost and
    /// none counted twice.
    pub(crate) fn refuel(&self, store: &mut Store<GuestState>, budget: u64) {
        // `get_fuel` fails only with metering off, which the engine never is.
        let left = store.get_fuel().unwrap_or(budget);
        self.fuel_used
            .fetch_add(budget.saturating_sub(left), Relaxed);
        let _ = store.set_fuel(budget);
    }
}
