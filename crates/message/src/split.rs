//! Splitting a message into what a mailbox stores and floating
//! attachments, and rebuilding the exact bytes. The split is verbatim: a
//! leaf part's body, exactly as it stands in the message (still
//! transfer-encoded), is cut out, and everything else stays byte for byte.
//! Rebuilding inserts the cut bytes back where they were, so
//! `rebuild(split(m)) == m` holds by construction; the tests check it over
//! the generated corpus and random messages.
//!
//! A body is the bytes between the end of its part's header block and the
//! line break that begins the next boundary delimiter (RFC 2046: that line
//! break belongs to the delimiter), or the end of the message. The ranges
//! come from mail-parser's `offset_body`/`offset_end` and are checked
//! against the bytes before any is cut.

use crate::error::{MessageError, WHAT_REBUILT, WHAT_STORED};
use crate::limits::{
    MESSAGE_BYTES_MAX, SPLIT_PART_BYTES_FLOOR, SPLIT_PART_BYTES_MIN, STORED_BYTES_MAX,
};
use crate::mime;

/// One body cut out of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where in the STORED bytes the content is re-inserted (after the
    /// earlier cuts were removed). Strictly ascending over a `Split`'s cuts.
    pub offset: u64,
    /// The cut bytes, verbatim (still transfer-encoded).
    pub content: Vec<u8>,
    /// BLAKE3 of `content`.
    pub hash: [u8; 32],
    /// The part's file name, or `part-N` with N the part's position (from
    /// 1) among the message's MIME parts in document order.
    pub name: String,
    /// The part's `type/subtype`, lower case.
    pub media_type: String,
}

/// A message split into its stored bytes and its cuts, ordered by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub stored: Vec<u8>,
    pub cuts: Vec<Cut>,
}

impl Split {
    /// The cuts as `rebuild` takes them.
    pub fn splices(&self) -> Vec<Splice<'_>> {
        self.cuts
            .iter()
            .map(|c| Splice {
                offset: c.offset,
                content: &c.content,
            })
            .collect()
    }
}

/// One cut to re-insert: where (in the stored bytes) and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splice<'a> {
    pub offset: u64,
    pub content: &'a [u8],
}

/// A body that may be cut: `start..end` in the message.
struct Candidate {
    start: usize,
    end: usize,
    name: String,
    media_type: String,
}

