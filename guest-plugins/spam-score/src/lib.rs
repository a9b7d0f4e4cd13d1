//! Spam-score filter plugin: scores a mail with weighted rules on its
//! headers, words and structure, and files, rejects or just scores it.
//!
//! This file is only the component glue. The config format and built-in
//! defaults are documented in [`config`], the structural rules in
//! [`score`], word matching in [`text`] and the verdict in [`engine`]; all
//! of it is plain Rust, unit-tested natively.

wit_bindgen::generate!({
    path: "../../wit/wit",
    world: "filter",
    additional_derives: [PartialEq],
});

pub mod config;
pub mod engine;
pub use plugin_config_lex as lex;
pub mod score;
#[cfg(test)]
mod test_support;
pub mod text;

use dem::mail::log::{Level, log};

struct Plugin;

impl Guest for Plugin {
    fn filter(mail: MailView, config: String) -> Verdict {
        engine::evaluate(&mail, &config, &mut |level: Level, message: &str| {
            log(level, message)
        })
    }
}

export!(Plugin);
