//! Runs filter plugins on the delivery path, each call in a Store of its
//! own with its own fuel and memory limits.
//!
//! A filter that traps, runs out of fuel or memory, or cannot even be
//! instantiated is skipped and logged: the mail is still delivered. Filters
//! only ever change where a mail is filed or how it is flagged, and a broken
//! one must never cost the user a mail.

use std::sync::Arc;

use super::bindings::{MailView, Verdict};
use super::{Runtime, RuntimeError};
use crate::ids::CodeHash;

/// Why one filter produced no verdict.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The filter's code could not be loaded or instantiated.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The filter trapped: fuel, memory, panic or a bug.
    #[error("filter `{name}` trapped: {reason}")]
    Trap { name: String, reason: String },
}

impl Runtime {
    /// Runs one filter over one mail.
    pub async fn run_filter(
        &self,
        code: &CodeHash,
        name: &str,
        mail: &MailView,
        config: &str,
    ) -> Result<Verdict, FilterError> {
        let pre = self.filter_pre(code)?;
        let label: Arc<str> = format!("plugin:{name}").into();
        let mut store = self.store(label, self.config.plugin_memory_bytes_max);
        let _ = store.set_fuel(self.config.plugin_fuel_per_call);
        let trap = |e: wasmtime::Error| FilterError::Trap { name: name.into(), reason: format!("{e:#}") };
        let filter = pre.instantiate_async(&mut store).await.map_err(trap)?;
        filter.call_filter(&mut store, mail, config).await.map_err(trap)
    }
}

impl Runtime {
    /// Compiles `code` and checks it against the `filter` world, so a bad
    /// plugin is refused when installed rather than skipped at every mail.
    pub fn check_filter(&self, code: &CodeHash) -> Result<(), RuntimeError> {
        self.filter_pre(code).map(|_| ())
    }
}
