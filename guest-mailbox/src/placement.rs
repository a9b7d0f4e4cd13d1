//! Where a folder name leads once folders were deleted or renamed,
//! possibly concurrently on another replica.
//!
//! Operations name folders, and a replica resolves the name against its
//! own state, which a concurrent rename or delete may already have changed.
//! `MailboxState::gone_folders` remembers, per name, the newest delete or
//! rename of it, and every folder carries the stamp since which it has its
//! name (`Folder::named`). With stamps (hlc, replica) and `t` the stamp of
//! the operation, the rules are:
//!
//! - A mail placed into `N` at `t` (delivery or move) follows a rename of
//!   `N` or of an ancestor stamped after `t`, as if it had been there
//!   before the rename; a rename stamped before `t` is not followed.
//!   Likewise a rename carries along only the mails placed before it
//!   ([`Mailbox::split_renamed`]) and the subfolders named before it; a
//!   folder created under a name follows that name's later-stamped rename.
//! - A mail placed into a name that went away re-creates the folder: a
//!   move beats a concurrent folder delete, the same outcome as when the
//!   move arrives first and the delete is refused because the folder is
//!   not empty. Moving into a name never known is still `not-found`.
//! - A delete stamped before the folder got its name is a no-op (it meant
//!   an earlier folder of that name).
//! - Delete and rename of a name that is gone itself: the newest stamp
//!   wins; a newer one applies to where a rename took it, an older one is
//!   a no-op, a rename of a deleted name creates the target. Of a name
//!   gone with a renamed ancestor: it applies to where the ancestor went.
//!
//! This settles every race between two folder operations, or a folder
//! operation and a move or delivery (`folder_race_tests.rs`), except one:
//! a rename onto a name that another replica creates concurrently (by
//! create, delivery or another rename) is refused in one order and applied
//! in the other. Longer concurrent histories can still diverge, chiefly
//! where a folder delete is refused as "not empty" in one order but not
//! another (a mail moved in and out elsewhere). Closing those needs
//! operations that carry more than names, such as folder ids.

use crate::error::{Result, not_found};
use crate::limits::{FOLDER_RENAME_HOPS_MAX, GONE_FOLDERS_MAX};
use crate::names::{INBOX, folder_name, parent};
use crate::state::{GoneFolder, Mailbox, Stamp};
use crate::wit::FolderInfo;

impl Mailbox {
    /// Follows renames of `name`, or of its nearest renamed ancestor,
    /// stamped after `t`; after each hop `t` becomes that rename's stamp,
    /// as the name only exists since then.
    pub(crate) fn follow_renames(&self, name: &str, mut t: Stamp) -> String {
        let mut name = name.to_string();
        for _ in 0..FOLDER_RENAME_HOPS_MAX {
            let Some((n, g)) = self.gone_root(&name) else {
                break;
            };
            match &g.renamed_to {
                Some(to) if g.stamp > t => {
                    name = format!("{to}{}", &name[n.len()..]);
                    t = g.stamp;
                }
                _ => break,
            }
        }
        name
    }

