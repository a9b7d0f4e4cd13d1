//! Mail operations: list, get, flags, move, delete (delivery is in
//! `deliver.rs`).
//!
//! Every mutation is deterministic given its `op-context`. Flag, keyword
//! and folder changes are last-writer-wins registers stamped with
//! (hlc, replica): a change older than the element's current stamp is
//! ignored, so replicas that apply the same operations in any order agree
//! on each mail's flags, keywords and folder. Stamps are kept per flag and
//! per keyword, not per mail, because `set-flags` is a delta: with one
//! stamp per mail, "add \Seen @1" then "add \Flagged @2" would keep both
//! flags in one order but lose \Seen in the other. A delete beats
//! everything: the tombstone outlives the mail, so a move, flag change or
//! delivery of that id arriving later leaves the mail deleted.

use std::collections::BTreeSet;

use crate::error::{Result, check_size, invalid_argument, limit_reached, not_found};
use crate::hash::to_hex;
use crate::limits::{
    KEYWORD_STAMPS_MAX, KEYWORDS_MAX, MAIL_ID_BYTES_MAX, PAGE_LIMIT_MAX, TOMBSTONES_MAX,
};
use crate::names::{check_keyword, folder_name};
use crate::state::{Mailbox, Stamp, StoredMail, TombstoneRec};
use crate::wit::{
    AttachmentRef, BlobRef, FlagState, MailDetail, MailFlags, MailPage, MailSummary, OpContext,
    Tombstone,
};

/// The flag bits one by one, for per-flag stamps.
pub(crate) const FLAG_BITS: [MailFlags; 5] = [
    MailFlags::SEEN,
    MailFlags::ANSWERED,
    MailFlags::FLAGGED,
    MailFlags::DRAFT,
    MailFlags::DELETED,
];

pub(crate) fn check_mail_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(invalid_argument("mail id is empty"));
    }
    check_size("mail id", MAIL_ID_BYTES_MAX, id.len())?;
    if id.chars().any(char::is_control) {
        return Err(invalid_argument("mail id contains a control character"));
    }
    Ok(())
}

impl Mailbox {
    pub(crate) fn summary(&self, id: &str, m: &StoredMail) -> MailSummary {
        MailSummary {
            id: id.to_string(),
            folder: self.folder_name_of(m.folder).to_string(),
            uid: m.uid,
            from: m.from.clone(),
            to: m.to.clone(),
            cc: m.cc.clone(),
            subject: m.subject.clone(),
            date_ms: m.date_ms,
            received_ms: m.received_ms,
            message_id: m.message_id.clone(),
            in_reply_to: m.in_reply_to.clone(),
            flags: m.flags(),
            keywords: m.keywords.iter().cloned().collect(),
            size_bytes: m.size_bytes,
            attachment_count: u32::try_from(m.attachments.len()).unwrap_or(u32::MAX),
            spam_score: m.spam_score,
        }
    }

    /// Hands out the next UID of `folder`.
    pub(crate) fn take_uid(&mut self, folder: &str) -> Result<(u32, u32)> {
        let f = self
            .state
            .folders
            .get_mut(folder)
            .ok_or_else(|| not_found(format!("folder {folder:?}")))?;
        let uid = f.uid_next;
        f.uid_next = uid
            .checked_add(1)
            .ok_or_else(|| limit_reached("uid", u32::MAX, u64::from(u32::MAX) + 1))?;
        Ok((f.uid_validity, uid))
    }

    pub fn list_folder(&self, folder: &str, offset: u32, limit: u32) -> Result<MailPage> {
        let name = folder_name(folder)?;
        let f = self
            .state
            .folders
            .get(&name)
            .ok_or_else(|| not_found(format!("folder {name:?}")))?;
        let fi = self.idx.folder(f.uid_validity);
        let limit = limit.min(PAGE_LIMIT_MAX) as usize;
        let items = fi
            .by_date
            .values()
            .rev()
            .skip(offset as usize)
            .take(limit)
            .filter_map(|id| self.state.mails.get(id).map(|m| self.summary(id, m)))
            .collect();
        Ok(MailPage {
            total: u32::try_from(fi.by_date.len()).unwrap_or(u32::MAX),
            items,
        })
    }

