//! [`WireError`]: what a server sends back in place of a response, so the
//! client learns why its request was refused instead of seeing a bare
//! closed stream. Every layer that answers requests (the dispatch unit's
//! logic, the host daemon) builds one; the transport only carries it.

use serde::{Deserialize, Serialize};

/// The error a server sends back instead of a response. The codes borrow
/// HTTP's numbers so they read at a glance; applications may add their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// What kind of failure; see the associated constants.
    pub code: u16,
    /// A human-readable explanation, for logs; not for matching on.
    pub message: String,
}

impl WireError {
    /// The request frame could not be decoded.
    pub const BAD_REQUEST: u16 = 400;
    /// The caller is not allowed to do this.
    pub const FORBIDDEN: u16 = 403;
    /// The request did not arrive in time.
    pub const TIMEOUT: u16 = 408;
    /// The request frame exceeds the server's limit.
    pub const TOO_LARGE: u16 = 413;
    /// The server failed while handling the request.
    pub const INTERNAL: u16 = 500;
    /// The server is overloaded; try again later.
    pub const BUSY: u16 = 503;

    /// Builds an error with the given code and message.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
