//! The wasm side of a host: one wasmtime `Engine` per process with the
//! pooling allocator, the content-addressed `CodeStore`, an `InstancePre`
//! per code hash, and the limits every guest call runs under.
//!
//! `MailboxInstance` (instance.rs) is one live mailbox component; `filter.rs`
//! runs filter plugins, each in a Store of its own. The mailbox actor
//! (`dem_node::mailbox`) drives both; nothing here knows about durability.
//! The types `bindgen!` generates stay private to this crate: calls take
//! and return the plain mirrors of `dem_proto::mail`, converted at the
//! call (`convert.rs`).

mod bindings;
pub mod code_store;
mod convert;
pub mod filter;
pub mod guest_state;
pub mod guest_stats;
pub mod instance;
pub mod slots;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
};

use bindings::{FilterPre, MailboxPre};
use code_store::{CodeError, CodeStore};
use dem_proto::ids::CodeHash;
use guest_state::GuestState;
pub use guest_stats::GuestStats;
pub use instance::{CallError, MailboxInstance};
pub use slots::{Evictor, InstanceSlots, Slot, SlotStats};

/// Limits and budgets of guest execution. All are per call or per Store.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Fuel (≈ wasm instructions) one mailbox call may burn before it traps.
    pub mailbox_fuel_per_call: u64,
    /// Linear memory one mailbox instance may grow to.
    pub mailbox_memory_bytes_max: usize,
    /// Fuel one filter call may burn; filters are small and deterministic.
    pub plugin_fuel_per_call: u64,
    /// Linear memory one filter instance may grow to.
    pub plugin_memory_bytes_max: usize,
    /// Component instances alive at once (awake mailboxes + live filters):
    /// the pool's slots. `None` sizes the pool from the host's memory
    /// ([`slots::slots_for_memory`]).
    pub instance_slots: Option<u32>,
    /// Longest a caller waits for a free slot, while idle mailboxes are
    /// hibernated to make room, before it is told "busy, retry".
    pub slot_wait_ms: u64,
    /// A running guest yields to tokio after burning this much fuel, so one
    /// busy guest cannot starve the other mailboxes of a worker thread.
    pub fuel_yield_interval: u64,
}

/// Core instances, memories and tables the pool holds per slot: a mailbox
/// component (guest, WASI adapter, shims) needs at most this many of each.
const CORE_INSTANCES_PER_SLOT: u32 = 8;
const MEMORIES_PER_SLOT: u32 = 2;
const TABLES_PER_SLOT: u32 = 4;

impl RuntimeConfig {
    /// The number of instance slots this configuration gives the pool.
    pub fn slots(&self) -> u32 {
        match self.instance_slots {
            Some(n) => n.clamp(1, slots::SLOTS_MAX),
            None => {
                slots::host_memory_bytes().map_or(slots::SLOTS_MIN * 8, slots::slots_for_memory)
            }
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            mailbox_fuel_per_call: 20_000_000_000,
            mailbox_memory_bytes_max: 2 << 30,
            plugin_fuel_per_call: 200_000_000,
            plugin_memory_bytes_max: 64 << 20,
            instance_slots: None,
            slot_wait_ms: 10_000,
            fuel_yield_interval: 20_000_000,
        }
    }
}

/// Errors of creating the runtime or instantiating a guest.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine or linker could not be set up.
    #[error("wasm engine setup failed: {0:#}")]
    Engine(#[source] wasmtime::Error),
    /// The code could not be found, verified or compiled.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// The component does not fit the world it is used as (wrong imports or
    /// exports), or instantiation failed (start trap).
    #[error("cannot instantiate {what} {code}: {reason}")]
    Instantiate {
        what: &'static str,
        code: String,
        reason: String,
    },
    /// Every instance slot stayed busy inside a call for the whole wait
    /// bound: nothing was done, and the caller should retry.
    #[error(
        "host busy, retry: all {slots} instance slots stayed in use for {waited_ms} ms, so no {what} could wake"
    )]
    Busy {
        what: &'static str,
        slots: u32,
        waited_ms: u64,
    },
}

impl RuntimeError {
    /// Whether the same call may succeed if simply tried again later.
    pub fn is_busy(&self) -> bool {
        matches!(self, RuntimeError::Busy { .. })
    }
}

