//! Large snapshots as files beside the database (`<data dir>/snapshots/`).
//!
//! A redb commit of a 12 MB value costs 40–80 ms on a virtual disk, most of
//! it after the insert, and the store's single writer holds every other
//! mailbox's log appends behind it; a plain file written and fsynced costs
//! about 12 ms. So a snapshot of at least [`BLOB_BYTES_MIN`] goes to a file
//! named by the BLAKE3 of its mailbox id and bytes, and the `META` record
//! names the file. The writer fsyncs the file and its directory before the
//! commit that names it, and deletes a file only after the commit that
//! stopped naming it, so a crash leaves at most an unnamed file, which
//! [`Blobs::sweep`] removes on the next open. Reading checks the name
//! against the bytes: a damaged file is an error, never a wrong state.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;

use super::LoadError;
use super::buffers::BufferPool;
use super::error::{Corruption, Shared};

/// Snapshots at least this large are kept as files; smaller ones stay in
/// redb, where they cost less than a file and its fsyncs.
pub const BLOB_BYTES_MIN: usize = 1 << 20;
/// The folder inside the data dir.
const DIR: &str = "snapshots";
/// Suffix of a file being written; never named by `META`.
const TMP_SUFFIX: &str = ".tmp";

/// A snapshot file's name: the BLAKE3 of its mailbox id and bytes.
pub type BlobName = [u8; 32];

/// The snapshot files of one store.
#[derive(Debug)]
pub(super) struct Blobs {
    dir: PathBuf,
    buffers: BufferPool,
}

impl Blobs {
    /// The folder under `data_dir`, created if missing.
    pub fn open(data_dir: &std::path::Path) -> io::Result<Self> {
        let dir = data_dir.join(DIR);
        fs::create_dir_all(&dir)?;
        Ok(Blobs {
            dir,
            buffers: BufferPool::default(),
        })
    }

    /// The name the snapshot `bytes` of mailbox `id` is stored under.
    pub fn name(id: &str, bytes: &[u8]) -> BlobName {
        let mut h = Self::name_hasher(id);
        h.update(bytes);
        *h.finalize().as_bytes()
    }

    /// A hasher that yields [`Blobs::name`] once fed the bytes.
    pub fn name_hasher(id: &str) -> blake3::Hasher {
        dem_proto::export::snapshot_hasher(id)
    }

    /// The folder staged files are written in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Gives a staged file its content name; durable once
    /// [`Blobs::sync_dir`] ran.
    pub fn adopt(&self, staged: &super::staging::StagedSnapshot) -> io::Result<BlobName> {
        fs::rename(&*staged.path, self.path(&staged.name))?;
        Ok(staged.name)
    }

    fn path(&self, name: &BlobName) -> PathBuf {
        self.dir.join(blake3::Hash::from(*name).to_hex().as_str())
    }

    /// Writes and fsyncs the file; durable once [`Blobs::sync_dir`] ran.
    pub fn write(&self, name: &BlobName, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(name);
        let tmp = path.with_extension(&TMP_SUFFIX[1..]);
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)
    }

    /// Makes the files written so far survive a crash (their names).
    pub fn sync_dir(&self) -> io::Result<()> {
        fs::File::open(&self.dir)?.sync_all()
    }

    /// The snapshot of `id` stored as `name`, checked to be `len` bytes
    /// that (with `check`) hash to that name. The bytes are in a pooled
    /// buffer ([`BufferPool`]), reused once they are dropped.
    pub fn read(
        &self,
        id: &str,
        name: &BlobName,
        len: u64,
        check: bool,
    ) -> Result<bytes::Bytes, LoadError> {
        let path = self.path(name);
        let corrupt = |why: &dyn std::fmt::Display| {
            LoadError::inconsistent(format!(
                "mailbox {id:?}: snapshot file {}: {why}",
                path.display()
            ))
        };
        let unreadable = |source| {
            LoadError::Corrupt(Corruption::SnapshotFile {
                id: id.to_owned(),
                path: path.clone(),
                source: Shared::new(source),
            })
        };
        let mut file = fs::File::open(&path).map_err(unreadable)?;
        let on_disk = file.metadata().map_err(unreadable)?.len();
        // The length comes from our own meta record, but is checked against
        // the file before any memory is taken for it.
        let Ok(len_usize) = usize::try_from(len) else {
            return Err(corrupt(&format_args!("{len} bytes do not fit in memory")));
        };
        if on_disk != len {
            return Err(corrupt(&format_args!(
                "is damaged: {on_disk} bytes, the record says {len}"
            )));
        }
        let mut buf = self.buffers.take(len_usize);
        let read = file.read_exact(&mut buf);
        let bytes = self.buffers.share(buf);
        read.map_err(unreadable)?;
        if check && Self::name(id, &bytes) != *name {
            return Err(corrupt(&"is damaged"));
        }
        Ok(bytes)
    }

    /// Deletes a file no record names any more; one already gone is fine.
    pub fn delete(&self, name: &BlobName) {
        if let Err(e) = fs::remove_file(self.path(name))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot delete an unused snapshot file");
        }
    }

    /// Deletes every file but those in `keep`: what a crash left between
    /// writing a file and the commit naming it, or between a commit and
    /// the delete of the file it replaced. Call before the writer starts.
    pub fn sweep(&self, keep: &HashSet<BlobName>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let named = entry
                .file_name()
                .to_str()
                .and_then(|n| blake3::Hash::from_hex(n).ok())
                .map(|h| *h.as_bytes());
            if named.is_some_and(|n| keep.contains(&n)) {
                continue;
            }
            fs::remove_file(entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }
}
