//! The mobile objects a dispatch unit locates: mailboxes, named by their
//! owner's user id, and attachments, named by their content hash (one
//! [`AttachmentId`] for the whole protocol, validated on parse and on
//! deserialisation, so a malformed id never reaches the tables).

use std::fmt;

use serde::{Deserialize, Serialize};

use dem_identity::UserId;

use crate::AttachmentId;

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
            ObjectRef::Attachment(id) => write!(f, "attachment {}", &id.to_hex()[..12]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_ids_are_validated() {
        let good = "ab".repeat(32);
        assert_eq!(good.parse::<AttachmentId>().unwrap().to_hex(), good);
        assert!("ab".parse::<AttachmentId>().is_err());
        assert!("AB".repeat(32).parse::<AttachmentId>().is_err());
        assert!(serde_json::from_str::<AttachmentId>("\"xyz\"").is_err());
        let id: AttachmentId = good.parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{good}\""));
    }
}
