//! The components built from this repository and embedded in the `dem`
//! binary: the mailbox and the three standard filter plugins. `build.rs`
//! (beside this crate) compiles them for `wasm32-wasip2`; the hostile test guests are only
//! referred to by path and never ship.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The standard filter plugins, by the name users install them under.
pub const PLUGINS: &[(&str, &[u8])] = &[
    ("spam-score", SPAM_SCORE),
    ("allowlist", ALLOWLIST),
    ("rules", RULES),
];
