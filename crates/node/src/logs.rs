//! Collected logs, the drivers' side: the tracing layer that catches a
//! process's events, the task that ships a host's events to the dispatch
//! units, and the unit's side that keeps them in its ring
//! (`dem_core::logs::LogRing`) and answers `dem admin logs`.
//!
//! A host must never wait on its collector: the layer only ever
//! `try_send`s into a bounded channel ([`FEED_CAPACITY`] events), and when
//! that is full, or a batch cannot be delivered, the events are dropped
//! and counted ([`LogFeed::dropped`], `dem_log_events_dropped_total` on
//! `/metrics`). So a slow, absent or killed unit costs a host nothing but
//! the events themselves.
//!
//! - [`ShipLayer`]: the `tracing_subscriber::Layer`, installed by the
//!   binary next to its stderr or file formatter;
//! - [`ship`]: a host's batching loop (every [`BATCH_INTERVAL`] or
//!   [`LOG_BATCH_MAX`] events);
//! - [`check_batch`] and [`stamp`]: what a unit checks and rewrites on a
//!   received batch; [`LogStore`]: its ring, shared by the tasks that fill
//!   it and the readers (`LogsQuery`, the monitor), and [`collect_own`],
//!   which puts the unit's own events in it;
//! - [`rotate`]: the size-rotated log file of `--log-file`.

pub mod rotate;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use dem_core::logs::LogRing;
use dem_proto::WireError;
use dem_proto::logs::{LOG_BATCH_MAX, LOG_EVENT_BYTES_MAX, Level, LogEvent, LogFilter, LogsPage};

/// Events a process holds for shipping before it drops new ones.
pub const FEED_CAPACITY: usize = 4_096;
/// How long a host gathers events before shipping a batch.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long shipping one batch may take before it is given up (and its
/// events counted as dropped).
pub const SHIP_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two warnings that events were dropped, so a
/// collector that stays away does not fill the host's own log.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// This module's own events are never shipped: a failure to ship would
/// otherwise make events about itself, forever.
const OWN_TARGET: &str = module_path!();

/// The receiving end of a [`ShipLayer`]: the events it caught, and how many
/// were dropped. Cloned into the config of the daemon that drains it; the
/// first to [`LogFeed::take`] it drains it.
#[derive(Clone)]
pub struct LogFeed {
    rx: Arc<Mutex<Option<mpsc::Receiver<LogEvent>>>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFeed")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl LogFeed {
    /// Events dropped so far: the channel was full, or their batch could
    /// not be shipped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The counter itself, for the metrics.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// Counts `n` more dropped events.
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The channel's receiving end; `None` once taken.
    pub fn take(&self) -> Option<mpsc::Receiver<LogEvent>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Catches every event at `min` or more severe from DEM's own crates into
/// a bounded channel, never waiting.
pub struct ShipLayer {
    tx: mpsc::Sender<LogEvent>,
    dropped: Arc<AtomicU64>,
    min: tracing::Level,
}

/// A layer catching events at info and above, and the feed to drain it
/// from; `capacity` events wait at most (see [`FEED_CAPACITY`]).
pub fn layer(capacity: usize) -> (ShipLayer, LogFeed) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        ShipLayer {
            tx,
            dropped: dropped.clone(),
            min: tracing::Level::INFO,
        },
        LogFeed {
            rx: Arc::new(Mutex::new(Some(rx))),
            dropped,
        },
    )
}

/// A span's fields as text, kept in the span's extensions.
struct SpanFields(Vec<(String, String)>);

/// Collects fields as text; `message` apart.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }
}

impl Fields {
    fn put(&mut self, field: &Field, text: String) {
        if field.name() == "message" {
            self.message = text;
        } else if self.fields.len() < dem_proto::logs::LOG_FIELDS_MAX {
            self.fields.push((field.name().to_owned(), text));
        }
    }
}

