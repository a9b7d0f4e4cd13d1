//! The DEM mailbox component: one user's mail, folders, contacts and
//! settings, behind the WIT `api` interface.
//!
//! This file is only the wit-bindgen glue. All logic lives in plain Rust
//! modules operating on [`state::Mailbox`], so it can be unit-tested
//! natively; the component instance is single-threaded, so the one mailbox
//! lives in a thread-local `RefCell`.

wit_bindgen::generate!({
    path: "../wit/wit",
    world: "mailbox",
    additional_derives: [PartialEq],
});

mod blobs;
#[cfg(test)]
mod converge_tests;
mod deliver;
mod digest;
mod directory;
mod error;
mod folder_log;
#[cfg(test)]
mod folder_race_tests;
mod folders;
mod hash;
mod limits;
mod lww;
mod mail;
mod mails;
mod names;
mod placement;
mod render;
mod schema_v1;
mod schema_v2;
mod schema_v3;
mod search;
mod snapshot;
mod state;
#[cfg(test)]
mod testutil;

use std::cell::RefCell;

use state::Mailbox;

/// The generated WIT types, under one short name for the domain modules.
pub(crate) mod wit {
    pub use crate::exports::dem::mail::api::*;
}

use wit::*;

thread_local! {
    static MAILBOX: RefCell<Mailbox> = RefCell::new(Mailbox::default());
}

fn with<R>(f: impl FnOnce(&mut Mailbox) -> R) -> R {
    MAILBOX.with(|mb| f(&mut mb.borrow_mut()))
}

struct Component;

impl Guest for Component {
    fn deliver(ctx: OpContext, mail: NewMail, place: Placement) -> Result<Delivered, MailboxError> {
        with(|mb| mb.deliver(&ctx, mail, place))
    }

    fn list_folder(folder: String, offset: u32, limit: u32) -> Result<MailPage, MailboxError> {
        with(|mb| mb.list_folder(&folder, offset, limit))
    }

    fn get(id: String) -> Result<MailDetail, MailboxError> {
        with(|mb| mb.get(&id))
    }

    fn set_flags(
        ctx: OpContext,
        id: String,
        add: FlagState,
        remove: FlagState,
    ) -> Result<FlagState, MailboxError> {
        with(|mb| mb.set_flags(&ctx, &id, &add, &remove))
    }

    fn move_mail(ctx: OpContext, id: String, folder: String) -> Result<u32, MailboxError> {
        with(|mb| mb.move_mail(&ctx, &id, &folder))
    }

    fn delete_mail(ctx: OpContext, id: String) -> Result<(), MailboxError> {
        with(|mb| mb.delete_mail(&ctx, &id))
    }

    fn delete_history(offset: u32, limit: u32) -> Vec<Tombstone> {
        with(|mb| mb.delete_history(offset, limit))
    }

