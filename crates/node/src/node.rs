//! The host daemon (`dem host`): joins the backbone, renews its lease,
//! holds the mailboxes and attachments the dispatch units place on it, and
//! serves `HostRequest`s from anyone: owners' signed calls, sealed mail,
//! attachment transfers.
//!
//! - `verify`: the checks on requests, sans-IO and unit-tested;
//! - `serve`: one handler per request kind;
//! - `transfer`: attachment chunk streams in and out;
//! - `attachment_keeper`: R replicas per attachment, regenerated and
//!   collected; `attachment_refs`: renewing what this host's mails reference;
//! - `migrate` (source) and `migrate_in` (target): mailboxes moving to and
//!   from other hosts (`Migrate`, `MissingCode`, `Pull`), driving
//!   `dem_core::migration`'s state machines; `move_stream`: the bytes of a
//!   move; `delta_move`: a move onto an older copy that ships only the
//!   missing ops (`Holds`, `MoveDelta`); `traffic`: the replication bytes
//!   received (`Traffic`);
//! - `home`: an owner's host pulling its owner's mailbox home;
//! - `leave`: the graceful leave that moves everything off.
//!
//! The dispatch side of every exchange goes through [`Session`], the same
//! client users have, over the host's own endpoint and key, so the
//! dispatch unit sees the host's key as the connection's peer key.

mod attachment_keeper;
mod attachment_refs;
mod delta_move;
mod grant;
mod handback;
mod home;
mod keeper;
mod leave;
mod migrate;
mod migrate_in;
mod move_stream;
mod plugin_code;
mod pull;
mod rebalance;
mod repair;
mod serve;
mod sync;
mod sync_serve;
mod traffic;
mod transfer;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use leave::LeaveError;
pub use migrate::{MIGRATE_TIMEOUT, MigrateError};
use tracing::Instrument as _;

use crate::dispatch::ObjectRef;
use crate::mailbox::{Mailboxes, MailboxesConfig};
use dem_client::{Session, SessionError, identity_of};
use dem_identity::{DEFAULT_WINDOW_MS, Epoch, HostId, MAX_REMEMBERED_NONCES, ReplayGuard};
use dem_net::{Endpoint, TransportConfig};
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest};
use dem_runtime::RuntimeConfig;
use dem_store::attachments::AttachmentStore;

/// How a host runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on, and the one announced to dispatch units.
    pub listen: SocketAddr,
    /// Dispatch units to join through.
    pub backbone: Vec<String>,
    /// Where mailboxes, code, attachments and the host key live.
    pub data: PathBuf,
    /// Lease renewal interval.
    pub heartbeat: Duration,
    /// Mailboxes this host offers to hold.
    pub capacity: u64,
    /// The owner's user key (`--home`): this host is their home.
    pub owner: Option<Arc<dem_identity::KeyPair>>,
    /// How often the keeper checks every replica set.
    pub keeper: Duration,
    /// Guest limits and the instance pool.
    pub runtime: RuntimeConfig,
    /// Hibernation and queueing of the mailboxes.
    pub mailboxes: MailboxesConfig,
    /// Where to serve `/metrics` over HTTP; off when `None`.
    pub http: Option<SocketAddr>,
    /// Who runs this host, shown on the monitor (`--operator`).
    pub operator: Option<String>,
    /// This process's log events, shipped to the dispatch units
    /// (`crate::logs`); none shipped when `None`.
    pub logs: Option<crate::logs::LogFeed>,
}

