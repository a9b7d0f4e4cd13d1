//! The full-text search index of a mailbox, as pure logic: the tokenizer,
//! the words a message is indexed under, the encoding of posting lists,
//! and the evaluation of a query over them. A storage driver (the host's,
//! `dem-store`'s `search` module, or later the owner's machine, once a
//! host may hold nothing derived from plaintext) keeps the rows and feeds
//! them through here; nothing in this module does I/O.
//!
//! The index maps words to *documents*: small numbers the driver hands
//! out in the order it indexes messages, one per message (by its hash).
//! A posting list is a sorted list of documents, stored as chunks, one
//! per word and indexing batch, keyed by (word, first document), so that
//! indexing new mail appends rows and never rewrites old ones.
//!
//! Semantics: text is cut into words at every character that is not
//! alphanumeric (Unicode-aware), lower-cased. A query word matches every
//! indexed word it is a prefix of ("numb" finds "numbers"), and a query
//! term of several words ("alice@example.org") needs all of them, not
//! their order. Words of the From, To, Cc and Subject headers are indexed
//! apart from the body's (marked by [`HEADER_MARK`]), so a body term
//! looks in the body only and a text term in both.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

/// Bytes of a word kept: a longer word is indexed and looked up by its
/// first bytes (cut at a char boundary), so it still matches as a prefix.
pub const WORD_BYTES_MAX: usize = 64;
/// Bytes of a message's decoded text indexed: words past it are not found.
pub const TEXT_BYTES_MAX: usize = 1 << 20;
/// Distinct words indexed per message (header words first), so a message
/// of random words cannot add a million rows.
pub const MESSAGE_WORDS_MAX: usize = 20_000;
/// Terms one query may give (body and text terms together).
pub const QUERY_TERMS_MAX: usize = 16;
/// Words one query may need, all its terms together: each costs a scan
/// and a set of the mailbox's size in bits.
pub const QUERY_WORDS_MAX: usize = 32;
/// Bytes of one query term.
pub const QUERY_TERM_BYTES_MAX: usize = 1024;
/// Leads every word indexed from a header, so header and body words are
/// apart while a prefix range still finds each. Never part of a word (it
/// is not alphanumeric).
pub const HEADER_MARK: char = '\u{1}';
/// Greater than every char of a word: the end of a prefix range.
const PREFIX_END: char = char::MAX;

/// An index has numbered every document a `u32` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the search index has numbered 2^32 documents; it must be rebuilt")]
pub struct DocumentsExhausted;

/// What is wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// More than [`QUERY_TERMS_MAX`] terms.
    #[error("too many search terms: {actual} (at most {limit})")]
    TooManyTerms { limit: usize, actual: usize },
    /// A term over [`QUERY_TERM_BYTES_MAX`] bytes.
    #[error("a search term of {actual} bytes (at most {limit})")]
    TermTooLong { limit: usize, actual: usize },
    /// More than [`QUERY_WORDS_MAX`] words in all.
    #[error("too many words in the search terms: {actual} (at most {limit})")]
    TooManyWords { limit: usize, actual: usize },
    /// A term with no letter or digit, which no word can match.
    #[error("the search term {0:?} has no letter or digit")]
    NoWord(String),
}

/// Stored postings that do not decode: the index is damaged and should
/// be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PostingsError {
    /// A varint runs past the end of the chunk or past 32 bits.
    #[error("a posting chunk is truncated or overlong")]
    Truncated,
    /// Documents not ascending, or past the number the index handed out.
    #[error("a posting chunk names document {doc}, out of order or past {docs}")]
    OutOfRange { doc: u32, docs: u32 },
}

/// The words of `text`, lower-cased, each at most [`WORD_BYTES_MAX`]
/// bytes, in order, repeats included.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_lowercase();
            cut(&lower, WORD_BYTES_MAX).to_string()
        })
}

/// The distinct words message `raw` is indexed under: its From, To, Cc
/// and Subject words behind [`HEADER_MARK`], then the words of its decoded
/// text (the first [`TEXT_BYTES_MAX`] bytes), at most
/// [`MESSAGE_WORDS_MAX`] in all. Bytes that are not a message (or over
/// its limits) yield no word; never an error.
pub fn message_words(raw: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some((e, text)) = crate::parse::envelope_and_text(raw, TEXT_BYTES_MAX) else {
        return out;
    };
    let headers = std::iter::once(&e.from)
        .chain(&e.to)
        .chain(&e.cc)
        .chain(std::iter::once(&e.subject));
    for field in headers {
        for w in words(field) {
            if out.len() >= MESSAGE_WORDS_MAX {
                return out;
            }
            out.insert(format!("{HEADER_MARK}{w}"));
        }
    }
    for w in words(&text) {
        if out.len() >= MESSAGE_WORDS_MAX {
            break;
        }
        out.insert(w);
    }
    out
}