    fn search(
        query: SearchQuery,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<MailSummary>, MailboxError> {
        with(|mb| mb.search(&query, offset, limit))
    }

    fn search_among(
        query: SearchQuery,
        messages: Vec<u8>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<MailSummary>, MailboxError> {
        with(|mb| mb.search_among(&query, &messages, offset, limit))
    }

    fn message_refs(offset: u32, limit: u32) -> Vec<String> {
        with(|mb| mb.message_refs(offset, limit))
    }

    fn take_converted(max: u32) -> Vec<Vec<u8>> {
        with(|mb| mb.take_converted(max))
    }

    fn create_folder(ctx: OpContext, name: String) -> Result<FolderInfo, MailboxError> {
        with(|mb| mb.create_folder(&ctx, &name))
    }

    fn rename_folder(
        ctx: OpContext,
        name: String,
        new_name: String,
    ) -> Result<FolderInfo, MailboxError> {
        with(|mb| mb.rename_folder(&ctx, &name, &new_name))
    }

    fn delete_folder(ctx: OpContext, name: String) -> Result<(), MailboxError> {
        with(|mb| mb.delete_folder(&ctx, &name))
    }

    fn list_folders() -> Vec<FolderInfo> {
        with(|mb| mb.list_folders())
    }

    fn add_contact(ctx: OpContext, c: Contact) -> Result<(), MailboxError> {
        with(|mb| mb.add_contact(&ctx, c))
    }

    fn remove_contact(ctx: OpContext, address: String) -> Result<(), MailboxError> {
        with(|mb| mb.remove_contact(&ctx, &address))
    }

    fn list_contacts() -> Vec<Contact> {
        with(|mb| mb.list_contacts())
    }

    fn add_sender(ctx: OpContext, which: SenderList, pattern: String) -> Result<(), MailboxError> {
        with(|mb| mb.add_sender(&ctx, which, &pattern))
    }

    fn remove_sender(
        ctx: OpContext,
        which: SenderList,
        pattern: String,
    ) -> Result<(), MailboxError> {
        with(|mb| mb.remove_sender(&ctx, which, &pattern))
    }

    fn list_senders(which: SenderList) -> Vec<String> {
        with(|mb| mb.list_senders(which))
    }

    fn classify_sender(address: String) -> SenderStatus {
        with(|mb| mb.classify_sender(&address))
    }

    fn set_preference(ctx: OpContext, key: String, value: String) -> Result<(), MailboxError> {
        with(|mb| mb.set_preference(&ctx, key, value))
    }

    fn remove_preference(ctx: OpContext, key: String) -> Result<(), MailboxError> {
        with(|mb| mb.remove_preference(&ctx, &key))
    }

    fn get_preference(key: String) -> Option<String> {
        with(|mb| mb.get_preference(&key))
    }

    fn list_preferences() -> Vec<(String, String)> {
        with(|mb| mb.list_preferences())
    }

    fn install_plugin(ctx: OpContext, entry: PluginEntry) -> Result<(), MailboxError> {
        with(|mb| mb.install_plugin(&ctx, entry))
    }

    fn remove_plugin(ctx: OpContext, name: String) -> Result<(), MailboxError> {
        with(|mb| mb.remove_plugin(&ctx, &name))
    }

    fn list_plugins() -> Vec<PluginEntry> {
        with(|mb| mb.list_plugins())
    }

    fn stats() -> MailboxStats {
        with(|mb| mb.stats())
    }

    fn set_replaying(on: bool) {
        with(|mb| mb.replaying = on);
    }

    fn state_digest() -> Vec<u8> {
        with(|mb| mb.state_digest().to_vec())
    }

    fn snapshot_begin() -> SnapshotInfo {
        with(|mb| mb.snapshot_begin())
    }

    fn snapshot_read(offset: u64, max_bytes: u32) -> Vec<u8> {
        with(|mb| mb.snapshot_read(offset, max_bytes))
    }

    fn snapshot_end() {
        with(|mb| mb.snapshot_end())
    }

    fn restore_begin(schema_version: u32, size_bytes: u64) -> Result<(), MailboxError> {
        with(|mb| mb.restore_begin(schema_version, size_bytes))
    }

    fn restore_write(chunk: Vec<u8>) -> Result<(), MailboxError> {
        with(|mb| mb.restore_write(&chunk))
    }

    fn restore_finish() -> Result<(), MailboxError> {
        with(|mb| mb.restore_finish())
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ctx, mail, place};

    /// The exported functions reach the one thread-local mailbox.
    #[test]
    fn guest_glue_round_trip() {
        let d = Component::deliver(ctx(1), mail("g", 1), place("INBOX")).unwrap();
        assert_eq!((d.uid, d.duplicate), (1, false));
        assert_eq!(
            Component::list_folder("INBOX".into(), 0, 10).unwrap().total,
            1
        );
        let info = Component::snapshot_begin();
        let bytes = Component::snapshot_read(0, u32::MAX);
        Component::snapshot_end();
        assert_eq!(bytes.len() as u64, info.size_bytes);
        Component::delete_mail(ctx(2), "g".into()).unwrap();
        Component::restore_begin(info.schema_version, info.size_bytes).unwrap();
        Component::restore_write(bytes).unwrap();
        Component::restore_finish().unwrap();
        assert_eq!(Component::stats().mails, 1);
        assert!(Component::delete_history(0, 10).is_empty());
    }
}