/// Attempts at joining the backbone before the host gives up.
const JOIN_ATTEMPTS: u32 = 20;
const _: () = assert!(JOIN_ATTEMPTS >= 1, "a host tries to join at least once");
/// Pause after a failed attempt at joining.
const JOIN_RETRY: Duration = Duration::from_millis(250);

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory or the host key in it could not be created or
    /// read.
    #[error("host key in {path}: {source}")]
    Key {
        path: String,
        source: dem_identity::KeyError,
    },
    /// The mailbox stores or the runtime could not be opened.
    #[error("opening mailboxes: {0}")]
    Mailboxes(#[from] crate::mailbox::registry::OpenError),
    /// The attachment store could not be opened.
    #[error("opening attachments: {0}")]
    Attachments(#[from] dem_store::attachments::OpenError),
    /// The host's key could not become a TLS identity, or the session to
    /// the backbone could not be set up.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The endpoint could not be bound, or its address read.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: dem_net::NetError,
    },
    /// Every attempt at joining the backbone failed; the last failure.
    #[error("joining the backbone: {0}")]
    Join(#[source] JoinError),
    /// The HTTP listener (`--http`) could not bind.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why one attempt at joining the backbone failed ([`Node::join`]).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No dispatch unit answered, or one refused.
    #[error(transparent)]
    Dispatch(#[from] SessionError),
    /// A unit answered something else than a lease.
    #[error("unexpected answer {0:?}")]
    Unexpected(Box<DispatchResponse>),
}

/// The running host's shared state.
pub struct Node {
    id: HostId,
    addr: String,
    mailboxes: Arc<Mailboxes>,
    attachments: AttachmentStore,
    session: Session,
    /// Owner calls seen recently, so a captured call cannot be replayed.
    replay: Mutex<ReplayGuard>,
    /// The owner whose home this host is, if any.
    owner: Option<Arc<dem_identity::KeyPair>>,
    /// Who runs this host, sent with every join.
    operator: Option<String>,
    /// Replica listings and the links that push ops to peer replicas.
    replication: sync::Replication,
    keeper_state: Mutex<keeper::KeeperState>,
    rebalance_pacer: Mutex<rebalance::RebalancePacer>,
    /// Set (and notified) when a lease answer orders this host drained:
    /// `run` then leaves as on SIGTERM.
    drain_ordered: std::sync::atomic::AtomicBool,
    drain: tokio::sync::Notify,
    /// Hosts the dispatch unit knows, for taking ops handed back.
    known_hosts: Mutex<handback::KnownHosts>,
    /// Attachment copies in flight, unlisted and freshly arrived.
    attachment_keeper: Mutex<attachment_keeper::AttachmentKeeperState>,
    /// What this host's mailboxes reference, for the reference leases.
    attachment_refs: Mutex<crate::replica::attachment::RefTracker>,
    /// The network's attachment grace period (from the lease), in ms.
    attachment_grace_ms: std::sync::atomic::AtomicU64,
    /// Replication bytes received, for `Traffic`.
    traffic: traffic::Traffic,
    /// Requests, refusals and deliveries, for `/metrics`.
    metrics: crate::metrics::HostMetrics,
    /// This node, for tasks it spawns on its own behalf.
    me: std::sync::Weak<Node>,
}

impl Node {
    /// Loads or creates the host key, opens the stores and binds.
    pub fn start(config: &NodeConfig) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(&config.data).map_err(|e| NodeError::Key {
            path: config.data.display().to_string(),
            source: dem_identity::KeyError::Io {
                path: config.data.clone(),
                source: e,
            },
        })?;
        let home = dem_identity::Home::new(&config.data);
        let (key, _) = home
            .load_or_create_key(dem_identity::KeyRole::Host)
            .map_err(|source| NodeError::Key {
                path: config.data.display().to_string(),
                source,
            })?;
        let key = Arc::new(key);
        let mailboxes = Mailboxes::open(
            &config.data,
            config.runtime.clone(),
            config.mailboxes.clone(),
        )?;
        let attachments = AttachmentStore::open(&config.data)?;
        let endpoint = Endpoint::bind_with(
            config.listen,
            identity_of(&key)?,
            TransportConfig::default(),
        )
        .map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = endpoint
            .local_addr()
            .map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?
            .to_string();
        let backbone = config.backbone.iter().map(|a| (a.clone(), None)).collect();
        let session = Session::with_endpoint(key.clone(), endpoint, backbone)?;
        let metrics = crate::metrics::HostMetrics::new()
            .with_log_drops(config.logs.as_ref().map(|f| f.dropped_counter()));
        if let Some(store) = mailboxes.store() {
            // A fresh store has no hook yet; the result says nothing new.
            let _ = store.on_commit(metrics.fsync_hook());
        }
        Ok(Arc::new_cyclic(|me| Self {
            id: key.host_id(),
            addr,
            mailboxes,
            attachments,
            session,
            replay: Mutex::new(ReplayGuard::new(DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES)),
            owner: config.owner.clone(),
            operator: config.operator.clone(),
            replication: sync::Replication::new(),
            keeper_state: Mutex::new(keeper::KeeperState::default()),
            rebalance_pacer: Mutex::new(rebalance::RebalancePacer::default()),
            drain_ordered: Default::default(),
            drain: tokio::sync::Notify::new(),
            known_hosts: Mutex::default(),
            attachment_keeper: Mutex::default(),
            attachment_refs: Mutex::default(),
            attachment_grace_ms: crate::dispatch::limits::ATTACHMENT_GRACE_MS.into(),
            traffic: traffic::Traffic::default(),
            metrics,
            me: me.clone(),
        }))
    }

    pub fn id(&self) -> HostId {
        self.id
    }

    /// `/metrics` as of now: the counters, with what the endpoint and the
    /// replica links hold read for this scrape.
    fn render_metrics(&self) -> String {
        let endpoint = self.session.endpoint();
        let stats = endpoint.connection_stats();
        let (replica_lag_ops, replica_lag_max_ops) = self.replication.lag();
        let host = crate::metrics::HostSample {
            connections_open: endpoint.open_connections(),
            connections_refused: dem_net::RefusalReason::ALL
                .iter()
                .map(|r| (r.label(), stats.refused(*r)))
                .collect(),
            replica_lag_ops,
            replica_lag_max_ops,
        };
        self.metrics.render(&self.mailboxes, &host)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn load(&self) -> u64 {
        self.mailboxes.list().map_or(0, |l| l.len() as u64)
    }

    /// Joins the backbone, retrying for a while if no unit answers yet.
    pub async fn join(&self, capacity: u64) -> Result<(), NodeError> {
        let req = DispatchRequest::Join {
            addr: self.addr.clone(),
            capacity,
            load: self.load(),
            operator: self.operator.clone(),
        };
        let mut attempts = 0;
        loop {
            let failed = match self.session.dispatch(&req).await {
                Ok(DispatchResponse::Lease {
                    units,
                    replicas,
                    write_quorum,
                    attachment_grace_ms,
                    ..
                }) => {
                    self.session.learn_units(&units);
                    self.learn_quorum(replicas, write_quorum);
                    self.learn_attachment_grace(attachment_grace_ms);
                    return Ok(());
                }
                Ok(DispatchResponse::Done) => return Ok(()),
                Ok(other) => JoinError::Unexpected(Box::new(other)),
                Err(e) => JoinError::Dispatch(e),
            };
            tokio::time::sleep(JOIN_RETRY).await;
            attempts += 1;
            if attempts == JOIN_ATTEMPTS {
                return Err(NodeError::Join(failed));
            }
        }
    }

    /// Renews the lease every `every`; joins again if a unit forgot us.
    pub async fn heartbeat(self: Arc<Self>, every: Duration, capacity: u64) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let req = DispatchRequest::Heartbeat { load: self.load() };
            let answer = self.session.dispatch(&req).await;
            if let Ok(DispatchResponse::Lease {
                replicas,
                write_quorum,
                attachment_grace_ms,
                draining,
                ..
            }) = &answer
            {
                self.learn_quorum(*replicas, *write_quorum);
                self.learn_attachment_grace(*attachment_grace_ms);
                if *draining
                    && !self
                        .drain_ordered
                        .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::warn!(host = %self.id.short(), "an administrator ordered this host drained: moving everything away, then leaving");
                    self.drain.notify_one();
                }
            }
            if let Err(e) = answer {
                tracing::warn!(host = %self.id.short(), error = %e, "heartbeat failed; joining again");
                if let Err(e) = self.join(capacity).await {
                    tracing::warn!(host = %self.id.short(), error = %e, "rejoin failed");
                }
            }
        }
    }

    /// Takes R and W from a lease answer (bounded, whatever a unit says).
    fn learn_quorum(&self, replicas: usize, write_quorum: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = replicas.clamp(1, crate::dispatch::limits::MAX_HOSTS_PER_OBJECT);
        self.replication.replicas.store(r, Relaxed);
        self.replication
            .write_quorum
            .store(write_quorum.clamp(1, r), Relaxed);
    }

    /// Takes the attachment grace period from a lease answer (at least a
    /// second, so renewals never spin).
    fn learn_attachment_grace(&self, grace_ms: u64) {
        self.attachment_grace_ms
            .store(grace_ms.max(1_000), std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells the dispatch units this host alone holds `object` at `epoch`.
    async fn location_update(&self, object: ObjectRef, epoch: Epoch) -> Result<(), SessionError> {
        let req = DispatchRequest::LocationUpdate {
            object,
            hosts: vec![self.id],
            epoch,
        };
        self.session.dispatch(&req).await.map(drop)
    }

    /// Serves requests until the endpoint closes.
    pub async fn serve(self: Arc<Self>) {
        let endpoint = self.session.endpoint().clone();
        dem_net::serve(endpoint, move |req: HostRequest, ex| {
            let node = self.clone();
            async move { node.handle(req, ex).await }
        })
        .await;
    }

    /// Stops the mailboxes (snapshots, settles commits) and closes.
    pub async fn shutdown(&self) {
        self.mailboxes.shutdown().await;
        self.session.close().await;
    }
}

/// Runs a host until Ctrl-C, SIGTERM or an ordered drain (then it leaves
/// gracefully first). `on_ready` gets the host id and
/// address once it serves and has joined.
pub async fn run(
    config: NodeConfig,
    on_ready: impl FnOnce(&HostId, &str),
) -> Result<(), NodeError> {
    let node = Node::start(&config)?;
    let span = tracing::info_span!("host", host = %node.id.short());
    async {
        // Compiling the mailbox component takes most of a second (a cached
        // artifact loads in milliseconds); doing it lazily would stall the
        // first mailbox that arrives or wakes here, a move included.
        let boxes = node.mailboxes.clone();
        match tokio::task::spawn_blocking(move || boxes.prepare_builtin()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot prepare the built-in components"),
            Err(e) => tracing::warn!(error = %e, "preparing the built-in components failed"),
        }
        let server = tokio::spawn(node.clone().serve());
        let http = match config.http {
            Some(addr) => {
                let me = node.clone();
                let render: crate::http::Render = Arc::new(move || me.render_metrics());
                let (bound, serving) = crate::http::bind(addr, render)
                    .await
                    .map_err(|source| NodeError::Http { addr, source })?;
                tracing::info!(%bound, "serving /metrics");
                Some(tokio::spawn(serving))
            }
            None => None,
        };
        node.join(config.capacity).await?;
        on_ready(&node.id, &node.addr);
        let beat = tokio::spawn(node.clone().heartbeat(config.heartbeat, config.capacity));
        let keeper = tokio::spawn(node.clone().keep(config.keeper));
        let attachment_keeper = tokio::spawn(node.clone().keep_attachments(config.keeper));
        let attachment_refs = tokio::spawn(node.clone().renew_attachment_refs(config.keeper));
        let shipping = config.logs.clone().map(|feed| {
            let node = node.clone();
            tokio::spawn(crate::logs::ship(feed, move |events| {
                let node = node.clone();
                async move {
                    let req = DispatchRequest::Logs { events };
                    node.session.dispatch(&req).await.is_ok()
                }
            }))
        });
        let homing = node.owner.clone().map(|owner| {
            let node = node.clone();
            tokio::spawn(async move { node.go_home(&owner).await })
        });
        tokio::select! {
            _ = wait_for_signal() => tracing::info!("leaving"),
            _ = node.drain.notified() => tracing::info!("leaving: drain ordered"),
        }
        // Leaving now either way: a lease answer that says "draining" (as
        // every answer to a leaving host does) is no news any more.
        node.drain_ordered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = homing {
            h.abort();
        }
        // The leave moves each attachment copy itself.
        attachment_keeper.abort();
        // Keep serving and heartbeating while everything moves off: queued
        // calls must be answered "moved", and the lease must not lapse.
        if let Err(e) = node.leave().await {
            tracing::error!(error = %e, "the leave did not finish cleanly");
        }
        tracing::info!("stopping");
        keeper.abort();
        attachment_refs.abort();
        beat.abort();
        if let Some(shipping) = shipping {
            shipping.abort();
        }
        node.shutdown().await;
        server.abort();
        if let Some(http) = http {
            http.abort();
        }
        Ok(())
    }
    .instrument(span)
    .await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
