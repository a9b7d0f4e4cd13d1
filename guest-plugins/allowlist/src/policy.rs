//! The allowlist policy and its config.
//!
//! The host classifies the sender against the mailbox's contacts, allowlist
//! and blocklist before any filter runs and hands the result over as
//! `mail-view.sender`; this plugin only decides what each class means, so it
//! never needs to see the lists themselves.
//!
//! | sender    | default verdict            |
//! |-----------|----------------------------|
//! | `blocked` | `reject("sender is blocked")` |
//! | `allowed` | `accept`                   |
//! | `contact` | `accept`                   |
//! | `unknown` | `file-into("Screened")`    |
//!
//! # Config
//!
//! Optional, one `key = value` per line; blank lines and `#` comments are
//! ignored, a key given twice keeps its last value:
//!
//! ```text
//! folder = Screened          # where screened mail goes; may be "quoted"
//! unknown = screen           # screen | accept | reject
//! contacts = allow           # allow | screen
//! ```
//!
//! - `unknown = screen` files mail from unknown senders into `folder`,
//!   `accept` lets it through, `reject` bounces it.
//! - `contacts = screen` files mail from contacts into `folder` as well, for
//!   users who only want explicitly allowed senders in their inbox.
//!
//! Blocked senders are always rejected and allowed senders always accepted:
//! those lists are the user's explicit word and a config must not undo it.
//!
//! A config that cannot be parsed is logged at error level and the mail is
//! accepted: a typo must never make mail disappear.

use crate::Verdict;
use crate::dem::mail::log::Level;
use crate::dem::mail::types::SenderStatus;

/// Largest config accepted; anything bigger is certainly not a config for
/// three keys, and refusing it bounds the work done per mail.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024;
/// Longest folder name accepted, in bytes (the host has its own, stricter
/// checks when it files the mail).
pub const MAX_FOLDER_BYTES: usize = 255;
/// Folder used when the config names none.
pub const DEFAULT_FOLDER: &str = "Screened";

/// What to do with mail from a sender the mailbox does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    Screen,
    Accept,
    Reject,
}

/// What to do with mail from a sender in the address book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactPolicy {
    Allow,
    Screen,
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub folder: String,
    pub unknown: UnknownPolicy,
    pub contacts: ContactPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            folder: DEFAULT_FOLDER.to_string(),
            unknown: UnknownPolicy::Screen,
            contacts: ContactPolicy::Allow,
        }
    }
}

/// Runs the policy for one mail; `log` receives what the host should log.
pub fn evaluate(sender: SenderStatus, config: &str, log: &mut dyn FnMut(Level, &str)) -> Verdict {
    let config = match parse_config(config) {
        Ok(config) => config,
        Err(error) => {
            log(
                Level::Error,
                &format!("allowlist: bad config, accepting mail: {error}"),
            );
            return Verdict::Accept;
        }
    };
    let verdict = decide(sender, &config);
    log(
        Level::Debug,
        &format!("allowlist: sender {sender:?} -> {verdict:?}"),
    );
    verdict
}

/// The verdict for a sender class under `config`.
pub fn decide(sender: SenderStatus, config: &Config) -> Verdict {
    match sender {
        SenderStatus::Blocked => Verdict::Reject("sender is blocked".to_string()),
        SenderStatus::Allowed => Verdict::Accept,
        SenderStatus::Contact => match config.contacts {
            ContactPolicy::Allow => Verdict::Accept,
            ContactPolicy::Screen => Verdict::FileInto(config.folder.clone()),
        },
        SenderStatus::Unknown => match config.unknown {
            UnknownPolicy::Screen => Verdict::FileInto(config.folder.clone()),
            UnknownPolicy::Accept => Verdict::Accept,
            UnknownPolicy::Reject => Verdict::Reject("sender is not on the allowlist".to_string()),
        },
    }
}

/// Parses the config text; the error names the offending line.
pub fn parse_config(text: &str) -> Result<Config, String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "config is {} bytes, more than the limit of {MAX_CONFIG_BYTES}",
            text.len()
        ));
    }
    let mut config = Config::default();
    for (index, line) in text.lines().enumerate() {
        parse_line(line, &mut config).map_err(|error| format!("line {}: {error}", index + 1))?;
    }
    Ok(config)
}

