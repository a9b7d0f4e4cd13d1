//! Floating attachments sealed as a stream, in bounded memory whatever
//! their size: the STREAM construction (Hoang, Reyhanitabar, Rogaway and
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance", 2015) over XChaCha20-Poly1305.
//!
//! The format is a header `b"DEMA" || version (1) || chunk size (u32 BE)
//! || nonce prefix (19 random bytes)`, then the plaintext in chunks of the
//! chunk size, each sealed with the nonce `prefix || counter (u32 BE) ||
//! last (0 or 1)` and the header as associated data. Only the final chunk
//! (empty only for an empty attachment) has last = 1, so a stream cut at
//! a chunk boundary, chunks reordered or dropped, or chunks spliced from
//! another attachment all fail to open.
//!
//! Each attachment has its own [`ContentKey`] (wrapped beside the mail's,
//! see [`crate::wrap`]) and a random nonce prefix, so the same file sealed
//! twice gives unrelated ciphertexts: there is no convergent encryption,
//! and a host cannot learn that two users hold the same file. Attachments
//! are stored by the BLAKE3 of their ciphertext, which
//! [`AttachmentSealer::finish`] returns. [`crate::content`] seals the
//! message itself in one piece.

use chacha20poly1305::aead::AeadInOut as _;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::content::ContentKey;
use crate::error::{OpenError, SealError};

/// The first four bytes of every sealed attachment.
pub const ATTACHMENT_MAGIC: &[u8; 4] = b"DEMA";

/// The version byte this build writes and reads.
pub const ATTACHMENT_VERSION: u8 = 1;

/// The plaintext bytes per chunk this build writes: the memory a sealer
/// or opener holds is about one chunk.
pub const ATTACHMENT_CHUNK_BYTES: usize = 64 << 10;

/// The chunk sizes an opener accepts: a header from a peer decides how
/// much the opener buffers, so it is bounded.
pub const ATTACHMENT_CHUNK_BYTES_MIN: usize = 1 << 10;
pub const ATTACHMENT_CHUNK_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(
    ATTACHMENT_CHUNK_BYTES >= ATTACHMENT_CHUNK_BYTES_MIN
        && ATTACHMENT_CHUNK_BYTES <= ATTACHMENT_CHUNK_BYTES_MAX
);

const PREFIX_BYTES: usize = 19;
const TAG_BYTES: usize = 16;

/// Magic, version, chunk size, nonce prefix.
pub const ATTACHMENT_HEADER_BYTES: usize = 4 + 1 + 4 + PREFIX_BYTES;

/// What [`AttachmentSealer::finish`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentSealed {
    /// BLAKE3 of every ciphertext byte, header included: the attachment's
    /// name in a store.
    pub ciphertext_hash: [u8; 32],
    pub ciphertext_bytes: u64,
    pub plaintext_bytes: u64,
}

/// Seals one attachment as it is pushed in.
pub struct AttachmentSealer {
    cipher: XChaCha20Poly1305,
    header: [u8; ATTACHMENT_HEADER_BYTES],
    /// Whether the header has gone out yet (with the first output).
    header_sent: bool,
    /// Plaintext not yet sealed: at most one chunk, held back until more
    /// input shows whether it is the last.
    pending: Vec<u8>,
    /// The next chunk's counter; u64 so that running past u32 is seen.
    counter: u64,
    hasher: blake3::Hasher,
    ciphertext_bytes: u64,
    plaintext_bytes: u64,
}

impl AttachmentSealer {
    /// A sealer under `key` with a fresh random nonce prefix.
    pub fn new(key: &ContentKey) -> Result<Self, SealError> {
        let mut prefix = [0u8; PREFIX_BYTES];
        getrandom::fill(&mut prefix).map_err(SealError::Randomness)?;
        // Fits: the chunk size is at most ATTACHMENT_CHUNK_BYTES_MAX.
        let chunk_bytes = ATTACHMENT_CHUNK_BYTES as u32;
        let mut header = [0u8; ATTACHMENT_HEADER_BYTES];
        header[..4].copy_from_slice(ATTACHMENT_MAGIC);
        header[4] = ATTACHMENT_VERSION;
        header[5..9].copy_from_slice(&chunk_bytes.to_be_bytes());
        header[9..].copy_from_slice(&prefix);
        Ok(Self {
            cipher: key.cipher(),
            header,
            header_sent: false,
            pending: Vec::with_capacity(ATTACHMENT_CHUNK_BYTES),
            counter: 0,
            hasher: blake3::Hasher::new(),
            ciphertext_bytes: 0,
            plaintext_bytes: 0,
        })
    }

