//! The index a mailbox keeps of a message, read from its bytes: envelope,
//! parts, a preview and the top-level header fields. Parsing never fails
//! on a malformed message (a message that does not parse is still
//! delivered, and the index records what could be read); only the limits
//! of `limits` are errors. `render` builds on the same walk (`mime`) for
//! what a reader sees.

use mail_parser::{Address as ParsedAddress, HeaderValue, Message, MimeHeaders, PartType};

use crate::error::MessageError;
use crate::limits::{HEADER_FIELDS_MAX, PREVIEW_BYTES_MAX};
use crate::mime::{self, decoded_value, media_type, truncate};

/// Who, what and when of a message, as its top-level header says.
///
/// Addresses are display strings, not RFC 5322 syntax: `Name <addr>` when
/// the field gives a display name, `addr` otherwise; names are decoded and
/// never quoted. Group syntax is flattened into its members. Message ids
/// are given without their angle brackets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The first address of `From`, or "" when there is none.
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The decoded subject, or "".
    pub subject: String,
    /// `Date` in milliseconds since the Unix epoch, when it parses.
    pub date_ms: Option<i64>,
    pub message_id: Option<String>,
    /// The first id of `In-Reply-To`.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

/// What a mailbox indexes of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub envelope: Envelope,
    /// The message has a `From` address and a valid `Date` (RFC 5322
    /// requires both), mail-parser met no encoding problem in any part, and
    /// every multipart's boundary was found. A message that is not well
    /// formed is indexed all the same.
    pub well_formed: bool,
    /// The leaf parts in document order: text bodies, attachments, and
    /// each attached message as one part.
    pub parts: Vec<PartInfo>,
    /// The start (at most `PREVIEW_BYTES_MAX` bytes, cut at a char
    /// boundary) of the decoded text body.
    pub preview: String,
    /// The top-level header fields in order, values unfolded and decoded;
    /// at most `HEADER_FIELDS_MAX` (more is refused by `check_limits`).
    pub headers: Vec<(String, String)>,
}

/// One leaf part of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartInfo {
    /// The file name the part gives (`Content-Disposition` filename or
    /// `Content-Type` name), decoded. Untrusted: sanitise it before using it
    /// as a path.
    pub name: Option<String>,
    /// `type/subtype`, lower case.
    pub media_type: String,
    /// The decoded size: after transfer decoding, and for text after
    /// conversion to UTF-8.
    pub size_bytes: u64,
    /// Not one of the bodies a reader is shown inline.
    pub is_attachment: bool,
}

/// Checks every limit of `limits` a message can break: its size, the size
/// of its header section, the fields of each header block, the depth of
/// its MIME nesting and its number of parts. Each is refused with its own
/// error.
pub fn check_limits(raw: &[u8]) -> Result<(), MessageError> {
    mime::parse_checked(raw).map(|_| ())
}

/// The index of a message. Runs `check_limits` first; past that, never
/// fails: what cannot be parsed is left empty and `well_formed` is false.
pub fn parse(raw: &[u8]) -> Result<Parsed, MessageError> {
    let Some(message) = mime::parse_checked(raw)? else {
        return Ok(unparsed(raw));
    };
    let nodes = mime::walk(&message)?;
    let well_formed = message.from().and_then(|a| a.first()).is_some()
        && message.date().is_some_and(|d| d.is_valid())
        && !nodes.iter().any(|n| {
            // A multipart left as a leaf: its boundary never appeared.
            n.part.is_encoding_problem
                || (n.is_leaf && media_type(n.part).starts_with("multipart/"))
        });
    let preview = message
        .body_text(0)
        .map(|t| truncate(&t, PREVIEW_BYTES_MAX).to_string())
        .unwrap_or_default();
    Ok(Parsed {
        envelope: envelope(&message),
        well_formed,
        parts: parts(&message),
        preview,
        headers: headers(raw, &message),
    })
}

/// The decoded text of every text part (HTML reduced to its text), parts
/// separated by a blank line, for search; at most `max_bytes`, cut at a
/// char boundary. A message over a limit yields "".
pub fn text(raw: &[u8], max_bytes: usize) -> String {
    match mime::parse_checked(raw) {
        Ok(Some(message)) => text_of(&message, max_bytes),
        _ => String::new(),
    }
}

