//! The owner's keyring: every encryption key pair the user has had, the
//! newest first in use, kept in one private file in the user's home.
//!
//! Rotation adds a key and never removes one, because mail sealed to an
//! old key must still open: a wrapped key names the public key it was
//! sealed to, and [`Keyring::find`] picks the matching pair. Losing this
//! file loses every mail sealed to it, which is why `dem id export` exists
//! (see [`crate::export`]).
//!
//! The file is written to a temporary name, fsynced and renamed, so a crash
//! leaves the old keyring or the new one, never half of one; it is created
//! with mode 0600 because it holds secrets.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{EncryptionKeyPair, EncryptionPublicKey};

/// The keyring's file name inside the user's home.
pub const KEYRING_FILE: &str = "encryption.keys";
/// At most this many keys, so a loop of rotations cannot grow the file
/// (and every open's key search) without bound.
pub const KEYRING_KEYS_MAX: usize = 1024;
/// The keyring file is never larger than this (1024 keys take ~60 KiB).
pub const KEYRING_FILE_BYTES_MAX: u64 = 1 << 20;
const KEYRING_VERSION: u8 = 1;

/// Why the keyring could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Reading or writing the file failed.
    #[error("keyring {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a keyring this build understands.
    #[error("keyring {path} is damaged or not a keyring: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A new key could not be made.
    #[error("no randomness for a new encryption key: {0}")]
    Random(#[from] getrandom::Error),
    /// Rotation would exceed [`KEYRING_KEYS_MAX`].
    #[error("the keyring already holds {max} keys, the most it may")]
    Full {
        /// The limit.
        max: usize,
    },
    /// The keyring has no key at all.
    #[error("the keyring holds no key")]
    Empty,
}

/// One key with the time it was made.
#[derive(Clone, Debug)]
pub struct KeyringEntry {
    /// The key pair.
    pub key: EncryptionKeyPair,
    /// When it was created, by the owner's clock.
    pub created_ms: i64,
}

/// Every encryption key a user has had; the last one is current.
#[derive(Clone, Debug)]
pub struct Keyring {
    entries: Vec<KeyringEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    #[serde(with = "serde_bytes")]
    secret: [u8; 32],
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredKeyring {
    version: u8,
    keys: Vec<StoredEntry>,
}

impl Drop for StoredEntry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl Keyring {
    /// A keyring with one fresh key.
    pub fn generate(now_ms: i64) -> Result<Self, KeyringError> {
        Ok(Self {
            entries: vec![KeyringEntry {
                key: EncryptionKeyPair::generate()?,
                created_ms: now_ms,
            }],
        })
    }

    /// A keyring of the given entries, oldest first.
    pub fn from_entries(entries: Vec<KeyringEntry>) -> Result<Self, KeyringError> {
        if entries.is_empty() {
            return Err(KeyringError::Empty);
        }
        if entries.len() > KEYRING_KEYS_MAX {
            return Err(KeyringError::Full {
                max: KEYRING_KEYS_MAX,
            });
        }
        Ok(Self { entries })
    }

    /// The key new mail is sealed to.
    pub fn current(&self) -> &EncryptionKeyPair {
        match self.entries.last() {
            Some(e) => &e.key,
            None => panic!("a keyring is never empty: every constructor checks it"),
        }
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[KeyringEntry] {
        &self.entries
    }

    /// The key pair whose public half is `public`, if this keyring has it.
    pub fn find(&self, public: &EncryptionPublicKey) -> Option<&EncryptionKeyPair> {
        self.entries
            .iter()
            .rev()
            .map(|e| &e.key)
            .find(|k| k.public() == *public)
    }

    /// Adds a fresh key, which becomes current; the old ones stay.
    pub fn rotate(&mut self, now_ms: i64) -> Result<&EncryptionKeyPair, KeyringError> {
        if self.entries.len() >= KEYRING_KEYS_MAX {
            return Err(KeyringError::Full {
                max: KEYRING_KEYS_MAX,
            });
        }
        self.entries.push(KeyringEntry {
            key: EncryptionKeyPair::generate()?,
            created_ms: now_ms,
        });
        Ok(self.current())
    }

    /// Adds the keys of `other` this keyring lacks (an import beside an
    /// existing identity), keeping this keyring's current key current.
    pub fn absorb(&mut self, other: &Keyring) -> Result<usize, KeyringError> {
        let current = self.entries.pop();
        let mut added = 0;
        for e in &other.entries {
            let known = current
                .as_ref()
                .is_some_and(|c| c.key.public() == e.key.public())
                || self.find(&e.key.public()).is_some();
            if !known {
                self.entries.push(e.clone());
                added += 1;
            }
        }
        self.entries.extend(current);
        if self.entries.len() > KEYRING_KEYS_MAX {
            return Err(KeyringError::Full {
                max: KEYRING_KEYS_MAX,
            });
        }
        Ok(added)
    }

    /// The keyring's bytes, as written to its file and inside an export.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let stored = StoredKeyring {
            version: KEYRING_VERSION,
            keys: self
                .entries
                .iter()
                .map(|e| StoredEntry {
                    secret: *e.key.secret_bytes(),
                    created_ms: e.created_ms,
                })
                .collect(),
        };
        rmp_serde::to_vec_named(&stored)
            .map(Zeroizing::new)
            .map_err(|e| KeyringError::Malformed {
                path: PathBuf::new(),
                reason: e.to_string(),
            })
    }

