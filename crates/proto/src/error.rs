//! [`WireError`]: what a server sends back in place of a response, so the
//! client learns why its request was refused instead of seeing a bare
//! closed stream, and [`ErrorCode`], the one list of what kinds of refusal
//! there are. Every layer that answers requests (the dispatch unit's
//! logic, the host daemon) builds one; the transport only carries it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure a [`WireError`] reports. On the wire it is a
/// number that borrows HTTP's meaning, so a log reads at a glance and the
/// encoding stays a plain `u16`; a number this build does not know (from a
/// newer peer) is kept as [`ErrorCode::Other`], so its message still
/// reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be decoded or breaks a rule of its format.
    BadRequest,
    /// The caller is not allowed to do this (a bad or stale signature, not
    /// the owner, not a listed holder).
    Forbidden,
    /// Something named does not exist here: an unknown name, user, host or
    /// attachment, or a mailbox this host does not hold.
    NotFound,
    /// The request did not arrive in time.
    Timeout,
    /// The request conflicts with the tables: a name held by someone else,
    /// a stale epoch, a replayed envelope.
    Conflict,
    /// The request exceeds the server's limit.
    TooLarge,
    /// The server failed while handling the request.
    Internal,
    /// The server is overloaded; try again later.
    Busy,
    /// A code this build does not know.
    Other(u16),
}

impl ErrorCode {
    /// The number the wire carries.
    pub const fn number(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Timeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Busy => 503,
            ErrorCode::Other(n) => n,
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        match n {
            400 => ErrorCode::BadRequest,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            408 => ErrorCode::Timeout,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::TooLarge,
            500 => ErrorCode::Internal,
            503 => ErrorCode::Busy,
            n => ErrorCode::Other(n),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code.number()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The error a server sends back instead of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A human-readable explanation, for logs; not for matching on.
    pub message: String,
}

impl WireError {
    /// The request frame could not be decoded.
    pub const BAD_REQUEST: ErrorCode = ErrorCode::BadRequest;
    /// The caller is not allowed to do this.
    pub const FORBIDDEN: ErrorCode = ErrorCode::Forbidden;
    /// The request did not arrive in time.
    pub const TIMEOUT: ErrorCode = ErrorCode::Timeout;
    /// The request frame exceeds the server's limit.
    pub const TOO_LARGE: ErrorCode = ErrorCode::TooLarge;
    /// The server failed while handling the request.
    pub const INTERNAL: ErrorCode = ErrorCode::Internal;
    /// The server is overloaded; try again later.
    pub const BUSY: ErrorCode = ErrorCode::Busy;

    /// Builds an error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_travel_as_their_numbers() {
        for n in [400u16, 403, 404, 408, 409, 413, 500, 503, 418, 0, u16::MAX] {
            let code = ErrorCode::from(n);
            assert_eq!(code.number(), n);
            assert_eq!(
                rmp_serde::to_vec(&code).unwrap(),
                rmp_serde::to_vec(&n).unwrap()
            );
            let back: ErrorCode = rmp_serde::from_slice(&rmp_serde::to_vec(&n).unwrap()).unwrap();
            assert_eq!(back, code);
        }
        assert_eq!(ErrorCode::from(418), ErrorCode::Other(418));
    }

    #[test]
    fn a_wire_error_encodes_as_before() {
        #[derive(Serialize)]
        struct Old {
            code: u16,
            message: String,
        }
        let new = WireError::new(ErrorCode::Conflict, "stale epoch");
        let old = Old {
            code: 409,
            message: "stale epoch".into(),
        };
        assert_eq!(
            rmp_serde::to_vec(&new).unwrap(),
            rmp_serde::to_vec(&old).unwrap()
        );
        assert_eq!(new.to_string(), "409: stale epoch");
    }
}
