//! The state as schemas 4 and 5 lay it out, which differ only in `mails`:
//! schema 4 has each mail as a positional `StoredMail`, schema 5 as the
//! `bin` of that encoding, so a restore can keep the bytes and decode a
//! mail when it is read (`mails.rs`). Everything else is decoded as is.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::folder_log::FolderLog;
use crate::lww::LwwMap;
use crate::mails::{Mails, RawMails};
use crate::state::{ContactRec, Folder, MailboxState, PluginRec, StoredMail, TombstoneRec};

/// `MailboxState` with its mails as `M`; field names and order as there.
#[derive(Deserialize)]
pub struct StateOf<M> {
    mails: M,
    folders: BTreeMap<String, Folder>,
    tombstones: BTreeMap<String, TombstoneRec>,
    contacts: LwwMap<ContactRec>,
    allow: LwwMap<()>,
    block: LwwMap<()>,
    preferences: LwwMap<String>,
    plugins: LwwMap<PluginRec>,
    next_uid_validity: u32,
    folder_log: FolderLog,
}

/// Schema 4.
pub type StateV4 = StateOf<BTreeMap<String, StoredMail>>;

/// Schema 5, borrowing the mails' bytes from the snapshot.
pub type StateV5<'a> = StateOf<RawMails<'a>>;

impl<M> StateOf<M> {
    fn with_mails<N>(self, mails: N) -> (M, StateOf<N>) {
        let StateOf {
            mails: old,
            folders,
            tombstones,
            contacts,
            allow,
            block,
            preferences,
            plugins,
            next_uid_validity,
            folder_log,
        } = self;
        let state = StateOf {
            mails,
            folders,
            tombstones,
            contacts,
            allow,
            block,
            preferences,
            plugins,
            next_uid_validity,
            folder_log,
        };
        (old, state)
    }

    fn into_state(self) -> MailboxState
    where
        M: Into<Mails>,
    {
        let (mails, s) = self.with_mails(());
        MailboxState {
            mails: mails.into(),
            folders: s.folders,
            tombstones: s.tombstones,
            contacts: s.contacts,
            allow: s.allow,
            block: s.block,
            preferences: s.preferences,
            plugins: s.plugins,
            next_uid_validity: s.next_uid_validity,
            folder_log: s.folder_log,
        }
    }
}

impl From<StateV4> for MailboxState {
    fn from(v4: StateV4) -> MailboxState {
        v4.into_state()
    }
}

/// Decodes a schema-5 body at `body_at` in `snapshot`, keeping the
/// snapshot as the buffer the mails' entries are read from.
pub fn decode_v5(snapshot: Vec<u8>, body_at: usize) -> Result<MailboxState, String> {
    let (entries, rest) = {
        let v5: StateV5<'_> = super::decode_body(&snapshot[body_at..])?;
        let base = snapshot.as_ptr() as usize;
        let (raw, rest) = v5.with_mails(());
        let entries: Vec<(String, (u32, u32))> = raw
            .0
            .into_iter()
            .map(|(id, bytes)| {
                // Borrowed from `snapshot`, which `RESTORE_BYTES_MAX`
                // keeps under 4 GiB.
                let start = bytes.as_ptr() as usize - base;
                let at = (start as u32, bytes.len() as u32);
                (id.to_string(), at)
            })
            .collect();
        (entries, rest)
    };
    assert!(
        snapshot.len() <= u32::MAX as usize,
        "restore over its limit"
    );
    let mails = Mails::restored(snapshot, entries);
    let (_, state) = rest.with_mails(mails);
    Ok(state.into_state())
}
