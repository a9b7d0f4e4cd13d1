//! What `dem read` shows of a message: the top-level header fields, the
//! text and HTML bodies, and the attachments, each of which can be taken
//! out decoded for saving. `parse` holds the index a mailbox keeps; this
//! is the reader's view of the same bytes.

use mail_parser::{Encoding, Message, PartType};

use crate::error::MessageError;
use crate::mime;
use crate::parse::{PartInfo, headers, parts};

/// A message as a reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The top-level header fields in order, decoded (as `Parsed::headers`).
    pub headers: Vec<(String, String)>,
    /// The plain-text bodies joined by a blank line; the HTML body reduced
    /// to text when the message has no plain text.
    pub text: Option<String>,
    /// The HTML bodies joined, when the message has any.
    pub html: Option<String>,
    /// The attachments in document order; `attachment_content` takes an
    /// index into this list.
    pub attachments: Vec<PartInfo>,
}

/// Renders `raw`. Only limit violations are errors; bytes with no header
/// at all render as a plain-text body.
pub fn render(raw: &[u8]) -> Result<Rendered, MessageError> {
    let Some(message) = mime::parse_checked(raw)? else {
        return Ok(Rendered {
            text: Some(String::from_utf8_lossy(raw).into_owned()),
            ..Rendered::default()
        });
    };
    let text = bodies(&message, &message.text_body, false);
    let html = bodies(&message, &message.html_body, true);
    let text = text.or_else(|| {
        html.as_deref()
            .map(mail_parser::decoders::html::html_to_text)
    });
    Ok(Rendered {
        headers: headers(raw, &message),
        text,
        html,
        attachments: parts(&message)
            .into_iter()
            .filter(|p| p.is_attachment)
            .collect(),
    })
}

/// The `index`-th attachment (as in `Rendered::attachments`) and its
/// decoded bytes: transfer encoding undone; a text part converted to
/// UTF-8; an attached message as its own bytes. `None` when there is no
/// such attachment or the message breaks a limit.
pub fn attachment_content(raw: &[u8], index: usize) -> Option<(PartInfo, Vec<u8>)> {
    let message = mime::parse_checked(raw).ok()??;
    let nodes = mime::walk(&message).ok()?;
    let infos = parts(&message);
    // `parts` keeps exactly the nodes this filter keeps, in the same order.
    let (info, node) = infos
        .into_iter()
        .zip(nodes.iter().filter(|n| n.is_shown()))
        .filter(|(info, _)| info.is_attachment)
        .nth(index)?;
    let part = node.part;
    let bytes = match &part.body {
        PartType::Message(_) if part.encoding == Encoding::None => raw
            .get(part.offset_body as usize..part.offset_end as usize)?
            .to_vec(),
        _ => part.contents().to_vec(),
    };
    Some((info, bytes))
}

/// The text (or HTML) of the body parts `ids` joined by a blank line;
/// `None` when none of them is of that kind.
fn bodies(message: &Message<'_>, ids: &[u32], html: bool) -> Option<String> {
    let mut out: Option<String> = None;
    for &id in ids {
        let piece = match (&message.parts.get(id as usize)?.body, html) {
            (PartType::Text(t), false) | (PartType::Html(t), true) => t,
            _ => continue,
        };
        let s = out.get_or_insert_with(String::new);
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::corpus::corpus;

    #[test]
    fn corpus_messages_render() -> Result<(), Box<dyn Error>> {
        let all = corpus(9, false);
        let get = |n: &str| {
            all.iter()
                .find(|(name, _)| name == n)
                .map(|(_, m)| m.clone())
                .ok_or(n.to_string())
        };

        let r = render(&get("nested-mixed-alternative-related")?)?;
        assert!(r.text.is_some() && r.html.as_deref().is_some_and(|h| h.contains("cid:logo@x")));
        let media: Vec<&str> = r
            .attachments
            .iter()
            .map(|a| a.media_type.as_str())
            .collect();
        assert_eq!(media, ["image/png", "application/pdf"]);
        let (info, pdf) =
            attachment_content(&get("nested-mixed-alternative-related")?, 1).ok_or("no pdf")?;
        assert_eq!(info.size_bytes, pdf.len() as u64);
        assert!(pdf.len() >= 100 * 1024);

        // An attached message is one attachment; its bytes are the message.
        let m = get("attached-messages")?;
        let r = render(&m)?;
        assert_eq!(r.attachments.len(), 2);
        let (_, inner) = attachment_content(&m, 0).ok_or("no inner message")?;
        assert!(inner.starts_with(b"From: "));
        assert!(crate::parse::parse(&inner)?.envelope.subject == "Inner");
        let (_, encoded_inner) = attachment_content(&m, 1).ok_or("no encoded inner")?;
        assert!(encoded_inner.starts_with(b"From: "));

        // HTML only: text is derived from it.
        let html = b"From: a@example.org\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>you</b></p>";
        let r = render(html)?;
        assert_eq!(r.text.as_deref().map(str::trim), Some("Hello you"));

        // No header at all: the bytes are the text.
        for bytes in [&b"\xff\xfejust bytes"[..], b"no colon here\r\n\r\nbody"] {
            let r = render(bytes)?;
            assert!(r.headers.is_empty());
            assert_eq!(
                r.text.as_deref().map(str::as_bytes),
                Some(String::from_utf8_lossy(bytes).as_bytes())
            );
        }
        Ok(())
    }

    #[test]
    fn render_refuses_what_check_limits_refuses() {
        let m = vec![b'a'; crate::limits::MESSAGE_BYTES_MAX + 1];
        assert!(render(&m).is_err());
        assert!(attachment_content(&m, 0).is_none());
    }
}
