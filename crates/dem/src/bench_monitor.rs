//! `dem bench monitor`: the monitor page and its event stream at network
//! scale (issue 20: 1,000 hosts and 100,000 users).
//!
//! The unit is a real `dem dispatch --http` child process whose tables
//! are a fixture written to its data dir before it starts (`tables.bin`):
//! hosts two thirds online, every user's mailbox on R = 3 of them, half
//! the users online at a home host. It then measures:
//! - **first paint** in Debian's headless chromium: the page reports,
//!   with `?bench`, the time from navigation to the first frame after it
//!   rendered its first snapshot (`first_data_paint_ms`), and its first
//!   contentful paint (`first_contentful_paint_ms`); the median of
//!   [`PAINT_RUNS`] fresh browsers;
//! - **the unit's CPU** over [`CPU_WINDOW`] with no watcher (the
//!   baseline: the ticker computes nothing then) and with 10 watchers
//!   holding `/api/events` open, from `/proc/PID/stat`, as a share of one
//!   core.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::bench_logs::cpu_s;
use super::bench_net::Proc;
use dem_identity::{Epoch, HostId, UserId};
use dem_proto::dispatch::tables::{
    DispatchTables, HostRecord, HostState, MailboxRecord, NameRecord,
};

/// Fresh browsers the first paint is measured in.
const PAINT_RUNS: usize = 3;
/// How long one browser may take to paint.
const PAINT_TIMEOUT: Duration = Duration::from_secs(60);
/// The CPU measuring window, idle and with watchers.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// How long the killed browsers' streams may stay open at the unit.
const STREAMS_SETTLE: Duration = Duration::from_secs(12);
/// Replicas per mailbox in the fixture.
const FIXTURE_R: usize = 3;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct MonitorParams {
    pub hosts: u32,
    pub users: u32,
    pub watchers: usize,
}

pub async fn run(p: MonitorParams) -> anyhow::Result<Value> {
    ensure!(
        p.hosts as usize >= FIXTURE_R && p.users > 0,
        "at least {FIXTURE_R} hosts and one user"
    );
    let chromium = chromium()?;
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let data = dir.path().join("unit");
    let fixture_started = Instant::now();
    let tables = fixture(p.hosts, p.users, now_ms());
    let bytes = dem_node::dispatch::persist::encode_tables(&tables)?;
    std::fs::create_dir_all(&data)?;
    dem_node::dispatch::persist::write_tables(&data, &bytes)?;
    let fixture_ms = fixture_started.elapsed().as_millis();

    let ip = "127.0.0.94";
    let http = format!(
        "{ip}:{}",
        std::net::TcpListener::bind((ip, 0))?.local_addr()?.port()
    );
    let started = Instant::now();
    let unit = Proc::start(
        &[
            "dispatch",
            "--listen",
            &format!("{ip}:0"),
            "--data",
            data.to_str().context("temp paths are UTF-8")?,
            "--http",
            &http,
        ],
        &dir.path().join("unit.log"),
    )?;
    let unit_start_ms = started.elapsed().as_millis();

    let url = format!("http://{http}/?bench");
    let mut data_paints = Vec::new();
    let mut contentful = Vec::new();
    for run in 0..PAINT_RUNS {
        let profile = dir.path().join(format!("chromium{run}"));
        let (data_ms, fcp_ms) =
            tokio::task::block_in_place(|| first_paint(&chromium, &url, &profile))?;
        data_paints.push(data_ms);
        contentful.push(fcp_ms);
    }

    // A browser's stream that was cut is noticed at the next keep-alive
    // (every 10 s): until then the unit still builds for it.
    tokio::time::sleep(STREAMS_SETTLE).await;
    let idle = cpu_share(unit.pid(), CPU_WINDOW).await?;
    let streamed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut watchers = Vec::new();
    for _ in 0..p.watchers {
        watchers.push(tokio::spawn(watch(http.clone(), streamed.clone())));
    }
    // Let every stream get its first snapshot before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let watched = cpu_share(unit.pid(), CPU_WINDOW).await?;
    for w in &watchers {
        w.abort();
    }
    let bytes_streamed = streamed.load(std::sync::atomic::Ordering::Relaxed);
    drop(unit);
    Ok(json!({
        "hosts": p.hosts,
        "users": p.users,
        "tables_bytes": bytes.len(),
        "fixture_ms": fixture_ms,
        "unit_start_ms": unit_start_ms,
        "first_data_paint_ms": median(&mut data_paints),
        "first_contentful_paint_ms": median(&mut contentful),
        "first_data_paint_runs_ms": data_paints,
        "watchers": p.watchers,
        "unit_cpu_share_idle": round3(idle),
        "unit_cpu_share_watched": round3(watched),
        "unit_cpu_share_per_watcher": round3((watched - idle).max(0.0) / p.watchers.max(1) as f64),
        "bytes_streamed_per_watcher": bytes_streamed / p.watchers.max(1) as u64,
    }))
}

