//! The admin console's actions on the unit's HTTP listener: what an
//! administrator may order while the network runs.
//!
//! - `POST /api/act/drain` `{"host": HEX, "by": NAME}`: the host moves
//!   everything off itself and leaves (it learns the order from its next
//!   lease answer);
//! - `POST /api/act/replication` `{"replicas": R, "write_quorum": W, "by":
//!   NAME}`: R and W for the whole network, replicated to every unit and
//!   learnt by every host at its next heartbeat.
//!
//! Reading the network is open to loopback peers, but acting is not: every
//! action needs the admin token in an `Authorization: Bearer` header, from
//! anywhere (never in the URL, which ends up in logs and histories). Each
//! order is logged at info with who ordered it (`by`, as the caller names
//! itself, and the peer address), so it lands in the unit's collected log
//! beside what it caused. Moves of one mailbox stay `dem admin move`: they
//! are signed by the mailbox's owner, which the unit cannot do for them.
//!
//! Adding components needs no action: a unit joins with `dem dispatch
//! --peer`, a host with `dem host --dispatch`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::auth::AdminToken;
use crate::dispatch::HostError;
use crate::dispatch::service::{AdminChangeError, UnitAdmin};
use crate::dispatch::settings::SettingsError;
use dem_identity::HostId;

/// Largest action body accepted.
pub const ACT_BODY_BYTES_MAX: usize = 4 * 1024;
/// Longest `by` accepted.
pub const BY_CHARS_MAX: usize = 64;

#[derive(Clone)]
struct Acting {
    admin: UnitAdmin,
    token: AdminToken,
}

/// The action routes, to merge into the listener's router.
pub fn router(admin: UnitAdmin, token: AdminToken) -> Router {
    Router::new()
        .route("/api/act/drain", post(drain))
        .route("/api/act/replication", post(replication))
        .layer(DefaultBodyLimit::max(ACT_BODY_BYTES_MAX))
        .with_state(Acting { admin, token })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainOrder {
    host: String,
    by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationOrder {
    replicas: usize,
    write_quorum: usize,
    by: String,
}

/// Parses a JSON order, refusing unknown fields with a clear message.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("the order: {e}")))
}

/// What every action does first: the token, the order's JSON, and who
/// gives it.
fn accept<T: serde::de::DeserializeOwned>(
    token: &AdminToken,
    headers: &HeaderMap,
    body: &[u8],
    by: impl Fn(&T) -> &String,
) -> Result<(T, String), Response> {
    authorize(token, headers)?;
    let order: T = parse(body)?;
    let who = checked_by(by(&order))?.to_owned();
    Ok((order, who))
}

async fn drain(
    State(acting): State<Acting>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (order, by) = match accept::<DrainOrder>(&acting.token, &headers, &body, |o| &o.by) {
        Ok(accepted) => accepted,
        Err(r) => return r,
    };
    let by = by.as_str();
    let host: HostId = match order.host.parse() {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("host: {e}")),
    };
    let done = acting
        .admin
        .change(|unit, now| unit.order_drain(now, host))
        .await;
    match done {
        Ok(changed) => {
            tracing::info!(action = "drain", host = %host.short(), by, %peer, changed, "admin action");
            json(
                &serde_json::json!({ "action": "drain", "host": host.to_string(), "changed": changed }),
            )
        }
        Err(AdminChangeError::Refused(e)) => {
            tracing::info!(action = "drain", host = %host.short(), by, %peer, error = %e, "admin action refused");
            let code = match e {
                HostError::UnknownHost(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            error(code, &e.to_string())
        }
        Err(e @ AdminChangeError::NotSaved) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

async fn replication(
    State(acting): State<Acting>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (order, by) = match accept::<ReplicationOrder>(&acting.token, &headers, &body, |o| &o.by) {
        Ok(accepted) => accepted,
        Err(r) => return r,
    };
    let by = by.as_str();
    let (r, w) = (order.replicas, order.write_quorum);
    let done = acting
        .admin
        .change(|unit, now| unit.set_replication(now, r, w))
        .await;
    match done {
        Ok(changed) => {
            tracing::info!(action = "replication", replicas = r, write_quorum = w, by, %peer, changed, "admin action");
            json(&serde_json::json!({
                "action": "replication", "replicas": r, "write_quorum": w, "changed": changed
            }))
        }
        Err(AdminChangeError::Refused(
            e @ (SettingsError::Replicas { .. } | SettingsError::WriteQuorum { .. }),
        )) => {
            tracing::info!(action = "replication", replicas = r, write_quorum = w, by, %peer, error = %e, "admin action refused");
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e @ AdminChangeError::NotSaved) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

/// Every action needs the token, loopback included.
fn authorize(token: &AdminToken, headers: &HeaderMap) -> Result<(), Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p.trim()) => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "every action needs the admin token: `Authorization: Bearer TOKEN` (`dem admin token --data DIR` prints it)",
        )),
    }
}

/// The caller's name for the log: printable, short, not empty.
fn checked_by(by: &str) -> Result<&str, Response> {
    let by = by.trim();
    if by.is_empty() || by.chars().count() > BY_CHARS_MAX || by.chars().any(char::is_control) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("`by` names who orders this: 1 to {BY_CHARS_MAX} printable characters"),
        ));
    }
    Ok(by)
}

fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(code: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_needed_in_the_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let token = super::super::auth::load_or_create_token(dir.path()).unwrap();
        let bearer = format!("Bearer {}", token.as_str());
        let mut h = HeaderMap::new();
        assert!(authorize(&token, &h).is_err(), "no header");
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(authorize(&token, &h).is_err(), "wrong token");
        h.insert(header::AUTHORIZATION, token.as_str().parse().unwrap());
        assert!(authorize(&token, &h).is_err(), "not a bearer header");
        h.insert(header::AUTHORIZATION, bearer.parse().unwrap());
        assert!(authorize(&token, &h).is_ok());
    }

    #[test]
    fn by_must_name_someone_printable_and_short() {
        assert!(checked_by("alice").is_ok());
        assert!(checked_by("  ").is_err());
        assert!(checked_by("a\nforged log line").is_err());
        assert!(checked_by(&"x".repeat(BY_CHARS_MAX + 1)).is_err());
    }
}
