//! Ed25519 key pairs for hosts, dispatch units and users, and the key files
//! that hold them.
//!
//! One key type serves every role: what a key *is* on the network is decided
//! by which id it is turned into ([`HostId`], [`UserId`], [`DispatchId`]),
//! and the [`KeyId`] trait lets signing code stay generic over that role.
//!
//! A key file is a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the same form
//! `openssl genpkey -algorithm ed25519` writes, so keys can be inspected and
//! backed up with ordinary tools. The QUIC transport gets the same key as
//! PKCS#8 DER for its self-signed certificate ([`KeyPair::to_pkcs8_der`]).
//!
//! Secret material is zeroized on drop (by `ed25519-dalek`'s `SigningKey`
//! and by the `Zeroizing` wrappers here). Key files are written mode 0600
//! and a file readable by group or others is refused rather than silently
//! used, since a leaked user key is a stolen mailbox.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::id::{DispatchId, HostId, UserId};

/// Errors from making, loading or saving a key pair.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(getrandom::Error),
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `save` never replaces a key: that would orphan the identity it named.
    #[error("key file {path} already exists; refusing to overwrite it (move it away first)")]
    AlreadyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// The key file can be read by group or others, so the key may be leaked.
    #[error(
        "key file {path} has mode {mode:o}, which lets group or others read it; \
         run `chmod 600 {path}` and check nobody copied it"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PKCS#8 Ed25519 private key.
    #[error("key file {path} is not a PKCS#8 Ed25519 private key: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What the decoder objected to.
        reason: String,
    },
    /// PKCS#8 DER bytes handed in directly were not an Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key: {0}")]
    BadPkcs8(#[source] ed25519_dalek::pkcs8::Error),
    /// Encoding the key as PKCS#8 failed (never expected for Ed25519).
    #[error("could not encode the key as PKCS#8: {0}")]
    Encode(#[source] ed25519_dalek::pkcs8::Error),
}

/// Errors from checking one Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The 32 bytes claimed as the signer are not a valid Ed25519 public key.
    #[error("the signer key is not a valid Ed25519 public key")]
    MalformedKey,
    /// The signature does not match the signer and the signed bytes.
    #[error("the signature does not match")]
    BadSignature,
}

/// An id that is an Ed25519 public key, so it can sign envelopes; the role
/// name goes into what is signed so a host signature can never be passed off
/// as a user's (see `signed`).
pub trait KeyId:
    Copy + Eq + std::hash::Hash + fmt::Debug + Serialize + DeserializeOwned + 'static
{
    /// The role, as it is bound into signatures: `"host"`, `"user"`, `"dispatch"`.
    const ROLE: &'static str;
    /// The public key bytes.
    fn key_bytes(&self) -> [u8; 32];
    /// The id for these public key bytes.
    fn from_key_bytes(bytes: [u8; 32]) -> Self;
}

macro_rules! key_id_impl {
    ($ty:ty, $role:literal) => {
        impl KeyId for $ty {
            const ROLE: &'static str = $role;
            fn key_bytes(&self) -> [u8; 32] {
                self.0
            }
            fn from_key_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }
    };
}
key_id_impl!(HostId, "host");
key_id_impl!(UserId, "user");
key_id_impl!(DispatchId, "dispatch");

/// An Ed25519 key pair. `Debug` shows only the public half.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public {})", UserId(self.public_bytes()).short())
    }
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(KeyError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair for a 32-byte secret seed (deterministic; for tests and
    /// for keys kept elsewhere).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// This key as an id of any role.
    pub fn id<K: KeyId>(&self) -> K {
        K::from_key_bytes(self.public_bytes())
    }

    /// This key as a user id.
    pub fn user_id(&self) -> UserId {
        self.id()
    }

    /// This key as a host id.
    pub fn host_id(&self) -> HostId {
        self.id()
    }

    /// This key as a dispatch unit id.
    pub fn dispatch_id(&self) -> DispatchId {
        self.id()
    }

    /// Signs `message` as is. Callers should sign domain-separated bytes
    /// (see `signed` and `mail`), never raw protocol data.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The key as PKCS#8 v2 DER (secret and public key), the form `rcgen`
    /// takes to build the transport's self-signed certificate. The caller
    /// owns secret bytes: prefer [`Self::to_pkcs8_der_zeroizing`] where the
    /// consumer can borrow them.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.to_pkcs8_der_zeroizing().to_vec()
    }

    /// [`Self::to_pkcs8_der`], wiped from memory when dropped.
    pub fn to_pkcs8_der_zeroizing(&self) -> Zeroizing<Vec<u8>> {
        match self.signing.to_pkcs8_der() {
            Ok(doc) => doc.to_bytes(),
            // Encoding a fixed-size Ed25519 key cannot fail; keep an empty
            // result rather than a panic so no input path can abort.
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }

    /// A key pair from PKCS#8 DER (v1 or v2; a v2 public key must match).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_der(der)
            .map(|signing| Self { signing })
            .map_err(KeyError::BadPkcs8)
    }

    /// Reads a key file, refusing one that group or others could read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        check_private_mode(path)?;
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        SigningKey::from_pkcs8_pem(&pem)
            .map(|signing| Self { signing })
            .map_err(|e| KeyError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Writes a new key file, mode 0600; never replaces an existing file.
    /// The parent directory must exist (see `Home::ensure`).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(KeyError::Encode)?;
        write_new_private(path, pem.as_bytes()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }
}

/// Checks `signature` by the key `signer` over `message`. Uses the strict
/// check, which refuses weak keys and non-canonical signatures, so nobody
/// can produce a second valid signature for a message another key signed.
pub fn verify_signature(
    signer: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(signer).map_err(|_| SignatureError::MalformedKey)?;
    if key.is_weak() {
        return Err(SignatureError::MalformedKey);
    }
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::BadSignature)
}

