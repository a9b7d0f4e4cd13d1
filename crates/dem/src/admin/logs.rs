//! `dem admin logs`: reads the log events the dispatch units collected
//! from the hosts and from themselves (`LogsQuery`), filtered by
//! component, level, mailbox and time, merged by time. Every unit the
//! network lists is asked, since each holds only what was shipped to it.
//! `--follow` keeps polling each with the cursor it handed back, so an
//! event is printed once however often it polls.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::UserCtx;
use dem_proto::logs::{LOG_QUERY_MAX, Level, LogEvent, LogFilter, LogsPage};
use dem_proto::{DispatchId, DispatchRequest, DispatchResponse, MESSAGE_BYTES_MAX};

/// How often `--follow` asks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How long one unit may take to answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new events as they arrive (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events from this host or unit (its id in hex, or a prefix).
    #[arg(long, value_name = "ID")]
    pub component: Option<String>,
    /// Only events at this level or more severe: error, warn, info.
    #[arg(long, value_name = "L")]
    pub level: Option<Level>,
    /// Only events about this mailbox: its owner's name, or user id (hex).
    #[arg(long, value_name = "NAME")]
    pub mailbox: Option<String>,
    /// Only events since T: a time ago (`90s`, `10m`, `2h`, `1d`), a UTC
    /// time (`2026-12-07T10:30:00Z`) or milliseconds since the epoch.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// The most recent events shown at first (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn run(ctx: &UserCtx, args: LogsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=LOG_QUERY_MAX).contains(&args.limit),
        "--limit must be between 1 and {LOG_QUERY_MAX}"
    );
    let since_ms = match &args.since {
        Some(t) => Some(parse_since(t, dem_client::now_ms())?),
        None => None,
    };
    let mailbox = match &args.mailbox {
        Some(m) => Some(mailbox_id(ctx, m).await?),
        None => None,
    };
    let filter = LogFilter {
        component: args.component.map(|c| c.to_ascii_lowercase()),
        level: args.level,
        mailbox,
        since_ms,
    };
    filter.check()?;
    let mut units = units(ctx).await?;
    // The newest `limit` over all units: each gives its newest `limit`.
    let mut first = Vec::new();
    for unit in &mut units {
        first.extend(unit.poll(ctx, &filter, args.limit).await);
    }
    sort(&mut first);
    let skip = first.len().saturating_sub(args.limit);
    print(&first[skip..], args.json)?;
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let mut new = Vec::new();
        for unit in &mut units {
            new.extend(unit.poll(ctx, &filter, LOG_QUERY_MAX).await);
        }
        sort(&mut new);
        print(&new, args.json)?;
    }
}

/// Oldest first; ties (same millisecond) by component and arrival.
fn sort(events: &mut [LogEvent]) {
    events.sort_by(|a, b| (a.ts_ms, &a.component, a.seq).cmp(&(b.ts_ms, &b.component, b.seq)));
}

/// How many polls a unit that failed is left alone for.
const FAILED_POLLS_SKIPPED: u32 = 10;

/// One unit's ring, read with its own cursor: a host ships each batch to
/// one unit (the one its session uses), so every unit holds a part of
/// the network's events, and a unit's own events are only in its ring.
struct UnitLogs {
    id: DispatchId,
    addr: String,
    conn: Option<dem_net::Connection>,
    /// `None` until the first answer: then the newest events are asked.
    cursor: Option<u64>,
    /// Polls to skip after a failure, so a dead unit does not slow down
    /// `--follow` by a connect timeout each second.
    skip: u32,
    warned: bool,
}

/// Every unit the network lists (from the unit the session reaches).
async fn units(ctx: &UserCtx) -> anyhow::Result<Vec<UnitLogs>> {
    let view = match ctx
        .session
        .dispatch(&DispatchRequest::Status)
        .await
        .context("asking the dispatch unit which units there are")?
    {
        DispatchResponse::Status(v) => v,
        other => bail!("unexpected answer from the dispatch unit: {other:?}"),
    };
    Ok(view
        .units
        .iter()
        .map(|u| UnitLogs {
            id: u.id,
            addr: u.addr.clone(),
            conn: None,
            cursor: None,
            skip: 0,
            warned: false,
        })
        .collect())
}

impl UnitLogs {
    /// The unit's events after its cursor (the newest `limit` the first
    /// time), moving the cursor on; none if it cannot be reached, with a
    /// warning the first time.
    async fn poll(&mut self, ctx: &UserCtx, filter: &LogFilter, limit: usize) -> Vec<LogEvent> {
        if self.skip > 0 {
            self.skip -= 1;
            return Vec::new();
        }
        match self.query(ctx, filter, limit).await {
            Ok(page) => {
                self.cursor = Some(page.next);
                self.warned = false;
                page.events
            }
            Err(e) => {
                self.conn = None;
                self.skip = FAILED_POLLS_SKIPPED;
                if !self.warned {
                    eprintln!(
                        "warning: the logs of unit {} at {}: {e:#}",
                        self.id.short(),
                        self.addr
                    );
                    self.warned = true;
                }
                Vec::new()
            }
        }
    }

