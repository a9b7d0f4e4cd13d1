//! A client of the dispatch backbone: sends one [`DispatchRequest`] to any
//! live dispatch unit and returns its answer.
//!
//! Units replicate their tables to one another (in `dem-node`'s dispatch service), so
//! any of them can answer. Each request goes to a unit picked at random, so
//! load spreads and no unit is special; if that unit cannot be reached (no
//! connection, a lost connection, a timeout) the others are tried in random
//! order. A [`WireError`] answer is the unit's verdict on the request and is
//! final: asking another unit would only get the same refusal, or worse,
//! apply a non-idempotent request twice.
//!
//! A unit that has not answered within [`HEDGE_AFTER_MS`] is not waited
//! for alone: the next unit is asked too, and the first answer wins. A dead
//! unit behind a cached connection looks alive until the idle timeout, and
//! a host's lease renewal must not wait that long. A unit that failed is
//! asked last for [`SUSPECT_MS`]. Requests are idempotent at the units
//! (whole-value updates merged by epoch), so asking two is safe.
//!
//! Lookups share one stream per unit connection, a pipeline
//! (`dispatch/pipe.rs`), instead of opening a stream each.
//!
//! Connections are cached per unit. A unit's key is pinned once known,
//! either given up front or learned on first contact (trust on first use),
//! so a later impostor at the same address is refused. The host daemon and
//! the user CLI use this; the service uses it too to reach its peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod pipe;

use dem_identity::DispatchId;
use dem_net::{Connection, Endpoint, NetError, WireError};
use dem_proto::{DispatchRequest, DispatchResponse, MESSAGE_BYTES_MAX};
use pipe::Pipe;

/// How long one request to one unit may take, connecting included, before
/// the next unit is tried.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// How long a QUIC handshake with one unit may take before the next unit is
/// tried: a dead unit never answers, and a user should not wait the whole
/// request timeout to find that out.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How long a request waits for one unit before also asking the next.
pub const HEDGE_AFTER_MS: u64 = 500;
/// How long a unit that failed is asked only after the others.
pub const SUSPECT_MS: u64 = 5_000;
/// Most units a client keeps; more addresses (e.g. learned from a lease
/// answer) are ignored, matching the unit table's bound.
pub const BACKBONE_UNITS_MAX: usize = dem_proto::dispatch::MAX_UNITS;

/// Why a dispatch request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A backbone address is not `IP:PORT`.
    #[error("dispatch address {addr:?} is not IP:PORT")]
    BadAddr { addr: String },
    /// The backbone list is empty.
    #[error("no dispatch units are known")]
    NoUnits,
    /// A unit answered with a refusal; this is its final word.
    #[error("dispatch unit {addr} refused: {error}")]
    Refused { addr: String, error: WireError },
    /// Every unit failed; one line per unit.
    #[error("no dispatch unit answered: {}", .failures.join("; "))]
    Unreachable { failures: Vec<String> },
}

