//! The log file of `dem host|dispatch --log-file PATH`: appended to, and
//! rotated by size, keeping a fixed number of old files.
//!
//! Rotation is by size, not by day (what `tracing-appender` offers), so a
//! chatty host cannot fill a disk between two midnights: at most
//! `(keep + 1) * max_bytes` bytes of logs exist at any time. When the next
//! line would take the file past `max_bytes`, `PATH` becomes `PATH.1`,
//! `PATH.1` becomes `PATH.2` and so on; `PATH.<keep>` is overwritten.
//! A line is never split across two files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Old files kept unless the operator says otherwise.
pub const KEEP_DEFAULT: usize = 5;
/// Size at which the file is rotated unless the operator says otherwise.
pub const MAX_BYTES_DEFAULT: u64 = 64 << 20;
/// Most old files one may ask to keep.
pub const KEEP_MAX: usize = 100;

/// An append-only file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    /// Bytes in the current file.
    written: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; rotates at `max_bytes`
    /// (at least 1), keeping `keep` old files (at most [`KEEP_MAX`]).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep: keep.min(KEEP_MAX),
            file,
            written,
        })
    }

    /// The `n`th old file, `PATH.n`.
    pub fn old(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            // No old files: start the one file again.
            self.file = File::create(&self.path)?;
            self.written = 0;
            return Ok(());
        }
        for n in (1..self.keep).rev() {
            let from = self.old(n);
            if from.exists() {
                std::fs::rename(&from, self.old(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.old(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` to one file: the formatter hands over one whole
    /// line per call, so a line is never split by a rotation.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_by_size_and_keeps_so_many_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("host.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        let line = [b'x'; 39];
        for i in 0..10u8 {
            let mut l = line.to_vec();
            l[0] = b'0' + i;
            l.push(b'\n');
            f.write_all(&l).unwrap();
        }
        f.flush().unwrap();
        // Two 40-byte lines fit in 100 bytes, a third does not.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&path).starts_with('8'));
        assert!(read(&f.old(1)).starts_with('6'));
        assert!(read(&f.old(2)).starts_with('4'));
        assert!(!f.old(3).exists(), "only two old files are kept");
        // Reopening appends, counting what is there.
        drop(f);
        let mut again = RotatingFile::open(&path, 100, 2).unwrap();
        again.write_all(&[b'y'; 40]).unwrap();
        assert!(read(&path).starts_with('y'));
        assert!(read(&again.old(1)).starts_with('8'));
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.log");
        let mut f = RotatingFile::open(&path, 10, 1).unwrap();
        f.write_all(b"short\n").unwrap();
        f.write_all(&[b'z'; 50]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 50);
        assert_eq!(std::fs::read(f.old(1)).unwrap(), b"short\n");
    }
}
