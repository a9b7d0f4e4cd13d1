//! `dem admin token` and `dem admin inspect`: the operator's side of a
//! dispatch unit's HTTP listener (`dem dispatch --http ADDR`).
//!
//! `inspect` asks `/api/inspect/KIND/ID` and prints the JSON. The console
//! speaks just enough HTTP/1.1 over a TCP stream for one request with a
//! bounded answer (`act::send`, and the parsing here): the listener is the
//! unit's own, and a general HTTP client would be a large dependency for
//! a few requests.

use std::path::Path;

use anyhow::{Context as _, ensure};

/// Prints the admin token of the unit whose data dir is `dir`.
pub fn token(dir: &Path) -> anyhow::Result<()> {
    let token = dem_node::monitor::auth::read_token(dir)?;
    println!("{}", token.as_str());
    Ok(())
}

/// Prints what unit at `url` knows about `kind` `id`.
pub async fn inspect(kind: &str, id: &str, url: &str, token: Option<&str>) -> anyhow::Result<()> {
    ensure!(
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{kind} id {id:?}: only letters, digits, '-', '_' and '.'"
    );
    let path = format!("/api/inspect/{kind}/{id}");
    let mut value = super::act::call(url, "GET", &path, token, None).await?;
    if kind == "mailbox" {
        // What the holders themselves report of their copies.
        let path = format!("/api/replicas/{id}");
        value["replicas_reported"] = super::act::call(url, "GET", &path, token, None).await?;
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `http://HOST:PORT[/PREFIX]` into `HOST:PORT` and the prefix.
pub(super) fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--http {url:?}: give http://HOST:PORT"))?;
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    ensure!(!host.is_empty(), "--http {url:?}: no host");
    Ok((host, prefix))
}

/// Splits an HTTP/1.1 response into its status code and body, undoing a
/// chunked transfer encoding.
pub(super) fn parse_response(answer: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer is not HTTP: no end of headers")?;
    let head =
        std::str::from_utf8(&answer[..split]).context("the answer's headers are not text")?;
    let body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("not an HTTP status line: {status:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((code, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk has no size line")?;
        let size_text = std::str::from_utf8(&rest[..end]).context("a chunk size is not text")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok((code, out));
        }
        let chunk = rest.get(..size).context("a chunk is cut short")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).context("a chunk is cut short")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080", "")
        );
        assert_eq!(split_url("http://h:1/dem/").unwrap(), ("h:1", "/dem"));
        assert!(split_url("https://h:1").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (404, b"{\"a\":1}".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 x\r\n\r\n").is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab";
        assert!(parse_response(cut).is_err());
    }
}
