//! Host bindings for the `dem:mail` worlds: one `bindgen!` per world, both
//! reading the same `wit/` files the guests read.
//!
//! Only `runtime` names these types; the rest of the host uses their plain
//! mirrors in `proto::mail`, converted at each guest call (`convert`). The
//! generated records and variants still derive serde: the op log and the
//! wire were first written with their encoding, and `convert`'s tests hold
//! the mirrors to it. WIT `flags` get their serde impls by hand below
//! because `bindgen!` does not pass derives to them.

/// The `mailbox` world: a user's mailbox component.
pub mod mailbox {
    wasmtime::component::bindgen!({
        path: "../../wit/wit",
        world: "mailbox",
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `filter` world: a mail filter plugin. It shares the `types` and `log`
/// interfaces with the mailbox world, so both use the same Rust types.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../../wit/wit",
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
    AttachmentRef, BlobRef, FlagChange, Header, MailFlags, MailView, NewMail, OpContext, Placement,
    SenderStatus, Verdict,
};
pub use mailbox::exports::dem::mail::api::{
    Contact, Delivered, FlagState, FolderInfo, Limit, MailDetail, MailPage, MailSummary,
    MailboxError, MailboxStats, PluginEntry, SearchQuery, SenderList, SnapshotInfo, Tombstone,
};
pub use mailbox::{Mailbox, MailboxPre};

/// The flags in bit order (bit `i` is the `i`th flag of the WIT), for the
/// serde impls below.
const FLAGS_IN_BIT_ORDER: [MailFlags; 5] = [
    MailFlags::SEEN,
    MailFlags::ANSWERED,
    MailFlags::FLAGGED,
    MailFlags::DRAFT,
    MailFlags::DELETED,
];

impl serde::Serialize for MailFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bits = FLAGS_IN_BIT_ORDER
            .iter()
            .enumerate()
            .filter(|(_, f)| self.contains(**f))
            .fold(0u8, |acc, (i, _)| acc | (1 << i));
        s.serialize_u8(bits)
    }
}

impl<'de> serde::Deserialize<'de> for MailFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u8::deserialize(d)?;
        if bits >> FLAGS_IN_BIT_ORDER.len() != 0 {
            return Err(serde::de::Error::custom(format!(
                "unknown mail flag bits {bits:#x}"
            )));
        }
        Ok(FLAGS_IN_BIT_ORDER
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .fold(MailFlags::empty(), |acc, (_, f)| acc | *f))
    }
}
