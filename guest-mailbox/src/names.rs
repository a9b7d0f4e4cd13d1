//! Validation of user-chosen names: folders, keywords, preference keys and
//! plugin names.
//!
//! Names end up in IMAP responses, UI lists and host logs, so they must be
//! bounded and free of control characters. Folder names are also
//! canonicalised here (`inbox` → `INBOX`) so the rest of the crate can
//! compare them as plain strings.

use crate::error::{Result, invalid_name, too_large};
use crate::limits::{FOLDER_DEPTH_MAX, NAME_BYTES_MAX};

/// The one folder that always exists.
pub const INBOX: &str = "INBOX";

/// Hierarchy separator of folder names, as IMAP announces it.
pub const SEPARATOR: char = '/';

/// Checks the rules every name shares: non-empty, bounded, no control
/// characters.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid_name(format!("{kind} is empty")));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(too_large(kind, NAME_BYTES_MAX, name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid_name(format!(
            "{kind} {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// A keyword must also be an IMAP atom-ish token: no whitespace, which
/// would split it when a client lists flags.
pub fn check_keyword(keyword: &str) -> Result<()> {
    check_name("keyword", keyword)?;
    if keyword.chars().any(char::is_whitespace) {
        return Err(invalid_name(format!(
            "keyword {keyword:?} contains whitespace"
        )));
    }
    Ok(())
}

/// Validates a folder name and returns its canonical form: the first
/// component `inbox` in any case becomes `INBOX` (IMAP treats INBOX
/// case-insensitively, other names are case-sensitive).
pub fn folder_name(name: &str) -> Result<String> {
    check_name("folder name", name)?;
    let mut depth = 0;
    for component in name.split(SEPARATOR) {
        depth += 1;
        if component.is_empty() || component == "." || component == ".." {
            return Err(invalid_name(format!(
                "folder name {name:?} has an empty, \".\" or \"..\" component"
            )));
        }
    }
    if depth > FOLDER_DEPTH_MAX {
        return Err(too_large("folder depth", FOLDER_DEPTH_MAX, depth));
    }
    let first = name.split(SEPARATOR).next().unwrap_or(name);
    if first != INBOX && first.eq_ignore_ascii_case(INBOX) {
        return Ok(format!("{INBOX}{}", &name[first.len()..]));
    }
    Ok(name.to_string())
}

/// True for a BLAKE3 hash as the WIT spells it: 64 lower-case hex digits.
pub fn is_hash_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parent folder of `name`, if it has one.
pub fn parent(name: &str) -> Option<&str> {
    name.rsplit_once(SEPARATOR).map(|(p, _)| p)
}

/// True if `name` is `ancestor` or lies below it.
pub fn is_within(name: &str, ancestor: &str) -> bool {
    name.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(SEPARATOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::MailboxError;

    #[test]
    fn inbox_is_canonicalised() {
        assert_eq!(folder_name("inbox").unwrap(), "INBOX");
        assert_eq!(folder_name("InBoX/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(folder_name("inboxes").unwrap(), "inboxes");
        assert_eq!(folder_name("Work/inbox").unwrap(), "Work/inbox");
    }

    #[test]
    fn bad_folder_names() {
        for bad in ["", "/", "a/", "/a", "a//b", ".", "a/..", "a\u{7}b", "a/./b"] {
            assert!(
                matches!(folder_name(bad), Err(MailboxError::InvalidName(_))),
                "{bad:?}"
            );
        }
        let long = "x".repeat(NAME_BYTES_MAX + 1);
        assert!(matches!(folder_name(&long), Err(MailboxError::TooLarge(_))));
        let deep = vec!["a"; FOLDER_DEPTH_MAX + 1].join("/");
        assert!(matches!(folder_name(&deep), Err(MailboxError::TooLarge(_))));
        assert!(folder_name(&vec!["a"; FOLDER_DEPTH_MAX].join("/")).is_ok());
    }

    #[test]
    fn keywords() {
        assert!(check_keyword("$Junk").is_ok());
        assert!(check_keyword("two words").is_err());
        assert!(check_keyword("").is_err());
    }

    #[test]
    fn hierarchy_helpers() {
        assert_eq!(parent("a/b/c"), Some("a/b"));
        assert_eq!(parent("a"), None);
        assert!(is_within("a/b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
    }
}