    /// The mail's summary and where its bytes are; the host reads the
    /// message from its blob store and splices the attachments back.
    pub fn get(&self, id: &str) -> Result<MailDetail> {
        let m = self
            .state
            .mails
            .get(id)
            .ok_or_else(|| not_found(format!("mail {id:?}")))?;
        Ok(MailDetail {
            summary: self.summary(id, m),
            references: m.references.clone(),
            message: BlobRef {
                hash: to_hex(&m.blob),
                size_bytes: m.blob_bytes,
            },
            attachments: m
                .attachments
                .iter()
                .map(|a| AttachmentRef {
                    hash: to_hex(&a.hash),
                    name: a.name.clone(),
                    media_type: a.media_type.clone(),
                    size_bytes: a.size_bytes,
                    splice_at: a.splice_at,
                })
                .collect(),
        })
    }

    pub fn set_flags(
        &mut self,
        ctx: &OpContext,
        id: &str,
        add: &FlagState,
        remove: &FlagState,
    ) -> Result<FlagState> {
        check_size("keywords", KEYWORDS_MAX, add.keywords.len())?;
        check_size("keywords", KEYWORDS_MAX, remove.keywords.len())?;
        for k in add.keywords.iter().chain(&remove.keywords) {
            check_keyword(k)?;
        }
        let stamp = Stamp::of(ctx);
        let m = self
            .state
            .mails
            .get_mut(id)
            .ok_or_else(|| not_found(format!("mail {id:?}")))?;

        // Work out the keyword changes that win before touching anything,
        // so a change that would go over the keyword limit fails whole. An
        // element in both `add` and `remove` ends up set.
        let wins = |m: &StoredMail, k: &String| {
            stamp > m.keyword_stamps.get(k).copied().unwrap_or(m.delivered)
        };
        // Sets, since a client may repeat a keyword within one list.
        let removals: BTreeSet<&String> = remove
            .keywords
            .iter()
            .filter(|k| !add.keywords.contains(k) && wins(m, k))
            .collect();
        let additions: BTreeSet<&String> = add.keywords.iter().filter(|k| wins(m, k)).collect();
        let count = m.keywords.len() - removals.iter().filter(|k| m.keywords.contains(**k)).count()
            + additions
                .iter()
                .filter(|k| !m.keywords.contains(**k))
                .count();
        if count > KEYWORDS_MAX {
            return Err(limit_reached("keywords", KEYWORDS_MAX, count));
        }

        let was_seen = m.seen();
        for bit in FLAG_BITS {
            let wanted = if add.flags.contains(bit) {
                true
            } else if remove.flags.contains(bit) {
                false
            } else {
                continue;
            };
            let key = bit.bits();
            if stamp > m.flag_stamps.get(&key).copied().unwrap_or(m.delivered) {
                let mut flags = m.flags();
                flags.set(bit, wanted);
                m.flags = flags.bits();
                m.flag_stamps.insert(key, stamp);
            }
        }
        for k in removals {
            m.keywords.remove(k);
            m.keyword_stamps.insert(k.clone(), stamp);
        }
        for k in additions {
            m.keywords.insert(k.clone());
            m.keyword_stamps.insert(k.clone(), stamp);
        }
        prune_keyword_stamps(m);

        let now_seen = m.seen();
        let state = FlagState {
            flags: m.flags(),
            keywords: m.keywords.iter().cloned().collect(),
        };
        let folder = m.folder;
        if was_seen != now_seen {
            let fi = self.idx.folder_mut(folder);
            if now_seen {
                fi.unseen -= 1;
            } else {
                fi.unseen += 1;
            }
        }
        Ok(state)
    }

    /// Moves a mail (last writer wins by stamp). A deleted mail is
    /// `not-found`: a delete beats a concurrent move.
    pub fn move_mail(&mut self, ctx: &OpContext, id: &str, folder: &str) -> Result<u32> {
        let stamp = Stamp::of(ctx);
        let target = self.check_move_target(folder)?;
        let Some(m) = self.state.mails.get_mut(id) else {
            return Err(not_found(format!("mail {id:?}")));
        };
        if stamp <= m.moved() {
            return Ok(m.uid);
        }
        let (place, moved) = (std::mem::replace(&mut m.place, target), m.last_move);
        // Record the stamp even for a move to the current folder: an older
        // move arriving later must lose against it, as it would had it
        // arrived first. It is past the delivery's, so never `None`'s.
        m.last_move = Some(stamp);
        self.file_mail(id).inspect_err(|_| {
            if let Some(m) = self.state.mails.get_mut(id) {
                m.place = place;
                m.last_move = moved;
            }
        })
    }

