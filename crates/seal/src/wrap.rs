//! A content key wrapped to one reader's encryption key with HPKE
//! (RFC 9180): base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305.
//!
//! A sealed mail carries one [`WrappedKey`] per recipient and one for the
//! sender's own Sent copy, all of the same [`ContentKey`]. The HPKE `info`
//! is `b"dem/1 content-key\0" || context`: the caller puts the mail id
//! and the recipient in `context`, so a wrapped key lifted into another
//! mail, or handed to another recipient, does not open. Base mode is
//! enough: the sender is authenticated by its ed25519 seal on the
//! envelope, not by the KEM.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::{TryCryptoRng, TryRng};
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::content::ContentKey;
use crate::error::{OpenError, SealError};
use crate::keys::{EncryptionKeyPair, EncryptionPublicKey, Kem};

/// The start of every HPKE `info`; the NUL ends it, so no context can
/// make one prefix look like another.
pub const WRAP_INFO_PREFIX: &[u8] = b"dem/1 content-key\0";

/// The longest `context` taken. HPKE panics on an `info` of 64 KiB or
/// more; a mail id and a recipient need far less.
pub const WRAP_CONTEXT_BYTES_MAX: usize = 1024;

/// A wrapped content key: 32 bytes sealed plus ChaCha20-Poly1305's tag.
const WRAPPED_BYTES: usize = 32 + 16;

/// A content key wrapped to one encryption public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The key it is wrapped to, so a reader with several keys (old ones
    /// kept after a rotation) knows which to use without trying each.
    pub to: EncryptionPublicKey,
    /// HPKE's encapsulated ephemeral X25519 public key.
    #[serde(with = "serde_bytes")]
    pub encapped: [u8; 32],
    /// The content key sealed under the HPKE context.
    #[serde(with = "serde_bytes")]
    pub wrapped: Vec<u8>,
}

/// Wraps `key` to `to`, bound to `context`.
pub fn wrap_key(
    key: &ContentKey,
    to: &EncryptionPublicKey,
    context: &[u8],
) -> Result<WrappedKey, SealError> {
    let info = info(context).map_err(|size_bytes| SealError::TooLarge {
        what: "a wrap context",
        size_bytes,
        limit_bytes: WRAP_CONTEXT_BYTES_MAX as u64,
    })?;
    let pk = to.to_kem().map_err(SealError::Hpke)?;
    let mut rng = OsRng { failed: None };
    let sealed = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        &info,
        key.as_bytes(),
        b"",
        &mut rng,
    );
    // Checked before the result: on failure the ephemeral key was made
    // from zeros, and whatever came out must not be used.
    if let Some(e) = rng.failed {
        return Err(SealError::Randomness(e));
    }
    let (encapped, wrapped) = sealed.map_err(SealError::Hpke)?;
    let encapped_bytes = encapped.to_bytes();
    let mut encapped = [0u8; 32];
    assert_eq!(
        encapped_bytes.len(),
        32,
        "an X25519 encapped key is 32 bytes"
    );
    encapped.copy_from_slice(&encapped_bytes);
    Ok(WrappedKey {
        to: *to,
        encapped,
        wrapped,
    })
}

/// Unwraps `w` with `key`, bound to the same `context` it was wrapped
/// with.
pub fn unwrap_key(
    w: &WrappedKey,
    key: &EncryptionKeyPair,
    context: &[u8],
) -> Result<ContentKey, OpenError> {
    if w.to != key.public() {
        return Err(OpenError::NotForThisKey {
            to: w.to,
            have: vec![key.public()],
        });
    }
    if w.wrapped.len() != WRAPPED_BYTES {
        return Err(OpenError::malformed("a wrapped key is not 48 bytes"));
    }
    let info = info(context).map_err(|size_bytes| OpenError::TooLarge {
        size_bytes,
        limit_bytes: WRAP_CONTEXT_BYTES_MAX as u64,
    })?;
    let sk = key
        .to_kem()
        .map_err(|_| OpenError::malformed("the held secret key"))?;
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&w.encapped)
        .map_err(|_| OpenError::malformed("the encapsulated key"))?;
    // A decapsulation failure (a low-order point gives an all-zero shared
    // secret) is an altered encapped key: the same answer as a bad tag.
    let opened = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &encapped,
        &info,
        &w.wrapped,
        b"",
    )
    .map(Zeroizing::new)
    .map_err(|_| OpenError::Authentication)?;
    let bytes: &[u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| OpenError::malformed("an unwrapped key is not 32 bytes"))?;
    Ok(ContentKey::from_bytes(bytes))
}

/// Unwraps `w` with whichever of `keys` it names: after a rotation the
/// old keys stay in the keyring, and mail wrapped to them still opens.
pub fn unwrap_with_any(
    w: &WrappedKey,
    keys: &[EncryptionKeyPair],
    context: &[u8],
) -> Result<ContentKey, OpenError> {
    match keys.iter().find(|k| k.public() == w.to) {
        Some(key) => unwrap_key(w, key, context),
        None => Err(OpenError::NotForThisKey {
            to: w.to,
            have: keys.iter().map(EncryptionKeyPair::public).collect(),
        }),
    }
}

/// The HPKE `info` for `context`, or the context's size if over the limit.
fn info(context: &[u8]) -> Result<Vec<u8>, u64> {
    if context.len() > WRAP_CONTEXT_BYTES_MAX {
        return Err(context.len() as u64);
    }
    Ok([WRAP_INFO_PREFIX, context].concat())
}

