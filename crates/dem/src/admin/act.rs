//! `dem admin drain`, `dem admin replication` and `dem admin sync`: the
//! console's actions and its "is everything in sync" question, over a
//! dispatch unit's HTTP listener (`monitor::act`, `monitor::sync`).
//!
//! Actions always need the admin token (loopback included) and name who
//! orders them (`--by`, default the login name), which the unit logs.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::inspect::{parse_response, split_url};

/// Largest answer read.
const ANSWER_MAX: u64 = 64 << 20;
/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two sync polls.
const SYNC_POLL: Duration = Duration::from_millis(500);

/// Who orders, for the unit's log: `--by`, else the login name.
pub fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "admin".to_owned())
}

/// Orders host `host` (hex id) drained; with `wait`, follows it (a
/// progress bar on a terminal) until the host has left.
pub async fn drain(
    url: &str,
    token: Option<&str>,
    host: &str,
    by: &str,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let token = token.context("an action needs the admin token: --token or DEM_ADMIN_TOKEN (`dem admin token --data DIR` prints it)")?;
    ensure!(
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_hexdigit()),
        "host {host:?}: give the host's id in hex"
    );
    let path = format!("/api/inspect/host/{host}");
    let before = call(url, "GET", &path, Some(token), None).await?;
    let body = serde_json::json!({ "host": host, "by": by });
    let answer = call(url, "POST", "/api/act/drain", Some(token), Some(&body)).await?;
    let changed = answer["changed"].as_bool().unwrap_or(false);
    if changed {
        println!("host {host} will move everything away and leave");
    } else {
        println!("host {host} was already leaving");
    }
    let Some(wait) = wait else {
        return Ok(());
    };
    let held = |v: &Value| {
        v["mailbox_count"].as_u64().unwrap_or(0) + v["attachment_count"].as_u64().unwrap_or(0)
    };
    let total = held(&before);
    let bar = crate::progress::bar("draining", total);
    let started = Instant::now();
    loop {
        let now = call(url, "GET", &path, Some(token), None).await?;
        bar.set_position(total.saturating_sub(held(&now)));
        if now["state"] == "left" {
            bar.finish_and_clear();
            println!("host {host} moved {total} objects away and left");
            return Ok(());
        }
        if started.elapsed() >= wait {
            bar.abandon();
            bail!(
                "host {host} still holds {} objects after {wait:?} (state {})",
                held(&now),
                now["state"]
            );
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}

/// Sets R and W for the network.
pub async fn replication(
    url: &str,
    token: Option<&str>,
    replicas: usize,
    write_quorum: usize,
    by: &str,
) -> anyhow::Result<()> {
    let token = token.context("an action needs the admin token: --token or DEM_ADMIN_TOKEN (`dem admin token --data DIR` prints it)")?;
    let body = serde_json::json!({ "replicas": replicas, "write_quorum": write_quorum, "by": by });
    call(
        url,
        "POST",
        "/api/act/replication",
        Some(token),
        Some(&body),
    )
    .await?;
    println!("R = {replicas}, W = {write_quorum}: hosts take it at their next heartbeat");
    Ok(())
}

/// Prints whether every mailbox has R replicas in sync; with `wait`,
/// polls until it does or `wait` runs out (then fails).
pub async fn sync(
    url: &str,
    token: Option<&str>,
    wait: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let report = call(url, "GET", "/api/sync", token, None).await?;
        let all = report["all_in_sync"].as_bool().unwrap_or(false);
        let done = all || wait.is_none_or(|w| started.elapsed() >= w);
        if done {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_sync(&report);
            }
            if !all && let Some(w) = wait {
                bail!("not every mailbox was in sync within {w:?}");
            }
            return Ok(());
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}

fn print_sync(report: &Value) {
    println!(
        "{} of {} mailboxes at R = {} replicas in sync",
        report["in_sync"], report["mailboxes"], report["replicas"]
    );
    for u in report["unsynced"].as_array().into_iter().flatten() {
        let name = u["name"]
            .as_str()
            .unwrap_or_else(|| u["user"].as_str().unwrap_or("?"));
        println!("  {name:<16} {}", u["reason"].as_str().unwrap_or(""));
    }
    for h in report["hosts_silent"].as_array().into_iter().flatten() {
        println!("  host {} did not answer", h.as_str().unwrap_or("?"));
    }
}

/// One request; the JSON answer, or the unit's error as an error.
pub(super) async fn call(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let (host, prefix) = split_url(url)?;
    let path = format!("{prefix}{path}");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (code, answer) = tokio::time::timeout(TIMEOUT, send(host, method, &path, token, &body))
        .await
        .with_context(|| format!("no answer from {url} within {TIMEOUT:?}"))??;
    let value: Value = serde_json::from_slice(&answer)
        .with_context(|| format!("{url} answered {code} with something other than JSON"))?;
    if !(200..300).contains(&code) {
        let message = value["error"].as_str().unwrap_or("no reason given");
        bail!("{url} answered {code}: {message}");
    }
    Ok(value)
}

/// One request over a fresh connection; the status code and the body.
pub(super) async fn send(
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut conn = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{content}Accept: application/json\r\nConnection: close\r\n\r\n{body}"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    (&mut conn)
        .take(ANSWER_MAX + 1)
        .read_to_end(&mut answer)
        .await
        .with_context(|| format!("reading the answer of {host}"))?;
    ensure!(
        answer.len() as u64 <= ANSWER_MAX,
        "the answer is over {ANSWER_MAX} bytes"
    );
    parse_response(&answer)
}
