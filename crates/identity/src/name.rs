//! Human-readable user names (`alice`) and the signed claims binding them to
//! a user key.
//!
//! Names are first come, first served: a user registers a name with a
//! [`SignedNameClaim`] signed by the very key it names, so nobody can claim
//! a name on someone else's behalf and the registry can prove who asked.
//! The registry (a dispatch concern) keeps the first valid claim per name,
//! and later claims by the same user replace it: that is how the X25519
//! encryption key bound to the name ([`NameClaim::encryption_key`], issue
//! 17) is rotated. A sender who gets the claim from a registry checks it
//! itself, so neither a registry nor a host in between can swap the key.
//!
//! The name alphabet is deliberately small — `[a-z0-9._-]`, 1..=32 chars,
//! starting with a letter or digit — so there are no look-alike Unicode
//! names, no case folding questions, and names are safe in paths and logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::id::UserId;
use super::keys::KeyPair;
use super::signed::{NAME_CLAIM, SignError, Signed, VerifyError};

/// The longest name, in characters (= bytes, the alphabet is ASCII).
pub const MAX_NAME_LEN: usize = 32;

/// Why a string is not a valid user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("a name cannot be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] characters.
    #[error("a name has at most {MAX_NAME_LEN} characters, this one has {len}")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A character outside `[a-z0-9._-]`.
    #[error("{ch:?} (at character {index}) is not allowed; use a-z, 0-9, '.', '_' or '-'")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its position, counting characters from 0.
        index: usize,
    },
    /// The name starts with `.`, `_` or `-`.
    #[error("a name must start with a letter or digit, not {ch:?}")]
    BadStart {
        /// The first character.
        ch: char,
    },
}

/// A valid user name; construct with `parse` / `Name::new`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate_name(name)?;
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the name rules (see the module doc).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let len = name.chars().count();
    if len == 0 {
        return Err(NameError::Empty);
    }
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { len });
    }
    for (index, ch) in name.chars().enumerate() {
        if !matches!(ch, 'a'..='z' | '0'..='9' | '.' | '_' | '-') {
            return Err(NameError::BadChar { ch, index });
        }
        if index == 0 && !ch.is_ascii_alphanumeric() {
            return Err(NameError::BadStart { ch });
        }
    }
    Ok(())
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate_name(&s)?;
        Ok(Self(s))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.0)
    }
}

/// "The key `user` wants the name `name`", as of `issued_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameClaim {
    /// The wanted name.
    pub name: Name,
    /// The key it should name.
    pub user: UserId,
    /// When the claim was made (the signer's clock); first come wins ties
    /// only at the registry, which orders by arrival, not by this. Among
    /// one user's claims for a name the latest is current.
    pub issued_ms: i64,
    /// The user's X25519 public key (HPKE) that mail to this name is sealed
    /// to; a later claim with another key rotates it. `None` in claims made
    /// before keys existed: they decode (the field is absent) and verify as
    /// before, and a keyless claim leaves the field out of its body so it
    /// still encodes as the old format did.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub encryption_key: Option<[u8; 32]>,
}

/// Why a name claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum NameClaimError {
    /// The envelope's signature or body was bad (includes an invalid name).
    #[error("name claim: {0}")]
    Envelope(#[from] VerifyError),
    /// Signed by a key other than the one it claims the name for.
    #[error("name claim for {claimed} is signed by {signer}, not by that user")]
    NotSelfSigned {
        /// The user the claim names.
        claimed: UserId,
        /// The key that signed it.
        signer: UserId,
    },
    /// The claim's time and the envelope's differ, so one was altered.
    #[error("name claim time {claim_ms} differs from its signature time {signed_ms}")]
    TimeMismatch {
        /// `issued_ms` in the claim.
        claim_ms: i64,
        /// `issued_ms` of the envelope.
        signed_ms: i64,
    },
}

