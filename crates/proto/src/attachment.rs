//! [`AttachmentId`]: the BLAKE3 hash of an attachment's whole content.
//!
//! The id is parsed once where it enters the host (a mail's reference, a
//! network frame) so that nothing downstream has to wonder whether it is a
//! path traversal: only 64 lower-case hex characters are accepted, and the
//! on-disk path is derived from the parsed bytes, never from caller text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Length of an id in hex characters (32 bytes of BLAKE3 output).
pub const ATTACHMENT_ID_HEX_LEN: usize = 64;

/// Size of every chunk but an attachment's last: the unit of transfer,
/// of verification on read, and of the network layer's frames.
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Largest attachment accepted (1 GiB): far above what mail carries, far
/// below what would let one sender fill a host's disk in one go.
pub const ATTACHMENT_BYTES_MAX: u64 = 1 << 30;

/// Why a string is not an [`AttachmentId`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AttachmentIdError {
    /// The string is not exactly [`ATTACHMENT_ID_HEX_LEN`] bytes long.
    #[error("attachment id is {0} bytes long, expected {ATTACHMENT_ID_HEX_LEN} hex characters")]
    Length(usize),
    /// The string holds a character outside `[0-9a-f]` (upper case is refused
    /// so that one attachment has exactly one spelling).
    #[error("attachment id may only hold lower-case hex characters")]
    NotLowerHex,
}

/// Content address of an attachment: BLAKE3 of all its bytes. Serialized as
/// its 64-char hex spelling so it reads the same in JSON, logs and paths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttachmentId([u8; 32]);

impl AttachmentId {
    /// Parses the 64-char lower-case hex spelling.
    pub fn parse(hex: &str) -> Result<Self, AttachmentIdError> {
        let bytes = hex.as_bytes();
        if bytes.len() != ATTACHMENT_ID_HEX_LEN {
            return Err(AttachmentIdError::Length(bytes.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Self(out))
    }

    /// The id of `content`, i.e. its BLAKE3 hash.
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    /// Wraps raw hash bytes (e.g. from a finished [`blake3::Hasher`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-char lower-case hex spelling.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(ATTACHMENT_ID_HEX_LEN);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        s
    }
}

fn nibble(c: u8) -> Result<u8, AttachmentIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(AttachmentIdError::NotLowerHex),
    }
}

impl FromStr for AttachmentId {
    type Err = AttachmentIdError;
    fn from_str(s: &str) -> Result<Self, AttachmentIdError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for AttachmentId {
    type Error = AttachmentIdError;
    fn try_from(s: String) -> Result<Self, AttachmentIdError> {
        Self::parse(&s)
    }
}

impl From<AttachmentId> for String {
    fn from(id: AttachmentId) -> String {
        id.to_hex()
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_matches_blake3() {
        let id = AttachmentId::of(b"hello");
        let hex = id.to_hex();
        assert_eq!(hex, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(AttachmentId::parse(&hex), Ok(id));
        assert_eq!(id.to_string(), hex);
    }

    #[test]
    fn refuses_bad_spellings() {
        let good = AttachmentId::of(b"x").to_hex();
        assert_eq!(AttachmentId::parse(""), Err(AttachmentIdError::Length(0)));
        assert_eq!(
            AttachmentId::parse(&good[..63]),
            Err(AttachmentIdError::Length(63))
        );
        assert_eq!(
            AttachmentId::parse(&format!("{good}0")),
            Err(AttachmentIdError::Length(65))
        );
        let upper = good.to_uppercase();
        if upper != good {
            assert_eq!(
                AttachmentId::parse(&upper),
                Err(AttachmentIdError::NotLowerHex)
            );
        }
        let traversal = format!("../{}", &good[3..]);
        assert_eq!(
            AttachmentId::parse(&traversal),
            Err(AttachmentIdError::NotLowerHex)
        );
        // A multi-byte character must not be split into "hex" bytes.
        let accented = format!("é{}", &good[2..]);
        assert_eq!(
            AttachmentId::parse(&accented),
            Err(AttachmentIdError::NotLowerHex)
        );
    }

    #[test]
    fn serde_uses_hex() {
        let id = AttachmentId::of(b"y");
        let bytes = rmp_serde::to_vec(&id).unwrap();
        let back: AttachmentId = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, id);
        let bad = rmp_serde::to_vec("zz").unwrap();
        assert!(rmp_serde::from_slice::<AttachmentId>(&bad).is_err());
    }
}
