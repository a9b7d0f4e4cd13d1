//! Floating attachments: content-addressed files that mails reference by id.
//!
//! An attachment is stored once per host, however many mails or recipients
//! reference it: its id is the BLAKE3 hash of its whole content, so the same
//! file sent to 50 recipients or attached to many mails has one id, and
//! [`AttachmentStore::begin_upload`] answers [`BeginError::AlreadyStored`]
//! so the sender skips the transfer. Mailboxes (in their guests) only keep
//! the ids; this module keeps the bytes.
//!
//! **Transfer in chunks.** Content moves in chunks of [`CHUNK_BYTES`] (the
//! last one shorter), so neither end holds a whole attachment in memory:
//! an [`Upload`] takes chunks strictly in order and [`Upload::finish`] checks
//! the whole-content hash before anything becomes visible; reads
//! ([`AttachmentStore::read_range`]) stream [`Chunk`]s, each verified against
//! its own stored BLAKE3 first. Moving an attachment to another host (when
//! this one leaves) is [`AttachmentStore::export_chunks`] here and an upload
//! there: the network layer only forwards chunk frames.
//!
//! **Storage: one file per attachment**, not redb. Attachments are large
//! (up to [`ATTACHMENT_BYTES_MAX`]) write-once blobs: plain files let
//! concurrent uploads write without sharing redb's single write transaction,
//! give the space back to the file system as soon as one is removed (a redb
//! file only grows until compacted), and make a range read a seek. Each file
//! holds the content followed by a trailer with the per-chunk hashes and the
//! [`AttachmentMeta`] (see `format.rs` for the layout). An upload writes
//! `tmp/<id>.part`, fsyncs it, renames it to `objects/<ab>/<cdef…>` and
//! fsyncs that directory before `finish` returns: the rename is the atomic
//! commit point, and a crash at any moment leaves either nothing visible or
//! the complete, durable file.
//!
//! **Concurrency.** One upload per id at a time: a second `begin_upload` of
//! an id being uploaded gets [`BeginError::InProgress`] immediately (no
//! waiting, so a stalled sender cannot block a thread; retry later, when it
//! usually becomes `AlreadyStored`). At most [`UPLOADS_MAX`] uploads run at
//! once. Unfinished uploads are deleted when their [`Upload`] is dropped,
//! and any left by a crash are deleted by [`AttachmentStore::open`], which
//! takes an advisory lock on the directory so a second store (or process)
//! cannot delete uploads it does not own.
//!
//! All operations do blocking file I/O; async callers run them (and iterate
//! a [`ChunkStream`]) inside `tokio::task::spawn_blocking`. The store is
//! `Clone + Send + Sync`; `Upload` and `ChunkStream` are `Send`.
//!
//! No reference counting or garbage collection yet (a later issue chooses
//! leases or refcounts); [`AttachmentMeta::stored_ms`] is kept for it.

mod error;
mod format;
mod read;
#[cfg(test)]
mod test_support;
mod upload;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

pub use dem_proto::attachment::{ATTACHMENT_BYTES_MAX, CHUNK_BYTES};
pub use dem_proto::{ATTACHMENT_ID_HEX_LEN, AttachmentId, AttachmentIdError};
pub use error::{BeginError, FinishError, OpenError, ReadError, RemoveError, WriteError};
pub use read::{Chunk, ChunkStream};
pub use upload::Upload;

use format::Layout;
use upload::UploadSlot;

/// Longest file name, in bytes (the common file system limit).
pub const NAME_BYTES_MAX: usize = 255;
/// Longest media type, in bytes (RFC 6838 allows 127 per type and subtype).
pub const MEDIA_TYPE_BYTES_MAX: usize = 255;
/// Most uploads in progress at once; each holds an open file.
pub const UPLOADS_MAX: usize = 64;

