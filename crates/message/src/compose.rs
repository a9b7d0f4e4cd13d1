//! Composing an outgoing message: the fields a user fills in become the
//! exact RFC 5322 bytes that are sent and kept. mail-builder writes the
//! header fields (RFC 2047 encoding non-ASCII text) and the MIME tree; this
//! module checks the fields, picks the tree (text, alternative with HTML,
//! mixed with attachments) and makes the output deterministic: the
//! boundaries derive from the content, never from a clock.

use std::borrow::Cow;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuilderAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::mime::{BodyPart, MimePart};

use crate::error::{MessageError, WHAT_MESSAGE};
use crate::limits::MESSAGE_BYTES_MAX;

/// A mailbox address: an optional display name and the address itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    pub email: String,
}

/// A file attached to an outgoing message; sent base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAttachment {
    /// The file name the recipient sees.
    pub name: String,
    /// `type/subtype`, e.g. `application/pdf`.
    pub media_type: String,
    pub content: Vec<u8>,
}

/// Everything an outgoing message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub from: Address,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub subject: String,
    /// Milliseconds since the Unix epoch; `Date` has whole seconds (UTC).
    pub date_ms: i64,
    /// Without the angle brackets, e.g. from `new_message_id`.
    pub message_id: String,
    /// Without the angle brackets.
    pub in_reply_to: Option<String>,
    /// Without the angle brackets.
    pub references: Vec<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<OutgoingAttachment>,
}

/// The message's bytes: From, To, Cc, Subject, Date, Message-ID,
/// In-Reply-To, References, MIME-Version; a text/plain body, inside
/// multipart/alternative when there is HTML, inside multipart/mixed when
/// there are attachments. The same `Compose` always gives the same bytes.
/// Refuses fields that cannot be header text (line breaks, empty or
/// malformed addresses and ids) and a result over `MESSAGE_BYTES_MAX`.
pub fn compose(c: &Compose) -> Result<Vec<u8>, MessageError> {
    check_fields(c)?;
    let content: usize = c.text.len()
        + c.html.as_ref().map_or(0, String::len)
        + c.attachments.iter().map(|a| a.content.len()).sum::<usize>();
    if content > MESSAGE_BYTES_MAX {
        // Encoding only grows it; no need to build it to know.
        return Err(MessageError::too_large(
            WHAT_MESSAGE,
            MESSAGE_BYTES_MAX,
            content,
        ));
    }

    let seed = boundary_seed(c);
    let mut body = MimePart::new("text/plain", c.text.as_str());
    if let Some(html) = &c.html {
        body = MimePart::new(
            multipart("alternative", &seed),
            vec![body, MimePart::new("text/html", html.as_str())],
        );
    }
    if !c.attachments.is_empty() {
        let mut parts = vec![body];
        for a in &c.attachments {
            parts.push(
                MimePart::new(
                    ContentType::new(a.media_type.as_str()),
                    BodyPart::Binary(Cow::Owned(base64_lines(&a.content))),
                )
                .attachment(a.name.as_str())
                // The body is already encoded: mail-builder writes it as is.
                .transfer_encoding("base64"),
            );
        }
        body = MimePart::new(multipart("mixed", &seed), parts);
    }

    let mut b = MessageBuilder::new().from(address(&c.from));
    if !c.to.is_empty() {
        b = b.to(BuilderAddress::new_list(c.to.iter().map(address).collect()));
    }
    if !c.cc.is_empty() {
        b = b.cc(BuilderAddress::new_list(c.cc.iter().map(address).collect()));
    }
    b = b
        .subject(c.subject.as_str())
        .date(Date::new(c.date_ms.div_euclid(1000)))
        .message_id(c.message_id.as_str());
    if let Some(id) = &c.in_reply_to {
        b = b.in_reply_to(id.as_str());
    }
    if !c.references.is_empty() {
        b = b.references(MessageId::new_list(c.references.iter().map(String::as_str)));
    }
    let mut out = Vec::new();
    b.body(body).serialize(&mut out);
    if out.len() > MESSAGE_BYTES_MAX {
        return Err(MessageError::too_large(
            WHAT_MESSAGE,
            MESSAGE_BYTES_MAX,
            out.len(),
        ));
    }
    Ok(out)
}