/// The envelope and [`text`] of a message from one parse, for the search
/// index, which reads both of every message; `None` where `text` is "".
pub(crate) fn envelope_and_text(raw: &[u8], max_bytes: usize) -> Option<(Envelope, String)> {
    let Ok(Some(message)) = mime::parse_checked(raw) else {
        return None;
    };
    Some((envelope(&message), text_of(&message, max_bytes)))
}

fn text_of(message: &Message<'_>, max_bytes: usize) -> String {
    let Ok(nodes) = mime::walk(message) else {
        return String::new();
    };
    let mut out = String::new();
    for node in nodes {
        if out.len() >= max_bytes {
            break;
        }
        let piece = match &node.part.body {
            PartType::Text(t) => t.to_string(),
            PartType::Html(h) => mail_parser::decoders::html::html_to_text(h),
            _ => continue,
        };
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&piece);
    }
    truncate(&out, max_bytes).to_string()
}

/// The index of bytes with no header at all: everything is the body.
fn unparsed(raw: &[u8]) -> Parsed {
    let body = String::from_utf8_lossy(raw);
    Parsed {
        envelope: Envelope::default(),
        well_formed: false,
        parts: vec![PartInfo {
            name: None,
            media_type: "text/plain".into(),
            size_bytes: raw.len() as u64,
            is_attachment: false,
        }],
        preview: truncate(&body, PREVIEW_BYTES_MAX).to_string(),
        headers: Vec::new(),
    }
}

