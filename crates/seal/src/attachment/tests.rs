//! Unit tests of [`super`]: round trips at every awkward size and split,
//! and every kind of tampering a host could try.

use super::*;

const CHUNK: usize = ATTACHMENT_CHUNK_BYTES;
const SEALED_CHUNK: usize = CHUNK + TAG_BYTES;

fn key() -> ContentKey {
    ContentKey::from_bytes(&[5; 32])
}

/// splitmix64: a seeded generator for the randomised tests, so a failure
/// replays from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The seed from `DEM_SEAL_SEED`, or a fresh one; printed either way so
/// a failing run can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("DEM_SEAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("seed {seed} (replay with DEM_SEAL_SEED={seed})");
    seed
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// Feeds `input` to `update` in pieces cut at `cuts`.
fn seal_split(plaintext: &[u8], rng: &mut Rng, max_piece: usize) -> (Vec<u8>, AttachmentSealed) {
    let mut out = Vec::new();
    let mut sealer = AttachmentSealer::new(&key()).unwrap();
    let mut rest = plaintext;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_piece)).min(rest.len());
        sealer.update(&rest[..n], &mut out).unwrap();
        // At most one chunk is ever held back.
        assert!(sealer.pending.len() <= CHUNK);
        rest = &rest[n..];
    }
    let sealed = sealer.finish(&mut out).unwrap();
    (out, sealed)
}

fn open_split(sealed: &[u8], rng: &mut Rng, max_piece: usize) -> Result<Vec<u8>, OpenError> {
    let mut out = Vec::new();
    let mut opener = AttachmentOpener::new(&key());
    let mut rest = sealed;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_piece)).min(rest.len());
        opener.update(&rest[..n], &mut out)?;
        assert!(opener.pending.len() <= SEALED_CHUNK);
        rest = &rest[n..];
    }
    let plaintext_bytes = opener.finish(&mut out)?;
    assert_eq!(plaintext_bytes, out.len() as u64);
    Ok(out)
}

#[test]
fn round_trips_at_awkward_sizes() {
    for len in [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK,
        2 * CHUNK + 1,
        3 * CHUNK - 1,
    ] {
        let plaintext = pattern(len);
        let (sealed, info) = seal_attachment(&key(), &plaintext).unwrap();
        assert_eq!(sealed.len() as u64, ciphertext_size(len as u64), "{len}");
        assert_eq!(info.ciphertext_bytes, sealed.len() as u64);
        assert_eq!(info.plaintext_bytes, len as u64);
        assert_eq!(info.ciphertext_hash, *blake3::hash(&sealed).as_bytes());
        assert_eq!(
            open_attachment(&key(), &sealed).unwrap(),
            plaintext,
            "{len}"
        );
    }
}

#[test]
fn empty_attachment_is_a_header_and_one_empty_last_chunk() {
    let (sealed, _) = seal_attachment(&key(), b"").unwrap();
    assert_eq!(sealed.len(), ATTACHMENT_HEADER_BYTES + TAG_BYTES);
    assert_eq!(&sealed[..4], ATTACHMENT_MAGIC);
    assert_eq!(sealed[4], ATTACHMENT_VERSION);
    assert_eq!(&sealed[5..9], &(CHUNK as u32).to_be_bytes());
}

#[test]
fn several_mib_in_random_splits() {
    let mut rng = Rng(seed());
    let len = (3 << 20) + rng.below(CHUNK * 3);
    let plaintext = rng.bytes(len);
    // Small and large pieces: both the header-in-pieces path and whole
    // chunks at once.
    for max_piece in [7, 1000, 3 * CHUNK] {
        let (sealed, info) = seal_split(&plaintext, &mut rng, max_piece);
        assert_eq!(info.ciphertext_hash, *blake3::hash(&sealed).as_bytes());
        assert_eq!(sealed.len() as u64, ciphertext_size(len as u64));
        let opened = open_split(&sealed, &mut rng, max_piece).unwrap();
        assert!(opened == plaintext, "max piece {max_piece}");
    }
}

