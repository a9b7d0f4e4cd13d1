//! On-disk layout of the attachment store and of one stored attachment file.
//!
//! ```text
//! <data dir>/attachments/
//!   LOCK                     advisory lock: one store per directory
//!   tmp/<id>.part            uploads in progress (deleted at open)
//!   objects/<ab>/<cdef...>   finished attachments, <ab> = first 2 hex chars
//! ```
//!
//! A finished attachment is ONE file, so that a single `rename` makes it
//! visible atomically (a data file plus a sidecar would need two renames and
//! a rule for orphans):
//!
//! ```text
//! [content: size bytes][chunk hashes: 32 × chunk_count][record][record_len: u32 LE][MAGIC: 8]
//! ```
//!
//! The content comes first so a range read is a seek to its own offset; the
//! per-chunk BLAKE3 hashes and the rmp-serde [`Record`] (named fields, so
//! later fields such as a lease can be added with `#[serde(default)]`) are
//! a trailer found from the file's end. The file length must equal exactly
//! what the record announces, which catches truncation before any read.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ATTACHMENT_BYTES_MAX, AttachmentId, AttachmentMeta, CHUNK_BYTES, ReadError};

/// Marks the end of a finished attachment file; the last byte is the format
/// version, bumped on incompatible layout changes.
pub(super) const MAGIC: [u8; 8] = *b"DEMATT\x00\x01";
/// Largest record accepted when reading, so a damaged length cannot make the
/// reader allocate gigabytes. Real records are a few hundred bytes.
const RECORD_BYTES_MAX: u32 = 16 << 10;
/// `record_len` plus [`MAGIC`].
const FOOTER_BYTES: u64 = 4 + MAGIC.len() as u64;
/// Size of one chunk hash in the trailer.
const HASH_BYTES: u64 = 32;

/// Number of chunks an attachment of `size` bytes is cut into.
pub(super) fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_BYTES)
}

/// Length of chunk `index` of an attachment of `size` bytes (0 past the end).
pub(super) fn chunk_len(size: u64, index: u64) -> u64 {
    size.saturating_sub(index.saturating_mul(CHUNK_BYTES))
        .min(CHUNK_BYTES)
}

/// The trailer's decoded record.
#[derive(Serialize, Deserialize)]
struct Record {
    meta: AttachmentMeta,
}

/// Where the store keeps its files.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub root: PathBuf,
    pub objects: PathBuf,
    pub tmp: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("attachments");
        Self {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            root,
        }
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// Directory of the attachment's shard (first two hex characters), which
    /// keeps any one directory to 1/256 of the store.
    pub fn shard(&self, id: &AttachmentId) -> PathBuf {
        self.objects.join(&id.to_hex()[..2])
    }

    pub fn object(&self, id: &AttachmentId) -> PathBuf {
        let hex = id.to_hex();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// The temporary file of an upload. One name per id is enough because
    /// the store allows one upload per id at a time and the lock keeps other
    /// processes out.
    pub fn partial(&self, id: &AttachmentId) -> PathBuf {
        self.tmp.join(format!("{id}.part"))
    }
}

/// Serializes the trailer that follows the content of a finished upload.
pub(super) fn encode_trailer(meta: &AttachmentMeta, hashes: &[[u8; 32]]) -> Vec<u8> {
    let record = rmp_serde::to_vec_named(&Record { meta: meta.clone() })
        // Strings, integers and a fixed-size id serialize into a Vec infallibly.
        .expect("attachment record serializes");
    let mut out = Vec::with_capacity(hashes.len() * 32 + record.len() + FOOTER_BYTES as usize);
    for h in hashes {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(&record);
    // Labels are bounded far below u32::MAX by the begin-upload limits.
    let len = u32::try_from(record.len()).expect("record length fits u32");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&MAGIC);
    out
}

/// A finished attachment opened for reading, its trailer checked.
pub(super) struct Stored {
    pub file: File,
    pub meta: AttachmentMeta,
    /// Per-chunk hashes; empty unless asked for.
    pub hashes: Vec<[u8; 32]>,
}

