//! The client's side of a lookup pipeline (`dispatch::pipeline`): one
//! stream per unit connection, shared by every lookup in flight on it.
//!
//! A task owns the stream. Lookups queue to it; it writes each as a frame
//! and hands its reply slot to a reader that matches answers to lookups
//! in order, which is the order the unit answers in. When anything fails,
//! every lookup waiting on the pipe gets an error and the task ends; the
//! next lookup opens a new pipe (the caller retries on a fresh connection
//! as for any failed request). After a quiet spell the task closes the
//! pipe itself, before the unit would, finishing what is already queued.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use dem_net::{Connection, NetError, read_frame, write_frame};
use dem_proto::dispatch::{PIPELINE_CLIENT_IDLE_MS, PipelineAnswer};
use dem_proto::{DispatchRequest, DispatchResponse, MESSAGE_BYTES_MAX};

/// Lookups queued for the writer; callers wait beyond this.
const QUEUE_MAX: usize = 256;

type Answer = Result<DispatchResponse, NetError>;

struct Queued {
    req: DispatchRequest,
    reply: oneshot::Sender<Answer>,
}

/// A pipeline on one connection.
pub(super) struct Pipe {
    conn_id: usize,
    tx: mpsc::Sender<Queued>,
}

impl Pipe {
    pub(super) fn open(conn: &Connection) -> Pipe {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(conn.clone(), rx));
        Pipe {
            conn_id: conn.quinn().stable_id(),
            tx,
        }
    }

    /// Whether this pipe runs on `conn` and still takes lookups.
    pub(super) fn serves(&self, conn: &Connection) -> bool {
        self.conn_id == conn.quinn().stable_id() && !self.tx.is_closed()
    }

    /// Sends one lookup down the pipe and waits for its answer.
    pub(super) async fn lookup(&self, req: &DispatchRequest, timeout: Duration) -> Answer {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            let queued = Queued {
                req: req.clone(),
                reply,
            };
            self.tx
                .send(queued)
                .await
                .map_err(|_| NetError::EndOfStream)?;
            answer.await.map_err(|_| NetError::EndOfStream)?
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(NetError::Timeout {
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }))
    }
}

async fn run(conn: Connection, mut rx: mpsc::Receiver<Queued>) {
    let (mut send, mut recv) = match conn.open_stream().await {
        Ok(streams) => streams,
        Err(e) => {
            tracing::debug!(error = %e, "opening a dispatch pipeline");
            return;
        }
    };
    if let Err(e) = write_frame(&mut send, &DispatchRequest::Pipeline).await {
        tracing::debug!(error = %e, "opening a dispatch pipeline");
        return;
    }
    let (pending_tx, mut pending_rx) = mpsc::unbounded_channel::<oneshot::Sender<Answer>>();
    let idle = Duration::from_millis(PIPELINE_CLIENT_IDLE_MS);
    let writer = async move {
        loop {
            let queued = match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(q)) => q,
                Ok(None) => break,
                // Quiet: take no more, but send what raced in.
                Err(_) => {
                    rx.close();
                    continue;
                }
            };
            // Registered before it is written, so its answer always finds
            // it; if the write fails, the reader fails it.
            if pending_tx.send(queued.reply).is_err() {
                break;
            }
            if write_frame(&mut send, &queued.req).await.is_err() {
                let _ = send.reset(0u32.into());
                break;
            }
        }
        let _ = send.finish();
    };
    let reader = async move {
        while let Some(reply) = pending_rx.recv().await {
            let answer = match read_frame::<PipelineAnswer>(&mut recv, MESSAGE_BYTES_MAX).await {
                Ok(Some(Ok(resp))) => Ok(resp),
                Ok(Some(Err(wire))) => Err(NetError::Remote(wire)),
                Ok(None) => Err(NetError::EndOfStream),
                Err(e) => Err(e),
            };
            let broken = matches!(&answer, Err(e) if !matches!(e, NetError::Remote(_)));
            let _ = reply.send(answer);
            if broken {
                break;
            }
        }
    };
    tokio::join!(writer, reader);
}
