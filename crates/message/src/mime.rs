//! The walk over mail-parser's tree that `parse`, `render` and `split`
//! share: one parser configuration, the limit checks, and every MIME part
//! in document order with its depth and the boundary around it. The walk
//! uses an explicit stack, so a hostile nesting cannot exhaust the call
//! stack before `MIME_DEPTH_MAX` refuses it.

use mail_parser::{
    Encoding, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType,
    parsers::MessageStream,
};

use crate::error::{
    MessageError, WHAT_HEADER_FIELDS, WHAT_HEADER_SECTION, WHAT_MESSAGE, WHAT_MIME_PARTS,
};
use crate::limits::{
    HEADER_BYTES_MAX, HEADER_FIELDS_MAX, MESSAGE_BYTES_MAX, MIME_DEPTH_MAX, MIME_PARTS_MAX,
};

/// The parser: MIME, date, address and id fields typed; every other field
/// decoded as unstructured text (RFC 2047 encoded words included).
pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        .default_header_text()
}

/// One MIME part met by the walk.
pub(crate) struct Node<'a, 'x> {
    pub part: &'a MessagePart<'x>,
    /// The part's index in its message's `parts` (the top-level message's
    /// when `in_message` is false).
    pub id: usize,
    /// The boundary of the closest multipart around the part, if any: the
    /// part's body ends where that boundary's delimiter line begins.
    pub boundary: Option<&'a str>,
    /// Whether the part's offsets index the message's own bytes. They do
    /// not inside an attached message that was itself transfer-encoded:
    /// mail-parser parsed the decoded bytes.
    pub in_raw: bool,
    /// Whether the part lies inside an attached message (any depth).
    pub in_message: bool,
    /// Whether the part has no child parts: a text, binary or a
    /// transfer-encoded attached message.
    pub is_leaf: bool,
}

impl Node<'_, '_> {
    /// Whether a reader sees the part as one of the message's parts: a
    /// leaf outside attached messages, or an attached message as a whole.
    pub fn is_shown(&self) -> bool {
        !self.in_message && (self.is_leaf || matches!(self.part.body, PartType::Message(_)))
    }
}

/// Every part of `message` in document order, or the first limit the walk
/// hits (part count, depth, header fields per block).
pub(crate) fn walk<'a, 'x>(message: &'a Message<'x>) -> Result<Vec<Node<'a, 'x>>, MessageError> {
    struct Frame<'a, 'x> {
        message: &'a Message<'x>,
        id: usize,
        /// 0 for the message itself; one more per multipart or attached
        /// message around the part.
        depth: usize,
        boundary: Option<&'a str>,
        in_raw: bool,
        in_message: bool,
    }
    let mut nodes = Vec::new();
    let mut stack = vec![Frame {
        message,
        id: 0,
        depth: 0,
        boundary: None,
        in_raw: true,
        in_message: false,
    }];
    while let Some(f) = stack.pop() {
        let Some(part) = f.message.parts.get(f.id) else {
            continue;
        };
        if f.depth > MIME_DEPTH_MAX {
            return Err(MessageError::TooDeep {
                limit: MIME_DEPTH_MAX,
            });
        }
        if nodes.len() >= MIME_PARTS_MAX {
            return Err(MessageError::TooMany {
                what: WHAT_MIME_PARTS,
                limit: MIME_PARTS_MAX as u64,
                actual: (nodes.len() + 1 + stack.len()) as u64,
            });
        }
        if part.headers.len() > HEADER_FIELDS_MAX {
            return Err(MessageError::TooMany {
                what: WHAT_HEADER_FIELDS,
                limit: HEADER_FIELDS_MAX as u64,
                actual: part.headers.len() as u64,
            });
        }
        let mut is_leaf = true;
        match &part.body {
            PartType::Multipart(children) => {
                is_leaf = false;
                let boundary = part.content_type().and_then(|ct| ct.attribute("boundary"));
                // Pushed in reverse so that they pop in document order.
                for &child in children.iter().rev() {
                    // Children come after their parent in mail-parser's
                    // list; anything else would be a cycle, never walked.
                    if child as usize <= f.id {
                        continue;
                    }
                    stack.push(Frame {
                        message: f.message,
                        id: child as usize,
                        depth: f.depth + 1,
                        boundary: boundary.or(f.boundary),
                        in_raw: f.in_raw,
                        in_message: f.in_message,
                    });
                }
            }
            PartType::Message(nested) => {
                // An attached message sent as is was parsed in place; one
                // that was base64- or QP-encoded was parsed from its decoded
                // bytes, so its parts' offsets do not index ours.
                is_leaf = part.encoding != Encoding::None;
                stack.push(Frame {
                    message: nested,
                    id: 0,
                    depth: f.depth + 1,
                    boundary: f.boundary,
                    in_raw: f.in_raw && !is_leaf,
                    in_message: true,
                });
            }
            _ => {}
        }
        nodes.push(Node {
            part,
            id: f.id,
            boundary: f.boundary,
            in_raw: f.in_raw,
            in_message: f.in_message,
            is_leaf,
        });
    }
    Ok(nodes)
}

