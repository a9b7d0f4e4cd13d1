//! DEM's QUIC transport: how hosts, dispatch units and clients reach each
//! other.
//!
//! Everything travels over QUIC (quinn + rustls, TLS 1.3 only) with the ALPN
//! protocol id [`ALPN`] (`dem/1`). ALPN doubles as the protocol version
//! check: a peer that speaks another version (say `dem/2`) offers an ALPN we
//! do not, so the TLS handshake fails with `no_application_protocol` and the
//! caller gets [`NetError::ProtocolMismatch`] instead of garbled messages
//! later. A new wire version means a new ALPN id, and a node that speaks both
//! lists both.
//!
//! There is no certificate authority. Every node is named by an ed25519 key
//! ([`Identity`]) and presents a certificate self-signed with that key; a
//! peer *pins* the key it expects, as libp2p and iroh do
//! ([`Endpoint::connect`]). First contact with an address whose key is not
//! known yet goes through the deliberately separate
//! [`Endpoint::connect_unpinned`] (trust on first use). Clients present a
//! self-signed certificate too, so every [`Connection`] knows the peer's key
//! ([`Connection::peer_key`]); what that key may do is the application's
//! business.
//!
//! On the wire, one bidirectional stream carries one exchange: a request is
//! one length-prefixed (u32 big-endian) MessagePack frame, the answer is one
//! frame holding `Result<Resp, WireError>`, and bulk transfers continue as a
//! sequence of bounded frames on the same stream, paced by QUIC flow control
//! ([`frame`]). The transport is generic over message types: it never knows
//! DEM's messages. [`serve`] runs the accept loops with bounded concurrency.

mod admission;
mod config;
mod endpoint;
mod error;
pub mod frame;
mod server;
mod tls;

pub use admission::{ConnectionStats, RefusalReason};
pub use config::TransportConfig;
pub use endpoint::{Connection, Endpoint, Incoming};
pub use error::{ErrorCode, NetError, WireError};
pub use frame::{
    FRAME_BYTES_MAX, FrameBatch, FrameReader, read_frame, read_raw_frame, write_frame,
    write_raw_frame,
};
pub use quinn::{RecvStream, SendStream};
pub use server::{Exchange, serve};
pub use tls::{ED25519_KEY_BYTES, Identity};

/// The ALPN protocol id, and so the wire protocol version, this build speaks.
pub const ALPN: &[u8] = b"dem/1";

/// Result of a transport operation.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Formats a key as lower-case hex for errors and logs.
pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
