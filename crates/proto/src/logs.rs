//! Collected logs as data: the events hosts and units ship to the dispatch
//! units (`DispatchRequest::Logs`), the filter `dem admin logs` reads them
//! back with (`DispatchRequest::LogsQuery`), and the limits both sides keep.
//!
//! An event is flat on purpose (level, target, message, then every field
//! of the event and of its spans as text): the collector only stores and
//! filters, so it never needs the emitter's types, and a field it does not
//! know about is still shown. Who emitted an event is not the emitter's to
//! say: the unit that receives a batch stamps `component` with the key the
//! connection was authenticated with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most events in one `Logs` request; a host ships at most this many per
/// batch, and a unit refuses a larger batch.
pub const LOG_BATCH_MAX: usize = 256;
/// Largest event a unit accepts, by [`LogEvent::size`]; a host truncates its
/// events to fit with [`LogEvent::truncate`] before shipping.
pub const LOG_EVENT_BYTES_MAX: usize = 8_192;
/// Longest message kept, in bytes.
pub const LOG_MESSAGE_BYTES_MAX: usize = 1_024;
/// Most fields kept per event (event fields and span fields together).
pub const LOG_FIELDS_MAX: usize = 16;
/// Longest field name or value kept, in bytes.
pub const LOG_FIELD_BYTES_MAX: usize = 160;
/// Most events in one `LogsQuery` answer.
pub const LOG_QUERY_MAX: usize = 1_000;
/// Longest text a filter may hold in one of its strings.
pub const LOG_FILTER_BYTES_MAX: usize = 128;

/// How severe an event is; ordered from the least to the most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is none of trace, debug, info, warn, error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?}: use trace, debug, info, warn or error")]
pub struct LevelError(pub String);

impl FromStr for Level {
    type Err = LevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(LevelError(s.to_owned())),
        }
    }
}

/// One collected event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Position in the collecting unit's ring (from 1, never reused while
    /// the unit runs); 0 until a ring takes the event.
    pub seq: u64,
    /// Wall clock at the emitter, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The emitting host's or unit's id (hex), stamped by the collector.
    pub component: String,
    pub level: Level,
    /// The emitting module (`dem_node::node::serve`).
    pub target: String,
    pub message: String,
    /// The spans' fields, outermost first, then the event's own.
    pub fields: Vec<(String, String)>,
}

