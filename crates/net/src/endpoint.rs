//! The QUIC endpoint and connections: one UDP socket per node that both
//! accepts connections (as a server) and opens them (as a client), and
//! connections that know the peer's key and run request/response exchanges,
//! one bidirectional stream each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream, TransportErrorCode, VarInt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::admission::ConnectionStats;
use super::frame::{read_required, write_frame};
use super::tls::{self, ED25519_KEY_BYTES, Identity, Rejection, RejectionSlot};
use super::{ALPN, NetError, Result, TransportConfig, WireError, hex};

/// The TLS alert `no_application_protocol` (RFC 8446), which a QUIC peer
/// sends as CRYPTO_ERROR 0x100 + 120 when no ALPN id matches.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Stream error code we reset a stream with when we give up on it locally.
const RESET_LOCAL_ERROR: u32 = 1;

/// A node's QUIC endpoint, serving and connecting on one socket. Cheap to
/// clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Identity,
    config: Arc<TransportConfig>,
    alpn: Arc<[u8]>,
    /// Connections its server refused, by reason.
    stats: Arc<ConnectionStats>,
}

impl Endpoint {
    /// Binds `addr` (port 0 for any) with the default [`TransportConfig`].
    /// Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, identity: Identity) -> Result<Self> {
        Self::bind_with(addr, identity, TransportConfig::default())
    }

    /// Binds `addr` with the given transport settings.
    pub fn bind_with(
        addr: SocketAddr,
        identity: Identity,
        config: TransportConfig,
    ) -> Result<Self> {
        Self::bind_alpn(addr, identity, config, ALPN)
    }

    /// Binds speaking another ALPN id: only tests need this, to play a peer
    /// of another protocol version.
    pub(crate) fn bind_alpn(
        addr: SocketAddr,
        identity: Identity,
        config: TransportConfig,
        alpn: &[u8],
    ) -> Result<Self> {
        let server = tls::server_config(&identity, &config, alpn)?;
        let bind = |source| NetError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
        size_socket_buffers(&socket, config.socket_buffer_bytes);
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
        let inner = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(bind)?;
        Ok(Self {
            inner,
            identity,
            config: Arc::new(config),
            alpn: alpn.into(),
            stats: Arc::default(),
        })
    }

    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr().map_err(NetError::LocalAddr)
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The transport settings in force.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Connections open on this endpoint, incoming and outgoing.
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    /// Connections its server ([`crate::serve`]) refused, by reason.
    pub fn connection_stats(&self) -> &ConnectionStats {
        &self.stats
    }

    pub(crate) fn connection_stats_arc(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }

    /// The next incoming connection attempt; `None` once the endpoint is
    /// closed.
    pub async fn accept(&self) -> Option<Incoming> {
        let incoming = self.inner.accept().await?;
        Some(Incoming {
            inner: incoming,
            timeout: self.config.connect_timeout(),
        })
    }

    /// Connects to `addr`, accepting only a peer whose identity key is
    /// `expected_key`. The handshake also checks the protocol version
    /// (ALPN); see [`NetError::KeyMismatch`] and
    /// [`NetError::ProtocolMismatch`].
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected_key: [u8; ED25519_KEY_BYTES],
    ) -> Result<Connection> {
        self.connect_inner(addr, Some(expected_key)).await
    }

    /// Connects to `addr` without knowing its key (trust on first use, e.g.
    /// first contact with a backbone dispatch address): any valid
    /// self-signed ed25519 certificate is accepted, and the key it carries
    /// is returned so the caller can pin it from then on. Prefer
    /// [`connect`](Self::connect) whenever the key is known.
    pub async fn connect_unpinned(
        &self,
        addr: SocketAddr,
    ) -> Result<(Connection, [u8; ED25519_KEY_BYTES])> {
        let conn = self.connect_inner(addr, None).await?;
        let key = conn.peer_key();
        Ok((conn, key))
    }

    async fn connect_inner(
        &self,
        addr: SocketAddr,
        expected: Option<[u8; ED25519_KEY_BYTES]>,
    ) -> Result<Connection> {
        let (config, rejection) =
            tls::client_config(&self.identity, expected, &self.config, &self.alpn)?;
        let connecting = self
            .inner
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(|source| NetError::Connect { addr, source })?;
        let conn = match tokio::time::timeout(self.config.connect_timeout(), connecting).await {
            Err(_) => {
                return Err(NetError::Timeout {
                    ms: self.config.connect_timeout_ms,
                });
            }
            Ok(Err(source)) => {
                return Err(self.handshake_error(addr, source, &rejection, expected));
            }
            Ok(Ok(conn)) => conn,
        };
        Connection::new(conn)
    }

    /// Turns a failed handshake into the clearest error we can tell.
    fn handshake_error(
        &self,
        addr: SocketAddr,
        source: quinn::ConnectionError,
        rejection: &RejectionSlot,
        expected: Option<[u8; ED25519_KEY_BYTES]>,
    ) -> NetError {
        let rejection = rejection.lock().ok().and_then(|mut slot| slot.take());
        match rejection {
            Some(Rejection::KeyMismatch { presented }) => {
                return NetError::KeyMismatch {
                    addr,
                    expected: expected.map(|k| hex(&k)).unwrap_or_default(),
                    presented: hex(&presented),
                };
            }
            Some(Rejection::BadCert(reason)) => return NetError::PeerCertRejected { addr, reason },
            None => {}
        }
        if let quinn::ConnectionError::ConnectionClosed(close) = &source
            && close.error_code == TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL)
        {
            return NetError::ProtocolMismatch {
                addr,
                ours: String::from_utf8_lossy(&self.alpn).into_owned(),
            };
        }
        NetError::Handshake { addr, source }
    }

    /// Closes every connection at once and stops accepting.
    pub fn close(&self) {
        self.inner.close(VarInt::from_u32(0), b"endpoint closed");
    }

    /// Waits until closed connections have told their peers, so that a
    /// process can exit without leaving them to time out.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }
}

