//! The one error of this crate's operations. Only limit violations and
//! caller mistakes are errors: a malformed message still parses (see
//! `parse`), because a message that does not parse is still delivered.

/// Why composing, checking, splitting or rebuilding a message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Something is bigger than its limit in bytes. `what` names it and
    /// the limit constant that applies.
    #[error(
        "{what} is {actual} bytes; the limit is {limit} ({})",
        limit_name(what)
    )]
    TooLarge {
        what: &'static str,
        limit: u64,
        actual: u64,
    },
    /// Something has more items than its limit allows.
    #[error("{what}: {actual}; the limit is {limit} ({})", limit_name(what))]
    TooMany {
        what: &'static str,
        limit: u64,
        actual: u64,
    },
    /// MIME parts or attached messages nest deeper than `MIME_DEPTH_MAX`.
    #[error("MIME parts nest deeper than {limit} levels (MIME_DEPTH_MAX)")]
    TooDeep { limit: usize },
    /// The fields given to `compose` cannot make a message (a line break in
    /// a header, an empty address, ...).
    #[error("cannot compose the message: {0}")]
    Compose(String),
    /// The cuts given to `rebuild` do not fit the stored bytes.
    #[error("cannot rebuild the message: {0}")]
    Splice(String),
}

/// The name of the limit constant a `what` refers to, so that the message
/// tells an operator what to look up.
fn limit_name(what: &str) -> &'static str {
    match what {
        WHAT_MESSAGE | WHAT_REBUILT => "MESSAGE_BYTES_MAX",
        WHAT_STORED => "STORED_BYTES_MAX",
        WHAT_HEADER_SECTION => "HEADER_BYTES_MAX",
        WHAT_HEADER_FIELDS => "HEADER_FIELDS_MAX",
        WHAT_MIME_PARTS => "MIME_PARTS_MAX",
        _ => "see dem_message::limits",
    }
}

/// `TooLarge::what` of a whole message.
pub const WHAT_MESSAGE: &str = "message";
/// `TooLarge::what` of a message rebuilt from its stored bytes and cuts.
pub const WHAT_REBUILT: &str = "rebuilt message";
/// `TooLarge::what` of the stored message after every possible cut.
pub const WHAT_STORED: &str = "stored message";
/// `TooLarge::what` of the top-level header section.
pub const WHAT_HEADER_SECTION: &str = "header section";
/// `TooMany::what` of the fields of one header block.
pub const WHAT_HEADER_FIELDS: &str = "header fields in one block";
/// `TooMany::what` of the MIME parts of a message.
pub const WHAT_MIME_PARTS: &str = "MIME parts";

impl MessageError {
    /// `TooLarge` for `what` of `actual` bytes over `limit`.
    pub(crate) fn too_large(what: &'static str, limit: usize, actual: usize) -> Self {
        MessageError::TooLarge {
            what,
            limit: limit as u64,
            actual: actual as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit() {
        let e = MessageError::too_large(WHAT_MESSAGE, 67108864, 70000000);
        assert_eq!(
            e.to_string(),
            "message is 70000000 bytes; the limit is 67108864 (MESSAGE_BYTES_MAX)"
        );
        let e = MessageError::TooMany {
            what: WHAT_MIME_PARTS,
            limit: 1000,
            actual: 1001,
        };
        assert_eq!(
            e.to_string(),
            "MIME parts: 1001; the limit is 1000 (MIME_PARTS_MAX)"
        );
        assert_eq!(
            MessageError::TooDeep { limit: 16 }.to_string(),
            "MIME parts nest deeper than 16 levels (MIME_DEPTH_MAX)"
        );
    }
}
