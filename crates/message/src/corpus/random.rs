//! Random messages for property tests of `split`/`rebuild` and of the
//! parser's robustness: random MIME trees built from the same pieces as
//! the shapes of `corpus`, deterministic for a seed.

use super::{Rng, base64_lines_with, leaf, multipart, qp, std_headers};

/// One random message for property tests: a random tree of multiparts
/// (up to four deep) and attached messages; half the leaves 16–300 KiB
/// (log-uniform, so many are cut), the rest up to 4 KiB; a random transfer
/// encoding per leaf; CRLF or bare LF throughout; sometimes an epilogue;
/// one in ten truncated anywhere (unclosed multiparts, cut bodies).
pub fn random_message(seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let nl = if r.below(4) == 0 { "\n" } else { "\r\n" };
    let headers = std_headers(&mut r, "Random");
    let mut m = random_part(&mut r, nl, headers, 0);
    if r.below(10) == 0 {
        // Cut short: an unclosed multipart or a truncated body.
        let keep = r.below(m.len() as u64 + 1) as usize;
        m.truncate(keep);
    }
    m
}

fn random_part(r: &mut Rng, nl: &str, headers: Vec<String>, depth: usize) -> Vec<u8> {
    let kind = if depth >= 4 { 0 } else { r.below(6) };
    match kind {
        0..=2 => {
            let size = if r.below(2) == 0 {
                r.log_uniform(16 << 10, 300 << 10)
            } else {
                r.log_uniform(1, 4096)
            };
            let (ct, cte, body) = match r.below(4) {
                0 => (
                    "text/plain; charset=utf-8",
                    "8bit",
                    r.prose(size, nl).into_bytes(),
                ),
                1 => (
                    "text/html; charset=utf-8",
                    "quoted-printable",
                    qp(r.prose(size, nl).as_bytes(), nl),
                ),
                2 => (
                    "application/octet-stream; name=\"r.bin\"",
                    "base64",
                    base64_lines_with(&r.bytes(size), nl.as_bytes()),
                ),
                _ => (
                    "text/plain; charset=iso-8859-1",
                    "8bit",
                    r.bytes(size)
                        .into_iter()
                        .map(|b| {
                            if b == b'\r' || b == b'\n' || b == b'-' {
                                b'.'
                            } else {
                                b
                            }
                        })
                        .collect(),
                ),
            };
            let ct = format!("Content-Type: {ct}");
            let cte = format!("Content-Transfer-Encoding: {cte}");
            leaf(nl, &headers, &[ct.as_str(), cte.as_str()], &body)
        }
        3 => {
            let inner_headers = std_headers(r, "Inner");
            let inner = random_part(r, nl, inner_headers, depth + 1);
            leaf(nl, &headers, &["Content-Type: message/rfc822"], &inner)
        }
        _ => {
            let boundary = format!("r{depth}=_{:x}", r.next_u64());
            let n = 1 + r.below(5) as usize;
            let children: Vec<Vec<u8>> = (0..n)
                .map(|_| random_part(r, nl, Vec::new(), depth + 1))
                .collect();
            let subtype = ["mixed", "alternative", "related"][r.below(3) as usize];
            let mut m = multipart(nl, &headers, subtype, &boundary, &children);
            if r.below(4) == 0 {
                m.extend_from_slice(format!("epilogue{nl}").as_bytes());
            }
            m
        }
    }
}