    /// Reads a keyring from [`Keyring::to_bytes`] output; `path` only names
    /// where it came from in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, KeyringError> {
        let malformed = |reason: String| KeyringError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let stored: StoredKeyring =
            rmp_serde::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if stored.version != KEYRING_VERSION {
            return Err(malformed(format!(
                "version {} (this build reads {KEYRING_VERSION})",
                stored.version
            )));
        }
        let entries = stored
            .keys
            .iter()
            .map(|s| {
                EncryptionKeyPair::from_secret(&s.secret)
                    .map(|key| KeyringEntry {
                        key,
                        created_ms: s.created_ms,
                    })
                    .map_err(|e| malformed(format!("a key does not decode: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_entries(entries).map_err(|e| malformed(e.to_string()))
    }

    /// Reads the keyring at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > KEYRING_FILE_BYTES_MAX {
            return Err(KeyringError::Malformed {
                path: path.to_path_buf(),
                reason: format!("{len} bytes, more than {KEYRING_FILE_BYTES_MAX}"),
            });
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(io)?);
        Self::from_bytes(&bytes, path)
    }

    /// Loads the keyring at `path`, or makes and saves one with a fresh key.
    /// Returns whether it was just created.
    pub fn load_or_create(path: &Path, now_ms: i64) -> Result<(Self, bool), KeyringError> {
        if path.exists() {
            return Self::load(path).map(|k| (k, false));
        }
        let ring = Self::generate(now_ms)?;
        ring.save(path)?;
        Ok((ring, true))
    }

    /// Writes the keyring to `path` atomically (temporary file, fsync,
    /// rename, fsync of the directory), private to the owner.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("keys.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_keys_findable() {
        let mut ring = Keyring::generate(1).unwrap();
        let first = ring.current().public();
        let second = ring.rotate(2).unwrap().public();
        assert_ne!(first, second);
        assert_eq!(ring.current().public(), second);
        assert!(ring.find(&first).is_some());
        assert!(
            ring.find(&EncryptionKeyPair::derive(b"x").public())
                .is_none()
        );
        assert_eq!(ring.entries().len(), 2);
    }

    #[test]
    fn save_and_load_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYRING_FILE);
        let (mut ring, created) = Keyring::load_or_create(&path, 5).unwrap();
        assert!(created);
        ring.rotate(6).unwrap();
        ring.save(&path).unwrap();
        let (back, created) = Keyring::load_or_create(&path, 7).unwrap();
        assert!(!created);
        let publics = |r: &Keyring| {
            r.entries()
                .iter()
                .map(|e| (e.key.public(), e.created_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(publics(&back), publics(&ring));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn damaged_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYRING_FILE);
        std::fs::write(&path, b"not a keyring").unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(matches!(err, KeyringError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("damaged"), "{err}");
        std::fs::write(&path, vec![0u8; KEYRING_FILE_BYTES_MAX as usize + 1]).unwrap();
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let empty = rmp_serde::to_vec_named(&StoredKeyring {
            version: 1,
            keys: vec![],
        })
        .unwrap();
        std::fs::write(&path, empty).unwrap();
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("no key")
        );
        let future = rmp_serde::to_vec_named(&StoredKeyring {
            version: 9,
            keys: vec![],
        })
        .unwrap();
        std::fs::write(&path, future).unwrap();
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
    }

    #[test]
    fn a_full_keyring_refuses_rotation() {
        let entries = (0..KEYRING_KEYS_MAX)
            .map(|i| KeyringEntry {
                key: EncryptionKeyPair::derive(&i.to_le_bytes()),
                created_ms: i as i64,
            })
            .collect();
        let mut ring = Keyring::from_entries(entries).unwrap();
        assert!(matches!(ring.rotate(0), Err(KeyringError::Full { .. })));
    }

    #[test]
    fn absorb_adds_missing_keys_and_keeps_current() {
        let mut a = Keyring::generate(1).unwrap();
        let mut b = a.clone();
        b.rotate(2).unwrap();
        a.rotate(3).unwrap();
        let current = a.current().public();
        assert_eq!(a.absorb(&b).unwrap(), 1);
        assert_eq!(a.current().public(), current);
        assert!(a.find(&b.current().public()).is_some());
        assert_eq!(a.absorb(&b).unwrap(), 0);
    }
}
