//! [`ChunkStream`]: verified, streaming reads of a byte range of an attachment.
//!
//! Reads go chunk by chunk: each underlying 1 MiB chunk is read whole and
//! checked against its stored BLAKE3 before any of its bytes are handed out,
//! so a damaged disk yields [`ReadError::CorruptChunk`], never wrong bytes.
//! Only the part of the chunk inside the range is returned. The same stream
//! over the whole attachment is the export used to move it to another host:
//! its items are exactly the chunks `Upload::write_chunk` takes.

use std::fs::File;

use super::format::{self, Stored, chunk_len};
use super::{AttachmentId, AttachmentMeta, CHUNK_BYTES, ReadError};

/// One verified piece of an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the underlying chunk.
    pub index: u64,
    /// Offset of `bytes[0]` in the attachment.
    pub offset: u64,
    /// The bytes: the whole chunk, or its part inside the requested range.
    pub bytes: Vec<u8>,
}

/// Iterator over the verified chunks of a range, from
/// [`AttachmentStore::read_range`](super::AttachmentStore::read_range) or
/// [`AttachmentStore::export_chunks`](super::AttachmentStore::export_chunks).
/// Blocking file I/O; `Send`. Holds the file open, so it keeps reading even
/// if the attachment is removed meanwhile (on Unix). Stops after an error.
pub struct ChunkStream {
    file: File,
    meta: AttachmentMeta,
    hashes: Vec<[u8; 32]>,
    next_index: u64,
    start: u64,
    end: u64,
    done: bool,
}

impl ChunkStream {
    /// Checks `start <= end <= size` and positions at the chunk holding `start`.
    pub(super) fn new(stored: Stored, start: u64, end: u64) -> Result<Self, ReadError> {
        let size = stored.meta.size_bytes;
        if start > end || end > size {
            return Err(ReadError::BadRange { start, end, size });
        }
        Ok(Self {
            file: stored.file,
            meta: stored.meta,
            hashes: stored.hashes,
            next_index: start / CHUNK_BYTES,
            start,
            end,
            done: start == end,
        })
    }

    /// The attachment's meta (e.g. to announce an export before its chunks).
    pub fn meta(&self) -> &AttachmentMeta {
        &self.meta
    }

    /// The attachment's id.
    pub fn id(&self) -> AttachmentId {
        self.meta.id
    }

    fn read_chunk(&mut self, index: u64) -> Result<Chunk, ReadError> {
        let id = self.meta.id;
        let chunk_start = index * CHUNK_BYTES;
        // Bounded by CHUNK_BYTES, so the cast cannot truncate.
        let mut buf = vec![0u8; chunk_len(self.meta.size_bytes, index) as usize];
        format::read_at(&mut self.file, chunk_start, &mut buf)?;
        let expected = self
            .hashes
            .get(index as usize)
            .ok_or_else(|| ReadError::Corrupt {
                id,
                reason: format!("no hash stored for chunk {index}"),
            })?;
        if blake3::hash(&buf).as_bytes() != expected {
            tracing::error!(%id, index, "attachment chunk failed verification");
            return Err(ReadError::CorruptChunk { id, index });
        }
        // Keep only the part inside [start, end).
        let lo = (self.start.max(chunk_start) - chunk_start) as usize;
        let hi = (self.end.min(chunk_start + buf.len() as u64) - chunk_start) as usize;
        buf.truncate(hi);
        buf.drain(..lo);
        Ok(Chunk {
            index,
            offset: chunk_start + lo as u64,
            bytes: buf,
        })
    }
}

impl Iterator for ChunkStream {
    type Item = Result<Chunk, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next_index * CHUNK_BYTES >= self.end {
            self.done = true;
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        let item = self.read_chunk(index);
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::super::test_support::{content, store, upload_all};
    use super::super::*;

    fn read(store: &AttachmentStore, id: &AttachmentId, start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = start;
        for chunk in store.read_range(id, start, end).unwrap() {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.offset, offset, "chunks are contiguous");
            assert!(!chunk.bytes.is_empty());
            offset += chunk.bytes.len() as u64;
            out.extend(chunk.bytes);
        }
        out
    }

