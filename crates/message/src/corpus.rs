//! Generated messages shaped like real mail, for this crate's tests and
//! for benchmarks and tests elsewhere (feature `corpus`). `corpus` gives
//! one of each shape that matters to parsing and splitting: nested
//! multiparts, every transfer encoding, raw non-UTF-8 charsets, overlong
//! lines, bare LF, attachments from 0 bytes to 1 MiB (20 MB with `big`),
//! encoded-word headers and malformed messages. `realistic` gives a stream
//! with a plausible size distribution. Both are deterministic for a seed.

use crate::compose::{Address, Compose, OutgoingAttachment, base64_lines_with, compose};

mod random;
pub use random::random_message;

/// splitmix64: a few lines, good enough to vary generated content, and the
/// same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `lo..=hi`.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
        ((l + (h - l) * self.unit()).exp() as usize).clamp(lo, hi)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// ASCII words and line breaks (`newline`), about `n` bytes.
    pub fn prose(&mut self, n: usize, newline: &str) -> String {
        const WORDS: &[&str] = &[
            "mail", "the", "host", "of", "a", "mailbox", "replica", "and", "quorum", "letter",
            "dispatch", "meeting", "tomorrow", "attached", "please", "find", "report", "budget",
            "thanks", "regards", "--", "From", "=", "boundary", ">", "re:",
        ];
        let mut out = String::with_capacity(n + 16);
        let mut line = 0;
        while out.len() < n {
            let w = WORDS[self.below(WORDS.len() as u64) as usize];
            out.push_str(w);
            line += w.len() + 1;
            if line > 60 + self.below(12) as usize {
                out.push_str(newline);
                line = 0;
            } else {
                out.push(' ');
            }
        }
        out
    }
}