    /// Files mail `id` into `folder` under a fresh UID, keeping its stamps.
    pub(crate) fn relocate(&mut self, id: &str, folder: &str) -> Result<u32> {
        let fid = self.state.folders[folder].uid_validity;
        let mut m = self.state.mails.remove(id).expect("relocated mail exists");
        if m.folder == fid {
            let uid = m.uid;
            self.state.mails.insert(id.to_string(), m);
            return Ok(uid);
        }
        self.idx.remove_mail(&m);
        let (fid, uid) = match self.take_uid(folder) {
            Ok(v) => v,
            Err(e) => {
                // Put it back untouched.
                self.idx.add_mail(id, &m);
                self.state.mails.insert(id.to_string(), m);
                return Err(e);
            }
        };
        m.folder = fid;
        m.uid = uid;
        self.idx.add_mail(id, &m);
        self.state.mails.insert(id.to_string(), m);
        Ok(uid)
    }

    /// Deletes a mail, leaving a tombstone so it never comes back. An id
    /// never seen here is recorded too: the delete may come from a replica
    /// that had the mail before this one got it, and the delivery arriving
    /// later must then stay deleted.
    pub fn delete_mail(&mut self, ctx: &OpContext, id: &str) -> Result<()> {
        check_mail_id(id)?;
        if let Some(m) = self.state.mails.remove(id) {
            self.idx.remove_mail(&m);
            let left = self.folder_name_of(m.folder).to_string();
            self.prune_folder(&left);
        }
        self.record_tombstone(id, ctx);
        Ok(())
    }

    /// Records that `id` was deleted.
    ///
    /// Trade-off: tombstones are capped at `TOMBSTONES_MAX` and the oldest
    /// are dropped. A mail whose tombstone was dropped could come back if
    /// its delivery were replayed much later; the cap keeps a long-lived
    /// mailbox from growing without bound (a million deletes already cost
    /// tens of MiB), and a delivery replayed after a million later deletes
    /// is far outside any host's retry or sync window.
    /// Concurrent deletes of one id keep the earliest record by stamp, so
    /// the history reads the same on every replica.
    fn record_tombstone(&mut self, id: &str, ctx: &OpContext) {
        let stamp = Stamp::of(ctx);
        if let Some(old) = self.state.tombstones.get(id) {
            if old.stamp() <= stamp {
                return;
            }
            self.idx
                .tomb_order
                .remove(&(old.deleted_ms, old.hlc, id.to_string()));
        }
        self.state.tombstones.insert(
            id.to_string(),
            TombstoneRec {
                deleted_ms: ctx.now_ms,
                hlc: ctx.hlc,
                replica: ctx.replica,
            },
        );
        self.idx
            .tomb_order
            .insert((ctx.now_ms, ctx.hlc, id.to_string()));
        while self.state.tombstones.len() > TOMBSTONES_MAX {
            let Some((_, _, oldest)) = self.idx.tomb_order.pop_first() else {
                break;
            };
            self.state.tombstones.remove(&oldest);
        }
    }

    pub fn delete_history(&self, offset: u32, limit: u32) -> Vec<Tombstone> {
        self.idx
            .tomb_order
            .iter()
            .skip(offset as usize)
            .take(limit.min(PAGE_LIMIT_MAX) as usize)
            .map(|(deleted_ms, hlc, id)| Tombstone {
                id: id.clone(),
                deleted_ms: *deleted_ms,
                hlc: *hlc,
            })
            .collect()
    }
}

/// Keeps a mail's keyword stamps bounded by forgetting the oldest stamps
/// of keywords that are not set. Forgetting one means an older, late "add"
/// of that keyword would win again; only a mail churning through more than
/// `KEYWORD_STAMPS_MAX` distinct keywords is exposed to that.
fn prune_keyword_stamps(m: &mut StoredMail) {
    while m.keyword_stamps.len() > KEYWORD_STAMPS_MAX {
        let oldest = m
            .keyword_stamps
            .iter()
            .filter(|(k, _)| !m.keywords.contains(*k))
            .min_by_key(|(k, s)| (**s, (*k).clone()))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => m.keyword_stamps.remove(&k),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests;
