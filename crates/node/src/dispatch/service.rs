//! `DispatchService`: the async driver that runs a sans-IO [`DispatchUnit`]
//! as a network service.
//!
//! It owns the unit's key (`DIR/dispatch.key`) and QUIC endpoint, answers
//! every [`DispatchRequest`] ([`super::handle`] does the checks and the call
//! into the unit, under one lock that is never held across an await), feeds
//! the unit the wall clock, keeps the tables durable in `DIR/tables.bin`
//! ([`super::persist`]) and pushes every change to the peer units
//! ([`super::peers`]).
//!
//! A request that changed the tables is answered only once they are on
//! disk: a writer task saves the latest tables after each change. Changes
//! made while a write is under way go out together in the next one (group
//! commit), and each request waits for a write that includes its change.
//! The writer never sleeps between writes: a lone change is on disk after
//! one write, and under load the batch grows with the write time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

mod admin;
pub use admin::{AdminChangeError, UnitAdmin, UnitSessionError};

use super::admission::Network;
use super::handle::State;
use super::persist::{self, PersistError};
use super::{DispatchTables, DispatchUnit, Limits, UnitError, Update, UpdateError, peers};
use dem_identity::{DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES};
use dem_identity::{DispatchId, Home, KeyError, KeyPair, KeyRole, ReplayGuard};
use dem_net::{self as net, Endpoint, Exchange, NetError, TransportConfig, WireError};
use dem_proto::{DispatchRequest, MESSAGE_BYTES_MAX};

/// How long a request waits for its change to be saved before it is
/// answered with an error instead.
pub const PERSIST_WAIT: Duration = Duration::from_secs(10);
/// How often the unit re-announces itself to its peers.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);

/// How to run a unit.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Where to listen (`IP:PORT`; port 0 picks one). The bound address is
    /// what the unit announces, so it must be reachable by peers and hosts.
    pub listen: SocketAddr,
    /// Holds `dispatch.key` and `tables.bin`; created if missing.
    pub data_dir: PathBuf,
    /// Units to introduce this one to on start (`IP:PORT`).
    pub peers: Vec<String>,
    /// The network key that admits units (`dispatch::admission`); created
    /// if missing. `None`: `network.key` in the data dir.
    pub network_key: Option<PathBuf>,
    pub limits: Limits,
    pub transport: TransportConfig,
    /// Events the unit keeps in its log ring (`--log-ring`).
    pub log_ring: usize,
    /// The unit's own log events, put in its ring with the hosts' ones;
    /// `None`: only the hosts' ones.
    pub logs: Option<crate::logs::LogFeed>,
}

impl ServiceConfig {
    /// Default limits and transport settings.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServiceConfig {
            listen,
            data_dir,
            peers: Vec::new(),
            network_key: None,
            limits: Limits::default(),
            transport: TransportConfig {
                request_bytes_max: MESSAGE_BYTES_MAX,
                ..TransportConfig::default()
            },
            log_ring: dem_core::logs::LOG_RING_DEFAULT,
            logs: None,
        }
    }
}

