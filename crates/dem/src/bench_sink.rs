//! The raw-QUIC baselines of `dem bench net`: a hidden `dem bench net-sink`
//! process that reads a stream of raw frames and answers with the byte
//! count, and the sending side that times such a transfer.
//!
//! It uses the same transport as a mailbox move (the `net` endpoint, its
//! default transport settings, a request frame followed by ~1 MiB raw
//! frames on one stream, one answer frame after the end), minus everything
//! DEM does with the bytes, so `move_ms / raw_quic_ms` is the cost of the
//! move itself over the wire cost of its bytes.
//!
//! A durable `Put` also writes the bytes to a file in the sink's data dir
//! as they arrive, the way a move's target stages a snapshot (the store's
//! `SnapshotStaging` on a blocking thread, fed through the same short
//! queue), and fsyncs it before answering. That is the least any move must do,
//! since the target persists before it acknowledges: `raw_quic_durable_ms`
//! is the floor of `move_ms` on the machine the bench runs on.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use dem_client::identity_of;
use dem_identity::KeyPair;
use dem_net::frame::CHUNK_BYTES;
use dem_net::{
    Connection, Endpoint, Exchange, FRAME_BYTES_MAX, NetError, WireError, read_frame,
    read_raw_frame, write_frame, write_raw_frame,
};
use dem_store::SnapshotStaging;

/// Chunks queued for the file writer, as a move's target queues them.
const WRITE_CHUNKS_QUEUED: usize = 4;

/// The one request the sink understands: raw frames of `bytes` in total
/// follow on the stream; `durable` asks for them on disk before the answer.
#[derive(Debug, Serialize, Deserialize)]
struct Put {
    bytes: u64,
    durable: bool,
}

/// Binds `listen`, prints `sink <key-hex> listening on <addr>` and counts
/// the bytes of every `Put` until killed; durable ones are written to a
/// file in `data` (removed after the answer).
pub async fn serve(listen: SocketAddr, data: PathBuf) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    let endpoint = Endpoint::bind(listen, identity_of(&key)?)?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
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
    dem_net::serve(endpoint, move |put: Put, mut ex: Exchange| {
        let data = data.clone();
        async move {
            let got = match put.durable {
                true => receive_durably(&mut ex, &data).await,
                false => receive(&mut ex).await,
            };
            let got = match got {
                Ok(got) if got == put.bytes => got,
                Ok(got) => {
                    let msg = format!("got {got} bytes of {}", put.bytes);
                    return ex
                        .reply_err(&WireError::new(WireError::BAD_REQUEST, msg))
                        .await;
                }
                Err(e) => {
                    let e = WireError::new(WireError::INTERNAL, format!("{e:#}"));
                    return ex.reply_err(&e).await;
                }
            };
            ex.reply(&got).await
        }
    })
    .await;
    Ok(())
}

async fn receive(ex: &mut Exchange) -> anyhow::Result<u64> {
    let mut got = 0u64;
    while let Some(chunk) = read_raw_frame(&mut ex.recv, FRAME_BYTES_MAX).await? {
        got += chunk.len() as u64;
    }
    Ok(got)
}

/// Writes the frames to a new file in `dir` as they arrive; durable when
/// it returns.
async fn receive_durably(ex: &mut Exchange, dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut staging = SnapshotStaging::create(dir)?;
    let (chunks, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_CHUNKS_QUEUED);
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            staging.write(&chunk)?;
        }
        let written = staging.len();
        // Durable, unnamed: the file goes when the staged handle drops.
        staging.finish([0; 32])?;
        anyhow::Ok(written)
    });
    while let Some(chunk) = read_raw_frame(&mut ex.recv, FRAME_BYTES_MAX).await? {
        if chunks.send(chunk).await.is_err() {
            break;
        }
    }
    drop(chunks);
    writer.await.context("the file writer")?
}

/// The median times of sending `bytes` to the sink as they are and
/// written durably, three rounds each on one connection, alternating so a
/// noisy moment hits both alike.
pub async fn raw_transfers(addr: &str, bytes: &[u8]) -> anyhow::Result<(Duration, Duration)> {
    let sender = RawSender::connect(addr).await?;
    let (mut plain, mut durable) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(sender.send(bytes, false).await?);
        durable.push(sender.send(bytes, true).await?);
    }
    sender.close();
    Ok((median(plain)?, median(durable)?))
}

fn median(mut times: Vec<Duration>) -> anyhow::Result<Duration> {
    times.sort();
    times
        .get(times.len() / 2)
        .copied()
        .context("no rounds timed")
}

/// A connection to a sink, set up before anything is timed.
struct RawSender {
    endpoint: Endpoint,
    conn: Connection,
}

impl RawSender {
    pub async fn connect(addr: &str) -> anyhow::Result<RawSender> {
        let sock: SocketAddr = addr.parse().context("sink address")?;
        let key = KeyPair::generate()?;
        let endpoint = Endpoint::bind(([127, 0, 0, 1], 0).into(), identity_of(&key)?)?;
        let (conn, _) = endpoint.connect_unpinned(sock).await?;
        Ok(RawSender { endpoint, conn })
    }

    /// Sends `bytes` in [`CHUNK_BYTES`] raw frames on one new stream; the
    /// time from opening the stream to the sink's answer.
    pub async fn send(&self, bytes: &[u8], durable: bool) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let (mut send, mut recv) = self.conn.open_stream().await?;
        let put = Put {
            bytes: bytes.len() as u64,
            durable,
        };
        write_frame(&mut send, &put).await?;
        for chunk in bytes.chunks(CHUNK_BYTES) {
            write_raw_frame(&mut send, chunk).await?;
        }
        send.finish().map_err(NetError::from)?;
        let answer: Option<Result<u64, WireError>> = read_frame(&mut recv, 1024).await?;
        match answer {
            Some(Ok(n)) if n == bytes.len() as u64 => Ok(t.elapsed()),
            other => bail!("unexpected answer from the sink: {other:?}"),
        }
    }

    pub fn close(self) {
        drop(self.conn);
        self.endpoint.close();
    }
}