    #[test]
    fn ranges_across_boundaries_and_at_edges() {
        let (_dir, store) = store();
        let c = CHUNK_BYTES;
        let size = 3 * c + c / 2;
        let data = content(10, size as usize);
        let id = upload_all(&store, &data).id;
        let cases = [
            (0, size),
            (0, 0),
            (size, size),
            (0, 1),
            (size - 1, size),
            (c - 1, c + 1),
            (c, c),
            (c, 2 * c),
            (c - 1, 3 * c + 1),
            (2 * c + 5, 2 * c + 6),
            (3 * c, size),
        ];
        for (start, end) in cases {
            assert_eq!(
                read(&store, &id, start, end),
                &data[start as usize..end as usize],
                "range {start}..{end}"
            );
        }
        // Chunk count: only the chunks overlapping the range are read.
        assert_eq!(store.read_range(&id, c - 1, c + 1).unwrap().count(), 2);
        assert_eq!(store.read_range(&id, c, 2 * c).unwrap().count(), 1);
    }

    #[test]
    fn bad_ranges_and_missing_ids() {
        let (_dir, store) = store();
        let data = content(11, 10);
        let id = upload_all(&store, &data).id;
        for (start, end) in [(0, 11), (5, 4), (11, 11), (u64::MAX, u64::MAX)] {
            assert!(matches!(
                store.read_range(&id, start, end),
                Err(ReadError::BadRange { size: 10, .. })
            ));
        }
        let missing = AttachmentId::of(b"missing");
        assert!(matches!(
            store.read_range(&missing, 0, 0),
            Err(ReadError::NotFound(_))
        ));
    }

    #[test]
    fn corrupted_chunk_is_detected() {
        let (_dir, store) = store();
        let data = content(12, 2 * CHUNK_BYTES as usize + 3);
        let id = upload_all(&store, &data).id;
        // Flip one byte in chunk 1.
        let path = store.inner.layout.object(&id);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(CHUNK_BYTES + 7)).unwrap();
        f.write_all(&[data[CHUNK_BYTES as usize + 7] ^ 0xff])
            .unwrap();
        drop(f);

        // Chunk 0 is fine, chunk 1 is refused, and the stream stops.
        let mut stream = store.export_chunks(&id).unwrap();
        assert_eq!(stream.next().unwrap().unwrap().index, 0);
        assert!(matches!(
            stream.next(),
            Some(Err(ReadError::CorruptChunk { index: 1, .. }))
        ));
        assert!(stream.next().is_none());
        // A range touching only the good chunk still reads.
        assert_eq!(read(&store, &id, 0, 5), &data[..5]);
        assert!(matches!(
            store
                .read_range(&id, CHUNK_BYTES + 100, CHUNK_BYTES + 101)
                .unwrap()
                .next(),
            Some(Err(ReadError::CorruptChunk { index: 1, .. }))
        ));
    }

    #[test]
    fn export_then_import_moves_an_attachment() {
        let (_a, from) = store();
        let (_b, to) = store();
        let data = content(13, 2 * CHUNK_BYTES as usize + 1);
        upload_all(&from, &data);
        let id = AttachmentId::of(&data);

        let stream = from.export_chunks(&id).unwrap();
        let meta = stream.meta().clone();
        let mut up = to
            .begin_upload(meta.id, meta.size_bytes, meta.name, meta.media_type)
            .unwrap();
        for chunk in stream {
            let chunk = chunk.unwrap();
            up.write_chunk(chunk.index, &chunk.bytes).unwrap();
        }
        up.finish(super::super::test_support::STORED_MS).unwrap();
        assert_eq!(read(&to, &id, 0, data.len() as u64), data);
    }
}