/// The longest prefix of `s` of at most `max` bytes ending at a char
/// boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A sorted posting list as stored: the first document, then each gap to
/// the next, as LEB128 varints (a common word's gaps take a byte each).
pub fn encode_postings(docs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.len() + 4);
    let mut last = None;
    for &doc in docs {
        let gap = match last {
            None => doc,
            Some(prev) => {
                assert!(doc > prev, "postings must be strictly ascending");
                doc - prev
            }
        };
        let mut v = gap;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        last = Some(doc);
    }
    out
}

/// Calls `each` with every document of a chunk from [`encode_postings`],
/// refusing one that is not ascending or not below `docs`.
pub fn decode_postings(
    bytes: &[u8],
    docs: u32,
    mut each: impl FnMut(u32),
) -> Result<(), PostingsError> {
    let mut i = 0;
    let mut last: Option<u32> = None;
    while i < bytes.len() {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(PostingsError::Truncated);
            };
            i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if v > u64::from(u32::MAX) {
                return Err(PostingsError::Truncated);
            }
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(PostingsError::Truncated);
            }
        }
        let gap = v as u32;
        let doc = match last {
            None => Some(gap),
            Some(prev) if gap > 0 => prev.checked_add(gap),
            Some(_) => None,
        };
        match doc {
            Some(doc) if doc < docs => {
                each(doc);
                last = Some(doc);
            }
            _ => {
                return Err(PostingsError::OutOfRange {
                    doc: last.unwrap_or(0).saturating_add(gap),
                    docs,
                });
            }
        }
    }
    Ok(())
}

/// The postings of one indexing batch, built in memory and written as one
/// chunk per word. Its memory is the caller's to bound: write it out once
/// [`Batch::postings`] is large.
#[derive(Debug, Clone)]
pub struct Batch {
    first_doc: u32,
    next_doc: u32,
    words: BTreeMap<String, Vec<u32>>,
    postings: usize,
}

impl Batch {
    /// A batch whose first message becomes document `first_doc`.
    pub fn new(first_doc: u32) -> Self {
        Batch {
            first_doc,
            next_doc: first_doc,
            words: BTreeMap::new(),
            postings: 0,
        }
    }

    /// Adds the next message, indexed under `words` ([`message_words`]);
    /// returns its document. [`DocumentsExhausted`] once 2^32 documents
    /// are numbered (a damaged count can get there): the index must then
    /// be dropped and rebuilt.
    pub fn add(&mut self, words: BTreeSet<String>) -> Result<u32, DocumentsExhausted> {
        let doc = self.next_doc;
        self.next_doc = doc.checked_add(1).ok_or(DocumentsExhausted)?;
        self.postings += words.len();
        for w in words {
            self.words.entry(w).or_default().push(doc);
        }
        Ok(doc)
    }

    /// The document of the batch's first message; the key of its chunks.
    pub fn first_doc(&self) -> u32 {
        self.first_doc
    }

    /// The document the next batch starts at.
    pub fn next_doc(&self) -> u32 {
        self.next_doc
    }

    /// (word, document) pairs held: what the batch costs in memory.
    pub fn postings(&self) -> usize {
        self.postings
    }

    /// The chunk of each word, in word order.
    pub fn encode(self) -> Vec<(String, Vec<u8>)> {
        self.words
            .into_iter()
            .map(|(w, docs)| {
                let chunk = encode_postings(&docs);
                (w, chunk)
            })
            .collect()
    }
}

/// One word a query needs, and the ranges of indexed words it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWord {
    pub word: String,
    /// Whether header words count too (a text term), or only the body's.
    pub in_headers: bool,
}

impl QueryWord {
    /// The half-open ranges of indexed words this word is a prefix of.
    pub fn ranges(&self) -> Vec<(String, String)> {
        let body = (self.word.clone(), format!("{}{PREFIX_END}", self.word));
        if !self.in_headers {
            return vec![body];
        }
        let header = (
            format!("{HEADER_MARK}{}", self.word),
            format!("{HEADER_MARK}{}{PREFIX_END}", self.word),
        );
        vec![header, body]
    }
}