/// The messages of one seed, each with a name saying its shape. With
/// `big`, one more carries a 20 MB attachment.
pub fn corpus(seed: u64, big: bool) -> Vec<(String, Vec<u8>)> {
    let mut r = Rng::new(seed);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let crlf = "\r\n";
    let lf = "\n";
    let b = |r: &mut Rng, tag: &str| format!("{tag}=_{:016x}", r.next_u64());

    // Plain text, CRLF, 7bit.
    let body = r.prose(2000, crlf);
    out.push((
        "plain-crlf".into(),
        leaf(
            crlf,
            &std_headers(&mut r, "Plain"),
            &["Content-Type: text/plain; charset=us-ascii"],
            body.as_bytes(),
        ),
    ));

    // multipart/alternative, quoted-printable text and HTML.
    let bd = b(&mut r, "alt");
    let text = format!("Caf\u{e9} na\u{ef}ve \u{2014} {}", r.prose(3000, crlf));
    let html = format!(
        "<html><body><p>Caf\u{e9}</p><p>{}</p></body></html>",
        r.prose(3000, crlf)
    );
    let m = multipart(
        crlf,
        &std_headers(&mut r, "Alternative"),
        "alternative",
        &bd,
        &[
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                &qp(text.as_bytes(), crlf),
            ),
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: text/html; charset=utf-8",
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                &qp(html.as_bytes(), crlf),
            ),
        ],
    );
    out.push(("alternative-qp".into(), m));

    // mixed > alternative > related, an inline image, a 100 KiB PDF.
    let (bm, ba, br) = (b(&mut r, "mix"), b(&mut r, "alt"), b(&mut r, "rel"));
    let image = r.bytes(30_000);
    let pdf_len = 100 * 1024 + r.below(4096) as usize;
    let pdf = r.bytes(pdf_len);
    let related = multipart(
        crlf,
        &[],
        "related",
        &br,
        &[
            leaf(
                crlf,
                &[],
                &["Content-Type: text/html; charset=utf-8"],
                b"<html><body><img src=\"cid:logo@x\"></body></html>",
            ),
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: image/png",
                    "Content-ID: <logo@x>",
                    "Content-Transfer-Encoding: base64",
                ],
                &base64_lines_with(&image, crlf.as_bytes()),
            ),
        ],
    );
    let alternative = multipart(
        crlf,
        &[],
        "alternative",
        &ba,
        &[
            leaf(
                crlf,
                &[],
                &["Content-Type: text/plain; charset=utf-8"],
                r.prose(1500, crlf).as_bytes(),
            ),
            related,
        ],
    );
    let m = multipart(
        crlf,
        &std_headers(&mut r, "Nested"),
        "mixed",
        &bm,
        &[
            alternative,
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: application/pdf; name=\"report.pdf\"",
                    "Content-Disposition: attachment; filename=\"report.pdf\"",
                    "Content-Transfer-Encoding: base64",
                ],
                &base64_lines_with(&pdf, crlf.as_bytes()),
            ),
        ],
    );
    out.push(("nested-mixed-alternative-related".into(), m));

    // A base64 text body, single part.
    let text = format!(
        "\u{3053}\u{3093}\u{306b}\u{3061}\u{306f} {}",
        r.prose(5000, crlf)
    );
    out.push((
        "base64-text".into(),
        leaf(
            crlf,
            &std_headers(&mut r, "Base64 body"),
            &[
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: base64",
            ],
            &base64_lines_with(text.as_bytes(), crlf.as_bytes()),
        ),
    ));

    // 8bit UTF-8.
    let text = format!(
        "Gr\u{fc}\u{df}e aus K\u{f6}ln \u{1f600}\r\n{}",
        r.prose(1000, crlf)
    );
    out.push((
        "8bit-utf8".into(),
        leaf(
            crlf,
            &std_headers(&mut r, "8bit"),
            &[
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
            ],
            text.as_bytes(),
        ),
    ));

    // Raw non-UTF-8 charsets, 8bit on the wire.
    let charsets: [(&str, &str, &[u8]); 4] = [
        (
            "iso-8859-1",
            "latin1",
            b"Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade\r\n",
        ),
        (
            "windows-1252",
            "cp1252",
            b"\x93Smart quotes\x94 \x96 and \x80 euro\r\n",
        ),
        (
            "shift_jis",
            "sjis",
            b"\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\x90\xa2\x8a\x45\r\n",
        ),
        (
            "koi8-r",
            "koi8r",
            b"\xf0\xd2\xc9\xd7\xc5\xd4 \xcd\xc9\xd2\r\n",
        ),
    ];
    for (charset, tag, line) in charsets {
        let mut body = line.repeat(20 + r.below(20) as usize);
        body.extend_from_slice(r.prose(200, crlf).as_bytes());
        let ct = format!("Content-Type: text/plain; charset={charset}");
        out.push((
            format!("charset-{tag}"),
            leaf(
                crlf,
                &std_headers(&mut r, &format!("Charset {charset}")),
                &[ct.as_str(), "Content-Transfer-Encoding: 8bit"],
                &body,
            ),
        ));
    }

    // Lines over 998 characters.
    let long: String = (0..3)
        .map(|_| "x".repeat(1500 + r.below(3000) as usize) + crlf)
        .collect();
    out.push((
        "long-lines".into(),
        leaf(
            crlf,
            &std_headers(&mut r, "Long lines"),
            &["Content-Type: text/plain"],
            long.as_bytes(),
        ),
    ));

    // Bare LF everywhere, with a 100 KiB attachment.
    let bd = b(&mut r, "lf");
    let att = r.bytes(100 * 1024);
    let headers: Vec<String> = std_headers(&mut r, "Bare LF");
    let m = multipart(
        lf,
        &headers,
        "mixed",
        &bd,
        &[
            leaf(
                lf,
                &[],
                &["Content-Type: text/plain"],
                r.prose(2000, lf).as_bytes(),
            ),
            leaf(
                lf,
                &[],
                &[
                    "Content-Type: application/octet-stream; name=lf.bin",
                    "Content-Disposition: attachment; filename=lf.bin",
                    "Content-Transfer-Encoding: base64",
                ],
                &base64_lines_with(&att, lf.as_bytes()),
            ),
        ],
    );
    out.push(("bare-lf".into(), m));

    // Attachments of 0 bytes, 1 byte, ~100 KiB and ~1 MiB.
    let sizes = [
        0,
        1,
        100 * 1024 + r.below(1000) as usize,
        (1 << 20) + r.below(1000) as usize,
    ];
    let bd = b(&mut r, "att");
    let mut parts = vec![leaf(
        crlf,
        &[],
        &["Content-Type: text/plain; charset=utf-8"],
        b"See attached.\r\n",
    )];
    for (i, size) in sizes.iter().enumerate() {
        let data = r.bytes(*size);
        let ct = format!("Content-Type: application/octet-stream; name=\"a{i}.bin\"");
        let cd = format!("Content-Disposition: attachment; filename=\"a{i}.bin\"");
        parts.push(leaf(
            crlf,
            &[],
            &[
                ct.as_str(),
                cd.as_str(),
                "Content-Transfer-Encoding: base64",
            ],
            &base64_lines_with(&data, crlf.as_bytes()),
        ));
    }
    out.push((
        "attachments-0-1-100k-1m".into(),
        multipart(
            crlf,
            &std_headers(&mut r, "Attachments"),
            "mixed",
            &bd,
            &parts,
        ),
    ));

    // RFC 2047 encoded words in headers.
    let headers = vec![
        "From: =?utf-8?q?Ren=C3=A9_D=C3=BCrr?= <rene@example.org>".to_string(),
        "To: =?iso-8859-1?q?J=F6rg?= <joerg@example.net>, =?utf-8?b?5bGx55Sw?= <yamada@example.jp>"
            .into(),
        "Subject: =?utf-8?b?w4ljaGFuZ2Ugw6AgUGFyaXM=?= =?utf-8?q?_et_=E2=82=AC?=".into(),
        "Date: Mon, 7 Dec 2026 10:00:00 +0100".into(),
        format!("Message-ID: <{:x}@example.org>", r.next_u64()),
        "X-Note: =?koi8-r?b?8NLJ18XU?=".into(),
    ];
    out.push((
        "rfc2047-headers".into(),
        leaf(
            crlf,
            &headers,
            &["Content-Type: text/plain; charset=utf-8"],
            b"Bonjour.\r\n",
        ),
    ));

    // An attached message sent as is, with its own multipart and a
    // 100 KiB attachment; and one sent base64-encoded.
    let (bo, bi) = (b(&mut r, "outer"), b(&mut r, "inner"));
    let inner_att = r.bytes(100 * 1024);
    let inner = multipart(
        crlf,
        &std_headers(&mut r, "Inner"),
        "mixed",
        &bi,
        &[
            leaf(crlf, &[], &["Content-Type: text/plain"], b"Inner text.\r\n"),
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: image/jpeg; name=photo.jpg",
                    "Content-Transfer-Encoding: base64",
                ],
                &base64_lines_with(&inner_att, crlf.as_bytes()),
            ),
        ],
    );
    let inner_leaf = leaf(
        crlf,
        &std_headers(&mut r, "Inner plain"),
        &["Content-Type: text/plain"],
        r.prose(90_000, crlf).as_bytes(),
    );
    let m = multipart(
        crlf,
        &std_headers(&mut r, "Forward"),
        "mixed",
        &bo,
        &[
            leaf(
                crlf,
                &[],
                &["Content-Type: text/plain"],
                b"Forwarded below.\r\n",
            ),
            leaf(crlf, &[], &["Content-Type: message/rfc822"], &inner),
            leaf(
                crlf,
                &[],
                &[
                    "Content-Type: message/rfc822",
                    "Content-Transfer-Encoding: base64",
                ],
                &base64_lines_with(&inner_leaf, crlf.as_bytes()),
            ),
        ],
    );
    out.push(("attached-messages".into(), m));

    // Forty 60 KiB parts: under SPLIT_PART_BYTES_MIN each, over
    // STORED_BYTES_MAX together.
    let bd = b(&mut r, "many");
    let parts: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let ct = format!("Content-Type: text/plain; name=\"p{i}.txt\"");
            leaf(
                crlf,
                &[],
                &[ct.as_str()],
                r.prose(60 * 1024, crlf).as_bytes(),
            )
        })
        .collect();
    out.push((
        "many-medium-parts".into(),
        multipart(crlf, &std_headers(&mut r, "Many"), "mixed", &bd, &parts),
    ));

    // Malformed: a boundary that never appears, garbage header lines, a
    // part that is never closed.
    let mut m = b"From: broken@example.org\r\nSubject: broken\r\nthis is not a header\r\n:\r\nX-\x00\xff: \xfe\r\nContent-Type: multipart/mixed; boundary=\"declared\"\r\n\r\n--other\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    m.extend_from_slice(r.prose(80_000, crlf).as_bytes());
    out.push(("malformed-boundary".into(), m));
    let bd = b(&mut r, "open");
    let mut m = format!("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"{bd}\"\r\n\r\n--{bd}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").into_bytes();
    m.extend_from_slice(&base64_lines_with(&r.bytes(70_000), b"\r\n"));
    out.push(("malformed-unclosed".into(), m));
    out.push(("malformed-no-header".into(), r.bytes(5000)));

    // What `compose` writes, with every kind of body.
    let composed = compose(&Compose {
        from: Address {
            name: Some("Zo\u{eb} \u{41c}\u{430}\u{440}\u{438}\u{44f}".into()),
            email: "zoe@example.org".into(),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.net".into(),
        }],
        cc: vec![Address {
            name: Some("Carol".into()),
            email: "carol@example.com".into(),
        }],
        subject: "Quarterly numbers \u{2014} \u{1f4c8}".into(),
        date_ms: 1_796_000_000_000,
        message_id: format!("{:x}@example.org", r.next_u64()),
        in_reply_to: Some("prev@example.org".into()),
        references: vec!["first@example.org".into(), "prev@example.org".into()],
        text: r.prose(3000, "\n"),
        html: Some(format!("<p>{}</p>", r.prose(3000, "\n"))),
        attachments: vec![
            OutgoingAttachment {
                name: "numbers.csv".into(),
                media_type: "text/csv".into(),
                content: r.prose(200_000, "\r\n").into_bytes(),
            },
            OutgoingAttachment {
                name: "empty".into(),
                media_type: "application/octet-stream".into(),
                content: Vec::new(),
            },
        ],
    });
    if let Ok(m) = composed {
        out.push(("composed".into(), m));
    }

    if big {
        let bd = b(&mut r, "big");
        let data = r.bytes(20_000_000);
        out.push((
            "attachment-20mb".into(),
            multipart(
                crlf,
                &std_headers(&mut r, "Big"),
                "mixed",
                &bd,
                &[
                    leaf(crlf, &[], &["Content-Type: text/plain"], b"Big file.\r\n"),
                    leaf(
                        crlf,
                        &[],
                        &[
                            "Content-Type: video/mp4; name=big.mp4",
                            "Content-Disposition: attachment; filename=big.mp4",
                            "Content-Transfer-Encoding: base64",
                        ],
                        &base64_lines_with(&data, crlf.as_bytes()),
                    ),
                ],
            ),
        ));
    }
    out
}

