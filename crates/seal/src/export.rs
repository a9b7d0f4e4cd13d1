//! `dem id export` and `dem id import`: the user's whole identity (the
//! ed25519 signing key and every encryption key) in one file protected by
//! a passphrase, because losing the home directory otherwise loses the
//! name and every mail ever sealed to the user.
//!
//! The file is `header || XChaCha20-Poly1305(bundle)`, the key stretched
//! from the passphrase with Argon2id (RFC 9106) over a random salt. The
//! header (magic, version, Argon2 costs, salt, nonce) is the AEAD's
//! associated data, so a changed cost or salt fails as a wrong passphrase
//! would. An import refuses costs above fixed bounds before stretching,
//! so a crafted file cannot make it allocate gigabytes or spin for hours.

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use dem_identity::{KeyPair, Name};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keyring::{Keyring, KeyringError};

const MAGIC: &[u8; 8] = b"DEM-ID\0\x01";
const HEADER_BYTES: usize = 8 + 4 * 3 + 16 + 24;
/// An export file is never larger than this.
pub const EXPORT_FILE_BYTES_MAX: usize = 2 << 20;
/// Passphrases shorter than this are refused at export.
pub const PASSPHRASE_CHARS_MIN: usize = 8;
/// The most Argon2 memory an import will spend, in KiB (1 GiB).
pub const IMPORT_MEMORY_KIB_MAX: u32 = 1 << 20;
/// The most Argon2 passes an import will run.
pub const IMPORT_PASSES_MAX: u32 = 16;
/// The most Argon2 lanes an import will use.
pub const IMPORT_LANES_MAX: u32 = 16;

/// How hard the passphrase is stretched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StretchCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl StretchCost {
    /// RFC 9106's second recommended setting (64 MiB, 3 passes), with 1
    /// lane since the crate computes lanes one after another anyway.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };
    /// For tests only: fast, and weak.
    pub const TEST_ONLY: Self = Self {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The passphrase is too short to export with.
    #[error("the passphrase must have at least {min} characters")]
    WeakPassphrase {
        /// The minimum.
        min: usize,
    },
    /// Wrong passphrase, or the file was altered.
    #[error("wrong passphrase, or the identity file was altered")]
    Authentication,
    /// Not an identity export, or from a newer build.
    #[error("not a DEM identity export: {0}")]
    Malformed(String),
    /// The file asks for more stretching than an import allows.
    #[error(
        "the identity file asks for Argon2 cost {0:?}, above the limits ({IMPORT_MEMORY_KIB_MAX} KiB, {IMPORT_PASSES_MAX} passes, {IMPORT_LANES_MAX} lanes)"
    )]
    CostTooHigh(StretchCost),
    /// Stretching failed (bad parameters).
    #[error("stretching the passphrase: {0}")]
    Stretch(String),
    /// No randomness for the salt or nonce.
    #[error("no randomness: {0}")]
    Random(#[from] getrandom::Error),
    /// The keyring inside could not be encoded or decoded.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The signing key inside does not decode.
    #[error("the signing key inside does not decode: {0}")]
    SigningKey(#[from] dem_identity::KeyError),
}

/// What an export holds.
pub struct IdentityBundle {
    /// The user's registered name, if the home had one.
    pub name: Option<Name>,
    /// The ed25519 key that names the user.
    pub user_key: KeyPair,
    /// Every encryption key.
    pub keyring: Keyring,
}

#[derive(Serialize, Deserialize)]
struct StoredBundle {
    #[serde(default)]
    name: Option<Name>,
    #[serde(with = "serde_bytes")]
    user_key_pkcs8: Vec<u8>,
    #[serde(with = "serde_bytes")]
    keyring: Vec<u8>,
}

impl Drop for StoredBundle {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.user_key_pkcs8);
        zeroize::Zeroize::zeroize(&mut self.keyring);
    }
}