/// Applies one config line to `config`.
fn parse_line(line: &str, config: &mut Config) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let Some((key, rest)) = line.split_once('=') else {
        return Err(format!("expected `key = value`, found `{line}`"));
    };
    let key = key.trim();
    let value = parse_value(rest)?;
    match key {
        "folder" => config.folder = check_folder(value)?,
        "unknown" => {
            config.unknown = match value.as_str() {
                "screen" => UnknownPolicy::Screen,
                "accept" => UnknownPolicy::Accept,
                "reject" => UnknownPolicy::Reject,
                other => {
                    return Err(format!(
                        "`unknown` must be screen, accept or reject, not `{other}`"
                    ));
                }
            }
        }
        "contacts" => {
            config.contacts = match value.as_str() {
                "allow" => ContactPolicy::Allow,
                "screen" => ContactPolicy::Screen,
                other => {
                    return Err(format!("`contacts` must be allow or screen, not `{other}`"));
                }
            }
        }
        other => {
            return Err(format!(
                "unknown key `{other}` (expected folder, unknown or contacts)"
            ));
        }
    }
    Ok(())
}

/// The value after `=`: either a bare word running up to a `#` comment, or a
/// double-quoted string with `\"` and `\\` escapes (so folder names may hold
/// `#` or surrounding spaces).
fn parse_value(rest: &str) -> Result<String, String> {
    let rest = rest.trim_start();
    let Some(quoted) = rest.strip_prefix('"') else {
        let bare = rest.split('#').next().unwrap_or_default().trim();
        return Ok(bare.to_string());
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => {
                let tail = chars.as_str().trim();
                if !(tail.is_empty() || tail.starts_with('#')) {
                    return Err(format!("unexpected `{tail}` after the quoted value"));
                }
                return Ok(value);
            }
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                Some((_, other)) => return Err(format!("unknown escape `\\{other}`")),
                None => break,
            },
            other => value.push(other),
        }
    }
    Err("unterminated quoted value".to_string())
}

