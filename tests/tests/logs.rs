//! Collected logs with real processes: a host ships its events to the
//! dispatch unit, `dem admin logs` reads them back filtered by component,
//! level, mailbox and time and follows new ones without printing any
//! twice; the host also writes its own log as JSON to a file. Then the
//! unit is SIGKILLed: the host goes on (its metrics answer, its log says
//! events are dropped and `/metrics` counts them), and once a unit is back
//! at the same address mail is delivered again.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, arg, dem_bin, free_udp_port, inbox_ids, register_user, send_mail,
    start_dispatch, start_dispatch_at, temp_dir, wait_for,
};
use serde_json::Value;

const UNIT_IP: &str = "127.0.0.228";
const HOST_IP: &str = "127.0.0.229";

fn free_tcp_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// `/metrics` of the host's HTTP listener.
fn scrape(addr: &str) -> Result<String> {
    let mut conn = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(answer)
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `dem admin logs --json ARGS` as `user`: one event per line.
fn logs(user: &User, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["admin", "logs", "--json"];
    all.extend_from_slice(args);
    user.run(&all)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("a log line: {l}")))
        .collect()
}

fn messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn hosts_ship_their_events_to_the_unit_and_never_wait_for_it() -> Result<()> {
    let tmp = temp_dir();
    let unit_data = tmp.path().join("unit");
    let mut unit = start_dispatch(UNIT_IP, &unit_data, &["--log-ring", "5000"])?;
    let http = format!("{HOST_IP}:{}", free_tcp_port(HOST_IP)?);
    let listen = format!("{HOST_IP}:{}", free_udp_port(HOST_IP)?);
    let host_log = tmp.path().join("log").join("host.log");
    let host = Daemon::start_env(
        [
            "host",
            "--listen",
            &listen,
            "--dispatch",
            &unit.addr,
            "--data",
            arg(&tmp.path().join("host")),
            "--http",
            &http,
            "--heartbeat-ms",
            "500",
            "--log-format",
            "json",
            "--log-file",
            arg(&host_log),
        ],
        &[("RUST_LOG", "info")],
    )?;
    let alice = register_user(tmp.path(), "alice", &unit.addr)?;
    let short = &host.id[..12];

    // The host's "creating mailbox" (info, with the mailbox in its fields)
    // reaches the unit within a batch interval or so.
    wait_for(
        "the host's event in `dem admin logs`",
        Duration::from_secs(20),
        || {
            let events = logs(&alice, &["--component", short])?;
            Ok(messages(&events).contains(&"creating mailbox"))
        },
    )?;
    let events = logs(&alice, &["--component", &host.id])?;
    ensure!(
        events.iter().all(|e| e["component"] == host.id.as_str()),
        "{events:?}"
    );
    let created = events
        .iter()
        .find(|e| e["message"] == "creating mailbox")
        .context("the event")?;
    ensure!(created["level"] == "INFO", "{created}");
    ensure!(
        created["fields"]["host"] == short,
        "span fields kept: {created}"
    );
    ensure!(created["fields"]["mailbox"].is_string(), "{created}");
    // The unit's own events are in its ring too, under its own id.
    let own = logs(&alice, &["--component", &unit.id])?;
    ensure!(
        messages(&own).contains(&"dispatch unit up"),
        "{:?}",
        messages(&own)
    );

    // Filters: level, mailbox, time.
    let warn = logs(&alice, &["--component", short, "--level", "warn"])?;
    ensure!(!messages(&warn).contains(&"creating mailbox"), "{warn:?}");
    let by_mailbox = logs(&alice, &["--mailbox", "alice"])?;
    ensure!(
        messages(&by_mailbox).contains(&"creating mailbox")
            && by_mailbox
                .iter()
                .all(|e| e["fields"]["mailbox"].is_string()),
        "{by_mailbox:?}"
    );
    let recent = logs(&alice, &["--component", short, "--since", "1h"])?;
    ensure!(messages(&recent).contains(&"creating mailbox"));
    let later = (now_ms() + 3_600_000).to_string();
    ensure!(logs(&alice, &["--since", &later])?.is_empty());
    let err = alice.fail(["admin", "logs", "--level", "loud"])?;
    ensure!(err.contains("loud"), "{err}");
    let err = alice.fail(["admin", "logs", "--component", "not-hex"])?;
    ensure!(err.contains("hex"), "{err}");
    let err = alice.fail(["admin", "logs", "--limit", "5000"])?;
    ensure!(err.contains("--limit"), "{err}");

    // `--follow` prints what comes later, each event once.
    let mut follow = Command::new(dem_bin())
        .args([
            "admin",
            "--home",
            arg(&alice.home),
            "logs",
            "--follow",
            "--json",
        ])
        .env_remove("DEM_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = follow.stdout.take().context("piped stdout")?;
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    let bob = register_user(tmp.path(), "bob", &unit.addr)?;
    let followed = wait_for(
        "bob's mailbox in `--follow`",
        Duration::from_secs(20),
        || {
            let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
            Ok(lines
                .iter()
                .filter(|l| l.contains("creating mailbox"))
                .count()
                >= 2)
        },
    );
    let _ = follow.kill();
    let _ = follow.wait();
    followed?;
    let seqs: Vec<u64> = lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|l| {
            Ok(serde_json::from_str::<Value>(l)?["seq"]
                .as_u64()
                .unwrap_or(0))
        })
        .collect::<Result<_>>()?;
    // Printed in time order, so not always in arrival order: but once.
    let mut once = seqs.clone();
    once.sort();
    once.dedup();
    ensure!(once.len() == seqs.len(), "each event once: {seqs:?}");

    // The host's own log: JSON lines with the host and mailbox ids, in the
    // file.
    let text = std::fs::read_to_string(&host_log)?;
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "creating mailbox")
        .with_context(|| format!("no JSON `creating mailbox` in the host's log:\n{text}"))?;
    ensure!(
        line["fields"]["host"] == short && line["fields"]["mailbox"].is_string(),
        "{line}"
    );

    // No collector: the host goes on and counts what it could not ship.
    unit.kill();
    wait_for(
        "drops on the host's /metrics",
        Duration::from_secs(60),
        || {
            let text = scrape(&http)?;
            Ok(sample(&text, "dem_log_events_dropped_total").is_some_and(|n| n > 0.0))
        },
    )?;
    wait_for(
        "the drop warning in the host's log",
        Duration::from_secs(30),
        || Ok(std::fs::read_to_string(&host_log)?.contains("log events dropped")),
    )?;
    // A unit back at the same address: the host rejoins and delivers.
    let _unit = start_dispatch_at(&unit.addr, &unit_data, &[])?;
    let mut id = String::new();
    wait_for(
        "a delivery after the restart",
        Duration::from_secs(60),
        || match send_mail(&bob, "alice", "after the collector came back") {
            Ok(sent) => {
                id = sent;
                Ok(true)
            }
            Err(_) => Ok(false),
        },
    )?;
    ensure!(inbox_ids(&alice)?.contains(&id));
    Ok(())
}

