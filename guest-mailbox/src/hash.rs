//! BLAKE3 hashes as the WIT spells them (64 lower-case hex digits) and as
//! the state keeps them (32 raw bytes).
//!
//! Every mail holds at least one hash (its message blob) and the state is
//! per mail, so raw bytes save 32 bytes a hash in every snapshot; the
//! conversion happens only at the WIT boundary.

/// A BLAKE3 hash as the state keeps it.
pub type Hash = [u8; 32];

/// The hash `hex` spells, or `None` unless it is 64 lower-case hex digits
/// (upper case is refused so that every hash has one spelling, which the
/// host relies on when it compares them as strings).
pub fn from_hex(hex: &str) -> Option<Hash> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// `h` as 64 lower-case hex digits.
pub fn to_hex(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in h {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_matches_blake3() {
        let h = blake3::hash(b"abc");
        let hex = h.to_hex().to_string();
        assert_eq!(from_hex(&hex), Some(*h.as_bytes()));
        assert_eq!(to_hex(h.as_bytes()), hex);
    }

    #[test]
    fn refuses_other_spellings() {
        assert_eq!(from_hex(&"AB".repeat(32)), None);
        assert_eq!(from_hex(&"ab".repeat(31)), None);
        assert_eq!(from_hex(&"zz".repeat(32)), None);
        assert_eq!(from_hex(&"é".repeat(32)), None);
    }
}
