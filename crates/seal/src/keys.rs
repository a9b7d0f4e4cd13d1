//! A user's encryption keys: X25519 key pairs used through HPKE (RFC 9180,
//! DHKEM(X25519, HKDF-SHA256)), kept beside the ed25519 signing key.
//!
//! Signing and encryption keys are separate on purpose: the signing key
//! names the user and lives as long as the user does, while an encryption
//! key is rotated, and an old one is kept only to open old mail. The
//! public half is published in the user's signed name claim, so a sender
//! who trusts the name trusts the key.

use std::fmt;

use hpke::kem::{Kem as _, X25519HkdfSha256};
use hpke::{Deserializable, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The KEM every DEM encryption key is for.
pub(crate) type Kem = X25519HkdfSha256;

/// An X25519 public key, as published in a name claim.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncryptionPublicKey(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl EncryptionPublicKey {
    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 8 bytes in hex, for logs and listings.
    pub fn short(&self) -> String {
        self.to_hex()[..16].to_string()
    }

    /// The key as the KEM takes it. Every 32-byte string is an X25519
    /// public key, so this cannot fail for a well-formed value.
    pub(crate) fn to_kem(self) -> Result<<Kem as hpke::Kem>::PublicKey, hpke::HpkeError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0)
    }
}

impl fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionPublicKey({})", self.short())
    }
}

impl fmt::Display for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An X25519 key pair. The secret is zeroed when dropped and never
/// printed.
#[derive(Clone)]
pub struct EncryptionKeyPair {
    secret: Zeroizing<[u8; 32]>,
    public: EncryptionPublicKey,
}

impl EncryptionKeyPair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut ikm = Zeroizing::new([0u8; 32]);
        getrandom::fill(ikm.as_mut())?;
        Ok(Self::derive(ikm.as_ref()))
    }

    /// The key pair RFC 9180's `DeriveKeyPair` makes from `ikm`; for tests
    /// and benchmarks that need the same key every run.
    pub fn derive(ikm: &[u8]) -> Self {
        let (sk, pk) = Kem::derive_keypair(ikm);
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&sk.to_bytes());
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        Self {
            secret,
            public: EncryptionPublicKey(public),
        }
    }

    /// Rebuilds a key pair from its stored secret.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, hpke::HpkeError> {
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret)?;
        let pk = Kem::sk_to_pk(&sk);
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        Ok(Self {
            secret: Zeroizing::new(*secret),
            public: EncryptionPublicKey(public),
        })
    }

    /// The public half.
    pub fn public(&self) -> EncryptionPublicKey {
        self.public
    }

    /// The secret bytes, for the keyring file only.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The secret as the KEM takes it.
    pub(crate) fn to_kem(&self) -> Result<<Kem as hpke::Kem>::PrivateKey, hpke::HpkeError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(self.secret.as_ref())
    }
}

impl fmt::Debug for EncryptionKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptionKeyPair({}, secret hidden)",
            self.public.short()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trip_gives_the_same_public_key() {
        let k = EncryptionKeyPair::generate().unwrap();
        let back = EncryptionKeyPair::from_secret(k.secret_bytes()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(!format!("{k:?}").contains(&hex(k.secret_bytes())));
    }

    #[test]
    fn derive_is_deterministic() {
        assert_eq!(
            EncryptionKeyPair::derive(b"seed").public(),
            EncryptionKeyPair::derive(b"seed").public()
        );
        assert_ne!(
            EncryptionKeyPair::derive(b"seed").public(),
            EncryptionKeyPair::derive(b"other").public()
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }
}