#[test]
fn ciphertext_size_is_exact_for_random_sizes() {
    let mut rng = Rng(seed());
    for _ in 0..20 {
        let len = rng.below(5 * CHUNK);
        let (sealed, _) = seal_attachment(&key(), &pattern(len)).unwrap();
        assert_eq!(sealed.len() as u64, ciphertext_size(len as u64), "{len}");
    }
    // Far past memory: 10 GiB in whole chunks, one tag each.
    let ten_gib = 10u64 << 30;
    assert_eq!(
        ciphertext_size(ten_gib),
        ATTACHMENT_HEADER_BYTES as u64 + ten_gib + (ten_gib / CHUNK as u64) * 16
    );
}

#[test]
fn every_flipped_byte_is_refused() {
    // Two chunks and a bit, so middle and last chunks are both hit.
    let (sealed, _) = seal_attachment(&key(), &pattern(2 * CHUNK + 10)).unwrap();
    // Every header byte, then bytes near every chunk's edges and middle.
    let mut at: Vec<usize> = (0..ATTACHMENT_HEADER_BYTES).collect();
    for chunk_start in (ATTACHMENT_HEADER_BYTES..sealed.len()).step_by(SEALED_CHUNK) {
        for off in [0, 1, CHUNK / 2, CHUNK - 1, CHUNK, SEALED_CHUNK - 1] {
            if chunk_start + off < sealed.len() {
                at.push(chunk_start + off);
            }
        }
    }
    at.push(sealed.len() - 1);
    for i in at {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        match open_attachment(&key(), &bad) {
            Err(OpenError::Malformed(_)) if i < 4 => {}
            Err(OpenError::UnknownVersion(_)) if i == 4 => {}
            // The chunk size: out of range, or in range and then the
            // chunks no longer line up or authenticate.
            Err(OpenError::Malformed(_) | OpenError::Authentication) if (5..9).contains(&i) => {}
            Err(OpenError::Authentication) if i >= 9 => {}
            other => panic!("byte {i}: {other:?}"),
        }
    }
}

#[test]
fn wrong_key_is_authentication() {
    let (sealed, _) = seal_attachment(&key(), b"attachment").unwrap();
    let other = ContentKey::from_bytes(&[6; 32]);
    assert!(matches!(
        open_attachment(&other, &sealed),
        Err(OpenError::Authentication)
    ));
}

#[test]
fn truncation_at_a_chunk_boundary_is_truncated() {
    let (sealed, _) = seal_attachment(&key(), &pattern(3 * CHUNK + 5)).unwrap();
    for chunks in 0..3 {
        let cut = ATTACHMENT_HEADER_BYTES + chunks * SEALED_CHUNK;
        assert!(
            matches!(
                open_attachment(&key(), &sealed[..cut]),
                Err(OpenError::Truncated)
            ),
            "after {chunks} chunks"
        );
    }
    // Inside the header too.
    assert!(matches!(
        open_attachment(&key(), &sealed[..10]),
        Err(OpenError::Truncated)
    ));
    assert!(matches!(
        open_attachment(&key(), &[]),
        Err(OpenError::Truncated)
    ));
    // Inside a chunk: the tag cannot verify.
    assert!(matches!(
        open_attachment(&key(), &sealed[..ATTACHMENT_HEADER_BYTES + 100]),
        Err(OpenError::Authentication)
    ));
}

#[test]
fn dropping_the_last_chunk_of_an_exact_multiple_is_truncated() {
    let (sealed, _) = seal_attachment(&key(), &pattern(2 * CHUNK)).unwrap();
    let cut = ATTACHMENT_HEADER_BYTES + SEALED_CHUNK;
    assert!(matches!(
        open_attachment(&key(), &sealed[..cut]),
        Err(OpenError::Truncated)
    ));
}