    /// Takes `input` and appends to `out` whatever whole chunks are ready.
    /// Fails only past 2³² chunks (256 TiB), where the counter would wrap.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.send_header(out);
        self.plaintext_bytes += input.len() as u64;
        while !input.is_empty() {
            if self.pending.len() == ATTACHMENT_CHUNK_BYTES {
                // More input follows, so the held chunk is not the last.
                self.seal_pending(false, out)?;
            }
            let take = (ATTACHMENT_CHUNK_BYTES - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Seals the last chunk into `out` and reports the hash and sizes.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<AttachmentSealed, SealError> {
        self.send_header(out);
        self.seal_pending(true, out)?;
        Ok(AttachmentSealed {
            ciphertext_hash: *self.hasher.finalize().as_bytes(),
            ciphertext_bytes: self.ciphertext_bytes,
            plaintext_bytes: self.plaintext_bytes,
        })
    }

    fn send_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            self.header_sent = true;
            let header = self.header;
            self.emit(out, &header);
        }
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = chunk_nonce(&self.header, self.counter, last).ok_or(SealError::TooLarge {
            what: "an attachment",
            size_bytes: self.plaintext_bytes,
            limit_bytes: (u64::from(u32::MAX) + 1) * ATTACHMENT_CHUNK_BYTES as u64,
        })?;
        let start = out.len();
        out.extend_from_slice(&self.pending);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &self.header, out[start..].as_mut().into())
            .map_err(SealError::Aead)?;
        out.extend_from_slice(&tag);
        self.hasher.update(&out[start..]);
        self.ciphertext_bytes += (out.len() - start) as u64;
        self.pending.clear();
        self.counter += 1;
        Ok(())
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(bytes);
        self.hasher.update(bytes);
        self.ciphertext_bytes += bytes.len() as u64;
    }
}

/// Opens one sealed attachment as it is pushed in, in any splits.
///
/// A whole chunk is known to be a middle one only when more input
/// follows it, so the last chunk's plaintext comes out of
/// [`AttachmentOpener::finish`]. Bytes after a whole-size last chunk are
/// [`OpenError::Malformed`]; bytes after a short last chunk run into it
/// and fail its tag ([`OpenError::Authentication`]), since telling them
/// apart would mean trying every length.
pub struct AttachmentOpener {
    cipher: XChaCha20Poly1305,
    header: [u8; ATTACHMENT_HEADER_BYTES],
    /// Header bytes received so far.
    header_bytes: usize,
    /// The chunk size the header names, once it is complete.
    chunk_bytes: usize,
    /// Ciphertext of the chunk being received: at most a chunk and a tag.
    pending: Vec<u8>,
    counter: u64,
    /// Whether the last chunk has opened; any later byte is malformed.
    done: bool,
    plaintext_bytes: u64,
}

impl AttachmentOpener {
    /// An opener under `key`.
    pub fn new(key: &ContentKey) -> Self {
        Self {
            cipher: key.cipher(),
            header: [0; ATTACHMENT_HEADER_BYTES],
            header_bytes: 0,
            chunk_bytes: 0,
            pending: Vec::new(),
            counter: 0,
            done: false,
            plaintext_bytes: 0,
        }
    }

