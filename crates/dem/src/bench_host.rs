//! `dem bench host`: one host carrying a great many mailboxes, far more
//! than its instance slots. It measures what an operator of such a host
//! cares about, all in one run so the ratios hold on a noisy machine:
//! - creating the mailboxes, and the disk an empty one costs;
//! - the resident memory with every mailbox hibernated except the ones
//!   that just received a mail;
//! - durable deliveries spread over all mailboxes, where nearly every one
//!   needs a wake (and an eviction to make room), against the same number
//!   of deliveries to a few mailboxes that stay awake (the baseline);
//! - the wake times under that load;
//! - a restart: opening the data dir again and answering a first call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio::task::JoinSet;

use super::bench::sample_mail;
use dem_node::mailbox::{Mailboxes, MailboxesConfig};
use dem_proto::ids::{IdError, MailboxId};
use dem_proto::mailbox::verbs::Stats;
use dem_runtime::RuntimeConfig;

/// What `dem bench host` runs.
pub struct HostParams {
    pub mailboxes: u32,
    pub active: u32,
    pub deliveries: u64,
    pub concurrency: usize,
    pub slots: Option<u32>,
}

fn mailbox(n: u64) -> Result<MailboxId, IdError> {
    MailboxId::new(format!("user{n:07}"))
}

/// A small deterministic generator, so runs pick the same mailboxes.
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub async fn run(p: HostParams) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let data = dir.path().join("host");
    let runtime = RuntimeConfig {
        instance_slots: p.slots,
        ..RuntimeConfig::default()
    };
    let boxes = Mailboxes::open(&data, runtime.clone(), MailboxesConfig::default())?;
    boxes.prepare_builtin()?;
    let empty_dir_bytes = dir_bytes(&data.join("store"));
    let rss_empty = super::bench::rss_bytes();

    let t = Instant::now();
    run_all(
        "creating mailboxes",
        &boxes,
        p.concurrency * 4,
        (0..p.mailboxes as u64).collect(),
        |b, n| async move {
            b.create(&mailbox(n)?, None).await?;
            Ok(())
        },
    )
    .await?;
    let create_s = t.elapsed().as_secs_f64();
    let disk_per_empty =
        dir_bytes(&data.join("store")).saturating_sub(empty_dir_bytes) / u64::from(p.mailboxes);

    // Baseline: the same deliveries to four mailboxes that stay awake.
    let hot: Vec<u64> = (0..p.deliveries).map(|i| i % 4).collect();
    let t = Instant::now();
    run_all(
        "hot deliveries",
        &boxes,
        p.concurrency,
        hot,
        |b, n| async move {
            b.deliver(&mailbox(n)?, sample_mail(n ^ 0xa5a5_0000)?)
                .await?;
            Ok(())
        },
    )
    .await?;
    let hot_per_s = p.deliveries as f64 / t.elapsed().as_secs_f64();

    // Spread: each delivery to a random mailbox of all of them.
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    let spread: Vec<u64> = (0..p.deliveries)
        .map(|_| pick.below(u64::from(p.mailboxes)))
        .collect();
    let wakes_before = boxes.wake_times().len();
    let t = Instant::now();
    let latencies = run_all(
        "spread deliveries",
        &boxes,
        p.concurrency,
        spread.clone(),
        |b, n| async move {
            let i = n ^ 0x5a5a_0000_0000;
            b.deliver(&mailbox(n)?, sample_mail(i)?).await?;
            Ok(())
        },
    )
    .await?;
    let spread_per_s = p.deliveries as f64 / t.elapsed().as_secs_f64();
    let wakes = boxes.wake_times();
    let wakes = wakes[wakes_before.min(wakes.len())..].to_vec();
    let (awake_after, slots) = boxes.awake();

    // Memory: one delivery each to `active` mailboxes, the rest asleep.
    let active: Vec<u64> = (0..u64::from(p.active))
        .map(|i| i * 97 % u64::from(p.mailboxes))
        .collect();
    run_all(
        "active mailboxes",
        &boxes,
        p.concurrency,
        active,
        |b, n| async move {
            b.deliver(&mailbox(n)?, sample_mail(n ^ 0x7777_0000_0000)?)
                .await?;
            Ok(())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = super::bench::rss_bytes();
    let actors = boxes.actors_running();

    // Restart: a fresh process's view of the same data dir.
    boxes.shutdown().await;
    drop(boxes);
    let t = Instant::now();
    let boxes = Mailboxes::open(&data, runtime, MailboxesConfig::default())?;
    let stats = boxes.ask(&mailbox(spread[0])?, Stats).await?;
    let restart_ms = t.elapsed();
    anyhow::ensure!(
        stats.mails >= 1,
        "the first call after the restart found no mail"
    );
    boxes.shutdown().await;

    Ok(json!({
        "mailboxes": p.mailboxes,
        "instance_slots": slots.total,
        "creates_per_s": (f64::from(p.mailboxes) / create_s).round(),
        "disk_bytes_per_empty_mailbox": disk_per_empty,
        "deliver_per_s_durable_hot": hot_per_s.round(),
        "deliver_per_s_durable": spread_per_s.round(),
        "spread_vs_hot": (spread_per_s / hot_per_s * 1000.0).round() / 1000.0,
        "deliver_p50_ms": super::bench::ms(percentile(&latencies, 0.50)),
        "deliver_p99_ms": super::bench::ms(percentile(&latencies, 0.99)),
        "wakes": wakes.len(),
        "wake_p50_ms": super::bench::ms(percentile(&wakes, 0.50)),
        "wake_p99_ms": super::bench::ms(percentile(&wakes, 0.99)),
        "evictions": slots.evictions,
        "busy_refusals": slots.busy_refusals,
        "awake_after_spread": awake_after,
        "active": p.active,
        "actors_running": actors,
        "rss_bytes": rss,
        "rss_bytes_empty_host": rss_empty,
        "rss_bytes_per_mailbox": rss.saturating_sub(rss_empty) / u64::from(p.mailboxes),
        "restart_to_first_call_ms": super::bench::ms(restart_ms),
    }))
}

/// Runs `op` over `items` with `concurrency` in flight; every one must
/// succeed. Returns each one's latency. A bar labelled `label` shows how
/// far it got, on a terminal.
async fn run_all<F, Fut>(
    label: &str,
    boxes: &Arc<Mailboxes>,
    concurrency: usize,
    items: Vec<u64>,
    op: F,
) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(Arc<Mailboxes>, u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut latencies = Vec::with_capacity(items.len());
    let bar = super::progress::bar(label, items.len() as u64);
    for n in items {
        while set.len() >= concurrency.max(1) {
            latencies.push(join(&mut set).await?);
            bar.inc(1);
        }
        let fut = op(boxes.clone(), n);
        set.spawn(async move {
            let t = Instant::now();
            fut.await.map(|()| t.elapsed()).map_err(|e| (n, e))
        });
    }
    while !set.is_empty() {
        latencies.push(join(&mut set).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(latencies)
}

type Done = Result<Duration, (u64, anyhow::Error)>;

async fn join(set: &mut JoinSet<Done>) -> anyhow::Result<Duration> {
    match set.join_next().await {
        Some(Ok(Ok(d))) => Ok(d),
        Some(Ok(Err((n, e)))) => Err(e.context(format!("mailbox user{n:07}"))),
        Some(Err(e)) => Err(e.into()),
        None => Ok(Duration::ZERO),
    }
}

fn percentile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Bytes of the files under `dir`, as allocated on disk.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
