//! The RFC 5322 rendition of a mail from before schema 4, whose headers
//! and text body the mailbox held in its own state.
//!
//! Schema 4 keeps message bytes in the host's blob store, so converting an
//! old snapshot (`schema_v3.rs`) writes each old mail out as a message and
//! keeps only its hash. Replicas convert independently and must name the
//! same blob, so this output is part of the format: the same old mail
//! renders to the same bytes on every build, for ever. Change nothing here
//! without a new schema; the golden test pins the bytes.
//!
//! The rendition: `From`, `To`, `Cc` (if any), `Subject`, `Date`,
//! `Message-ID` (if any), `In-Reply-To` (if any), the old extra headers in
//! their order, then `MIME-Version`, `Content-Type: text/plain;
//! charset=utf-8` and `Content-Transfer-Encoding: 8bit`, a blank line and
//! the body, all with CRLF line endings. Header values that are not
//! printable ASCII are RFC 2047 encoded words (UTF-8, base64); in address
//! headers only the display name is. Lines are not folded: the old state
//! never limited their length and folding would only add ways to differ.
//! An old extra header is left out if its name is not a valid field name,
//! or if it is one of the fields written above (a second `Content-Type`
//! would make the message ambiguous).

use crate::schema_v3::StoredMailV3;

/// Fields the rendition writes itself; old extra headers of these names
/// are left out.
const OWN_FIELDS: [&str; 10] = [
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// The message bytes of `m`.
pub fn render(m: &StoredMailV3) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.body.len() + 512);
    field(&mut out, "From", &address(&m.from));
    field(&mut out, "To", &addresses(&m.to));
    if !m.cc.is_empty() {
        field(&mut out, "Cc", &addresses(&m.cc));
    }
    field(&mut out, "Subject", &text(&m.subject));
    field(&mut out, "Date", &date(m.date_ms));
    if !m.message_id.is_empty() {
        field(&mut out, "Message-ID", &text(&angle(&m.message_id)));
    }
    if let Some(id) = m.in_reply_to.as_deref().filter(|id| !id.is_empty()) {
        field(&mut out, "In-Reply-To", &text(&angle(id)));
    }
    for (name, value) in &m.headers {
        let own = OWN_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f));
        if !own && is_field_name(name) {
            field(&mut out, name, &text(value));
        }
    }
    field(&mut out, "MIME-Version", "1.0");
    field(&mut out, "Content-Type", "text/plain; charset=utf-8");
    field(&mut out, "Content-Transfer-Encoding", "8bit");
    out.extend_from_slice(b"\r\n");
    crlf(&mut out, &m.body);
    out
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 5322 field names: printable ASCII but colon, not empty.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// `body` with every line ending (CRLF, lone LF, lone CR) as CRLF.
fn crlf(out: &mut Vec<u8>, body: &[u8]) {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
}

/// A message id in angle brackets, as the fields carry it.
fn angle(id: &str) -> String {
    if id.starts_with('<') && id.ends_with('>') {
        id.to_string()
    } else {
        format!("<{id}>")
    }
}

/// Whether `s` can go into a header as it is: printable ASCII, spaces and
/// tabs, and nothing a reader would take for an encoded word.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (32..=126).contains(&b)) && !s.contains("=?")
}

/// An unstructured value, encoded if it is not plain.
fn text(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        encoded_words(s)
    }
}

/// One address, `Name <addr>` or bare: only a display name may be encoded
/// (RFC 2047 section 5), so a plain `<addr>` is kept as it is.
fn address(s: &str) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    match s.rsplit_once(" <") {
        Some((name, addr)) if addr.ends_with('>') && is_plain(addr) => {
            format!("{} <{addr}", text(name))
        }
        _ => encoded_words(s),
    }
}

fn addresses(v: &[String]) -> String {
    v.iter().map(|a| address(a)).collect::<Vec<_>>().join(", ")
}

/// `s` as RFC 2047 encoded words, `=?utf-8?b?...?=`, each at most 75
/// characters (45 bytes of UTF-8 make 60 of base64, plus 12), never
/// splitting a character, separated by spaces (which readers drop between
/// adjacent encoded words).
fn encoded_words(s: &str) -> String {
    const CHUNK_BYTES_MAX: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() - start > CHUNK_BYTES_MAX {
            words.push(&s[start..end]);
            start = i;
        }
        end = i + c.len_utf8();
    }
    if start < s.len() || s.is_empty() {
        words.push(&s[start..]);
    }
    words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", base64(w.as_bytes())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(b: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An RFC 5322 date in UTC, `Tue, 1 Dec 2026 10:00:00 +0000`, from
/// milliseconds since the Unix epoch (the millisecond part is dropped).
pub fn date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let t = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
