//! Host bindings for the `dem:mail` worlds: one `bindgen!` per world, both
//! reading the same `wit/` files the guests read.
//!
//! The generated records and variants also derive serde so the host can log
//! mutating calls and send them over the wire without mirror types; WIT
//! `flags` get their serde impls by hand below because `bindgen!` does not
//! pass derives to them.

/// The `mailbox` world: a user's mailbox component.
pub mod mailbox {
    wasmtime::component::bindgen!({
        path: "../wit/wit",
        world: "mailbox",
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `filter` world: a mail filter plugin. It shares the `types` and `log`
/// interfaces with the mailbox world, so both use the same Rust types.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit/wit",
        world: "filter",
        exports: { default: async },
        with: {
            "dem:mail/types": super::mailbox::dem::mail::types,
            "dem:mail/log": super::mailbox::dem::mail::log,
        },
    });
}

pub use filter::{Filter, FilterPre};
pub use mailbox::dem::mail::log::Level as LogLevel;
pub use mailbox::dem::mail::types::{
    AttachmentRef, FlagChange, Header, MailFlags, MailView, NewMail, OpContext, Placement,
    SenderStatus, Verdict,
};
pub use mailbox::exports::dem::mail::api::{
    ByteRange, Contact, Delivered, FlagState, FolderInfo, GetParts, Limit, MailDetail, MailPage,
    MailSummary, MailboxError, MailboxStats, PluginEntry, SearchQuery, SenderList, SnapshotInfo,
    Tombstone,
};
pub use mailbox::{Mailbox, MailboxPre};

/// The IMAP names of the system flags, in bit order.
pub const FLAG_NAMES: [(&str, MailFlags); 5] = [
    ("seen", MailFlags::SEEN),
    ("answered", MailFlags::ANSWERED),
    ("flagged", MailFlags::FLAGGED),
    ("draft", MailFlags::DRAFT),
    ("deleted", MailFlags::DELETED),
];

impl MailFlags {
    /// The names of the flags that are set, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        FLAG_NAMES
            .iter()
            .filter(|(_, f)| self.contains(*f))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Parses one flag name (`seen`, `\Seen`, `SEEN`...).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim_start_matches('\\');
        FLAG_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }
}

impl serde::Serialize for MailFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bits = FLAG_NAMES
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| self.contains(*f))
            .fold(0u8, |acc, (i, _)| acc | (1 << i));
        s.serialize_u8(bits)
    }
}

impl<'de> serde::Deserialize<'de> for MailFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u8::deserialize(d)?;
        if bits >> FLAG_NAMES.len() != 0 {
            return Err(serde::de::Error::custom(format!(
                "unknown mail flag bits {bits:#x}"
            )));
        }
        Ok(FLAG_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .fold(MailFlags::empty(), |acc, (_, (_, f))| acc | *f))
    }
}

impl MailboxError {
    /// A sentence for users; the generated `Display` is for developers.
    pub fn describe(&self) -> String {
        match self {
            MailboxError::NotFound(what) => format!("not found: {what}"),
            MailboxError::AlreadyExists(what) => format!("already exists: {what}"),
            MailboxError::InvalidName(why) => format!("invalid name: {why}"),
            MailboxError::InvalidArgument(why) => format!("invalid argument: {why}"),
            MailboxError::TooLarge(l) => {
                format!("{} too large: {} > limit {}", l.what, l.actual, l.limit)
            }
            MailboxError::LimitReached(l) => {
                format!(
                    "limit reached for {}: {} (limit {})",
                    l.what, l.actual, l.limit
                )
            }
            MailboxError::NotAllowed(why) => format!("not allowed: {why}"),
            MailboxError::Snapshot(why) => format!("snapshot: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_serde() {
        for bits in 0u8..32 {
            let flags = FLAG_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(MailFlags::empty(), |acc, (_, (_, f))| acc | *f);
            let bytes = rmp_serde::to_vec(&flags).unwrap();
            let back: MailFlags = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, flags);
        }
        assert!(rmp_serde::from_slice::<MailFlags>(&rmp_serde::to_vec(&0xffu8).unwrap()).is_err());
    }

    #[test]
    fn flag_names_parse_imap_spellings() {
        assert_eq!(MailFlags::from_name("\\Seen"), Some(MailFlags::SEEN));
        assert_eq!(MailFlags::from_name("FLAGGED"), Some(MailFlags::FLAGGED));
        assert_eq!(MailFlags::from_name("junk"), None);
        assert_eq!(
            (MailFlags::SEEN | MailFlags::DRAFT).names(),
            vec!["seen", "draft"]
        );
    }
}
