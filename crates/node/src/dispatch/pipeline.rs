//! The unit's side of a lookup pipeline: one stream carrying many lookups,
//! each answered by one frame, in order.
//!
//! A stream per request costs the client and the unit more than a lookup
//! itself (stream setup and teardown, a task, flow-control updates), and
//! the client's own work counts when both share the cores. So a client
//! with many lookups in flight sends `DispatchRequest::Pipeline` once and
//! then its lookups as frames on the same stream (`client_pipe.rs`). Only
//! lookups are allowed: they are answered at once from the tables and
//! never wait on a save, so one request cannot hold up the ones behind it.
//! Anything else gets a refusal frame and the pipeline goes on.

use std::time::Duration;

use super::limits::{PIPELINE_FRAME_BYTES_MAX, PIPELINE_IDLE_MS};
use super::service::{Shared, now_ms};
use dem_net::{self as net, Exchange, NetError, WireError, read_frame, write_frame};
use dem_proto::DispatchRequest;

/// Answers lookups on `ex` until the client finishes its side or stays
/// idle for [`PIPELINE_IDLE_MS`].
pub(crate) async fn serve(shared: &Shared, mut ex: Exchange) -> net::Result<()> {
    let idle = Duration::from_millis(PIPELINE_IDLE_MS);
    loop {
        let read = read_frame::<DispatchRequest>(&mut ex.recv, PIPELINE_FRAME_BYTES_MAX);
        let req = match tokio::time::timeout(idle, read).await {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) | Err(_) => return ex.finish(),
            Ok(Err(e @ NetError::TooLarge { .. })) => {
                let err = WireError::new(WireError::TOO_LARGE, e.to_string());
                return ex.reply_err(&err).await;
            }
            Ok(Err(e)) => return Err(e),
        };
        let answer = if req.is_lookup() {
            let now = now_ms();
            let peer = ex.peer_key;
            // Lookups change nothing, so there is no save to wait for.
            shared
                .change(|s| {
                    let out = s.handle(now, peer, req);
                    (out.response, out.updates, out.changed)
                })
                .0
        } else {
            Err(WireError::new(
                WireError::BAD_REQUEST,
                "a pipeline carries only lookups",
            ))
        };
        write_frame(&mut ex.send, &answer).await?;
    }
}
