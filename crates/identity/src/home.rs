//! The DEM home directory: where a user's (and host's) keys and profile live.
//!
//! Resolution order: an explicit `--home DIR`, else `$DEM_HOME`, else
//! `$XDG_CONFIG_HOME/dem`, else `$HOME/.config/dem`. Empty variables count
//! as unset and a relative `XDG_CONFIG_HOME` is ignored, as the XDG spec
//! asks. The environment is read in one place ([`HomeEnv::from_process`]) so
//! the order can be tested with plain values instead of mutating the process
//! environment, which is racy in multi-threaded tests.
//!
//! Directories DEM creates get mode 0700; an existing directory is left as
//! it is (it may be one the user chose, like a mounted volume), since the
//! key files themselves are 0600 and checked on load.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::keys::{KeyError, KeyPair};

/// Why no home directory could be found or made.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// None of `--home`, `DEM_HOME`, `XDG_CONFIG_HOME` or `HOME` is set.
    #[error(
        "no DEM home: pass --home DIR or set DEM_HOME (neither XDG_CONFIG_HOME nor HOME is set)"
    )]
    NotFound,
    /// Creating the directory failed.
    #[error("DEM home {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// The environment values home resolution looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HomeEnv {
    /// `DEM_HOME`.
    pub dem_home: Option<OsString>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

impl HomeEnv {
    /// Reads the three variables from the process environment.
    pub fn from_process() -> Self {
        Self {
            dem_home: std::env::var_os("DEM_HOME"),
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// Which key a file holds; each role has its own file in the home.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The user's key: names their mailbox, signs owner calls and mail.
    User,
    /// A host process's key: its QUIC identity, signs location updates.
    Host,
    /// A dispatch unit's key: its QUIC identity.
    Dispatch,
    /// A network's key: admits dispatch units (`dispatch::admission`).
    Network,
}

impl KeyRole {
    /// The key's file name inside the home.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::User => "user.key",
            Self::Host => "host.key",
            Self::Dispatch => "dispatch.key",
            Self::Network => "network.key",
        }
    }
}

/// The profile's file name inside the home.
pub const PROFILE_FILE: &str = "profile.json";

/// A resolved DEM home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

fn non_empty(v: &Option<OsString>) -> Option<&OsString> {
    v.as_ref().filter(|v| !v.is_empty())
}

impl Home {
    /// Resolves the home directory from `explicit` and the process
    /// environment (see the module doc for the order). Does not create it.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf, HomeError> {
        Self::resolve_with(explicit, &HomeEnv::from_process())
    }

    /// [`Self::resolve`] with the environment passed in.
    pub fn resolve_with(explicit: Option<PathBuf>, env: &HomeEnv) -> Result<PathBuf, HomeError> {
        if let Some(dir) = explicit.filter(|d| !d.as_os_str().is_empty()) {
            return Ok(dir);
        }
        if let Some(dir) = non_empty(&env.dem_home) {
            return Ok(PathBuf::from(dir));
        }
        if let Some(xdg) = non_empty(&env.xdg_config_home).map(PathBuf::from)
            && xdg.is_absolute()
        {
            return Ok(xdg.join("dem"));
        }
        if let Some(home) = non_empty(&env.home) {
            return Ok(PathBuf::from(home).join(".config").join("dem"));
        }
        Err(HomeError::NotFound)
    }

    /// A home at `dir` (not created yet; see [`Self::ensure`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Resolves and creates the home directory.
    pub fn open(explicit: Option<PathBuf>) -> Result<Self, HomeError> {
        let home = Self::new(Self::resolve(explicit)?);
        home.ensure()?;
        Ok(home)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (and missing parents) with mode 0700.
    pub fn ensure(&self) -> Result<(), HomeError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(|source| HomeError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    /// Where the key for `role` lives.
    pub fn key_path(&self, role: KeyRole) -> PathBuf {
        self.dir.join(role.file_name())
    }

    /// Where the user profile lives.
    pub fn profile_path(&self) -> PathBuf {
        self.dir.join(PROFILE_FILE)
    }

    /// Loads the key for `role`, generating and saving one on first use.
    /// Returns the key and whether it was just created. The home must exist.
    pub fn load_or_create_key(&self, role: KeyRole) -> Result<(KeyPair, bool), KeyError> {
        let path = self.key_path(role);
        if path.exists() {
            return KeyPair::load(&path).map(|k| (k, false));
        }
        let key = KeyPair::generate()?;
        match key.save(&path) {
            Ok(()) => Ok((key, true)),
            // Another process created it first: use theirs, never replace it.
            Err(KeyError::AlreadyExists { .. }) => KeyPair::load(&path).map(|k| (k, false)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dem: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> HomeEnv {
        HomeEnv {
            dem_home: dem.map(OsString::from),
            xdg_config_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
        }
    }

    #[test]
    fn resolution_order() {
        let all = env(Some("/d"), Some("/x"), Some("/h"));
        let r = |explicit: Option<&str>, e: &HomeEnv| {
            Home::resolve_with(explicit.map(PathBuf::from), e).ok()
        };
        assert_eq!(r(Some("/e"), &all), Some("/e".into()));
        assert_eq!(r(None, &all), Some("/d".into()));
        assert_eq!(
            r(None, &env(None, Some("/x"), Some("/h"))),
            Some("/x/dem".into())
        );
        assert_eq!(
            r(None, &env(None, None, Some("/h"))),
            Some("/h/.config/dem".into())
        );
        assert_eq!(r(Some("rel"), &env(None, None, None)), Some("rel".into()));
        assert!(matches!(
            Home::resolve_with(None, &env(None, None, None)),
            Err(HomeError::NotFound)
        ));
    }

    #[test]
    fn empty_and_relative_values_are_skipped() {
        let r = |e: &HomeEnv| Home::resolve_with(Some(PathBuf::new()), e).ok();
        assert_eq!(
            r(&env(Some(""), Some(""), Some("/h"))),
            Some("/h/.config/dem".into())
        );
        assert_eq!(
            r(&env(None, Some("rel/x"), Some("/h"))),
            Some("/h/.config/dem".into())
        );
        assert_eq!(r(&env(Some(""), Some(""), Some(""))), None);
    }

    #[test]
    fn ensure_creates_private_dir_and_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("a/dem"));
        home.ensure().unwrap();
        home.ensure().unwrap(); // idempotent
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let (user, created) = home.load_or_create_key(KeyRole::User).unwrap();
        assert!(created);
        let (again, created) = home.load_or_create_key(KeyRole::User).unwrap();
        assert!(!created);
        assert_eq!(user.public_bytes(), again.public_bytes());
        let (host, _) = home.load_or_create_key(KeyRole::Host).unwrap();
        assert_ne!(user.public_bytes(), host.public_bytes());
        assert!(home.key_path(KeyRole::Dispatch).ends_with("dispatch.key"));
        assert!(home.profile_path().ends_with(PROFILE_FILE));
    }
}