/// What the store records about an attachment besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// BLAKE3 of the content.
    pub id: AttachmentId,
    /// Content length in bytes.
    pub size_bytes: u64,
    /// File name given by the first uploader, if any. Informative only: the
    /// same content under another name is the same attachment.
    pub name: Option<String>,
    /// Media type given by the first uploader, if any (informative only).
    pub media_type: Option<String>,
    /// When the upload finished on this host, milliseconds since the Unix
    /// epoch; for a later lease or garbage-collection policy.
    pub stored_ms: i64,
}

/// Number and total content size of the stored attachments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachmentUsage {
    /// Number of stored attachments.
    pub count: u64,
    /// Sum of their content sizes (the trailers add a few hundred bytes each).
    pub bytes: u64,
}

/// The attachment store of one host. Cheap to clone; clones share the
/// directory lock and the set of uploads in progress.
#[derive(Clone)]
pub struct AttachmentStore {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    uploads: Mutex<HashSet<AttachmentId>>,
    /// Held open for the advisory lock, released when the last clone drops.
    _lock: File,
}

impl Inner {
    /// The ids being uploaded. A panic while holding the lock cannot leave
    /// the set inconsistent (single inserts and removes), so poison is ignored.
    fn uploads(&self) -> MutexGuard<'_, HashSet<AttachmentId>> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AttachmentStore {
    /// Opens (creating if needed) `data_dir/attachments/`, locks it and
    /// deletes uploads left unfinished by an earlier run.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        let layout = Layout::new(data_dir);
        fs::create_dir_all(&layout.objects)?;
        fs::create_dir_all(&layout.tmp)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(layout.lock_file())?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(OpenError::Locked),
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                tracing::warn!("file locking unsupported; do not share {:?}", layout.root);
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        let mut stale = 0usize;
        for entry in fs::read_dir(&layout.tmp)? {
            fs::remove_file(entry?.path())?;
            stale += 1;
        }
        if stale > 0 {
            tracing::info!(stale, "removed unfinished attachment uploads");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                uploads: Mutex::new(HashSet::new()),
                _lock: lock,
            }),
        })
    }

    /// Starts receiving attachment `id` of `size_bytes`; `name` and
    /// `media_type` are the sender's labels. Refuses with
    /// [`BeginError::AlreadyStored`] when there is nothing to transfer.
    pub fn begin_upload(
        &self,
        id: AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
    ) -> Result<Upload, BeginError> {
        if size_bytes > ATTACHMENT_BYTES_MAX {
            return Err(BeginError::TooLarge {
                size: size_bytes,
                limit: ATTACHMENT_BYTES_MAX,
            });
        }
        if let Some(name) = &name {
            check_label("name", name, NAME_BYTES_MAX, |c| !c.is_control())?;
        }
        if let Some(media_type) = &media_type {
            check_label("media type", media_type, MEDIA_TYPE_BYTES_MAX, |c| {
                c == ' ' || c.is_ascii_graphic()
            })?;
            if !media_type.contains('/') {
                return Err(BeginError::InvalidLabel {
                    what: "media type",
                    reason: "not of the form type/subtype".into(),
                });
            }
        }
        let slot = {
            let mut uploads = self.inner.uploads();
            if uploads.contains(&id) {
                return Err(BeginError::InProgress(id));
            }
            if uploads.len() >= UPLOADS_MAX {
                return Err(BeginError::TooManyUploads { limit: UPLOADS_MAX });
            }
            uploads.insert(id);
            UploadSlot {
                store: Arc::clone(&self.inner),
                id,
            }
        };
        // Checked while holding the slot: no upload of `id` can finish between
        // this check and our own (the slot is released on every early return).
        if self.contains(&id) {
            return Err(BeginError::AlreadyStored(id));
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.inner.layout.partial(&id))?;
        Ok(Upload::new(slot, file, size_bytes, name, media_type))
    }

    /// Whether a finished attachment `id` is stored.
    pub fn contains(&self, id: &AttachmentId) -> bool {
        self.inner.layout.object(id).is_file()
    }

    /// The meta of a stored attachment.
    pub fn meta(&self, id: &AttachmentId) -> Result<AttachmentMeta, ReadError> {
        Ok(format::open_stored(&self.inner.layout, id, false)?.meta)
    }

    /// Streams the verified bytes `start..end` of attachment `id`.
    pub fn read_range(
        &self,
        id: &AttachmentId,
        start: u64,
        end: u64,
    ) -> Result<ChunkStream, ReadError> {
        ChunkStream::new(
            format::open_stored(&self.inner.layout, id, true)?,
            start,
            end,
        )
    }

    /// Streams every chunk of attachment `id`, whole and verified, to move it
    /// to another host: feed each [`Chunk`] to [`Upload::write_chunk`] there
    /// after `begin_upload` with [`ChunkStream::meta`].
    pub fn export_chunks(&self, id: &AttachmentId) -> Result<ChunkStream, ReadError> {
        let stored = format::open_stored(&self.inner.layout, id, true)?;
        let size = stored.meta.size_bytes;
        ChunkStream::new(stored, 0, size)
    }

    /// Every stored attachment, sorted by id. Scans the directory tree and
    /// reads each trailer (O(number of attachments)); files whose trailer is
    /// damaged are logged and left out.
    pub fn list(&self) -> Result<Vec<AttachmentMeta>, ReadError> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.inner.layout.objects)? {
            let shard = shard?;
            let shard_name = shard.file_name();
            let Some(prefix) = shard_name.to_str().filter(|p| p.len() == 2) else {
                continue;
            };
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let file_name = entry.file_name();
                let Some(id) = file_name
                    .to_str()
                    .and_then(|rest| AttachmentId::parse(&format!("{prefix}{rest}")).ok())
                else {
                    tracing::warn!(path = %entry.path().display(), "stray file in attachment store");
                    continue;
                };
                match self.meta(&id) {
                    Ok(meta) => out.push(meta),
                    // Removed while listing.
                    Err(ReadError::NotFound(_)) => {}
                    Err(e @ ReadError::Corrupt { .. }) => tracing::error!("{e}"),
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Number and total size of the stored attachments (a [`Self::list`] scan).
    pub fn usage(&self) -> Result<AttachmentUsage, ReadError> {
        let list = self.list()?;
        Ok(AttachmentUsage {
            count: list.len() as u64,
            bytes: list.iter().map(|m| m.size_bytes).sum(),
        })
    }

    /// Deletes attachment `id`, durably. Readers already streaming it keep
    /// their open file (on Unix); new reads get `NotFound`.
    pub fn remove(&self, id: &AttachmentId) -> Result<(), RemoveError> {
        match fs::remove_file(self.inner.layout.object(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RemoveError::NotFound(*id));
            }
            Err(e) => return Err(e.into()),
        }
        format::sync_dir(&self.inner.layout.shard(id))?;
        tracing::debug!(%id, "attachment removed");
        Ok(())
    }

    /// Number of uploads in progress.
    pub fn uploads_in_progress(&self) -> usize {
        self.inner.uploads().len()
    }
}