/// A Message-ID (without angle brackets) for a new message:
/// `<32 hex digits of BLAKE3(seed)>@<domain>`. The caller supplies the
/// randomness (16 random bytes are plenty), so this stays deterministic and
/// testable. An empty domain becomes `dem.invalid`.
pub fn new_message_id(seed: &[u8], domain: &str) -> String {
    let hash = blake3::hash(seed);
    let domain = if domain.is_empty() {
        "dem.invalid"
    } else {
        domain
    };
    format!("{}@{domain}", &hash.to_hex()[..32])
}

fn address(a: &Address) -> BuilderAddress<'_> {
    BuilderAddress::new_address(
        a.name.as_deref().filter(|n| !n.is_empty()),
        a.email.as_str(),
    )
}

/// A multipart content type with a boundary derived from the whole
/// content: deterministic, and a string the content cannot contain short of
/// a BLAKE3 collision.
fn multipart(subtype: &str, seed: &blake3::Hash) -> ContentType<'static> {
    let boundary = format!("dem-{subtype}-{}", &seed.to_hex()[..32]);
    ContentType::new(format!("multipart/{subtype}")).attribute("boundary", boundary)
}

fn boundary_seed(c: &Compose) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"dem-message boundary\0");
    for s in [c.message_id.as_str(), c.subject.as_str(), c.text.as_str()] {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    let html = c.html.as_deref().unwrap_or("");
    h.update(&(html.len() as u64).to_le_bytes());
    h.update(html.as_bytes());
    for a in &c.attachments {
        h.update(&(a.content.len() as u64).to_le_bytes());
        h.update(&a.content);
    }
    h.finalize()
}

/// Refuses what cannot become a header field.
fn check_fields(c: &Compose) -> Result<(), MessageError> {
    let bad = |what: &str, why: &str| Err(MessageError::Compose(format!("{what} {why}")));
    let no_breaks = |what: &str, s: &str| {
        if s.contains(['\r', '\n', '\0']) {
            bad(what, "contains a line break or NUL")
        } else {
            Ok(())
        }
    };
    let check_address = |what: &str, a: &Address| {
        if let Some(n) = &a.name {
            no_breaks(what, n)?;
        }
        let e = &a.email;
        if e.is_empty()
            || !e.contains('@')
            || e.chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || "<>,;\"".contains(ch))
        {
            return bad(what, &format!("has an unusable address {e:?}"));
        }
        Ok(())
    };
    let check_id = |what: &str, id: &str| {
        if id.is_empty()
            || !id.is_ascii()
            || id
                .chars()
                .any(|ch| ch.is_ascii_whitespace() || ch.is_ascii_control() || "<>".contains(ch))
        {
            return bad(what, &format!("is not a message id: {id:?}"));
        }
        Ok(())
    };
    check_address("From", &c.from)?;
    for a in &c.to {
        check_address("To", a)?;
    }
    for a in &c.cc {
        check_address("Cc", a)?;
    }
    no_breaks("Subject", &c.subject)?;
    check_id("Message-ID", &c.message_id)?;
    if let Some(id) = &c.in_reply_to {
        check_id("In-Reply-To", id)?;
    }
    for id in &c.references {
        check_id("References", id)?;
    }
    for a in &c.attachments {
        no_breaks("an attachment name", &a.name)?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match a.media_type.split_once('/') {
            Some((t, s)) if token(t) && token(s) => {}
            _ => {
                return bad(
                    "an attachment's media type",
                    &format!("is not type/subtype: {:?}", a.media_type),
                );
            }
        }
    }
    Ok(())
}

/// Base64 (RFC 2045) in lines of 76 characters separated by CRLF.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    base64_lines_with(data, b"\r\n")
}

