//! Tests of the rendition's pieces against their RFCs: dates, base64,
//! encoded words and line endings.

use super::*;

#[test]
fn dates_are_rfc_5322_in_utc() {
    assert_eq!(date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    // 2026-12-01 10:00:00 UTC.
    assert_eq!(date(1_796_119_200_000), "Tue, 1 Dec 2026 10:00:00 +0000");
    assert_eq!(date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 +0000");
    assert_eq!(date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    assert_eq!(date(1_700_000_000_999), "Tue, 14 Nov 2023 22:13:20 +0000");
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (raw, enc) in cases {
        assert_eq!(base64(raw.as_bytes()), enc);
    }
}

#[test]
fn values_that_are_not_plain_become_encoded_words() {
    assert_eq!(text("Hello"), "Hello");
    assert_eq!(text("Café"), "=?utf-8?b?Q2Fmw6k=?=");
    assert_eq!(text("a\r\nBcc: x"), "=?utf-8?b?YQ0KQmNjOiB4?=");
    assert_eq!(
        address("Zoë <zoe@example.com>"),
        "=?utf-8?b?Wm/Dqw==?= <zoe@example.com>"
    );
    assert_eq!(
        address("zoë@example.com"),
        "=?utf-8?b?em/Dq0BleGFtcGxlLmNvbQ==?="
    );
    // Long values split into words of at most 75 characters, never inside
    // a character.
    let long = "é".repeat(100);
    let words = text(&long);
    assert!(words.split(' ').all(|w| w.len() <= 75), "{words}");
    assert_eq!(words.split(' ').count(), 5);
}

#[test]
fn line_endings_become_crlf() {
    let mut out = Vec::new();
    crlf(&mut out, b"a\nb\r\nc\rd\r");
    assert_eq!(out, b"a\r\nb\r\nc\r\nd\r\n");
}
