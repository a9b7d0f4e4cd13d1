//! The filter pipeline of a delivery: what a plugin sees of a mail, and how
//! the verdicts of the installed plugins, run in their configured order,
//! combine into one placement.
//!
//! Combination rules: the first `reject` stops the pipeline and the mail is
//! refused; a later `file-into` overrides an earlier one; `add-flags` and
//! `spam-score` accumulate. A plugin that fails is skipped (see
//! `runtime::filter`).

use dem_proto::mail::{MailFlags, Placement, Verdict};

/// Body bytes a filter sees: the decoded text's first bytes, as the
/// message parser keeps them; the rest is summarised by `body-size-bytes`.
pub const BODY_PREVIEW_BYTES: usize = dem_message::limits::PREVIEW_BYTES_MAX;

/// Default folder of a mail no filter filed elsewhere.
pub const INBOX: &str = "INBOX";

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

    #[test]
    fn preview_is_cut_at_a_char_boundary() -> Result<(), crate::mailbox::IncomingError> {
        let body = "é".repeat(BODY_PREVIEW_BYTES);
        let message = format!(
            "From: a@x\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        );
        let len = message.len() as u64;
        let view = crate::mailbox::Incoming::parse("m1".into(), message.into_bytes(), vec![])?.view;
        assert!(view.body_preview.len() <= BODY_PREVIEW_BYTES);
        assert!(view.body_preview.starts_with("éé"));
        assert_eq!(view.body_size_bytes, len);
        Ok(())
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
