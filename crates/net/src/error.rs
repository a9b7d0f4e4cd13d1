//! The transport's error types: [`NetError`] for everything that can go
//! wrong locally or on the wire, and [`WireError`], the small generic error
//! a server sends back in place of a response so that the client learns why
//! its request was refused instead of seeing a bare closed stream.

use std::io;
use std::net::SocketAddr;

pub use dem_proto::{ErrorCode, WireError};

/// What went wrong in the transport.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The UDP socket could not be bound.
    #[error("cannot bind QUIC endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The identity key could not be encoded as PKCS#8 for TLS.
    #[error("bad identity: cannot encode the key as PKCS#8: {0}")]
    KeyEncoding(#[source] ed25519_dalek::pkcs8::Error),
    /// rcgen could not build or sign the identity's certificate.
    #[error("bad identity: cannot build its certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The identity's own certificate fails the checks peers apply.
    #[error("bad identity: its own certificate is invalid: {0}")]
    OwnCertificate(#[source] rustls::Error),
    /// The identity's own certificate names another key than its own.
    #[error("bad identity: its certificate names another key")]
    OwnCertificateKey,
    /// rustls refused the TLS configuration.
    #[error("bad transport configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration offers no cipher suite QUIC can start with.
    #[error("bad transport configuration: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A transport setting does not fit QUIC's encoding.
    #[error("bad transport configuration: {name} {value} is too large")]
    SettingTooLarge { name: &'static str, value: u64 },
    /// The endpoint's socket could not say where it is bound.
    #[error("cannot read the endpoint's local address: {0}")]
    LocalAddr(#[source] io::Error),
    /// quinn refused to start a connection (endpoint closed, bad address...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    /// The peer speaks another protocol version: no common ALPN id.
    #[error("{addr} does not speak {ours} (no common ALPN protocol)")]
    ProtocolMismatch { addr: SocketAddr, ours: String },
    /// The peer presented a valid certificate for another key than the
    /// pinned one.
    #[error("{addr} presented key {presented}, expected {expected}")]
    KeyMismatch {
        addr: SocketAddr,
        expected: String,
        presented: String,
    },
    /// The peer's certificate is not a valid self-signed ed25519 one.
    #[error("{addr} presented an unacceptable certificate: {reason}")]
    PeerCertRejected { addr: SocketAddr, reason: String },
    /// The QUIC/TLS handshake failed for another reason.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectionError,
    },
    /// The connection was closed or lost.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed (the peer stopped it, or the connection
    /// went away).
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from a stream failed (the peer reset it, or the connection
    /// went away).
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream was already finished or reset locally.
    #[error("stream already closed: {0}")]
    StreamClosed(#[from] quinn::ClosedStream),
    /// The stream ended in the middle of a frame.
    #[error("stream ended after {got} of {want} bytes of a frame")]
    Truncated { got: usize, want: usize },
    /// The stream ended where a frame was required (e.g. the response).
    #[error("stream ended before the expected frame")]
    EndOfStream,
    /// A frame is larger than the limit in force.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A frame is not valid MessagePack for the expected type.
    #[error("cannot decode frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// An operation did not finish in time.
    #[error("timed out after {ms} ms")]
    Timeout { ms: u64 },
    /// The server answered with an error instead of a response.
    #[error("peer refused the request: {0}")]
    Remote(WireError),
}
