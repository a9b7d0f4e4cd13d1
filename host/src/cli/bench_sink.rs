//! The raw-QUIC baseline of `dem bench net`: a hidden `dem bench net-sink`
//! process that reads a stream of raw frames and answers with the byte
//! count, and the sending side that times such a transfer.
//!
//! It uses the same transport as a mailbox move (the `net` endpoint, its
//! default transport settings, a request frame followed by ~1 MiB raw
//! frames on one stream, one answer frame after the end), minus everything
//! DEM does with the bytes, so `move_ms / raw_quic_ms` is the cost of the
//! move itself over the wire cost of its bytes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::client::identity_of;
use crate::identity::KeyPair;
use crate::net::frame::CHUNK_BYTES;
use crate::net::{
    Endpoint, Exchange, FRAME_BYTES_MAX, NetError, WireError, read_frame, read_raw_frame,
    write_frame, write_raw_frame,
};

/// The one request the sink understands: raw frames of `bytes` in total
/// follow on the stream.
#[derive(Debug, Serialize, Deserialize)]
struct Put {
    bytes: u64,
}

/// Binds `listen`, prints `sink <key-hex> listening on <addr>` and counts
/// the bytes of every `Put` until killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    let endpoint = Endpoint::bind(listen, identity_of(&key)?)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "sink {} listening on {}",
            key.user_id().to_hex(),
            endpoint.local_addr()?
        )?;
        out.flush()?;
    }
    crate::net::serve(endpoint, |put: Put, mut ex: Exchange| async move {
        let mut got = 0u64;
        while let Some(chunk) = read_raw_frame(&mut ex.recv, FRAME_BYTES_MAX).await? {
            got += chunk.len() as u64;
        }
        if got != put.bytes {
            let msg = format!("got {got} bytes of {}", put.bytes);
            return ex
                .reply_err(&WireError::new(WireError::BAD_REQUEST, msg))
                .await;
        }
        ex.reply(&got).await
    })
    .await;
    Ok(())
}

/// Sends `bytes` to the sink at `addr` `rounds` times over one connection
/// (set up before timing), in [`CHUNK_BYTES`] raw frames on one stream
/// each; returns the median time from opening the stream to the answer.
pub async fn raw_transfer(addr: &str, bytes: &[u8], rounds: usize) -> anyhow::Result<Duration> {
    let sock: SocketAddr = addr.parse().context("sink address")?;
    let key = KeyPair::generate()?;
    let endpoint = Endpoint::bind(([127, 0, 0, 1], 0).into(), identity_of(&key)?)?;
    let (conn, _) = endpoint.connect_unpinned(sock).await?;
    let mut times = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let (mut send, mut recv) = conn.open_stream().await?;
        write_frame(
            &mut send,
            &Put {
                bytes: bytes.len() as u64,
            },
        )
        .await?;
        for chunk in bytes.chunks(CHUNK_BYTES) {
            write_raw_frame(&mut send, chunk).await?;
        }
        send.finish().map_err(NetError::from)?;
        let answer: Option<Result<u64, WireError>> = read_frame(&mut recv, 1024).await?;
        match answer {
            Some(Ok(n)) if n == bytes.len() as u64 => times.push(t.elapsed()),
            other => bail!("unexpected answer from the sink: {other:?}"),
        }
    }
    endpoint.close();
    times.sort();
    Ok(times[times.len() / 2])
}
