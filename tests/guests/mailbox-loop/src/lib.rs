//! Hostile mailbox for the host's sandbox tests: `deliver` never returns, so
//! the host must interrupt it, and its snapshot claims to be 3 GiB and
//! then hands out chunks far larger than asked, so the host must refuse it
//! before allocating; every other export answers with a trivial valid
//! value so the component instantiates and can be probed.

wit_bindgen::generate!({ path: "../../../wit/wit", world: "mailbox" });

use dem::mail::types::{MailFlags, NewMail};
use exports::dem::mail::api::{
    Contact, Delivered, FlagState, FolderInfo, Guest, MailDetail, MailPage, MailSummary,
    MailboxError, MailboxStats, OpContext, Placement, PluginEntry, SearchQuery, SenderList,
    SenderStatus, SnapshotInfo, Tombstone,
};

struct Mailbox;

/// An empty folder called `name`.
fn folder(name: String) -> FolderInfo {
    FolderInfo {
        name,
        uid_validity: 0,
        uid_next: 0,
        total: 0,
        unseen: 0,
        size_bytes: 0,
    }
}

impl Guest for Mailbox {
    fn deliver(
        _ctx: OpContext,
        mail: NewMail,
        _place: Placement,
    ) -> Result<Delivered, MailboxError> {
        // `black_box` keeps the optimiser from proving the loop useless.
        let mut counter = mail.subject.len();
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }

    fn list_folder(_folder: String, _offset: u32, _limit: u32) -> Result<MailPage, MailboxError> {
        Ok(MailPage {
            total: 0,
            items: Vec::new(),
        })
    }

    fn get(id: String) -> Result<MailDetail, MailboxError> {
        Err(MailboxError::NotFound(id))
    }

    fn set_flags(
        _ctx: OpContext,
        _id: String,
        _add: FlagState,
        _remove: FlagState,
    ) -> Result<FlagState, MailboxError> {
        Ok(FlagState {
            flags: MailFlags::empty(),
            keywords: Vec::new(),
        })
    }

    fn move_mail(_ctx: OpContext, _id: String, _folder: String) -> Result<u32, MailboxError> {
        Ok(0)
    }

    fn delete_mail(_ctx: OpContext, _id: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn delete_history(_offset: u32, _limit: u32) -> Vec<Tombstone> {
        Vec::new()
    }

    fn search(
        _query: SearchQuery,
        _offset: u32,
        _limit: u32,
    ) -> Result<Vec<MailSummary>, MailboxError> {
        Ok(Vec::new())
    }

    fn search_among(
        _query: SearchQuery,
        _messages: Vec<u8>,
        _offset: u32,
        _limit: u32,
    ) -> Result<Vec<MailSummary>, MailboxError> {
        Ok(Vec::new())
    }

    fn message_refs(_offset: u32, _limit: u32) -> Vec<String> {
        Vec::new()
    }

    fn take_converted(_max: u32) -> Vec<Vec<u8>> {
        Vec::new()
    }

    fn create_folder(_ctx: OpContext, name: String) -> Result<FolderInfo, MailboxError> {
        Ok(folder(name))
    }

    fn rename_folder(
        _ctx: OpContext,
        _name: String,
        new_name: String,
    ) -> Result<FolderInfo, MailboxError> {
        Ok(folder(new_name))
    }

    fn delete_folder(_ctx: OpContext, _name: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn list_folders() -> Vec<FolderInfo> {
        Vec::new()
    }

    fn add_contact(_ctx: OpContext, _c: Contact) -> Result<(), MailboxError> {
        Ok(())
    }

    fn remove_contact(_ctx: OpContext, _address: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn list_contacts() -> Vec<Contact> {
        Vec::new()
    }

    fn add_sender(
        _ctx: OpContext,
        _which: SenderList,
        _pattern: String,
    ) -> Result<(), MailboxError> {
        Ok(())
    }

    fn remove_sender(
        _ctx: OpContext,
        _which: SenderList,
        _pattern: String,
    ) -> Result<(), MailboxError> {
        Ok(())
    }

    fn list_senders(_which: SenderList) -> Vec<String> {
        Vec::new()
    }

    fn classify_sender(_address: String) -> SenderStatus {
        SenderStatus::Unknown
    }

    fn set_preference(_ctx: OpContext, _key: String, _value: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn remove_preference(_ctx: OpContext, _key: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn get_preference(_key: String) -> Option<String> {
        None
    }

    fn list_preferences() -> Vec<(String, String)> {
        Vec::new()
    }

    fn install_plugin(_ctx: OpContext, _entry: PluginEntry) -> Result<(), MailboxError> {
        Ok(())
    }

    fn remove_plugin(_ctx: OpContext, _name: String) -> Result<(), MailboxError> {
        Ok(())
    }

    fn list_plugins() -> Vec<PluginEntry> {
        Vec::new()
    }

    fn stats() -> MailboxStats {
        MailboxStats {
            mails: 0,
            mail_bytes: 0,
            folders: 0,
            contacts: 0,
            tombstones: 0,
            plugins: 0,
            state_bytes: 0,
        }
    }

    fn set_replaying(_on: bool) {}

    fn state_digest() -> Vec<u8> {
        vec![0; 32]
    }

    fn snapshot_begin() -> SnapshotInfo {
        SnapshotInfo {
            schema_version: 0,
            size_bytes: 3 << 30,
        }
    }

    fn snapshot_read(_offset: u64, max_bytes: u32) -> Vec<u8> {
        vec![0; max_bytes as usize * 4]
    }

    fn snapshot_end() {}

    fn restore_begin(_schema_version: u32, _size_bytes: u64) -> Result<(), MailboxError> {
        Ok(())
    }

    fn restore_write(_chunk: Vec<u8>) -> Result<(), MailboxError> {
        Ok(())
    }

    fn restore_finish() -> Result<(), MailboxError> {
        Ok(())
    }
}

export!(Mailbox);