impl Candidate {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Splits `raw` (see the module doc). Every leaf body of at least
/// `SPLIT_PART_BYTES_MIN` bytes is cut; if the stored message is still over
/// `STORED_BYTES_MAX`, further bodies are cut, largest first, down to
/// `SPLIT_PART_BYTES_FLOOR`; if it is still over, `TooLarge` ("stored
/// message"). Refuses what `check_limits` refuses.
pub fn split(raw: &[u8]) -> Result<Split, MessageError> {
    let candidates = candidates(raw)?;
    let mut chosen = vec![false; candidates.len()];
    let mut stored_len = raw.len();
    for (i, c) in candidates.iter().enumerate() {
        if c.len() >= SPLIT_PART_BYTES_MIN {
            chosen[i] = true;
            stored_len -= c.len();
        }
    }
    if stored_len > STORED_BYTES_MAX {
        let mut rest: Vec<usize> = (0..candidates.len())
            .filter(|&i| !chosen[i] && candidates[i].len() >= SPLIT_PART_BYTES_FLOOR)
            .collect();
        rest.sort_by_key(|&i| std::cmp::Reverse(candidates[i].len()));
        for i in rest {
            if stored_len <= STORED_BYTES_MAX {
                break;
            }
            chosen[i] = true;
            stored_len -= candidates[i].len();
        }
    }
    if stored_len > STORED_BYTES_MAX {
        return Err(MessageError::too_large(
            WHAT_STORED,
            STORED_BYTES_MAX,
            stored_len,
        ));
    }

    let mut stored = Vec::with_capacity(stored_len);
    let mut cuts = Vec::new();
    let mut at = 0;
    for (c, _) in candidates
        .into_iter()
        .zip(chosen)
        .filter(|(_, chosen)| *chosen)
    {
        stored.extend_from_slice(&raw[at..c.start]);
        let content = raw[c.start..c.end].to_vec();
        cuts.push(Cut {
            offset: stored.len() as u64,
            hash: *blake3::hash(&content).as_bytes(),
            content,
            name: c.name,
            media_type: c.media_type,
        });
        at = c.end;
    }
    stored.extend_from_slice(&raw[at..]);
    assert_eq!(
        stored.len(),
        stored_len,
        "the stored length is what was planned"
    );
    Ok(Split { stored, cuts })
}

/// The message again: `stored` with each splice's content inserted at its
/// offset. Refuses offsets that are not strictly ascending or lie past the
/// stored bytes, and a result over `MESSAGE_BYTES_MAX`.
pub fn rebuild(stored: &[u8], cuts: &[Splice<'_>]) -> Result<Vec<u8>, MessageError> {
    let mut previous: Option<u64> = None;
    for (i, c) in cuts.iter().enumerate() {
        if c.offset > stored.len() as u64 {
            return Err(MessageError::Splice(format!(
                "cut {i} goes at offset {}, past the {} stored bytes",
                c.offset,
                stored.len()
            )));
        }
        if previous.is_some_and(|p| c.offset <= p) {
            return Err(MessageError::Splice(format!(
                "cut {i} goes at offset {}, not after the cut before it",
                c.offset
            )));
        }
        previous = Some(c.offset);
    }
    let total = rebuilt_len(
        stored.len() as u64,
        cuts.iter().map(|c| c.content.len() as u64),
    )
    .filter(|&t| t <= MESSAGE_BYTES_MAX as u64)
    .ok_or_else(|| {
        let actual = cuts.iter().fold(stored.len() as u64, |t, c| {
            t.saturating_add(c.content.len() as u64)
        });
        MessageError::TooLarge {
            what: WHAT_REBUILT,
            limit: MESSAGE_BYTES_MAX as u64,
            actual,
        }
    })?;
    let mut out = Vec::with_capacity(total as usize);
    let mut at = 0;
    for c in cuts {
        // In range and ascending: checked above.
        let offset = c.offset as usize;
        out.extend_from_slice(&stored[at..offset]);
        out.extend_from_slice(c.content);
        at = offset;
    }
    out.extend_from_slice(&stored[at..]);
    Ok(out)
}

/// The length `rebuild` would return: the stored length plus every cut's;
/// `None` on overflow. Lets a caller refuse before fetching the cuts.
pub fn rebuilt_len(stored_len: u64, cut_lens: impl IntoIterator<Item = u64>) -> Option<u64> {
    cut_lens
        .into_iter()
        .try_fold(stored_len, |total, len| total.checked_add(len))
}

/// The bodies of `raw` that may be cut, ascending and disjoint, each
/// checked against the bytes: it starts at a line start after its header
/// block and ends at the end of the message or where the line break
/// before its enclosing boundary begins.
fn candidates(raw: &[u8]) -> Result<Vec<Candidate>, MessageError> {
    let Some(message) = mime::parse_checked(raw)? else {
        // No header at all: the whole message is one body.
        return Ok(vec![Candidate {
            start: 0,
            end: raw.len(),
            name: "part-1".into(),
            media_type: "application/octet-stream".into(),
        }]);
    };
    let nodes = mime::walk(&message)?;
    let mut out: Vec<Candidate> = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        if !node.is_leaf || !node.in_raw {
            continue;
        }
        let (start, end) = (
            node.part.offset_body as usize,
            node.part.offset_end as usize,
        );
        if !body_range_ok(raw, start, end, node.boundary) {
            continue;
        }
        if out.last().is_some_and(|last| start <= last.end) {
            continue;
        }
        out.push(Candidate {
            start,
            end,
            name: mail_parser::MimeHeaders::attachment_name(node.part)
                .map_or_else(|| format!("part-{}", n + 1), str::to_string),
            media_type: mime::media_type(node.part),
        });
    }
    Ok(out)
}

/// Whether `start..end` is a body as the module doc defines it.
fn body_range_ok(raw: &[u8], start: usize, end: usize, boundary: Option<&str>) -> bool {
    if start > end || end > raw.len() || (start > 0 && raw[start - 1] != b'\n') {
        return false;
    }
    if end == raw.len() {
        return true;
    }
    let Some(boundary) = boundary else {
        return false;
    };
    let rest = &raw[end..];
    let rest = rest.strip_prefix(b"\r").unwrap_or(rest);
    let rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    rest.strip_prefix(b"--")
        .is_some_and(|r| r.starts_with(boundary.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::compose::base64_lines_with;
    use crate::corpus::{Rng, corpus, random_message};
    use crate::parse::parse;

    fn splices(s: &Split) -> Vec<Splice<'_>> {
        s.splices()
    }

    /// Split, check every promise of `Split`, rebuild, compare.
    fn roundtrip(name: &str, m: &[u8]) -> Result<Split, Box<dyn Error>> {
        let s = split(m)?;
        assert!(
            s.stored.len() <= STORED_BYTES_MAX,
            "{name}: stored {} bytes",
            s.stored.len()
        );
        for w in s.cuts.windows(2) {
            assert!(w[0].offset < w[1].offset, "{name}: cuts out of order");
        }
        for c in &s.cuts {
            assert_eq!(c.hash, *blake3::hash(&c.content).as_bytes(), "{name}");
            assert!(c.content.len() >= SPLIT_PART_BYTES_FLOOR, "{name}");
            // A body: it starts a line, and what follows it is the line
            // break before a delimiter, or the end.
            let (before, after) = s.stored.split_at(c.offset as usize);
            assert!(before.is_empty() || before.ends_with(b"\n"), "{name}");
            let after = after.strip_prefix(b"\r").unwrap_or(after);
            let after = after.strip_prefix(b"\n").unwrap_or(after);
            assert!(after.is_empty() || after.starts_with(b"--"), "{name}");
        }
        let back = rebuild(&s.stored, &splices(&s))?;
        assert!(back == m, "{name}: rebuild(split(m)) != m");
        assert_eq!(
            rebuilt_len(
                s.stored.len() as u64,
                s.cuts.iter().map(|c| c.content.len() as u64)
            ),
            Some(m.len() as u64)
        );
        Ok(s)
    }

    #[test]
    fn every_corpus_message_parses_splits_and_rebuilds_exactly() -> Result<(), Box<dyn Error>> {
        for (name, m) in corpus(7, false) {
            parse(&m).map_err(|e| format!("{name}: {e}"))?;
            let s = roundtrip(&name, &m)?;
            // The stored message still parses, headers intact.
            let p = parse(&s.stored)?;
            assert_eq!(p.envelope, parse(&m)?.envelope, "{name}");
        }
        Ok(())
    }

    #[test]
    fn big_corpus_message_splits() -> Result<(), Box<dyn Error>> {
        let all = corpus(3, true);
        let (name, m) = all
            .iter()
            .find(|(n, _)| n == "attachment-20mb")
            .ok_or("no 20 MB message")?;
        let s = roundtrip(name, m)?;
        assert_eq!(s.cuts.len(), 1);
        assert!(s.stored.len() < 4096);
        Ok(())
    }

    /// The cut is exactly the transfer-encoded body: no header byte, no
    /// byte of the delimiter line, for CRLF and bare LF.
    #[test]
    fn cut_is_exactly_the_encoded_body() -> Result<(), Box<dyn Error>> {
        for nl in ["\r\n", "\n"] {
            let data = Rng::new(1).bytes(100_000);
            let encoded = base64_lines_with(&data, nl.as_bytes());
            let m = [
                format!("From: a@example.org{nl}Content-Type: multipart/mixed; boundary=\"b1\"{nl}{nl}--b1{nl}Content-Type: text/plain{nl}{nl}hi{nl}--b1{nl}Content-Type: application/zip; name=\"x.zip\"{nl}Content-Transfer-Encoding: base64{nl}{nl}").into_bytes(),
                encoded.clone(),
                format!("{nl}--b1--{nl}").into_bytes(),
            ]
            .concat();
            let s = roundtrip("exact", &m)?;
            assert_eq!(s.cuts.len(), 1);
            let cut = &s.cuts[0];
            assert!(cut.content == encoded, "nl {nl:?}: the cut is not the body");
            assert_eq!(cut.name, "x.zip");
            assert_eq!(cut.media_type, "application/zip");
            let at = cut.offset as usize;
            assert!(s.stored[..at].ends_with(format!("base64{nl}{nl}").as_bytes()));
            assert!(s.stored[at..].starts_with(format!("{nl}--b1--").as_bytes()));
        }
        Ok(())
    }

    #[test]
    fn single_part_body_is_cut_to_the_end() -> Result<(), Box<dyn Error>> {
        let body = Rng::new(2).prose(100_000, "\r\n");
        let m = format!("From: a@example.org\r\nSubject: big\r\n\r\n{body}").into_bytes();
        let s = roundtrip("single", &m)?;
        assert_eq!(s.cuts.len(), 1);
        assert_eq!(s.cuts[0].content, body.as_bytes());
        assert_eq!(s.cuts[0].name, "part-1");
        assert_eq!(s.cuts[0].media_type, "text/plain");
        Ok(())
    }

    #[test]
    fn small_message_is_not_cut() -> Result<(), Box<dyn Error>> {
        let m = b"From: a@example.org\r\n\r\nhello\r\n".to_vec();
        let s = roundtrip("small", &m)?;
        assert!(s.cuts.is_empty());
        assert_eq!(s.stored, m);
        Ok(())
    }

    #[test]
    fn medium_parts_are_cut_largest_first_when_the_whole_is_too_big() -> Result<(), Box<dyn Error>>
    {
        let all = corpus(11, false);
        let (name, m) = all
            .iter()
            .find(|(n, _)| n == "many-medium-parts")
            .ok_or("missing")?;
        assert!(m.len() > STORED_BYTES_MAX);
        let s = roundtrip(name, m)?;
        assert!(!s.cuts.is_empty());
        assert!(
            s.cuts
                .iter()
                .all(|c| c.content.len() < SPLIT_PART_BYTES_MIN)
        );
        // No more cuts than needed: putting back the smallest cut would
        // overflow.
        let smallest = s.cuts.iter().map(|c| c.content.len()).min().ok_or("none")?;
        assert!(s.stored.len() + smallest > STORED_BYTES_MAX);
        Ok(())
    }

    #[test]
    fn what_cannot_be_cut_is_refused_as_too_large() {
        // A 3 MB epilogue belongs to no part.
        let mut m = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'e', 3 << 20));
        let e = split(&m).err();
        assert!(
            matches!(e, Some(MessageError::TooLarge { what: "stored message", limit, .. }) if limit == STORED_BYTES_MAX as u64),
            "{e:?}"
        );
    }

