//! Floating attachments from the client's side: store a file once on the
//! host the dispatch unit chooses (skipped when the network already holds
//! the same content), and fetch a byte range back, checked, from whichever
//! holder answers.
//!
//! The upload stream is `AttachmentPut`, an answer (`Done`: send the chunks,
//! or `AlreadyStored`), then 1 MiB raw chunk frames, then the host's final
//! answer once the whole content hashed to the id and W hosts hold it (the
//! receiving host records the location and copies it to R hosts). Reusing
//! an attachment the network holds renews its reference lease, so it is
//! not collected before the mail referencing it is delivered.

use std::io::{Read as _, Write as _};
use std::path::Path;

use dem_identity::HostId;
use dem_net::{NetError, WireError, read_frame, read_raw_frame, write_frame, write_raw_frame};
use dem_proto::attachment::{ATTACHMENT_BYTES_MAX, CHUNK_BYTES};
use dem_proto::dispatch::HostAddr;
use dem_proto::mail::AttachmentRef;
use dem_proto::{AttachmentId, AttachmentIdError};
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse};

use super::{Session, SessionError};

/// Placements an upload tries before it gives up.
const UPLOAD_ATTEMPTS: u32 = 3;
/// Pause before another placement (lets dispatch learn a host is leaving
/// or gone).
const UPLOAD_RETRY: std::time::Duration = std::time::Duration::from_millis(300);

/// Why an attachment could not be stored or fetched.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file or content is over the attachment size limit.
    #[error("{path} is {size} bytes; attachments are limited to {ATTACHMENT_BYTES_MAX}")]
    TooLarge { path: String, size: u64 },
    /// A holder announced more bytes than the caller allows in memory.
    #[error("attachment {id} is {size} bytes by its holder's word; at most {limit} were expected")]
    Oversized { id: String, size: u64, limit: u64 },
    /// The session failed: transport, dispatch or a host's refusal.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// No holder answered; the attachment id.
    #[error("attachment {0} is on no host that is online")]
    NoHolder(String),
    /// The bytes received do not hash to the id; the attachment id.
    #[error("the received attachment does not match its id {0}")]
    Corrupt(String),
    /// A host answered something this request does not expect.
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<HostResponse>),
    /// The dispatch unit answered something this request does not expect.
    #[error("unexpected answer: {0:?}")]
    UnexpectedDispatch(Box<DispatchResponse>),
    /// Dispatch placed the upload again on a host that failed it.
    #[error("unexpected answer: placed again on host {}, which failed the upload", .0.short())]
    PlacedAgain(HostId),
    /// The file's hash is not an attachment id.
    #[error("unexpected answer: {0}")]
    BadHash(#[source] AttachmentIdError),
}

impl From<NetError> for AttachmentError {
    fn from(e: NetError) -> Self {
        Self::Session(SessionError::Net(e))
    }
}

/// What a store did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The network already held this content: nothing was sent.
    Known,
    /// Sent to the host at this address.
    Uploaded(String),
    /// The chosen host already had it.
    AlreadyOnHost(String),
}

/// Stores the file at `path` and returns the reference a mail carries.
/// The file is read twice (hashed, then sent in chunks), never held whole.
pub async fn store(
    session: &Session,
    path: &Path,
) -> Result<(AttachmentRef, Stored), AttachmentError> {
    let shown = path.display().to_string();
    let io = |source| AttachmentError::Io {
        path: shown.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > ATTACHMENT_BYTES_MAX {
        return Err(AttachmentError::TooLarge { path: shown, size });
    }
    let hash = hash_file(path).map_err(io)?;
    let name = path
        .file_name()
        .map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
    let media_type = media_type_of(&name).to_string();
    let reference = AttachmentRef {
        hash,
        name,
        media_type,
        size_bytes: size,
        splice_at: None,
    };
    store_from(session, Source::File(path), reference).await
}

/// Stores `content`, held in memory (a part cut out of a message), as an
/// attachment named `name` of type `media_type`: the same placement,
/// chunking, reuse of what the network holds and retries as [`store`].
/// The reference's `splice_at` is `None`; the caller sets it.
pub async fn store_bytes(
    session: &Session,
    name: &str,
    media_type: &str,
    content: &[u8],
) -> Result<(AttachmentRef, Stored), AttachmentError> {
    let size = content.len() as u64;
    if size > ATTACHMENT_BYTES_MAX {
        return Err(AttachmentError::TooLarge {
            path: name.to_string(),
            size,
        });
    }
    let reference = AttachmentRef {
        hash: blake3::hash(content).to_hex().to_string(),
        name: name.to_string(),
        media_type: media_type.to_string(),
        size_bytes: size,
        splice_at: None,
    };
    store_from(session, Source::Memory(content), reference).await
}

/// Where an upload's bytes come from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// A file, read chunk by chunk.
    File(&'a Path),
    /// Bytes already in memory.
    Memory(&'a [u8]),
}

impl Source<'_> {
    /// How errors name the source.
    fn shown(&self, reference: &AttachmentRef) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Memory(_) => reference.name.clone(),
        }
    }
}

