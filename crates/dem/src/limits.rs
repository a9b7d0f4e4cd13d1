//! Command-line knobs for the limits every host process runs guests under,
//! shared by the subcommands that run mailboxes.

use std::time::Duration;

use clap::Args;

use dem_node::mailbox::MailboxesConfig;
use dem_runtime::RuntimeConfig;

/// Guest limits and mailbox behaviour.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Fuel (about one unit per wasm instruction) one mailbox call may burn.
    #[arg(long, default_value_t = RuntimeConfig::default().mailbox_fuel_per_call)]
    pub mailbox_fuel: u64,
    /// Linear memory one mailbox may use, in MiB.
    #[arg(long, default_value_t = (RuntimeConfig::default().mailbox_memory_bytes_max >> 20) as u64)]
    pub mailbox_memory_mib: u64,
    /// Fuel one filter plugin call may burn.
    #[arg(long, default_value_t = RuntimeConfig::default().plugin_fuel_per_call)]
    pub plugin_fuel: u64,
    /// Linear memory one filter plugin may use, in MiB.
    #[arg(long, default_value_t = (RuntimeConfig::default().plugin_memory_bytes_max >> 20) as u64)]
    pub plugin_memory_mib: u64,
    /// A mailbox idle this long is snapshotted and its instance dropped.
    #[arg(long, default_value_t = MailboxesConfig::default().idle_hibernate.as_millis() as u64)]
    pub idle_hibernate_ms: u64,
    /// Mailboxes (and filter plugins) awake at once. When all are taken,
    /// the least recently used idle mailbox hibernates to make room.
    /// Default: from the machine's memory, a quarter of it at 16 MiB each.
    #[arg(long)]
    pub instance_slots: Option<u32>,
    /// Longest a call waits for a free slot before the caller is told
    /// "busy, retry".
    #[arg(long, default_value_t = RuntimeConfig::default().slot_wait_ms)]
    pub slot_wait_ms: u64,
}

impl LimitArgs {
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            mailbox_fuel_per_call: self.mailbox_fuel,
            mailbox_memory_bytes_max: mib(self.mailbox_memory_mib),
            plugin_fuel_per_call: self.plugin_fuel,
            plugin_memory_bytes_max: mib(self.plugin_memory_mib),
            instance_slots: self.instance_slots,
            slot_wait_ms: self.slot_wait_ms,
            ..RuntimeConfig::default()
        }
    }

    pub fn mailboxes(&self) -> MailboxesConfig {
        MailboxesConfig {
            idle_hibernate: Duration::from_millis(self.idle_hibernate_ms.max(1)),
            ..MailboxesConfig::default()
        }
    }
}

/// MiB to bytes, capped at what wasm32 can address.
fn mib(n: u64) -> usize {
    (n.min(4096) << 20) as usize
}
