//! Framing on a QUIC stream: each frame is a u32 big-endian length followed
//! by that many bytes, which are MessagePack ([`write_frame`],
//! [`read_frame`]) or opaque chunk data ([`write_raw_frame`],
//! [`read_raw_frame`]).
//!
//! Every frame is bounded by [`FRAME_BYTES_MAX`], and a reader may ask for
//! a lower bound; the length is checked before any buffer is allocated, so
//! a hostile length prefix costs nothing. Large objects (snapshots, code,
//! attachments) are sent as a sequence of frames of about [`CHUNK_BYTES`]
//! each on one stream, ended by finishing the stream: each `write_all`
//! waits for QUIC flow control, so neither side ever holds more than a
//! chunk plus the receive window in memory.

use bytes::Bytes;
use quinn::{ReadExactError, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NetError, Result};

/// The largest frame anyone sends or accepts, whatever the caller asks.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The chunk size streaming transfers should use: well under
/// [`FRAME_BYTES_MAX`] and within one stream receive window.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Bytes of the length prefix.
const PREFIX_BYTES: usize = 4;

/// Encodes `value` as MessagePack (with field names, so that messages can
/// gain optional fields) and writes it as one frame.
pub async fn write_frame(send: &mut SendStream, value: &impl Serialize) -> Result<()> {
    // Encode behind a placeholder prefix so the frame goes out in one write.
    let mut buf = vec![0u8; PREFIX_BYTES];
    rmp_serde::encode::write_named(&mut buf, value)?;
    let len = buf.len() - PREFIX_BYTES;
    buf[..PREFIX_BYTES].copy_from_slice(&frame_prefix(len)?);
    send.write_all(&buf).await?;
    Ok(())
}

/// Writes `bytes` as one frame, as they are.
pub async fn write_raw_frame(send: &mut SendStream, bytes: &[u8]) -> Result<()> {
    send.write_all(&frame_prefix(bytes.len())?).await?;
    send.write_all(bytes).await?;
    Ok(())
}