/// A [`NameClaim`] signed by the claimed user's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedNameClaim(pub Signed<NameClaim, UserId>);

impl SignedNameClaim {
    /// Claims `name` for `key`'s user id, binding `encryption_key` (the
    /// user's current X25519 public key, if they have one) to it.
    pub fn sign(
        key: &KeyPair,
        name: Name,
        encryption_key: Option<[u8; 32]>,
        issued_ms: i64,
    ) -> Result<Self, SignError> {
        let claim = NameClaim {
            name,
            user: key.user_id(),
            issued_ms,
            encryption_key,
        };
        Signed::sign(key, NAME_CLAIM, issued_ms, &claim).map(Self)
    }

    /// Checks the signature and that the claim is self-signed; returns the
    /// claim. Claims do not expire, so the clock is not consulted.
    pub fn verify(&self) -> Result<NameClaim, NameClaimError> {
        let v = self.0.verify_ignoring_time(NAME_CLAIM)?;
        if v.body.user != v.signer {
            return Err(NameClaimError::NotSelfSigned {
                claimed: v.body.user,
                signer: v.signer,
            });
        }
        if v.body.issued_ms != v.issued_ms {
            return Err(NameClaimError::TimeMismatch {
                claim_ms: v.body.issued_ms,
                signed_ms: v.issued_ms,
            });
        }
        Ok(v.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::OWNER_CALL;

    #[test]
    fn valid_names() {
        for ok in [
            "alice",
            "a",
            "0",
            "bob.smith",
            "x_y-z",
            "9lives",
            &"a".repeat(32),
        ] {
            assert_eq!(Name::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn invalid_names_have_typed_errors() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(
            Name::new(&"a".repeat(33)),
            Err(NameError::TooLong { len: 33 })
        );
        assert_eq!(
            Name::new("Alice"),
            Err(NameError::BadChar { ch: 'A', index: 0 })
        );
        assert_eq!(
            Name::new("al ice"),
            Err(NameError::BadChar { ch: ' ', index: 2 })
        );
        assert_eq!(
            Name::new("alicé"),
            Err(NameError::BadChar { ch: 'é', index: 4 })
        );
        assert_eq!(
            Name::new("a@b"),
            Err(NameError::BadChar { ch: '@', index: 1 })
        );
        for start in [".a", "_a", "-a"] {
            assert!(matches!(Name::new(start), Err(NameError::BadStart { .. })));
        }
        // Length counts characters, so multi-byte input gets a char error.
        assert!(matches!(
            Name::new(&"é".repeat(20)),
            Err(NameError::BadChar { .. })
        ));
        assert!(Name::new("Alice").unwrap_err().to_string().contains("a-z"));
    }

    #[test]
    fn names_deserialize_only_when_valid() {
        let n: Name = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(n.to_string(), "alice");
        assert!(serde_json::from_str::<Name>("\"Alice\"").is_err());
    }

    #[test]
    fn claim_round_trip() {
        let key = KeyPair::generate().unwrap();
        let claim = SignedNameClaim::sign(&key, "alice".parse().unwrap(), None, 5).unwrap();
        let wire = rmp_serde::to_vec_named(&claim).unwrap();
        let back: SignedNameClaim = rmp_serde::from_slice(&wire).unwrap();
        let c = back.verify().unwrap();
        assert_eq!(
            (c.name.as_str(), c.user, c.issued_ms),
            ("alice", key.user_id(), 5)
        );
    }

    #[test]
    fn claim_for_someone_else_is_refused() {
        let mallory = KeyPair::generate().unwrap();
        let alice = KeyPair::generate().unwrap();
        let claim = NameClaim {
            name: "alice".parse().unwrap(),
            user: alice.user_id(),
            issued_ms: 5,
            encryption_key: None,
        };
        let s = SignedNameClaim(Signed::sign(&mallory, NAME_CLAIM, 5, &claim).unwrap());
        assert!(matches!(
            s.verify(),
            Err(NameClaimError::NotSelfSigned { .. })
        ));
        let mut t = SignedNameClaim::sign(&alice, "alice".parse().unwrap(), None, 5).unwrap();
        t.0.signer = mallory.user_id();
        assert!(matches!(
            t.verify(),
            Err(NameClaimError::Envelope(VerifyError::BadSignature))
        ));
    }

    #[test]
    fn claim_with_other_tag_or_time_is_refused() {
        let key = KeyPair::generate().unwrap();
        let claim = NameClaim {
            name: "alice".parse().unwrap(),
            user: key.user_id(),
            issued_ms: 5,
            encryption_key: None,
        };
        let other_tag = SignedNameClaim(Signed::sign(&key, OWNER_CALL, 5, &claim).unwrap());
        assert!(matches!(
            other_tag.verify(),
            Err(NameClaimError::Envelope(VerifyError::BadSignature))
        ));
        let other_time = SignedNameClaim(Signed::sign(&key, NAME_CLAIM, 6, &claim).unwrap());
        assert!(matches!(
            other_time.verify(),
            Err(NameClaimError::TimeMismatch { .. })
        ));
    }

    #[test]
    fn claim_with_key_round_trips_compactly() {
        let key = KeyPair::generate().unwrap();
        let enc = [7u8; 32];
        let claim = SignedNameClaim::sign(&key, "alice".parse().unwrap(), Some(enc), 5).unwrap();
        let wire = rmp_serde::to_vec_named(&claim).unwrap();
        let back: SignedNameClaim = rmp_serde::from_slice(&wire).unwrap();
        let c = back.verify().unwrap();
        assert_eq!(
            (c.user, c.issued_ms, c.encryption_key),
            (key.user_id(), 5, Some(enc))
        );
        // A msgpack bin of 32 bytes (0xc4 0x20), not an array of integers.
        let mut bin = vec![0xc4, 0x20];
        bin.extend_from_slice(&enc);
        assert!(claim.0.body.windows(bin.len()).any(|w| w == bin));
    }

    /// The claim body as it was before encryption keys.
    #[derive(Serialize, Deserialize)]
    struct OldNameClaim {
        name: Name,
        user: UserId,
        issued_ms: i64,
    }

    #[test]
    fn old_format_claims_still_verify() {
        let key = KeyPair::generate().unwrap();
        let old = OldNameClaim {
            name: "alice".parse().unwrap(),
            user: key.user_id(),
            issued_ms: 5,
        };
        // Signed then, stored, and read back as today's type.
        let signed: Signed<OldNameClaim> = Signed::sign(&key, NAME_CLAIM, 5, &old).unwrap();
        let wire = rmp_serde::to_vec_named(&signed).unwrap();
        let back: SignedNameClaim = rmp_serde::from_slice(&wire).unwrap();
        let c = back.verify().unwrap();
        assert_eq!((c.user, c.encryption_key), (key.user_id(), None));
        // And a keyless claim today encodes exactly as the old body did.
        let new = SignedNameClaim::sign(&key, "alice".parse().unwrap(), None, 5).unwrap();
        assert_eq!(new.0.body, rmp_serde::to_vec_named(&old).unwrap());
    }

    #[test]
    fn swapping_the_key_breaks_the_signature() {
        let alice = KeyPair::generate().unwrap();
        let signed =
            SignedNameClaim::sign(&alice, "alice".parse().unwrap(), Some([1; 32]), 5).unwrap();
        for swapped in [Some([2u8; 32]), None] {
            let mut body = signed.verify().unwrap();
            body.encryption_key = swapped;
            let mut t = signed.clone();
            t.0.body = rmp_serde::to_vec_named(&body).unwrap();
            assert!(matches!(
                t.verify(),
                Err(NameClaimError::Envelope(VerifyError::BadSignature))
            ));
        }
    }
}
