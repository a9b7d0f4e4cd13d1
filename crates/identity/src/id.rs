//! Network identities: a host, a dispatch unit and a user are each named by
//! their ed25519 public key. These newtypes are just the 32 key bytes, shown
//! as lower-case hex; turning one into a verifying key (and checking that
//! it is a valid curve point) happens where a signature is checked.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a key id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not 64 lower-case hex characters")]
pub struct KeyIdError {
    what: &'static str,
    value: String,
}

macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }

            /// The first 12 hex characters, for logs and tables.
            pub fn short(&self) -> String {
                self.to_hex()[..12].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = KeyIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self).ok_or_else(|| KeyIdError {
                    what: $what,
                    value: s.chars().take(80).collect(),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = KeyIdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_hex()
            }
        }
    };
}

key_id!(
    /// A host: the public key of its identity key pair.
    HostId,
    "host id"
);
key_id!(
    /// A user, and so their mailbox: the public key of their key pair.
    UserId,
    "user id"
);
key_id!(
    /// A dispatch unit: the public key of its identity key pair.
    DispatchId,
    "dispatch unit id"
);

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Orders conflicting location updates: a newer epoch always wins.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    pub fn next(self) -> Self {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_round_trip_and_refuse_junk() {
        let id = HostId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<HostId>().unwrap(), id);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", id.to_hex())
        );
        assert!("ab".parse::<UserId>().is_err());
        assert!("AB".repeat(32).parse::<UserId>().is_err());
        assert!("zz".repeat(32).parse::<DispatchId>().is_err());
        assert!(Epoch(1) < Epoch(1).next());
    }
}
