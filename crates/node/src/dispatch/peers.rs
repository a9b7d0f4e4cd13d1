//! Replication between dispatch units: every change a unit makes is pushed
//! to every other unit it knows, in the background.
//!
//! The service hands each replicated [`Update`] to a bounded outbox. The
//! replicator batches what is queued and fans each batch out to one link
//! task per peer unit (every unit in the `units` table but this one, so
//! units learned from a peer's tables are pushed to as well). A link keeps
//! its connection (pinned to the unit's key), retries with backoff, and
//! never blocks anyone else: a down peer only fills its own bounded queue.
//! When a queue overflows, or when a link starts, the link pushes the whole
//! tables instead ([`updates_of`]); updates are idempotent and conflicts
//! are settled by epochs in the merge, so duplicates and reordering are
//! harmless.
//!
//! On start, each `--peer` address is contacted without a known key (trust
//! on first use): the unit announces itself and merges the peer's snapshot,
//! which also teaches it the rest of the backbone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::service::{Shared, now_ms};
use super::{Update, updates_of};
use dem_identity::DispatchId;
use dem_net::{Connection, Endpoint, NetError};
use dem_proto::{DispatchRequest, DispatchResponse, MESSAGE_BYTES_MAX};

/// Most updates in one `Replicate` request.
pub const REPLICATE_BATCH_MAX: usize = 512;
/// Updates waiting in the service's outbox for the replicator; beyond it
/// every link falls back to a full push.
pub const OUTBOX_MAX: usize = 16_384;
/// Batches waiting for one peer; beyond it that link falls back to a full
/// push once the peer is back.
pub const LINK_QUEUE_MAX: usize = 64;
/// One exchange with a peer unit, connecting included.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the replicator looks for newly learned units.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Why an exchange with a peer unit failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The address is not `IP:PORT`.
    #[error("peer address {addr:?} is not IP:PORT")]
    BadAddr {
        addr: String,
        #[source]
        source: std::net::AddrParseError,
    },
    /// The unit is no longer in the tables.
    #[error("unit {0} is not known")]
    UnknownUnit(DispatchId),
    /// The transport failed or the peer refused.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The peer answered something else than expected.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

/// Runs until the outbox closes: batches updates and feeds the links.
pub(crate) async fn run(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    mut outbox: mpsc::Receiver<Update>,
    bootstrap: Vec<String>,
) {
    for addr in bootstrap {
        let task = bootstrap_peer(shared.clone(), endpoint.clone(), addr.clone());
        tokio::spawn(task.instrument(tracing::info_span!("bootstrap", peer = %addr)));
    }
    let mut links: HashMap<DispatchId, Link> = HashMap::new();
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    loop {
        tokio::select! {
            first = outbox.recv() => {
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while batch.len() < REPLICATE_BATCH_MAX {
                    match outbox.try_recv() {
                        Ok(u) => batch.push(u),
                        Err(_) => break,
                    }
                }
                refresh_links(&shared, &endpoint, &mut links);
                let batch = Arc::new(batch);
                for link in links.values() {
                    link.send(batch.clone());
                }
            }
            _ = tick.tick() => {
                refresh_links(&shared, &endpoint, &mut links);
                if shared.take_outbox_overflow() {
                    tracing::warn!("replication outbox overflowed; pushing full tables");
                    links.values().for_each(Link::request_resync);
                }
            }
        }
    }
}

