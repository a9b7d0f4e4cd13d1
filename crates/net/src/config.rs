//! Transport tuning in one place, with units in the names and defaults sized
//! for DEM: long-lived host-to-host connections kept warm by keep-alives,
//! bulk transfers in ~1 MiB chunks, and hard caps on what one peer can make
//! a server hold.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, VarInt};

use super::frame::FRAME_BYTES_MAX;
use super::{NetError, Result};

/// Knobs of the QUIC transport. `Default` gives the values documented on
/// each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// A connection silent this long is dropped (default 30 s).
    pub idle_timeout_ms: u64,
    /// Send a keep-alive after this much silence, so that idle but wanted
    /// connections (and NAT mappings) survive (default 5 s; 0 = off).
    pub keep_alive_interval_ms: u64,
    /// Give up on a handshake after this long (default 10 s).
    pub connect_timeout_ms: u64,
    /// Bytes a peer may have in flight on one stream: two 1 MiB chunks plus
    /// framing, so a chunked transfer never stalls on a full window (default
    /// 2 MiB + 64 KiB).
    pub stream_receive_window_bytes: u64,
    /// Bytes a peer may have in flight over all streams of one connection
    /// (default 8 MiB).
    pub connection_receive_window_bytes: u64,
    /// Bytes we buffer for sending per connection (default 8 MiB).
    pub send_window_bytes: u64,
    /// Bidirectional streams one peer may have open at once; also the
    /// number of requests [`serve`](super::serve) handles concurrently per
    /// connection (default 64).
    pub streams_per_connection_max: u32,
    /// Connections [`serve`](super::serve) handles at once; more are
    /// refused (default 1024).
    pub connections_max: usize,
    /// Connections from one IP address at once, handshakes included;
    /// more are refused, so one machine cannot take every slot (default
    /// 64).
    pub connections_per_address_max: usize,
    /// Connections of one peer key at once, counted once its handshake
    /// proved the key; more are closed (default 32).
    pub connections_per_peer_max: usize,
    /// Handshakes in progress at once; more are refused (default 256).
    pub handshakes_max: usize,
    /// Above this many handshakes in progress, a client that has not
    /// proven its address gets a QUIC Retry first, so spoofed floods cost
    /// no handshake state (default 32).
    pub retry_above_handshakes: usize,
    /// The largest request frame [`serve`](super::serve) accepts (default
    /// [`FRAME_BYTES_MAX`]).
    pub request_bytes_max: usize,
    /// How long [`serve`](super::serve) waits for a request frame after a
    /// stream opens, so that idle streams cannot pin handler slots (default
    /// 10 s).
    pub request_read_timeout_ms: u64,
    /// The UDP socket's receive and send buffers (default 4 MiB; the
    /// kernel caps them, on Linux at `net.core.rmem_max`/`wmem_max`). The
    /// kernel's usual 208 KiB holds a quarter of a millisecond of a bulk
    /// transfer: a receiver that is off its core for longer drops
    /// datagrams, and every loss halves the sender's congestion window.
    pub socket_buffer_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30_000,
            keep_alive_interval_ms: 5_000,
            connect_timeout_ms: 10_000,
            stream_receive_window_bytes: 2 * 1024 * 1024 + 64 * 1024,
            connection_receive_window_bytes: 8 * 1024 * 1024,
            send_window_bytes: 8 * 1024 * 1024,
            streams_per_connection_max: 64,
            connections_max: 1024,
            connections_per_address_max: 64,
            connections_per_peer_max: 32,
            handshakes_max: 256,
            retry_above_handshakes: 32,
            request_bytes_max: FRAME_BYTES_MAX,
            request_read_timeout_ms: 10_000,
            socket_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

impl TransportConfig {
    /// The quinn transport parameters for these settings.
    pub(crate) fn quinn(&self) -> Result<Arc<quinn::TransportConfig>> {
        let var = |name: &'static str, v: u64| {
            VarInt::from_u64(v).map_err(|_| NetError::SettingTooLarge { name, value: v })
        };
        let idle =
            IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms)).map_err(|_| {
                NetError::SettingTooLarge {
                    name: "idle_timeout_ms",
                    value: self.idle_timeout_ms,
                }
            })?;
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(
                (self.keep_alive_interval_ms > 0)
                    .then(|| Duration::from_millis(self.keep_alive_interval_ms)),
            )
            .stream_receive_window(var(
                "stream_receive_window_bytes",
                self.stream_receive_window_bytes,
            )?)
            .receive_window(var(
                "connection_receive_window_bytes",
                self.connection_receive_window_bytes,
            )?)
            .send_window(self.send_window_bytes)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.streams_per_connection_max))
            // Every exchange is request/response on a bidirectional stream;
            // unidirectional streams would only be a way to waste our state.
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        Ok(Arc::new(t))
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn request_read_timeout(&self) -> Duration {
        Duration::from_millis(self.request_read_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_absurd_values_are_refused() {
        assert!(TransportConfig::default().quinn().is_ok());
        let bad = TransportConfig {
            idle_timeout_ms: u64::MAX,
            ..TransportConfig::default()
        };
        assert!(matches!(bad.quinn(), Err(NetError::SettingTooLarge { .. })));
    }
}