fn envelope(message: &Message<'_>) -> Envelope {
    let ids = |v: &HeaderValue<'_>| -> Vec<String> {
        match v {
            HeaderValue::Text(t) => vec![t.to_string()],
            HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    Envelope {
        from: message
            .from()
            .map(addresses)
            .and_then(|a| a.into_iter().next())
            .unwrap_or_default(),
        to: message.to().map(addresses).unwrap_or_default(),
        cc: message.cc().map(addresses).unwrap_or_default(),
        subject: message.subject().unwrap_or_default().to_string(),
        date_ms: message
            .date()
            .filter(|d| d.is_valid())
            .and_then(|d| d.to_timestamp().checked_mul(1000)),
        message_id: message.message_id().map(str::to_string),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
    }
}

/// The display strings of an address field (see `Envelope`).
pub(crate) fn addresses(a: &ParsedAddress<'_>) -> Vec<String> {
    a.iter()
        .filter_map(|addr| {
            let name = addr.name().map(str::trim).filter(|n| !n.is_empty());
            let email = addr.address().map(str::trim).filter(|e| !e.is_empty());
            match (name, email) {
                (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
                (None, Some(e)) => Some(e.to_string()),
                (Some(n), None) => Some(n.to_string()),
                (None, None) => None,
            }
        })
        .collect()
}

/// The leaf parts a reader sees: every leaf outside attached messages,
/// and each attached message as one part.
pub(crate) fn parts(message: &Message<'_>) -> Vec<PartInfo> {
    let Ok(nodes) = mime::walk(message) else {
        return Vec::new();
    };
    nodes
        .iter()
        .filter(|n| n.is_shown())
        .map(|n| {
            let part = n.part;
            let size = match &part.body {
                // Parsed in place: its bytes are the body's.
                PartType::Message(_) if part.encoding == mail_parser::Encoding::None => {
                    part.offset_end.saturating_sub(part.offset_body) as usize
                }
                _ => part.len(),
            };
            let disposition_attachment = part
                .content_disposition()
                .is_some_and(|d| d.is_attachment());
            PartInfo {
                name: part.attachment_name().map(str::to_string),
                media_type: media_type(part),
                size_bytes: size as u64,
                is_attachment: disposition_attachment
                    || message.attachments.contains(&(n.id as u32)),
            }
        })
        .collect()
}

/// The top-level header fields, decoded (see `Parsed::headers`).
pub(crate) fn headers(raw: &[u8], message: &Message<'_>) -> Vec<(String, String)> {
    message
        .root_part()
        .headers
        .iter()
        .take(HEADER_FIELDS_MAX)
        .map(|h| {
            (
                h.name.as_str().to_string(),
                decoded_value(raw, h.offset_start, h.offset_end),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::corpus::corpus;
    use crate::limits::{HEADER_BYTES_MAX, MESSAGE_BYTES_MAX, MIME_DEPTH_MAX, MIME_PARTS_MAX};

    fn too_many(e: &MessageError, expect: &str) -> bool {
        matches!(e, MessageError::TooMany { what, .. } if *what == expect)
    }

    #[test]
    fn message_over_the_size_limit_is_refused() {
        let mut m = b"From: a@example.org\r\n\r\n".to_vec();
        m.resize(MESSAGE_BYTES_MAX + 1, b'a');
        let e = parse(&m).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(format!(
                "message is {} bytes; the limit is {} (MESSAGE_BYTES_MAX)",
                MESSAGE_BYTES_MAX + 1,
                MESSAGE_BYTES_MAX
            ))
        );
        m.truncate(MESSAGE_BYTES_MAX);
        assert!(check_limits(&m).is_ok());
    }

    #[test]
    fn header_section_over_its_limit_is_refused() {
        let mut m = b"From: a@example.org\r\n".to_vec();
        while m.len() <= HEADER_BYTES_MAX {
            m.extend_from_slice(format!("X-Long: {}\r\n", "y".repeat(900)).as_bytes());
        }
        m.extend_from_slice(b"\r\nbody\r\n");
        assert!(matches!(
            check_limits(&m),
            Err(MessageError::TooLarge {
                what: "header section",
                ..
            })
        ));
    }

    #[test]
    fn header_fields_over_their_limit_are_refused_in_any_block() {
        let fields = |n: usize| -> String { (0..n).map(|i| format!("X-F{i}: v\r\n")).collect() };
        let top = format!("From: a@example.org\r\n{}\r\nbody\r\n", fields(1000));
        let e = check_limits(top.as_bytes()).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| too_many(e, "header fields in one block")),
            "{e:?}"
        );
        let ok = format!("From: a@example.org\r\n{}\r\nbody\r\n", fields(999));
        assert!(check_limits(ok.as_bytes()).is_ok());
        let part = format!(
            "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n{}\r\nx\r\n--b--\r\n",
            fields(1001)
        );
        let e = check_limits(part.as_bytes()).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| too_many(e, "header fields in one block")),
            "{e:?}"
        );
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut m = String::from("From: a@example.org\r\n");
        for i in 0..depth {
            m += &format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n");
        }
        m += "Content-Type: text/plain\r\n\r\nleaf\r\n";
        for i in (0..depth).rev() {
            m += &format!("--b{i}--\r\n");
        }
        m.into_bytes()
    }

    #[test]
    fn nesting_over_its_limit_is_refused() -> Result<(), Box<dyn Error>> {
        assert_eq!(
            check_limits(&nested(MIME_DEPTH_MAX + 1)),
            Err(MessageError::TooDeep {
                limit: MIME_DEPTH_MAX
            })
        );
        let p = parse(&nested(MIME_DEPTH_MAX))?;
        assert_eq!(p.parts.len(), 1);
        // Attached messages nest too.
        let mut m = b"From: a@example.org\r\n".to_vec();
        for _ in 0..MIME_DEPTH_MAX + 1 {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\n");
        }
        m.extend_from_slice(b"\r\nbody\r\n");
        assert_eq!(
            check_limits(&m),
            Err(MessageError::TooDeep {
                limit: MIME_DEPTH_MAX
            })
        );
        Ok(())
    }

    /// A hundred thousand nested attached messages would overflow the stack
    /// inside mail-parser; the count before parsing refuses them.
    #[test]
    fn deep_attached_messages_are_refused_before_parsing() {
        let mut m = b"From: a@example.org\r\n".to_vec();
        for _ in 0..100_000 {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        m.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n");
        let e = check_limits(&m).err();
        assert!(
            e.as_ref().is_some_and(|e| too_many(e, "MIME parts")),
            "{e:?}"
        );
    }

    #[test]
    fn parts_over_their_limit_are_refused() -> Result<(), Box<dyn Error>> {
        let message = |n: usize| {
            let mut m = String::from(
                "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            );
            for _ in 0..n {
                m += "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n";
            }
            m += "--b--\r\n";
            m.into_bytes()
        };
        // The multipart itself is a part.
        let e = check_limits(&message(MIME_PARTS_MAX)).err();
        assert!(
            e.as_ref().is_some_and(|e| too_many(e, "MIME parts")),
            "{e:?}"
        );
        assert_eq!(
            parse(&message(MIME_PARTS_MAX - 1))?.parts.len(),
            MIME_PARTS_MAX - 1
        );
        Ok(())
    }

    #[test]
    fn malformed_messages_still_parse() -> Result<(), Box<dyn Error>> {
        for m in [
            &b""[..],
            b"\xff\xfe\x00garbage",
            b"no colon here\r\n\r\nbody",
            b":\r\n:\r\n",
        ] {
            let p = parse(m)?;
            assert!(!p.well_formed);
        }
        for (name, m) in corpus(1, false) {
            let p = parse(&m).map_err(|e| format!("{name}: {e}"))?;
            assert_eq!(p.well_formed, !name.starts_with("malformed"), "{name}");
        }
        Ok(())
    }

    #[test]
    fn headers_and_bodies_are_decoded() -> Result<(), Box<dyn Error>> {
        let all = corpus(2, false);
        let get = |n: &str| {
            all.iter()
                .find(|(name, _)| name == n)
                .map(|(_, m)| m.clone())
                .ok_or(n.to_string())
        };
        let p = parse(&get("rfc2047-headers")?)?;
        assert_eq!(p.envelope.from, "Ren\u{e9} D\u{fc}rr <rene@example.org>");
        assert_eq!(
            p.envelope.to,
            [
                "J\u{f6}rg <joerg@example.net>",
                "\u{5c71}\u{7530} <yamada@example.jp>"
            ]
        );
        assert_eq!(p.envelope.subject, "\u{c9}change \u{e0} Paris et \u{20ac}");
        assert_eq!(p.envelope.date_ms, Some(1_796_634_000_000));
        assert!(
            p.headers.contains(&(
                "X-Note".to_string(),
                "\u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}".to_string()
            )),
            "{:?}",
            p.headers
        );
        assert!(
            parse(&get("charset-latin1")?)?
                .preview
                .starts_with("Caf\u{e9} cr\u{e8}me")
        );
        assert!(
            parse(&get("charset-cp1252")?)?
                .preview
                .starts_with("\u{201c}Smart quotes\u{201d} \u{2013} and \u{20ac}")
        );
        assert!(
            parse(&get("charset-sjis")?)?
                .preview
                .starts_with("\u{3053}\u{3093}\u{306b}\u{3061}\u{306f}\u{4e16}\u{754c}")
        );
        assert!(
            parse(&get("charset-koi8r")?)?
                .preview
                .starts_with("\u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}")
        );
        let p = parse(&get("nested-mixed-alternative-related")?)?;
        let media: Vec<&str> = p.parts.iter().map(|p| p.media_type.as_str()).collect();
        assert_eq!(
            media,
            ["text/plain", "text/html", "image/png", "application/pdf"]
        );
        assert_eq!(p.parts[3].name.as_deref(), Some("report.pdf"));
        assert!(p.parts[3].is_attachment && !p.parts[0].is_attachment);
        Ok(())
    }

    #[test]
    fn preview_is_bounded_at_a_char_boundary() -> Result<(), Box<dyn Error>> {
        // 3-byte chars: 4096 is not a multiple of 3.
        let body = "\u{20ac}".repeat(5000);
        let m =
            format!("From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}");
        let p = parse(m.as_bytes())?;
        assert_eq!(p.preview.len(), 4095);
        assert!(p.preview.len() <= PREVIEW_BYTES_MAX);
        let t = text(m.as_bytes(), 100);
        assert_eq!(t, "\u{20ac}".repeat(33));
        Ok(())
    }

    #[test]
    fn text_gathers_every_text_part() {
        let all = corpus(4, false);
        let m = &all
            .iter()
            .find(|(n, _)| n == "alternative-qp")
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        let t = text(m, 1 << 20);
        // The plain part and the HTML part reduced to text.
        assert_eq!(t.matches("Caf\u{e9}").count(), 2, "{t}");
        assert!(!t.contains("<p>"));
        assert_eq!(text(&vec![b'a'; MESSAGE_BYTES_MAX + 1], 10), "");
    }
}