/// `n` messages for benchmarks: text bodies with a median of about 4 KiB
/// and a log-uniform tail to 1 MiB; one mail in ten carries an attachment
/// of 100 KiB to 10 MiB (log-uniform).
pub fn realistic(seed: u64, n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n as u64).filter_map(move |i| realistic_message(seed, i, None))
}

/// Message `i` of the realistic stream `seed`, on its own (so a benchmark
/// can make any one without the ones before it), from `from` if given
/// (a host takes mail only from its sealing sender's own address).
pub fn realistic_message(seed: u64, i: u64, from: Option<&str>) -> Option<Vec<u8>> {
    let mut r = Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let body = if r.below(2) == 0 {
        r.log_uniform(256, 4096)
    } else {
        r.log_uniform(4096, 1 << 20)
    };
    let attachments = if r.below(10) == 0 {
        let size = r.log_uniform(100 << 10, 10 << 20);
        vec![OutgoingAttachment {
            name: format!("report-{i}.pdf"),
            media_type: "application/pdf".into(),
            content: r.bytes(size),
        }]
    } else {
        Vec::new()
    };
    let from = match from {
        Some(email) => Address {
            name: None,
            email: email.to_string(),
        },
        None => Address {
            name: Some(format!("Sender {}", r.below(1000))),
            email: format!("s{}@example.org", r.below(1000)),
        },
    };
    compose(&Compose {
        from,
        to: vec![Address {
            name: None,
            email: format!("r{}@example.net", r.below(1000)),
        }],
        cc: Vec::new(),
        subject: format!("Re: the numbers for week {} ({i})", r.below(53)),
        date_ms: 1_700_000_000_000 + i as i64 * 60_000,
        message_id: format!("{:x}.{i}@example.org", r.next_u64()),
        in_reply_to: None,
        references: Vec::new(),
        text: r.prose(body, "\r\n"),
        html: None,
        attachments,
    })
    .ok()
}

