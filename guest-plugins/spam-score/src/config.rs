//! The spam-score config: thresholds, the junk folder, text rules and the
//! weights of the built-in structural rules.
//!
//! One setting or rule per line; blank lines and `#` comments are ignored.
//! Strings are double-quoted with `\"` and `\\` escapes. An empty config
//! means all the defaults below.
//!
//! ```text
//! junk_threshold = 5.0      # score at or above: file into `folder`
//! reject_threshold = 15.0   # score at or above: reject; `off` never rejects
//! folder = Junk             # a bare word or a "quoted name"
//! builtin_words = on        # off drops the built-in word list
//! word "viagra" 4.0         # body or subject has the word or phrase
//! subject "free money" 3.0  # subject contains the text
//! header "X-Mailer" contains "bulk" 2.0
//! header "X-Spam-Flag" is "yes" 5.0
//! header "List-Unsubscribe" exists 0.5
//! rule empty_subject 0      # re-weight a structural rule; 0 disables it
//! ```
//!
//! - Settings are `key = value`; a setting given twice keeps its last value.
//! - `word` matches whole words and phrases, case-insensitively, in the
//!   subject or the body preview (see [`crate::text`]).
//! - `subject` and `header ... contains|is` compare case-insensitively, as
//!   plain substrings or whole values; header names ignore case too.
//! - Weights may be negative (e.g. to vouch for an internal header) but must
//!   be finite and at most [`MAX_WEIGHT`] in size.
//! - Each rule counts at most once per mail; the score is the sum.
//! - The built-in words ([`BUILTIN_WORDS`]) apply in addition to the
//!   config's own rules unless `builtin_words = off`.
//!
//! Structural rules and default weights (see [`crate::score`]):
//! `shouting_subject` 1.5, `exclamations` 1.0, `missing_message_id` 1.5,
//! `missing_date` 1.0, `empty_subject` 1.0, `display_name_mismatch` 3.0,
//! `many_recipients` 1.5, `dangerous_attachment` 3.0.
//!
//! Parse errors name the line and column; the plugin then logs the error
//! and accepts the mail.

use std::fmt;

use crate::lex::{Kind, Token, tokenize};
use crate::score::Structural;
use crate::text::normalize;

/// Largest config accepted, in bytes; bounds parsing work per mail.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Most text rules (`word`, `subject`, `header`) in one config.
pub const MAX_RULES: usize = 256;
/// Longest text or header name in a rule, in bytes; bounds matching work.
pub const MAX_PATTERN_BYTES: usize = 200;
/// Longest folder name, in bytes.
pub const MAX_FOLDER_BYTES: usize = 255;
/// Largest weight, in either direction.
pub const MAX_WEIGHT: f32 = 1000.0;
/// Largest threshold, in either direction.
pub const MAX_THRESHOLD: f32 = 1_000_000.0;

/// Defaults for an empty config.
pub const DEFAULT_JUNK_THRESHOLD: f32 = 5.0;
pub const DEFAULT_REJECT_THRESHOLD: f32 = 15.0;
pub const DEFAULT_FOLDER: &str = "Junk";

/// Words and phrases scored unless `builtin_words = off`: unambiguous spam
/// vocabulary only, with modest weights, so that one hit alone stays under
/// the default junk threshold.
pub const BUILTIN_WORDS: &[(&str, f32)] = &[
    ("viagra", 4.0),
    ("cialis", 4.0),
    ("free money", 3.0),
    ("million dollars", 2.0),
    ("lottery", 2.5),
    ("you have won", 3.0),
    ("casino", 2.0),
    ("100% free", 2.0),
    ("risk-free", 1.5),
    ("click here", 1.5),
    ("act now", 1.5),
    ("limited time offer", 1.5),
    ("wire transfer", 1.5),
    ("dear friend", 1.0),
];

/// What a text rule looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Whole word or phrase (normalised) in the subject or body preview.
    Word(String),
    /// Substring (lower-cased) of the subject.
    Subject(String),
    /// Some header called `name` (lower-cased) contains `text`.
    HeaderContains { name: String, text: String },
    /// Some header called `name` is exactly `text` (both lower-cased,
    /// value trimmed).
    HeaderIs { name: String, text: String },
    /// A header called `name` is present.
    HeaderExists(String),
}

