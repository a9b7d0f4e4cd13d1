//! The dispatch unit's tables on disk: `DIR/tables.bin`, the rmp-serde
//! encoding of [`DispatchTables`], so a restarted unit comes back with what
//! it knew instead of waiting for hosts and peers to tell it again.
//!
//! The file is replaced atomically (write a temp file, fsync it, rename it
//! over the old one, fsync the directory), so a crash leaves either the old
//! tables or the new ones, never a torn file. The service (next door)
//! decides when to write; a restored snapshot is checked record by record
//! by [`super::DispatchUnit::from_snapshot`], so a damaged file is refused
//! rather than trusted.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::DispatchTables;

/// The tables file inside a unit's data dir.
pub const TABLES_FILE: &str = "tables.bin";
/// The temp file the next version is written to before the rename.
const TABLES_TMP_FILE: &str = "tables.bin.tmp";

/// Why the tables could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The tables could not be encoded (a bug: they are plain data).
    #[error("cannot encode the tables: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The file does not decode as tables.
    #[error("{path} is damaged: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: rmp_serde::decode::Error,
    },
}

/// Encodes `tables` for [`write_tables`].
pub fn encode_tables(tables: &DispatchTables) -> Result<Vec<u8>, PersistError> {
    Ok(rmp_serde::to_vec_named(tables)?)
}

/// Replaces `dir/tables.bin` with `bytes`, atomically and durably.
pub fn write_tables(dir: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let tmp = dir.join(TABLES_TMP_FILE);
    let path = dir.join(TABLES_FILE);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io { path, source }
    };
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    // The rename is only durable once the directory entry is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// The tables saved in `dir`, or `None` if there are none yet.
pub fn load_tables(dir: &Path) -> Result<Option<DispatchTables>, PersistError> {
    let path = dir.join(TABLES_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    rmp_serde::from_slice(&bytes)
        .map(Some)
        .map_err(|source| PersistError::Decode { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testutil::unit_with_hosts;

    #[test]
    fn tables_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_tables(dir.path()).unwrap().is_none());
        let small = unit_with_hosts(5, 1).snapshot();
        write_tables(dir.path(), &encode_tables(&small).unwrap()).unwrap();
        let big = unit_with_hosts(5, 3).snapshot();
        write_tables(dir.path(), &encode_tables(&big).unwrap()).unwrap();
        assert_eq!(load_tables(dir.path()).unwrap(), Some(big));
        assert!(!dir.path().join(TABLES_TMP_FILE).exists());
    }

    #[test]
    fn damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TABLES_FILE), b"\xc1 not tables").unwrap();
        assert!(matches!(
            load_tables(dir.path()),
            Err(PersistError::Decode { .. })
        ));
    }
}