/// Seals `bundle` under `passphrase`.
pub fn export_identity(
    bundle: &IdentityBundle,
    passphrase: &str,
    cost: StretchCost,
) -> Result<Vec<u8>, ExportError> {
    if passphrase.chars().count() < PASSPHRASE_CHARS_MIN {
        return Err(ExportError::WeakPassphrase {
            min: PASSPHRASE_CHARS_MIN,
        });
    }
    let stored = StoredBundle {
        name: bundle.name.clone(),
        user_key_pkcs8: bundle.user_key.to_pkcs8_der_zeroizing().to_vec(),
        keyring: bundle.keyring.to_bytes()?.to_vec(),
    };
    let plain = Zeroizing::new(
        rmp_serde::to_vec_named(&stored).map_err(|e| ExportError::Malformed(e.to_string()))?,
    );
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt)?;
    getrandom::fill(&mut nonce)?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    for v in [cost.memory_kib, cost.passes, cost.lanes] {
        header.extend_from_slice(&v.to_be_bytes());
    }
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);
    let key = stretch(passphrase, &salt, cost)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &header,
            },
        )
        .map_err(|_| ExportError::Malformed("the bundle is too large to seal".into()))?;
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// Opens an export made by [`export_identity`].
pub fn import_identity(file: &[u8], passphrase: &str) -> Result<IdentityBundle, ExportError> {
    if file.len() > EXPORT_FILE_BYTES_MAX {
        return Err(ExportError::Malformed(format!(
            "{} bytes, more than {EXPORT_FILE_BYTES_MAX}",
            file.len()
        )));
    }
    if file.len() < HEADER_BYTES + 16 || &file[..8] != MAGIC {
        return Err(ExportError::Malformed(
            "wrong magic or too short (is this a file from `dem id export`?)".into(),
        ));
    }
    let (header, sealed) = file.split_at(HEADER_BYTES);
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[8 + 4 * i..12 + 4 * i]);
        u32::from_be_bytes(b)
    };
    let cost = StretchCost {
        memory_kib: word(0),
        passes: word(1),
        lanes: word(2),
    };
    if cost.memory_kib > IMPORT_MEMORY_KIB_MAX
        || cost.passes > IMPORT_PASSES_MAX
        || cost.lanes > IMPORT_LANES_MAX
    {
        return Err(ExportError::CostTooHigh(cost));
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&header[20..36]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&header[36..60]);
    let key = stretch(passphrase, &salt, cost)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| ExportError::Authentication)?,
    );
    let stored: StoredBundle =
        rmp_serde::from_slice(&plain).map_err(|e| ExportError::Malformed(e.to_string()))?;
    Ok(IdentityBundle {
        name: stored.name.clone(),
        user_key: KeyPair::from_pkcs8_der(&stored.user_key_pkcs8)?,
        keyring: Keyring::from_bytes(&stored.keyring, std::path::Path::new("(export)"))?,
    })
}

fn stretch(
    passphrase: &str,
    salt: &[u8; 16],
    cost: StretchCost,
) -> Result<Zeroizing<[u8; 32]>, ExportError> {
    let params = argon2::Params::new(cost.memory_kib, cost.passes, cost.lanes, Some(32))
        .map_err(|e| ExportError::Stretch(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| ExportError::Stretch(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> IdentityBundle {
        let mut keyring = Keyring::generate(1).unwrap();
        keyring.rotate(2).unwrap();
        IdentityBundle {
            name: Some(Name::new("alice").unwrap()),
            user_key: KeyPair::generate().unwrap(),
            keyring,
        }
    }

    #[test]
    fn round_trip_restores_every_key() {
        let b = bundle();
        let file = export_identity(&b, "correct horse", StretchCost::TEST_ONLY).unwrap();
        let back = import_identity(&file, "correct horse").unwrap();
        assert_eq!(back.user_key.user_id(), b.user_key.user_id());
        assert_eq!(back.name, b.name);
        let publics = |r: &Keyring| {
            r.entries()
                .iter()
                .map(|e| e.key.public())
                .collect::<Vec<_>>()
        };
        assert_eq!(publics(&back.keyring), publics(&b.keyring));
        assert_eq!(
            back.keyring.current().secret_bytes(),
            b.keyring.current().secret_bytes()
        );
    }

    #[test]
    fn wrong_passphrase_and_any_altered_byte_fail_authentication() {
        let file = export_identity(&bundle(), "correct horse", StretchCost::TEST_ONLY).unwrap();
        assert!(matches!(
            import_identity(&file, "wrong horse"),
            Err(ExportError::Authentication)
        ));
        // Every byte after the magic: costs, salt, nonce, ciphertext, tag.
        for i in (8..file.len()).step_by(7) {
            let mut bad = file.clone();
            bad[i] ^= 1;
            match import_identity(&bad, "correct horse") {
                Err(
                    ExportError::Authentication
                    | ExportError::Stretch(_)
                    | ExportError::CostTooHigh(_),
                ) => {}
                other => panic!("byte {i}: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn bad_files_are_refused_before_stretching() {
        assert!(matches!(
            import_identity(b"hello", "x"),
            Err(ExportError::Malformed(_))
        ));
        let mut file = export_identity(&bundle(), "correct horse", StretchCost::TEST_ONLY).unwrap();
        file[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            import_identity(&file, "correct horse"),
            Err(ExportError::CostTooHigh(_))
        ));
        let huge = vec![0u8; EXPORT_FILE_BYTES_MAX + 1];
        assert!(matches!(
            import_identity(&huge, "x"),
            Err(ExportError::Malformed(_))
        ));
    }

    #[test]
    fn short_passphrases_are_refused() {
        let err = export_identity(&bundle(), "short", StretchCost::TEST_ONLY).unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
    }
}