    /// Takes `input` and appends to `out` the plaintext of every chunk
    /// that opened. Nothing unauthenticated is ever appended.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), OpenError> {
        if self.header_bytes < ATTACHMENT_HEADER_BYTES {
            let take = (ATTACHMENT_HEADER_BYTES - self.header_bytes).min(input.len());
            self.header[self.header_bytes..self.header_bytes + take]
                .copy_from_slice(&input[..take]);
            self.header_bytes += take;
            input = &input[take..];
            if self.header_bytes < ATTACHMENT_HEADER_BYTES {
                return Ok(());
            }
            self.chunk_bytes = parse_header(&self.header)?;
            self.pending = Vec::with_capacity(self.chunk_bytes + TAG_BYTES);
        }
        let sealed_chunk_bytes = self.chunk_bytes + TAG_BYTES;
        while !input.is_empty() {
            if self.done {
                return Err(OpenError::malformed("data after the last chunk"));
            }
            if self.pending.len() == sealed_chunk_bytes {
                // More input follows a whole chunk: it should be a middle
                // one, but a whole last chunk followed by garbage is told
                // apart so the error says what happened.
                if self.open_pending(false, out).is_err() {
                    self.open_pending(true, out)?;
                    self.done = true;
                    return Err(OpenError::malformed("data after the last chunk"));
                }
            }
            let take = (sealed_chunk_bytes - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Opens the last chunk (appending its plaintext to `out`) and returns
    /// the attachment's plaintext size.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, OpenError> {
        if self.done {
            return Ok(self.plaintext_bytes);
        }
        if self.header_bytes < ATTACHMENT_HEADER_BYTES || self.pending.len() < TAG_BYTES {
            return Err(OpenError::Truncated);
        }
        match self.open_pending(true, out) {
            Ok(()) => Ok(self.plaintext_bytes),
            // A middle chunk that opens: the stream was cut at a boundary.
            Err(_) if self.open_pending(false, out).is_ok() => Err(OpenError::Truncated),
            Err(e) => Err(e),
        }
    }

    /// Opens the pending chunk as the last or a middle one; on failure
    /// nothing changes, so the other guess can be tried.
    fn open_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), OpenError> {
        let nonce = chunk_nonce(&self.header, self.counter, last)
            .ok_or(OpenError::malformed("more chunks than the counter allows"))?;
        let body_bytes = self.pending.len() - TAG_BYTES;
        let (body, tag) = self.pending.split_at_mut(body_bytes);
        let tag = Tag::try_from(&*tag).map_err(|_| OpenError::malformed("tag length"))?;
        // The cipher checks the tag before it decrypts, so a failure
        // leaves the chunk as it came.
        self.cipher
            .decrypt_inout_detached(&nonce, &self.header, body.into(), &tag)
            .map_err(|_| OpenError::Authentication)?;
        out.extend_from_slice(body);
        self.plaintext_bytes += body_bytes as u64;
        self.pending.clear();
        self.counter += 1;
        Ok(())
    }
}

/// Seals all of `plaintext` at once (for small attachments and tests).
pub fn seal_attachment(
    key: &ContentKey,
    plaintext: &[u8],
) -> Result<(Vec<u8>, AttachmentSealed), SealError> {
    let mut out =
        Vec::with_capacity(usize::try_from(ciphertext_size(plaintext.len() as u64)).unwrap_or(0));
    let mut sealer = AttachmentSealer::new(key)?;
    sealer.update(plaintext, &mut out)?;
    let sealed = sealer.finish(&mut out)?;
    Ok((out, sealed))
}

/// Opens all of `sealed` at once.
pub fn open_attachment(key: &ContentKey, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let mut out = Vec::with_capacity(sealed.len());
    let mut opener = AttachmentOpener::new(key);
    opener.update(sealed, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}

/// The exact ciphertext size of a `plaintext_bytes` attachment sealed by
/// this build, so a sender can announce it before streaming.
pub fn ciphertext_size(plaintext_bytes: u64) -> u64 {
    let chunk = ATTACHMENT_CHUNK_BYTES as u64;
    let chunks = plaintext_bytes.div_ceil(chunk).max(1);
    ATTACHMENT_HEADER_BYTES as u64 + plaintext_bytes + chunks * TAG_BYTES as u64
}

/// Checks a complete header; returns its chunk size.
fn parse_header(header: &[u8; ATTACHMENT_HEADER_BYTES]) -> Result<usize, OpenError> {
    if &header[..4] != ATTACHMENT_MAGIC {
        return Err(OpenError::malformed("not a sealed attachment (bad magic)"));
    }
    if header[4] != ATTACHMENT_VERSION {
        return Err(OpenError::UnknownVersion(header[4]));
    }
    let chunk_bytes = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    if !(ATTACHMENT_CHUNK_BYTES_MIN..=ATTACHMENT_CHUNK_BYTES_MAX).contains(&chunk_bytes) {
        return Err(OpenError::malformed("chunk size out of range"));
    }
    Ok(chunk_bytes)
}

/// `prefix || counter (u32 BE) || last`, or `None` once the counter is
/// past u32. A middle chunk never takes the counter's last value, which
/// would leave none for the last chunk.
fn chunk_nonce(header: &[u8; ATTACHMENT_HEADER_BYTES], counter: u64, last: bool) -> Option<XNonce> {
    let counter = u32::try_from(counter).ok()?;
    if !last && counter == u32::MAX {
        return None;
    }
    let mut nonce = [0u8; 24];
    nonce[..PREFIX_BYTES].copy_from_slice(&header[9..]);
    nonce[PREFIX_BYTES..PREFIX_BYTES + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[23] = u8::from(last);
    Some(XNonce::from(nonce))
}

#[cfg(test)]
mod tests;
