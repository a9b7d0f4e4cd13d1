//! The admin token of a dispatch unit's HTTP listener, and who must show it.
//!
//! The monitor shows who is online and where every mailbox is, so it is
//! never open to the world by default: a peer on loopback is the operator
//! (or someone already on the machine, who could read the data dir), and
//! anyone else must present the token the unit created in its data dir,
//! as `Authorization: Bearer TOKEN` or, for a browser opening the page,
//! `?token=TOKEN`. Tokens are compared in constant time so the answer's
//! timing tells nothing about how much of a guess was right.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The token file in a unit's data dir (mode 0600).
pub const TOKEN_FILE: &str = "admin.token";
/// Random bytes in a token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;
/// Longest token file read; a real one is 65 bytes.
const TOKEN_FILE_MAX: u64 = 4096;

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read or write the admin token {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin token {path} is not 64 hex characters; delete it to make a new one")]
    Malformed { path: PathBuf },
    #[error("no admin token in {dir}: a unit creates one when it starts with --http")]
    Missing { dir: PathBuf },
    #[error("cannot draw a random admin token: {0}")]
    Random(getrandom::Error),
}

/// A unit's admin token.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never into a log.
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token as given to clients.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where
    /// they differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

/// Reads the token in `dir`, without creating one (`dem admin token`).
pub fn read_token(dir: &Path) -> Result<AdminToken, TokenError> {
    let path = dir.join(TOKEN_FILE);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TokenError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, TOKEN_FILE_MAX), &mut text)
        .map_err(io)?;
    let token = text.trim();
    if token.len() != 2 * TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed { path });
    }
    Ok(AdminToken(token.to_owned()))
}

/// Reads the token in `dir`, creating a random one (mode 0600) on first
/// start. Two units racing on one dir both end up with the file's token.
pub fn load_or_create_token(dir: &Path) -> Result<AdminToken, TokenError> {
    match read_token(dir) {
        Err(TokenError::Missing { .. }) => {}
        other => return other,
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(TOKEN_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            let written = file
                .write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all());
            written.map_err(|source| TokenError::Io { path, source })?;
            Ok(AdminToken(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(dir),
        Err(source) => Err(TokenError::Io { path, source }),
    }
}

/// Whether a peer at `ip` is on this machine's loopback: all of
/// 127.0.0.0/8 and ::1, and IPv4 loopback mapped into IPv6.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The rule of the listener: loopback peers need nothing; anyone else
/// needs the token, from the `Authorization` header or the query.
pub fn allowed(
    peer: IpAddr,
    token: &AdminToken,
    authorization: Option<&str>,
    query_token: Option<&str>,
) -> bool {
    if is_loopback(peer) {
        return true;
    }
    let bearer = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.is_some_and(|t| token.matches(t)) || query_token.is_some_and(|t| token.matches(t))
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn token() -> AdminToken {
        AdminToken("ab".repeat(32))
    }

    #[test]
    fn loopback_needs_no_token_and_others_need_the_right_one() {
        let t = token();
        let good = "ab".repeat(32);
        for ip in [
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 231)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
        ] {
            assert!(allowed(ip, &t, None, None), "{ip}");
        }
        let far = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7));
        assert!(!allowed(far, &t, None, None));
        assert!(!allowed(far, &t, Some("Bearer nope"), Some("nope")));
        assert!(!allowed(far, &t, Some(&good), None), "no Bearer prefix");
        assert!(allowed(far, &t, Some(&format!("Bearer {good}")), None));
        assert!(allowed(far, &t, None, Some(&good)));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(!allowed(mapped, &t, None, None));
    }

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn the_token_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_token(dir.path()),
            Err(TokenError::Missing { .. })
        ));
        let first = load_or_create_token(dir.path()).unwrap();
        let again = load_or_create_token(dir.path()).unwrap();
        assert_eq!(first.as_str(), again.as_str());
        assert_eq!(read_token(dir.path()).unwrap().as_str(), first.as_str());
        assert_eq!(first.as_str().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(TOKEN_FILE), "short\n").unwrap();
        assert!(matches!(
            read_token(dir.path()),
            Err(TokenError::Malformed { .. })
        ));
    }
}
