//! DEM's mail as real RFC 5322 messages (MIME included), kept as their
//! exact bytes. This crate is the pure logic around those bytes: it
//! composes a message (`compose`), indexes one for a mailbox (`parse`),
//! shows one to a reader (`render`), and cuts large parts out of one so
//! that what a mailbox stores fits a network frame, with the exact bytes
//! always rebuildable (`split`). Nothing here does I/O; the CLI and the
//! host drive it, and `search` is the full-text index over their words.
//! `limits` names every bound, `error` the one error type.

pub mod compose;
#[cfg(any(test, feature = "corpus"))]
pub mod corpus;
pub mod error;
pub mod limits;
pub mod parse;
pub mod render;
pub mod search;
pub mod split;

mod mime;

pub use compose::{Address, Compose, OutgoingAttachment, compose, new_message_id};
pub use error::MessageError;
pub use parse::{Envelope, Parsed, PartInfo, check_limits, parse, text};
pub use render::{Rendered, attachment_content, render};
pub use split::{Cut, Splice, Split, rebuild, rebuilt_len, split};
