//! Search over the mail index: case-insensitive substring criteria on the
//! envelope fields, flags, keyword, folder and date range, all ANDed.
//!
//! The mailbox holds no message bytes, so it ignores `body-terms` and
//! `text-terms`: it returns the candidates the other criteria select, and
//! the host, which has the bytes in its blob store, matches those terms
//! against each candidate's message, paging on with `offset` until it has
//! enough. A query of only body or text terms thus lists every mail in
//! range, newest first.
//!
//! There is no full-text index (it would dwarf the mail index in the
//! snapshot and slow down restore); instead each folder is walked newest
//! first through its date index, the date range is a range query on that
//! index, and a folder stops being walked once it has produced
//! `offset + limit` hits, so a search for recent mail stays cheap.

use crate::error::Result;
use crate::limits::PAGE_LIMIT_MAX;
use crate::state::{FolderIndex, Mailbox, StoredMail};
use crate::wit::{MailSummary, SearchQuery};

/// A lower-cased search term.
struct Needle {
    lower: String,
    ascii: bool,
}

impl Needle {
    fn new(term: &str) -> Needle {
        Needle {
            lower: term.to_lowercase(),
            ascii: term.is_ascii(),
        }
    }

    /// Case-insensitive substring test. ASCII terms, by far the common
    /// case, are compared byte-wise without allocating (ASCII bytes never
    /// occur inside a multi-byte UTF-8 sequence, so this is exact); other
    /// terms lower-case the haystack.
    fn found_in(&self, hay: &str) -> bool {
        let n = self.lower.as_bytes();
        if n.is_empty() {
            return true;
        }
        if self.ascii {
            hay.as_bytes()
                .windows(n.len())
                .any(|w| w.eq_ignore_ascii_case(n))
        } else {
            hay.to_lowercase().contains(&self.lower)
        }
    }

    fn found_in_any<'a>(&self, mut hays: impl Iterator<Item = &'a String>) -> bool {
        hays.any(|h| self.found_in(h))
    }
}

struct Matcher<'q> {
    q: &'q SearchQuery,
    from: Option<Needle>,
    to: Option<Needle>,
    subject: Option<Needle>,
}

impl<'q> Matcher<'q> {
    fn new(q: &'q SearchQuery) -> Self {
        Matcher {
            q,
            from: q.from.as_deref().map(Needle::new),
            to: q.to.as_deref().map(Needle::new),
            subject: q.subject.as_deref().map(Needle::new),
        }
    }

    /// Cheap criteria first, substring scans last.
    fn matches(&self, m: &StoredMail) -> bool {
        let flags = m.flags();
        if !flags.contains(self.q.flags_set) || flags.intersects(self.q.flags_unset) {
            return false;
        }
        if let Some(k) = &self.q.keyword
            && !m.keywords.contains(k)
        {
            return false;
        }
        if let Some(n) = &self.from
            && !n.found_in(&m.from)
        {
            return false;
        }
        if let Some(n) = &self.to
            && !n.found_in_any(m.to.iter().chain(&m.cc))
        {
            return false;
        }
        self.subject.as_ref().is_none_or(|n| n.found_in(&m.subject))
    }
}

impl Mailbox {
    /// Mails matching every criterion of `q` but its body and text terms,
    /// newest first by (date-ms, uid), skipping the first `offset`, at
    /// most `limit` (capped at `PAGE_LIMIT_MAX`).
    pub fn search(&self, q: &SearchQuery, offset: u32, limit: u32) -> Result<Vec<MailSummary>> {
        let folders: Vec<&FolderIndex> = match &q.folder {
            Some(name) => {
                let (_, f) = self.existing(name)?;
                vec![self.idx.folder(f.uid_validity)]
            }
            None => self.idx.folders.values().collect(),
        };
        let limit = limit.min(PAGE_LIMIT_MAX) as usize;
        let since = q.since_ms.unwrap_or(i64::MIN);
        if limit == 0 || q.before_ms.is_some_and(|b| b <= since) {
            return Ok(Vec::new());
        }
        // Each folder's first `wanted` hits hold every hit of the page.
        let wanted = limit.saturating_add(offset as usize);
        let matcher = Matcher::new(q);
        let mut hits: Vec<(i64, u32, &String)> = Vec::new();
        for fi in folders {
            // UIDs start at 1, so (t, 0) sorts before every mail dated t.
            let range = match q.before_ms {
                Some(before) => fi.by_date.range((since, 0)..(before, 0)),
                None => fi.by_date.range((since, 0)..),
            };
            let mut found = 0;
            for (&(date, uid), id) in range.rev() {
                if found == wanted {
                    break;
                }
                if self.state.mails.get(id).is_some_and(|m| matcher.matches(m)) {
                    hits.push((date, uid, id));
                    found += 1;
                }
            }
        }
        hits.sort_unstable_by(|a, b| b.cmp(a));
        Ok(hits
            .into_iter()
            .skip(offset as usize)
            .take(limit)
            .filter_map(|(_, _, id)| self.state.mails.get(id).map(|m| self.summary(id, m)))
            .collect())
    }
}

#[cfg(test)]
mod tests;
