//! Ids of the mobile objects a dispatch unit locates: mailboxes (named by
//! their owner's user id) and attachments (named by their content hash).
//! Attachment ids are validated on parse and on deserialisation, so a
//! malformed id never reaches the tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::identity::id::UserId;

/// An attachment's id: the BLAKE3 hash of its content, 64 lower-case hex
/// characters. Content addressing means two senders of the same file share
/// one attachment record.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttachmentId(String);

/// Why an attachment id could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attachment id {0:?} is not 64 lower-case hex characters (a BLAKE3 hash)")]
pub struct AttachmentIdError(String);

impl AttachmentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AttachmentId {
    type Err = AttachmentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(AttachmentId(s.to_string()))
        } else {
            Err(AttachmentIdError(s.chars().take(80).collect()))
        }
    }
}

impl TryFrom<String> for AttachmentId {
    type Error = AttachmentIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AttachmentId> for String {
    fn from(id: AttachmentId) -> String {
        id.0
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentId({})", self.0.get(..12).unwrap_or(&self.0))
    }
}

/// A mobile object a dispatch unit locates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectRef {
    Mailbox(UserId),
    Attachment(AttachmentId),
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Mailbox(user) => write!(f, "mailbox {}", user.short()),
            ObjectRef::Attachment(id) => write!(f, "attachment {}", id.0.get(..12).unwrap_or("")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_ids_are_validated() {
        let good = "ab".repeat(32);
        assert_eq!(good.parse::<AttachmentId>().unwrap().as_str(), good);
        assert!("ab".parse::<AttachmentId>().is_err());
        assert!("AB".repeat(32).parse::<AttachmentId>().is_err());
        assert!(serde_json::from_str::<AttachmentId>("\"xyz\"").is_err());
        let id: AttachmentId = good.parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{good}\""));
    }
}