/// The process-wide wasm runtime.
pub struct Runtime {
    engine: Engine,
    code: CodeStore,
    mailbox_linker: Linker<GuestState>,
    filter_linker: Linker<GuestState>,
    /// Type-checked, import-resolved components: instantiating from these is
    /// what makes a mailbox cheap to wake.
    mailbox_pres: Pres<MailboxPre<GuestState>>,
    filter_pres: Pres<FilterPre<GuestState>>,
    slots: InstanceSlots,
    config: RuntimeConfig,
    /// Traps and fuel of every instance, for the host's metrics.
    stats: Arc<GuestStats>,
}

/// Linked components by code hash, built once each however many callers
/// ask at the same time: the first builds while the others wait for it.
struct Pres<P> {
    ready: Mutex<HashMap<CodeHash, P>>,
    /// One lock per hash being built, so that distinct codes build in
    /// parallel and equal ones once.
    building: Mutex<HashMap<CodeHash, Arc<Mutex<()>>>>,
}

impl<P: Clone> Pres<P> {
    fn new() -> Self {
        Self {
            ready: Mutex::default(),
            building: Mutex::default(),
        }
    }

    fn get_or_build<E>(
        &self,
        code: &CodeHash,
        build: impl FnOnce() -> Result<P, E>,
    ) -> Result<P, E> {
        if let Some(pre) = lock(&self.ready).get(code) {
            return Ok(pre.clone());
        }
        let gate = lock(&self.building).entry(*code).or_default().clone();
        let _building = lock(&gate);
        if let Some(pre) = lock(&self.ready).get(code) {
            return Ok(pre.clone());
        }
        let built = build();
        if let Ok(pre) = &built {
            lock(&self.ready).insert(*code, pre.clone());
        }
        lock(&self.building).remove(code);
        built
    }
}

