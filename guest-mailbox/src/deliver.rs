//! Delivery: validating a new mail, filing it, and settling deliveries of
//! the same mail id that happened concurrently on different replicas.
//!
//! Delivery is idempotent by mail id. When two replicas each deliver the
//! same id (the sender retried towards another replica), both deliveries
//! reach every replica, in either order, with different contexts and maybe
//! different placements. The one with the smaller (hlc, replica) stamp
//! wins, whichever arrives first: its received time, placement, spam score
//! and content are kept. The earliest is chosen because every later change
//! to the mail (flags, moves) is stamped after the delivery it saw, hence
//! after the earliest one, so none of them is ever ignored as "older than
//! the delivery". On one replica a repeated delivery always has a larger
//! stamp, so it stays the plain no-op it always was.
//!
//! Which folders exist follows from where the winning placements put the
//! mails (`placement.rs`), so a losing duplicate, or the delivery of a
//! deleted id, creates no folder in any order.

use crate::error::{Result, check_size, invalid_argument, limit_reached, too_large};
use crate::hash::{Hash, from_hex};
use crate::limits::{
    ATTACHMENTS_MAX, KEYWORDS_MAX, MAIL_INDEX_BYTES_MAX, MAILBOX_INDEX_BYTES_MAX,
    MESSAGE_BYTES_MAX, MESSAGE_ID_BYTES_MAX, RECIPIENTS_MAX, REFERENCES_MAX,
};
use crate::mail::{FLAG_BITS, check_mail_id};
use crate::names::{INBOX, check_keyword};
use crate::state::{Attachment, Mailbox, Stamp, StoredMail};
use crate::wit::{Delivered, MailFlags, NewMail, OpContext, Placement};

/// The raw form of a hash the host sent, or `invalid-argument`.
fn hash_arg(what: &str, hex: &str) -> Result<Hash> {
    from_hex(hex).ok_or_else(|| {
        invalid_argument(format!(
            "{what} hash {hex:?} is not 64 lower-case hex digits"
        ))
    })
}

