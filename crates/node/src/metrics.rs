//! A host's metrics in the Prometheus text format, served on `/metrics`
//! when the operator gives `dem host --http ADDR` (`http.rs`).
//!
//! Counters and histograms are updated where things happen (every request,
//! with its kind and, when refused, the refusal's code; deliveries with
//! their latency); the state of the instance pool, the store and the
//! replication traffic is read when a scrape asks, so nothing is counted
//! twice and an idle host does no work for its metrics. Nothing here names
//! a mailbox or carries content: labels are request kinds and codes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::mailbox::Mailboxes;

/// A request by its kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A refusal by its wire code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// How a delivery ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// What a scrape reads from the host's parts.
#[derive(Default)]
struct Sampled {
    mailboxes_awake: Gauge,
    actors: Gauge,
    slots: Gauge,
    slots_in_use: Gauge,
    evictions: Counter<u64, AtomicU64>,
    busy_refusals: Counter<u64, AtomicU64>,
    store_commits: Counter<u64, AtomicU64>,
    wake_p99_us: Gauge,
    log_events_dropped: Counter<u64, AtomicU64>,
}

/// Every metric of one host.
pub struct HostMetrics {
    registry: Registry,
    requests: Family<KindLabel, Counter>,
    refusals: Family<CodeLabel, Counter>,
    deliveries: Family<OutcomeLabel, Counter>,
    delivery_seconds: Histogram,
    sampled: Sampled,
    /// The log feed's drop count (`crate::logs`), when events are shipped.
    log_drops: Option<Arc<AtomicU64>>,
}

impl Default for HostMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HostMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dem");
        let requests = Family::<KindLabel, Counter>::default();
        registry.register("requests", "Requests answered, by kind", requests.clone());
        let refusals = Family::<CodeLabel, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused, by wire code (503: busy, retry)",
            refusals.clone(),
        );
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Mail deliveries to mailboxes held here, by outcome",
            deliveries.clone(),
        );
        // 100 µs to about 26 s.
        let delivery_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 19));
        registry.register(
            "delivery_seconds",
            "Time from a delivery's arrival to its durable answer",
            delivery_seconds.clone(),
        );
        let sampled = Sampled::default();
        registry.register(
            "mailboxes_awake",
            "Mailboxes with a live instance",
            sampled.mailboxes_awake.clone(),
        );
        registry.register(
            "mailbox_actors",
            "Mailbox actors running (a hibernated mailbox has none)",
            sampled.actors.clone(),
        );
        registry.register(
            "instance_slots",
            "Instance slots of the pool",
            sampled.slots.clone(),
        );
        registry.register(
            "instance_slots_in_use",
            "Instance slots taken by awake mailboxes and live filters",
            sampled.slots_in_use.clone(),
        );
        registry.register(
            "slot_evictions",
            "Idle mailboxes hibernated to make room for another",
            sampled.evictions.clone(),
        );
        registry.register(
            "slot_busy_refusals",
            "Calls refused because every slot stayed busy for the wait bound",
            sampled.busy_refusals.clone(),
        );
        registry.register(
            "store_commits",
            "Group commits (fsyncs) of the mailbox store",
            sampled.store_commits.clone(),
        );
        registry.register(
            "wake_p99_microseconds",
            "99th percentile of the most recent wakes",
            sampled.wake_p99_us.clone(),
        );
        registry.register(
            "log_events_dropped",
            "Log events not shipped to a dispatch unit: the feed was full or the unit unreachable",
            sampled.log_events_dropped.clone(),
        );
        Self {
            registry,
            requests,
            refusals,
            deliveries,
            delivery_seconds,
            sampled,
            log_drops: None,
        }
    }

    /// Shows the drops counted by `counter` (a `LogFeed`'s) as
    /// `dem_log_events_dropped_total`.
    pub fn with_log_drops(mut self, counter: Option<Arc<AtomicU64>>) -> Self {
        self.log_drops = counter;
        self
    }

    /// Counts a request of `kind`, refused with `code` if it was.
    pub fn request(&self, kind: &'static str, refused: Option<u16>) {
        self.requests.get_or_create(&KindLabel { kind }).inc();
        if let Some(code) = refused {
            self.refusals.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// Records a delivery's outcome and how long it took.
    pub fn delivery(&self, outcome: &'static str, seconds: f64) {
        self.deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.delivery_seconds.observe(seconds);
    }

    /// The metrics as Prometheus text, with the sampled ones read now.
    pub fn render(&self, mailboxes: &Arc<Mailboxes>) -> String {
        let (awake, slots) = mailboxes.awake();
        let s = &self.sampled;
        s.mailboxes_awake.set(awake as i64);
        s.actors.set(mailboxes.actors_running() as i64);
        s.slots.set(i64::from(slots.total));
        s.slots_in_use.set(i64::from(slots.in_use));
        catch_up(&s.evictions, slots.evictions);
        catch_up(&s.busy_refusals, slots.busy_refusals);
        if let Some(store) = mailboxes.store() {
            catch_up(&s.store_commits, store.commits());
        }
        if let Some(drops) = &self.log_drops {
            catch_up(
                &s.log_events_dropped,
                drops.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
        let mut wakes = mailboxes.wake_times();
        wakes.sort();
        let p99 = wakes
            .get((wakes.len().saturating_sub(1)) * 99 / 100)
            .map_or(0, |d| d.as_micros() as i64);
        s.wake_p99_us.set(p99);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Moves a counter up to a total counted elsewhere.
fn catch_up(counter: &Counter<u64, AtomicU64>, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_text_names_every_metric_and_counts_what_happened() {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::open(
            dir.path(),
            dem_runtime::RuntimeConfig {
                instance_slots: Some(8),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let metrics = HostMetrics::new();
        metrics.request("deliver", None);
        metrics.request("owner", Some(403));
        metrics.delivery("delivered", 0.002);
        let text = metrics.render(&boxes);
        for line in [
            "dem_requests_total{kind=\"deliver\"} 1",
            "dem_refusals_total{code=\"403\"} 1",
            "dem_deliveries_total{outcome=\"delivered\"} 1",
            "dem_delivery_seconds_count 1",
            "dem_instance_slots 8",
            "dem_mailboxes_awake 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        boxes.shutdown().await;
    }
}