/// The length of the top-level header section: up to and including the
/// empty line that ends it, or the whole message when there is none.
pub(crate) fn header_section_len(raw: &[u8]) -> usize {
    let mut line_start = 0;
    while line_start < raw.len() {
        let rest = &raw[line_start..];
        let line_len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let line = &rest[..line_len];
        if line == b"\n" || line == b"\r\n" {
            return line_start + line_len;
        }
        line_start += line_len;
    }
    raw.len()
}

/// The limits checked before parsing: size, header section, and a bound
/// on nesting (`nesting_fields`).
pub(crate) fn check_sizes(raw: &[u8]) -> Result<(), MessageError> {
    if raw.len() > MESSAGE_BYTES_MAX {
        return Err(MessageError::too_large(
            WHAT_MESSAGE,
            MESSAGE_BYTES_MAX,
            raw.len(),
        ));
    }
    let header = header_section_len(raw);
    if header > HEADER_BYTES_MAX {
        return Err(MessageError::too_large(
            WHAT_HEADER_SECTION,
            HEADER_BYTES_MAX,
            header,
        ));
    }
    let nesting = nesting_fields(raw);
    if nesting > MIME_PARTS_MAX {
        return Err(MessageError::TooMany {
            what: WHAT_MIME_PARTS,
            limit: MIME_PARTS_MAX as u64,
            actual: nesting as u64,
        });
    }
    Ok(())
}

/// The lines anywhere in `raw` that look like a `Content-Type` field
/// naming a multipart or an attached message: an upper bound on the parts
/// that can nest, counted before mail-parser runs. mail-parser builds
/// nested messages iteratively but drops them recursively, so a hundred
/// thousand nested `message/rfc822` parts would overflow the stack before
/// `walk` could refuse their depth. At `MIME_PARTS_MAX` such lines the
/// nesting stays far below what a 2 MiB thread stack survives (tested).
pub(crate) fn nesting_fields(raw: &[u8]) -> usize {
    const NAME: &[u8] = b"content-type";
    let mut count = 0;
    for line in raw.split(|&b| b == b'\n') {
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            continue;
        }
        let rest = &line[NAME.len()..];
        let rest = &rest[rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count()..];
        let Some(value) = rest.strip_prefix(b":") else {
            continue;
        };
        let value = &value[value
            .iter()
            .take_while(|&&b| b.is_ascii_whitespace())
            .count()..];
        // A folded value starts on the next line; count the field then,
        // erring on the side of counting.
        let starts = |word: &[u8]| {
            value.len() >= word.len() && value[..word.len()].eq_ignore_ascii_case(word)
        };
        if value.is_empty() || starts(b"multipart") || starts(b"message") {
            count += 1;
        }
    }
    count
}

/// Parses `raw` after the limit checks; `None` when it has no header
/// field at all (the message is then indexed and shown as plain bytes).
pub(crate) fn parse_checked(raw: &[u8]) -> Result<Option<Message<'_>>, MessageError> {
    check_sizes(raw)?;
    // mail-parser promises never to panic and is fuzzed upstream; a panic
    // on one hostile message must still not take down the mailbox that
    // receives it, so the message is then treated as one without header.
    let parsed = std::panic::catch_unwind(|| parser().parse(raw));
    let Ok(Some(message)) = parsed else {
        return Ok(None);
    };
    // mail-parser takes the first line of any text for a header; with no
    // field name RFC 5322 allows, there is no header to speak of and the
    // whole message is shown as its body.
    let is_field_name =
        |n: &str| !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !message
        .root_part()
        .headers
        .iter()
        .any(|h| is_field_name(h.name.as_str()))
    {
        return Ok(None);
    }
    walk(&message)?;
    Ok(Some(message))
}

/// `type/subtype` of a part, lower case; what RFC 2045 assumes when the
/// field is missing (`text/plain`, or `message/rfc822` for an attached
/// message).
pub(crate) fn media_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{}", ct.c_type, sub).to_ascii_lowercase(),
            None => ct.c_type.to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

/// A header field's value as a reader sees it: unfolded, RFC 2047 encoded
/// words decoded, surrounding space trimmed.
pub(crate) fn decoded_value(raw: &[u8], start: u32, end: u32) -> String {
    let Some(bytes) = raw.get(start as usize..(end as usize).min(raw.len())) else {
        return String::new();
    };
    MessageStream::new(bytes)
        .parse_unstructured()
        .as_text()
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// At most `max_bytes` of `s`, cut at a char boundary.
pub(crate) fn truncate(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
