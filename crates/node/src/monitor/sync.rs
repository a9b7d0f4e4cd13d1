//! `/api/sync`: whether every mailbox has R replicas in sync, for the
//! admin console ("wait until every mailbox has R replicas in sync"); and
//! `/api/replicas/{mailbox}`: one mailbox's copies as its holders describe
//! them (`Describe`: vector, sizes and counts, plugins by name and code
//! hash, never a mail or a plugin's config), for inspecting it. Hosts
//! answer `Describe` only to a unit, so the prober speaks as the unit,
//! over its own endpoint.
//!
//! The tables know where replicas are listed but not what they hold, so
//! the unit asks every online host for its replicas' version vectors and
//! state digests (`HostRequest::Replicas`, which shows no content), all at
//! once, each bounded by [`HOST_ASK_TIMEOUT`]. A mailbox is *in sync* when
//! R hosts are listed, all online, and every one of them answered the same
//! vector and digest. A host that does not answer makes its mailboxes not
//! in sync: the report errs towards "wait".
//!
//! A probe costs a round of requests to every host, so only one runs at a
//! time, and callers that waited for it take its report if it started
//! after they asked (it is then as fresh as one of their own would be);
//! the report lists at most [`UNSYNCED_LISTED_MAX`]
//! mailboxes out of sync (it counts them all).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::auth::{self, AdminToken};
use crate::dispatch::StatusView;
use crate::dispatch::service::UnitReader;
use dem_client::Session;
use dem_identity::{HostId, UserId};
use dem_proto::host::ReplicaState;
use dem_proto::{HostRequest, HostResponse, VersionVector};

/// How long one host may take to answer.
pub const HOST_ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest mailbox name or id `/api/replicas/` takes.
const MAILBOX_ARG_MAX: usize = 128;
/// Most out-of-sync mailboxes a report names.
pub const UNSYNCED_LISTED_MAX: usize = 1_000;

/// One mailbox that is not (yet) at R replicas in sync.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unsynced {
    pub user: String,
    pub name: Option<String>,
    pub hosts: Vec<String>,
    /// Why: `"listed on N of R"`, `"a listed host is offline"`, `"host X
    /// did not answer"` or `"replicas differ"`.
    pub reason: String,
}

/// What `/api/sync` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub now_ms: u64,
    /// R in force.
    pub replicas: usize,
    pub mailboxes: usize,
    /// Mailboxes with R listed replicas, all online and equal.
    pub in_sync: usize,
    /// Online hosts that did not answer.
    pub hosts_silent: Vec<String>,
    /// The mailboxes not in sync, at most [`UNSYNCED_LISTED_MAX`].
    pub unsynced: Vec<Unsynced>,
    /// Whether every mailbox is in sync.
    pub all_in_sync: bool,
}

struct Prober {
    reader: UnitReader,
    token: AdminToken,
    session: Arc<Session>,
    /// The last report and when its probe started; the lock also makes
    /// probes run one at a time.
    last: tokio::sync::Mutex<Option<(Instant, Arc<SyncReport>)>>,
}

/// The `/api/sync` and `/api/replicas` routes, to merge into the
/// listener's router; `session` speaks to hosts as the unit
/// (`UnitAdmin::session`).
pub fn router(reader: UnitReader, token: AdminToken, session: Session) -> Router {
    let session = Arc::new(session);
    let prober = Arc::new(Prober {
        reader,
        token,
        session,
        last: tokio::sync::Mutex::new(None),
    });
    Router::new()
        .route("/api/sync", get(sync))
        .route("/api/replicas/{mailbox}", get(replicas))
        .with_state(prober)
}

