//! Error types of the attachment store, one enum per operation family, so a
//! caller (the network layer, the CLI) can match on exactly the outcomes an
//! operation can have: e.g. only [`BeginError::AlreadyStored`] tells a sender
//! to skip a transfer, only [`ReadError::CorruptChunk`] means the local copy
//! is damaged and must be fetched again.

use std::io;

use thiserror::Error;

use super::AttachmentId;

/// Why [`AttachmentStore::open`](super::AttachmentStore::open) failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The store's directories could not be created, listed or cleaned.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
    /// Another store (in this or another process) holds the directory's lock;
    /// two stores on one directory would delete each other's uploads.
    #[error("attachment store directory is locked by another store")]
    Locked,
}

/// Why [`AttachmentStore::begin_upload`](super::AttachmentStore::begin_upload)
/// did not start an upload.
#[derive(Debug, Error)]
pub enum BeginError {
    /// The attachment is already stored: the sender can skip the transfer.
    #[error("attachment {0} is already stored")]
    AlreadyStored(AttachmentId),
    /// Another upload of the same id is running; retry once it has finished
    /// (it then usually ends in [`BeginError::AlreadyStored`]).
    #[error("an upload of attachment {0} is already in progress")]
    InProgress(AttachmentId),
    /// As many uploads as allowed are running at once.
    #[error("too many uploads in progress (limit {limit})")]
    TooManyUploads {
        /// [`UPLOADS_MAX`](super::UPLOADS_MAX).
        limit: usize,
    },
    /// The announced size is over [`ATTACHMENT_BYTES_MAX`](super::ATTACHMENT_BYTES_MAX).
    #[error("attachment of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file name or media type is empty, too long, or has control characters.
    #[error("invalid {what}: {reason}")]
    InvalidLabel {
        /// `"name"` or `"media type"`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The temporary file of the upload could not be created.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Upload::write_chunk`](super::Upload::write_chunk) refused a chunk.
/// Refusals other than [`WriteError::Io`] leave the upload as it was, so the
/// right chunk may still be sent.
#[derive(Debug, Error)]
pub enum WriteError {
    /// Chunks must arrive in order, each exactly once.
    #[error("chunk {got} out of order, expected chunk {expected}")]
    OutOfOrder {
        /// The next chunk the upload accepts.
        expected: u64,
        /// The index that was sent.
        got: u64,
    },
    /// The announced size has no chunk of this index (all chunks are written).
    #[error("chunk {index} is past the end ({chunk_count} chunks in all)")]
    PastEnd {
        /// The index that was sent.
        index: u64,
        /// Number of chunks of the announced size.
        chunk_count: u64,
    },
    /// Every chunk but the last is exactly [`CHUNK_BYTES`](super::CHUNK_BYTES)
    /// long and the last one holds the rest of the announced size; anything
    /// else is oversized, undersized or writes past the size.
    #[error("chunk {index} is {got} bytes, expected exactly {expected}")]
    WrongLength {
        /// The chunk's index.
        index: u64,
        /// The only length accepted for this index.
        expected: u64,
        /// The length that was sent.
        got: u64,
    },
    /// An earlier write failed to reach the disk; the upload can only be dropped.
    #[error("upload failed earlier and cannot continue")]
    Failed,
    /// Writing the chunk to the temporary file failed; the upload is now failed.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Upload::finish`](super::Upload::finish) did not store the attachment.
/// In every case the partial upload is discarded and nothing became visible.
#[derive(Debug, Error)]
pub enum FinishError {
    /// Not all chunks of the announced size were written.
    #[error("upload incomplete: {written} of {chunk_count} chunks written")]
    Incomplete {
        /// Chunks written.
        written: u64,
        /// Chunks of the announced size.
        chunk_count: u64,
    },
    /// The content's BLAKE3 is not the announced id.
    #[error("content hashes to {actual}, not to the announced id {expected}")]
    HashMismatch {
        /// The announced id.
        expected: AttachmentId,
        /// The hash of the bytes actually received.
        actual: AttachmentId,
    },
    /// An earlier write failed to reach the disk.
    #[error("upload failed earlier and cannot be finished")]
    Failed,
    /// Writing the index, syncing or renaming the file failed.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why reading an attachment (meta, list, range, export) failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// No finished attachment has this id.
    #[error("attachment {0} is not stored")]
    NotFound(AttachmentId),
    /// The range is not `start <= end <= size`.
    #[error("range {start}..{end} is outside an attachment of {size} bytes")]
    BadRange {
        /// Requested start offset.
        start: u64,
        /// Requested end offset (exclusive).
        end: u64,
        /// The attachment's size.
        size: u64,
    },
    /// A chunk's bytes on disk do not match its stored BLAKE3; none of its
    /// bytes were returned.
    #[error("attachment {id}: chunk {index} is corrupt")]
    CorruptChunk {
        /// The attachment.
        id: AttachmentId,
        /// The damaged chunk.
        index: u64,
    },
    /// The stored file's index (trailer) is damaged or contradicts the file.
    #[error("attachment {id}: stored file is corrupt: {reason}")]
    Corrupt {
        /// The attachment.
        id: AttachmentId,
        /// What does not add up.
        reason: String,
    },
    /// Reading the file or listing the store failed.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why [`AttachmentStore::remove`](super::AttachmentStore::remove) failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// No finished attachment has this id.
    #[error("attachment {0} is not stored")]
    NotFound(AttachmentId),
    /// Deleting the file or syncing its directory failed.
    #[error("attachment store i/o: {0}")]
    Io(#[from] io::Error),
}
