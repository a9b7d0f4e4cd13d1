//! [`Upload`]: one attachment being received, chunk by chunk, into a
//! temporary file.
//!
//! Chunks are appended to `tmp/<id>.part` in order while their BLAKE3 hashes
//! and the whole-content hash are computed on the fly, so no chunk is ever
//! read back. [`Upload::finish`] refuses content whose hash is not the
//! announced id, appends the trailer, fsyncs, and renames the file into
//! `objects/`: that rename is the single moment the attachment becomes
//! visible. Dropping an unfinished upload deletes its temporary file, and
//! only then frees its slot, so a retry of the same id never meets it.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use super::format::{self, chunk_count, chunk_len};
use super::{AttachmentId, AttachmentMeta, FinishError, Inner, WriteError};

/// Holds an id's place in the store's set of uploads in progress; freed on drop.
pub(super) struct UploadSlot {
    pub store: Arc<Inner>,
    pub id: AttachmentId,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.store.uploads().remove(&self.id);
    }
}

/// An upload in progress, from [`AttachmentStore::begin_upload`](super::AttachmentStore::begin_upload).
/// Blocking (file I/O); `Send`, so it can live in `spawn_blocking` calls.
pub struct Upload {
    /// `None` once finished or dropped, so the file is closed before it is
    /// deleted (required on Windows).
    file: Option<File>,
    size_bytes: u64,
    name: Option<String>,
    media_type: Option<String>,
    whole: blake3::Hasher,
    hashes: Vec<[u8; 32]>,
    /// An I/O error left the temporary file in an unknown state.
    failed: bool,
    /// Renamed into place: the temporary file no longer exists.
    stored: bool,
    /// Last field: dropped after `Drop::drop` has removed the temporary file.
    slot: UploadSlot,
}

impl Upload {
    pub(super) fn new(
        slot: UploadSlot,
        file: File,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
    ) -> Self {
        Self {
            file: Some(file),
            size_bytes,
            name,
            media_type,
            whole: blake3::Hasher::new(),
            // Capacity is bounded by ATTACHMENT_BYTES_MAX / CHUNK_BYTES.
            hashes: Vec::with_capacity(chunk_count(size_bytes) as usize),
            failed: false,
            stored: false,
            slot,
        }
    }

    /// The announced id.
    pub fn id(&self) -> AttachmentId {
        self.slot.id
    }

