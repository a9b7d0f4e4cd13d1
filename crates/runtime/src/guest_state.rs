//! The data every wasmtime `Store` carries: a locked-down WASI context, the
//! memory limiter and the label that the guest's log lines are tagged with.
//!
//! Guests built by ordinary Rust, Python or JS toolchains import the standard
//! WASI interfaces even when they never touch a file. Rather than refuse
//! them, every guest gets a context with no files, no network, no
//! environment, no arguments, a closed stdin, discarded stdout/stderr, a
//! clock frozen at the Unix epoch and a fixed-seed random source: nothing
//! that could leak host state or make a filter nondeterministic.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::LogLevel;
use super::bindings::mailbox::dem::mail::log;

/// Longest log line a guest may emit; longer ones are cut.
pub const GUEST_LOG_LINE_BYTES_MAX: usize = 4096;

/// Per-store host data.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Caps the guest's linear memory, tables and instances.
    pub(crate) limits: StoreLimits,
    /// Who is talking in the guest's log lines: mailbox id or plugin name.
    label: Arc<str>,
}

impl GuestState {
    pub fn new(label: Arc<str>, limits: StoreLimits) -> Self {
        Self {
            wasi: locked_down_wasi(),
            table: ResourceTable::new(),
            limits,
            label,
        }
    }
}

/// A WASI context that grants nothing and is deterministic.
fn locked_down_wasi() -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(SplitMix64(0x9e37_79b9_7f4a_7c15))
        .insecure_random(SplitMix64(0x2545_f491_4f6c_dd1d))
        .insecure_random_seed(0);
    builder.build()
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) {
        let mut message = message;
        if message.len() > GUEST_LOG_LINE_BYTES_MAX {
            let mut cut = GUEST_LOG_LINE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let guest = &*self.label;
        match level {
            LogLevel::Trace => tracing::trace!(guest, "{message}"),
            LogLevel::Debug => tracing::debug!(guest, "{message}"),
            LogLevel::Info => tracing::info!(guest, "{message}"),
            LogLevel::Warn => tracing::warn!(guest, "{message}"),
            LogLevel::Error => tracing::error!(guest, "{message}"),
        }
    }
}

impl super::bindings::mailbox::dem::mail::types::Host for GuestState {}

/// Wall and monotonic clock that always reads zero.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A fixed-seed generator: guests get bytes, never entropy from the host.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
