//! Attachment transfers on the host: `AttachmentPut` (a user's upload or a
//! leaving holder's move) and `AttachmentCopy` (a new replica from a listed
//! holder) take chunk frames into an `Upload` (checked chunk by chunk, then
//! as a whole); after a put the host records the holder set and, for an
//! upload, has it copied to R hosts (`attachment_keeper`). `AttachmentGet`
//! streams verified chunks of a range back. File I/O runs in `spawn_blocking`; a chunk frame
//! is at most `CHUNK_BYTES`, and the number of chunks follows from the size
//! announced up front (at most `ATTACHMENT_BYTES_MAX`).
//!
//! The sending side of a copy ([`Node::copy_attachment`]) probes the target
//! first and bounds the whole copy by its size, like the mailbox keeper's
//! copies (`sync.rs`): a cached connection to a host that crashed and
//! restarted at the same address looks open until its idle timeout, and a
//! copy sent on it would hold the upload (or the keeper round) that long.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::Node;
use super::serve::internal;
use crate::dispatch::AttachmentId;
use dem_client::SessionError;
use dem_identity::HostId;
use dem_net::{
    Exchange, NetError, Result, WireError, read_frame, read_raw_frame, write_frame, write_raw_frame,
};
use dem_proto::{HostRequest, HostResponse, MESSAGE_BYTES_MAX};
use dem_store::attachments::{self, BeginError, CHUNK_BYTES};

/// Longest the probe before a copy may wait for an answer. A live host
/// answers within milliseconds; past this the cached connection is taken
/// for stale, dropped, and the probe tried once more on a fresh one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes before a copy gives up on its target (the second one dials
/// afresh after the first timed out).
const PROBE_ATTEMPTS: u32 = 2;
const _: () = assert!(PROBE_ATTEMPTS >= 1, "a copy probes at least once");
/// A copy may take this long plus its size at [`COPY_BYTES_PER_SEC_MIN`].
const COPY_TIMEOUT_BASE: Duration = Duration::from_secs(5);
/// The slowest transfer rate a copy is allowed before it counts as hung.
const COPY_BYTES_PER_SEC_MIN: u64 = 1 << 20;

/// How long a copy of `size_bytes` may take before it counts as failed.
pub(super) fn copy_timeout(size_bytes: u64) -> Duration {
    COPY_TIMEOUT_BASE + Duration::from_secs(size_bytes / COPY_BYTES_PER_SEC_MIN)
}

/// Why the target of a copy did not show it is alive ([`Node::probe`]);
/// the last attempt's failure.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// The request failed before any answer (a refusal is an answer).
    #[error("the probe failed: {0}")]
    Failed(#[source] SessionError),
    /// No answer within the limit: the connection is taken for stale.
    #[error("no answer to a probe within {limit:?}")]
    Timeout { limit: Duration },
}

