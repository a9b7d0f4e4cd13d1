//! The user profile: a small JSON file (`profile.json`) in the DEM home
//! holding the user's chosen name and the dispatch units they last reached.
//!
//! JSON rather than MessagePack because it is tiny and a user may want to
//! read or fix it by hand. Example:
//!
//! ```json
//! {
//!   "name": "alice",
//!   "dispatch": [
//!     { "addr": "192.0.2.7:4433", "id": "ab12…(64 hex)" },
//!     { "addr": "[2001:db8::1]:4433", "id": null }
//!   ]
//! }
//! ```
//!
//! Unknown fields are ignored and missing ones default, so older and newer
//! DEM versions can share a profile. Saving writes a temporary file (mode
//! 0600) and renames it over the old one, so a crash never leaves half a
//! profile.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::id::DispatchId;
use super::keys::write_new_private;
use super::name::Name;

/// Errors from reading, writing or editing the profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading or writing the file failed.
    #[error("profile {path}: {source}")]
    Io {
        /// The profile file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not a valid profile (bad JSON, invalid name or id).
    #[error("profile {path} is not valid: {source}")]
    Malformed {
        /// The profile file.
        path: PathBuf,
        /// What the parser objected to.
        source: serde_json::Error,
    },
    /// Encoding the profile failed (never expected).
    #[error("could not encode the profile: {0}")]
    Encode(serde_json::Error),
    /// A dispatch address is not `IP:PORT`.
    #[error("dispatch address {addr:?} is not IP:PORT (e.g. 192.0.2.7:4433 or [2001:db8::1]:4433)")]
    BadAddress {
        /// The address as given.
        addr: String,
    },
}

/// A dispatch unit the user has reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchAddr {
    /// `IP:PORT`.
    pub addr: String,
    /// Its key, once learned; lets the transport pin it.
    #[serde(default)]
    pub id: Option<DispatchId>,
}

/// The user's profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// The name the user chose, if any.
    #[serde(default)]
    pub name: Option<Name>,
    /// Dispatch units to try, most recently confirmed first.
    #[serde(default)]
    pub dispatch: Vec<DispatchAddr>,
}

impl UserProfile {
    /// Reads the profile; a missing file is an empty profile.
    pub fn load_or_default(path: &Path) -> Result<Self, ProfileError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ProfileError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads the profile; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let bytes = std::fs::read(path).map_err(|source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ProfileError> {
        serde_json::from_slice(bytes).map_err(|source| ProfileError::Malformed {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the profile atomically (temporary file, then rename), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let io = |source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut json = serde_json::to_vec_pretty(self).map_err(ProfileError::Encode)?;
        json.push(b'\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A leftover from a crashed save is stale; ours is written fresh.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        write_new_private(&tmp, &json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Remembers a dispatch unit at the front of the list (it is the most
    /// recently confirmed). An address already listed moves to the front;
    /// a known id replaces an unknown one but `None` never erases a known id.
    pub fn remember_dispatch(
        &mut self,
        addr: &str,
        id: Option<DispatchId>,
    ) -> Result<(), ProfileError> {
        let canonical = addr
            .parse::<SocketAddr>()
            .map_err(|_| ProfileError::BadAddress {
                addr: addr.chars().take(100).collect(),
            })?
            .to_string();
        let mut entry = DispatchAddr {
            addr: canonical,
            id,
        };
        if let Some(pos) = self.dispatch.iter().position(|d| d.addr == entry.addr) {
            let old = self.dispatch.remove(pos);
            entry.id = entry.id.or(old.id);
        }
        self.dispatch.insert(0, entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_empty_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        assert_eq!(
            UserProfile::load_or_default(&path).unwrap(),
            UserProfile::default()
        );
        assert!(matches!(
            UserProfile::load(&path),
            Err(ProfileError::Io { .. })
        ));
    }

    #[test]
    fn save_load_round_trip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        let mut p = UserProfile {
            name: Some("alice".parse().unwrap()),
            ..Default::default()
        };
        p.remember_dispatch("192.0.2.7:4433", Some(DispatchId([3; 32])))
            .unwrap();
        p.save(&path).unwrap();
        assert_eq!(UserProfile::load(&path).unwrap(), p);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        p.remember_dispatch("[2001:db8::1]:4433", None).unwrap();
        p.save(&path).unwrap(); // the profile, unlike keys, is rewritten
        assert_eq!(UserProfile::load(&path).unwrap(), p);
        assert!(!dir.path().join("profile.json.tmp").exists());
    }

    #[test]
    fn tolerant_of_unknown_and_missing_fields_but_not_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        std::fs::write(
            &path,
            br#"{"future": 1, "dispatch": [{"addr": "192.0.2.7:1"}]}"#,
        )
        .unwrap();
        let p = UserProfile::load(&path).unwrap();
        assert_eq!((p.name, p.dispatch.len()), (None, 1));
        std::fs::write(&path, br#"{"name": "Not Valid"}"#).unwrap();
        assert!(matches!(
            UserProfile::load(&path),
            Err(ProfileError::Malformed { .. })
        ));
    }

    #[test]
    fn remember_dispatch_dedups_and_keeps_ids() {
        let mut p = UserProfile::default();
        let id = DispatchId([1; 32]);
        p.remember_dispatch("192.0.2.7:4433", Some(id)).unwrap();
        p.remember_dispatch("192.0.2.8:4433", None).unwrap();
        p.remember_dispatch("192.0.2.7:4433", None).unwrap();
        let addrs: Vec<_> = p.dispatch.iter().map(|d| (d.addr.as_str(), d.id)).collect();
        assert_eq!(
            addrs,
            [("192.0.2.7:4433", Some(id)), ("192.0.2.8:4433", None)]
        );
        for bad in ["example.com:4433", "192.0.2.7", "192.0.2.7:99999", ""] {
            assert!(matches!(
                p.remember_dispatch(bad, None),
                Err(ProfileError::BadAddress { .. })
            ));
        }
    }
}
