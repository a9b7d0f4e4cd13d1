//! Folders: create, rename, delete, list.
//!
//! Folders form a `/`-separated hierarchy in which every folder's parent
//! exists (creating `a/b` creates `a`, as IMAP CREATE does), so "has
//! children" is a cheap range query over the name-ordered map. A folder's
//! uid-validity is also its id: mails refer to it, which makes a rename of
//! a whole subtree touch only folder entries, never mails. How names that
//! were deleted or renamed away resolve, so replicas agree whatever order
//! concurrent folder changes reach them in, is in `placement.rs`.

use crate::error::{
    Result, already_exists, invalid_argument, limit_reached, not_allowed, not_found,
};
use crate::limits::FOLDERS_MAX;
use crate::names::{INBOX, SEPARATOR, folder_name, is_within, parent};
use crate::state::{Folder, FolderIndex, Mailbox, Stamp};
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

    fn insert_folder(&mut self, name: String, named: Stamp) -> u32 {
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
                named,
            },
        );
        id
    }

    /// Creates the canonical `name` and any missing ancestors, all or
    /// nothing, named at `named`; returns the folder's id.
    pub(crate) fn ensure_folder(&mut self, name: &str, named: Stamp) -> Result<u32> {
        if let Some(f) = self.state.folders.get(name) {
            return Ok(f.uid_validity);
        }
        let missing = self.missing_chain(name);
        self.check_room(missing.len())?;
        let mut id = 0;
        for n in missing {
            id = self.insert_folder(n, named);
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
        self.descendants(name).next().is_some()
    }

    fn descendants(&self, name: &str) -> impl Iterator<Item = (&String, &Folder)> {
        self.state
            .folders
            .range(format!("{name}{SEPARATOR}")..descendants_end(name))
    }

    pub fn create_folder(&mut self, ctx: &OpContext, name: &str) -> Result<FolderInfo> {
        let stamp = Stamp::of(ctx);
        let name = self.follow_renames(&folder_name(name)?, stamp);
        let name = folder_name(&name)?;
        if self.state.folders.contains_key(&name) {
            return Err(already_exists(format!("folder {name:?}")));
        }
        self.ensure_folder(&name, stamp)?;
        let f = &self.state.folders[&name];
        Ok(self.folder_info(&name, f))
    }

    /// Renames a folder with all its descendants, keeping their mails,
    /// UIDs and uid-validity. A name already deleted or renamed away is
    /// settled by stamps (see `placement.rs`).
    pub fn rename_folder(
        &mut self,
        ctx: &OpContext,
        name: &str,
        new_name: &str,
    ) -> Result<FolderInfo> {
        let stamp = Stamp::of(ctx);
        let old = folder_name(name)?;
        if old == INBOX {
            return Err(not_allowed("INBOX cannot be renamed"));
        }
        let new = self.follow_renames(&folder_name(new_name)?, stamp);
        let new = folder_name(&new)?;
        if !self.state.folders.contains_key(&old) {
            return self.rename_gone(&old, &new, stamp);
        }
        self.rename_existing(&old, &new, stamp)
    }

    /// Renames `old` and the descendants named before `stamp` (one named
    /// later came after the rename in stamp order and stays).
    pub(crate) fn rename_existing(
        &mut self,
        old: &str,
        new: &str,
        stamp: Stamp,
    ) -> Result<FolderInfo> {
        if old == INBOX {
            return Err(not_allowed("INBOX cannot be renamed"));
        }
        if self.state.folders.contains_key(new) {
            return Err(already_exists(format!("folder {new:?}")));
        }
        if is_within(new, old) {
            return Err(invalid_argument(format!(
                "cannot move folder {old:?} into itself"
            )));
        }
        let mut moves = vec![old.to_string()];
        let mut stay = Vec::new();
        for (n, f) in self.descendants(old) {
            if f.named < stamp {
                moves.push(n.clone());
            } else {
                stay.push((n.clone(), f.named));
            }
        }
        let mut renamed = Vec::with_capacity(moves.len());
        for from in moves {
            let to = folder_name(&format!("{new}{}", &from[old.len()..]))?;
            if self.state.folders.contains_key(&to) {
                return Err(already_exists(format!("folder {to:?}")));
            }
            renamed.push((from, to));
        }
        if let Some(p) = parent(new) {
            let missing = self.missing_chain(p);
            self.check_room(missing.len())?;
            for n in missing {
                self.insert_folder(n, stamp);
            }
        }
        for (from, to) in &renamed {
            if let Some(mut f) = self.state.folders.remove(from) {
                f.named = stamp;
                self.idx.folder_mut(f.uid_validity).name = to.clone();
                self.state.folders.insert(to.clone(), f);
            }
        }
        self.record_gone(old, stamp, Some(new.to_string()));
        for (n, named) in stay {
            if let Some(p) = parent(&n) {
                self.ensure_folder(p, named)?;
            }
        }
        for (from, to) in &renamed {
            self.split_renamed(from, to, stamp)?;
        }
        let f = &self.state.folders[new];
        Ok(self.folder_info(new, f))
    }

    /// Deletes an empty folder without children. Deleting a name already
    /// gone is settled by stamps (see `placement.rs`).
    pub fn delete_folder(&mut self, ctx: &OpContext, name: &str) -> Result<()> {
        let stamp = Stamp::of(ctx);
        let name = folder_name(name)?;
        if name == INBOX {
            return Err(not_allowed("INBOX cannot be deleted"));
        }
        if !self.state.folders.contains_key(&name) {
            return self.delete_gone(&name, stamp);
        }
        self.delete_existing(&name, stamp, false)
    }

    /// `followed`: the delete named a folder since renamed, so its newer
    /// `named` stamp is expected.
    pub(crate) fn delete_existing(
        &mut self,
        name: &str,
        stamp: Stamp,
        followed: bool,
    ) -> Result<()> {
        if name == INBOX {
            return Err(not_allowed("INBOX cannot be deleted"));
        }
        let f = &self.state.folders[name];
        let (id, named) = (f.uid_validity, f.named);
        if named > stamp && !followed {
            // The folder got this name after the delete in stamp order: it
            // is not the folder the delete meant.
            return Ok(());
        }
        let total = self.idx.folder(id).by_date.len();
        if total > 0 {
            return Err(not_allowed(format!(
                "folder {name:?} still holds {total} mails"
            )));
        }
        if self.has_children(name) {
            return Err(not_allowed(format!("folder {name:?} has child folders")));
        }
        self.state.folders.remove(name);
        self.idx.folders.remove(&id);
        self.record_gone(name, stamp, None);
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