/// Base64 (RFC 2045) in lines of 76 characters separated by `newline`.
pub(crate) fn base64_lines_with(data: &[u8], newline: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len().div_ceil(57) * 78);
    for (i, line) in data.chunks(57).enumerate() {
        if i > 0 {
            out.extend_from_slice(newline);
        }
        for chunk in line.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            let sym = |shift: u32| ALPHABET[(n >> shift & 63) as usize];
            out.push(sym(18));
            out.push(sym(12));
            out.push(if chunk.len() > 1 { sym(6) } else { b'=' });
            out.push(if chunk.len() > 2 { sym(0) } else { b'=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::mime::header_section_len;
    use crate::parse::parse;
    use crate::render::{attachment_content, render};

    fn sample() -> Compose {
        Compose {
            from: Address {
                name: Some("Fran\u{e7}oise M\u{fc}ller \u{5c71}\u{7530}".into()),
                email: "francoise@example.org".into(),
            },
            to: vec![
                Address {
                    name: None,
                    email: "bob@example.net".into(),
                },
                Address {
                    name: Some("\u{41c}\u{430}\u{440}\u{438}\u{44f}, \"the\" boss".into()),
                    email: "maria@example.com".into(),
                },
            ],
            cc: vec![Address {
                name: Some("Carol".into()),
                email: "carol@example.com".into(),
            }],
            subject: "R\u{e9}sum\u{e9} \u{2014} \u{65e5}\u{672c}\u{8a9e} \u{1f4e8} and a long tail to make the subject fold over more than one line of the header".into(),
            date_ms: 1_796_651_234_567,
            message_id: new_message_id(b"seed", "example.org"),
            in_reply_to: Some("parent@example.org".into()),
            references: vec!["root@example.org".into(), "parent@example.org".into()],
            text: "Hello,\nthe numbers are attached.\n\u{2014} F.\n".into(),
            html: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn every_field_round_trips_and_the_header_is_ascii() -> Result<(), Box<dyn Error>> {
        let c = sample();
        let raw = compose(&c)?;
        let header = &raw[..header_section_len(&raw)];
        assert!(
            header.is_ascii(),
            "non-ASCII on the wire: {}",
            String::from_utf8_lossy(header)
        );
        assert!(
            String::from_utf8_lossy(header).contains("=?"),
            "no RFC 2047 encoded word"
        );
        let p = parse(&raw)?;
        assert!(p.well_formed);
        let e = p.envelope;
        assert_eq!(
            e.from,
            "Fran\u{e7}oise M\u{fc}ller \u{5c71}\u{7530} <francoise@example.org>"
        );
        assert_eq!(
            e.to,
            [
                "bob@example.net".to_string(),
                "\u{41c}\u{430}\u{440}\u{438}\u{44f}, \"the\" boss <maria@example.com>".to_string()
            ]
        );
        assert_eq!(e.cc, ["Carol <carol@example.com>"]);
        assert_eq!(e.subject, c.subject);
        assert_eq!(e.date_ms, Some(1_796_651_234_000), "whole seconds");
        assert_eq!(e.message_id.as_deref(), Some(c.message_id.as_str()));
        assert_eq!(e.in_reply_to.as_deref(), Some("parent@example.org"));
        assert_eq!(e.references, c.references);
        assert_eq!(p.preview, c.text.replace('\n', "\r\n"));
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.parts[0].media_type, "text/plain");
        Ok(())
    }

    #[test]
    fn compose_is_deterministic() -> Result<(), Box<dyn Error>> {
        let mut c = sample();
        c.html = Some("<p>Hi</p>".into());
        c.attachments.push(OutgoingAttachment {
            name: "a.bin".into(),
            media_type: "application/octet-stream".into(),
            content: vec![1, 2, 3],
        });
        assert_eq!(compose(&c)?, compose(&c)?);
        assert_eq!(new_message_id(b"x", "d"), new_message_id(b"x", "d"));
        assert_ne!(new_message_id(b"x", "d"), new_message_id(b"y", "d"));
        assert!(new_message_id(b"x", "").ends_with("@dem.invalid"));
        Ok(())
    }

    #[test]
    fn html_and_attachments_make_the_mime_tree() -> Result<(), Box<dyn Error>> {
        let mut c = sample();
        c.html = Some("<p>Hello <b>there</b></p>".into());
        let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        c.attachments = vec![
            OutgoingAttachment {
                name: "bytes.bin".into(),
                media_type: "application/octet-stream".into(),
                content: binary.clone(),
            },
            OutgoingAttachment {
                name: "n\u{f6}tes.txt".into(),
                media_type: "text/plain".into(),
                content: b"line one\r\nline two\r\n".to_vec(),
            },
            OutgoingAttachment {
                name: "empty.dat".into(),
                media_type: "application/x-empty".into(),
                content: Vec::new(),
            },
        ];
        let raw = compose(&c)?;
        let s = String::from_utf8_lossy(&raw);
        assert!(s.contains("multipart/mixed"));
        assert!(s.contains("multipart/alternative"));
        assert_eq!(s.matches("Content-Transfer-Encoding: base64").count(), 3);
        let r = render(&raw)?;
        assert!(
            r.text
                .as_deref()
                .is_some_and(|t| t.contains("the numbers are attached"))
        );
        assert_eq!(r.html.as_deref(), Some("<p>Hello <b>there</b></p>"));
        let names: Vec<Option<&str>> = r.attachments.iter().map(|a| a.name.as_deref()).collect();
        assert_eq!(
            names,
            [Some("bytes.bin"), Some("n\u{f6}tes.txt"), Some("empty.dat")]
        );
        assert_eq!(attachment_content(&raw, 0).map(|(_, b)| b), Some(binary));
        assert_eq!(
            attachment_content(&raw, 1).map(|(_, b)| b),
            Some(b"line one\r\nline two\r\n".to_vec())
        );
        assert_eq!(
            attachment_content(&raw, 2).map(|(i, b)| (i.size_bytes, b)),
            Some((0, Vec::new()))
        );
        assert!(attachment_content(&raw, 3).is_none());
        Ok(())
    }

    #[test]
    fn fields_that_cannot_be_header_text_are_refused() {
        type Spoil = Box<dyn Fn(&mut Compose)>;
        let cases: Vec<Spoil> = vec![
            Box::new(|c| c.subject = "a\r\nBcc: evil@example.org".into()),
            Box::new(|c| c.from.email = "not an address".into()),
            Box::new(|c| c.from.email = String::new()),
            Box::new(|c| c.to[0].name = Some("x\ny".into())),
            Box::new(|c| c.message_id = "<a@b>".into()),
            Box::new(|c| c.references.push("a b@c".into())),
            Box::new(|c| {
                c.attachments.push(OutgoingAttachment {
                    name: "a".into(),
                    media_type: "text/plain\r\nX: y".into(),
                    content: Vec::new(),
                })
            }),
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut c = sample();
            case(&mut c);
            assert!(
                matches!(compose(&c), Err(MessageError::Compose(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn a_message_over_the_size_limit_is_refused() {
        let mut c = sample();
        c.attachments.push(OutgoingAttachment {
            name: "big".into(),
            media_type: "application/octet-stream".into(),
            content: vec![0; MESSAGE_BYTES_MAX + 1],
        });
        assert!(matches!(
            compose(&c),
            Err(MessageError::TooLarge {
                what: "message",
                ..
            })
        ));
        // Under the limit raw, over it once base64-encoded.
        c.attachments[0].content.truncate(50 << 20);
        let e = compose(&c).err();
        assert!(
            matches!(e, Some(MessageError::TooLarge { what: "message", actual, .. }) if actual > MESSAGE_BYTES_MAX as u64),
            "{e:?}"
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_lines(plain.as_bytes()), encoded.as_bytes());
        }
        let lines = base64_lines(&[0u8; 100]);
        assert_eq!(
            lines.split(|&b| b == b'\n').next().map(<[u8]>::len),
            Some(77)
        );
    }
}