    #[test]
    fn split_refuses_what_check_limits_refuses() {
        let m = vec![b'a'; MESSAGE_BYTES_MAX + 1];
        assert!(matches!(
            split(&m),
            Err(MessageError::TooLarge {
                what: "message",
                ..
            })
        ));
    }

    #[test]
    fn rebuild_refuses_bad_splices() -> Result<(), Box<dyn Error>> {
        let stored = b"0123456789";
        let ok = rebuild(
            stored,
            &[
                Splice {
                    offset: 2,
                    content: b"ab",
                },
                Splice {
                    offset: 5,
                    content: b"cd",
                },
            ],
        )?;
        assert_eq!(ok, b"01ab234cd56789");
        let out_of_order = [
            Splice {
                offset: 5,
                content: b"x",
            },
            Splice {
                offset: 2,
                content: b"y",
            },
        ];
        assert!(matches!(
            rebuild(stored, &out_of_order),
            Err(MessageError::Splice(_))
        ));
        let same_place = [
            Splice {
                offset: 3,
                content: b"x",
            },
            Splice {
                offset: 3,
                content: b"y",
            },
        ];
        assert!(matches!(
            rebuild(stored, &same_place),
            Err(MessageError::Splice(_))
        ));
        let past_end = [Splice {
            offset: 11,
            content: b"x",
        }];
        assert!(matches!(
            rebuild(stored, &past_end),
            Err(MessageError::Splice(_))
        ));
        // At the very end is in range.
        assert_eq!(
            rebuild(
                stored,
                &[Splice {
                    offset: 10,
                    content: b"!"
                }]
            )?,
            b"0123456789!"
        );
        let big = vec![0u8; MESSAGE_BYTES_MAX];
        let e = rebuild(
            stored,
            &[Splice {
                offset: 0,
                content: &big,
            }],
        )
        .err();
        assert!(
            matches!(e, Some(MessageError::TooLarge { what: "rebuilt message", actual, .. }) if actual == MESSAGE_BYTES_MAX as u64 + 10),
            "{e:?}"
        );
        assert_eq!(rebuilt_len(u64::MAX, [1]), None);
        assert_eq!(rebuilt_len(10, [1, 2]), Some(13));
        Ok(())
    }

