//! Allowlist filter plugin: turns the sender status the host has already
//! worked out from the mailbox's contacts, allowlist and blocklist into a
//! verdict.
//!
//! This file is only the component glue; the policy lives in [`policy`]
//! (with the config format documented there) so it can be unit-tested
//! natively without a WebAssembly runtime.

wit_bindgen::generate!({
    path: "../../wit/wit",
    world: "filter",
    additional_derives: [PartialEq],
});

pub mod policy;

use dem::mail::log::{Level, log};

struct Plugin;

impl Guest for Plugin {
    fn filter(mail: MailView, config: String) -> Verdict {
        policy::evaluate(mail.sender, &config, &mut |level: Level, message: &str| {
            log(level, message)
        })
    }
}

export!(Plugin);