/// Refuses an empty or over-long label, or one with a character `allowed`
/// rejects (control characters could forge headers or log lines downstream).
fn check_label(
    what: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), BeginError> {
    let reason = if value.is_empty() {
        "empty".to_string()
    } else if value.len() > max {
        format!("{} bytes, the limit is {max}", value.len())
    } else if !value.chars().all(allowed) {
        "contains a character that is not allowed".to_string()
    } else {
        return Ok(());
    };
    Err(BeginError::InvalidLabel { what, reason })
}

#[cfg(test)]
mod tests {
    use super::test_support::{content, store, upload_all};
    use super::*;

    #[test]
    fn reopen_keeps_finished_and_drops_partial_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(20, CHUNK_BYTES as usize + 17);
        let partial_id = AttachmentId::of(b"never finished");
        let meta = {
            let store = AttachmentStore::open(dir.path()).unwrap();
            upload_all(&store, &data)
        };
        // What a crash mid-upload leaves behind: a partial file nobody drops.
        let partial = Layout::new(dir.path()).partial(&partial_id);
        fs::write(&partial, b"01234").unwrap();
        let store = AttachmentStore::open(dir.path()).unwrap();
        assert!(!partial.exists());
        assert!(!store.contains(&partial_id));
        assert_eq!(store.meta(&meta.id).unwrap(), meta);
        assert_eq!(store.list().unwrap(), vec![meta.clone()]);
        let back: Vec<u8> = store
            .export_chunks(&meta.id)
            .unwrap()
            .flat_map(|c| c.unwrap().bytes)
            .collect();
        assert_eq!(back, data);
    }

    #[test]
    fn second_store_on_same_directory_is_refused() {
        let (dir, _store) = store();
        assert!(matches!(
            AttachmentStore::open(dir.path()),
            Err(OpenError::Locked)
        ));
    }

    #[test]
    fn list_usage_remove() {
        let (_dir, store) = store();
        assert_eq!(store.usage().unwrap(), AttachmentUsage::default());
        let a = upload_all(&store, &content(21, 10));
        let b = upload_all(&store, &content(22, 2 * CHUNK_BYTES as usize));
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort_by_key(|m| m.id);
        assert_eq!(store.list().unwrap(), expected);
        assert_eq!(
            store.usage().unwrap(),
            AttachmentUsage {
                count: 2,
                bytes: 10 + 2 * CHUNK_BYTES
            }
        );
        store.remove(&a.id).unwrap();
        assert!(!store.contains(&a.id));
        assert!(matches!(store.remove(&a.id), Err(RemoveError::NotFound(_))));
        assert_eq!(store.list().unwrap(), vec![b]);
        // Removed content can be uploaded again.
        upload_all(&store, &content(21, 10));
    }

    #[test]
    fn list_skips_corrupt_and_stray_files() {
        let (_dir, store) = store();
        let good = upload_all(&store, &content(23, 5));
        let bad = upload_all(&store, &content(24, 5));
        fs::write(store.inner.layout.object(&bad.id), b"garbage").unwrap();
        fs::write(store.inner.layout.shard(&good.id).join("stray"), b"x").unwrap();
        assert_eq!(store.list().unwrap(), vec![good]);
        assert!(matches!(
            store.meta(&bad.id),
            Err(ReadError::Corrupt { .. })
        ));
    }

    #[test]
    fn limits() {
        let (_dir, store) = store();
        let id = AttachmentId::of(b"limits");
        assert!(matches!(
            store.begin_upload(id, ATTACHMENT_BYTES_MAX + 1, None, None),
            Err(BeginError::TooLarge { .. })
        ));
        // Exactly the maximum is accepted (nothing is written up front).
        drop(
            store
                .begin_upload(id, ATTACHMENT_BYTES_MAX, None, None)
                .unwrap(),
        );
        let long_name = "n".repeat(NAME_BYTES_MAX + 1);
        let cases = [
            (Some(long_name), None),
            (Some(String::new()), None),
            (Some("a\nb".to_string()), None),
            (
                None,
                Some(format!("text/{}", "x".repeat(MEDIA_TYPE_BYTES_MAX))),
            ),
            (None, Some("text".to_string())),
            (None, Some("text/plain\r\nX: y".to_string())),
        ];
        for (name, media_type) in cases {
            assert!(matches!(
                store.begin_upload(id, 1, name, media_type),
                Err(BeginError::InvalidLabel { .. })
            ));
        }
        store
            .begin_upload(
                id,
                1,
                Some("résumé final.pdf".into()),
                Some("application/pdf; charset=binary".into()),
            )
            .unwrap();

        let uploads: Vec<Upload> = (0..UPLOADS_MAX)
            .map(|i| {
                let id = AttachmentId::of(&i.to_le_bytes());
                store.begin_upload(id, 1, None, None).unwrap()
            })
            .collect();
        assert!(matches!(
            store.begin_upload(id, 1, None, None),
            Err(BeginError::TooManyUploads { limit: UPLOADS_MAX })
        ));
        drop(uploads);
        assert_eq!(store.uploads_in_progress(), 0);
        store.begin_upload(id, 1, None, None).unwrap();
    }

    #[test]
    fn types_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<AttachmentStore>();
        assert_send::<Upload>();
        assert_send::<ChunkStream>();
    }
}