/// Why an attachment copy to another host failed
/// ([`Node::copy_attachment`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyAttachmentError {
    /// The target did not answer the probe before the copy.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A blocking store task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The local copy could not be opened or a chunk of it read.
    #[error(transparent)]
    Read(#[from] attachments::ReadError),
    /// No connection to the target.
    #[error(transparent)]
    Connect(#[from] SessionError),
    /// Opening the stream, writing or reading a frame failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The stream was closed before its end could be sent.
    #[error(transparent)]
    Finish(#[from] quinn::ClosedStream),
    /// The target refused the copy.
    #[error(transparent)]
    Refused(WireError),
    /// The target ended the stream without answering.
    #[error("the target closed the stream")]
    Closed,
    /// The target answered something a copy does not expect.
    #[error("the target answered {0:?}")]
    Unexpected(Box<HostResponse>),
    /// The whole copy took longer than [`copy_timeout`] of its size.
    #[error("the copy took longer than {limit:?}")]
    Timeout { limit: Duration },
}

/// How taking an attachment's chunks ended.
enum Received {
    /// The whole content is durable here.
    Stored,
    /// It already was: nothing was sent.
    AlreadyStored,
    /// Refused, and the refusal was answered.
    Refused,
}

impl Received {
    /// The answer owed to the sender; `None` if it was already answered.
    fn answer(self) -> Option<HostResponse> {
        match self {
            Received::Stored => Some(HostResponse::Done),
            Received::AlreadyStored => Some(HostResponse::AlreadyStored),
            Received::Refused => None,
        }
    }
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
        async {
            let sender = HostId(ex.peer_key);
            let received = self
                .receive_attachment(&id, size_bytes, name, media_type, &mut ex)
                .await?;
            let Some(answer) = received.answer() else {
                return Ok(());
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
        .instrument(span)
        .await
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
        let (sender_listed, me_listed) = match self.attachment_lookup(&id).await {
            Ok(found) => {
                let has = |h: HostId| {
                    found
                        .as_ref()
                        .is_some_and(|f| f.hosts.iter().any(|x| x.host == h))
                };
                (has(sender), has(self.id))
            }
            Err(e) => return ex.reply_err(&e).await,
        };
        // A host whose copy is no longer listed offers it to a listed
        // holder before it discards it; the content is checked against
        // the id all the same.
        let handed_back =
            !sender_listed && me_listed && matches!(self.known_host(sender).await, Ok(Some(_)));
        if !sender_listed && !handed_back {
            let e = WireError::new(
                WireError::FORBIDDEN,
                format!("host {sender} is not listed as a holder of attachment {id}"),
            );
            return ex.reply_err(&e).await;
        }
        let received = self
            .receive_attachment(&id, size_bytes, name, media_type, &mut ex)
            .await?;
        let Some(answer) = received.answer() else {
            return Ok(());
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
        let local = *id;
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
        let stored_ms = dem_client::now_ms();
        let refusal = match tokio::task::spawn_blocking(move || upload.finish(stored_ms)).await {
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

    /// Streams the local copy of `id` to `to` as an `AttachmentCopy` (a
    /// new replica) or, for a `move_out`, an `AttachmentPut` (a leaving
    /// holder's move): a probe first, then the stream within
    /// [`copy_timeout`] of its size. On a timeout the cached connection is
    /// dropped, so the next attempt dials afresh.
    pub(super) async fn copy_attachment(
        &self,
        id: &AttachmentId,
        to: HostId,
        addr: &str,
        move_out: bool,
    ) -> std::result::Result<(), CopyAttachmentError> {
        self.probe(to, addr).await?;
        let local = *id;
        let store = self.attachments.clone();
        let chunks = tokio::task::spawn_blocking(move || store.export_chunks(&local)).await??;
        let limit = copy_timeout(chunks.meta().size_bytes);
        let sent = self.send_attachment_copy(id, to, addr, chunks, move_out);
        match tokio::time::timeout(limit, sent).await {
            Ok(copied) => copied,
            Err(_) => {
                self.session.drop_connection(addr).await;
                Err(CopyAttachmentError::Timeout { limit })
            }
        }
    }

    /// Whether `to` answers a small request within [`PROBE_TIMEOUT`]
    /// (any answer, a refusal included, shows the connection is alive).
    async fn probe(&self, to: HostId, addr: &str) -> std::result::Result<(), ProbeError> {
        let mut attempt = 1;
        loop {
            let asked = self.session.host_request(addr, to, &HostRequest::Traffic);
            let answer = tokio::time::timeout(PROBE_TIMEOUT, asked).await.ok();
            let failed = match probe_outcome(answer) {
                Ok(()) => return Ok(()),
                // `host_request` dropped a failed connection already.
                Err(e @ ProbeError::Failed(_)) => e,
                Err(e @ ProbeError::Timeout { .. }) => {
                    self.session.drop_connection(addr).await;
                    e
                }
            };
            if attempt == PROBE_ATTEMPTS {
                return Err(failed);
            }
            attempt += 1;
        }
    }

    async fn send_attachment_copy(
        &self,
        id: &AttachmentId,
        to: HostId,
        addr: &str,
        mut chunks: attachments::ChunkStream,
        move_out: bool,
    ) -> std::result::Result<(), CopyAttachmentError> {
        let meta = chunks.meta().clone();
        let conn = self.session.connect(addr, to).await?;
        let (mut send, mut recv) = conn.open_stream().await?;
        let (size_bytes, name, media_type) = (meta.size_bytes, meta.name, meta.media_type);
        let req = if move_out {
            HostRequest::AttachmentPut {
                id: *id,
                size_bytes,
                name,
                media_type,
            }
        } else {
            HostRequest::AttachmentCopy {
                id: *id,
                size_bytes,
                name,
                media_type,
            }
        };
        write_frame(&mut send, &req).await?;
        match copy_answer(read_frame(&mut recv, MESSAGE_BYTES_MAX).await)? {
            HostResponse::AlreadyStored => return Ok(()),
            HostResponse::Done => {}
            other => return Err(CopyAttachmentError::Unexpected(Box::new(other))),
        }
        loop {
            let next = tokio::task::spawn_blocking(move || {
                let c = chunks.next();
                (chunks, c)
            })
            .await?;
            chunks = next.0;
            match next.1 {
                Some(chunk) => write_raw_frame(&mut send, &chunk?.bytes).await?,
                None => break,
            }
        }
        send.finish()?;
        match copy_answer(read_frame(&mut recv, MESSAGE_BYTES_MAX).await)? {
            HostResponse::Done => Ok(()),
            other => Err(CopyAttachmentError::Unexpected(Box::new(other))),
        }
    }

    pub(super) async fn attachment_get(
        self: Arc<Self>,
        id: AttachmentId,
        start: u64,
        end: u64,
        mut ex: Exchange,
    ) -> Result<()> {
        let local = id;
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
                    .reply_err(&WireError::new(dem_proto::host::NOT_HERE, e.to_string()))
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

/// What one probe's answer (`None`: none within [`PROBE_TIMEOUT`]) says:
/// any answer, a refusal included, shows the target is alive.
fn probe_outcome(
    answer: Option<std::result::Result<HostResponse, SessionError>>,
) -> std::result::Result<(), ProbeError> {
    match answer {
        Some(Ok(_)) | Some(Err(SessionError::Net(NetError::Remote(_)))) => Ok(()),
        Some(Err(e)) => Err(ProbeError::Failed(e)),
        None => Err(ProbeError::Timeout {
            limit: PROBE_TIMEOUT,
        }),
    }
}

/// The target's answer frame during a copy, its refusal and an early end
/// of the stream as errors.
fn copy_answer(
    frame: Result<Option<std::result::Result<HostResponse, WireError>>>,
) -> std::result::Result<HostResponse, CopyAttachmentError> {
    match frame? {
        Some(Ok(r)) => Ok(r),
        Some(Err(w)) => Err(CopyAttachmentError::Refused(w)),
        None => Err(CopyAttachmentError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_may_take_its_base_plus_its_size_at_the_slowest_rate() {
        assert_eq!(copy_timeout(0), COPY_TIMEOUT_BASE);
        assert_eq!(copy_timeout(CHUNK_BYTES - 1), COPY_TIMEOUT_BASE);
        assert_eq!(
            copy_timeout(10 * COPY_BYTES_PER_SEC_MIN),
            COPY_TIMEOUT_BASE + Duration::from_secs(10)
        );
        // Even the largest attachment is bounded.
        assert!(copy_timeout(attachments::ATTACHMENT_BYTES_MAX) < Duration::from_secs(3600));
    }

    #[test]
    fn a_refusal_answers_a_probe_but_a_failed_request_or_silence_does_not() {
        let refused = WireError::new(WireError::FORBIDDEN, "no");
        assert!(probe_outcome(Some(Ok(HostResponse::Done))).is_ok());
        assert!(probe_outcome(Some(Err(SessionError::Net(NetError::Remote(refused))))).is_ok());
        let failed = probe_outcome(Some(Err(SessionError::Net(NetError::EndOfStream))));
        assert!(matches!(
            failed,
            Err(ProbeError::Failed(SessionError::Net(NetError::EndOfStream)))
        ));
        let silent = probe_outcome(None).unwrap_err();
        assert!(matches!(silent, ProbeError::Timeout { limit } if limit == PROBE_TIMEOUT));
        // The wording the logs had before the errors were typed.
        assert_eq!(
            silent.to_string(),
            format!("no answer to a probe within {PROBE_TIMEOUT:?}")
        );
        assert_eq!(
            ProbeError::Failed(SessionError::Net(NetError::EndOfStream)).to_string(),
            format!("the probe failed: {}", NetError::EndOfStream)
        );
    }

    #[test]
    fn a_copy_answer_keeps_the_refusal_and_the_transport_error() {
        let refused = WireError::new(WireError::FORBIDDEN, "not listed");
        match copy_answer(Ok(Some(Err(refused.clone())))) {
            Err(CopyAttachmentError::Refused(w)) => assert_eq!(w, refused),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            copy_answer(Ok(None)),
            Err(CopyAttachmentError::Closed)
        ));
        assert!(matches!(
            copy_answer(Err(NetError::EndOfStream)),
            Err(CopyAttachmentError::Net(NetError::EndOfStream))
        ));
        assert!(matches!(
            copy_answer(Ok(Some(Ok(HostResponse::Done)))),
            Ok(HostResponse::Done)
        ));
        // A refusal reads as the refusal itself, as before.
        assert_eq!(
            CopyAttachmentError::Refused(refused.clone()).to_string(),
            refused.to_string()
        );
    }
}
