//! The server loop: accepts connections and their streams concurrently,
//! reads each stream's request frame, and hands it to the application's
//! handler with the stream so the handler can answer with one frame or
//! stream a transfer.
//!
//! Limits keep one peer from starving others: at most
//! [`TransportConfig::connections_max`] connections (more are refused), of
//! which one IP address may hold
//! [`TransportConfig::connections_per_address_max`] and one peer key
//! [`TransportConfig::connections_per_peer_max`] (`admission.rs`), with a
//! QUIC Retry asked of unproven addresses while many handshakes run; at
//! most [`TransportConfig::streams_per_connection_max`] streams handled at
//! once per connection (QUIC's stream limit makes the peer wait), a request
//! frame of at most [`TransportConfig::request_bytes_max`] that must arrive
//! within [`TransportConfig::request_read_timeout_ms`]. A request that
//! breaks a limit or does not decode gets a [`WireError`] answer and only
//! its own stream is closed; every stream runs in its own task, so even a
//! panicking handler takes down nothing but its stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{RecvStream, SendStream, VarInt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::admission::{Admission, RefusalReason, Verdict};
use super::frame::{read_frame, write_frame};
use super::tls::ED25519_KEY_BYTES;
use super::{Connection, Endpoint, NetError, Result, TransportConfig, WireError};

/// Stream error code for `STOP_SENDING` when we refuse to read a request.
const STOP_REFUSED: u32 = 1;
/// Connection close code when a peer key already holds its share.
const CLOSE_PEER_LIMIT: u32 = 2;

/// The stream a request came on, as the handler sees it: who sent it, the
/// stream to answer on and, for uploads, to read further frames from. (The
/// request itself is a separate handler argument, so a handler can match
/// on it while answering.)
pub struct Exchange {
    /// The client's identity key, from its certificate.
    pub peer_key: [u8; ED25519_KEY_BYTES],
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// Where the answer goes.
    pub send: SendStream,
    /// Further frames the client sends after the request, if any.
    pub recv: RecvStream,
}

impl Exchange {
    /// Answers with one frame and finishes the stream.
    pub async fn reply<Resp: Serialize>(&mut self, response: &Resp) -> Result<()> {
        self.begin_reply(response).await?;
        self.finish()
    }

    /// Answers with an error and finishes the stream.
    pub async fn reply_err(&mut self, error: &WireError) -> Result<()> {
        write_frame(&mut self.send, &Err::<(), _>(error)).await?;
        self.finish()
    }

    /// Sends the answer frame but keeps the stream open, so that chunk
    /// frames can follow; end with [`finish`](Self::finish).
    pub async fn begin_reply<Resp: Serialize>(&mut self, response: &Resp) -> Result<()> {
        write_frame(&mut self.send, &Ok::<_, WireError>(response)).await
    }

    /// Ends the answer: the client reads the end of the stream.
    pub fn finish(&mut self) -> Result<()> {
        Ok(self.send.finish()?)
    }
}

/// Serves `endpoint` until it is closed: every stream's first frame is
/// decoded as `Req` and passed to `handler` with the [`Exchange`] it must
/// answer on (a handler that returns without answering leaves the client
/// an empty stream, which it reads as [`NetError::EndOfStream`]). Handler
/// errors are logged, not sent.
pub async fn serve<Req, F, Fut>(endpoint: Endpoint, handler: F)
where
    Req: DeserializeOwned + Send + 'static,
    F: Fn(Req, Exchange) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let config = Arc::new(endpoint.config().clone());
    let handler = Arc::new(handler);
    let connections = Arc::new(Semaphore::new(config.connections_max));
    let admission = Arc::new(Admission::new(&config));
    let stats = endpoint.connection_stats_arc();
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_addr();
        let (address, handshake) =
            match admission.incoming(remote.ip(), incoming.address_validated()) {
                Verdict::Admit(address, handshake) => (address, handshake),
                Verdict::Retry => {
                    incoming.retry();
                    continue;
                }
                Verdict::Refuse(reason) => {
                    tracing::debug!(%remote, "refusing a connection: {}", reason.why());
                    stats.refuse(reason);
                    incoming.refuse();
                    continue;
                }
            };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; refusing");
            stats.refuse(RefusalReason::Capacity);
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        let config = config.clone();
        let admission = admission.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _address = address;
            let accepted = incoming.accept().await;
            drop(handshake);
            match accepted {
                Ok(conn) => {
                    let Some(_peer) = admission.peer(conn.peer_key()) else {
                        tracing::debug!(%remote, "refusing a connection: {}", RefusalReason::Key.why());
                        stats.refuse(RefusalReason::Key);
                        conn.close(CLOSE_PEER_LIMIT, b"too many connections with this key");
                        return;
                    };
                    serve_connection(conn, handler, config).await
                }
                Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
            }
        });
    }
}