    /// The seeds to run: `DEM_SEED` replays one, otherwise a fixed range.
    fn seeds(n: u64) -> Vec<u64> {
        match std::env::var("DEM_SEED").ok().and_then(|s| s.parse().ok()) {
            Some(seed) => {
                eprintln!("replaying DEM_SEED={seed}");
                vec![seed]
            }
            None => {
                eprintln!("seeds 0..{n}; DEM_SEED=<seed> replays one");
                (0..n).collect()
            }
        }
    }

    #[test]
    fn random_messages_rebuild_exactly() -> Result<(), Box<dyn Error>> {
        for seed in seeds(300) {
            let m = random_message(seed);
            let result = std::panic::catch_unwind(|| match roundtrip("random", &m) {
                Ok(_) => Ok(()),
                // Only the stored size may refuse a generated message.
                Err(e) if e.to_string().starts_with("stored message is") => Ok(()),
                Err(e) => Err(e.to_string()),
            });
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(format!("seed {seed} (DEM_SEED={seed} to replay): {e}").into());
                }
                Err(_) => {
                    return Err(format!("seed {seed} failed (DEM_SEED={seed} to replay)").into());
                }
            }
        }
        Ok(())
    }

    /// Flipped, dropped and inserted bytes, truncation: parsing and
    /// splitting never panic, and whatever splits still rebuilds exactly.
    #[test]
    fn mutated_messages_never_panic() -> Result<(), Box<dyn Error>> {
        let base: Vec<Vec<u8>> = corpus(5, false)
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| m.len() < 300_000)
            .collect();
        for seed in seeds(200) {
            let mut r = Rng::new(seed ^ 0x5eed);
            let mut m = if r.below(2) == 0 {
                base[r.below(base.len() as u64) as usize].clone()
            } else {
                random_message(seed)
            };
            for _ in 0..1 + r.below(20) {
                if m.is_empty() {
                    break;
                }
                let at = r.below(m.len() as u64) as usize;
                match r.below(5) {
                    0 => m[at] ^= 1 << r.below(8),
                    1 => {
                        m.remove(at);
                    }
                    2 => m.insert(at, b"-\r\n:=?\0\xff"[r.below(8) as usize]),
                    3 => m.truncate(at),
                    _ => m.splice(at..at, b"\r\n--".iter().copied()).for_each(drop),
                }
            }
            let outcome = std::panic::catch_unwind(|| {
                let _ = parse(&m);
                let _ = crate::parse::text(&m, 1000);
                let _ = crate::render::render(&m);
                let _ = crate::render::attachment_content(&m, 0);
                match split(&m) {
                    Ok(_) => roundtrip("mutated", &m).is_ok(),
                    Err(_) => true,
                }
            });
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!("seed {seed}: rebuild differs (DEM_SEED={seed})").into());
                }
                Err(_) => {
                    return Err(format!("seed {seed} panicked (DEM_SEED={seed} to replay)").into());
                }
            }
        }
        Ok(())
    }
}
