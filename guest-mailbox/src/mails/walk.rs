//! The fast way to check a restored mail entry: a hand-written reader of
//! the MessagePack `StoredMail` encoding as this build writes it (a
//! 23-element array, strings as `str`, the hash as a 32-byte `bin`, the
//! spam score as `f32`). It accepts a subset of what the serde view types
//! accept, with the same head, and answers `None` for anything else, which
//! then goes the slower serde way (`view_head`). A wake reads every entry,
//! and serde's per-value dispatch cost several times this walk.

use super::MailHead;
use crate::hash::Hash;

/// Fields of `StoredMail`, hence elements of its positional encoding.
const STORED_MAIL_FIELDS: usize = 23;
/// Fields of `Attachment`.
const ATTACHMENT_FIELDS: usize = 5;
/// Fields of `Stamp`.
const STAMP_FIELDS: usize = 2;

/// The head of the entry `raw`, or `None` if it is not in the form this
/// build writes (which does not mean it is invalid).
pub(super) fn head(raw: &[u8]) -> Option<MailHead> {
    let mut r = Reader { b: raw, at: 0 };
    if r.array()? != STORED_MAIL_FIELDS {
        return None;
    }
    let folder = r.int_as::<u32>()?;
    let uid = r.int_as::<u32>()?;
    let mut index_bytes = r.str()?; // from
    index_bytes += r.strs()?; // to
    index_bytes += r.strs()?; // cc
    index_bytes += r.str()?; // subject
    let date_ms = r.int_as::<i64>()?;
    r.int_as::<i64>()?; // received_ms
    index_bytes += r.str()?; // message_id
    if !r.nil() {
        index_bytes += r.str()?; // in_reply_to
    }
    index_bytes += r.strs()?; // references
    let blob = r.hash()?;
    index_bytes += blob.len() as u64;
    let blob_bytes = r.int_as::<u64>()?;
    let size_bytes = r.int_as::<u64>()?;
    for _ in 0..r.array()? {
        if r.array()? != ATTACHMENT_FIELDS {
            return None;
        }
        index_bytes += r.hash()?.len() as u64;
        index_bytes += r.str()?; // name
        index_bytes += r.str()?; // media_type
        r.int_as::<u64>()?; // size_bytes
        if !r.nil() {
            r.int_as::<u64>()?; // splice_at
        }
    }
    let flags = r.int_as::<u8>()?;
    r.strs()?; // keywords
    if !r.nil() {
        if r.byte()? != 0xca {
            return None; // spam_score, not as an f32
        }
        r.take(4)?;
    }
    r.stamp()?; // delivered
    if !r.nil() {
        r.stamp()?; // last_move
    }
    for _ in 0..r.map()? {
        r.int_as::<u8>()?;
        r.stamp()?;
    }
    for _ in 0..r.map()? {
        r.str()?;
        r.stamp()?;
    }
    r.str()?; // place
    Some(MailHead {
        folder,
        uid,
        date_ms,
        flags,
        size_bytes,
        blob_bytes,
        blob,
        index_bytes,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let v = self.b.get(self.at..end)?;
        self.at = end;
        Some(v)
    }

    /// An `n`-byte big-endian unsigned number.
    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0, |v, &b| (v << 8) | u64::from(b)),
        )
    }

    /// Any MessagePack integer, as serde's integer visitors take any
    /// width and check only the range.
    fn int(&mut self) -> Option<i128> {
        let m = self.byte()?;
        Some(match m {
            0x00..=0x7f => i128::from(m),
            0xe0..=0xff => i128::from(m as i8),
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            _ => return None,
        })
    }

    fn int_as<T: TryFrom<i128>>(&mut self) -> Option<T> {
        T::try_from(self.int()?).ok()
    }

    /// A `str`; its length in bytes.
    fn str(&mut self) -> Option<u64> {
        let m = self.byte()?;
        let n = match m {
            0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        let s = self.take(usize::try_from(n).ok()?)?;
        std::str::from_utf8(s).ok()?;
        Some(n)
    }

    /// An array of `str`; their lengths summed.
    fn strs(&mut self) -> Option<u64> {
        let mut n = 0;
        for _ in 0..self.array()? {
            n += self.str()?;
        }
        Some(n)
    }

    fn array(&mut self) -> Option<usize> {
        let m = self.byte()?;
        let n = match m {
            0x90..=0x9f => u64::from(m & 0x0f),
            0xdc => self.be(2)?,
            0xdd => self.be(4)?,
            _ => return None,
        };
        usize::try_from(n).ok()
    }

    fn map(&mut self) -> Option<usize> {
        let m = self.byte()?;
        let n = match m {
            0x80..=0x8f => u64::from(m & 0x0f),
            0xde => self.be(2)?,
            0xdf => self.be(4)?,
            _ => return None,
        };
        usize::try_from(n).ok()
    }

    /// Takes a `nil` if that comes next.
    fn nil(&mut self) -> bool {
        let nil = self.b.get(self.at) == Some(&0xc0);
        self.at += usize::from(nil);
        nil
    }

    /// A hash as a 32-byte `bin`.
    fn hash(&mut self) -> Option<Hash> {
        let n = match self.byte()? {
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            _ => return None,
        };
        if n != 32 {
            return None;
        }
        self.take(32)?.try_into().ok()
    }

    fn stamp(&mut self) -> Option<()> {
        if self.array()? != STAMP_FIELDS {
            return None;
        }
        self.int_as::<u64>()?;
        self.int_as::<u64>()?;
        Some(())
    }
}
