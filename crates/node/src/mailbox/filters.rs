//! The filter pipeline of a delivery: what a plugin sees of a mail, and how
//! the verdicts of the installed plugins, run in their configured order,
//! combine into one placement.
//!
//! Combination rules: the first `reject` stops the pipeline and the mail is
//! refused; a later `file-into` overrides an earlier one; `add-flags` and
//! `spam-score` accumulate. A plugin that fails is skipped (see
//! `runtime::filter`).

use dem_proto::mail::{MailFlags, MailView, NewMail, Placement, SenderStatus, Verdict};

/// Body bytes a filter sees; the rest is summarised by `body-size-bytes`.
pub const BODY_PREVIEW_BYTES: usize = 64 << 10;

/// Default folder of a mail no filter filed elsewhere.
pub const INBOX: &str = "INBOX";

/// What a filter may look at.
pub fn view_of(mail: &NewMail, sender: SenderStatus) -> MailView {
    let mut cut = mail.body.len().min(BODY_PREVIEW_BYTES);
    while !mail.body.is_char_boundary(cut) {
        cut -= 1;
    }
    MailView {
        id: mail.id.clone(),
        from: mail.from.clone(),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
        subject: mail.subject.clone(),
        date_ms: mail.date_ms,
        message_id: mail.message_id.clone(),
        headers: mail.headers.clone(),
        body_preview: mail.body[..cut].to_string(),
        body_size_bytes: mail.body.len() as u64,
        attachments: mail.attachments.clone(),
        sender,
    }
}

/// Accumulates verdicts into a placement.
#[derive(Debug, Clone)]
pub struct Placing {
    place: Placement,
}

impl Default for Placing {
    fn default() -> Self {
        Self {
            place: Placement {
                folder: INBOX.into(),
                flags: MailFlags::empty(),
                keywords: Vec::new(),
                spam_score: None,
            },
        }
    }
}

impl Placing {
    /// Applies one verdict; returns the reason if it rejects the mail.
    pub fn apply(&mut self, verdict: Verdict) -> Option<String> {
        match verdict {
            Verdict::Accept => None,
            Verdict::Reject(reason) => Some(reason),
            Verdict::FileInto(folder) => {
                self.place.folder = folder;
                None
            }
            Verdict::AddFlags(change) => {
                self.place.flags |= change.flags;
                for k in change.keywords {
                    if !self.place.keywords.contains(&k) {
                        self.place.keywords.push(k);
                    }
                }
                None
            }
            Verdict::SpamScore(score) if score.is_finite() => {
                self.place.spam_score = Some(self.place.spam_score.unwrap_or(0.0) + score);
                None
            }
            Verdict::SpamScore(_) => None,
        }
    }

    pub fn finish(self) -> Placement {
        self.place
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dem_proto::mail::FlagChange;

    pub(crate) fn mail(body: &str) -> NewMail {
        NewMail {
            id: "m1".into(),
            from: "a@x".into(),
            to: vec!["b@y".into()],
            cc: vec![],
            subject: "s".into(),
            date_ms: 1,
            message_id: "<1@x>".into(),
            in_reply_to: None,
            headers: vec![],
            body: body.into(),
            attachments: vec![],
        }
    }

    #[test]
    fn preview_is_cut_at_a_char_boundary() {
        let body = "é".repeat(BODY_PREVIEW_BYTES);
        let view = view_of(&mail(&body), SenderStatus::Unknown);
        assert!(view.body_preview.len() <= BODY_PREVIEW_BYTES);
        assert_eq!(view.body_size_bytes, body.len() as u64);
    }

    #[test]
    fn verdicts_combine() {
        let mut p = Placing::default();
        assert_eq!(p.apply(Verdict::FileInto("Junk".into())), None);
        p.apply(Verdict::AddFlags(FlagChange {
            flags: MailFlags::FLAGGED,
            keywords: vec!["k".into()],
        }));
        p.apply(Verdict::AddFlags(FlagChange {
            flags: MailFlags::SEEN,
            keywords: vec!["k".into()],
        }));
        p.apply(Verdict::SpamScore(1.5));
        p.apply(Verdict::SpamScore(f32::NAN));
        p.apply(Verdict::SpamScore(2.0));
        p.apply(Verdict::FileInto("Work".into()));
        assert_eq!(p.apply(Verdict::Reject("no".into())), Some("no".into()));
        let place = p.finish();
        assert_eq!(place.folder, "Work");
        assert_eq!(place.flags, MailFlags::FLAGGED | MailFlags::SEEN);
        assert_eq!(place.keywords, vec!["k".to_string()]);
        assert_eq!(place.spam_score, Some(3.5));
    }
}