/// Reads one frame and decodes it as `T`. `Ok(None)` means the peer
/// finished the stream cleanly where a frame could have started. `max`
/// lowers the size limit for this frame (it never raises it above
/// [`FRAME_BYTES_MAX`]).
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
    max: usize,
) -> Result<Option<T>> {
    match read_raw_frame(recv, max).await? {
        Some(bytes) => Ok(Some(rmp_serde::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Reads one frame's bytes. `Ok(None)` and `max` as for [`read_frame`].
pub async fn read_raw_frame(recv: &mut RecvStream, max: usize) -> Result<Option<Vec<u8>>> {
    let max = max.min(FRAME_BYTES_MAX);
    let mut prefix = [0u8; PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(got)) => {
            return Err(NetError::Truncated {
                got,
                want: PREFIX_BYTES,
            });
        }
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    // u32 always fits in usize on the 32- and 64-bit targets we build for;
    // saturate rather than wrap if it ever does not.
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(NetError::TooLarge { len, max });
    }
    let mut buf = vec![0u8; len];
    match recv.read_exact(&mut buf).await {
        Ok(()) => Ok(Some(buf)),
        Err(ReadExactError::FinishedEarly(got)) => Err(NetError::Truncated { got, want: len }),
        Err(ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Reads the one frame that must come next, e.g. a response.
pub(crate) async fn read_required<T: DeserializeOwned>(
    recv: &mut RecvStream,
    max: usize,
) -> Result<T> {
    read_frame(recv, max).await?.ok_or(NetError::EndOfStream)
}

/// Bytes of small frames gathered into one write by [`FrameBatch`], and
/// read ahead by [`FrameReader`].
const BATCH_BYTES: usize = 64 * 1024;

/// Writes raw frames, gathering small ones into one write: a stream of
/// thousands of small frames (a mailbox's log tail) would otherwise cost
/// two writes each, and every quinn write takes the connection's lock and
/// wakes its driver. Large frames go out as they are. Nothing is sent
/// until [`FrameBatch::flush`] for what is still gathered.
pub struct FrameBatch<'a> {
    send: &'a mut SendStream,
    pending: Vec<u8>,
}

impl<'a> FrameBatch<'a> {
    pub fn new(send: &'a mut SendStream) -> Self {
        Self {
            send,
            pending: Vec::new(),
        }
    }

    /// Writes `bytes` as one frame, or gathers it.
    pub async fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.push_parts(bytes, Bytes::new()).await
    }

    /// Writes `head` followed by `body` as one frame, or gathers it. A
    /// large `body` is handed to quinn as it is, without a copy.
    pub async fn push_parts(&mut self, head: &[u8], body: Bytes) -> Result<()> {
        let len = head.len().saturating_add(body.len());
        let prefix = frame_prefix(len)?;
        if self.pending.len() + PREFIX_BYTES + len > BATCH_BYTES {
            self.flush().await?;
        }
        if PREFIX_BYTES + len > BATCH_BYTES {
            self.send.write_all(&prefix).await?;
            self.send.write_all(head).await?;
            if !body.is_empty() {
                self.send.write_chunk(body).await?;
            }
            return Ok(());
        }
        self.pending.extend_from_slice(&prefix);
        self.pending.extend_from_slice(head);
        self.pending.extend_from_slice(&body);
        Ok(())
    }

    /// Writes what is gathered.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.send.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The stream, e.g. to reset it.
    pub fn stream(&mut self) -> &mut SendStream {
        self.send
    }
}

/// Reads raw frames through a read-ahead buffer, so that many small frames
/// cost one read of the stream rather than two each; a frame larger than
/// the buffer is read straight into its own.
pub struct FrameReader<'a> {
    recv: &'a mut RecvStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<'a> FrameReader<'a> {
    pub fn new(recv: &'a mut RecvStream) -> Self {
        Self {
            recv,
            buf: vec![0; BATCH_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The next frame's bytes, as [`read_raw_frame`] reads them.
    pub async fn next(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
        self.next_into(max, Vec::new()).await
    }

    /// [`FrameReader::next`], reading into `buffer` (whatever it holds is
    /// dropped), so a caller can reuse its buffers.
    pub async fn next_into(&mut self, max: usize, mut buffer: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let max = max.min(FRAME_BYTES_MAX);
        let mut prefix = [0u8; PREFIX_BYTES];
        match self.fill(&mut prefix).await? {
            0 => return Ok(None),
            PREFIX_BYTES => {}
            got => {
                return Err(NetError::Truncated {
                    got,
                    want: PREFIX_BYTES,
                });
            }
        }
        let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
        if len > max {
            return Err(NetError::TooLarge { len, max });
        }
        buffer.clear();
        buffer.resize(len, 0);
        let got = self.fill(&mut buffer).await?;
        if got < len {
            return Err(NetError::Truncated { got, want: len });
        }
        Ok(Some(buffer))
    }

    /// Fills `out` from the buffer and the stream; fewer bytes only at the
    /// stream's end.
    async fn fill(&mut self, out: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < out.len() {
            if self.start == self.end {
                let rest = out.get_mut(got..).unwrap_or_default();
                if rest.len() >= self.buf.len() {
                    match self.recv.read(rest).await? {
                        Some(n) => got += n,
                        None => break,
                    }
                    continue;
                }
                match self.recv.read(&mut self.buf).await? {
                    Some(n) => (self.start, self.end) = (0, n),
                    None => break,
                }
            }
            let buffered = self.buf.get(self.start..self.end).unwrap_or_default();
            let rest = out.get_mut(got..).unwrap_or_default();
            let n = rest.len().min(buffered.len());
            for (to, from) in rest.iter_mut().zip(buffered) {
                *to = *from;
            }
            self.start += n;
            got += n;
        }
        Ok(got)
    }
}

/// The length prefix for a frame of `len` bytes, refusing oversized ones
/// before anything is sent.
fn frame_prefix(len: usize) -> Result<[u8; PREFIX_BYTES]> {
    if len > FRAME_BYTES_MAX {
        return Err(NetError::TooLarge {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    let len32 = u32::try_from(len).map_err(|_| NetError::TooLarge {
        len,
        max: FRAME_BYTES_MAX,
    })?;
    Ok(len32.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_big_endian_and_bounded() {
        assert_eq!(
            frame_prefix(0x0102_0304 & 0x3f_ffff).ok(),
            Some([0, 0x02, 0x03, 0x04])
        );
        assert!(frame_prefix(FRAME_BYTES_MAX).is_ok());
        assert!(matches!(
            frame_prefix(FRAME_BYTES_MAX + 1),
            Err(NetError::TooLarge { .. })
        ));
    }
}
