//! The parsed form of a rules config, and the limits that bound it.
//!
//! A rule's condition is kept as a disjunction of conjunctions
//! (`a and b or c` is `[[a, b], [c]]`) because `and` binds tighter than
//! `or`; that flat shape needs no recursion to build or to evaluate, so no
//! config can blow the stack. `not` is folded into a flag on each test for
//! the same reason.

use crate::dem::mail::types::MailFlags;
use crate::wildcard::Pattern;

/// Largest config accepted, in bytes; bounds parsing work per mail.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Most rules in one config.
pub const MAX_RULES: usize = 256;
/// Most tests (joined by `and`/`or`) in one rule.
pub const MAX_TESTS_PER_RULE: usize = 32;
/// Longest string a test compares with, in bytes; bounds the
/// O(value × pattern) cost of `matches`.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Longest header name in a `header` test, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 128;
/// Longest folder name in `fileinto`, in bytes.
pub const MAX_FOLDER_BYTES: usize = 255;
/// Longest keyword in `addflag`, in bytes.
pub const MAX_KEYWORD_BYTES: usize = 64;
/// Most flags and keywords in one `addflag`.
pub const MAX_FLAGS_PER_ACTION: usize = 16;
/// Longest `reject` reason, in bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// A part of the mail a comparison looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    From,
    To,
    Cc,
    Subject,
    /// A header by name, lower-cased (names compare case-insensitively).
    Header(String),
}

/// How a field's value is compared; the operand is lower-cased at parse
/// time because every comparison is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// The value contains the text.
    Contains(String),
    /// The value equals the text.
    Is(String),
    /// The value matches a Sieve wildcard pattern (`*`, `?`).
    Matches(Pattern),
}

/// One test on a mail.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Always true.
    Any,
    /// The mail has at least one attachment.
    Attachment,
    /// A header with this (lower-cased) name is present.
    Exists(String),
    /// Some value of `field` satisfies `comparison`.
    Compare {
        field: Field,
        comparison: Comparison,
    },
    /// Mail size strictly over this many bytes.
    SizeOver(u64),
    /// Mail size strictly under this many bytes.
    SizeUnder(u64),
}

/// A test, possibly negated.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub negated: bool,
    pub test: Test,
}

/// What a matching rule does; each maps to exactly one verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `keep`: accept the mail as it is.
    Keep,
    /// `fileinto "F"`.
    FileInto(String),
    /// `addflag ...`: system flags and keywords to set.
    AddFlags {
        flags: MailFlags,
        keywords: Vec<String>,
    },
    /// `reject "reason"`.
    Reject(String),
}

/// One `if ... then ...` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// 1-based line number in the config, for logs.
    pub line: usize,
    /// The rule matches if every condition of any one group holds.
    pub any_of: Vec<Vec<Condition>>,
    pub action: Action,
}