async fn sync(
    State(prober): State<Arc<Prober>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !auth::allowed(peer.ip(), &prober.token, authorization, None) {
        let body = serde_json::json!({
            "error": "an admin token is needed from off this machine: `Authorization: Bearer TOKEN`"
        });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let report = prober.report().await;
    match serde_json::to_string(&*report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One mailbox's replicas as their hosts describe them (`Describe`),
/// asked at once, and whether their vectors agree. `mailbox` is a name or a user id (hex).
async fn replicas(
    State(prober): State<Arc<Prober>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Path(mailbox): axum::extract::Path<String>,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !auth::allowed(peer.ip(), &prober.token, authorization, None) {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({
                "error": "an admin token is needed from off this machine: `Authorization: Bearer TOKEN`"
            }),
        );
    }
    if mailbox.len() > MAILBOX_ARG_MAX {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "the mailbox is too long" }),
        );
    }
    let found = prober.reader.read(|unit, _| {
        let t = unit.tables();
        let user = t
            .names
            .get(&mailbox)
            .map(|r| r.user)
            .or_else(|| mailbox.parse::<UserId>().ok())?;
        let rec = t.mailboxes.get(&user)?;
        let holders: Vec<(HostId, String)> = rec
            .hosts
            .iter()
            .filter_map(|h| t.hosts.get(h).map(|r| (*h, r.addr.clone())))
            .collect();
        Some((user, holders))
    });
    let Some((user, holders)) = found else {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("mailbox {mailbox} is not known to this unit") }),
        );
    };
    let mut asks = tokio::task::JoinSet::new();
    for (host, addr) in holders {
        let session = prober.session.clone();
        asks.spawn(async move {
            let req = HostRequest::Describe { mailbox: user };
            let got =
                tokio::time::timeout(HOST_ASK_TIMEOUT, session.host_request(&addr, host, &req))
                    .await;
            let vv = match got {
                Ok(Ok(HostResponse::Described(d))) => Ok(d),
                Ok(Ok(other)) => Err(format!("answered {other:?}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {HOST_ASK_TIMEOUT:?}")),
            };
            (host, vv)
        });
    }
    let mut rows = Vec::new();
    while let Some(Ok((host, vv))) = asks.join_next().await {
        rows.push((host, vv));
    }
    rows.sort_by_key(|(h, _)| *h);
    let vectors: Vec<&VersionVector> = rows
        .iter()
        .filter_map(|(_, d)| d.as_ref().ok()?.as_ref().map(|d| &d.vv))
        .collect();
    let agree = vectors.len() == rows.len() && vectors.windows(2).all(|w| w[0] == w[1]);
    let holders: Vec<serde_json::Value> = rows
        .iter()
        .map(|(host, vv)| match vv {
            Ok(Some(d)) => serde_json::json!({
                "host": host.to_hex(),
                "ops": d.vv.total(),
                "vv": d.vv,
                "stats": d.stats,
                "plugins": d.plugins.iter()
                    .map(|(name, hash)| serde_json::json!({ "name": name, "code_hash": hash }))
                    .collect::<Vec<_>>(),
            }),
            Ok(None) => serde_json::json!({ "host": host.to_hex(), "error": "holds no copy" }),
            Err(e) => serde_json::json!({ "host": host.to_hex(), "error": e }),
        })
        .collect();
    answer(
        StatusCode::OK,
        serde_json::json!({
            "user": user.to_hex(),
            "holders": holders,
            "vectors_agree": agree,
        }),
    )
}

fn answer(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl Prober {
    async fn report(&self) -> Arc<SyncReport> {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((started, report)) = last.as_ref()
            && *started >= asked
        {
            return report.clone();
        }
        let started = Instant::now();
        // As the monitor's status: built from a copy, off the lock and off
        // the runtime's workers (it takes a while at 100,000 users).
        let reader = self.reader.clone();
        let built = tokio::task::spawn_blocking(move || {
            let (unit, now) = reader.read(|unit, now| (unit.clone(), now));
            (unit.status(now), unit.replicas())
        })
        .await;
        let Ok((status, r)) = built else {
            // The build panicked, a broken invariant: the last report, or
            // the same build here.
            if let Some((_, report)) = last.as_ref() {
                return report.clone();
            }
            let (status, r) = self
                .reader
                .read(|unit, now| (unit.status(now), unit.replicas()));
            let report = Arc::new(judge(&status, r, &HashMap::new()));
            return report;
        };
        let answers = self.ask_hosts(&status).await;
        let report = Arc::new(judge(&status, r, &answers));
        *last = Some((started, report.clone()));
        report
    }

    /// Every online host's replica states, all asked at once; `None` for a
    /// host that did not answer in time.
    async fn ask_hosts(&self, status: &StatusView) -> HashMap<HostId, Option<Vec<ReplicaState>>> {
        let mut asks = tokio::task::JoinSet::new();
        for h in status.hosts.iter().filter(|h| h.online) {
            let (id, addr) = (h.id, h.addr.clone());
            let session = self.session.clone();
            asks.spawn(async move {
                let answer = tokio::time::timeout(
                    HOST_ASK_TIMEOUT,
                    session.host_request(&addr, id, &HostRequest::Replicas),
                )
                .await;
                match answer {
                    Ok(Ok(HostResponse::Replicas(list))) => (id, Some(list)),
                    _ => (id, None),
                }
            });
        }
        let mut out = HashMap::new();
        while let Some(done) = asks.join_next().await {
            if let Ok((id, list)) = done {
                out.insert(id, list);
            }
        }
        out
    }
}

/// The report from the tables' view and the hosts' answers.
fn judge(
    status: &StatusView,
    r: usize,
    answers: &HashMap<HostId, Option<Vec<ReplicaState>>>,
) -> SyncReport {
    let online: HashMap<HostId, bool> = status.hosts.iter().map(|h| (h.id, h.online)).collect();
    let held: HashMap<(HostId, UserId), &ReplicaState> = answers
        .iter()
        .filter_map(|(h, list)| list.as_ref().map(|l| (h, l)))
        .flat_map(|(h, list)| list.iter().map(move |s| ((*h, s.user), s)))
        .collect();
    let mut in_sync = 0;
    let mut unsynced_count = 0;
    let mut unsynced = Vec::new();
    let mut mailboxes = 0;
    for u in &status.users {
        if u.hosts.is_empty() {
            continue;
        }
        mailboxes += 1;
        let reason = mailbox_reason(u.user, &u.hosts, r, &online, answers, &held);
        match reason {
            None => in_sync += 1,
            Some(reason) => {
                unsynced_count += 1;
                if unsynced.len() < UNSYNCED_LISTED_MAX {
                    unsynced.push(Unsynced {
                        user: u.user.to_hex(),
                        name: u.name.clone(),
                        hosts: u.hosts.iter().map(|h| h.to_hex()).collect(),
                        reason,
                    });
                }
            }
        }
    }
    let hosts_silent = answers
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|(h, _)| h.to_hex())
        .collect();
    SyncReport {
        now_ms: status.now_ms,
        replicas: r,
        mailboxes,
        in_sync,
        hosts_silent,
        all_in_sync: unsynced_count == 0,
        unsynced,
    }
}

