//! Scores a mail: the built-in structural rules plus the text rules.
//!
//! The structural rules look at the shape of a mail rather than its words;
//! each is a classic spam tell that is cheap to check and rare in wanted
//! mail, and each has a weight the config may change (0 disables it):
//!
//! - `shouting_subject`: at least [`SHOUT_MIN_LETTERS`] letters in the
//!   subject, [`SHOUT_UPPER_PERCENT`]% or more of them upper case.
//! - `exclamations`: [`SUBJECT_EXCLAMATIONS`] or more `!` in the subject, or
//!   [`BODY_EXCLAMATIONS`] or more in the body preview.
//! - `missing_message_id`: empty Message-ID; every real mail client sets one.
//! - `missing_date`: `date-ms` zero or before the epoch (no Date header).
//! - `empty_subject`.
//! - `display_name_mismatch`: the From display name holds an address other
//!   than the real one (`"paypal@paypal.com" <x@evil.example>`), the
//!   typical phishing disguise.
//! - `many_recipients`: [`MANY_RECIPIENTS`] or more To and Cc addresses.
//! - `dangerous_attachment`: an attachment with an executable extension
//!   ([`DANGEROUS_EXTENSIONS`]) or media type ([`DANGEROUS_MEDIA_TYPES`]).
//!
//! Each rule, structural or text, adds its weight at most once.

use crate::config::{Config, Target, TextRule};
use crate::dem::mail::types::MailView;
use crate::text::{contains_word, normalize};

/// Fewest letters before a subject can count as shouting; short subjects
/// like "RE: OK" are upper case innocently.
pub const SHOUT_MIN_LETTERS: usize = 8;
/// Share of upper-case letters that makes a subject shouting.
pub const SHOUT_UPPER_PERCENT: usize = 70;
/// `!` in the subject that count as many.
pub const SUBJECT_EXCLAMATIONS: usize = 3;
/// `!` in the body preview that count as many.
pub const BODY_EXCLAMATIONS: usize = 10;
/// To plus Cc addresses that count as very many.
pub const MANY_RECIPIENTS: usize = 20;

/// File extensions that run code when opened on common desktops.
pub const DANGEROUS_EXTENSIONS: &[&str] = &[
    "exe", "scr", "bat", "cmd", "com", "pif", "vbs", "vbe", "js", "jse", "jar", "msi", "ps1",
    "hta", "lnk", "cpl", "wsf", "wsh", "scf",
];

/// Media types of executables and scripts.
pub const DANGEROUS_MEDIA_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/vnd.microsoft.portable-executable",
    "application/x-ms-installer",
    "application/x-msi",
    "application/hta",
    "application/x-ms-shortcut",
    "application/java-archive",
];

/// The built-in structural rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structural {
    ShoutingSubject,
    Exclamations,
    MissingMessageId,
    MissingDate,
    EmptySubject,
    DisplayNameMismatch,
    ManyRecipients,
    DangerousAttachment,
}

impl Structural {
    pub const ALL: [Structural; 8] = [
        Structural::ShoutingSubject,
        Structural::Exclamations,
        Structural::MissingMessageId,
        Structural::MissingDate,
        Structural::EmptySubject,
        Structural::DisplayNameMismatch,
        Structural::ManyRecipients,
        Structural::DangerousAttachment,
    ];

    /// Position in [`Structural::ALL`] and in `Config::weights`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in `rule NAME WEIGHT` lines and in reasons.
    pub fn name(self) -> &'static str {
        match self {
            Structural::ShoutingSubject => "shouting_subject",
            Structural::Exclamations => "exclamations",
            Structural::MissingMessageId => "missing_message_id",
            Structural::MissingDate => "missing_date",
            Structural::EmptySubject => "empty_subject",
            Structural::DisplayNameMismatch => "display_name_mismatch",
            Structural::ManyRecipients => "many_recipients",
            Structural::DangerousAttachment => "dangerous_attachment",
        }
    }

    pub fn from_name(name: &str) -> Option<Structural> {
        Structural::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Weight when the config does not set one.
    pub fn default_weight(self) -> f32 {
        match self {
            Structural::ShoutingSubject => 1.5,
            Structural::Exclamations => 1.0,
            Structural::MissingMessageId => 1.5,
            Structural::MissingDate => 1.0,
            Structural::EmptySubject => 1.0,
            Structural::DisplayNameMismatch => 3.0,
            Structural::ManyRecipients => 1.5,
            Structural::DangerousAttachment => 3.0,
        }
    }

    /// Whether the rule fires on `mail`.
    pub fn fires(self, mail: &MailView) -> bool {
        match self {
            Structural::ShoutingSubject => is_shouting(&mail.subject),
            Structural::Exclamations => {
                count_char(&mail.subject, '!') >= SUBJECT_EXCLAMATIONS
                    || count_char(&mail.body_preview, '!') >= BODY_EXCLAMATIONS
            }
            Structural::MissingMessageId => mail.message_id.trim().is_empty(),
            Structural::MissingDate => mail.date_ms <= 0,
            Structural::EmptySubject => mail.subject.trim().is_empty(),
            Structural::DisplayNameMismatch => display_name_mismatch(&mail.from),
            Structural::ManyRecipients => {
                mail.to.len().saturating_add(mail.cc.len()) >= MANY_RECIPIENTS
            }
            Structural::DangerousAttachment => mail
                .attachments
                .iter()
                .any(|a| is_dangerous(&a.name, &a.media_type)),
        }
    }
}