    /// The announced size.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Number of chunks the announced size is cut into.
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.size_bytes)
    }

    /// Index of the only chunk [`Upload::write_chunk`] accepts next.
    pub fn next_index(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Appends chunk `index`, which must be the next one and exactly
    /// `min(CHUNK_BYTES, size - index × CHUNK_BYTES)` bytes long.
    pub fn write_chunk(&mut self, index: u64, bytes: &[u8]) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        let count = self.chunk_count();
        if index >= count {
            return Err(WriteError::PastEnd {
                index,
                chunk_count: count,
            });
        }
        let expected = self.next_index();
        if index != expected {
            return Err(WriteError::OutOfOrder {
                expected,
                got: index,
            });
        }
        let want = chunk_len(self.size_bytes, index);
        if bytes.len() as u64 != want {
            return Err(WriteError::WrongLength {
                index,
                expected: want,
                got: bytes.len() as u64,
            });
        }
        let file = self.file.as_mut().ok_or(WriteError::Failed)?;
        if let Err(e) = file.write_all(bytes) {
            self.failed = true;
            return Err(e.into());
        }
        self.whole.update(bytes);
        self.hashes.push(*blake3::hash(bytes).as_bytes());
        Ok(())
    }

    /// Checks the whole content against the id and, only if it matches,
    /// makes the attachment durable and visible. On any error the upload is
    /// discarded. (If syncing the directory after the rename fails, the
    /// attachment is already visible but its durability unknown; the error
    /// is still reported.) `stored_ms` is the wall-clock time the caller
    /// records as the attachment's arrival.
    pub fn finish(mut self, stored_ms: i64) -> Result<AttachmentMeta, FinishError> {
        if self.failed {
            return Err(FinishError::Failed);
        }
        let count = self.chunk_count();
        if self.next_index() != count {
            return Err(FinishError::Incomplete {
                written: self.next_index(),
                chunk_count: count,
            });
        }
        let actual = AttachmentId::from_bytes(*self.whole.finalize().as_bytes());
        if actual != self.slot.id {
            tracing::warn!(expected = %self.slot.id, %actual, "attachment upload hash mismatch");
            return Err(FinishError::HashMismatch {
                expected: self.slot.id,
                actual,
            });
        }
        let meta = AttachmentMeta {
            id: self.slot.id,
            size_bytes: self.size_bytes,
            name: self.name.take(),
            media_type: self.media_type.take(),
            stored_ms,
        };
        let mut file = self.file.take().ok_or(FinishError::Failed)?;
        file.write_all(&format::encode_trailer(&meta, &self.hashes))?;
        file.sync_all()?;
        drop(file);
        let layout = &self.slot.store.layout;
        let shard = layout.shard(&meta.id);
        format::ensure_dir(&shard)?;
        std::fs::rename(layout.partial(&meta.id), layout.object(&meta.id))?;
        self.stored = true;
        format::sync_dir(&shard)?;
        tracing::debug!(id = %meta.id, size = meta.size_bytes, "attachment stored");
        Ok(meta)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.stored {
            return;
        }
        drop(self.file.take());
        let path = self.slot.store.layout.partial(&self.slot.id);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(id = %self.slot.id, "unfinished attachment upload discarded"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Left for the next open's cleanup; the slot is freed regardless
            // and a new upload of the id truncates the file.
            Err(e) => tracing::warn!(path = %path.display(), "removing partial upload: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::STORED_MS;
    use super::super::test_support::{content, store, upload_all};
    use super::super::*;

    #[test]
    fn multi_chunk_round_trip() {
        let (_dir, store) = store();
        let data = content(1, 3 * CHUNK_BYTES as usize + CHUNK_BYTES as usize / 2);
        let id = AttachmentId::of(&data);
        let mut up = store
            .begin_upload(id, data.len() as u64, Some("big.bin".into()), None)
            .unwrap();
        assert_eq!(up.chunk_count(), 4);
        for (i, chunk) in data.chunks(CHUNK_BYTES as usize).enumerate() {
            // Not visible while in progress.
            assert!(!store.contains(&id));
            up.write_chunk(i as u64, chunk).unwrap();
        }
        let meta = up.finish(STORED_MS).unwrap();
        assert_eq!(meta.size_bytes, data.len() as u64);
        assert_eq!(meta.name.as_deref(), Some("big.bin"));
        assert!(store.contains(&id));
        assert_eq!(store.meta(&id).unwrap(), meta);
        let back: Vec<u8> = store
            .read_range(&id, 0, meta.size_bytes)
            .unwrap()
            .flat_map(|c| c.unwrap().bytes)
            .collect();
        assert_eq!(back, data);
        assert_eq!(store.uploads_in_progress(), 0);
        assert_eq!(
            std::fs::read_dir(&store.inner.layout.tmp).unwrap().count(),
            0
        );
    }

    #[test]
    fn empty_attachment() {
        let (_dir, store) = store();
        let meta = upload_all(&store, b"");
        assert_eq!(meta.size_bytes, 0);
        assert_eq!(store.read_range(&meta.id, 0, 0).unwrap().count(), 0);
    }

    #[test]
    fn hash_mismatch_is_refused_and_nothing_visible() {
        let (_dir, store) = store();
        let data = content(2, 100);
        let id = AttachmentId::of(b"something else");
        let mut up = store.begin_upload(id, 100, None, None).unwrap();
        up.write_chunk(0, &data).unwrap();
        assert!(matches!(
            up.finish(STORED_MS),
            Err(FinishError::HashMismatch { expected, .. }) if expected == id
        ));
        assert!(!store.contains(&id));
        assert!(matches!(store.meta(&id), Err(ReadError::NotFound(_))));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(&store.inner.layout.tmp).unwrap().count(),
            0
        );
        // The slot is free again.
        store.begin_upload(id, 100, None, None).unwrap();
    }

    #[test]
    fn bad_chunks_are_refused_without_harm() {
        let (_dir, store) = store();
        let size = CHUNK_BYTES + 10;
        let data = content(3, size as usize);
        let id = AttachmentId::of(&data);
        let mut up = store.begin_upload(id, size, None, None).unwrap();
        let full = CHUNK_BYTES as usize;
        assert!(matches!(
            up.write_chunk(1, &data[full..]),
            Err(WriteError::OutOfOrder {
                expected: 0,
                got: 1
            })
        ));
        let mut oversized = data[..full].to_vec();
        oversized.push(0);
        assert!(matches!(
            up.write_chunk(0, &oversized),
            Err(WriteError::WrongLength { .. })
        ));
        assert!(matches!(
            up.write_chunk(0, &data[..10]),
            Err(WriteError::WrongLength { .. })
        ));
        up.write_chunk(0, &data[..full]).unwrap();
        assert!(matches!(
            up.write_chunk(0, &data[..full]),
            Err(WriteError::OutOfOrder { .. })
        ));
        // Past the announced size: a last chunk longer than the rest.
        assert!(matches!(
            up.write_chunk(1, &data[full - 1..]),
            Err(WriteError::WrongLength {
                expected: 10,
                got: 11,
                ..
            })
        ));
        assert!(matches!(
            up.write_chunk(2, b"x"),
            Err(WriteError::PastEnd { chunk_count: 2, .. })
        ));
        up.write_chunk(1, &data[full..]).unwrap();
        assert!(matches!(
            up.write_chunk(2, b"x"),
            Err(WriteError::PastEnd { .. })
        ));
        up.finish(STORED_MS).unwrap();
        let back: Vec<u8> = store
            .read_range(&id, 0, size)
            .unwrap()
            .flat_map(|c| c.unwrap().bytes)
            .collect();
        assert_eq!(back, data);
    }

    #[test]
    fn incomplete_upload_is_refused() {
        let (_dir, store) = store();
        let data = content(4, CHUNK_BYTES as usize + 1);
        let id = AttachmentId::of(&data);
        let mut up = store
            .begin_upload(id, data.len() as u64, None, None)
            .unwrap();
        up.write_chunk(0, &data[..CHUNK_BYTES as usize]).unwrap();
        assert!(matches!(
            up.finish(STORED_MS),
            Err(FinishError::Incomplete {
                written: 1,
                chunk_count: 2
            })
        ));
        assert!(!store.contains(&id));
    }

    #[test]
    fn dedup_and_concurrent_upload_of_same_id() {
        let (_dir, store) = store();
        let data = content(5, 1000);
        let id = AttachmentId::of(&data);
        let mut first = store.begin_upload(id, 1000, None, None).unwrap();
        assert!(matches!(
            store.begin_upload(id, 1000, None, None),
            Err(BeginError::InProgress(i)) if i == id
        ));
        first.write_chunk(0, &data).unwrap();
        first.finish(STORED_MS).unwrap();
        // The same file for another recipient or mail is not sent again.
        assert!(matches!(
            store.begin_upload(id, 1000, Some("other-name.txt".into()), None),
            Err(BeginError::AlreadyStored(i)) if i == id
        ));
        assert_eq!(store.usage().unwrap().count, 1);
    }

    #[test]
    fn racing_uploads_of_one_id_store_it_once() {
        let (_dir, store) = store();
        let data = content(7, CHUNK_BYTES as usize + 5);
        let id = AttachmentId::of(&data);
        let outcomes: Vec<&'static str> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(
                        || match store.begin_upload(id, data.len() as u64, None, None) {
                            Ok(mut up) => {
                                for (i, c) in data.chunks(CHUNK_BYTES as usize).enumerate() {
                                    up.write_chunk(i as u64, c).unwrap();
                                }
                                up.finish(STORED_MS).unwrap();
                                "stored"
                            }
                            Err(BeginError::InProgress(_)) => "in progress",
                            Err(BeginError::AlreadyStored(_)) => "already stored",
                            Err(e) => panic!("unexpected {e}"),
                        },
                    )
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(outcomes.contains(&"stored"), "{outcomes:?}");
        assert_eq!(store.usage().unwrap().count, 1);
        let back: Vec<u8> = store
            .export_chunks(&id)
            .unwrap()
            .flat_map(|c| c.unwrap().bytes)
            .collect();
        assert_eq!(back, data);
    }

    #[test]
    fn abandoned_upload_is_cleaned_on_drop() {
        let (_dir, store) = store();
        let data = content(6, 2 * CHUNK_BYTES as usize);
        let id = AttachmentId::of(&data);
        let mut up = store
            .begin_upload(id, data.len() as u64, None, None)
            .unwrap();
        up.write_chunk(0, &data[..CHUNK_BYTES as usize]).unwrap();
        let partial = store.inner.layout.partial(&id);
        assert!(partial.exists());
        assert_eq!(store.uploads_in_progress(), 1);
        drop(up);
        assert!(!partial.exists());
        assert_eq!(store.uploads_in_progress(), 0);
        assert!(!store.contains(&id));
        // A fresh upload of the same id starts from scratch.
        upload_all(&store, &data);
    }
}