const TWO_UNIT_IPS: [&str; 2] = ["127.0.0.234", "127.0.0.235"];
const TWO_UNIT_HOST_IP: &str = "127.0.0.236";

/// Each unit keeps what was shipped to it and its own events: `dem admin
/// logs` asks every unit the network lists and merges the answers.
#[test]
fn admin_logs_reads_every_unit() -> Result<()> {
    let tmp = temp_dir();
    let a = start_dispatch(TWO_UNIT_IPS[0], &tmp.path().join("a"), &[])?;
    let b = start_dispatch(TWO_UNIT_IPS[1], &tmp.path().join("b"), &["--peer", &a.addr])?;
    let listen = format!("{TWO_UNIT_HOST_IP}:{}", free_udp_port(TWO_UNIT_HOST_IP)?);
    let host = Daemon::start([
        "host",
        "--listen",
        &listen,
        "--dispatch",
        &a.addr,
        "--data",
        arg(&tmp.path().join("host")),
    ])?;
    let alice = register_user(tmp.path(), "alice", &a.addr)?;
    wait_for("both units' events", Duration::from_secs(30), || {
        let events = logs(&alice, &[])?;
        let from = |id: &str| events.iter().any(|e| e["component"] == id);
        Ok(from(&a.id) && from(&b.id) && from(&host.id))
    })?;
    let only_b = logs(&alice, &["--component", &b.id])?;
    ensure!(
        messages(&only_b).contains(&"dispatch unit up"),
        "{only_b:?}"
    );
    Ok(())
}
