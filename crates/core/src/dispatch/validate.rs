//! Format checks shared by local services and replicated updates: a record
//! a peer unit sends is held to the same rules as one a host sends, so a
//! buggy peer cannot slip in what a host could not.

use std::net::SocketAddr;
use std::sync::Arc;

use super::error::{AddrError, HostListError, NameFormatError, OperatorError, RecordClaimError};
use super::limits::{MAX_ADDR_LEN, MAX_CLAIM_BODY_BYTES, OPERATOR_CHARS_MAX};
use super::tables::NameRecord;
use dem_identity::{HostId, SignedNameClaim};

/// `addr` must be a socket address `IP:PORT` of bounded length.
pub(crate) fn addr(addr: &str) -> Result<(), AddrError> {
    if addr.len() > MAX_ADDR_LEN {
        return Err(AddrError::TooLong {
            len: addr.len(),
            max: MAX_ADDR_LEN,
        });
    }
    addr.parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| AddrError::NotSocketAddr {
            addr: addr.to_string(),
        })
}

/// An operator label: 1 to [`OPERATOR_CHARS_MAX`] characters, none a
/// control character (it is shown on pages and in logs).
pub(crate) fn operator(label: &str) -> Result<(), OperatorError> {
    let chars = label.chars().count();
    if chars == 0 || chars > OPERATOR_CHARS_MAX || label.chars().any(char::is_control) {
        return Err(OperatorError {
            max: OPERATOR_CHARS_MAX,
        });
    }
    Ok(())
}

/// A signed claim's body is at most [`MAX_CLAIM_BODY_BYTES`].
pub(crate) fn claim_size(claim: &SignedNameClaim) -> Result<(), RecordClaimError> {
    let len = claim.0.body.len();
    if len > MAX_CLAIM_BODY_BYTES {
        return Err(RecordClaimError::TooLarge {
            len,
            max: MAX_CLAIM_BODY_BYTES,
        });
    }
    Ok(())
}

/// A replicated record's claim, if any, is one its holder signed for this
/// name, made no earlier than the holder's first claim. This verifies a
/// signature, so callers skip it for a claim they already keep.
pub(crate) fn record_claim(name: &str, record: &NameRecord) -> Result<(), RecordClaimError> {
    let Some(signed) = &record.claim else {
        return Ok(());
    };
    claim_size(signed)?;
    let claim = signed
        .verify()
        .map_err(|e| RecordClaimError::Invalid(Arc::new(e)))?;
    if claim.name.as_str() != name {
        return Err(RecordClaimError::OtherName {
            claimed: claim.name.to_string(),
        });
    }
    if claim.user != record.user {
        return Err(RecordClaimError::OtherUser {
            claimed: claim.user,
            holder: record.user,
        });
    }
    if i64::try_from(record.issued_ms).is_ok_and(|since| claim.issued_ms < since) {
        return Err(RecordClaimError::BeforeFirst {
            claim_ms: claim.issued_ms,
            since_ms: record.issued_ms,
        });
    }
    Ok(())
}

/// Names follow the one rule `identity::name` signs claims under.
pub(crate) fn name(name: &str) -> Result<(), NameFormatError> {
    dem_identity::name::validate_name(name)
}

/// A holder list: at most `max` hosts, none twice; empty only if allowed.
pub(crate) fn host_list(
    hosts: &[HostId],
    max: usize,
    allow_empty: bool,
) -> Result<(), HostListError> {
    if hosts.is_empty() && !allow_empty {
        return Err(HostListError::EmptyMailbox);
    }
    if hosts.len() > max {
        return Err(HostListError::TooMany {
            len: hosts.len(),
            max,
        });
    }
    for (i, h) in hosts.iter().enumerate() {
        if hosts[..i].contains(h) {
            return Err(HostListError::Duplicate(*h));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addrs() {
        assert!(addr("10.0.0.1:4433").is_ok());
        assert!(addr("[::1]:4433").is_ok());
        assert!(matches!(
            addr("example.org:1"),
            Err(AddrError::NotSocketAddr { .. })
        ));
        assert!(matches!(
            addr("10.0.0.1"),
            Err(AddrError::NotSocketAddr { .. })
        ));
        let long = format!("[{}]:1", "0:".repeat(40));
        assert!(matches!(addr(&long), Err(AddrError::TooLong { .. })));
    }

    #[test]
    fn names() {
        assert!(name("alice").is_ok());
        assert!(name("a.b-c_9").is_ok());
        assert_eq!(name(""), Err(NameFormatError::Empty));
        assert!(matches!(
            name("Alice"),
            Err(NameFormatError::BadChar { .. } | NameFormatError::BadStart { .. })
        ));
        assert!(matches!(
            name(".alice"),
            Err(NameFormatError::BadChar { .. } | NameFormatError::BadStart { .. })
        ));
        assert!(matches!(
            name("alicé"),
            Err(NameFormatError::BadChar { .. } | NameFormatError::BadStart { .. })
        ));
        assert!(name(&"a".repeat(dem_identity::name::MAX_NAME_LEN)).is_ok());
        assert!(matches!(
            name(&"a".repeat(dem_identity::name::MAX_NAME_LEN + 1)),
            Err(NameFormatError::TooLong { .. })
        ));
    }

    #[test]
    fn host_lists() {
        let (a, b) = (HostId([1; 32]), HostId([2; 32]));
        assert!(host_list(&[a, b], 2, false).is_ok());
        assert_eq!(
            host_list(&[a, a], 2, false),
            Err(HostListError::Duplicate(a))
        );
        assert!(matches!(
            host_list(&[a, b], 1, false),
            Err(HostListError::TooMany { .. })
        ));
        assert_eq!(host_list(&[], 1, false), Err(HostListError::EmptyMailbox));
        assert!(host_list(&[], 1, true).is_ok());
    }
}