/// Why a unit could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data dir could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The unit's key could not be read or created.
    #[error("dispatch key: {0}")]
    Key(#[from] KeyError),
    /// The unit's key did not decode as an ed25519 signing key.
    #[error("cannot decode the dispatch key: {0}")]
    KeyDecode(#[source] ed25519_dalek::pkcs8::Error),
    /// The endpoint could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The saved tables could not be read or the first write failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The saved tables hold a record the unit refuses.
    #[error("saved tables refused: {0}")]
    Restore(#[from] UpdateError),
    /// The unit's own address is unusable.
    #[error(transparent)]
    Unit(#[from] UnitError),
}

/// What the tasks of one unit share.
pub(crate) struct Shared {
    pub(crate) id: DispatchId,
    /// This unit's address as announced.
    pub(crate) addr: String,
    /// The network this unit belongs to, with its admission.
    pub(crate) network: Network,
    data_dir: PathBuf,
    /// The unit and its change counter; held only for synchronous work.
    locked: Mutex<Locked>,
    /// Wakes the writer after a change.
    dirty: Notify,
    /// The change counter value last saved to disk.
    persisted: watch::Sender<u64>,
    /// The generation in `tables.bin`; its lock is held while writing.
    on_disk: Arc<Mutex<u64>>,
    /// Changes for the replicator; bounded, never waited on.
    outbox: mpsc::Sender<Update>,
    /// Set when the outbox was full and an update was dropped, so the
    /// replicator falls back to pushing whole tables.
    outbox_overflow: AtomicBool,
    /// The collected log events (`crate::logs`); not part of the tables.
    pub(crate) logs: crate::logs::LogStore,
}

struct Locked {
    state: State,
    /// Counts changes to the tables; what `persisted` is compared with.
    generation: u64,
}

impl Shared {
    /// Runs `f` on the state under the lock.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock().state)
    }

    /// Runs a change under the lock: `f` returns its result, the updates to
    /// replicate and whether the tables changed. Returns the change number
    /// to wait for with [`Shared::saved`], if there was a change.
    pub(crate) fn change<R>(
        &self,
        f: impl FnOnce(&mut State) -> (R, Vec<Update>, bool),
    ) -> (R, Option<u64>) {
        let mut locked = self.lock();
        let (result, updates, changed) = f(&mut locked.state);
        for update in updates {
            if self.outbox.try_send(update).is_err() {
                self.outbox_overflow.store(true, Ordering::SeqCst);
            }
        }
        if !changed {
            return (result, None);
        }
        locked.generation += 1;
        let generation = locked.generation;
        drop(locked);
        self.dirty.notify_one();
        (result, Some(generation))
    }

    /// Merges a peer's tables; returns (records changed, records refused).
    pub(crate) fn merge(&self, _now_ms: u64, tables: &DispatchTables) -> (usize, usize) {
        self.change(|s| {
            let report = s.unit.merge_snapshot(tables);
            for e in &report.refused {
                tracing::warn!(error = %e, "peer snapshot record refused");
            }
            let counts = (report.changed, report.refused.len());
            (counts, Vec::new(), report.changed > 0)
        })
        .0
    }

    /// Waits until change `generation` is on disk; false if that takes
    /// longer than [`PERSIST_WAIT`].
    async fn saved(&self, generation: u64) -> bool {
        let mut rx = self.persisted.subscribe();
        matches!(
            tokio::time::timeout(PERSIST_WAIT, rx.wait_for(|g| *g >= generation)).await,
            Ok(Ok(_))
        )
    }

    /// Every known unit but this one.
    pub(crate) fn peer_units(&self) -> Vec<DispatchId> {
        self.with_state(|s| {
            s.unit
                .tables()
                .units
                .keys()
                .filter(|id| **id != self.id)
                .copied()
                .collect()
        })
    }

    /// A unit's address from the tables.
    pub(crate) fn unit_addr(&self, unit: DispatchId) -> Option<String> {
        self.with_state(|s| s.unit.tables().units.get(&unit).map(|r| r.addr.clone()))
    }

    pub(crate) fn take_outbox_overflow(&self) -> bool {
        self.outbox_overflow.swap(false, Ordering::SeqCst)
    }

    /// Saves the tables if they changed since `written`; returns the change
    /// number now on disk.
    async fn save(self: &Arc<Self>, written: u64) -> Result<u64, PersistError> {
        let encoded = {
            let locked = self.lock();
            if locked.generation == written {
                return Ok(written);
            }
            persist::encode_tables(locked.state.unit.tables()).map(|b| (locked.generation, b))
        };
        let (generation, bytes) = encoded?;
        let dir = self.data_dir.clone();
        let on_disk = self.on_disk.clone();
        tokio::task::spawn_blocking(move || -> Result<(), PersistError> {
            // One write at a time (they share the temp file), and never an
            // older generation over a newer one: a write that an aborted
            // writer task left running may finish after `shutdown`'s.
            let mut on_disk = on_disk.lock().unwrap_or_else(|e| e.into_inner());
            if *on_disk >= generation {
                return Ok(());
            }
            persist::write_tables(&dir, &bytes)?;
            *on_disk = generation;
            Ok(())
        })
        .await
        .map_err(|e| PersistError::Io {
            path: self.data_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
        self.persisted.send_modify(|g| *g = (*g).max(generation));
        Ok(generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Locked> {
        // Nothing under this lock can be left half-done by a panic in a way
        // that matters more than stopping to serve: keep going.
        self.locked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running dispatch unit.
pub struct DispatchService {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl DispatchService {
    /// Loads (or creates) the key and tables in the data dir, binds, and
    /// starts serving, saving and replicating. Must run inside tokio.
    pub async fn bind(config: ServiceConfig) -> Result<Self, ServiceError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ServiceError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let (key, created) = Home::new(&dir).load_or_create_key(KeyRole::Dispatch)?;
        let id = key.dispatch_id();
        let signing = SigningKey::from_pkcs8_der(&key.to_pkcs8_der_zeroizing())
            .map_err(ServiceError::KeyDecode)?;
        let identity = net::Identity::from_signing_key(&signing)?;
        let network_key = match &config.network_key {
            Some(path) => load_or_create(path)?,
            None => Home::new(&dir).load_or_create_key(KeyRole::Network)?.0,
        };
        let network = Network::new(&network_key, id);
        drop(network_key);
        let endpoint = Endpoint::bind_with(config.listen, identity, config.transport.clone())?;
        let local_addr = endpoint.local_addr()?;
        let addr = local_addr.to_string();
        let now = now_ms();
        let unit = match persist::load_tables(&dir)? {
            Some(tables) => {
                let mut unit = DispatchUnit::from_snapshot(id, config.limits.clone(), &tables)?;
                // Our own record may carry an old address; the announce
                // reaches peers with the first full push.
                unit.handle_unit_announce(now, id, &addr)?;
                tracing::info!(unit = %id.short(), "tables restored");
                unit
            }
            None => DispatchUnit::with_limits(now, id, &addr, config.limits.clone())?,
        };
        if created {
            tracing::info!(unit = %id.short(), "created a new dispatch key");
        }
        let (outbox_tx, outbox_rx) = mpsc::channel(peers::OUTBOX_MAX);
        let shared = Arc::new(Shared {
            id,
            addr,
            network: network.clone(),
            data_dir: dir,
            locked: Mutex::new(Locked {
                state: State {
                    unit,
                    replay: ReplayGuard::new(DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES),
                    network,
                },
                generation: 1,
            }),
            dirty: Notify::new(),
            persisted: watch::Sender::new(0),
            on_disk: Arc::new(Mutex::new(0)),
            outbox: outbox_tx,
            outbox_overflow: AtomicBool::new(false),
            logs: crate::logs::LogStore::new(config.log_ring),
        });
        // The first write proves the data dir is writable before serving.
        shared.save(0).await?;
        let span = tracing::info_span!("dispatch", unit = %id.short());
        let mut tasks = Vec::new();
        let serving = shared.clone();
        let server = net::serve(endpoint.clone(), move |req, ex| {
            handle_exchange(serving.clone(), req, ex)
        });
        tasks.push(tokio::spawn(server.instrument(span.clone())));
        tasks.push(tokio::spawn(
            writer(shared.clone()).instrument(span.clone()),
        ));
        if let Some(feed) = config.logs.clone() {
            let own = crate::logs::collect_own(feed, shared.logs.clone(), id.to_hex());
            tasks.push(tokio::spawn(own));
        }
        tasks.push(tokio::spawn(
            announcer(shared.clone()).instrument(span.clone()),
        ));
        tasks.push(tokio::spawn(
            peers::run(shared.clone(), endpoint.clone(), outbox_rx, config.peers).instrument(span),
        ));
        Ok(DispatchService {
            shared,
            endpoint,
            local_addr,
            tasks,
        })
    }

    pub fn id(&self) -> DispatchId {
        self.shared.id
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The unit's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// A copy of the current tables.
    pub fn snapshot(&self) -> DispatchTables {
        self.shared.with_state(|s| s.unit.snapshot())
    }

    /// Read access to the unit for the monitor (`crate::monitor`), which
    /// outlives no request: it only ever borrows the unit under the lock.
    pub fn reader(&self) -> UnitReader {
        UnitReader(self.shared.clone())
    }

    /// The unit's log ring: what `dem admin logs` reads
    /// (`LogStore::page`, `LogStore::query`).
    pub fn logs(&self) -> crate::logs::LogStore {
        self.shared.logs.clone()
    }

    /// Stops serving, saves the tables one last time and closes the
    /// endpoint, telling connected peers.
    pub async fn shutdown(self) -> Result<(), PersistError> {
        self.endpoint.close();
        for task in &self.tasks {
            task.abort();
        }
        let written = *self.shared.persisted.borrow();
        let saved = self.shared.save(written).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        saved.map(|_| ())
    }
}

impl Drop for DispatchService {
    fn drop(&mut self) {
        self.endpoint.close();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A read-only view of a running unit, for the HTTP monitor: runs a
/// closure on the unit under the same lock requests take, so a reader sees
/// whole changes and never holds the lock across an await.
#[derive(Clone)]
pub struct UnitReader(Arc<Shared>);

impl UnitReader {
    /// Runs `f` on the unit with the wall clock of now.
    pub fn read<R>(&self, f: impl FnOnce(&DispatchUnit, u64) -> R) -> R {
        let now = now_ms();
        self.0.with_state(|s| f(&s.unit, now))
    }

    /// The unit's data dir (where `admin.token` lives).
    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    /// The unit's collected log events (`crate::logs`), for the monitor's
    /// log view: `LogStore::page` with a filter and a cursor.
    pub fn logs(&self) -> crate::logs::LogStore {
        self.0.logs.clone()
    }
}

/// Answers one request: run it against the unit, wait until any change is
/// saved, reply.
async fn handle_exchange(
    shared: Arc<Shared>,
    req: DispatchRequest,
    mut ex: Exchange,
) -> net::Result<()> {
    if matches!(req, DispatchRequest::Pipeline) {
        return super::pipeline::serve(&shared, ex).await;
    }
    if matches!(
        req,
        DispatchRequest::Logs { .. } | DispatchRequest::LogsQuery { .. }
    ) {
        let answer = serve_logs(&shared, ex.peer_key, req);
        return match answer {
            Ok(resp) => ex.reply(&resp).await,
            Err(e) => ex.reply_err(&e).await,
        };
    }
    let now = now_ms();
    let peer = ex.peer_key;
    let (response, generation) = shared.change(|s| {
        let out = s.handle(now, peer, req);
        (out.response, out.updates, out.changed)
    });
    if let Some(generation) = generation
        && !shared.saved(generation).await
    {
        let err = WireError::new(WireError::INTERNAL, "the tables could not be saved");
        return ex.reply_err(&err).await;
    }
    match response {
        Ok(resp) => match ex.reply(&resp).await {
            // Too large to send as one frame (a huge status or snapshot).
            Err(NetError::TooLarge { len, max }) => {
                let msg = format!("answer of {len} bytes exceeds {max}");
                ex.reply_err(&WireError::new(WireError::TOO_LARGE, msg))
                    .await
            }
            other => other,
        },
        Err(e) => {
            tracing::debug!(error = %e, "request refused");
            ex.reply_err(&e).await
        }
    }
}

/// Answers `Logs` (a batch shipped by a host, which must be joined, and
/// is filed under its own key) and `LogsQuery` from the log ring.
fn serve_logs(
    shared: &Shared,
    peer: [u8; 32],
    req: DispatchRequest,
) -> Result<dem_proto::DispatchResponse, WireError> {
    use dem_proto::DispatchResponse;
    match req {
        DispatchRequest::Logs { events } => {
            crate::logs::check_batch(&events)?;
            let host = dem_identity::HostId(peer);
            let joined = shared.with_state(|s| {
                s.unit
                    .tables()
                    .hosts
                    .get(&host)
                    .is_some_and(|r| r.state != super::HostState::Left)
            });
            if !joined {
                return Err(WireError::new(
                    WireError::FORBIDDEN,
                    format!("host {host} is not joined: only joined hosts ship logs"),
                ));
            }
            shared.logs.push_from(&host.to_hex(), events);
            Ok(DispatchResponse::Done)
        }
        DispatchRequest::LogsQuery {
            filter,
            after,
            limit,
        } => {
            filter
                .check()
                .map_err(|e| WireError::new(WireError::BAD_REQUEST, e.to_string()))?;
            let limit = limit.min(dem_proto::logs::LOG_QUERY_MAX);
            Ok(DispatchResponse::Logs(
                shared.logs.page(&filter, after, limit),
            ))
        }
        _ => Err(WireError::new(WireError::BAD_REQUEST, "not a logs request")),
    }
}

/// Saves the tables after changes; what changes during a write goes out
/// in the next one.
async fn writer(shared: Arc<Shared>) {
    let mut written = *shared.persisted.borrow();
    loop {
        shared.dirty.notified().await;
        match shared.save(written).await {
            Ok(g) => written = g,
            Err(e) => {
                tracing::error!(error = %e, "cannot save the tables; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                shared.dirty.notify_one();
            }
        }
    }
}

/// Loads the key at `path`, creating it (mode 0600) if there is none yet.
fn load_or_create(path: &Path) -> Result<KeyPair, KeyError> {
    if path.exists() {
        return KeyPair::load(path);
    }
    let key = KeyPair::generate()?;
    match key.save(path) {
        Ok(()) => Ok(key),
        // Another unit created it first: use theirs, never replace it.
        Err(KeyError::AlreadyExists { .. }) => KeyPair::load(path),
        Err(e) => Err(e),
    }
}

/// Re-announces this unit now and then, so peers see it alive.
async fn announcer(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
    loop {
        tick.tick().await;
        let now = now_ms();
        shared.change(|s| {
            let updates: Vec<Update> = s
                .unit
                .announce(now)
                .into_iter()
                .map(|super::Action::Replicate(u)| u)
                .collect();
            let changed = !updates.is_empty();
            ((), updates, changed)
        });
    }
}

/// The wall clock in milliseconds since the Unix epoch, from the one place
/// a DEM process reads it (`dem_client::now_ms`).
pub(crate) fn now_ms() -> u64 {
    u64::try_from(dem_client::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
