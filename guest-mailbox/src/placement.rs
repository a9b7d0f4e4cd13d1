//! Where each mail is and which folders exist, as a function of the folder
//! history and each mail's winning placement, so that replicas agree
//! whatever order concurrent changes reach them in.
//!
//! A mail's placement is last-writer-wins: the delivery, or the newest
//! move by stamp, names a folder (`StoredMail::place`) at a stamp
//! (`StoredMail::moved`). The mail is in that folder after every rename
//! the history applied to it, or to an ancestor, stamped later
//! ([`Replayed::follow`]): a mail placed before a rename goes along, one
//! placed after it stays under the old name. The folders that exist are
//! the history's tree plus every folder holding a mail, with their
//! parents. So:
//!
//! - a move into a folder deleted concurrently keeps the folder (the same
//!   as when the delete comes second and is refused because the folder is
//!   not empty), and it goes away again when its last mail leaves;
//! - a rename onto a name created concurrently merges the two folders;
//! - a delete refused in one order and not in another cannot happen: the
//!   history's tree ignores mails, and a folder emptied by a later move
//!   disappears from the same rule in every order.
//!
//! Nothing here depends on arrival order except IMAP UIDs and
//! uid-validity, which are local (see `digest.rs`). A folder change
//! re-derives every mail's folder ([`Mailbox::settle_folders`]); a move or
//! delivery only files its own mail.

use std::collections::BTreeSet;

use crate::error::{Result, not_found};
use crate::folder_log::{Filed, FolderOp, add_with_ancestors, rebase};
use crate::names::{INBOX, folder_name, parent};
use crate::state::{Mailbox, Stamp};

impl Mailbox {
    /// The folder a placement into `name` at `t` leads to now.
    pub(crate) fn follow(&self, name: &str, t: Stamp) -> String {
        self.idx.history.follow(name, t)
    }

    /// The folder a delivery names: the placement's folder if valid, INBOX
    /// otherwise; a mail is never lost for a bad name.
    pub(crate) fn delivery_place(name: &str) -> String {
        folder_name(name).unwrap_or_else(|_| INBOX.to_string())
    }

    /// Checks a move's target at its origin: a folder that exists, or one
    /// the history knows (re-created by the move). A name never known is a
    /// typo (IMAP MOVE answers TRYCREATE rather than creating it). A
    /// replayed move was checked at its origin, and the create it relied
    /// on may simply not have arrived yet.
    pub(crate) fn check_move_target(&self, name: &str) -> Result<String> {
        let name = folder_name(name)?;
        if self.replaying
            || self.state.folders.contains_key(&name)
            || self.state.folder_log.mentions(&name)
        {
            return Ok(name);
        }
        Err(not_found(format!("folder {name:?}")))
    }

    /// Files mail `id` where its placement leads, creating that folder if
    /// needed and dropping the one it left if nothing keeps it.
    pub(crate) fn file_mail(&mut self, id: &str) -> Result<u32> {
        let m = self.state.mails.get(id).ok_or_else(|| not_found(id))?;
        let target = self.follow(&m.place, m.moved());
        let left = self.folder_name_of(m.folder).to_string();
        self.ensure_folder(&target)?;
        let uid = self.relocate(id, &target)?;
        self.prune_folder(&left);
        Ok(uid)
    }

    /// Removes `name` and then its parents while nothing keeps them: not
    /// in the history's tree, no mails, no child folders.
    pub(crate) fn prune_folder(&mut self, name: &str) {
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            let Some(f) = self.state.folders.get(&n) else {
                break;
            };
            let id = f.uid_validity;
            if self.idx.history.tree.contains(&n)
                || !self.idx.folder(id).by_date.is_empty()
                || self.has_children(&n)
            {
                break;
            }
            self.state.folders.remove(&n);
            self.idx.folders.remove(&id);
            cur = parent(&n).map(str::to_string);
        }
    }

    /// Records a folder change in the history and re-derives the folders
    /// and every mail's place from it.
    pub(crate) fn record_folder_op(&mut self, stamp: Stamp, op: FolderOp) {
        let (added, folded) = self.state.folder_log.push(stamp, op);
        if added {
            self.after_fold(folded);
            self.settle_folders();
        }
    }

    /// Records a delivery into `place` at `t`, which creates that folder
    /// (`folder_log.rs`).
    pub(crate) fn note_delivery(&mut self, place: &str, t: Stamp) {
        let (filed, folded) = self.state.folder_log.note_filed(place, t);
        self.after_fold(folded);
        match filed {
            Filed::Same => {}
            Filed::Added => {
                add_with_ancestors(&mut self.idx.history.tree, place);
                // Only fails once uid-validity is exhausted.
                let _ = self.ensure_folder_unchecked(place);
            }
            Filed::Replay => self.settle_folders(),
        }
    }

    /// A rename folded into the base tree is no longer followed, so mails
    /// placed before it now name where it took them.
    fn after_fold(&mut self, folded: Option<(Stamp, FolderOp)>) {
        if let Some((t, FolderOp::Rename(from, to))) = folded {
            for m in self.state.mails.values_mut() {
                if m.moved() < t
                    && let Some(p) = rebase(&m.place, &from, &to)
                {
                    m.place = p;
                }
            }
        }
    }

    /// Makes the folders and every mail's folder what the history and the
    /// placements give. A folder that left the tree because it was renamed
    /// keeps its uid-validity under the new name, so its mails keep their
    /// UIDs and IMAP clients need not resync.
    pub(crate) fn settle_folders(&mut self) {
        self.idx.history = self.state.folder_log.replay();
        let targets: Vec<(String, String)> = self
            .state
            .mails
            .iter()
            .map(|(id, m)| {
                let place = if m.place.is_empty() {
                    self.folder_name_of(m.folder)
                } else {
                    &m.place
                };
                (id.clone(), self.follow(place, m.moved()))
            })
            .collect();
        let mut wanted: BTreeSet<String> = self.idx.history.tree.clone();
        for (_, t) in &targets {
            add_with_ancestors(&mut wanted, t);
        }
        for n in &self.folders_outside(&wanted) {
            let to = self.follow(n, Stamp::default());
            if &to != n && wanted.contains(&to) && !self.state.folders.contains_key(&to) {
                self.rename_entry(n, &to);
            }
        }
        for n in &wanted {
            // Only fails once uid-validity is exhausted; the folder's mails
            // then stay where they are.
            let _ = self.ensure_folder_unchecked(n);
        }
        for (id, t) in targets {
            let here = self.state.mails.get(&id).map(|m| m.folder);
            let there = self.state.folders.get(&t).map(|f| f.uid_validity);
            if here != there && there.is_some() {
                // Only fails when the target's UIDs are exhausted.
                let _ = self.relocate(&id, &t);
            }
        }
        for n in self.folders_outside(&wanted).iter().rev() {
            self.prune_folder(n);
        }
    }

    fn folders_outside(&self, wanted: &BTreeSet<String>) -> Vec<String> {
        let folders = self.state.folders.keys();
        folders.filter(|n| !wanted.contains(*n)).cloned().collect()
    }

    fn rename_entry(&mut self, from: &str, to: &str) {
        if let Some(f) = self.state.folders.remove(from) {
            self.idx.folder_mut(f.uid_validity).name = to.to_string();
            self.state.folders.insert(to.to_string(), f);
        }
    }

    pub(crate) fn has_children(&self, name: &str) -> bool {
        self.state
            .folders
            .range(format!("{name}/")..format!("{name}0"))
            .next()
            .is_some()
    }
}
