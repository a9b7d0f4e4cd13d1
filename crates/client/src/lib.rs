//! The client side of DEM: what `dem send`, `dem inbox` and friends (and a
//! host forwarding on someone's behalf) use to reach mailboxes.
//!
//! - [`Session`]: a QUIC endpoint under the user's key, the dispatch
//!   client, and open connections to hosts, pinned by host id.
//! - [`MailboxRef`]: a mailbox named by user name or id; resolves it at the
//!   dispatch unit, caches the answer, calls the holding host directly,
//!   follows "moved" answers and retries with a fresh lookup after a
//!   connection failure (a bounded number of times).
//! - [`attachments`]: storing and fetching floating attachments in chunks.
//! - [`message`]: sending and reading real mail as its exact bytes, its
//!   large parts travelling as attachments.
//! - [`recipient`]: the recipient's encryption key from a lookup by name,
//!   checked against their own signed name claim.

pub mod attachments;
pub mod dispatch;
pub mod mailbox_ref;
pub mod message;
pub mod progress;
pub mod recipient;
pub mod sealed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;

pub use dispatch::{ClientError, DispatchClient};
pub use mailbox_ref::{MailboxRef, RefError, Target};
pub use recipient::{RecipientKeyError, recipient_key};

use dem_identity::{DispatchId, HostId, KeyPair};
use dem_net::{Connection, Endpoint, Identity, NetError};
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse, MESSAGE_BYTES_MAX};

/// Past this many host addresses, slots without a connection are pruned.
const HOST_SLOTS_PRUNE_AT: usize = 256;

/// How long one request to a host may take (transfers excepted).
pub const HOST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session could not be set up or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The transport failed (bind, connect, stream, refusal by the peer).
    #[error(transparent)]
    Net(#[from] NetError),
    /// No dispatch unit answered, or one refused.
    #[error(transparent)]
    Dispatch(#[from] ClientError),
    /// The dispatch unit answered something this request does not expect.
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<DispatchResponse>),
    /// A host address (as dispatch gave it) is not a socket address.
    #[error("unexpected answer: host address {addr:?}")]
    HostAddress {
        /// The address as given.
        addr: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The key could not be turned into a TLS identity.
    #[error("bad key: {0}")]
    Key(#[source] ed25519_dalek::pkcs8::Error),
}

/// The QUIC identity of a DEM key.
pub fn identity_of(key: &KeyPair) -> Result<Identity, SessionError> {
    let der = key.to_pkcs8_der_zeroizing();
    let signing = SigningKey::from_pkcs8_der(&der).map_err(SessionError::Key)?;
    Ok(Identity::from_signing_key(&signing)?)
}

/// A user's (or host's) connection to the network.
pub struct Session {
    key: Arc<KeyPair>,
    endpoint: Endpoint,
    dispatch: DispatchClient,
    /// Open connections by host address: several recipients on one host
    /// share a connection. Each address has its own slot, so a dial to a
    /// dead host (up to the connect timeout) holds up only the requests to
    /// that address, never those to live hosts.
    hosts: std::sync::Mutex<HashMap<SocketAddr, HostSlot>>,
}

/// The connection to one host address, or none yet; locked while dialling.
type HostSlot = Arc<tokio::sync::Mutex<Option<Connection>>>;

impl Session {
    /// Binds an ephemeral endpoint under `key` and talks to `backbone`.
    /// Units whose keys are known are pinned.
    pub fn new(
        key: Arc<KeyPair>,
        backbone: Vec<(String, Option<DispatchId>)>,
    ) -> Result<Self, SessionError> {
        let any: SocketAddr = ([0, 0, 0, 0], 0).into();
        let endpoint = Endpoint::bind(any, identity_of(&key)?)?;
        Self::with_endpoint(key, endpoint, backbone)
    }

    /// A session over an existing endpoint (a host's own).
    pub fn with_endpoint(
        key: Arc<KeyPair>,
        endpoint: Endpoint,
        backbone: Vec<(String, Option<DispatchId>)>,
    ) -> Result<Self, SessionError> {
        let dispatch = DispatchClient::with_keys(endpoint.clone(), backbone)?;
        Ok(Self {
            key,
            endpoint,
            dispatch,
            hosts: std::sync::Mutex::default(),
        })
    }

    /// The dispatch units known, with keys learned on first contact.
    pub fn dispatch_units(&self) -> Vec<(String, Option<DispatchId>)> {
        self.dispatch.units()
    }

    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Adds dispatch units a lease answer named.
    pub fn learn_units(&self, units: &[(DispatchId, String)]) {
        self.dispatch.learn(units);
    }

    /// One request to some dispatch unit of the backbone.
    pub async fn dispatch(&self, req: &DispatchRequest) -> Result<DispatchResponse, SessionError> {
        Ok(self.dispatch.request(req).await?)
    }

    /// A connection to host `host` at `addr`, reused if open.
    pub async fn connect(&self, addr: &str, host: HostId) -> Result<Connection, SessionError> {
        let sock: SocketAddr = addr.parse().map_err(|source| SessionError::HostAddress {
            addr: addr.to_owned(),
            source,
        })?;
        let slot = self.slot(sock);
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref()
            && conn.peer_key() == host.0
            && conn.quinn().close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let conn = self.endpoint.connect(sock, host.0).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn slot(&self, sock: SocketAddr) -> HostSlot {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        // Slots of addresses with no connection left are dropped as new
        // ones come, so the table stays as small as the hosts in use.
        if hosts.len() >= HOST_SLOTS_PRUNE_AT {
            hosts.retain(|_, s| {
                Arc::strong_count(s) > 1 || s.try_lock().map(|c| c.is_some()).unwrap_or(true)
            });
        }
        hosts.entry(sock).or_default().clone()
    }

    /// Forgets the connection to `addr` (after it failed).
    pub async fn drop_connection(&self, addr: &str) {
        if let Ok(sock) = addr.parse::<SocketAddr>() {
            let slot = self
                .hosts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&sock);
            if let Some(slot) = slot {
                // A dial in progress keeps its slot; a later one starts a
                // new slot, so nothing waits for this lock here.
                if let Ok(mut conn) = slot.try_lock() {
                    *conn = None;
                }
            }
        }
    }

    /// One request to host `host` at `addr`.
    pub async fn host_request(
        &self,
        addr: &str,
        host: HostId,
        req: &HostRequest,
    ) -> Result<HostResponse, SessionError> {
        let conn = self.connect(addr, host).await?;
        let got = conn
            .request(req, MESSAGE_BYTES_MAX, HOST_REQUEST_TIMEOUT)
            .await;
        if matches!(&got, Err(e) if !matches!(e, NetError::Remote(_))) {
            self.drop_connection(addr).await;
        }
        Ok(got?)
    }

    /// Closes the endpoint, letting peers see a clean close.
    pub async fn close(&self) {
        self.endpoint.close();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}

/// A fresh mail id: 32 hex characters of OS randomness. Ids need to be
/// unique, not secret; delivery is idempotent by id, so two mails must
/// never share one.
pub fn new_mail_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Milliseconds since the Unix epoch by this machine's clock: the one
/// place a client reads the wall clock (for the freshness window of the
/// envelopes it signs).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