impl LogEvent {
    /// Bytes the event's text takes: what [`LOG_EVENT_BYTES_MAX`] bounds.
    pub fn size(&self) -> usize {
        self.component.len()
            + self.target.len()
            + self.message.len()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Cuts the event down to the limits: at most [`LOG_FIELDS_MAX`] fields
    /// (the innermost, the event's own, are kept), each name and value at
    /// most [`LOG_FIELD_BYTES_MAX`], the message at most
    /// [`LOG_MESSAGE_BYTES_MAX`]. The result is within
    /// [`LOG_EVENT_BYTES_MAX`] whatever the component and target.
    pub fn truncate(&mut self) {
        cut(&mut self.component, LOG_FIELD_BYTES_MAX);
        cut(&mut self.target, LOG_FIELD_BYTES_MAX);
        cut(&mut self.message, LOG_MESSAGE_BYTES_MAX);
        if self.fields.len() > LOG_FIELDS_MAX {
            let extra = self.fields.len() - LOG_FIELDS_MAX;
            self.fields.drain(..extra);
        }
        for (k, v) in &mut self.fields {
            cut(k, LOG_FIELD_BYTES_MAX);
            cut(v, LOG_FIELD_BYTES_MAX);
        }
    }

    /// The innermost value of the field `name`, if the event has one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

const _: () = assert!(
    2 * LOG_FIELD_BYTES_MAX + LOG_MESSAGE_BYTES_MAX + 2 * LOG_FIELDS_MAX * LOG_FIELD_BYTES_MAX
        <= LOG_EVENT_BYTES_MAX,
    "a truncated event fits the event limit"
);

/// Which events a query wants; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// The component's id, or a prefix of it in hex (a short id).
    pub component: Option<String>,
    /// Only events at this level or more severe.
    pub level: Option<Level>,
    /// The mailbox's user id, or a prefix of it in hex: events whose
    /// `mailbox` field names it (full or short).
    pub mailbox: Option<String>,
    /// Only events emitted at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
}

/// A filter a unit refuses to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("the {what} filter is longer than {LOG_FILTER_BYTES_MAX} bytes")]
    TooLong { what: &'static str },
    #[error("the {what} filter must be a hex id or a prefix of one, not {value:?}")]
    NotHex { what: &'static str, value: String },
}

impl LogFilter {
    /// Checks the filter's strings: hex, bounded.
    pub fn check(&self) -> Result<(), FilterError> {
        for (what, value) in [("component", &self.component), ("mailbox", &self.mailbox)] {
            let Some(value) = value else { continue };
            if value.len() > LOG_FILTER_BYTES_MAX {
                return Err(FilterError::TooLong { what });
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FilterError::NotHex {
                    what,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether `event` passes every condition of the filter.
    pub fn matches(&self, event: &LogEvent) -> bool {
        if let Some(level) = self.level
            && event.level < level
        {
            return false;
        }
        if let Some(since) = self.since_ms
            && event.ts_ms < since
        {
            return false;
        }
        if let Some(c) = &self.component
            && !same_id(&event.component, c)
        {
            return false;
        }
        if let Some(m) = &self.mailbox {
            match event.field("mailbox") {
                Some(v) if same_id(v, m) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Whether two ids in hex, either possibly shortened, name the same thing:
/// one is a prefix of the other (case aside).
fn same_id(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let n = a.len().min(b.len());
    a.as_bytes()[..n].eq_ignore_ascii_case(&b.as_bytes()[..n])
}

/// The answer to a `LogsQuery`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsPage {
    /// Matching events, oldest first.
    pub events: Vec<LogEvent>,
    /// Where to continue from (`after` of the next query): the last event
    /// the ring looked at, matching or not, so polling never re-reads.
    pub next: u64,
    /// Events the ring has let go of since the unit started, to make room.
    pub evicted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(component: &str, level: Level, ts_ms: u64, mailbox: Option<&str>) -> LogEvent {
        LogEvent {
            seq: 0,
            ts_ms,
            component: component.into(),
            level,
            target: "t".into(),
            message: "m".into(),
            fields: mailbox
                .map(|m| vec![("mailbox".to_owned(), m.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("WARN".parse::<Level>(), Ok(Level::Warn));
        assert_eq!("info".parse::<Level>(), Ok(Level::Info));
        assert!("loud".parse::<Level>().is_err());
        assert!(Level::Error > Level::Warn && Level::Info > Level::Debug);
    }

    #[test]
    fn a_filter_matches_on_every_condition() {
        let e = event("abcdef0123", Level::Warn, 1_000, Some("00ff00ff00ff"));
        assert!(LogFilter::default().matches(&e));
        let by_component = LogFilter {
            component: Some("ABCD".into()),
            ..Default::default()
        };
        assert!(by_component.matches(&e));
        let other = LogFilter {
            component: Some("abce".into()),
            ..Default::default()
        };
        assert!(!other.matches(&e));
        let level = |l| LogFilter {
            level: Some(l),
            ..Default::default()
        };
        assert!(level(Level::Info).matches(&e) && level(Level::Warn).matches(&e));
        assert!(!level(Level::Error).matches(&e));
        let since = |s| LogFilter {
            since_ms: Some(s),
            ..Default::default()
        };
        assert!(since(1_000).matches(&e) && !since(1_001).matches(&e));
        // A full user id matches the short one in the event, and back.
        let mailbox = |m: &str| LogFilter {
            mailbox: Some(m.into()),
            ..Default::default()
        };
        assert!(mailbox("00ff00ff00ff11223344").matches(&e));
        assert!(!mailbox("00ff00ff00fe").matches(&e));
        assert!(!mailbox("00ff").matches(&event("a", Level::Info, 0, None)));
    }

    #[test]
    fn bad_filters_are_refused() {
        let f = LogFilter {
            component: Some("not hex".into()),
            ..Default::default()
        };
        assert!(matches!(f.check(), Err(FilterError::NotHex { .. })));
        let f = LogFilter {
            mailbox: Some("a".repeat(LOG_FILTER_BYTES_MAX + 1)),
            ..Default::default()
        };
        assert!(matches!(f.check(), Err(FilterError::TooLong { .. })));
        assert!(LogFilter::default().check().is_ok());
    }

    #[test]
    fn truncation_brings_any_event_within_the_limit() {
        let mut e = event("c", Level::Info, 0, None);
        e.message = "é".repeat(5_000);
        e.target = "t".repeat(5_000);
        e.fields = (0..100)
            .map(|i| (format!("k{i}"), "v".repeat(1_000)))
            .collect();
        e.truncate();
        assert!(e.size() <= LOG_EVENT_BYTES_MAX);
        assert_eq!(e.fields.len(), LOG_FIELDS_MAX);
        // The innermost fields are the ones kept.
        assert_eq!(e.fields.last().map(|f| f.0.as_str()), Some("k99"));
        assert!(e.message.len() <= LOG_MESSAGE_BYTES_MAX);
    }
}
