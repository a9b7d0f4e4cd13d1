//! Short constructors for the WIT `mailbox-error` variants.
//!
//! Every failure the mailbox reports is one of these typed errors; having
//! them as one-liners keeps the validation code readable and makes it easy
//! to never fall back to a panic.

use crate::wit::{Limit, MailboxError};

pub type Result<T> = std::result::Result<T, MailboxError>;

pub fn not_found(msg: impl Into<String>) -> MailboxError {
    MailboxError::NotFound(msg.into())
}

pub fn already_exists(msg: impl Into<String>) -> MailboxError {
    MailboxError::AlreadyExists(msg.into())
}

pub fn invalid_name(msg: impl Into<String>) -> MailboxError {
    MailboxError::InvalidName(msg.into())
}

pub fn invalid_argument(msg: impl Into<String>) -> MailboxError {
    MailboxError::InvalidArgument(msg.into())
}

pub fn not_allowed(msg: impl Into<String>) -> MailboxError {
    MailboxError::NotAllowed(msg.into())
}

pub fn snapshot(msg: impl Into<String>) -> MailboxError {
    MailboxError::Snapshot(msg.into())
}

/// `too-large` for one value; sizes are widened to u64 here so callers can
/// pass `usize` lengths without casts everywhere.
pub fn too_large(what: &str, limit: impl TryInto<u64>, actual: impl TryInto<u64>) -> MailboxError {
    MailboxError::TooLarge(limit_of(what, limit, actual))
}

/// `limit-reached` for a count limit.
pub fn limit_reached(
    what: &str,
    limit: impl TryInto<u64>,
    actual: impl TryInto<u64>,
) -> MailboxError {
    MailboxError::LimitReached(limit_of(what, limit, actual))
}

fn limit_of(what: &str, limit: impl TryInto<u64>, actual: impl TryInto<u64>) -> Limit {
    Limit {
        what: what.to_string(),
        limit: limit.try_into().unwrap_or(u64::MAX),
        actual: actual.try_into().unwrap_or(u64::MAX),
    }
}

/// Fails with `too-large` if `actual > limit`.
pub fn check_size(what: &str, limit: usize, actual: usize) -> Result<()> {
    if actual > limit {
        return Err(too_large(what, limit, actual));
    }
    Ok(())
}