/// A weighted text rule and how it is shown in logs and reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRule {
    pub target: Target,
    pub weight: f32,
    pub label: String,
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub junk_threshold: f32,
    /// `None` when rejecting is off.
    pub reject_threshold: Option<f32>,
    pub folder: String,
    pub builtin_words: bool,
    /// Weight of each structural rule, indexed by [`Structural::index`].
    pub weights: [f32; Structural::ALL.len()],
    /// The config's own text rules, in order.
    pub rules: Vec<TextRule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            junk_threshold: DEFAULT_JUNK_THRESHOLD,
            reject_threshold: Some(DEFAULT_REJECT_THRESHOLD),
            folder: DEFAULT_FOLDER.to_string(),
            builtin_words: true,
            weights: Structural::ALL.map(Structural::default_weight),
            rules: Vec::new(),
        }
    }
}

impl Config {
    /// The text rules to run: the built-in words (unless switched off)
    /// followed by the config's own.
    pub fn text_rules(&self) -> Vec<TextRule> {
        let builtin = BUILTIN_WORDS
            .iter()
            .filter(|_| self.builtin_words)
            .map(|(word, weight)| TextRule {
                target: Target::Word(normalize(word)),
                weight: *weight,
                label: format!("word {word:?}"),
            });
        builtin.chain(self.rules.iter().cloned()).collect()
    }
}

/// A config error at a line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// An error within a line: column and message.
type LineError = (usize, String);

/// Parses a whole config.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError {
            line: 1,
            column: 1,
            message: format!(
                "config is {} bytes, more than the limit of {MAX_CONFIG_BYTES}",
                text.len()
            ),
        });
    }
    let mut config = Config::default();
    for (index, line) in text.lines().enumerate() {
        let at = |(column, message): LineError| ConfigError {
            line: index + 1,
            column,
            message,
        };
        let tokens = tokenize(line).map_err(|e| at((e.column, e.message)))?;
        let end_column = line.chars().count() + 1;
        parse_line(&tokens, end_column, &mut config).map_err(at)?;
    }
    Ok(config)
}

/// The error for finding `found` (or the end of the line) instead of
/// `expected`.
fn unexpected(found: Option<&Token>, end_column: usize, expected: &str) -> LineError {
    match found {
        Some(token) => (token.column, format!("expected {expected}, found {token}")),
        None => (
            end_column,
            format!("expected {expected}, found the end of the line"),
        ),
    }
}

/// The string in `token`, if it is a quoted string of at most
/// [`MAX_PATTERN_BYTES`] bytes with something other than white space in it.
fn pattern(token: Option<&Token>, end_column: usize, what: &str) -> Result<String, LineError> {
    match token {
        Some(Token {
            kind: Kind::Str(text),
            column,
        }) => {
            if text.len() > MAX_PATTERN_BYTES {
                Err((
                    *column,
                    format!("{what} is longer than {MAX_PATTERN_BYTES} bytes"),
                ))
            } else if text.trim().is_empty() {
                Err((*column, format!("{what} must not be empty")))
            } else {
                Ok(text.clone())
            }
        }
        other => Err(unexpected(other, end_column, &format!("a quoted {what}"))),
    }
}

/// A finite number of at most `max` in size.
fn number(
    token: Option<&Token>,
    end_column: usize,
    what: &str,
    max: f32,
) -> Result<f32, LineError> {
    let Some(token) = token else {
        return Err(unexpected(None, end_column, what));
    };
    let value = match &token.kind {
        Kind::Word(word) | Kind::Str(word) => word.parse::<f32>().ok(),
        Kind::Equals => None,
    };
    match value {
        Some(value) if value.is_finite() && value.abs() <= max => Ok(value),
        _ => Err((
            token.column,
            format!("expected {what} (a number from -{max} to {max}), found {token}"),
        )),
    }
}

/// The value of a `key = value` setting: one bare word or quoted string.
fn setting_value(tokens: &[Token], end_column: usize) -> Result<(String, usize), LineError> {
    let value = match tokens.get(2) {
        Some(Token {
            kind: Kind::Word(text) | Kind::Str(text),
            column,
        }) => (text.clone(), *column),
        other => return Err(unexpected(other, end_column, "a value")),
    };
    match tokens.get(3) {
        Some(extra) => Err((
            extra.column,
            format!("unexpected {extra}; quote values that contain spaces"),
        )),
        None => Ok(value),
    }
}