/// From, To, Subject, Date, Message-ID and MIME-Version lines.
fn std_headers(r: &mut Rng, subject: &str) -> Vec<String> {
    vec![
        format!(
            "From: Sender {} <s{}@example.org>",
            r.below(100),
            r.below(100)
        ),
        format!("To: r{}@example.net", r.below(100)),
        format!("Subject: {subject}"),
        "Date: Mon, 7 Dec 2026 13:00:00 +0000".into(),
        format!("Message-ID: <{:x}@example.org>", r.next_u64()),
        "MIME-Version: 1.0".into(),
    ]
}

/// A single part: header lines, an empty line, the body.
fn leaf(nl: &str, headers: &[String], mime: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers
        .iter()
        .map(String::as_str)
        .chain(mime.iter().copied())
    {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(nl.as_bytes());
    }
    out.extend_from_slice(nl.as_bytes());
    out.extend_from_slice(body);
    out
}

/// A multipart: header lines, a preamble, each child between delimiters,
/// the close delimiter and an epilogue.
fn multipart(
    nl: &str,
    headers: &[String],
    subtype: &str,
    boundary: &str,
    children: &[Vec<u8>],
) -> Vec<u8> {
    let ct = format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"");
    let mut out = leaf(
        nl,
        headers,
        &[ct.as_str()],
        format!("This is a multi-part message in MIME format.{nl}").as_bytes(),
    );
    for child in children {
        out.extend_from_slice(format!("{nl}--{boundary}{nl}").as_bytes());
        out.extend_from_slice(child);
    }
    out.extend_from_slice(format!("{nl}--{boundary}--{nl}").as_bytes());
    out
}

