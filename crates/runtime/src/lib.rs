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
pub mod instance;

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
pub use instance::{CallError, MailboxInstance};

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
    /// Component instances alive at once (awake mailboxes + running filters).
    pub instances_max: u32,
    /// A running guest yields to tokio after burning this much fuel, so one
    /// busy guest cannot starve the other mailboxes of a worker thread.
    pub fuel_yield_interval: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            mailbox_fuel_per_call: 20_000_000_000,
            mailbox_memory_bytes_max: 2 << 30,
            plugin_fuel_per_call: 200_000_000,
            plugin_memory_bytes_max: 64 << 20,
            instances_max: 512,
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
    /// exports), or instantiation failed (no free instance slot, start trap).
    #[error("cannot instantiate {what} {code}: {reason}")]
    Instantiate {
        what: &'static str,
        code: String,
        reason: String,
    },
}

/// The process-wide wasm runtime.
pub struct Runtime {
    engine: Engine,
    code: CodeStore,
    mailbox_linker: Linker<GuestState>,
    filter_linker: Linker<GuestState>,
    /// Type-checked, import-resolved components: instantiating from these is
    /// what makes a mailbox cheap to wake.
    mailbox_pres: Mutex<HashMap<CodeHash, MailboxPre<GuestState>>>,
    filter_pres: Mutex<HashMap<CodeHash, FilterPre<GuestState>>>,
    config: RuntimeConfig,
}

impl Runtime {
    pub fn new(code_dir: &Path, config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let engine = Self::engine(&config)?;
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
            mailbox_pres: Mutex::default(),
            filter_pres: Mutex::default(),
            config,
        }))
    }

    /// The one engine configuration of the process: fuel metering and the
    /// pooling allocator sized by `config`.
    fn engine(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
        let n = config.instances_max;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
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
        if let Some(pre) = lock(&self.mailbox_pres).get(code) {
            return Ok(pre.clone());
        }
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
        let pre = MailboxPre::new(pre).map_err(bad)?;
        lock(&self.mailbox_pres).insert(*code, pre.clone());
        Ok(pre)
    }

    fn filter_pre(&self, code: &CodeHash) -> Result<FilterPre<GuestState>, RuntimeError> {
        if let Some(pre) = lock(&self.filter_pres).get(code) {
            return Ok(pre.clone());
        }
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
        let pre = FilterPre::new(pre).map_err(bad)?;
        lock(&self.filter_pres).insert(*code, pre.clone());
        Ok(pre)
    }

    /// A fresh, empty mailbox instance of `code`.
    pub async fn instantiate_mailbox(
        &self,
        code: &CodeHash,
        label: Arc<str>,
    ) -> Result<MailboxInstance, RuntimeError> {
        let pre = self.mailbox_pre(code)?;
        let mut store = self.store(label, self.config.mailbox_memory_bytes_max);
        // Start functions burn fuel too.
        let _ = store.set_fuel(self.config.mailbox_fuel_per_call);
        let guest =
            pre.instantiate_async(&mut store)
                .await
                .map_err(|e| RuntimeError::Instantiate {
                    what: "mailbox",
                    code: code.short(),
                    reason: format!("{e:#}"),
                })?;
        Ok(MailboxInstance::new(
            store,
            guest,
            self.config.mailbox_fuel_per_call,
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
