//! Helpers shared by the attachment store's unit tests.

use super::{AttachmentId, AttachmentMeta, AttachmentStore, CHUNK_BYTES};

/// The arrival time the tests record for an attachment.
pub(super) const STORED_MS: i64 = 1_700_000_000_000;

/// A fresh store in a temporary directory (keep the directory alive).
pub(super) fn store() -> (tempfile::TempDir, AttachmentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = AttachmentStore::open(dir.path()).unwrap();
    (dir, store)
}

/// `len` pseudo-random bytes derived from `seed`, so every chunk differs.
pub(super) fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Uploads `data` in order and finishes it.
pub(super) fn upload_all(store: &AttachmentStore, data: &[u8]) -> AttachmentMeta {
    let id = AttachmentId::of(data);
    let mut up = store
        .begin_upload(id, data.len() as u64, None, None)
        .unwrap();
    for (i, chunk) in data.chunks(CHUNK_BYTES as usize).enumerate() {
        up.write_chunk(i as u64, chunk).unwrap();
    }
    up.finish(STORED_MS).unwrap()
}
