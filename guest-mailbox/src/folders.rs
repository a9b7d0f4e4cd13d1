//! Folders: create, rename, delete, list.
//!
//! Folders form a `/`-separated hierarchy in which every folder's parent
//! exists (creating `a/b` creates `a`, as IMAP CREATE does), so "has
//! children" is a cheap range query over the name-ordered map. A folder's
//! uid-validity is also its id: mails refer to it, which makes a rename of
//! a whole subtree touch only folder entries, never mails.

use crate::error::{
    Result, already_exists, invalid_argument, limit_reached, not_allowed, not_found,
};
use crate::limits::FOLDERS_MAX;
use crate::names::{INBOX, SEPARATOR, folder_name, is_within, parent};
use crate::state::{Folder, FolderIndex, Mailbox};
use crate::wit::{FolderInfo, OpContext};

/// The first name after every name below `name` in byte order: `/` + 1
/// is `0`, so `name/` .. `name0` spans exactly the descendants.
fn descendants_end(name: &str) -> String {
    format!("{name}0")
}

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
    /// nothing; returns the folder's id.
    pub(crate) fn ensure_folder(&mut self, name: &str) -> Result<u32> {
        if let Some(f) = self.state.folders.get(name) {
            return Ok(f.uid_validity);
        }
        let missing = self.missing_chain(name);
        self.check_room(missing.len())?;
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

    fn has_children(&self, name: &str) -> bool {
        self.state
            .folders
            .range(format!("{name}{SEPARATOR}")..descendants_end(name))
            .next()
            .is_some()
    }

    pub fn create_folder(&mut self, _ctx: &OpContext, name: &str) -> Result<FolderInfo> {
        let name = folder_name(name)?;
        if self.state.folders.contains_key(&name) {
            return Err(already_exists(format!("folder {name:?}")));
        }
        self.ensure_folder(&name)?;
        let f = &self.state.folders[&name];
        Ok(self.folder_info(&name, f))
    }

    /// Renames a folder with all its descendants, keeping their mails,
    /// UIDs and uid-validity.
    pub fn rename_folder(
        &mut self,
        _ctx: &OpContext,
        name: &str,
        new_name: &str,
    ) -> Result<FolderInfo> {
        let (old, _) = self.existing(name)?;
        if old == INBOX {
            return Err(not_allowed("INBOX cannot be renamed"));
        }
        let new = folder_name(new_name)?;
        if self.state.folders.contains_key(&new) {
            return Err(already_exists(format!("folder {new:?}")));
        }
        if is_within(&new, &old) {
            return Err(invalid_argument(format!(
                "cannot move folder {old:?} into itself"
            )));
        }
        let mut moves = vec![old.clone()];
        moves.extend(
            self.state
                .folders
                .range(format!("{old}{SEPARATOR}")..descendants_end(&old))
                .map(|(n, _)| n.clone()),
        );
        let mut renamed = Vec::with_capacity(moves.len());
        for from in moves {
            let to = folder_name(&format!("{new}{}", &from[old.len()..]))?;
            if self.state.folders.contains_key(&to) {
                return Err(already_exists(format!("folder {to:?}")));
            }
            renamed.push((from, to));
        }
        if let Some(p) = parent(&new) {
            let missing = self.missing_chain(p);
            self.check_room(missing.len())?;
            for n in missing {
                self.insert_folder(n);
            }
        }
        for (from, to) in renamed {
            if let Some(f) = self.state.folders.remove(&from) {
                self.idx.folder_mut(f.uid_validity).name = to.clone();
                self.state.folders.insert(to, f);
            }
        }
        let f = &self.state.folders[&new];
        Ok(self.folder_info(&new, f))
    }

    pub fn delete_folder(&mut self, _ctx: &OpContext, name: &str) -> Result<()> {
        let (name, f) = self.existing(name)?;
        if name == INBOX {
            return Err(not_allowed("INBOX cannot be deleted"));
        }
        let id = f.uid_validity;
        let total = self.idx.folder(id).by_date.len();
        if total > 0 {
            return Err(not_allowed(format!(
                "folder {name:?} still holds {total} mails"
            )));
        }
        if self.has_children(&name) {
            return Err(not_allowed(format!("folder {name:?} has child folders")));
        }
        self.state.folders.remove(&name);
        self.idx.folders.remove(&id);
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
#[path = "folders_tests.rs"]
mod tests;
