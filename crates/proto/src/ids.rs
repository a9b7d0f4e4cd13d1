//! Identifiers of the domain: mailbox ids, mail ids and code hashes, each
//! validated where it enters the host so that nothing downstream has to
//! wonder whether a name is a path traversal or a megabyte long.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest mailbox id, in bytes. A later user id is a 64-hex-char public key.
pub const MAILBOX_ID_BYTES_MAX: usize = 128;
/// Longest mail id, in bytes; the guest enforces the same bound.
pub const MAIL_ID_BYTES_MAX: usize = 128;

/// Largest component the host accepts.
pub const CODE_BYTES_MAX: usize = 64 << 20;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// The id is longer than its limit.
    #[error("{what} is {len} bytes long, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// The id has a character outside `[A-Za-z0-9._-]`, or starts with `.`.
    #[error(
        "{what} {value:?} may only hold letters, digits, '.', '_' and '-', and may not start with '.'"
    )]
    BadCharacter { what: &'static str, value: String },
    /// A code hash that is not 64 lower-case hex characters.
    #[error("code hash {0:?} is not 64 hex characters")]
    BadHash(String),
}

/// Names one user's mailbox.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxId(String);

impl MailboxId {
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        check_token("mailbox id", &id, MAILBOX_ID_BYTES_MAX)?;
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MailboxId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for MailboxId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<MailboxId> for String {
    fn from(id: MailboxId) -> String {
        id.0
    }
}

/// Checks a mail id supplied by a sender or client.
pub fn check_mail_id(id: &str) -> Result<(), IdError> {
    check_token("mail id", id, MAIL_ID_BYTES_MAX)
}

fn check_token(what: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > max {
        return Err(IdError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    let ok = !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(IdError::BadCharacter {
            what,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// BLAKE3 hash of a component's bytes: the address of its code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CodeHash(pub [u8; 32]);

impl CodeHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, for logs and tables.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeHash({})", self.short())
    }
}

impl FromStr for CodeHash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(IdError::BadHash(s.chars().take(80).collect()));
        }
        blake3::Hash::from_hex(s)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|_| IdError::BadHash(s.into()))
    }
}

impl TryFrom<String> for CodeHash {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CodeHash> for String {
    fn from(h: CodeHash) -> String {
        h.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_ids_are_validated() {
        assert!(MailboxId::new("alice").is_ok());
        assert!(MailboxId::new("a.b-c_d").is_ok());
        assert_eq!(
            MailboxId::new(""),
            Err(IdError::Empty { what: "mailbox id" })
        );
        assert!(matches!(
            MailboxId::new("../etc"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            MailboxId::new("al ice"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            MailboxId::new("é"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            MailboxId::new("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn code_hash_round_trips_hex() {
        let h = CodeHash::of(b"hello");
        assert_eq!(h.to_hex().parse::<CodeHash>().unwrap(), h);
        assert!("ABC".parse::<CodeHash>().is_err());
        assert!(h.to_hex().to_uppercase().parse::<CodeHash>().is_err());
    }
}