#[test]
fn reordered_chunks_are_authentication() {
    let (sealed, _) = seal_attachment(&key(), &pattern(3 * CHUNK + 5)).unwrap();
    let h = ATTACHMENT_HEADER_BYTES;
    let mut bad = sealed.clone();
    let (first, second) = bad[h..h + 2 * SEALED_CHUNK].split_at_mut(SEALED_CHUNK);
    first.swap_with_slice(second);
    assert!(matches!(
        open_attachment(&key(), &bad),
        Err(OpenError::Authentication)
    ));
    // Nothing unauthenticated came out before the failure.
    let mut out = Vec::new();
    let mut opener = AttachmentOpener::new(&key());
    assert!(opener.update(&bad, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn chunks_from_another_attachment_are_authentication() {
    let (a, _) = seal_attachment(&key(), &pattern(2 * CHUNK + 5)).unwrap();
    let (b, _) = seal_attachment(&key(), &pattern(2 * CHUNK + 5)).unwrap();
    let mut spliced = a.clone();
    let h = ATTACHMENT_HEADER_BYTES;
    spliced[h + SEALED_CHUNK..].copy_from_slice(&b[h + SEALED_CHUNK..]);
    assert!(matches!(
        open_attachment(&key(), &spliced),
        Err(OpenError::Authentication)
    ));
}

#[test]
fn appended_garbage_is_malformed_after_a_whole_last_chunk() {
    for len in [CHUNK, 2 * CHUNK] {
        let (mut sealed, _) = seal_attachment(&key(), &pattern(len)).unwrap();
        sealed.extend_from_slice(b"garbage");
        assert!(
            matches!(
                open_attachment(&key(), &sealed),
                Err(OpenError::Malformed(_))
            ),
            "{len}"
        );
    }
    // After a short last chunk the garbage runs into it: an opener cannot
    // tell that from a damaged tag without trying every length, so it
    // says so the only way it can.
    for len in [0, 10, 2 * CHUNK + 3] {
        let (mut sealed, _) = seal_attachment(&key(), &pattern(len)).unwrap();
        sealed.extend_from_slice(b"garbage");
        assert!(
            matches!(
                open_attachment(&key(), &sealed),
                Err(OpenError::Authentication)
            ),
            "{len}"
        );
    }
    // Also when the garbage comes in a later push.
    let (sealed, _) = seal_attachment(&key(), &pattern(CHUNK)).unwrap();
    let mut out = Vec::new();
    let mut opener = AttachmentOpener::new(&key());
    opener.update(&sealed, &mut out).unwrap();
    assert!(matches!(
        opener.update(b"x", &mut out),
        Err(OpenError::Malformed(_))
    ));
}

#[test]
fn a_huge_chunk_size_in_a_header_is_malformed() {
    let (mut sealed, _) = seal_attachment(&key(), b"x").unwrap();
    sealed[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        open_attachment(&key(), &sealed),
        Err(OpenError::Malformed(_))
    ));
}

#[test]
fn counter_overflow_is_an_error() {
    let mut sealer = AttachmentSealer::new(&key()).unwrap();
    sealer.counter = u64::from(u32::MAX);
    let mut out = Vec::new();
    // The last chunk at the last counter value still seals...
    sealer.update(&pattern(CHUNK), &mut out).unwrap();
    // ...but one more chunk would wrap the counter.
    assert!(matches!(
        sealer.update(b"x", &mut out),
        Err(SealError::TooLarge { .. })
    ));

    let (sealed, _) = seal_attachment(&key(), &pattern(2 * CHUNK)).unwrap();
    let mut opener = AttachmentOpener::new(&key());
    opener.counter = u64::from(u32::MAX) + 1;
    let mut out = Vec::new();
    opener.update(&sealed, &mut out).unwrap_err();
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let plaintext = pattern(CHUNK + 1);
    let (a, ia) = seal_attachment(&key(), &plaintext).unwrap();
    let (b, ib) = seal_attachment(&key(), &plaintext).unwrap();
    assert_ne!(a, b);
    assert_ne!(ia.ciphertext_hash, ib.ciphertext_hash);
    // Nor do they share a single chunk.
    let h = ATTACHMENT_HEADER_BYTES;
    assert_ne!(a[h..h + 64], b[h..h + 64]);
}
