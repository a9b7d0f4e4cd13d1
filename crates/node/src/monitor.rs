//! The dispatch unit's HTTP listener (`dem dispatch --http ADDR`, off
//! unless given): the monitor page, its JSON API and `/metrics`.
//!
//! - `/`: the monitor page, plain HTML, CSS and JS compiled into the binary
//!   (`monitor/assets/`), with no build step and nothing fetched from
//!   elsewhere. It renders what `/api/events` pushes.
//! - `/api/status`: the whole [`StatusView`], as `dem admin status` gets it.
//! - `/api/view?q=&page=&size=`: one page of each list, searched
//!   ([`view::page`]); `/api/events` (same parameters): server-sent
//!   events, each a full page of the moment, on connect and then every
//!   [`TICK`]. A watcher only ever gets the latest snapshot (a `watch`
//!   channel), so a slow or lagging browser skips states instead of
//!   building a backlog; a reconnect starts with a full one.
//! - `/api/inspect/{host|mailbox|attachment|unit}/{id}`: what the tables
//!   know about one object ([`view::inspect`]), never mail content;
//! - `/api/logs`: the collected log, filtered, by cursor ([`logs`]).
//! - `/metrics`: a few gauges of the tables, in the Prometheus text format;
//! - the admin console: `POST /api/act/...` ([`act`], always behind the
//!   token) and `/api/sync` ([`sync`], every mailbox at R in sync?).
//!
//! Loopback peers need nothing; anyone else needs the unit's admin token
//! ([`auth`]). The status is computed once per tick for all watchers, and
//! only while someone watches.

pub mod act;
pub mod auth;
pub mod logs;
pub mod sync;
pub mod view;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};

use crate::dispatch::StatusView;
use crate::dispatch::service::{UnitAdmin, UnitReader};
use auth::AdminToken;
use view::{InspectError, Kind, PageQuery};

/// How often watchers get a fresh snapshot.
pub const TICK: Duration = Duration::from_millis(500);
/// Most event streams open at once; more are refused with 503.
pub const WATCHERS_MAX: usize = 64;
/// Most recent warnings and errors an inspected host shows.
const RECENT_ERRORS_MAX: usize = 20;
/// Longest id accepted in an inspect path.
const ID_MAX: usize = 128;

const INDEX_HTML: &str = include_str!("monitor/assets/index.html");
const APP_JS: &str = include_str!("monitor/assets/app.js");
const STYLE_CSS: &str = include_str!("monitor/assets/style.css");

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error(transparent)]
    Session(#[from] crate::dispatch::service::UnitSessionError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers share.
struct Monitor {
    reader: UnitReader,
    token: AdminToken,
    /// The latest status, for every watcher; `None` until first computed.
    latest: watch::Sender<Option<Arc<StatusView>>>,
    /// When the latest view was built, and how long that took.
    built: std::sync::Mutex<Option<(Instant, Duration)>>,
    watchers: Arc<Semaphore>,
    metrics: UnitMetrics,
}

impl Monitor {
    /// The status of now (or of less than a [`TICK`] ago), handed to every
    /// watcher. At 100,000 users building it takes a good part of a
    /// second, so it is built from a copy of the unit, outside the lock
    /// every request takes, on a blocking thread rather than a runtime
    /// worker; and reused within a tick however many ask.
    async fn refresh(self: &Arc<Self>) -> Arc<StatusView> {
        if let Some((at, view)) = self.computed()
            && at.elapsed() < TICK
        {
            return view;
        }
        let me = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let (unit, now) = me.reader.read(|unit, now| (unit.clone(), now));
            let view = Arc::new(unit.status(now));
            (view, started.elapsed())
        })
        .await;
        let (view, took) = match built {
            Ok(built) => built,
            // The build panicked, a broken invariant: keep the last view
            // if there is one, else build it here (and fail the same way).
            Err(_) => match self.computed() {
                Some((_, v)) => return v,
                None => return Arc::new(self.reader.read(|unit, now| unit.status(now))),
            },
        };
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), took));
        self.latest.send_replace(Some(view.clone()));
        view
    }

    /// The latest view and when it was built.
    fn computed(&self) -> Option<(Instant, Arc<StatusView>)> {
        let at = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(at, _)| at)?;
        self.latest.borrow().clone().map(|v| (at, v))
    }

    /// How long to wait before the next tick: [`TICK`], or four times what
    /// the last build took, so watching never costs the unit more than a
    /// fifth of a core however large the network.
    fn next_tick(&self) -> Duration {
        let took = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Duration::ZERO, |(_, took)| took);
        TICK.max(took * 4)
    }
}

