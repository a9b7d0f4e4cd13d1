//! Search over the mail index: case-insensitive substring criteria on the
//! envelope fields, flags, keyword, folder and date range, all ANDed.
//!
//! The mailbox holds no message bytes, so it ignores `body-terms` and
//! `text-terms`: the host keeps a full-text index of the messages and
//! calls `search-among` with the messages it found for those terms; the
//! mailbox, the source of truth, keeps the mails it still holds that name
//! one of them and match the other criteria. A plain `search` with body
//! or text terms returns what the other criteria select, ignoring them.
//!
//! The full-text index is not here (it would dwarf the mail index in the
//! snapshot and slow down restore); instead each folder is walked newest
//! first through its date index, the date range is a range query on that
//! index, and a folder stops being walked once it has produced
//! `offset + limit` hits, so a search for recent mail stays cheap.

use crate::error::{Result, invalid_argument, limit_reached};
use crate::hash::Hash;
use crate::limits::PAGE_LIMIT_MAX;
use crate::state::{FolderIndex, Mailbox, StoredMail};
use crate::wit::{MailSummary, SearchQuery};

/// Messages one `search-among` call may name (2 MiB of hashes): the host
/// sends a larger set of candidates in several calls.
pub const SEARCH_AMONG_MAX: usize = 1 << 16;

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
    /// Only mails naming one of these messages, if given: hashes
    /// ascending, searched by bisection, so taking a large set costs one
    /// pass to check its order and nothing per hash besides.
    among: Option<&'q [Hash]>,
    from: Option<Needle>,
    to: Option<Needle>,
    subject: Option<Needle>,
}

impl<'q> Matcher<'q> {
    fn new(q: &'q SearchQuery, among: Option<&'q [Hash]>) -> Self {
        Matcher {
            q,
            among,
            from: q.from.as_deref().map(Needle::new),
            to: q.to.as_deref().map(Needle::new),
            subject: q.subject.as_deref().map(Needle::new),
        }
    }

    /// Cheap criteria first, substring scans last.
    fn matches(&self, m: &StoredMail) -> bool {
        if self
            .among
            .is_some_and(|a| a.binary_search(&m.blob).is_err())
        {
            return false;
        }
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
        self.search_matching(q, None, offset, limit)
    }

    /// As `search`, among the mails naming one of `messages`: 32-byte
    /// BLAKE3 hashes, concatenated, ascending, at most `SEARCH_AMONG_MAX`.
    pub fn search_among(
        &self,
        q: &SearchQuery,
        messages: &[u8],
        offset: u32,
        limit: u32,
    ) -> Result<Vec<MailSummary>> {
        if !messages.len().is_multiple_of(32) {
            return Err(invalid_argument(format!(
                "search-among takes 32-byte hashes, not {} bytes",
                messages.len()
            )));
        }
        let among: Vec<Hash> = messages
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        if among.len() > SEARCH_AMONG_MAX {
            return Err(limit_reached(
                "search-among messages",
                SEARCH_AMONG_MAX,
                among.len(),
            ));
        }
        if !among.windows(2).all(|w| w[0] < w[1]) {
            return Err(invalid_argument(
                "search-among hashes must ascend without repeats",
            ));
        }
        self.search_matching(q, Some(&among), offset, limit)
    }

    fn search_matching(
        &self,
        q: &SearchQuery,
        among: Option<&[Hash]>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<MailSummary>> {
        let folders: Vec<&FolderIndex> = match &q.folder {
            Some(name) => {
                let (_, f) = self.existing(name)?;
                vec![self.idx.folder(f.uid_validity)]
            }
            None => self.idx.folders.values().collect(),
        };
        let limit = limit.min(PAGE_LIMIT_MAX) as usize;
        let since = q.since_ms.unwrap_or(i64::MIN);
        if limit == 0
            || q.before_ms.is_some_and(|b| b <= since)
            || among.is_some_and(<[Hash]>::is_empty)
        {
            return Ok(Vec::new());
        }
        // Each folder's first `wanted` hits hold every hit of the page.
        let wanted = limit.saturating_add(offset as usize);
        let matcher = Matcher::new(q, among);
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