/// The upload loop of [`store`] and [`store_bytes`]: `reference` already
/// holds the content's hash and size.
async fn store_from(
    session: &Session,
    source: Source<'_>,
    reference: AttachmentRef,
) -> Result<(AttachmentRef, Stored), AttachmentError> {
    let id: AttachmentId = reference.hash.parse().map_err(AttachmentError::BadHash)?;
    let mut failed: Vec<HostId> = Vec::new();
    let mut attempt = 1;
    loop {
        match store_once(session, source, &id, &reference, &failed).await {
            Ok(stored) => return Ok((reference, stored)),
            // A host that refuses or fails (it may be leaving, or have just
            // crashed) is avoided the next time: the content is the same.
            Err((e, Some(host))) if attempt < UPLOAD_ATTEMPTS && retryable(&e) => {
                tracing::debug!(attachment = %id, host = %host.short(), error = %e, attempt, "upload failed; placing it elsewhere");
                failed.push(host);
                attempt += 1;
                tokio::time::sleep(UPLOAD_RETRY).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Whether another placement may succeed where this upload failed. Not
/// after a host answered "busy": it stored the content but could not get
/// it onto W hosts yet, and a second attempt would find it stored and
/// acknowledge what the first refused.
fn retryable(e: &AttachmentError) -> bool {
    match e {
        AttachmentError::Session(SessionError::Net(NetError::Remote(w))) => {
            w.code != WireError::BUSY
        }
        AttachmentError::Session(_)
        | AttachmentError::Unexpected(_)
        | AttachmentError::UnexpectedDispatch(_)
        | AttachmentError::PlacedAgain(_)
        | AttachmentError::BadHash(_) => true,
        _ => false,
    }
}

/// One attempt of [`store`]: reuse what the network holds, else place
/// and upload (not to a host in `failed`). On failure, also the host it was
/// placed on.
async fn store_once(
    session: &Session,
    source: Source<'_>,
    id: &AttachmentId,
    reference: &AttachmentRef,
    failed: &[HostId],
) -> Result<Stored, (AttachmentError, Option<HostId>)> {
    let shown = source.shown(reference);
    let io = |source| AttachmentError::Io {
        path: shown.clone(),
        source,
    };
    let no_host = |e: AttachmentError| (e, None);
    if let Ok(DispatchResponse::Attachment(found)) = session
        .dispatch(&DispatchRequest::LookupAttachment { id: *id })
        .await
        && found
            .hosts
            .iter()
            .any(|h| h.online && !failed.contains(&h.host))
    {
        session
            .dispatch(&DispatchRequest::AttachmentRefs { ids: vec![*id] })
            .await
            .map_err(|e| no_host(e.into()))?;
        return Ok(Stored::Known);
    }
    // Placement never picks a host dispatch knows to be leaving; one that
    // failed before is skipped here in case dispatch has not learnt yet
    // (the next attempt asks again).
    let place = DispatchRequest::PlaceAttachment {
        id: *id,
        size_bytes: reference.size_bytes,
    };
    let placement = match session
        .dispatch(&place)
        .await
        .map_err(|e| no_host(e.into()))?
    {
        DispatchResponse::Placement(p) => p,
        other => {
            return Err(no_host(AttachmentError::UnexpectedDispatch(Box::new(
                other,
            ))));
        }
    };
    if failed.contains(&placement.host) {
        let e = AttachmentError::PlacedAgain(placement.host);
        return Err((e, Some(placement.host)));
    }
    let host = placement.host;
    let put = HostRequest::AttachmentPut {
        id: *id,
        size_bytes: reference.size_bytes,
        name: Some(reference.name.clone()),
        media_type: Some(reference.media_type.clone()),
    };
    let sent = async {
        let conn = session.connect(&placement.addr, host).await?;
        let (mut send, mut recv) = conn.open_stream().await?;
        write_frame(&mut send, &put).await?;
        match answer(&mut recv).await? {
            HostResponse::AlreadyStored => {
                let _ = send.finish();
                return Ok(Stored::AlreadyOnHost(placement.addr.clone()));
            }
            HostResponse::Done => {}
            other => return Err(AttachmentError::Unexpected(Box::new(other))),
        }
        let mut progress = super::progress::Progress::new(
            format!("uploading {}", reference.name),
            reference.size_bytes,
        );
        match source {
            Source::File(path) => {
                let mut file = std::fs::File::open(path).map_err(io)?;
                let mut buf = vec![0u8; CHUNK_BYTES as usize];
                loop {
                    let n = read_full(&mut file, &mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    write_raw_frame(&mut send, &buf[..n]).await?;
                    progress.advance(n as u64);
                }
            }
            Source::Memory(content) => {
                for chunk in content.chunks(CHUNK_BYTES as usize) {
                    write_raw_frame(&mut send, chunk).await?;
                    progress.advance(chunk.len() as u64);
                }
            }
        }
        progress.finish();
        send.finish().map_err(NetError::from)?;
        match answer(&mut recv).await? {
            HostResponse::Done => Ok(Stored::Uploaded(placement.addr.clone())),
            other => Err(AttachmentError::Unexpected(Box::new(other))),
        }
    };
    match sent.await {
        Ok(stored) => Ok(stored),
        Err(e) => {
            if !matches!(
                &e,
                AttachmentError::Session(SessionError::Net(NetError::Remote(_)))
            ) {
                // The connection may lead to a process that is gone.
                session.drop_connection(&placement.addr).await;
            }
            Err((e, Some(host)))
        }
    }
}

/// Fetches bytes `start..end` (to the end if `None`) of attachment `id`
/// into `out`; a whole attachment is checked against its id.
pub async fn fetch(
    session: &Session,
    id: &AttachmentId,
    range: Option<(u64, u64)>,
    out: &Path,
) -> Result<u64, AttachmentError> {
    let target = Target::File(out);
    fetch_into(session, id, range, &target)
        .await
        .map(|(n, _)| n)
}

/// Fetches the whole attachment `id` into memory, checked against its id.
/// A holder announcing more than `size_bytes_max` bytes is refused before
/// anything is allocated (and the next holder tried).
pub async fn fetch_bytes(
    session: &Session,
    id: &AttachmentId,
    size_bytes_max: u64,
) -> Result<Vec<u8>, AttachmentError> {
    let target = Target::Memory { size_bytes_max };
    let (_, bytes) = fetch_into(session, id, None, &target).await?;
    Ok(bytes.unwrap_or_default())
}

/// Where fetched bytes go.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    File(&'a Path),
    Memory { size_bytes_max: u64 },
}

/// [`fetch`] and [`fetch_bytes`]: the count fetched, and the bytes when
/// they went to memory.
async fn fetch_into(
    session: &Session,
    id: &AttachmentId,
    range: Option<(u64, u64)>,
    target: &Target<'_>,
) -> Result<(u64, Option<Vec<u8>>), AttachmentError> {
    let found = match session
        .dispatch(&DispatchRequest::LookupAttachment { id: *id })
        .await?
    {
        DispatchResponse::Attachment(found) => found,
        other => return Err(AttachmentError::UnexpectedDispatch(Box::new(other))),
    };
    // Online holders first, in listing order; then the others, whose
    // lease may just have lapsed. A holder that fails or sends bytes that
    // do not match the id is skipped for the next one.
    let (online, offline): (Vec<&HostAddr>, Vec<&HostAddr>) =
        found.hosts.iter().partition(|h| h.online);
    let mut last = AttachmentError::NoHolder(id.to_string());
    for holder in online.into_iter().chain(offline) {
        let Some(addr) = &holder.addr else { continue };
        match fetch_from(session, addr, holder, id, range, target).await {
            Ok(got) => return Ok(got),
            Err(e) => {
                tracing::debug!(attachment = %id, holder = %holder.host.short(), error = %e, "fetch failed; trying the next holder");
                last = e;
            }
        }
    }
    Err(last)
}

async fn fetch_from(
    session: &Session,
    addr: &str,
    holder: &HostAddr,
    id: &AttachmentId,
    range: Option<(u64, u64)>,
    target: &Target<'_>,
) -> Result<(u64, Option<Vec<u8>>), AttachmentError> {
    let (start, end) = range.unwrap_or((0, u64::MAX));
    let conn = session.connect(addr, holder.host).await?;
    let (mut send, mut recv) = conn.open_stream().await?;
    let get = HostRequest::AttachmentGet {
        id: *id,
        start,
        end,
    };
    write_frame(&mut send, &get).await?;
    send.finish().map_err(NetError::from)?;
    let expected = match answer(&mut recv).await? {
        HostResponse::Attachment { size_bytes } => size_bytes,
        other => return Err(AttachmentError::Unexpected(Box::new(other))),
    };
    let shown = match target {
        Target::File(out) => out.display().to_string(),
        Target::Memory { .. } => format!("attachment {id}"),
    };
    let io = |source| AttachmentError::Io {
        path: shown.clone(),
        source,
    };
    let (mut file, mut memory) = match *target {
        Target::File(out) => (Some(std::fs::File::create(out).map_err(io)?), None),
        Target::Memory { size_bytes_max } => {
            if expected > size_bytes_max {
                return Err(AttachmentError::Oversized {
                    id: id.to_string(),
                    size: expected,
                    limit: size_bytes_max,
                });
            }
            (None, Some(Vec::with_capacity(expected as usize)))
        }
    };
    let mut hasher = blake3::Hasher::new();
    let mut got = 0u64;
    let mut progress = super::progress::Progress::new(format!("fetching {shown}"), expected);
    while let Some(chunk) = read_raw_frame(&mut recv, CHUNK_BYTES as usize).await? {
        got += chunk.len() as u64;
        if got > expected {
            return Err(AttachmentError::Corrupt(id.to_string()));
        }
        hasher.update(&chunk);
        if let Some(file) = &mut file {
            file.write_all(&chunk).map_err(io)?;
        }
        if let Some(memory) = &mut memory {
            memory.extend_from_slice(&chunk);
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    if let Some(file) = &file {
        file.sync_all().map_err(io)?;
    }
    let whole = range.is_none();
    if got != expected || (whole && AttachmentId::from_bytes(*hasher.finalize().as_bytes()) != *id)
    {
        if let Target::File(out) = target {
            let _ = std::fs::remove_file(out);
        }
        return Err(AttachmentError::Corrupt(id.to_string()));
    }
    Ok((got, memory))
}

/// Reads one answer frame: a host's `Result<HostResponse, WireError>`.
async fn answer(recv: &mut dem_net::RecvStream) -> Result<HostResponse, AttachmentError> {
    match read_frame::<Result<HostResponse, WireError>>(recv, dem_proto::MESSAGE_BYTES_MAX).await? {
        Some(Ok(r)) => Ok(r),
        Some(Err(wire)) => Err(NetError::Remote(wire).into()),
        None => Err(NetError::EndOfStream.into()),
    }
}

/// BLAKE3 of a file, hex.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Fills `buf` unless the file ends first; the count read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = file.read(&mut buf[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// A media type from the file name's extension.
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}