    /// The record of `name` or of its nearest ancestor that went away.
    fn gone_root<'a>(&self, name: &'a str) -> Option<(&'a str, &GoneFolder)> {
        let mut cur = Some(name);
        while let Some(n) = cur {
            if let Some(g) = self.state.gone_folders.get(n) {
                return Some((n, g));
            }
            cur = parent(n);
        }
        None
    }

    /// The folder a delivery at `t` lands in: the placement's folder after
    /// renames, created if missing (Sieve `fileinto :create`), or INBOX
    /// when the name is invalid or no folder can be created; a mail is
    /// never lost.
    pub(crate) fn delivery_folder(&mut self, name: &str, t: Stamp) -> String {
        let Ok(name) = folder_name(name) else {
            return INBOX.to_string();
        };
        let name = self.follow_renames(&name, t);
        if folder_name(&name).is_ok() && self.ensure_folder(&name, t).is_ok() {
            name
        } else {
            INBOX.to_string()
        }
    }

    /// The folder a move at `t` lands in; re-creates it if it went away.
    pub(crate) fn move_target(&mut self, name: &str, t: Stamp) -> Result<String> {
        let name = folder_name(&self.follow_renames(&folder_name(name)?, t))?;
        if !self.state.folders.contains_key(&name) {
            // IMAP MOVE to a missing folder fails (TRYCREATE) rather than
            // creating it: a typo should not spawn folders. A name that
            // existed is no typo.
            if self.gone_root(&name).is_none() {
                return Err(not_found(format!("folder {name:?}")));
            }
            self.ensure_folder(&name, t)?;
        }
        Ok(name)
    }

    /// Remembers that `name` was deleted or renamed at `stamp`, keeping the
    /// newest record per name.
    ///
    /// Trade-off: at most `GONE_FOLDERS_MAX` names are remembered, the
    /// oldest dropped first; an operation naming a forgotten name behaves
    /// as if it never existed, which only matters for operations delayed
    /// across that many folder deletes.
    pub(crate) fn record_gone(&mut self, name: &str, stamp: Stamp, renamed_to: Option<String>) {
        let gone = &mut self.state.gone_folders;
        if gone.get(name).is_some_and(|g| g.stamp >= stamp) {
            return;
        }
        gone.insert(name.to_string(), GoneFolder { stamp, renamed_to });
        if gone.len() > GONE_FOLDERS_MAX {
            let oldest = gone
                .iter()
                .min_by_key(|(n, g)| (g.stamp, *n))
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                gone.remove(&n);
            }
        }
    }

    /// After renaming folder `from` to `to` at `t`: mails now in `to` that
    /// were placed after `t` (a concurrent move or delivery into `from`
    /// that arrived before the rename) go back to `from`, re-created, with
    /// fresh UIDs, where they would be had they arrived after it.
    pub(crate) fn split_renamed(&mut self, from: &str, to: &str, t: Stamp) -> Result<()> {
        let Some(f) = self.state.folders.get(to) else {
            return Ok(());
        };
        let late: Vec<(String, Stamp)> = self
            .idx
            .folder(f.uid_validity)
            .by_date
            .values()
            .filter_map(|id| {
                let m = self.state.mails.get(id)?;
                (m.moved > t).then(|| (id.clone(), m.moved))
            })
            .collect();
        let Some(first) = late.iter().map(|(_, s)| *s).min() else {
            return Ok(());
        };
        self.ensure_folder(from, first)?;
        for (id, _) in late {
            self.relocate(&id, from)?;
        }
        Ok(())
    }

    /// Rename of a name that no longer exists. Renamed or deleted itself:
    /// the newest stamp wins. Gone with a renamed ancestor: the rename
    /// applies to where the ancestor went.
    pub(crate) fn rename_gone(&mut self, old: &str, new: &str, stamp: Stamp) -> Result<FolderInfo> {
        let cur = self.follow_renames(old, Stamp::default());
        let Some(gone) = self.state.gone_folders.get(old).cloned() else {
            if cur != old && self.state.folders.contains_key(&cur) {
                return self.rename_existing(&cur, new, stamp);
            }
            return Err(not_found(format!("folder {old:?}")));
        };
        if gone.stamp >= stamp {
            // A newer delete or rename of `old` won. Only a replayed
            // operation gets here (a new one is the newest), so the error
            // is never seen by a user; the target name is marked as going
            // where the winner went, which is what it gets when this
            // rename arrives first and the winner then follows it.
            self.record_gone(new, gone.stamp, gone.renamed_to);
            return Err(not_found(format!("folder {old:?}")));
        }
        let info =
            if gone.renamed_to.is_some() && cur != new && self.state.folders.contains_key(&cur) {
                self.rename_existing(&cur, new, stamp)?
            } else {
                self.ensure_folder(new, stamp)?;
                self.folder_info(new, &self.state.folders[new])
            };
        self.record_gone(old, stamp, Some(new.to_string()));
        Ok(info)
    }

    /// Delete of a name that no longer exists, by the same rules as
    /// [`Mailbox::rename_gone`]; deleting a deleted folder again is fine.
    pub(crate) fn delete_gone(&mut self, name: &str, stamp: Stamp) -> Result<()> {
        let cur = self.follow_renames(name, Stamp::default());
        let Some(gone) = self.state.gone_folders.get(name).cloned() else {
            if cur != name && self.state.folders.contains_key(&cur) {
                self.delete_existing(&cur, stamp, true)?;
                self.record_gone(name, stamp, None);
                return Ok(());
            }
            return Err(not_found(format!("folder {name:?}")));
        };
        if gone.stamp >= stamp {
            return Ok(());
        }
        if gone.renamed_to.is_some() && self.state.folders.contains_key(&cur) {
            self.delete_existing(&cur, stamp, true)?;
        }
        self.record_gone(name, stamp, None);
        Ok(())
    }
}