impl<S> Layer<S> for ShipLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields.fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(kept)) = ext.get_mut::<SpanFields>() {
            kept.extend(fields.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        // `tracing` orders levels by verbosity: TRACE is the greatest.
        if *meta.level() > self.min
            || !meta.target().starts_with("dem")
            || meta.target() == OWN_TARGET
        {
            return;
        }
        // Reserve first: a full channel costs one failed check, not the
        // formatting of an event that would be dropped anyway.
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(kept)) = span.extensions().get::<SpanFields>() {
                    fields.fields.extend(kept.iter().cloned());
                }
            }
        }
        event.record(&mut fields);
        let mut shipped = LogEvent {
            seq: 0,
            ts_ms: u64::try_from(dem_client::now_ms()).unwrap_or(0),
            component: String::new(),
            level: level_of(meta.level()),
            target: meta.target().to_owned(),
            message: fields.message,
            fields: fields.fields,
        };
        shipped.truncate();
        permit.send(shipped);
    }
}

fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

/// Drains `feed` in batches of at most [`LOG_BATCH_MAX`] events, at least
/// every [`BATCH_INTERVAL`] while events come, and hands each batch to
/// `send` (which ships it; false if it could not). A batch that fails or
/// takes longer than [`SHIP_TIMEOUT`] is dropped and counted, never
/// retried: the feed keeps filling meanwhile, and a host's events are not
/// worth holding up anything for. Returns when the layer is gone.
pub async fn ship<F, Fut>(feed: LogFeed, mut send: F)
where
    F: FnMut(Vec<LogEvent>) -> Fut,
    Fut: Future<Output = bool>,
{
    let Some(mut rx) = feed.take() else {
        tracing::debug!("the log feed is drained elsewhere");
        return;
    };
    let mut warned_at: Option<tokio::time::Instant> = None;
    let mut warned_count = 0;
    loop {
        let mut batch = Vec::with_capacity(LOG_BATCH_MAX);
        if rx.recv_many(&mut batch, LOG_BATCH_MAX).await == 0 {
            return;
        }
        // Let a batch fill for a while rather than ship every event alone.
        let deadline = tokio::time::sleep(BATCH_INTERVAL);
        tokio::pin!(deadline);
        while batch.len() < LOG_BATCH_MAX {
            let room = LOG_BATCH_MAX - batch.len();
            tokio::select! {
                _ = &mut deadline => break,
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        let n = batch.len() as u64;
        let shipped = matches!(
            tokio::time::timeout(SHIP_TIMEOUT, send(batch)).await,
            Ok(true)
        );
        if !shipped {
            feed.count_dropped(n);
        }
        let dropped = feed.dropped();
        let due = warned_at.is_none_or(|t| t.elapsed() >= DROP_WARNING_INTERVAL);
        if dropped > warned_count && due {
            tracing::warn!(
                dropped,
                "log events dropped: the collecting dispatch unit is slow or unreachable"
            );
            warned_at = Some(tokio::time::Instant::now());
            warned_count = dropped;
        }
    }
}

/// Checks a received batch against the limits: at most [`LOG_BATCH_MAX`]
/// events, each at most [`LOG_EVENT_BYTES_MAX`].
pub fn check_batch(events: &[LogEvent]) -> Result<(), WireError> {
    if events.len() > LOG_BATCH_MAX {
        return Err(WireError::new(
            WireError::TOO_LARGE,
            format!(
                "a log batch of {} events; at most {LOG_BATCH_MAX}",
                events.len()
            ),
        ));
    }
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| e.size() > LOG_EVENT_BYTES_MAX)
    {
        return Err(WireError::new(
            WireError::TOO_LARGE,
            format!(
                "log event {i} is {} bytes; at most {LOG_EVENT_BYTES_MAX}",
                e.size()
            ),
        ));
    }
    Ok(())
}

/// Makes a shipped event the collector's: it is from `component` (the
/// authenticated sender, whatever the event said) and not yet numbered.
pub fn stamp(mut event: LogEvent, component: &str) -> LogEvent {
    event.component = component.to_owned();
    event.seq = 0;
    event
}

/// A unit's log ring, shared by the tasks that fill it (requests, the
/// unit's own feed) and the readers (`LogsQuery`, the monitor).
#[derive(Clone, Debug)]
pub struct LogStore(Arc<Mutex<LogRing>>);

impl LogStore {
    /// A ring of `capacity` events (see `dem_core::logs::LogRing::new`).
    pub fn new(capacity: usize) -> Self {
        LogStore(Arc::new(Mutex::new(LogRing::new(capacity))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogRing> {
        // A panic while pushing leaves at worst one event missing.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes events from `component` (the authenticated sender).
    pub fn push_from(&self, component: &str, events: Vec<LogEvent>) {
        let mut ring = self.lock();
        for event in events {
            ring.push(stamp(event, component));
        }
    }

    /// Matching events after `after_seq`, oldest first (see
    /// `LogRing::query`).
    pub fn query(&self, filter: &LogFilter, after_seq: u64, limit: usize) -> Vec<LogEvent> {
        self.lock().query(filter, after_seq, limit)
    }

    /// A page for a reader (see `LogRing::page`).
    pub fn page(&self, filter: &LogFilter, after: Option<u64>, limit: usize) -> LogsPage {
        self.lock().page(filter, after, limit)
    }
}

/// Moves a unit's own events from its feed into its ring, as `component`,
/// until the layer is gone.
pub async fn collect_own(feed: LogFeed, store: LogStore, component: String) {
    let Some(mut rx) = feed.take() else {
        return;
    };
    let mut batch = Vec::with_capacity(LOG_BATCH_MAX);
    while rx.recv_many(&mut batch, LOG_BATCH_MAX).await > 0 {
        store.push_from(&component, std::mem::take(&mut batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_full_feed_drops_and_counts_instead_of_waiting() {
        let (layer, feed) = layer(4);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("host", host = "abcd");
            let _in = span.enter();
            for i in 0..10 {
                tracing::info!(mailbox = "00ff", i, "event");
            }
            tracing::debug!("below the level: neither kept nor counted");
        });
        assert_eq!(feed.dropped(), 6);
        let mut rx = feed.take().unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!(first.message, "event");
        assert_eq!(first.level, Level::Info);
        assert_eq!(first.field("host"), Some("abcd"));
        assert_eq!(first.field("mailbox"), Some("00ff"));
        assert_eq!(first.field("i"), Some("0"));
        let mut n = 1;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 4);
        assert!(feed.take().is_none(), "one drainer only");
    }

    #[tokio::test]
    async fn batches_that_cannot_be_shipped_are_dropped_and_counted() {
        let (layer, feed) = layer(64);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::warn!("to nowhere");
            }
        });
        // The layer (the only sender) is gone with the subscriber, so the
        // loop ends once it has tried the batch.
        let tried = Arc::new(AtomicU64::new(0));
        let seen = tried.clone();
        ship(feed.clone(), move |batch| {
            seen.fetch_add(batch.len() as u64, Ordering::Relaxed);
            async { false }
        })
        .await;
        assert_eq!(tried.load(Ordering::Relaxed), 5);
        assert_eq!(feed.dropped(), 5);
    }

    #[test]
    fn a_unit_refuses_oversized_batches_and_events() {
        let event = LogEvent {
            seq: 0,
            ts_ms: 0,
            component: String::new(),
            level: Level::Info,
            target: "dem".into(),
            message: "m".into(),
            fields: Vec::new(),
        };
        assert!(check_batch(&vec![event.clone(); LOG_BATCH_MAX]).is_ok());
        let err = check_batch(&vec![event.clone(); LOG_BATCH_MAX + 1]).unwrap_err();
        assert_eq!(err.code, WireError::TOO_LARGE);
        let mut big = event.clone();
        big.message = "x".repeat(LOG_EVENT_BYTES_MAX + 1);
        assert!(check_batch(&[event.clone(), big]).is_err());
        let claimed = LogEvent {
            component: "someone else".into(),
            seq: 99,
            ..event
        };
        let s = stamp(claimed, "abcd");
        assert_eq!((s.component.as_str(), s.seq), ("abcd", 0));
    }
}