/// Creates the admin token if need be, binds `addr` and returns the bound
/// address and the server, to spawn.
pub async fn bind(
    addr: SocketAddr,
    reader: UnitReader,
    admin: UnitAdmin,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), MonitorError> {
    let token = auth::load_or_create_token(reader.data_dir())?;
    let console = sync::router(reader.clone(), token.clone(), admin.session()?)
        .merge(act::router(admin, token.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MonitorError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MonitorError::Bind { addr, source })?;
    let monitor = Arc::new(Monitor {
        reader,
        token,
        latest: watch::Sender::new(None),
        built: std::sync::Mutex::new(None),
        watchers: Arc::new(Semaphore::new(WATCHERS_MAX)),
        metrics: UnitMetrics::new(),
    });
    let app = router(monitor.clone()).merge(console);
    let server = async move {
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        );
        tokio::select! {
            r = serve => if let Err(e) = r {
                tracing::error!("the HTTP listener stopped: {e}");
            },
            () = ticker(monitor) => {}
        }
    };
    Ok((bound, server))
}

fn router(monitor: Arc<Monitor>) -> Router {
    let guarded = Router::new()
        .route("/", get(index))
        .route("/api/status", get(status))
        .route("/api/view", get(page))
        .route("/api/events", get(events))
        .route("/api/inspect/{kind}/{id}", get(inspect))
        .route(
            "/api/logs",
            get(|State(m): State<Arc<Monitor>>, raw: RawQuery| async move {
                logs::logs(State(m.reader.clone()), raw).await
            }),
        )
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(monitor.clone(), guard));
    // The page's code and style name nothing of the network: no token.
    Router::new()
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css", STYLE_CSS) }),
        )
        .merge(guarded)
        .with_state(monitor)
}

/// Recomputes the status every tick while someone watches (a longer tick
/// when building it is slow: [`Monitor::next_tick`]).
async fn ticker(monitor: Arc<Monitor>) {
    loop {
        tokio::time::sleep(monitor.next_tick()).await;
        if monitor.latest.receiver_count() > 0 {
            monitor.refresh().await;
        }
    }
}

/// The access rule of [`auth::allowed`], before every guarded route.
async fn guard(
    State(monitor): State<Arc<Monitor>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let query_token = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix("token="))
            .map(str::to_owned)
    });
    if auth::allowed(
        peer.ip(),
        &monitor.token,
        authorization,
        query_token.as_deref(),
    ) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "an admin token is needed from off this machine: `Authorization: Bearer TOKEN` or ?token=TOKEN (`dem admin token --data DIR` prints it)",
        )
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(code: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    // The page may carry the token in its URL: keep it out of referrers.
    if let Ok(v) = "no-referrer".parse() {
        response.headers_mut().insert(header::REFERRER_POLICY, v);
    }
    response
}

async fn status(State(monitor): State<Arc<Monitor>>) -> Response {
    json_response(&*monitor.refresh().await)
}