/// The replicator's handle on one peer's link task.
struct Link {
    tx: mpsc::Sender<Arc<Vec<Update>>>,
    /// Set when the link must push the whole tables.
    resync: Arc<AtomicBool>,
    /// Wakes the link when `resync` is set while it waits for batches.
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Link {
    fn send(&self, batch: Arc<Vec<Update>>) {
        if self.tx.try_send(batch).is_err() {
            self.request_resync();
        }
    }

    fn request_resync(&self) {
        self.resync.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a link for every known unit that has none yet.
fn refresh_links(shared: &Arc<Shared>, endpoint: &Endpoint, links: &mut HashMap<DispatchId, Link>) {
    for peer in shared.peer_units() {
        if links.contains_key(&peer) {
            continue;
        }
        let (tx, rx) = mpsc::channel(LINK_QUEUE_MAX);
        // A new link first pushes everything: the peer may have missed
        // changes made while it was down or before it was known.
        let resync = Arc::new(AtomicBool::new(true));
        let wake = Arc::new(Notify::new());
        let span = tracing::info_span!("link", peer = %peer.short());
        let task = tokio::spawn(
            link_task(
                shared.clone(),
                endpoint.clone(),
                peer,
                rx,
                resync.clone(),
                wake.clone(),
            )
            .instrument(span),
        );
        tracing::info!(peer = %peer.short(), "replicating to a new unit");
        links.insert(
            peer,
            Link {
                tx,
                resync,
                wake,
                task,
            },
        );
    }
}

/// Pushes batches to one peer, in order, retrying until they get through.
async fn link_task(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    peer: DispatchId,
    mut rx: mpsc::Receiver<Arc<Vec<Update>>>,
    resync: Arc<AtomicBool>,
    wake: Arc<Notify>,
) {
    let mut conn: Option<Connection> = None;
    let mut backoff = RETRY_MIN;
    loop {
        if resync.swap(false, Ordering::SeqCst) {
            // Queued batches are already reflected in the tables taken next.
            while rx.try_recv().is_ok() {}
            let all = shared.with_state(|s| updates_of(s.unit.tables()));
            match push(&shared, &endpoint, peer, &mut conn, &all).await {
                Ok(()) => {
                    tracing::debug!(updates = all.len(), "pushed full tables");
                    backoff = RETRY_MIN;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "full push failed; will retry");
                    resync.store(true, Ordering::SeqCst);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        let batch = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
            _ = wake.notified() => continue,
        };
        loop {
            match push(&shared, &endpoint, peer, &mut conn, &batch).await {
                Ok(()) => {
                    backoff = RETRY_MIN;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "push failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    if resync.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }
    }
}

/// Sends `updates` to `peer` in batches, over `conn` or a new connection
/// pinned to the peer's key; a failure drops the connection.
async fn push(
    shared: &Shared,
    endpoint: &Endpoint,
    peer: DispatchId,
    conn: &mut Option<Connection>,
    updates: &[Update],
) -> Result<(), PeerError> {
    let c = match conn.take().filter(|c| c.quinn().close_reason().is_none()) {
        Some(c) => c,
        None => {
            let addr = shared.unit_addr(peer).ok_or(PeerError::UnknownUnit(peer))?;
            let sock: SocketAddr = addr
                .parse()
                .map_err(|source| PeerError::BadAddr { addr, source })?;
            let c = tokio::time::timeout(PEER_TIMEOUT, endpoint.connect(sock, peer.0))
                .await
                .map_err(|_| NetError::Timeout {
                    ms: PEER_TIMEOUT.as_millis() as u64,
                })??;
            // The peer takes updates only from units it admitted; it may
            // have learned of this one from tables it has not seen yet.
            announce(shared, &c).await?;
            c
        }
    };
    for chunk in updates.chunks(REPLICATE_BATCH_MAX) {
        let req = DispatchRequest::Replicate {
            updates: chunk.to_vec(),
        };
        match c
            .request::<_, DispatchResponse>(&req, MESSAGE_BYTES_MAX, PEER_TIMEOUT)
            .await?
        {
            DispatchResponse::Done => {}
            _ => return Err(PeerError::Unexpected("Replicate")),
        }
    }
    *conn = Some(c);
    Ok(())
}

/// Introduces this unit to the unit at `addr` and copies its tables,
/// retrying until it answers.
async fn bootstrap_peer(shared: Arc<Shared>, endpoint: Endpoint, addr: String) {
    let mut backoff = RETRY_MIN;
    let mut warned = false;
    loop {
        match introduce(&shared, &endpoint, &addr).await {
            Ok(()) => return,
            Err(PeerError::BadAddr { addr: a, .. }) => {
                tracing::error!(addr = %a, "peer address is not IP:PORT; giving up on it");
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "peer unit not reachable yet; retrying");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn introduce(shared: &Shared, endpoint: &Endpoint, addr: &str) -> Result<(), PeerError> {
    let sock: SocketAddr = addr.parse().map_err(|source| PeerError::BadAddr {
        addr: addr.to_string(),
        source,
    })?;
    let (conn, key) = tokio::time::timeout(PEER_TIMEOUT, endpoint.connect_unpinned(sock))
        .await
        .map_err(|_| NetError::Timeout {
            ms: PEER_TIMEOUT.as_millis() as u64,
        })??;
    if DispatchId(key) == shared.id {
        tracing::warn!("--peer names this unit itself; ignoring it");
        return Ok(());
    }
    announce(shared, &conn).await?;
    let tables = match conn
        .request::<_, DispatchResponse>(&DispatchRequest::Snapshot, MESSAGE_BYTES_MAX, PEER_TIMEOUT)
        .await?
    {
        DispatchResponse::Tables(t) => t,
        _ => return Err(PeerError::Unexpected("Snapshot")),
    };
    let now = now_ms();
    let (changed, refused) = shared.merge(now, &tables);
    tracing::info!(
        peer = %DispatchId(key).short(),
        changed,
        refused,
        "merged a peer unit's tables"
    );
    Ok(())
}

/// Introduces this unit on `conn`, with the network's admission of it.
async fn announce(shared: &Shared, conn: &Connection) -> Result<(), PeerError> {
    let announce = DispatchRequest::Announce {
        addr: shared.addr.clone(),
        admission: shared.network.own_admission(),
    };
    match conn
        .request::<_, DispatchResponse>(&announce, MESSAGE_BYTES_MAX, PEER_TIMEOUT)
        .await?
    {
        DispatchResponse::Done => Ok(()),
        _ => Err(PeerError::Unexpected("Announce")),
    }
}