/// The tables of a network of `hosts` hosts and `users` users.
pub fn fixture(hosts: u32, users: u32, now_ms: u64) -> DispatchTables {
    let host_id = |i: u32| HostId(spread_id(u64::from(i)));
    let mut t = DispatchTables::default();
    for i in 0..hosts {
        let online = i % 3 != 0;
        t.hosts.insert(
            host_id(i),
            HostRecord {
                addr: format!("10.{}.{}.{}:4433", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff),
                capacity: 1_000,
                load: 0,
                lease_expires_ms: if online {
                    now_ms + 3_600_000
                } else {
                    now_ms.saturating_sub(1)
                },
                last_seen_ms: now_ms,
                epoch: Epoch(1),
                state: HostState::Active,
                operator: Some(format!("operator{}", i % 20)),
            },
        );
    }
    let mut loads: BTreeMap<HostId, u64> = BTreeMap::new();
    for u in 0..users {
        let user = UserId(spread_id(u64::from(u) | 1 << 40));
        t.names.insert(
            format!("user{u}"),
            NameRecord {
                user,
                issued_ms: now_ms,
                claim: None,
            },
        );
        let holders: Vec<HostId> = (0..FIXTURE_R as u32)
            .map(|k| host_id(u.wrapping_mul(7).wrapping_add(k) % hosts))
            .collect();
        for h in &holders {
            *loads.entry(*h).or_default() += 1;
        }
        let home = (u % 2 == 0).then(|| holders[0]);
        t.mailboxes.insert(
            user,
            MailboxRecord {
                hosts: holders,
                epoch: Epoch(1),
                home,
                home_set_ms: if home.is_some() { now_ms } else { 0 },
                pending: BTreeMap::new(),
            },
        );
    }
    for (h, load) in loads {
        if let Some(r) = t.hosts.get_mut(&h) {
            r.load = load;
        }
    }
    t
}

/// 32 bytes that look random, from `n` (splitmix64), so fixture ids spread
/// like real keys do.
fn spread_id(n: u64) -> [u8; 32] {
    let mut x = n;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// One fresh headless chromium on `url`: the page's first data paint and
/// first contentful paint, in ms from navigation.
fn first_paint(chromium: &str, url: &str, profile: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {chromium}"))?;
    let stderr = child.stderr.take().context("chromium's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("dem-bench ").nth(1) {
                let _ = tx.send(rest.split('"').next().unwrap_or("").to_owned());
            }
        }
    });
    let answer = rx.recv_timeout(PAINT_TIMEOUT);
    // Its renderers exit once the browser process is gone; the unit
    // notices their cut event stream at its next keep-alive.
    let _ = child.kill();
    let _ = child.wait();
    let line = answer.context("the page did not report its first paint in time")?;
    // first-data-paint 123.4 fcp 56.7
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |key: &str| -> anyhow::Result<f64> {
        let i = words
            .iter()
            .position(|w| *w == key)
            .with_context(|| format!("no {key} in {line:?}"))?;
        words
            .get(i + 1)
            .and_then(|w| w.parse::<f64>().ok())
            .with_context(|| format!("no number after {key} in {line:?}"))
    };
    Ok((number("first-data-paint")?, number("fcp")?))
}

/// Holds `/api/events` open, reading everything, counting the bytes.
async fn watch(
    http: String,
    streamed: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut conn = tokio::net::TcpStream::connect(&http).await?;
    let request =
        format!("GET /api/events HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        streamed.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The process's CPU over `window`, as a share of one core.
async fn cpu_share(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = cpu_s(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let used = cpu_s(pid)? - before;
    Ok(used / started.elapsed().as_secs_f64())
}

fn chromium() -> anyhow::Result<String> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Ok(path);
    }
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Ok(name.to_owned());
        }
    }
    bail!(
        "dem bench monitor needs Debian's chromium: `apt-get install chromium` (scripts/test.sh installs it), or set CHROMIUM"
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn now_ms() -> u64 {
    u64::try_from(dem_client::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_a_network_a_unit_accepts() {
        let t = fixture(30, 500, 1_000_000);
        assert_eq!(t.hosts.len(), 30);
        assert_eq!(t.mailboxes.len(), 500);
        assert!(t.mailboxes.values().all(|m| m.hosts.len() == FIXTURE_R));
        let unit = dem_core::dispatch::DispatchUnit::from_snapshot(
            dem_identity::DispatchId([1; 32]),
            dem_core::dispatch::Limits::default(),
            &t,
        );
        assert!(unit.is_ok(), "{:?}", unit.err());
    }
}
