//! Runs filter plugins on the delivery path, each in a Store of its own
//! with its own fuel and memory limits.
//!
//! A mailbox's actor keeps one `FilterInstance` per installed plugin while
//! the mailbox is awake, so a delivery does not pay for instantiating every
//! plugin; each call gets a fresh fuel budget. A filter that traps, runs out
//! of fuel or memory, or cannot even be instantiated is skipped and logged:
//! the mail is still delivered, and the trapped instance is thrown away.
//! The one exception is a full instance pool ([`RuntimeError::Busy`]):
//! that says nothing about the filter, so the caller refuses the delivery
//! retryably rather than deliver unfiltered.
//! Filters only ever change where a mail is filed or how it is flagged, and
//! a broken one must never cost the user a mail.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::Filter;
use super::convert::lend;
use super::guest_state::GuestState;
use super::{Runtime, RuntimeError};
use dem_proto::ids::CodeHash;
use dem_proto::mail::{MailView, Verdict};

/// Why one filter produced no verdict.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The filter's code could not be loaded or instantiated.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The filter trapped: fuel, memory, panic or a bug. Its instance is
    /// dead.
    #[error("filter `{name}` trapped: {reason}")]
    Trap { name: String, reason: String },
}

/// A live filter plugin.
pub struct FilterInstance {
    name: String,
    code: CodeHash,
    store: Store<GuestState>,
    filter: Filter,
    fuel_per_call: u64,
    /// The pool slot this instance occupies; freed when it is dropped.
    _slot: super::Slot,
    /// Where its traps and burned fuel are counted.
    stats: Arc<super::GuestStats>,
}

impl FilterInstance {
    pub fn code(&self) -> &CodeHash {
        &self.code
    }

    /// Runs the filter over one mail. After an error the instance must be
    /// dropped.
    ///
    /// `mail` is moved into the generated type for the call and back after
    /// it, as `MailboxInstance::call` does with its request, so the next
    /// filter gets it as it was without it ever being copied.
    pub async fn run(&mut self, mail: &mut MailView, config: &str) -> Result<Verdict, FilterError> {
        self.stats.refuel(&mut self.store, self.fuel_per_call);
        let wit_mail = lend(mail);
        let verdict = self
            .filter
            .call_filter(&mut self.store, &wit_mail, config)
            .await;
        *mail = wit_mail.into();
        // Counts what this run burned.
        self.stats.refuel(&mut self.store, self.fuel_per_call);
        verdict.map(Verdict::from).map_err(|e| {
            self.stats.trapped();
            FilterError::Trap {
                name: self.name.clone(),
                reason: format!("{e:#}"),
            }
        })
    }
}

impl Runtime {
    /// Instantiates a filter plugin.
    pub async fn instantiate_filter(
        &self,
        code: &CodeHash,
        name: &str,
    ) -> Result<FilterInstance, FilterError> {
        let pre = self.filter_pre(code)?;
        let slot = self.slots.acquire("filter").await?;
        let label: Arc<str> = format!("plugin:{name}").into();
        let mut store = self.store(label, self.config.plugin_memory_bytes_max);
        let _ = store.set_fuel(self.config.plugin_fuel_per_call);
        let filter = pre.instantiate_async(&mut store).await.map_err(|e| {
            self.stats.trapped();
            FilterError::Trap {
                name: name.into(),
                reason: format!("{e:#}"),
            }
        })?;
        Ok(FilterInstance {
            name: name.into(),
            code: *code,
            store,
            filter,
            fuel_per_call: self.config.plugin_fuel_per_call,
            _slot: slot,
            stats: self.stats.clone(),
        })
    }

    /// Runs one filter once, in a fresh instance.
    pub async fn run_filter(
        &self,
        code: &CodeHash,
        name: &str,
        mail: &mut MailView,
        config: &str,
    ) -> Result<Verdict, FilterError> {
        self.instantiate_filter(code, name)
            .await?
            .run(mail, config)
            .await
    }

    /// Compiles `code` and checks it against the `filter` world, so a bad
    /// plugin is refused when installed rather than skipped at every mail.
    pub fn check_filter(&self, code: &CodeHash) -> Result<(), RuntimeError> {
        self.filter_pre(code).map(|_| ())
    }
}