/// Opens and checks the file of `id`; reads the chunk hashes too when
/// `with_hashes` (listing only needs the meta).
pub(super) fn open_stored(
    layout: &Layout,
    id: &AttachmentId,
    with_hashes: bool,
) -> Result<Stored, ReadError> {
    let mut file = match File::open(layout.object(id)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound(*id)),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |reason: String| ReadError::Corrupt { id: *id, reason };
    let file_len = file.metadata()?.len();
    if file_len < FOOTER_BYTES {
        return Err(corrupt(format!("file of {file_len} bytes has no trailer")));
    }
    let mut footer = [0u8; FOOTER_BYTES as usize];
    read_at(&mut file, file_len - FOOTER_BYTES, &mut footer)?;
    if footer[4..] != MAGIC {
        return Err(corrupt("bad magic or unsupported format".into()));
    }
    let record_len = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
    if record_len > RECORD_BYTES_MAX || u64::from(record_len) > file_len - FOOTER_BYTES {
        return Err(corrupt(format!("record length {record_len} is impossible")));
    }
    let record_start = file_len - FOOTER_BYTES - u64::from(record_len);
    let mut record = vec![0u8; record_len as usize];
    read_at(&mut file, record_start, &mut record)?;
    let Record { meta } = rmp_serde::from_slice(&record)
        .map_err(|e| corrupt(format!("record does not decode: {e}")))?;
    if meta.id != *id {
        return Err(corrupt(format!("record names attachment {}", meta.id)));
    }
    if meta.size_bytes > ATTACHMENT_BYTES_MAX {
        return Err(corrupt(format!(
            "size {} is over the limit",
            meta.size_bytes
        )));
    }
    let count = chunk_count(meta.size_bytes);
    let expected = meta.size_bytes + count * HASH_BYTES + u64::from(record_len) + FOOTER_BYTES;
    if expected != file_len {
        return Err(corrupt(format!(
            "file is {file_len} bytes, its record implies {expected}"
        )));
    }
    let mut hashes = Vec::new();
    if with_hashes {
        let mut raw = vec![0u8; (count * HASH_BYTES) as usize];
        read_at(&mut file, meta.size_bytes, &mut raw)?;
        hashes = raw
            .chunks_exact(HASH_BYTES as usize)
            .map(|c| c.try_into().expect("chunks_exact yields 32 bytes"))
            .collect();
    }
    Ok(Stored { file, meta, hashes })
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(super) fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Makes a rename, creation or deletion inside `dir` durable. Directories
/// cannot be opened for syncing on Windows, where NTFS journals metadata.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` if missing, syncing its parent when it was created so the
/// new directory itself survives a crash.
pub(super) fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => match dir.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_BYTES), 1);
        assert_eq!(chunk_count(CHUNK_BYTES + 1), 2);
        assert_eq!(chunk_len(CHUNK_BYTES + 1, 0), CHUNK_BYTES);
        assert_eq!(chunk_len(CHUNK_BYTES + 1, 1), 1);
        assert_eq!(chunk_len(CHUNK_BYTES + 1, 2), 0);
        assert_eq!(chunk_len(u64::MAX, u64::MAX), 0);
    }

    #[test]
    fn object_paths_are_sharded_by_hex() {
        let layout = Layout::new(Path::new("/d"));
        let id = AttachmentId::of(b"z");
        let hex = id.to_hex();
        assert_eq!(
            layout.object(&id),
            Path::new("/d/attachments/objects")
                .join(&hex[..2])
                .join(&hex[2..])
        );
        assert_eq!(layout.shard(&id), layout.object(&id).parent().unwrap());
    }

    #[test]
    fn trailer_round_trips_and_checks_length() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let content = b"hello world".to_vec();
        let id = AttachmentId::of(&content);
        let meta = AttachmentMeta {
            id,
            size_bytes: content.len() as u64,
            name: Some("a.txt".into()),
            media_type: None,
            stored_ms: 7,
        };
        let hashes = [*blake3::hash(&content).as_bytes()];
        let mut file = content.clone();
        file.extend(encode_trailer(&meta, &hashes));
        fs::create_dir_all(layout.shard(&id)).unwrap();
        fs::write(layout.object(&id), &file).unwrap();
        let stored = open_stored(&layout, &id, true).unwrap();
        assert_eq!(stored.meta, meta);
        assert_eq!(stored.hashes, hashes);

        // One extra byte of content shifts everything: refused, not misread.
        let mut longer = content.clone();
        longer.push(0);
        longer.extend(encode_trailer(&meta, &hashes));
        fs::write(layout.object(&id), &longer).unwrap();
        assert!(matches!(
            open_stored(&layout, &id, false),
            Err(ReadError::Corrupt { .. })
        ));
        fs::write(layout.object(&id), b"tiny").unwrap();
        assert!(matches!(
            open_stored(&layout, &id, false),
            Err(ReadError::Corrupt { .. })
        ));
    }
}