/// The operating system's randomness for HPKE, which wants an infallible
/// RNG (and panics on a failing one): a failure is recorded here and
/// turned into [`SealError::Randomness`] afterwards.
struct OsRng {
    failed: Option<getrandom::Error>,
}

impl TryRng for OsRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        if let Err(e) = getrandom::fill(dst) {
            dst.fill(0);
            self.failed.get_or_insert(e);
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRng {}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> EncryptionKeyPair {
        EncryptionKeyPair::derive(b"alice")
    }

    fn bob() -> EncryptionKeyPair {
        EncryptionKeyPair::derive(b"bob")
    }

    fn ck() -> ContentKey {
        ContentKey::from_bytes(&[9; 32])
    }

    #[test]
    fn round_trip() {
        let w = wrap_key(&ck(), &bob().public(), b"mail-1/bob").unwrap();
        assert_eq!(w.wrapped.len(), WRAPPED_BYTES);
        let back = unwrap_key(&w, &bob(), b"mail-1/bob").unwrap();
        assert_eq!(back.as_bytes(), ck().as_bytes());
    }

    #[test]
    fn serde_round_trip_is_compact() {
        let w = wrap_key(&ck(), &bob().public(), b"").unwrap();
        let bytes = rmp_serde::to_vec(&w).unwrap();
        // Three bin fields, not arrays of integers.
        assert!(bytes.len() < 32 + 32 + 48 + 16, "{}", bytes.len());
        let back: WrappedKey = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn wrong_key_is_not_for_this_key() {
        let w = wrap_key(&ck(), &bob().public(), b"").unwrap();
        match unwrap_key(&w, &alice(), b"") {
            Err(OpenError::NotForThisKey { to, have }) => {
                assert_eq!(to, bob().public());
                assert_eq!(have, vec![alice().public()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_context_is_authentication() {
        let w = wrap_key(&ck(), &bob().public(), b"mail-1/bob").unwrap();
        assert!(matches!(
            unwrap_key(&w, &bob(), b"mail-2/bob"),
            Err(OpenError::Authentication)
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let w = wrap_key(&ck(), &bob().public(), b"ctx").unwrap();
        for i in 0..32 {
            for bit in [0x01, 0x80] {
                let mut bad = w.clone();
                bad.encapped[i] ^= bit;
                assert!(
                    matches!(
                        unwrap_key(&bad, &bob(), b"ctx"),
                        Err(OpenError::Authentication)
                    ),
                    "encapped byte {i}"
                );
                let mut bad = w.clone();
                bad.to.0[i] ^= bit;
                assert!(
                    matches!(
                        unwrap_key(&bad, &bob(), b"ctx"),
                        Err(OpenError::NotForThisKey { .. })
                    ),
                    "to byte {i}"
                );
            }
        }
        for i in 0..w.wrapped.len() {
            let mut bad = w.clone();
            bad.wrapped[i] ^= 0x01;
            assert!(
                matches!(
                    unwrap_key(&bad, &bob(), b"ctx"),
                    Err(OpenError::Authentication)
                ),
                "wrapped byte {i}"
            );
        }
    }

    #[test]
    fn wrong_length_is_malformed() {
        let mut w = wrap_key(&ck(), &bob().public(), b"").unwrap();
        w.wrapped.pop();
        assert!(matches!(
            unwrap_key(&w, &bob(), b""),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn low_order_encapped_key_is_authentication() {
        let mut w = wrap_key(&ck(), &bob().public(), b"").unwrap();
        // The X25519 point of order 1 (and 0): the shared secret is zero.
        for point in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        }] {
            w.encapped = point;
            assert!(matches!(
                unwrap_key(&w, &bob(), b""),
                Err(OpenError::Authentication)
            ));
        }
    }

    #[test]
    fn old_keys_open_after_a_rotation() {
        let old = EncryptionKeyPair::derive(b"bob 2025");
        let w = wrap_key(&ck(), &old.public(), b"m").unwrap();
        let new = EncryptionKeyPair::derive(b"bob 2026");
        let keyring = [new.clone(), old];
        let back = unwrap_with_any(&w, &keyring, b"m").unwrap();
        assert_eq!(back.as_bytes(), ck().as_bytes());
        let gone = unwrap_with_any(&w, std::slice::from_ref(&new), b"m");
        assert!(
            matches!(gone, Err(OpenError::NotForThisKey { have, .. }) if have == vec![new.public()])
        );
        assert!(matches!(
            unwrap_with_any(&w, &[], b"m"),
            Err(OpenError::NotForThisKey { .. })
        ));
    }

    #[test]
    fn two_wraps_differ() {
        let a = wrap_key(&ck(), &bob().public(), b"").unwrap();
        let b = wrap_key(&ck(), &bob().public(), b"").unwrap();
        assert_ne!(a.encapped, b.encapped);
        assert_ne!(a.wrapped, b.wrapped);
    }

    #[test]
    fn long_context_is_refused_not_a_panic() {
        let ctx = vec![0u8; WRAP_CONTEXT_BYTES_MAX + 1];
        assert!(matches!(
            wrap_key(&ck(), &bob().public(), &ctx),
            Err(SealError::TooLarge { .. })
        ));
        let w = wrap_key(&ck(), &bob().public(), b"").unwrap();
        assert!(matches!(
            unwrap_key(&w, &bob(), &ctx),
            Err(OpenError::TooLarge { .. })
        ));
    }
}
