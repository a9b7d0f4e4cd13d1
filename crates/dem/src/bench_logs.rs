//! `dem bench logs`: what collecting the hosts' log events costs a dispatch
//! unit. The target is at most 10% of one core at 10,000 events/s,
//! with memory bounded by the ring however long that goes on.
//!
//! The bench starts one `dem dispatch` child process and joins a number of
//! hosts to it from this process. These are sessions with their own keys,
//! not whole host daemons, so that only the unit's work is measured. They
//! ship batches of realistic events (`DispatchRequest::Logs`, 256 events a
//! batch as a host sends them) at the given total rate. The unit's CPU
//! time comes from `/proc/PID/stat` and its memory from `/proc/PID/status`,
//! taken before and after. The ring is given several times its size in
//! events, so it must evict (`ring_evicted`) rather than grow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::bench_net::Proc;
use dem_client::Session;
use dem_identity::KeyPair;
use dem_proto::logs::{LOG_BATCH_MAX, Level, LogEvent, LogFilter};
use dem_proto::{DispatchRequest, DispatchResponse};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct LogsParams {
    /// Events per second over all hosts.
    pub rate: u64,
    /// How long the hosts ship.
    pub seconds: u64,
    /// Hosts shipping.
    pub hosts: usize,
    /// The unit's ring (`--log-ring`).
    pub ring: usize,
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`): 100 on every
/// Linux this runs on.
const TICKS_PER_S: f64 = 100.0;

pub async fn run(p: LogsParams) -> anyhow::Result<Value> {
    anyhow::ensure!(
        p.rate > 0 && p.seconds > 0 && p.hosts > 0,
        "sizes must be positive"
    );
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let data = dir.path().join("unit");
    let data = data.to_str().context("temp paths are UTF-8")?;
    let ring = p.ring.to_string();
    let unit = Proc::start(
        &[
            "dispatch",
            "--listen",
            "127.0.0.91:0",
            "--data",
            data,
            "--log-ring",
            &ring,
        ],
        &dir.path().join("unit.log"),
    )?;
    let backbone = vec![(unit.addr.clone(), None)];
    let mut hosts = Vec::new();
    for i in 0..p.hosts {
        let session = Session::new(Arc::new(KeyPair::generate()?), backbone.clone())?;
        let join = DispatchRequest::Join {
            addr: format!("127.0.0.92:{}", 20_000 + i),
            capacity: 1,
            load: 0,
            operator: None,
        };
        match session.dispatch(&join).await? {
            DispatchResponse::Lease { .. } => {}
            other => bail!("joining: unexpected answer {other:?}"),
        }
        hosts.push(Arc::new(session));
    }

    // Each host sends one batch every `period`, so together they send
    // `rate` events a second.
    let per_host = p.rate as f64 / p.hosts as f64;
    let period = Duration::from_secs_f64(LOG_BATCH_MAX as f64 / per_host);
    let batches = ((p.seconds as f64 / period.as_secs_f64()).ceil() as u64).max(1);
    let (cpu_before, rss_before) = (cpu_s(unit.pid())?, rss_bytes(unit.pid())?);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (h, session) in hosts.iter().enumerate() {
        let session = session.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = 0u64;
            for b in 0..batches {
                tick.tick().await;
                let events = (0..LOG_BATCH_MAX as u64)
                    .map(|i| event(h, b * LOG_BATCH_MAX as u64 + i))
                    .collect();
                session
                    .dispatch(&DispatchRequest::Logs { events })
                    .await
                    .context("shipping a batch")?;
                sent += LOG_BATCH_MAX as u64;
            }
            anyhow::Ok(sent)
        });
    }
    let mut sent = 0;
    while let Some(done) = tasks.join_next().await {
        sent += done??;
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu_after, rss_after) = (cpu_s(unit.pid())?, rss_bytes(unit.pid())?);

    let query = DispatchRequest::LogsQuery {
        filter: LogFilter::default(),
        after: None,
        limit: 1,
    };
    let evicted = match hosts[0].dispatch(&query).await? {
        DispatchResponse::Logs(page) => page.evicted,
        other => bail!("querying: unexpected answer {other:?}"),
    };
    for session in &hosts {
        session.close().await;
    }
    let cpu = cpu_after - cpu_before;
    Ok(json!({
        "hosts": p.hosts,
        "events_sent": sent,
        "events_per_s": (sent as f64 / wall).round(),
        "seconds": (wall * 100.0).round() / 100.0,
        "unit_cpu_s": (cpu * 100.0).round() / 100.0,
        "unit_cpu_share_of_one_core": (cpu / wall * 1000.0).round() / 1000.0,
        "ring": p.ring,
        "ring_evicted": evicted,
        "unit_rss_bytes_before": rss_before,
        "unit_rss_bytes_after": rss_after,
    }))
}

/// An event as a host's delivery would log it.
fn event(host: usize, i: u64) -> LogEvent {
    LogEvent {
        seq: 0,
        ts_ms: u64::try_from(dem_client::now_ms()).unwrap_or(0),
        component: String::new(),
        level: Level::Info,
        target: "dem_node::node::serve".into(),
        message: "delivered".into(),
        fields: vec![
            ("host".into(), format!("{host:012x}")),
            ("mailbox".into(), format!("{:012x}", i % 10_000)),
            ("ops".into(), i.to_string()),
        ],
    }
}

/// User and system CPU time of process `pid`, in seconds.
pub(super) fn cpu_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("an unexpected /proc stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("a short /proc stat line")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_S)
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}