/// Quoted-printable (RFC 2045) with soft breaks before 76 characters.
fn qp(data: &[u8], nl: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut col = 0;
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(nl.as_bytes()) {
            out.extend_from_slice(nl.as_bytes());
            col = 0;
            i += nl.len();
            continue;
        }
        let c = data[i];
        let enc = if (33..=126).contains(&c) && c != b'=' || c == b' ' {
            vec![c]
        } else {
            format!("={c:02X}").into_bytes()
        };
        if col + enc.len() > 75 {
            out.push(b'=');
            out.extend_from_slice(nl.as_bytes());
            col = 0;
        }
        col += enc.len();
        out.extend_from_slice(&enc);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_covers_its_shapes() {
        let a = corpus(42, false);
        assert!(a == corpus(42, false));
        assert!(a != corpus(43, false));
        let names: std::collections::BTreeSet<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), a.len(), "names are unique");
        for expected in [
            "composed",
            "bare-lf",
            "charset-sjis",
            "malformed-boundary",
            "attachments-0-1-100k-1m",
        ] {
            assert!(names.contains(expected), "{expected}");
        }
        let bare_lf = a
            .iter()
            .find(|(n, _)| n == "bare-lf")
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        assert!(!bare_lf.contains(&b'\r'));
        let long = a
            .iter()
            .find(|(n, _)| n == "long-lines")
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        assert!(long.split(|&b| b == b'\n').any(|l| l.len() > 998));
    }

    #[test]
    fn realistic_sizes_are_plausible() {
        let mut sizes: Vec<usize> = realistic(1, 200).map(|m| m.len()).collect();
        assert_eq!(sizes.len(), 200);
        sizes.sort_unstable();
        let median = sizes[100];
        assert!((2_000..12_000).contains(&median), "median {median}");
        assert!(sizes[199] > 100 << 10);
        assert!(realistic(1, 5).eq(realistic(1, 5)));
    }
}