/// Why one mailbox is not in sync, or `None` if it is.
fn mailbox_reason(
    user: UserId,
    hosts: &[HostId],
    r: usize,
    online: &HashMap<HostId, bool>,
    answers: &HashMap<HostId, Option<Vec<ReplicaState>>>,
    held: &HashMap<(HostId, UserId), &ReplicaState>,
) -> Option<String> {
    if hosts.len() != r {
        return Some(format!("listed on {} of {r}", hosts.len()));
    }
    if hosts
        .iter()
        .any(|h| !online.get(h).copied().unwrap_or(false))
    {
        return Some("a listed host is offline".into());
    }
    let mut first: Option<&ReplicaState> = None;
    for h in hosts {
        if !matches!(answers.get(h), Some(Some(_))) {
            return Some(format!("host {} did not answer", h.short()));
        }
        let Some(state) = held.get(&(*h, user)) else {
            return Some(format!("host {} holds no copy yet", h.short()));
        };
        if state.state_digest.is_none() {
            return Some(format!("host {} could not digest its copy", h.short()));
        }
        match first {
            None => first = Some(state),
            Some(f) if f.vv == state.vv && f.state_digest == state.state_digest => {}
            Some(_) => return Some("replicas differ".into()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::VersionVector;
    use dem_proto::dispatch::status::{HostStatus, Summary, UserStatus};

    fn host(b: u8, online: bool) -> HostStatus {
        HostStatus {
            id: HostId([b; 32]),
            addr: format!("127.0.0.1:{}", 4000 + u16::from(b)),
            online,
            state: dem_proto::dispatch::tables::HostState::Active,
            epoch: dem_identity::Epoch(1),
            capacity: 10,
            load: 1,
            lease_expires_ms: 0,
            last_seen_ms: 0,
            mailboxes: Vec::new(),
            attachments: 0,
            operator: None,
        }
    }

    fn user(b: u8, hosts: &[u8]) -> UserStatus {
        UserStatus {
            user: UserId([b; 32]),
            name: Some(format!("u{b}")),
            names: vec![format!("u{b}")],
            online: false,
            home: None,
            hosts: hosts.iter().map(|h| HostId([*h; 32])).collect(),
            epoch: dem_identity::Epoch(1),
        }
    }

    fn state(u: u8, ops: u64, digest: u8) -> ReplicaState {
        let mut vv = VersionVector::new();
        for _ in 0..ops {
            let op = vv.next_of(9);
            vv.record(op);
        }
        ReplicaState {
            user: UserId([u; 32]),
            vv,
            state_digest: Some([digest; 32]),
            held_back: false,
        }
    }

    #[test]
    fn in_sync_needs_r_listed_online_answering_and_equal() {
        let status = StatusView {
            now_ms: 1,
            unit: dem_identity::DispatchId([0; 32]),
            summary: Summary::default(),
            units: Vec::new(),
            hosts: vec![host(1, true), host(2, true), host(3, true), host(4, false)],
            users: vec![
                user(10, &[1, 2]), // in sync
                user(11, &[1, 2]), // differ
                user(12, &[1]),    // 1 of 2
                user(13, &[1, 4]), // offline holder
                user(14, &[1, 3]), // host 3 silent
                user(15, &[]),     // no mailbox
            ],
            attachments: Vec::new(),
        };
        let mut answers = HashMap::new();
        answers.insert(
            HostId([1; 32]),
            Some(vec![
                state(10, 2, 7),
                state(11, 2, 7),
                state(12, 1, 1),
                state(13, 1, 1),
                state(14, 1, 1),
            ]),
        );
        answers.insert(
            HostId([2; 32]),
            Some(vec![state(10, 2, 7), state(11, 3, 8)]),
        );
        answers.insert(HostId([3; 32]), None);
        let report = judge(&status, 2, &answers);
        assert_eq!(report.mailboxes, 5);
        assert_eq!(report.in_sync, 1);
        assert!(!report.all_in_sync);
        let reasons: Vec<&str> = report.unsynced.iter().map(|u| u.reason.as_str()).collect();
        assert_eq!(reasons[0], "replicas differ");
        assert_eq!(reasons[1], "listed on 1 of 2");
        assert_eq!(reasons[2], "a listed host is offline");
        assert!(reasons[3].contains("did not answer"), "{reasons:?}");
        assert_eq!(report.hosts_silent.len(), 1);
    }
}
