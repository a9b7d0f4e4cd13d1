//! Folders: create, rename, delete, list.
//!
//! Folders form a `/`-separated hierarchy in which every folder's parent
//! exists (creating `a/b` creates `a`, as IMAP CREATE does), so "has
//! children" is a cheap range query over the name-ordered map. A folder's
//! uid-validity is also its id: mails refer to it, which makes a rename of
//! a whole subtree touch only folder entries, never mails.
//!
//! A new change is checked here against what the user sees and refused if
//! it does not fit; an accepted one goes into the folder history
//! (`folder_log.rs`), from which `placement.rs` derives the folders, so
//! replicas agree whatever order concurrent changes reach them in. A
//! replayed change is never refused for the state it meets.

use crate::error::{
    Result, already_exists, invalid_argument, limit_reached, not_allowed, not_found,
};
use crate::folder_log::FolderOp;
use crate::limits::FOLDERS_MAX;
use crate::names::{INBOX, folder_name, is_within, parent};
use crate::state::{Folder, FolderIndex, Mailbox, Stamp};
use crate::wit::{FolderInfo, OpContext};

impl Mailbox {
    pub(crate) fn folder_info(&self, name: &str, f: &Folder) -> FolderInfo {
        let fi = self.idx.folder(f.uid_validity);
        FolderInfo {
            name: name.to_string(),
            uid_validity: f.uid_validity,
            uid_next: f.uid_next,
            total: u32::try_from(fi.by_date.len()).unwrap_or(u32::MAX),
            unseen: fi.unseen,
            size_bytes: fi.bytes,
        }
    }

    /// Names of `name` and its ancestors that do not exist yet, outermost
    /// first.
    fn missing_chain(&self, name: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let mut cur = Some(name);
        while let Some(n) = cur {
            if self.state.folders.contains_key(n) {
                break;
            }
            missing.push(n.to_string());
            cur = parent(n);
        }
        missing.reverse();
        missing
    }

    fn check_room(&self, extra: usize) -> Result<()> {
        let total = self.state.folders.len() + extra;
        if total > FOLDERS_MAX {
            return Err(limit_reached("folders", FOLDERS_MAX, total));
        }
        let needed = u32::try_from(extra).unwrap_or(u32::MAX);
        if self.state.next_uid_validity.checked_add(needed).is_none() {
            return Err(limit_reached("uid-validity", u32::MAX, u64::MAX));
        }
        Ok(())
    }

    fn insert_folder(&mut self, name: String) -> u32 {
        let id = self.state.next_uid_validity;
        self.state.next_uid_validity += 1;
        self.idx.folders.insert(
            id,
            FolderIndex {
                name: name.clone(),
                ..FolderIndex::default()
            },
        );
        self.state.folders.insert(
            name,
            Folder {
                uid_validity: id,
                uid_next: 1,
            },
        );
        id
    }

    /// Creates the canonical `name` and any missing ancestors, all or
    /// nothing; returns the folder's id. A new change is held to the
    /// folder limit; a replayed one was accepted at its origin, and
    /// refusing it here would make this replica differ.
    pub(crate) fn ensure_folder(&mut self, name: &str) -> Result<u32> {
        if let Some(f) = self.state.folders.get(name) {
            return Ok(f.uid_validity);
        }
        let missing = self.missing_chain(name);
        if !self.replaying {
            self.check_room(missing.len())?;
        }
        self.insert_chain(missing)
    }

    /// [`Mailbox::ensure_folder`] without the folder limit, for folders
    /// that merge rules (not a user) bring into being.
    pub(crate) fn ensure_folder_unchecked(&mut self, name: &str) -> Result<u32> {
        if let Some(f) = self.state.folders.get(name) {
            return Ok(f.uid_validity);
        }
        let missing = self.missing_chain(name);
        self.insert_chain(missing)
    }

