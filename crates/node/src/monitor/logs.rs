//! `/api/logs`: the unit's collected log (`crate::logs`) for the monitor
//! page's log panel, filtered like `dem admin logs`.
//!
//! `?component=HEX&level=L&mailbox=HEX&since=MS&after=SEQ&limit=N`. The
//! page polls with `after` set to the last answer's `next`, so it never
//! gets an event twice and never asks for a backlog: without `after` it
//! gets the newest matches only, and `limit` is capped at
//! [`LOG_QUERY_MAX`]. Guarded like every read (loopback, else the token),
//! since events name hosts and mailboxes.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::dispatch::service::UnitReader;
use dem_proto::logs::{LOG_QUERY_MAX, Level, LogFilter};

/// Events per answer when the page does not say.
const LIMIT_DEFAULT: usize = 200;
/// Longest query string taken.
const QUERY_BYTES_MAX: usize = 512;

/// A parsed `/api/logs` query.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogsQuery {
    pub filter: LogFilter,
    pub after: Option<u64>,
    pub limit: usize,
}

impl LogsQuery {
    /// Parses the query string; a clear message for anything off.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let raw = raw.unwrap_or("");
        if raw.len() > QUERY_BYTES_MAX {
            return Err(format!("the query is over {QUERY_BYTES_MAX} bytes"));
        }
        let mut q = LogsQuery {
            limit: LIMIT_DEFAULT,
            ..Default::default()
        };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.is_empty() {
                continue;
            }
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key} must be a number, not {value:?}"))
            };
            match key {
                "component" => q.filter.component = Some(value.to_ascii_lowercase()),
                "mailbox" => q.filter.mailbox = Some(value.to_ascii_lowercase()),
                "level" => {
                    q.filter.level = Some(value.parse::<Level>().map_err(|e| e.to_string())?)
                }
                "since" => q.filter.since_ms = Some(number()?),
                "after" => q.after = Some(number()?),
                "limit" => {
                    q.limit = usize::try_from(number()?)
                        .unwrap_or(LOG_QUERY_MAX)
                        .min(LOG_QUERY_MAX)
                }
                // The page's token travels in the query too.
                "token" => {}
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        q.filter.check().map_err(|e| e.to_string())?;
        Ok(q)
    }
}

/// The handler, on the listener's shared reader.
pub async fn logs(State(reader): State<UnitReader>, RawQuery(raw): RawQuery) -> Response {
    let query = match LogsQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => {
            let body = serde_json::json!({ "error": e }).to_string();
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    let page = reader.logs().page(&query.filter, query.after, query.limit);
    match serde_json::to_string(&page) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_with_caps_and_clear_refusals() {
        let q = LogsQuery::parse(Some(
            "component=AB12&level=warn&after=7&limit=99999&token=x",
        ))
        .unwrap();
        assert_eq!(q.filter.component.as_deref(), Some("ab12"));
        assert_eq!(q.filter.level, Some(Level::Warn));
        assert_eq!(q.after, Some(7));
        assert_eq!(q.limit, LOG_QUERY_MAX);
        assert_eq!(LogsQuery::parse(None).unwrap().limit, LIMIT_DEFAULT);
        assert!(
            LogsQuery::parse(Some("level=loud"))
                .unwrap_err()
                .contains("level")
        );
        assert!(
            LogsQuery::parse(Some("after=x"))
                .unwrap_err()
                .contains("number")
        );
        assert!(LogsQuery::parse(Some("component=zz")).is_err(), "not hex");
        assert!(
            LogsQuery::parse(Some("colour=red"))
                .unwrap_err()
                .contains("colour")
        );
        assert!(LogsQuery::parse(Some(&"a".repeat(QUERY_BYTES_MAX + 1))).is_err());
    }
}
