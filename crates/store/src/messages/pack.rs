//! Message bytes in append-only pack files (`<data dir>/messages/`), their
//! places in redb.
//!
//! redb keeps a value inside its B-tree leaf, and a commit copies every leaf
//! it touches, so a batch of deliveries rewrote the leaves of older
//! messages beside the new ones: measured on this project's realistic mail
//! (about 6 KiB a message), 75% of the writer's time was redb's commit and
//! the store wrote about 26 MB/s, against 800 MB/s the disk takes in
//! sequence. So the bytes are kept apart from the index, as WiscKey and
//! Bitcask do: the writer appends the messages of a batch to the current
//! pack with one write and one `fdatasync`, then commits the redb
//! transaction that records where they are (`MESSAGE_PLACES`). A crash
//! or a failed commit between the two leaves bytes no record names in a
//! pack: dead bytes, which compaction drops with the pack's other dead
//! ones. Later batches append after them, never over them, since a commit
//! that reported an error may still have reached the disk.
//!
//! A message whose last reference goes loses its place, and its bytes are
//! dead. Once less than half of a pack (other than the one being appended
//! to) is live, the writer compacts it: its live messages are copied to the
//! current pack in a transaction of their own, and the file is deleted
//! after that commit. `PACK_ENTRIES` lists the messages of each pack, and
//! `PACK_LIVE` its live bytes, so neither step walks all messages.
//!
//! Readers look the place up in a read transaction and read it with
//! `pread`, then check the bytes against their hash. A pack compacted
//! between the look-up and the read is gone: the reader looks again once.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The folder inside the data dir.
pub(crate) const DIR: &str = "messages";
/// A pack that has reached this size is not appended to any more; the next
/// batch starts a new one. Small enough that compacting a half-dead pack
/// (at most half of this copied) holds the writer for a short while only.
pub const PACK_BYTES_MAX: u64 = 64 << 20;
/// File name suffix of a pack.
const SUFFIX: &str = ".pack";

/// Where a message's bytes are: pack number, offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Place {
    /// As `MESSAGE_PLACES` stores it.
    pub fn row(self) -> (u32, u64, u32) {
        (self.pack, self.offset, self.len)
    }

    pub fn from_row((pack, offset, len): (u32, u64, u32)) -> Self {
        Place { pack, offset, len }
    }
}

/// The pack files of one store.
#[derive(Debug)]
pub(crate) struct Packs {
    dir: PathBuf,
    /// Whether appends are synced (the store's `fsync` setting).
    sync: bool,
    /// The pack appended to; only the writer thread (and, before it starts,
    /// the open) takes it.
    current: Mutex<Current>,
    /// Read handles by pack number, opened on first use.
    files: Mutex<HashMap<u32, Arc<File>>>,
}

#[derive(Debug)]
struct Current {
    pack: u32,
    file: File,
    /// Where the next append goes: past everything flushed, whether or
    /// not the commit naming it went through. Bytes past it (a flush that
    /// failed half-way) are written over.
    len: u64,
}

fn file_name(pack: u32) -> String {
    format!("{pack:08}{SUFFIX}")
}

fn pack_number(name: &str) -> Option<u32> {
    name.strip_suffix(SUFFIX)?.parse().ok()
}

impl Packs {
    /// The folder under `data_dir`, created if missing; appends go to the
    /// highest-numbered pack (a new one in an empty folder).
    pub fn open(data_dir: &Path, sync: bool) -> io::Result<Self> {
        let dir = data_dir.join(DIR);
        fs::create_dir_all(&dir)?;
        let mut highest = None;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if let Some(n) = entry.file_name().to_str().and_then(pack_number) {
                highest = highest.max(Some(n));
            }
        }
        let pack = highest.unwrap_or(1);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(file_name(pack)))?;
        let len = file.metadata()?.len();
        if highest.is_none() {
            File::open(&dir)?.sync_all()?;
        }
        Ok(Packs {
            dir,
            sync,
            current: Mutex::new(Current { pack, file, len }),
            files: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, pack: u32) -> PathBuf {
        self.dir.join(file_name(pack))
    }

    /// The pack appended to now.
    pub fn current(&self) -> u32 {
        self.lock_current().pack
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding it leaves nothing half-done in memory that
        // the file does not also show: carry on with it.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self, pack: u32) -> io::Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&pack) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.path(pack))?);
        files.insert(pack, f.clone());
        Ok(f)
    }

    /// The bytes at `place`. `NotFound` if the pack is gone (compacted
    /// since the place was read); `UnexpectedEof` if the pack is shorter
    /// than the place says (damaged).
    pub fn read(&self, place: Place) -> io::Result<Vec<u8>> {
        let file = self.reader(place.pack)?;
        let mut bytes = vec![0u8; place.len as usize];
        file.read_exact_at(&mut bytes, place.offset)?;
        Ok(bytes)
    }

    /// Length of a pack's file, 0 if it is gone.
    pub fn file_len(&self, pack: u32) -> u64 {
        fs::metadata(self.path(pack)).map_or(0, |m| m.len())
    }

    /// Deletes a pack no record names any more (after the commit that
    /// stopped naming it). A failure leaves a dead file, which is logged.
    pub fn delete(&self, pack: u32) {
        assert_ne!(
            pack,
            self.current(),
            "the pack appended to is never deleted"
        );
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pack);
        if let Err(e) = fs::remove_file(self.path(pack)) {
            tracing::warn!(pack, "deleting a compacted message pack: {e}");
        }
    }

    /// Starts the appends of one write transaction.
    pub fn batch(&self) -> io::Result<PackBatch<'_>> {
        let mut current = self.lock_current();
        let mut new_file = false;
        if current.len >= PACK_BYTES_MAX {
            let pack = current.pack.checked_add(1).ok_or_else(|| {
                io::Error::other("the message pack numbers are used up (2^32 packs)")
            })?;
            let file = OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(self.path(pack))?;
            *current = Current { pack, file, len: 0 };
            new_file = true;
        }
        let (pack, start) = (current.pack, current.len);
        drop(current);
        Ok(PackBatch {
            packs: self,
            pack,
            start,
            pending: Vec::new(),
            new_file,
        })
    }

    /// Flips the first byte at `place`, for tests that show damage is
    /// caught.
    pub fn corrupt_for_tests(&self, place: Place) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .open(self.path(place.pack))?;
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, place.offset)?;
        b[0] ^= 0xff;
        file.write_all_at(&b, place.offset)?;
        file.sync_data()
    }
}