    fn insert_chain(&mut self, missing: Vec<String>) -> Result<u32> {
        let needed = u32::try_from(missing.len()).unwrap_or(u32::MAX);
        if self.state.next_uid_validity.checked_add(needed).is_none() {
            return Err(limit_reached("uid-validity", u32::MAX, u64::MAX));
        }
        let mut id = 0;
        for n in missing {
            id = self.insert_folder(n);
        }
        Ok(id)
    }

    pub(crate) fn existing(&self, name: &str) -> Result<(String, &Folder)> {
        let name = folder_name(name)?;
        match self.state.folders.get(&name) {
            Some(f) => Ok((name, f)),
            None => Err(not_found(format!("folder {name:?}"))),
        }
    }

    /// The folder's info after a change, or `not-found` if a change
    /// stamped later (replayed here first) took the name away again.
    fn info_of(&self, name: &str) -> Result<FolderInfo> {
        let (name, f) = self.existing(name)?;
        Ok(self.folder_info(&name, f))
    }

    pub fn create_folder(&mut self, ctx: &OpContext, name: &str) -> Result<FolderInfo> {
        let name = folder_name(name)?;
        if !self.replaying {
            if self.state.folders.contains_key(&name) {
                return Err(already_exists(format!("folder {name:?}")));
            }
            self.check_room(self.missing_chain(&name).len())?;
        }
        self.record_folder_op(Stamp::of(ctx), FolderOp::Create(name.clone()));
        self.info_of(&name)
    }

    /// Renames a folder with all its descendants, keeping their mails,
    /// UIDs and uid-validity. How it merges with concurrent changes is in
    /// `folder_log.rs` and `placement.rs`.
    pub fn rename_folder(
        &mut self,
        ctx: &OpContext,
        name: &str,
        new_name: &str,
    ) -> Result<FolderInfo> {
        let old = folder_name(name)?;
        let new = folder_name(new_name)?;
        if old == INBOX {
            return Err(not_allowed("INBOX cannot be renamed"));
        }
        if !self.replaying {
            self.existing(&old)?;
            if self.state.folders.contains_key(&new) {
                return Err(already_exists(format!("folder {new:?}")));
            }
        }
        if is_within(&new, &old) {
            return Err(invalid_argument(format!(
                "cannot move folder {old:?} into itself"
            )));
        }
        if !self.replaying {
            // Every folder moving along must get a valid name too.
            let prefix = format!("{old}/");
            for n in self.state.folders.range(prefix.clone()..format!("{old}0")) {
                folder_name(&format!("{new}/{}", &n.0[prefix.len()..]))?;
            }
            if let Some(p) = parent(&new) {
                self.check_room(self.missing_chain(p).len())?;
            }
        }
        self.record_folder_op(Stamp::of(ctx), FolderOp::Rename(old, new.clone()));
        self.info_of(&new)
    }

    /// Deletes an empty folder without children.
    pub fn delete_folder(&mut self, ctx: &OpContext, name: &str) -> Result<()> {
        let name = folder_name(name)?;
        if name == INBOX {
            return Err(not_allowed("INBOX cannot be deleted"));
        }
        if !self.replaying {
            let (_, f) = self.existing(&name)?;
            let total = self.idx.folder(f.uid_validity).by_date.len();
            if total > 0 {
                return Err(not_allowed(format!(
                    "folder {name:?} still holds {total} mails"
                )));
            }
            if self.has_children(&name) {
                return Err(not_allowed(format!("folder {name:?} has child folders")));
            }
        }
        self.record_folder_op(Stamp::of(ctx), FolderOp::Delete(name));
        Ok(())
    }

    /// All folders, INBOX first, then by name.
    pub fn list_folders(&self) -> Vec<FolderInfo> {
        let mut out = Vec::with_capacity(self.state.folders.len());
        if let Some(f) = self.state.folders.get(INBOX) {
            out.push(self.folder_info(INBOX, f));
        }
        out.extend(
            self.state
                .folders
                .iter()
                .filter(|(n, _)| n.as_str() != INBOX)
                .map(|(n, f)| self.folder_info(n, f)),
        );
        out
    }
}

#[cfg(test)]
mod tests;
