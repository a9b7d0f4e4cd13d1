//! Rules filter plugin: the user's own mail rules, in the spirit of Sieve's
//! `fileinto` and `addflag`, read from a small line-based config.
//!
//! This file is only the component glue. The config language is documented
//! in [`parse`], the rule types live in [`ast`], matching in [`matcher`] and [`wildcard`], and
//! rule evaluation in [`engine`]; all of it is plain Rust, unit-tested
//! natively.

wit_bindgen::generate!({
    path: "../../wit/wit",
    world: "filter",
    additional_derives: [PartialEq],
});

pub mod ast;
pub mod engine;
pub use plugin_config_lex as lex;
pub mod matcher;
pub mod parse;
pub mod wildcard;

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