/// A parsed query: the words every hit must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub words: Vec<QueryWord>,
}

impl Query {
    /// Checks the terms against the limits and cuts them into words; a
    /// word given twice (as a body word and a text word, the body one
    /// wins) is needed once.
    pub fn parse(body_terms: &[String], text_terms: &[String]) -> Result<Query, QueryError> {
        let terms = body_terms.len() + text_terms.len();
        if terms > QUERY_TERMS_MAX {
            return Err(QueryError::TooManyTerms {
                limit: QUERY_TERMS_MAX,
                actual: terms,
            });
        }
        let mut seen: BTreeMap<String, bool> = BTreeMap::new();
        let tagged = body_terms
            .iter()
            .map(|t| (t, false))
            .chain(text_terms.iter().map(|t| (t, true)));
        for (term, in_headers) in tagged {
            if term.len() > QUERY_TERM_BYTES_MAX {
                return Err(QueryError::TermTooLong {
                    limit: QUERY_TERM_BYTES_MAX,
                    actual: term.len(),
                });
            }
            let mut any = false;
            for w in words(term) {
                any = true;
                let entry = seen.entry(w).or_insert(in_headers);
                *entry &= in_headers;
                if seen.len() > QUERY_WORDS_MAX {
                    return Err(QueryError::TooManyWords {
                        limit: QUERY_WORDS_MAX,
                        actual: seen.len(),
                    });
                }
            }
            if !any {
                return Err(QueryError::NoWord(term.clone()));
            }
        }
        Ok(Query {
            words: seen
                .into_iter()
                .map(|(word, in_headers)| QueryWord { word, in_headers })
                .collect(),
        })
    }
}

impl Query {
    /// Whether a message indexed under `words` ([`message_words`]) is a
    /// hit: every query word is a whole word or the start of one, among
    /// the header words too for a text term. The same answer a host's
    /// index gives, for the owner's side, where sealed mail is opened.
    pub fn matches(&self, words: &BTreeSet<String>) -> bool {
        self.words.iter().all(|q| {
            q.ranges()
                .iter()
                .any(|(start, end)| words.range::<String, _>(start..end).next().is_some())
        })
    }
}

/// A set of documents below a bound, as bits: a set of the whole mailbox
/// is an eighth of a byte per mail, whatever the word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSet {
    bits: Vec<u64>,
    docs: u32,
}

impl DocSet {
    /// The empty set of documents below `docs`.
    pub fn new(docs: u32) -> Self {
        DocSet {
            bits: vec![0; (docs as usize).div_ceil(64)],
            docs,
        }
    }

    /// Adds every document of a stored chunk.
    pub fn add_chunk(&mut self, chunk: &[u8]) -> Result<(), PostingsError> {
        let bits = &mut self.bits;
        decode_postings(chunk, self.docs, |d| {
            bits[(d / 64) as usize] |= 1 << (d % 64);
        })
    }

    /// Keeps only the documents also in `other`.
    pub fn intersect(&mut self, other: &DocSet) {
        assert_eq!(self.docs, other.docs, "sets of one index");
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a &= b;
        }
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The documents, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }
}

/// Evaluates a query over an index of `docs` documents: the driver feeds
/// each word's chunks (every row in [`QueryWord::ranges`]) in turn, and
/// gets the documents that have every word. At most one word's set is
/// held besides the running intersection.
#[derive(Debug)]
pub struct Evaluation {
    docs: u32,
    result: Option<DocSet>,
    current: DocSet,
}

impl Evaluation {
    pub fn new(docs: u32) -> Self {
        Evaluation {
            docs,
            result: None,
            current: DocSet::new(docs),
        }
    }

    /// A chunk of the current word.
    pub fn add_chunk(&mut self, chunk: &[u8]) -> Result<(), PostingsError> {
        self.current.add_chunk(chunk)
    }

    /// The current word is done; the next chunks are the next word's.
    pub fn end_word(&mut self) {
        let word = std::mem::replace(&mut self.current, DocSet::new(self.docs));
        match &mut self.result {
            None => self.result = Some(word),
            Some(r) => r.intersect(&word),
        }
    }

    /// Whether no document can match any more (the driver may stop).
    pub fn is_hopeless(&self) -> bool {
        self.result.as_ref().is_some_and(DocSet::is_empty)
    }

    /// The documents having every word; none if no word was given.
    pub fn finish(self) -> DocSet {
        self.result.unwrap_or_else(|| DocSet::new(self.docs))
    }
}

#[cfg(test)]
mod tests;
