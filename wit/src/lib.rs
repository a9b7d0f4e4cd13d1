//! The `dem:mail` WIT package: the contract between the host and every guest.
//!
//! The host's `bindgen!` and each guest's `generate!` read the `.wit` files in
//! this crate's `wit/` folder directly; this library only names that folder
//! so that tools and tests can find it without guessing paths.

/// Absolute path of the folder holding the `dem:mail` WIT package.
pub const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");

/// The package name and version every world here belongs to.
pub const PACKAGE: &str = "dem:mail@0.1.0";