/// Handles one connection's streams until it closes.
async fn serve_connection<Req, F, Fut>(
    conn: Connection,
    handler: Arc<F>,
    config: Arc<TransportConfig>,
) where
    Req: DeserializeOwned + Send + 'static,
    F: Fn(Req, Exchange) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let streams = Arc::new(Semaphore::new(
        usize::try_from(config.streams_per_connection_max).unwrap_or(usize::MAX),
    ));
    loop {
        // Take a slot before accepting, so that at capacity we stop taking
        // streams and QUIC flow control holds the peer back.
        let Ok(permit) = streams.clone().acquire_owned().await else {
            return;
        };
        let (send, recv) = match conn.accept_stream().await {
            Ok(Some(streams)) => streams,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(remote = %conn.remote_addr(), error = %e, "connection ended");
                return;
            }
        };
        let handler = handler.clone();
        let config = config.clone();
        let peer_key = conn.peer_key();
        let remote_addr = conn.remote_addr();
        tokio::spawn(async move {
            let _permit = permit;
            serve_stream(peer_key, remote_addr, send, recv, &*handler, &config).await;
        });
    }
}

/// Reads one stream's request and runs the handler on it.
async fn serve_stream<Req, F, Fut>(
    peer_key: [u8; ED25519_KEY_BYTES],
    remote_addr: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
    handler: &F,
    config: &TransportConfig,
) where
    Req: DeserializeOwned,
    F: Fn(Req, Exchange) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let read = read_frame::<Req>(&mut recv, config.request_bytes_max);
    let refusal = match tokio::time::timeout(config.request_read_timeout(), read).await {
        Ok(Ok(Some(request))) => {
            let exchange = Exchange {
                peer_key,
                remote_addr,
                send,
                recv,
            };
            if let Err(e) = handler(request, exchange).await {
                tracing::debug!(%remote_addr, error = %e, "handler failed");
            }
            return;
        }
        // Opened and finished without a request: nothing to answer.
        Ok(Ok(None)) => return,
        Ok(Err(NetError::TooLarge { len, max })) => WireError::new(
            WireError::TOO_LARGE,
            format!("request of {len} bytes exceeds {max}"),
        ),
        Ok(Err(NetError::Decode(e))) => {
            WireError::new(WireError::BAD_REQUEST, format!("undecodable request: {e}"))
        }
        Ok(Err(e)) => {
            // Reset or truncated: the client is gone or gave up.
            tracing::debug!(%remote_addr, error = %e, "request unreadable");
            return;
        }
        Err(_) => WireError::new(WireError::TIMEOUT, "request did not arrive in time"),
    };
    tracing::debug!(%remote_addr, error = %refusal, "refusing request");
    // Answer first, then tell the client to stop sending the rest.
    let answered = match write_frame(&mut send, &Err::<(), _>(&refusal)).await {
        Ok(()) => send.finish().map_err(NetError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = answered {
        tracing::debug!(%remote_addr, error = %e, "could not send refusal");
    }
    // Already stopped or finished is fine: we are done either way.
    let _ = recv.stop(VarInt::from_u32(STOP_REFUSED));
}
