//! The dispatch unit's log ring: the most recent events shipped by hosts
//! and by the unit itself, bounded, with a cursor for readers.
//!
//! Bounded because a unit collects from every host of the network and must
//! not grow with their chattiness: when full, the oldest event goes and is
//! counted (`evicted`). Every event gets a sequence number on arrival,
//! never reused while the unit runs, so a reader that polls with the last
//! number it saw (`dem admin logs --follow`) sees each event once, and
//! learns from a gap that it fell behind. Sans-IO and clock-free: the
//! driver (`dem_node::logs`) feeds it and serves queries from it.

use std::collections::VecDeque;

use dem_proto::logs::{LOG_QUERY_MAX, LogEvent, LogFilter, LogsPage};

/// Events a unit keeps unless its operator says otherwise (`--log-ring`).
pub const LOG_RING_DEFAULT: usize = 10_000;
/// Most events a unit may be told to keep: at the largest event size this
/// is well under a gigabyte, and it is the operator's choice below that.
pub const LOG_RING_MAX: usize = 1_000_000;

/// The most recent events, oldest first.
#[derive(Debug)]
pub struct LogRing {
    events: VecDeque<LogEvent>,
    capacity: usize,
    /// The sequence number the next event gets.
    next_seq: u64,
    evicted: u64,
}

impl LogRing {
    /// A ring of `capacity` events (at least one, at most [`LOG_RING_MAX`]).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, LOG_RING_MAX);
        LogRing {
            // Grows as events come; a quiet unit keeps little.
            events: VecDeque::with_capacity(capacity.min(1_024)),
            capacity,
            next_seq: 1,
            evicted: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events let go of to make room, since the ring was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The sequence number of the newest event (0 when none came yet).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Takes an event, numbering it; the oldest goes if the ring is full.
    pub fn push(&mut self, mut event: LogEvent) -> u64 {
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        event.seq = seq;
        self.events.push_back(event);
        seq
    }

    /// The events after `after_seq` that match `filter`, oldest first, at
    /// most `limit` (itself at most [`LOG_QUERY_MAX`]).
    pub fn query(&self, filter: &LogFilter, after_seq: u64, limit: usize) -> Vec<LogEvent> {
        self.page(filter, Some(after_seq), limit).events
    }

    /// A page of events for a reader: with `after` the ones following that
    /// sequence number, oldest first, and where to go on from; without, the
    /// most recent `limit` matching events (the start of a `--follow`).
    pub fn page(&self, filter: &LogFilter, after: Option<u64>, limit: usize) -> LogsPage {
        let limit = limit.min(LOG_QUERY_MAX);
        let mut page = LogsPage {
            events: Vec::new(),
            next: after.unwrap_or(0),
            evicted: self.evicted,
        };
        // A cursor past the newest event is from before the unit
        // restarted (numbering starts again): read from the start.
        let after = after.map(|a| if a > self.last_seq() { 0 } else { a });
        match after {
            Some(after) => {
                // Sequence numbers are consecutive in the ring, so the
                // first one after `after` is found by arithmetic.
                let first = self.events.front().map_or(self.next_seq, |e| e.seq);
                let skip = usize::try_from(after.saturating_add(1).saturating_sub(first))
                    .unwrap_or(usize::MAX);
                for event in self.events.iter().skip(skip) {
                    if page.events.len() == limit {
                        break;
                    }
                    page.next = event.seq;
                    if filter.matches(event) {
                        page.events.push(event.clone());
                    }
                }
                page.next = page.next.max(after);
            }
            None => {
                page.events = self
                    .events
                    .iter()
                    .rev()
                    .filter(|e| filter.matches(e))
                    .take(limit)
                    .cloned()
                    .collect();
                page.events.reverse();
                page.next = self.last_seq();
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::logs::Level;

    fn event(component: &str, level: Level, ts_ms: u64) -> LogEvent {
        LogEvent {
            seq: 0,
            ts_ms,
            component: component.into(),
            level,
            target: "t".into(),
            message: format!("at {ts_ms}"),
            fields: Vec::new(),
        }
    }

    #[test]
    fn the_ring_is_bounded_and_counts_what_it_lets_go() {
        let mut ring = LogRing::new(3);
        for t in 0..5 {
            ring.push(event("aa", Level::Info, t));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.evicted(), 2);
        let all = ring.query(&LogFilter::default(), 0, 10);
        let times: Vec<u64> = all.iter().map(|e| e.ts_ms).collect();
        assert_eq!(times, [2, 3, 4]);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(LogRing::new(0).capacity(), 1);
    }

    #[test]
    fn a_cursor_never_reads_an_event_twice() {
        let mut ring = LogRing::new(100);
        for t in 0..10 {
            ring.push(event("aa", Level::Info, t));
        }
        let f = LogFilter::default();
        let first = ring.page(&f, Some(0), 4);
        assert_eq!(first.events.len(), 4);
        assert_eq!(first.next, 4);
        let second = ring.page(&f, Some(first.next), 100);
        assert_eq!(second.events.first().map(|e| e.seq), Some(5));
        assert_eq!(second.next, 10);
        // Nothing new: the same cursor, no events.
        let idle = ring.page(&f, Some(second.next), 100);
        assert!(idle.events.is_empty());
        assert_eq!(idle.next, 10);
        ring.push(event("aa", Level::Info, 10));
        let more = ring.page(&f, Some(idle.next), 100);
        assert_eq!(more.events.len(), 1);
        assert_eq!(more.events[0].seq, 11);
    }

    #[test]
    fn a_cursor_moves_past_events_that_do_not_match() {
        let mut ring = LogRing::new(100);
        for t in 0..10 {
            ring.push(event("aa", Level::Debug, t));
        }
        let f = LogFilter {
            level: Some(Level::Warn),
            ..Default::default()
        };
        let page = ring.page(&f, Some(0), 100);
        assert!(page.events.is_empty());
        assert_eq!(page.next, 10, "polling again must not rescan");
        // A cursor older than the ring starts at the oldest event kept.
        let mut small = LogRing::new(2);
        for t in 0..5 {
            small.push(event("aa", Level::Info, t));
        }
        let page = small.page(&LogFilter::default(), Some(1), 10);
        assert_eq!(
            page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [4, 5]
        );
        // A cursor from before a restart (past the newest) reads from the
        // start rather than waiting forever.
        let page = small.page(&LogFilter::default(), Some(1_000), 10);
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.next, 5);
    }

    #[test]
    fn without_a_cursor_the_newest_matching_events_come_oldest_first() {
        let mut ring = LogRing::new(100);
        for t in 0..10 {
            let c = if t % 2 == 0 { "aa" } else { "bb" };
            ring.push(event(c, Level::Info, t));
        }
        let f = LogFilter {
            component: Some("bb".into()),
            ..Default::default()
        };
        let page = ring.page(&f, None, 2);
        let times: Vec<u64> = page.events.iter().map(|e| e.ts_ms).collect();
        assert_eq!(times, [7, 9]);
        assert_eq!(page.next, 10);
        // The answer is capped whatever the caller asks.
        let mut big = LogRing::new(5_000);
        for t in 0..2_000 {
            big.push(event("aa", Level::Info, t));
        }
        assert_eq!(
            big.page(&LogFilter::default(), None, usize::MAX)
                .events
                .len(),
            LOG_QUERY_MAX
        );
    }
}