/// Creates `path` exclusively with mode 0600 and writes `bytes`. `create_new`
/// makes the no-overwrite rule atomic; the mode is set at creation so the
/// secret is never readable by others, not even briefly.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Refuses a file whose permissions let group or others in.
fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_sign_verify() {
        let key = KeyPair::generate().unwrap();
        let sig = key.sign(b"hello");
        assert_eq!(
            verify_signature(&key.public_bytes(), b"hello", &sig),
            Ok(())
        );
        assert_eq!(
            verify_signature(&key.public_bytes(), b"hellO", &sig),
            Err(SignatureError::BadSignature)
        );
        let other = KeyPair::generate().unwrap();
        assert_ne!(key.public_bytes(), other.public_bytes());
        assert_eq!(
            verify_signature(&other.public_bytes(), b"hello", &sig),
            Err(SignatureError::BadSignature)
        );
        assert!(format!("{key:?}").starts_with("KeyPair(public "));
    }

    #[test]
    fn malformed_and_weak_keys_are_refused() {
        let sig = [0u8; 64];
        // y = 2 is not on the curve; the identity point is a weak key.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for bad in [not_a_point, identity] {
            assert_eq!(
                verify_signature(&bad, b"m", &sig),
                Err(SignatureError::MalformedKey)
            );
        }
    }

    #[test]
    fn pkcs8_der_round_trip() {
        let key = KeyPair::from_seed(&[7; 32]);
        let der = key.to_pkcs8_der();
        // RFC 8410 OneAsymmetricKey v2: version 1, OID 1.3.101.112.
        assert_eq!(&der[..2], &[0x30, der.len() as u8 - 2]);
        assert!(der.windows(5).any(|w| w == [0x06, 0x03, 0x2b, 0x65, 0x70]));
        let back = KeyPair::from_pkcs8_der(&der).unwrap();
        assert_eq!(back.public_bytes(), key.public_bytes());
        assert!(KeyPair::from_pkcs8_der(b"junk").is_err());
    }

    #[test]
    fn save_load_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.key");
        let key = KeyPair::generate().unwrap();
        key.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            KeyPair::load(&path).unwrap().public_bytes(),
            key.public_bytes()
        );
    }

    #[test]
    fn save_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        let first = KeyPair::generate().unwrap();
        first.save(&path).unwrap();
        let err = KeyPair::generate().unwrap().save(&path).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            KeyPair::load(&path).unwrap().public_bytes(),
            first.public_bytes()
        );
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_group_or_other_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.key");
        KeyPair::generate().unwrap().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeyPair::load(&path).unwrap_err();
            assert!(matches!(err, KeyError::TooOpen { mode: m, .. } if m == mode));
            let msg = err.to_string();
            assert!(
                msg.contains("chmod 600") && msg.contains("user.key"),
                "{msg}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(KeyPair::load(&path).is_ok());
    }

    #[test]
    fn load_reports_missing_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.key");
        assert!(matches!(KeyPair::load(&missing), Err(KeyError::Io { .. })));
        let junk = dir.path().join("junk.key");
        write_new_private(&junk, b"not a key").unwrap();
        assert!(matches!(
            KeyPair::load(&junk),
            Err(KeyError::Malformed { .. })
        ));
    }
}