async fn page(State(monitor): State<Arc<Monitor>>, RawQuery(raw): RawQuery) -> Response {
    match PageQuery::parse(raw.as_deref()) {
        Ok(query) => json_response(&view::page(&*monitor.refresh().await, &query)),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn events(State(monitor): State<Arc<Monitor>>, RawQuery(raw): RawQuery) -> Response {
    let query = match PageQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Ok(permit) = monitor.watchers.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{WATCHERS_MAX} watchers already; try again later"),
        );
    };
    let mut rx = monitor.latest.subscribe();
    // A full snapshot on connect, fresh rather than up to a tick old.
    monitor.refresh().await;
    rx.mark_changed();
    let state = (rx, query, permit, String::new());
    let stream =
        futures_util::stream::unfold(state, |(mut rx, query, permit, mut last)| async move {
            loop {
                // The sender lives as long as the server: an error is its end.
                rx.changed().await.ok()?;
                let Some(view) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let data = view::page(&view, &query).to_string();
                // Identical pages are not sent twice; the keep-alive says the
                // stream is still up.
                if data == last {
                    continue;
                }
                last.clone_from(&data);
                let event = Event::default().event("snapshot").data(data);
                return Some((Ok::<_, Infallible>(event), (rx, query, permit, last)));
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

async fn inspect(
    State(monitor): State<Arc<Monitor>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            "inspect host, mailbox, attachment or unit",
        );
    };
    if id.len() > ID_MAX {
        return error(StatusCode::BAD_REQUEST, "the id is too long");
    }
    match monitor
        .reader
        .read(|unit, now| view::inspect(unit, now, kind, &id))
    {
        Ok(mut v) => {
            // A host's recent warnings and errors, from the collected log.
            if kind == Kind::Host
                && let Some(host) = v["id"].as_str()
            {
                let filter = dem_proto::logs::LogFilter {
                    component: Some(host.to_owned()),
                    level: Some(dem_proto::logs::Level::Warn),
                    ..Default::default()
                };
                let page = monitor.reader.logs().page(&filter, None, RECENT_ERRORS_MAX);
                v["recent_errors"] = serde_json::to_value(page.events).unwrap_or_default();
            }
            json_response(&v)
        }
        Err(e @ InspectError::BadId(_)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ InspectError::NotFound(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    let text = monitor
        .reader
        .read(|unit, now| monitor.metrics.render(unit, now));
    (
        [(header::CONTENT_TYPE, crate::http::METRICS_CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The unit's gauges, read from the tables at each scrape.
struct UnitMetrics {
    registry: Registry,
    units: Gauge,
    hosts_known: Gauge,
    hosts_online: Gauge,
    mailboxes: Gauge,
    users_online: Gauge,
    attachments: Gauge,
}

impl UnitMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("dem");
        let m = UnitMetrics {
            registry: Registry::default(),
            units: Gauge::default(),
            hosts_known: Gauge::default(),
            hosts_online: Gauge::default(),
            mailboxes: Gauge::default(),
            users_online: Gauge::default(),
            attachments: Gauge::default(),
        };
        registry.register("dispatch_units", "Dispatch units known", m.units.clone());
        registry.register("hosts_known", "Hosts in the tables", m.hosts_known.clone());
        registry.register(
            "hosts_online",
            "Hosts whose lease holds",
            m.hosts_online.clone(),
        );
        registry.register(
            "mailboxes",
            "Mailboxes located on at least one host",
            m.mailboxes.clone(),
        );
        registry.register(
            "users_online",
            "Users whose home host is online",
            m.users_online.clone(),
        );
        registry.register(
            "attachments",
            "Attachments located on at least one host",
            m.attachments.clone(),
        );
        UnitMetrics { registry, ..m }
    }

    fn render(&self, unit: &crate::dispatch::DispatchUnit, now_ms: u64) -> String {
        let t = unit.tables();
        let online = |h: &dem_identity::HostId| t.hosts.get(h).is_some_and(|r| r.is_online(now_ms));
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.units.set(count(t.units.len()));
        self.hosts_known.set(count(t.hosts.len()));
        self.hosts_online.set(count(
            t.hosts.values().filter(|r| r.is_online(now_ms)).count(),
        ));
        self.mailboxes.set(count(
            t.mailboxes.values().filter(|r| !r.hosts.is_empty()).count(),
        ));
        self.users_online.set(count(
            t.mailboxes
                .values()
                .filter(|r| r.home.as_ref().is_some_and(online))
                .count(),
        ));
        self.attachments.set(count(
            t.attachments
                .values()
                .filter(|r| !r.hosts.is_empty())
                .count(),
        ));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
