//! Attachment transfers on the host: `AttachmentPut` takes chunk frames
//! into an `Upload` (checked chunk by chunk, then as a whole) and tells the
//! dispatch unit it holds the attachment; `AttachmentGet` streams verified
//! chunks of a range back. File I/O runs in `spawn_blocking`; a chunk frame
//! is at most `CHUNK_BYTES`, and the number of chunks follows from the size
//! announced up front (at most `ATTACHMENT_BYTES_MAX`).

use std::sync::Arc;

use super::Node;
use super::serve::internal;
use crate::attachments::{self, BeginError, CHUNK_BYTES};
use crate::dispatch::{AttachmentId, ObjectRef};
use crate::identity::Epoch;
use crate::net::{Exchange, Result, WireError, read_raw_frame, write_raw_frame};
use crate::proto::{DispatchRequest, DispatchResponse, HostResponse};

impl Node {
    /// The epoch to report holding `id` at: one past the recorded one (an
    /// attachment moving here from a leaving host), 1 for a new one.
    async fn attachment_epoch(&self, id: &AttachmentId) -> Epoch {
        match self
            .session
            .dispatch(&DispatchRequest::LookupAttachment { id: id.clone() })
            .await
        {
            Ok(DispatchResponse::Attachment(found)) => found.epoch.next(),
            _ => Epoch(1),
        }
    }

    pub(super) async fn attachment_put(
        self: Arc<Self>,
        id: AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
        mut ex: Exchange,
    ) -> Result<()> {
        let span =
            tracing::debug_span!("attachment-put", attachment = %id, host = %self.id.short());
        let _e = span.enter();
        let Ok(local) = attachments::AttachmentId::parse(id.as_str()) else {
            return ex
                .reply_err(&WireError::new(WireError::BAD_REQUEST, "bad attachment id"))
                .await;
        };
        let store = self.attachments.clone();
        let begun = tokio::task::spawn_blocking(move || {
            store.begin_upload(local, size_bytes, name, media_type)
        })
        .await;
        let mut upload = match begun {
            Ok(Ok(upload)) => upload,
            Ok(Err(BeginError::AlreadyStored(_))) => {
                // Make sure the dispatch unit knows; it may not (a restart).
                let epoch = self.attachment_epoch(&id).await;
                let _ = self.location_update(ObjectRef::Attachment(id), epoch).await;
                return ex.reply(&HostResponse::AlreadyStored).await;
            }
            Ok(Err(e)) => {
                return ex
                    .reply_err(&WireError::new(WireError::BAD_REQUEST, e.to_string()))
                    .await;
            }
            Err(e) => return ex.reply_err(&internal(e)).await,
        };
        ex.begin_reply(&HostResponse::Done).await?;
        let chunks = upload.chunk_count();
        for index in 0..chunks {
            let Some(bytes) = read_raw_frame(&mut ex.recv, CHUNK_BYTES as usize).await? else {
                return ex
                    .reply_err(&WireError::new(
                        WireError::BAD_REQUEST,
                        format!("the upload ended after {index} of {chunks} chunks"),
                    ))
                    .await;
            };
            let written = tokio::task::spawn_blocking(move || {
                let r = upload.write_chunk(index, &bytes);
                (upload, r)
            })
            .await;
            match written {
                Ok((u, Ok(()))) => upload = u,
                Ok((_, Err(e))) => {
                    return ex
                        .reply_err(&WireError::new(WireError::BAD_REQUEST, e.to_string()))
                        .await;
                }
                Err(e) => return ex.reply_err(&internal(e)).await,
            }
        }
        match tokio::task::spawn_blocking(move || upload.finish()).await {
            Ok(Ok(_meta)) => {}
            Ok(Err(e)) => {
                return ex
                    .reply_err(&WireError::new(WireError::BAD_REQUEST, e.to_string()))
                    .await;
            }
            Err(e) => return ex.reply_err(&internal(e)).await,
        }
        let epoch = self.attachment_epoch(&id).await;
        if let Err(e) = self
            .location_update(ObjectRef::Attachment(id.clone()), epoch)
            .await
        {
            tracing::warn!(error = %e, "stored, but the dispatch unit did not record it");
            return ex
                .reply_err(&internal(format!("location update: {e}")))
                .await;
        }
        tracing::info!(attachment = %id, size_bytes, "attachment stored");
        ex.reply(&HostResponse::Done).await
    }

    pub(super) async fn attachment_get(
        self: Arc<Self>,
        id: AttachmentId,
        start: u64,
        end: u64,
        mut ex: Exchange,
    ) -> Result<()> {
        let Ok(local) = attachments::AttachmentId::parse(id.as_str()) else {
            return ex
                .reply_err(&WireError::new(WireError::BAD_REQUEST, "bad attachment id"))
                .await;
        };
        let store = self.attachments.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let size = store.meta(&local)?.size_bytes;
            // "To the end" arrives as u64::MAX: clamp to the size.
            store.read_range(&local, start.min(size), end.min(size))
        })
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return ex
                    .reply_err(&WireError::new(
                        crate::client::mailbox_ref::NOT_HERE,
                        e.to_string(),
                    ))
                    .await;
            }
            Err(e) => return ex.reply_err(&internal(e)).await,
        };
        let size = end.min(stream.meta().size_bytes) - start.min(stream.meta().size_bytes);
        ex.begin_reply(&HostResponse::Attachment { size_bytes: size })
            .await?;
        loop {
            let next = tokio::task::spawn_blocking(move || {
                let chunk = stream.next();
                (stream, chunk)
            })
            .await;
            let (s, chunk) = match next {
                Ok(x) => x,
                Err(_) => break,
            };
            stream = s;
            match chunk {
                Some(Ok(chunk)) => write_raw_frame(&mut ex.send, &chunk.bytes).await?,
                Some(Err(e)) => {
                    // A damaged chunk: cut the stream so the client sees a
                    // short transfer rather than bad bytes.
                    tracing::warn!(attachment = %id, error = %e, "attachment unreadable");
                    let _ = ex.send.reset(quinn::VarInt::from_u32(1));
                    return Ok(());
                }
                None => break,
            }
        }
        ex.finish()
    }
}