/// A rule that fired, for the score, logs and the reject reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub label: String,
    pub weight: f32,
}

/// Every rule of `config` that fires on `mail`, in a fixed order
/// (structural rules first, then text rules as configured).
pub fn hits(mail: &MailView, config: &Config) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Structural::ALL
        .into_iter()
        .filter(|rule| config.weights[rule.index()] != 0.0 && rule.fires(mail))
        .map(|rule| Hit {
            label: rule.name().to_string(),
            weight: config.weights[rule.index()],
        })
        .collect();
    let text = MailText::new(mail);
    hits.extend(
        config
            .text_rules()
            .into_iter()
            .filter(|rule| rule.weight != 0.0 && text_rule_fires(rule, &text))
            .map(|rule| Hit {
                label: rule.label,
                weight: rule.weight,
            }),
    );
    hits
}

/// The total of `hits`, in order, so the result is reproducible.
pub fn total(hits: &[Hit]) -> f32 {
    hits.iter().map(|hit| hit.weight).sum()
}

/// The mail's text, normalised once for all text rules.
struct MailText {
    subject_words: String,
    body_words: String,
    subject_lower: String,
    /// (lower-cased trimmed name, lower-cased value).
    headers: Vec<(String, String)>,
}

impl MailText {
    fn new(mail: &MailView) -> MailText {
        MailText {
            subject_words: normalize(&mail.subject),
            body_words: normalize(&mail.body_preview),
            subject_lower: mail.subject.to_lowercase(),
            headers: mail
                .headers
                .iter()
                .map(|h| (h.name.trim().to_lowercase(), h.value.to_lowercase()))
                .collect(),
        }
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn text_rule_fires(rule: &TextRule, text: &MailText) -> bool {
    match &rule.target {
        Target::Word(word) => {
            contains_word(&text.subject_words, word) || contains_word(&text.body_words, word)
        }
        Target::Subject(needle) => text.subject_lower.contains(needle.as_str()),
        Target::HeaderContains { name, text: needle } => text
            .header_values(name)
            .any(|value| value.contains(needle.as_str())),
        Target::HeaderIs { name, text: needle } => {
            text.header_values(name).any(|value| value.trim() == needle)
        }
        Target::HeaderExists(name) => text.header_values(name).next().is_some(),
    }
}

fn count_char(text: &str, wanted: char) -> usize {
    text.chars().filter(|c| *c == wanted).count()
}

fn is_shouting(subject: &str) -> bool {
    let letters = subject.chars().filter(|c| c.is_alphabetic()).count();
    let upper = subject.chars().filter(|c| c.is_uppercase()).count();
    // Saturating: usize is 32 bits in the guest and subjects are the
    // sender's to choose.
    letters >= SHOUT_MIN_LETTERS
        && upper.saturating_mul(100) >= letters.saturating_mul(SHOUT_UPPER_PERCENT)
}

/// Whether the display name of `from` (`Name <addr>`) contains an address
/// that is not `addr`.
fn display_name_mismatch(from: &str) -> bool {
    let Some(open) = from.rfind('<') else {
        return false;
    };
    let Some(close) = from[open..].find('>') else {
        return false;
    };
    let real = from[open + 1..open + close].trim().to_lowercase();
    if real.is_empty() {
        return false;
    }
    from[..open]
        .split(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '"' | '\'' | '(' | ')' | '[' | ']' | ',' | ';' | '<' | '>'
                )
        })
        .map(|word| word.trim_matches(|c: char| matches!(c, '.' | ':')))
        .filter(|word| looks_like_address(word))
        .any(|word| word.to_lowercase() != real)
}

/// `local@domain.tld`, loosely: enough to tell an address from a name.
fn looks_like_address(word: &str) -> bool {
    match word.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Whether an attachment is an executable, by name or media type. Trailing
/// dots and spaces are ignored as Windows does (`evil.exe .`), so are media
/// type parameters.
fn is_dangerous(name: &str, media_type: &str) -> bool {
    let name = name
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_lowercase();
    let extension_bad = name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| DANGEROUS_EXTENSIONS.contains(&ext));
    let media = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    extension_bad || DANGEROUS_MEDIA_TYPES.contains(&media.as_str())
}

#[cfg(test)]
mod tests;