fn parse_line(tokens: &[Token], end_column: usize, config: &mut Config) -> Result<(), LineError> {
    let Some(first) = tokens.first() else {
        return Ok(());
    };
    let Some(head) = first.word() else {
        return Err(unexpected(Some(first), end_column, "a setting or a rule"));
    };
    if tokens.get(1).is_some_and(|t| t.kind == Kind::Equals) {
        return parse_setting(head, first.column, tokens, end_column, config);
    }
    let rule = match head {
        "rule" => {
            let name = tokens.get(1);
            let structural = name
                .and_then(Token::word)
                .and_then(Structural::from_name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Structural::ALL.iter().map(|s| s.name()).collect();
                    unexpected(name, end_column, &format!("one of {}", names.join(", ")))
                })?;
            let weight = number(tokens.get(2), end_column, "a weight", MAX_WEIGHT)?;
            config.weights[structural.index()] = weight;
            return end_of_line(tokens, 3);
        }
        "word" => {
            let text = pattern(tokens.get(1), end_column, "word")?;
            let weight = number(tokens.get(2), end_column, "a weight", MAX_WEIGHT)?;
            end_of_line(tokens, 3)?;
            TextRule {
                label: format!("word {text:?}"),
                target: Target::Word(normalize(&text)),
                weight,
            }
        }
        "subject" => {
            let text = pattern(tokens.get(1), end_column, "text")?;
            let weight = number(tokens.get(2), end_column, "a weight", MAX_WEIGHT)?;
            end_of_line(tokens, 3)?;
            TextRule {
                label: format!("subject {text:?}"),
                target: Target::Subject(text.to_lowercase()),
                weight,
            }
        }
        "header" => parse_header(tokens, end_column)?,
        _ => {
            return Err((
                first.column,
                format!(
                    "unknown rule {first} (expected a `key = value` setting, rule, word, subject or header)"
                ),
            ));
        }
    };
    if config.rules.len() == MAX_RULES {
        return Err((first.column, format!("more than {MAX_RULES} rules")));
    }
    config.rules.push(rule);
    Ok(())
}

/// `header "NAME" contains|is "TEXT" W` or `header "NAME" exists W`.
fn parse_header(tokens: &[Token], end_column: usize) -> Result<TextRule, LineError> {
    let raw_name = pattern(tokens.get(1), end_column, "header name")?;
    let name = raw_name.trim().to_lowercase();
    let operator = tokens.get(2);
    let (target, label, next) = match operator.and_then(Token::word) {
        Some("exists") => (
            Target::HeaderExists(name),
            format!("header {raw_name:?} exists"),
            3,
        ),
        Some(op @ ("contains" | "is")) => {
            let text = pattern(tokens.get(3), end_column, "text")?;
            let label = format!("header {raw_name:?} {op} {text:?}");
            let text = text.trim().to_lowercase();
            let target = if op == "is" {
                Target::HeaderIs { name, text }
            } else {
                Target::HeaderContains { name, text }
            };
            (target, label, 4)
        }
        _ => {
            return Err(unexpected(
                operator,
                end_column,
                "`contains`, `is` or `exists`",
            ));
        }
    };
    let weight = number(tokens.get(next), end_column, "a weight", MAX_WEIGHT)?;
    end_of_line(tokens, next + 1)?;
    Ok(TextRule {
        target,
        weight,
        label,
    })
}

fn parse_setting(
    key: &str,
    key_column: usize,
    tokens: &[Token],
    end_column: usize,
    config: &mut Config,
) -> Result<(), LineError> {
    let (value, column) = setting_value(tokens, end_column)?;
    let threshold = |value: &str| -> Result<f32, LineError> {
        match value.parse::<f32>() {
            Ok(t) if t.is_finite() && t.abs() <= MAX_THRESHOLD => Ok(t),
            _ => Err((
                column,
                format!(
                    "`{value}` is not a threshold (a number from -{MAX_THRESHOLD} to {MAX_THRESHOLD})"
                ),
            )),
        }
    };
    match key {
        "junk_threshold" => config.junk_threshold = threshold(&value)?,
        "reject_threshold" => {
            config.reject_threshold = match value.as_str() {
                "off" | "none" => None,
                other => Some(threshold(other)?),
            }
        }
        "folder" => {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err((column, "invalid folder name".to_string()));
            }
            if value.len() > MAX_FOLDER_BYTES {
                return Err((
                    column,
                    format!("folder is longer than {MAX_FOLDER_BYTES} bytes"),
                ));
            }
            config.folder = value;
        }
        "builtin_words" => {
            config.builtin_words = match value.as_str() {
                "on" | "true" | "yes" => true,
                "off" | "false" | "no" => false,
                _ => return Err((column, format!("expected on or off, found `{value}`"))),
            }
        }
        _ => {
            return Err((
                key_column,
                format!(
                    "unknown setting `{key}` (expected junk_threshold, reject_threshold, folder or builtin_words)"
                ),
            ));
        }
    }
    Ok(())
}

/// Fails if anything follows the `expected` tokens of a rule.
fn end_of_line(tokens: &[Token], expected: usize) -> Result<(), LineError> {
    match tokens.get(expected) {
        Some(extra) => Err((extra.column, format!("unexpected {extra} after the weight"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
