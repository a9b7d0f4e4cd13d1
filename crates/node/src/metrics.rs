//! A host's metrics in the Prometheus text format, served on `/metrics`
//! when the operator gives `dem host --http ADDR` (`http.rs`).
//!
//! Counters and histograms are updated where things happen (every request,
//! with its kind and, when refused, the refusal's code; deliveries with
//! their latency); the state of the instance pool, the store and the
//! replication traffic is read when a scrape asks, so nothing is counted
//! twice and an idle host does no work for its metrics. Nothing here names
//! a mailbox or carries content: labels are request kinds and codes.
//!
//! The lower crates know no metrics format: the store tells each commit's
//! fsync time to a hook set here, the runtime counts guest traps and fuel,
//! the transport counts refused connections, all as plain atomics read at
//! a scrape ([`HostSample`] carries what the node gathers for one).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

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

/// A mailbox move by its direction (`out`: this host was the source) and
/// how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoveLabel {
    pub direction: &'static str,
    pub outcome: &'static str,
}

/// A move's direction.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

/// Why a connection was refused (`dem_net::RefusalReason::label`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// What the node gathers for one scrape, beyond the mailboxes: the
/// endpoint's connections and the replica links' lag.
#[derive(Debug, Clone, Default)]
pub struct HostSample {
    pub connections_open: usize,
    /// Refused connections by reason label, totals since the endpoint bound.
    pub connections_refused: Vec<(&'static str, u64)>,
    /// Ops the peer replicas lack, summed over this host's links.
    pub replica_lag_ops: u64,
    /// The most one link's peer lacks.
    pub replica_lag_max_ops: u64,
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
    guest_traps: Counter<u64, AtomicU64>,
    guest_fuel: Counter<u64, AtomicU64>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabel, Counter>,
    replica_lag: Gauge,
    replica_lag_max: Gauge,
}

/// A histogram of durations from 100 µs to about 26 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every metric of one host.
pub struct HostMetrics {
    registry: Registry,
    requests: Family<KindLabel, Counter>,
    refusals: Family<CodeLabel, Counter>,
    deliveries: Family<OutcomeLabel, Counter>,
    delivery_seconds: Histogram,
    moves: Family<MoveLabel, Counter>,
    move_seconds: Family<DirectionLabel, Histogram, fn() -> Histogram>,
    regenerations: Counter,
    rebalance_moves: Family<OutcomeLabel, Counter>,
    anti_entropy_bytes: Family<KindLabel, Counter>,
    fsync_seconds: Histogram,
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
        let delivery_seconds = seconds_histogram();
        registry.register(
            "delivery_seconds",
            "Time from a delivery's arrival to its durable answer",
            delivery_seconds.clone(),
        );
        let moves = Family::<MoveLabel, Counter>::default();
        registry.register(
            "moves",
            "Mailbox moves, by direction (out: from here, in: to here) and outcome",
            moves.clone(),
        );
        let move_seconds =
            Family::<DirectionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "move_seconds",
            "Time a mailbox move took, from its start to the mailbox served on its new host (out) or acknowledged (in)",
            move_seconds.clone(),
        );
        let regenerations = Counter::default();
        registry.register(
            "regenerations",
            "Replicas this host, as keeper, copied to a new host to restore R",
            regenerations.clone(),
        );
        let rebalance_moves = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "rebalance_moves",
            "Replicas this host moved to balance load, by outcome (moved, not_made)",
            rebalance_moves.clone(),
        );
        let anti_entropy_bytes = Family::<KindLabel, Counter>::default();
        registry.register(
            "anti_entropy_bytes",
            "Bytes pushed to peer replicas: ops by replica links (sync), whole states by copies (copy)",
            anti_entropy_bytes.clone(),
        );
        let fsync_seconds = seconds_histogram();
        registry.register(
            "store_fsync_seconds",
            "Time a group commit of the mailbox store took to become durable (its fsyncs)",
            fsync_seconds.clone(),
        );
        // A family shows only the series it has: these are known before
        // anything happens, so a dashboard sees 0 rather than nothing.
        for (direction, outcome) in [
            ("out", "moved"),
            ("out", "failed"),
            ("in", "moved"),
            ("in", "refused"),
        ] {
            drop(moves.get_or_create(&MoveLabel { direction, outcome }));
            drop(move_seconds.get_or_create(&DirectionLabel { direction }));
        }
        for outcome in ["moved", "not_made"] {
            drop(rebalance_moves.get_or_create(&OutcomeLabel { outcome }));
        }
        for kind in ["sync", "copy"] {
            drop(anti_entropy_bytes.get_or_create(&KindLabel { kind }));
        }
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
        registry.register(
            "guest_traps",
            "Guest calls and instantiations that trapped (fuel, memory, a bug): each instance thrown away",
            sampled.guest_traps.clone(),
        );
        registry.register(
            "guest_fuel_used",
            "Fuel (about one per wasm instruction) mailbox and filter guests burned",
            sampled.guest_fuel.clone(),
        );
        registry.register(
            "connections_open",
            "QUIC connections open on the host's endpoint, incoming and outgoing",
            sampled.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Incoming connections refused, by reason (handshakes, address, key, capacity)",
            sampled.connections_refused.clone(),
        );
        registry.register(
            "replica_lag_ops",
            "Ops peer replicas lack of what this host holds, summed over its replica links",
            sampled.replica_lag.clone(),
        );
        registry.register(
            "replica_lag_max_ops",
            "Ops the furthest-behind peer replica lacks, over this host's replica links",
            sampled.replica_lag_max.clone(),
        );
        Self {
            registry,
            requests,
            refusals,
            deliveries,
            delivery_seconds,
            moves,
            move_seconds,
            regenerations,
            rebalance_moves,
            anti_entropy_bytes,
            fsync_seconds,
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

    /// Counts a move that ended (`outcome`), with its time if it moved.
    pub fn moved(&self, direction: &'static str, outcome: &'static str, took: Option<Duration>) {
        self.moves
            .get_or_create(&MoveLabel { direction, outcome })
            .inc();
        if let Some(took) = took {
            self.move_seconds
                .get_or_create(&DirectionLabel { direction })
                .observe(took.as_secs_f64());
        }
    }

    /// Counts a replica copied to a new host to restore R.
    pub fn regenerated(&self) {
        self.regenerations.inc();
    }

    /// Counts a rebalancing move, made or not.
    pub fn rebalanced(&self, made: bool) {
        let outcome = if made { "moved" } else { "not_made" };
        self.rebalance_moves
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts `bytes` pushed to a peer replica, `kind` `sync` or `copy`.
    pub fn pushed(&self, kind: &'static str, bytes: u64) {
        self.anti_entropy_bytes
            .get_or_create(&KindLabel { kind })
            .inc_by(bytes);
    }

    /// What the store's writer tells of each commit
    /// (`MailboxStore::on_commit`): its fsync time, into the histogram.
    pub fn fsync_hook(&self) -> dem_store::CommitHook {
        let histogram = self.fsync_seconds.clone();
        Arc::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }

    /// The metrics as Prometheus text, with the sampled ones read now.
    pub fn render(&self, mailboxes: &Arc<Mailboxes>, host: &HostSample) -> String {
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
        let guests = mailboxes.runtime().guest_stats();
        catch_up(&s.guest_traps, guests.traps());
        catch_up(&s.guest_fuel, guests.fuel_used());
        s.connections_open.set(host.connections_open as i64);
        for &(reason, total) in &host.connections_refused {
            catch_up(
                &s.connections_refused.get_or_create(&ReasonLabel { reason }),
                total,
            );
        }
        s.replica_lag.set(host.replica_lag_ops as i64);
        s.replica_lag_max.set(host.replica_lag_max_ops as i64);
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
        metrics.moved("out", "moved", Some(Duration::from_millis(30)));
        metrics.moved("in", "refused", None);
        metrics.regenerated();
        metrics.rebalanced(false);
        metrics.pushed("sync", 120);
        metrics.pushed("copy", 4000);
        let store = boxes.store().unwrap();
        assert!(store.on_commit(metrics.fsync_hook()));
        let meta = dem_proto::export::MailboxMeta {
            code_hash: [0; 32],
            created_ms: 0,
        };
        store.create("counted", meta).await.unwrap();
        let host = HostSample {
            connections_open: 3,
            connections_refused: vec![("address", 2), ("key", 0)],
            replica_lag_ops: 7,
            replica_lag_max_ops: 5,
        };
        let text = metrics.render(&boxes, &host);
        for line in [
            "dem_requests_total{kind=\"deliver\"} 1",
            "dem_refusals_total{code=\"403\"} 1",
            "dem_deliveries_total{outcome=\"delivered\"} 1",
            "dem_delivery_seconds_count 1",
            "dem_instance_slots 8",
            "dem_mailboxes_awake 0",
            "dem_moves_total{direction=\"out\",outcome=\"moved\"} 1",
            "dem_moves_total{direction=\"in\",outcome=\"refused\"} 1",
            "dem_move_seconds_count{direction=\"out\"} 1",
            "dem_regenerations_total 1",
            "dem_rebalance_moves_total{outcome=\"not_made\"} 1",
            "dem_anti_entropy_bytes_total{kind=\"sync\"} 120",
            "dem_anti_entropy_bytes_total{kind=\"copy\"} 4000",
            "dem_store_fsync_seconds_count 1",
            "dem_guest_traps_total 0",
            "dem_guest_fuel_used_total 0",
            "dem_connections_open 3",
            "dem_connections_refused_total{reason=\"address\"} 2",
            "dem_connections_refused_total{reason=\"key\"} 0",
            "dem_replica_lag_ops 7",
            "dem_replica_lag_max_ops 5",
            "# EOF",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        // Every family says what it is.
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        boxes.shutdown().await;
    }
}