impl ClientError {
    /// The unit's refusal, if that is what this is.
    pub fn wire(&self) -> Option<&WireError> {
        match self {
            ClientError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// One backbone unit as the client knows it.
struct Unit {
    /// As given, for errors and [`DispatchClient::units`].
    addr: String,
    sock: SocketAddr,
    /// Pinned once known.
    key: Option<DispatchId>,
    /// The cached connection, dropped when it fails.
    conn: Option<Connection>,
    /// Until when this unit is asked last, after it failed.
    suspect_until: Option<std::time::Instant>,
    /// The lookup pipeline on `conn`, opened by the first lookup.
    pipe: Option<Arc<Pipe>>,
}

/// A client of several dispatch units; cheap to share behind an `Arc`.
pub struct DispatchClient {
    endpoint: Endpoint,
    /// Guarded by a plain mutex held only for bookkeeping, never across an
    /// await.
    units: Mutex<Vec<Unit>>,
    timeout: Duration,
}

impl DispatchClient {
    /// A client of the units at `backbone` (`IP:PORT` each), keys unknown
    /// until first contact.
    pub fn new(endpoint: Endpoint, backbone: Vec<String>) -> Result<Self, ClientError> {
        Self::with_keys(endpoint, backbone.into_iter().map(|a| (a, None)).collect())
    }

    /// A client of units whose keys may already be known (and are pinned).
    pub fn with_keys(
        endpoint: Endpoint,
        backbone: Vec<(String, Option<DispatchId>)>,
    ) -> Result<Self, ClientError> {
        let client = DispatchClient {
            endpoint,
            units: Mutex::new(Vec::new()),
            timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        };
        for (addr, key) in backbone {
            client.add(addr, key)?;
        }
        Ok(client)
    }

    /// Another per-unit timeout (tests, impatient tools).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds units learned later (e.g. from a [`DispatchResponse::Lease`]);
    /// known addresses keep their entry, and a key learned here is pinned.
    pub fn learn(&self, units: &[(DispatchId, String)]) {
        for (id, addr) in units {
            if let Err(e) = self.add(addr.clone(), Some(*id)) {
                tracing::debug!(error = %e, "ignoring a learned dispatch unit");
            }
        }
    }

    /// The units known, with their keys where known.
    pub fn units(&self) -> Vec<(String, Option<DispatchId>)> {
        self.lock()
            .iter()
            .map(|u| (u.addr.clone(), u.key))
            .collect()
    }

    /// Sends `req` to a random unit, falling back to the others in random
    /// order when one cannot be reached.
    pub async fn request(&self, req: &DispatchRequest) -> Result<DispatchResponse, ClientError> {
        let order = {
            let units = self.lock();
            let now = std::time::Instant::now();
            let suspect: Vec<bool> = units
                .iter()
                .map(|u| u.suspect_until.is_some_and(|t| t > now))
                .collect();
            let mut order: Vec<usize> = (0..units.len()).collect();
            shuffle(&mut order);
            suspects_last(order, &suspect)
        };
        if order.is_empty() {
            return Err(ClientError::NoUnits);
        }
        let mut next = order.into_iter();
        let mut asking: Vec<Asking<'_>> = Vec::new();
        let mut failures = Vec::new();
        loop {
            if asking.is_empty() {
                match next.next() {
                    Some(i) => asking.push(Box::pin(self.ask(i, req))),
                    None => return Err(ClientError::Unreachable { failures }),
                }
            }
            let hedge = tokio::time::sleep(Duration::from_millis(HEDGE_AFTER_MS));
            tokio::select! {
                (i, answer) = first_of(&mut asking) => match answer {
                    Ok(resp) => return Ok(resp),
                    Err(refused @ ClientError::Refused { .. }) => return Err(refused),
                    Err(e) => {
                        failures.push(e.to_string());
                        self.suspect(i);
                    }
                },
                () = hedge => {
                    if let Some(i) = next.next() {
                        asking.push(Box::pin(self.ask(i, req)));
                    }
                }
            }
        }
    }

    async fn ask(
        &self,
        i: usize,
        req: &DispatchRequest,
    ) -> (usize, Result<DispatchResponse, ClientError>) {
        (i, self.request_unit(i, req).await)
    }

    fn suspect(&self, i: usize) {
        if let Some(u) = self.lock().get_mut(i) {
            u.suspect_until = Some(std::time::Instant::now() + Duration::from_millis(SUSPECT_MS));
        }
    }

    /// Sends `req` to the unit at index `i`: on a cached connection if there
    /// is one (and again on a fresh one if that fails, since the unit may
    /// simply have restarted), otherwise on a new connection.
    async fn request_unit(
        &self,
        i: usize,
        req: &DispatchRequest,
    ) -> Result<DispatchResponse, ClientError> {
        let (addr, sock, key, cached) = {
            let units = self.lock();
            let u = &units[i];
            (u.addr.clone(), u.sock, u.key, u.conn.clone())
        };
        if let Some(conn) = cached.filter(|c| c.quinn().close_reason().is_none()) {
            match self.exchange(i, &conn, req).await {
                Ok(resp) => return Ok(resp),
                Err(NetError::Remote(error)) => return Err(ClientError::Refused { addr, error }),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "cached dispatch connection failed");
                    self.forget(i, &conn);
                }
            }
        }
        let fresh = async {
            let connecting = async {
                match key {
                    Some(k) => self.endpoint.connect(sock, k.0).await,
                    None => self.endpoint.connect_unpinned(sock).await.map(|(c, _)| c),
                }
            };
            let connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS).min(self.timeout);
            let conn = tokio::time::timeout(connect_timeout, connecting)
                .await
                .map_err(|_| NetError::Timeout {
                    ms: connect_timeout.as_millis() as u64,
                })??;
            self.remember(i, &conn);
            self.exchange(i, &conn, req).await
        };
        match tokio::time::timeout(self.timeout, fresh).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(NetError::Remote(error))) => Err(ClientError::Refused { addr, error }),
            Ok(Err(e)) => Err(ClientError::Unreachable {
                failures: vec![format!("{addr}: {e}")],
            }),
            Err(_) => Err(ClientError::Unreachable {
                failures: vec![format!("{addr}: timed out after {:?}", self.timeout)],
            }),
        }
    }

    /// One request on `conn` to unit `i`: a lookup through the unit's
    /// pipeline, anything else on a stream of its own.
    async fn exchange(
        &self,
        i: usize,
        conn: &Connection,
        req: &DispatchRequest,
    ) -> Result<DispatchResponse, NetError> {
        if !req.is_lookup() {
            return conn.request(req, MESSAGE_BYTES_MAX, self.timeout).await;
        }
        let pipe = {
            let mut units = self.lock();
            let u = &mut units[i];
            match &u.pipe {
                Some(p) if p.serves(conn) => p.clone(),
                _ => u.pipe.insert(Arc::new(Pipe::open(conn))).clone(),
            }
        };
        pipe.lookup(req, self.timeout).await
    }

    fn add(&self, addr: String, key: Option<DispatchId>) -> Result<(), ClientError> {
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| ClientError::BadAddr { addr: addr.clone() })?;
        let mut units = self.lock();
        if let Some(u) = units.iter_mut().find(|u| u.sock == sock) {
            if u.key.is_none() {
                u.key = key;
            }
            return Ok(());
        }
        if units.len() < BACKBONE_UNITS_MAX {
            units.push(Unit {
                addr,
                sock,
                key,
                conn: None,
                suspect_until: None,
                pipe: None,
            });
        }
        Ok(())
    }

    /// Caches `conn` for unit `i` and pins the key it presented.
    fn remember(&self, i: usize, conn: &Connection) {
        let mut units = self.lock();
        let u = &mut units[i];
        u.key.get_or_insert(DispatchId(conn.peer_key()));
        u.conn = Some(conn.clone());
    }

    /// Drops unit `i`'s cached connection if it is still `conn`.
    fn forget(&self, i: usize, conn: &Connection) {
        let mut units = self.lock();
        if units[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.quinn().stable_id() == conn.quinn().stable_id())
        {
            units[i].conn = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Unit>> {
        // A panic while holding this lock leaves only bookkeeping behind;
        // keep using it rather than poisoning every later request.
        self.units.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request in flight to one unit, with the unit's index.
type Asking<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (usize, Result<DispatchResponse, ClientError>)>
            + Send
            + 'a,
    >,
>;

/// The first of the requests in flight to finish, removed from `asking`.
/// Pending forever while `asking` is empty (the caller's timer decides).
async fn first_of(asking: &mut Vec<Asking<'_>>) -> (usize, Result<DispatchResponse, ClientError>) {
    std::future::poll_fn(|cx| {
        for k in 0..asking.len() {
            if let std::task::Poll::Ready(out) = asking[k].as_mut().poll(cx) {
                drop(asking.swap_remove(k));
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// `order` with the units marked suspect moved to the end, each group in
/// its given order.
fn suspects_last(order: Vec<usize>, suspect: &[bool]) -> Vec<usize> {
    let (mut fine, late): (Vec<usize>, Vec<usize>) = order
        .into_iter()
        .partition(|&i| !suspect.get(i).copied().unwrap_or(false));
    fine.extend(late);
    fine
}

/// Fisher–Yates with the system random source; if that fails the order
/// stays as given, which is still correct, only less spread.
fn shuffle(items: &mut [usize]) {
    for i in (1..items.len()).rev() {
        let Ok(r) = getrandom::u64() else { return };
        let j = usize::try_from(r % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspects_are_asked_last_in_their_order() {
        let order = vec![3, 0, 2, 1];
        let suspect = [true, false, false, true];
        // 0 and 3 failed lately: they come last, each group as shuffled.
        assert_eq!(suspects_last(order, &suspect), vec![2, 1, 3, 0]);
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut v: Vec<usize> = (0..20).collect();
        shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