    async fn query(
        &mut self,
        ctx: &UserCtx,
        filter: &LogFilter,
        limit: usize,
    ) -> anyhow::Result<LogsPage> {
        let conn = match &self.conn {
            Some(conn) => conn.clone(),
            None => {
                let sock = self
                    .addr
                    .parse()
                    .with_context(|| format!("the unit address {:?}", self.addr))?;
                let conn = ctx.session.endpoint().connect(sock, self.id.0).await?;
                self.conn = Some(conn.clone());
                conn
            }
        };
        let req = DispatchRequest::LogsQuery {
            filter: filter.clone(),
            after: self.cursor,
            limit,
        };
        match conn
            .request::<_, DispatchResponse>(&req, MESSAGE_BYTES_MAX, QUERY_TIMEOUT)
            .await?
        {
            DispatchResponse::Logs(page) => Ok(page),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

/// A mailbox name becomes its owner's user id; an id in hex stays.
async fn mailbox_id(ctx: &UserCtx, mailbox: &str) -> anyhow::Result<String> {
    let req = DispatchRequest::LookupName {
        name: mailbox.to_owned(),
    };
    match ctx.session.dispatch(&req).await {
        Ok(DispatchResponse::Mailbox(found)) => Ok(found.user.to_hex()),
        _ if !mailbox.is_empty() && mailbox.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(mailbox.to_ascii_lowercase())
        }
        Ok(other) => bail!("unexpected answer looking up {mailbox:?}: {other:?}"),
        Err(e) => Err(e).with_context(|| format!("no mailbox named {mailbox:?}")),
    }
}

fn print(events: &[LogEvent], as_json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for e in events {
        let line = if as_json {
            let fields: serde_json::Map<String, serde_json::Value> = e
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({
                "seq": e.seq,
                "ts_ms": e.ts_ms,
                "time": utc(e.ts_ms),
                "component": e.component,
                "level": e.level.as_str(),
                "target": e.target,
                "message": e.message,
                "fields": fields,
            })
            .to_string()
        } else {
            let mut line = format!(
                "{} {:5} {} {}: {}",
                utc(e.ts_ms),
                e.level.as_str(),
                e.component.get(..12).unwrap_or(&e.component),
                e.target,
                e.message
            );
            for (k, v) in &e.fields {
                line.push_str(&format!(" {k}={v}"));
            }
            line
        };
        match writeln!(out, "{line}") {
            // `| head` closed the pipe: nothing more to show.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    out.flush().or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(())
}

/// `--since`: a time ago, a UTC time, or milliseconds since the epoch.
fn parse_since(t: &str, now_ms: i64) -> anyhow::Result<u64> {
    let t = t.trim();
    let bad = || {
        anyhow::anyhow!(
            "--since {t:?}: give a time ago (90s, 10m, 2h, 1d), a UTC time \
             (2026-12-07T10:30:00Z) or milliseconds since the epoch"
        )
    };
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let scale = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            // A date ending in `Z` is not a unit.
            'Z' | 'z' => return parse_utc(t).ok_or_else(bad),
            _ => return Err(bad()),
        };
        let n: u64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        let ago = n.checked_mul(scale).ok_or_else(bad)?;
        return Ok(u64::try_from(now_ms).unwrap_or(0).saturating_sub(ago));
    }
    parse_utc(t).ok_or_else(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z]`, in UTC, as milliseconds since the epoch.
fn parse_utc(t: &str) -> Option<u64> {
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, frac) = match time.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (time, "0"),
    };
    let mut h = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next().unwrap_or(Some(0))?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    let days = days_from_civil(y, m, day);
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1_000 + ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.fffZ`.
fn utc(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_and_parse_back() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        let t = 1_796_639_445_123; // 2026-12-07T10:30:45.123Z
        assert_eq!(utc(t), "2026-12-07T10:30:45.123Z");
        assert_eq!(parse_utc("2026-12-07T10:30:45.123Z"), Some(t));
        assert_eq!(parse_utc("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn since_takes_a_time_ago_a_date_or_milliseconds() {
        let now = 10_000_000;
        assert_eq!(parse_since("90s", now).unwrap(), 10_000_000 - 90_000);
        assert_eq!(parse_since("2h", now).unwrap(), 10_000_000 - 7_200_000);
        assert_eq!(parse_since("1d", now).unwrap(), 0);
        assert_eq!(parse_since("12345", now).unwrap(), 12_345);
        assert_eq!(parse_since("1970-01-01T00:00:01Z", now).unwrap(), 1_000);
        for bad in ["", "soon", "10y", "1x0m", "2026-12-07"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