/// The messages one write transaction appends, held until
/// [`PackBatch::flush`] writes and syncs them before the commit.
pub(crate) struct PackBatch<'a> {
    packs: &'a Packs,
    pack: u32,
    start: u64,
    pending: Vec<u8>,
    /// The pack was created by this batch: its folder needs a sync.
    new_file: bool,
}

impl PackBatch<'_> {
    /// The pack this batch appends to.
    pub fn pack(&self) -> u32 {
        self.pack
    }

    /// Queues `bytes`; where they will be once flushed. An error for bytes
    /// over 4 GiB, which no place can name (callers pass messages of at
    /// most `MESSAGE_BYTES_MAX`, but a store from an older build is input).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<Place> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a message of {} bytes is too large for a pack", bytes.len()),
            )
        })?;
        let place = Place {
            pack: self.pack,
            offset: self.start + self.pending.len() as u64,
            len,
        };
        self.pending.extend_from_slice(bytes);
        Ok(place)
    }

    /// Writes and syncs what was appended; the caller commits the records
    /// naming it only after this returned `Ok`. Later batches append
    /// after these bytes whatever becomes of the commit.
    pub fn flush(self) -> io::Result<()> {
        if self.new_file && self.packs.sync {
            File::open(&self.packs.dir)?.sync_all()?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut current = self.packs.lock_current();
        assert_eq!(current.pack, self.pack, "one batch at a time");
        current.file.write_all_at(&self.pending, self.start)?;
        if self.packs.sync {
            current.file.sync_data()?;
        }
        current.len = self.start + self.pending.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_and_a_failed_batch_is_written_over() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let packs = Packs::open(dir.path(), true)?;
        let mut b = packs.batch()?;
        let a = b.append(b"hello")?;
        let c = b.append(b"world!")?;
        b.flush()?;
        assert_eq!(packs.read(a)?, b"hello");
        assert_eq!(packs.read(c)?, b"world!");
        // Never flushed (the batch failed before): the next batch starts
        // where it did.
        let mut lost = packs.batch()?;
        let l = lost.append(b"lost")?;
        drop(lost);
        let mut again = packs.batch()?;
        let n = again.append(b"next")?;
        assert_eq!(n.offset, l.offset);
        again.flush()?;
        // Flushed: appended after, even if its commit were to fail.
        let mut after = packs.batch()?;
        assert_eq!(after.append(b"x")?.offset, n.offset + 4);
        assert_eq!(packs.read(n)?, b"next");
        Ok(())
    }

    #[test]
    fn a_full_pack_rolls_over_and_reopening_appends_to_the_newest() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let packs = Packs::open(dir.path(), true)?;
        let big = vec![7u8; PACK_BYTES_MAX as usize];
        let mut b = packs.batch()?;
        let first = b.append(&big)?;
        b.flush()?;
        let mut b = packs.batch()?;
        let second = b.append(b"after")?;
        b.flush()?;
        assert_eq!(second.pack, first.pack + 1);
        assert_eq!(second.offset, 0);
        drop(packs);
        let packs = Packs::open(dir.path(), true)?;
        assert_eq!(packs.current(), second.pack);
        assert_eq!(packs.read(second)?, b"after");
        packs.delete(first.pack);
        assert_eq!(
            packs.read(first).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
        Ok(())
    }

    #[test]
    fn a_place_past_the_end_is_an_error() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let packs = Packs::open(dir.path(), true)?;
        let bad = Place {
            pack: packs.current(),
            offset: 10,
            len: 5,
        };
        assert_eq!(
            packs.read(bad).map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
        Ok(())
    }
}
