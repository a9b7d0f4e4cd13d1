//! Attachment transfers on the host: `AttachmentPut` (a user's upload or a
//! leaving holder's move) and `AttachmentCopy` (a new replica from a listed
//! holder) take chunk frames into an `Upload` (checked chunk by chunk, then
//! as a whole); after a put the host records the holder set and, for an
//! upload, has it copied to R hosts (`attachment_keeper`). `AttachmentGet`
//! streams verified chunks of a range back. File I/O runs in `spawn_blocking`; a chunk frame
//! is at most `CHUNK_BYTES`, and the number of chunks follows from the size
//! announced up front (at most `ATTACHMENT_BYTES_MAX`).

use std::sync::Arc;

use super::Node;
use super::serve::internal;
use crate::attachments::{self, BeginError, CHUNK_BYTES};
use crate::dispatch::AttachmentId;
use crate::identity::HostId;
use crate::net::{Exchange, Result, WireError, read_raw_frame, write_raw_frame};
use crate::proto::HostResponse;

/// How taking an attachment's chunks ended.
enum Received {
    /// The whole content is durable here.
    Stored,
    /// It already was: nothing was sent.
    AlreadyStored,
    /// Refused, and the refusal was answered.
    Refused,
}

impl Node {
    /// `AttachmentPut`: a user uploading, or a leaving holder moving its
    /// copy here. Once the content is durable here, the listing is updated
    /// ([`holders_after_put`]); an upload is then copied to more hosts and
    /// acknowledged once W hold it.
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
        let sender = HostId(ex.peer_key);
        let answer = match self
            .receive_attachment(&id, size_bytes, name, media_type, &mut ex)
            .await?
        {
            Received::Refused => return Ok(()),
            Received::AlreadyStored => HostResponse::AlreadyStored,
            Received::Stored => HostResponse::Done,
        };
        match self.clone().settle_put(&id, sender).await {
            Ok(()) => {
                tracing::info!(attachment = %id, size_bytes, "attachment stored");
                ex.reply(&answer).await
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "stored, but not yet on enough hosts");
                ex.reply_err(&e).await
            }
        }
    }

    /// `AttachmentCopy`: another replica from a listed holder, which
    /// records the holder set itself.
    pub(super) async fn attachment_copy_in(
        self: Arc<Self>,
        id: AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
        mut ex: Exchange,
    ) -> Result<()> {
        let sender = HostId(ex.peer_key);
        let listed = match self.attachment_lookup(&id).await {
            Ok(found) => found.is_some_and(|f| f.hosts.iter().any(|h| h.host == sender)),
            Err(e) => return ex.reply_err(&e).await,
        };
        if !listed {
            let e = WireError::new(
                WireError::FORBIDDEN,
                format!("host {sender} is not listed as a holder of attachment {id}"),
            );
            return ex.reply_err(&e).await;
        }
        let answer = match self
            .receive_attachment(&id, size_bytes, name, media_type, &mut ex)
            .await?
        {
            Received::Refused => return Ok(()),
            Received::AlreadyStored => HostResponse::AlreadyStored,
            Received::Stored => HostResponse::Done,
        };
        tracing::debug!(attachment = %id, from = %sender.short(), "attachment replica stored");
        ex.reply(&answer).await
    }

    /// Takes an attachment's chunk frames into the store: answers `Done`
    /// (send the chunks) or `AlreadyStored`, and answers refusals itself.
    /// The final answer is the caller's.
    async fn receive_attachment(
        &self,
        id: &AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
        ex: &mut Exchange,
    ) -> Result<Received> {
        let Ok(local) = attachments::AttachmentId::parse(id.as_str()) else {
            ex.reply_err(&WireError::new(WireError::BAD_REQUEST, "bad attachment id"))
                .await?;
            return Ok(Received::Refused);
        };
        let store = self.attachments.clone();
        let begun = tokio::task::spawn_blocking(move || {
            store.begin_upload(local, size_bytes, name, media_type)
        })
        .await;
        let mut upload = match begun {
            Ok(Ok(upload)) => upload,
            Ok(Err(BeginError::AlreadyStored(_))) => {
                self.attachment_arrived(id);
                return Ok(Received::AlreadyStored);
            }
            Ok(Err(e)) => {
                ex.reply_err(&WireError::new(WireError::BAD_REQUEST, e.to_string()))
                    .await?;
                return Ok(Received::Refused);
            }
            Err(e) => {
                ex.reply_err(&internal(e)).await?;
                return Ok(Received::Refused);
            }
        };
        ex.begin_reply(&HostResponse::Done).await?;
        let chunks = upload.chunk_count();
        for index in 0..chunks {
            let Some(bytes) = read_raw_frame(&mut ex.recv, CHUNK_BYTES as usize).await? else {
                let e = WireError::new(
                    WireError::BAD_REQUEST,
                    format!("the upload ended after {index} of {chunks} chunks"),
                );
                ex.reply_err(&e).await?;
                return Ok(Received::Refused);
            };
            let written = tokio::task::spawn_blocking(move || {
                let r = upload.write_chunk(index, &bytes);
                (upload, r)
            })
            .await;
            match written {
                Ok((u, Ok(()))) => upload = u,
                Ok((_, Err(e))) => {
                    ex.reply_err(&WireError::new(WireError::BAD_REQUEST, e.to_string()))
                        .await?;
                    return Ok(Received::Refused);
                }
                Err(e) => {
                    ex.reply_err(&internal(e)).await?;
                    return Ok(Received::Refused);
                }
            }
        }
        let refusal = match tokio::task::spawn_blocking(move || upload.finish()).await {
            Ok(Ok(_meta)) => {
                self.attachment_arrived(id);
                return Ok(Received::Stored);
            }
            Ok(Err(e)) => WireError::new(WireError::BAD_REQUEST, e.to_string()),
            Err(e) => internal(e),
        };
        ex.reply_err(&refusal).await?;
        Ok(Received::Refused)
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