fn to_stored(ctx: &OpContext, mail: NewMail, place: &Placement) -> Result<StoredMail> {
    let stamp = Stamp::of(ctx);
    let attachments = mail
        .attachments
        .into_iter()
        .map(|a| {
            Ok(Attachment {
                hash: hash_arg("attachment", &a.hash)?,
                name: a.name,
                media_type: a.media_type,
                size_bytes: a.size_bytes,
                splice_at: a.splice_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StoredMail {
        folder: 0,
        uid: 0,
        from: mail.from,
        to: mail.to,
        cc: mail.cc,
        subject: mail.subject,
        date_ms: mail.date_ms,
        received_ms: ctx.now_ms,
        message_id: mail.message_id,
        in_reply_to: mail.in_reply_to,
        references: mail.references,
        blob: hash_arg("message", &mail.message.hash)?,
        blob_bytes: mail.message.size_bytes,
        size_bytes: mail.size_bytes,
        attachments,
        flags: place.flags.bits(),
        keywords: place.keywords.iter().cloned().collect(),
        // A NaN or infinite score would compare oddly in filters and UIs;
        // it carries no information, so it is dropped.
        spam_score: place.spam_score.filter(|s| s.is_finite()),
        delivered: stamp,
        last_move: None,
        flag_stamps: Default::default(),
        keyword_stamps: Default::default(),
        place: Mailbox::delivery_place(&place.folder),
    })
}

/// The placement `m` was filed with, as `Delivered::placement` reports
/// it: a delivery with it replays to what `m`'s delivery did, since
/// `to_stored` leaves each of its parts as it is.
fn applied(m: &StoredMail) -> Placement {
    Placement {
        folder: m.place.clone(),
        flags: m.flags(),
        keywords: m.keywords.iter().cloned().collect(),
        spam_score: m.spam_score,
    }
}

/// Checks a mail against the per-mail limits before it is stored. Counts
/// are checked before sizes, so a huge list is refused by its length.
fn validate(m: &StoredMail, place: &Placement) -> Result<()> {
    check_size("recipients", RECIPIENTS_MAX, m.to.len() + m.cc.len())?;
    check_size("references", REFERENCES_MAX, m.references.len())?;
    check_size("attachments", ATTACHMENTS_MAX, m.attachments.len())?;
    check_size("keywords", KEYWORDS_MAX, place.keywords.len())?;
    for k in &place.keywords {
        check_keyword(k)?;
    }
    let ids = std::iter::once(&m.message_id)
        .chain(&m.in_reply_to)
        .chain(&m.references);
    for id in ids {
        check_size("message id", MESSAGE_ID_BYTES_MAX, id.len())?;
    }
    let index = m.index_bytes();
    if index > MAIL_INDEX_BYTES_MAX {
        return Err(too_large("mail index bytes", MAIL_INDEX_BYTES_MAX, index));
    }
    for (what, size) in [
        ("message bytes", m.size_bytes),
        ("stored bytes", m.blob_bytes),
    ] {
        if size > MESSAGE_BYTES_MAX {
            return Err(too_large(what, MESSAGE_BYTES_MAX, size));
        }
    }
    // Cut parts go back in the order they were cut, each at a position
    // inside the stored bytes; equal positions keep list order.
    let mut last = 0;
    for at in m.attachments.iter().filter_map(|a| a.splice_at) {
        if at < last || at > m.blob_bytes {
            return Err(invalid_argument(format!(
                "attachment splice position {at} is out of order or past the {} stored bytes",
                m.blob_bytes
            )));
        }
        last = at;
    }
    Ok(())
}

/// Takes `winner`'s content and placement into `m`, keeping every flag,
/// keyword and move made after delivery (those carry their own stamps).
/// Returns whether the mail must move to the winner's folder.
fn adopt(m: &mut StoredMail, winner: StoredMail) -> bool {
    let never_moved = m.last_move.is_none();
    let mut flags = MailFlags::from_bits_truncate(winner.flags);
    for bit in FLAG_BITS {
        if m.flag_stamps.contains_key(&bit.bits()) {
            flags.set(bit, m.flags().contains(bit));
        }
    }
    let mut keywords = winner.keywords;
    keywords.retain(|k| !m.keyword_stamps.contains_key(k));
    keywords.extend(
        m.keywords
            .iter()
            .filter(|k| m.keyword_stamps.contains_key(*k))
            .cloned(),
    );
    *m = StoredMail {
        folder: m.folder,
        uid: m.uid,
        flags: flags.bits(),
        keywords,
        // Still unmoved, the winner's delivery stamps the placement.
        last_move: m.last_move,
        place: if never_moved {
            winner.place
        } else {
            std::mem::take(&mut m.place)
        },
        flag_stamps: std::mem::take(&mut m.flag_stamps),
        keyword_stamps: std::mem::take(&mut m.keyword_stamps),
        ..winner
    };
    never_moved
}

impl Mailbox {
    fn uid_available(&self, folder: &str) -> bool {
        self.state
            .folders
            .get(folder)
            .is_none_or(|f| f.uid_next < u32::MAX)
    }

    pub fn deliver(
        &mut self,
        ctx: &OpContext,
        mail: NewMail,
        place: Placement,
    ) -> Result<Delivered> {
        check_mail_id(&mail.id)?;
        let id = mail.id.clone();
        let mut m = to_stored(ctx, mail, &place)?;
        validate(&m, &place)?;
        let known = self.state.mails.contains_key(&id) || self.state.tombstones.contains_key(&id);
        let index = self.idx.index_bytes + m.index_bytes();
        if !known && index > MAILBOX_INDEX_BYTES_MAX {
            return Err(limit_reached(
                "mailbox index bytes",
                MAILBOX_INDEX_BYTES_MAX,
                index,
            ));
        }
        if !self.replaying {
            let folder = self.follow(&m.place, m.delivered);
            if self.ensure_folder(&folder).is_err() || !self.uid_available(&folder) {
                // At the folder limit (or with a folder's UIDs used up)
                // the mail goes to INBOX rather than being refused. The
                // answer's placement says so, and the host logs that, so
                // replays and replicas, which skip this check, do the same.
                m.place = INBOX.to_string();
            }
        }
        let placement = applied(&m);
        self.note_delivery(&placement.folder, m.delivered);
        if known {
            return self.deliver_again(&id, m, placement);
        }
        let mut folder = self.follow(&m.place, m.delivered);
        if self.ensure_folder_unchecked(&folder).is_err() || !self.uid_available(&folder) {
            folder = INBOX.to_string();
        }
        let (fid, uid) = self.take_uid(&folder)?;
        m.folder = fid;
        m.uid = uid;
        self.idx.add_mail(&id, &m);
        self.state.mails.insert(id, m);
        Ok(Delivered {
            uid,
            folder,
            duplicate: false,
            placement,
        })
    }

    /// A delivery of an id already here or deleted: settles which delivery
    /// wins (see the module comment) and reports a duplicate. `placement`
    /// is `new`'s: the note of its folder and, where it wins, its
    /// placement took effect, so a replay needs it, not the kept mail's.
    fn deliver_again(
        &mut self,
        id: &str,
        new: StoredMail,
        placement: Placement,
    ) -> Result<Delivered> {
        let Some(m) = self.state.mails.get(id) else {
            // Deleted: acknowledged but never brought back. There is no
            // folder or uid to report.
            return Ok(Delivered {
                uid: 0,
                folder: String::new(),
                duplicate: true,
                placement,
            });
        };
        if new.delivered < m.delivered {
            let mut m = self.state.mails.remove(id).expect("mail looked up above");
            self.idx.remove_mail(&m);
            let relocate = adopt(&mut m, new);
            self.idx.add_mail(id, &m);
            self.state.mails.insert(id.to_string(), m);
            if relocate {
                self.file_mail(id)?;
            }
        }
        let m = self
            .state
            .mails
            .get(id)
            .ok_or_else(|| crate::error::not_found(format!("mail {id:?}")))?;
        Ok(Delivered {
            uid: m.uid,
            folder: self.folder_name_of(m.folder).to_string(),
            duplicate: true,
            placement,
        })
    }
}

#[cfg(test)]
mod tests;