/// Asks for `bytes` of receive and send buffer on `socket`. Best effort:
/// the kernel may cap it (the transfer still works, only with more loss
/// under load), so a refusal is logged rather than fatal.
fn size_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    let state = match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(state) => state,
        Err(e) => {
            tracing::debug!(error = %e, "cannot size the UDP buffers");
            return;
        }
    };
    if let Err(e) = state.set_recv_buffer_size(socket.into(), bytes) {
        tracing::debug!(error = %e, bytes, "the UDP receive buffer keeps its size");
    }
    if let Err(e) = state.set_send_buffer_size(socket.into(), bytes) {
        tracing::debug!(error = %e, bytes, "the UDP send buffer keeps its size");
    }
}

/// A connection attempt that reached the endpoint; the handshake has not
/// run yet.
pub struct Incoming {
    inner: quinn::Incoming,
    timeout: Duration,
}

impl Incoming {
    /// The address the attempt came from (not yet validated).
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Runs the handshake; the client must present a valid self-signed
    /// ed25519 certificate and speak our ALPN id.
    pub async fn accept(self) -> Result<Connection> {
        let addr = self.inner.remote_address();
        let connecting = self
            .inner
            .accept()
            .map_err(|source| NetError::Handshake { addr, source })?;
        match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => Err(NetError::Timeout {
                ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Ok(Err(source)) => Err(NetError::Handshake { addr, source }),
            Ok(Ok(conn)) => Connection::new(conn),
        }
    }

    /// Refuses the attempt politely (e.g. when at capacity).
    pub fn refuse(self) {
        self.inner.refuse();
    }

    /// Whether the client has proven it receives at its address (a QUIC
    /// Retry token, or a validated path).
    pub fn address_validated(&self) -> bool {
        self.inner.remote_address_validated()
    }

    /// Asks the client to prove its address with a Retry before any
    /// handshake state is kept; `false` if this attempt cannot be retried
    /// (it already carries a token), and it is refused instead.
    pub fn retry(self) -> bool {
        if !self.inner.may_retry() {
            self.inner.refuse();
            return false;
        }
        self.inner.retry().is_ok()
    }
}

/// An established connection with a peer whose key is known. Cheap to
/// clone; the connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    inner: quinn::Connection,
    peer_key: [u8; ED25519_KEY_BYTES],
}

