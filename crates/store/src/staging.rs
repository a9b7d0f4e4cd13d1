//! Snapshot files written from a stream before the import that names them.
//!
//! A move's target receives a snapshot in chunks; writing each chunk as it
//! arrives (and starting its writeback every MiB) makes the file durable
//! in step with the transfer, so after the last byte only the final fsync
//! and the redb commit remain, and the snapshot never has to sit whole in
//! memory. The
//! file is written under a temporary name in the snapshot folder and only
//! takes its content name (the keyed BLAKE3 the export checked) inside the
//! writer's import transaction, so no batch can delete it meanwhile; one
//! that is dropped unfinished deletes itself, and one left by a crash is
//! swept at the next open like any unnamed file.

use std::fs::File;
use std::io::{self, Write as _};

use tempfile::TempPath;

use super::blobs::{BLOB_BYTES_MIN, BlobName};
use super::{SNAPSHOT_BYTES_MAX, SnapshotRecord};
use dem_proto::VersionVector;

/// Start writing back what was written after this many bytes, so the
/// final fsync has little left to do.
const FLUSH_EVERY_BYTES: u64 = 1 << 20;

/// A snapshot file being written.
#[derive(Debug)]
pub struct SnapshotStaging {
    file: File,
    path: TempPath,
    len: u64,
    unflushed: u64,
}

/// A finished, fsynced snapshot file no record names yet.
#[derive(Debug)]
pub struct StagedSnapshot {
    pub(super) path: TempPath,
    pub(super) name: BlobName,
    pub(super) len: u64,
}

/// A staged snapshot with what its record says about it.
#[derive(Debug)]
pub struct StagedRecord {
    pub seq: u64,
    pub schema_version: u32,
    pub vv: VersionVector,
    pub staged: StagedSnapshot,
}

/// The snapshot of an import: bytes to store, or a file already staged.
#[derive(Debug)]
pub enum ImportSnapshot {
    Bytes(SnapshotRecord),
    Staged(StagedRecord),
}

/// Why a staged snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("writing the snapshot file: {0}")]
    Io(#[from] io::Error),
    #[error("a snapshot of {0} bytes is too small for a file (the least is {BLOB_BYTES_MIN})")]
    TooSmall(u64),
    #[error("the snapshot grew past {SNAPSHOT_BYTES_MAX} bytes")]
    TooLarge,
}

impl SnapshotStaging {
    /// A new temporary file in `dir` (a store's snapshot folder, through
    /// `MailboxStore::stage_snapshot`; the raw baseline of `dem bench net`
    /// writes through it too, to measure the same writes).
    pub fn create(dir: &std::path::Path) -> io::Result<Self> {
        let (file, path) = tempfile::Builder::new()
            .prefix(".staged-")
            .tempfile_in(dir)?
            .into_parts();
        Ok(SnapshotStaging {
            file,
            path,
            len: 0,
            unflushed: 0,
        })
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StagingError> {
        if self.len + bytes.len() as u64 > SNAPSHOT_BYTES_MAX as u64 {
            return Err(StagingError::TooLarge);
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        self.unflushed += bytes.len() as u64;
        if self.unflushed >= FLUSH_EVERY_BYTES {
            start_writeback(&self.file, self.len - self.unflushed, self.unflushed)?;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the file durable; it still needs an import to name it. The
    /// caller vouches for `name`: the bytes' keyed BLAKE3
    /// (`super::snapshot_hasher`), checked as they streamed by (an export
    /// of format 2 carries it as the snapshot's checksum).
    pub fn finish(self, name: BlobName) -> Result<StagedSnapshot, StagingError> {
        if (self.len as usize) < BLOB_BYTES_MIN {
            return Err(StagingError::TooSmall(self.len));
        }
        self.file.sync_all()?;
        Ok(StagedSnapshot {
            path: self.path,
            name,
            len: self.len,
        })
    }
}

/// Starts writing `len` bytes at `offset` back to disk and returns at
/// once (Linux): waiting there, as `fdatasync` does, would stall the
/// stream behind the disk every few MiB, and by the final fsync most of the
/// file is on disk anyway. Elsewhere, a plain flush.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: the descriptor belongs to `file`, which outlives the call;
    // sync_file_range only reads it and touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    file.sync_data()
}

impl ImportSnapshot {
    pub(super) fn seq(&self) -> u64 {
        match self {
            ImportSnapshot::Bytes(s) => s.seq,
            ImportSnapshot::Staged(s) => s.seq,
        }
    }

    pub(super) fn schema_version(&self) -> u32 {
        match self {
            ImportSnapshot::Bytes(s) => s.schema_version,
            ImportSnapshot::Staged(s) => s.schema_version,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            ImportSnapshot::Bytes(s) => s.bytes.len(),
            ImportSnapshot::Staged(s) => s.staged.len as usize,
        }
    }

    pub(super) fn vv(&self) -> &VersionVector {
        match self {
            ImportSnapshot::Bytes(s) => &s.vv,
            ImportSnapshot::Staged(s) => &s.vv,
        }
    }
}