/// Rejects folder names the host could never file into, so the mistake is
/// reported as a config error rather than as a failed delivery.
fn check_folder(name: String) -> Result<String, String> {
    if name.is_empty() {
        return Err("`folder` must not be empty".to_string());
    }
    if name.len() > MAX_FOLDER_BYTES {
        return Err(format!("`folder` is longer than {MAX_FOLDER_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err("`folder` must not contain control characters".to_string());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SenderStatus; 4] = [
        SenderStatus::Unknown,
        SenderStatus::Contact,
        SenderStatus::Allowed,
        SenderStatus::Blocked,
    ];

    /// Runs `evaluate` and returns the verdict and the logged lines.
    fn run(sender: SenderStatus, config: &str) -> (Verdict, Vec<(Level, String)>) {
        let mut logs = Vec::new();
        let verdict = evaluate(sender, config, &mut |level, message| {
            logs.push((level, message.to_string()))
        });
        (verdict, logs)
    }

    fn verdict(sender: SenderStatus, config: &str) -> Verdict {
        run(sender, config).0
    }

    fn file_into(folder: &str) -> Verdict {
        Verdict::FileInto(folder.to_string())
    }

    #[test]
    fn defaults_with_empty_config() {
        assert_eq!(
            verdict(SenderStatus::Blocked, ""),
            Verdict::Reject("sender is blocked".to_string())
        );
        assert_eq!(verdict(SenderStatus::Allowed, ""), Verdict::Accept);
        assert_eq!(verdict(SenderStatus::Contact, ""), Verdict::Accept);
        assert_eq!(verdict(SenderStatus::Unknown, ""), file_into("Screened"));
    }

    #[test]
    fn whitespace_and_comments_only_is_default() {
        let config = "\n  # just a comment\n\t\n# another\n";
        assert_eq!(parse_config(config), Ok(Config::default()));
    }

    #[test]
    fn custom_folder() {
        let config = "folder = Quarantine";
        assert_eq!(
            verdict(SenderStatus::Unknown, config),
            file_into("Quarantine")
        );
        assert_eq!(verdict(SenderStatus::Contact, config), Verdict::Accept);
    }

    #[test]
    fn quoted_folder_keeps_spaces_hash_and_escapes() {
        let config = r#"folder = "To \"check\" #1 \\ later"  # comment"#;
        assert_eq!(
            verdict(SenderStatus::Unknown, config),
            file_into(r#"To "check" #1 \ later"#)
        );
    }

    #[test]
    fn unknown_accept() {
        assert_eq!(
            verdict(SenderStatus::Unknown, "unknown = accept"),
            Verdict::Accept
        );
    }

    #[test]
    fn unknown_reject() {
        assert_eq!(
            verdict(SenderStatus::Unknown, "unknown = reject"),
            Verdict::Reject("sender is not on the allowlist".to_string())
        );
    }

    #[test]
    fn unknown_screen_explicit() {
        assert_eq!(
            verdict(SenderStatus::Unknown, "unknown = screen\nfolder=Later"),
            file_into("Later")
        );
    }

    #[test]
    fn contacts_screen() {
        let config = "contacts = screen\nfolder = Review";
        assert_eq!(verdict(SenderStatus::Contact, config), file_into("Review"));
        // Explicitly allowed senders still get through.
        assert_eq!(verdict(SenderStatus::Allowed, config), Verdict::Accept);
    }

    #[test]
    fn contacts_allow_explicit() {
        assert_eq!(
            verdict(SenderStatus::Contact, "contacts = allow"),
            Verdict::Accept
        );
    }

    #[test]
    fn blocked_and_allowed_ignore_policy() {
        let config = "unknown = accept\ncontacts = screen";
        assert_eq!(
            verdict(SenderStatus::Blocked, config),
            Verdict::Reject("sender is blocked".to_string())
        );
        assert_eq!(
            verdict(SenderStatus::Allowed, "unknown = reject"),
            Verdict::Accept
        );
    }

    #[test]
    fn last_value_wins() {
        let config = "unknown = reject\nunknown = accept";
        assert_eq!(verdict(SenderStatus::Unknown, config), Verdict::Accept);
    }

    #[test]
    fn trailing_comment_on_bare_value() {
        assert_eq!(
            verdict(SenderStatus::Unknown, "unknown = reject # no strangers"),
            Verdict::Reject("sender is not on the allowlist".to_string())
        );
    }

    #[test]
    fn bad_configs_accept_and_log_error() {
        let bad = [
            "unknown = maybe",
            "contacts = reject",
            "colour = blue",
            "folder",
            "folder = ",
            "folder = \"unterminated",
            "folder = \"bad \\n escape\"",
            "folder = \"x\" trailing",
            "folder = \"a\u{7}b\"",
        ];
        for config in bad {
            for sender in ALL {
                let (verdict, logs) = run(sender, config);
                assert_eq!(verdict, Verdict::Accept, "config {config:?}");
                assert_eq!(logs.len(), 1, "config {config:?}");
                assert_eq!(logs[0].0, Level::Error, "config {config:?}");
            }
        }
    }

    #[test]
    fn error_names_the_line() {
        let error = parse_config("folder = X\n\nunknown = nope").unwrap_err();
        assert!(error.starts_with("line 3:"), "{error}");
    }

    #[test]
    fn oversized_config_is_refused() {
        let config = "# padding\n".repeat(MAX_CONFIG_BYTES);
        let (verdict, logs) = run(SenderStatus::Blocked, &config);
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(logs[0].0, Level::Error);
        assert!(logs[0].1.contains("limit"));
    }

    #[test]
    fn overlong_folder_is_refused() {
        let config = format!("folder = {}", "f".repeat(MAX_FOLDER_BYTES + 1));
        assert!(parse_config(&config).is_err());
        let config = format!("folder = {}", "f".repeat(MAX_FOLDER_BYTES));
        assert!(parse_config(&config).is_ok());
    }

    #[test]
    fn good_config_logs_debug_only() {
        let (_, logs) = run(SenderStatus::Unknown, "folder = X");
        assert!(logs.iter().all(|(level, _)| *level == Level::Debug));
    }
}