impl Connection {
    fn new(inner: quinn::Connection) -> Result<Self> {
        // The verifiers only let ed25519 certificates through, so a missing
        // key means something is badly wrong: refuse the connection.
        let peer_key = tls::peer_key_of(&inner).ok_or_else(|| NetError::PeerCertRejected {
            addr: inner.remote_address(),
            reason: "no ed25519 certificate after handshake".into(),
        })?;
        Ok(Self { inner, peer_key })
    }

    /// The peer's identity key, from its certificate.
    pub fn peer_key(&self) -> [u8; ED25519_KEY_BYTES] {
        self.peer_key
    }

    /// The peer's current address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Sends `req` as one frame on a new stream and reads the one-frame
    /// answer, at most `max_response` bytes, all within `timeout`. A server
    /// refusal arrives as [`NetError::Remote`].
    pub async fn request<Req, Resp>(
        &self,
        req: &Req,
        max_response: usize,
        timeout: Duration,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let exchange = async {
            let (mut send, mut recv) = self.open_stream().await?;
            let written = match write_frame(&mut send, &req).await {
                Ok(()) => send.finish().map_err(NetError::from),
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => {}
                // A server that refuses a request says why, then stops
                // reading: prefer its answer to our write error.
                Err(e @ NetError::Write(quinn::WriteError::Stopped(_))) => {
                    return match read_required::<Result<Resp, WireError>>(&mut recv, max_response)
                        .await
                    {
                        Ok(Err(wire)) => Err(NetError::Remote(wire)),
                        _ => Err(e),
                    };
                }
                Err(e) => {
                    // Make sure the server sees a broken request, not an
                    // empty one. It may already be reset; that is fine.
                    let _ = send.reset(VarInt::from_u32(RESET_LOCAL_ERROR));
                    return Err(e);
                }
            }
            read_required::<Result<Resp, WireError>>(&mut recv, max_response)
                .await?
                .map_err(NetError::Remote)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout {
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Opens a stream for a streaming exchange (e.g. a request frame
    /// followed by chunk frames). Waits while the peer's stream limit is
    /// reached.
    pub async fn open_stream(&self) -> Result<(SendStream, RecvStream)> {
        Ok(self.inner.open_bi().await?)
    }

    /// The next stream the peer opened; `None` once the connection was
    /// closed by either side's application.
    pub async fn accept_stream(&self) -> Result<Option<(SendStream, RecvStream)>> {
        match self.inner.accept_bi().await {
            Ok(streams) => Ok(Some(streams)),
            Err(
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::LocallyClosed,
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Closes the connection with an application error code and reason.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.inner.close(VarInt::from_u32(code), reason);
    }

    /// Waits until the connection is closed, and says why.
    pub async fn closed(&self) -> NetError {
        self.inner.closed().await.into()
    }

    /// The underlying quinn connection, for what this wrapper lacks.
    pub fn quinn(&self) -> &quinn::Connection {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffers grow to what was asked, or to the kernel's cap.
    #[cfg(target_os = "linux")]
    #[test]
    fn socket_buffers_grow_up_to_the_kernels_cap() {
        let cap = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let state = quinn::udp::UdpSocketState::new((&socket).into()).expect("state");
        let asked = 4 * 1024 * 1024;
        size_socket_buffers(&socket, asked);
        let recv = state.recv_buffer_size((&socket).into()).expect("recv size");
        let send = state.send_buffer_size((&socket).into()).expect("send size");
        // Linux reports twice what it grants (the other half is its own
        // bookkeeping).
        assert!(recv >= asked.min(cap("rmem_max")), "receive buffer {recv}");
        assert!(send >= asked.min(cap("wmem_max")), "send buffer {send}");
    }
}