impl Runtime {
    pub fn new(code_dir: &Path, config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let slots = config.slots();
        let engine = Self::engine(&config, slots)?;
        let code = CodeStore::open(code_dir, engine.clone())?;
        let setup = RuntimeError::Engine;
        let mut mailbox_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut mailbox_linker).map_err(setup)?;
        bindings::Mailbox::add_to_linker::<_, HasSelf<GuestState>>(&mut mailbox_linker, |s| s)
            .map_err(setup)?;
        let mut filter_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut filter_linker).map_err(setup)?;
        bindings::Filter::add_to_linker::<_, HasSelf<GuestState>>(&mut filter_linker, |s| s)
            .map_err(setup)?;
        Ok(Arc::new(Self {
            engine,
            code,
            mailbox_linker,
            filter_linker,
            mailbox_pres: Pres::new(),
            filter_pres: Pres::new(),
            slots: InstanceSlots::new(slots, std::time::Duration::from_millis(config.slot_wait_ms)),
            config,
            stats: Arc::default(),
        }))
    }

    /// The one engine configuration of the process: fuel metering and the
    /// pooling allocator with room for `slots` instances. The totals of
    /// core instances, memories and tables are what the largest of our
    /// components (the mailbox) uses per instance, measured by
    /// `every_slot_can_hold_a_mailbox` below, with room to spare; the slot
    /// count is what callers are held to.
    fn engine(config: &RuntimeConfig, slots: u32) -> Result<Engine, RuntimeError> {
        let n = slots;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_SLOT))
            .total_memories(n.saturating_mul(MEMORIES_PER_SLOT))
            .total_tables(n.saturating_mul(TABLES_PER_SLOT))
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(
                config
                    .mailbox_memory_bytes_max
                    .max(config.plugin_memory_bytes_max),
            );
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&cfg).map_err(RuntimeError::Engine)
    }

    pub fn engine_ref(&self) -> &Engine {
        &self.engine
    }

    pub fn code(&self) -> &CodeStore {
        &self.code
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Traps and fuel used so far, by every instance.
    pub fn guest_stats(&self) -> &GuestStats {
        &self.stats
    }

    /// The instance slots every instantiation takes one of.
    pub fn slots(&self) -> &InstanceSlots {
        &self.slots
    }

    fn store(&self, label: Arc<str>, memory_bytes_max: usize) -> Store<GuestState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes_max)
            .instances(64)
            .tables(64)
            .memories(8)
            .build();
        let mut store = Store::new(&self.engine, GuestState::new(label, limits));
        store.limiter(|s| &mut s.limits);
        // Only fails when fuel is disabled or the interval is zero.
        let _ = store.fuel_async_yield_interval(Some(self.config.fuel_yield_interval.max(1)));
        store
    }

    /// Compiles (or loads the cached artifact of) a mailbox component and
    /// links it, so the first mailbox of that code to wake or arrive here
    /// does not wait for it. Blocks for as long as compiling takes.
    pub fn prepare_mailbox(&self, code: &CodeHash) -> Result<(), RuntimeError> {
        self.mailbox_pre(code).map(drop)
    }

    /// As [`Runtime::prepare_mailbox`], for a filter component.
    pub fn prepare_filter(&self, code: &CodeHash) -> Result<(), RuntimeError> {
        self.filter_pre(code).map(drop)
    }

    fn mailbox_pre(&self, code: &CodeHash) -> Result<MailboxPre<GuestState>, RuntimeError> {
        self.mailbox_pres.get_or_build(code, || {
            let component = self.code.component(code)?;
            let bad = |e: wasmtime::Error| RuntimeError::Instantiate {
                what: "mailbox",
                code: code.short(),
                reason: format!("{e:#}"),
            };
            let pre = self
                .mailbox_linker
                .instantiate_pre(&component)
                .map_err(bad)?;
            MailboxPre::new(pre).map_err(bad)
        })
    }

    fn filter_pre(&self, code: &CodeHash) -> Result<FilterPre<GuestState>, RuntimeError> {
        self.filter_pres.get_or_build(code, || {
            let component = self.code.component(code)?;
            let bad = |e: wasmtime::Error| RuntimeError::Instantiate {
                what: "filter",
                code: code.short(),
                reason: format!("{e:#}"),
            };
            let pre = self
                .filter_linker
                .instantiate_pre(&component)
                .map_err(bad)?;
            FilterPre::new(pre).map_err(bad)
        })
    }

    /// A fresh, empty mailbox instance of `code`.
    pub async fn instantiate_mailbox(
        &self,
        code: &CodeHash,
        label: Arc<str>,
    ) -> Result<MailboxInstance, RuntimeError> {
        let pre = self.mailbox_pre(code)?;
        let slot = self.slots.acquire("mailbox").await?;
        let mut store = self.store(label, self.config.mailbox_memory_bytes_max);
        // Start functions burn fuel too.
        let _ = store.set_fuel(self.config.mailbox_fuel_per_call);
        let guest = pre.instantiate_async(&mut store).await.map_err(|e| {
            self.stats.trapped();
            RuntimeError::Instantiate {
                what: "mailbox",
                code: code.short(),
                reason: format!("{e:#}"),
            }
        })?;
        Ok(MailboxInstance::new(
            store,
            guest,
            self.config.mailbox_fuel_per_call,
            slot,
            self.stats.clone(),
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_builtin as builtin;

    /// The pool's totals of core instances, memories and tables per slot
    /// must cover what our components use, or wasmtime would refuse an
    /// instantiation that the slots allowed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_slot_can_hold_a_mailbox_or_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig {
            instance_slots: Some(12),
            slot_wait_ms: 50,
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(dir.path(), config).unwrap();
        let mailbox = runtime.code().insert(builtin::MAILBOX).unwrap();
        let mut live = Vec::new();
        for i in 0..6 {
            let instance = runtime
                .instantiate_mailbox(&mailbox, format!("m{i}").into())
                .await
                .unwrap();
            live.push(instance);
        }
        let mut filters = Vec::new();
        for (i, (_, bytes)) in builtin::PLUGINS.iter().cycle().take(6).enumerate() {
            let code = runtime.code().insert(bytes).unwrap();
            let filter = runtime
                .instantiate_filter(&code, &format!("f{i}"))
                .await
                .unwrap();
            filters.push(filter);
        }
        assert_eq!(runtime.slots().stats().in_use, 12);
        // With no evictor, the 13th waits out its bound and is told busy.
        let err = runtime
            .instantiate_mailbox(&mailbox, "one too many".into())
            .await
            .err()
            .unwrap();
        assert!(err.is_busy(), "{err}");
        drop(live.pop());
        runtime
            .instantiate_mailbox(&mailbox, "after one left".into())
            .await
            .unwrap();
    }

    #[test]
    fn a_configured_slot_count_wins_over_memory() {
        let config = RuntimeConfig {
            instance_slots: Some(64),
            ..RuntimeConfig::default()
        };
        assert_eq!(config.slots(), 64);
        assert!(RuntimeConfig::default().slots() >= slots::SLOTS_MIN);
    }
}
