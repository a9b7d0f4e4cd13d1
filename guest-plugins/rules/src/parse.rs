//! Parses the rules config.
//!
//! One rule per line; blank lines and `#` comments are ignored. Rules are
//! tried in order and the FIRST rule whose condition holds decides: a
//! filter's verdict is a single action, so there is no "keep going" and no
//! combining of actions. A mail no rule matches is accepted.
//!
//! ```text
//! # comment
//! if header "subject" contains "invoice" then fileinto "Finance"
//! if from is "boss@example.com" then addflag "\\Flagged"
//! if to contains "@lists.example.org" and not header "list-id" exists then fileinto "Lists"
//! if size over 1M then addflag "big"
//! if subject matches "[ticket-?*]*" or from matches "*@support.example.com" then addflag "\\Seen" "support"
//! if any then keep
//! ```
//!
//! Grammar (keywords are case-insensitive):
//!
//! ```text
//! rule       = "if" condition "then" action
//! condition  = group *("or" group)        ; `and` binds tighter than `or`
//! group      = test *("and" test)
//! test       = *"not" simple
//! simple     = "any" | "attachment"
//!            | "header" STRING ("exists" | compare)
//!            | ("from" | "to" | "cc" | "subject") compare
//!            | "size" ("over" | "under") SIZE
//! compare    = ("contains" | "is" | "matches") STRING
//! SIZE       = digits ["K" | "M" | "G"]     ; powers of 1024, e.g. 1M
//! action     = "keep"                       ; accept
//!            | "fileinto" STRING
//!            | "addflag" STRING *STRING     ; one or more flags
//!            | "reject" STRING
//! ```
//!
//! `a or b and c` therefore means `a or (b and c)`; there are no
//! parentheses. Strings are double-quoted with `\"` and `\\` escapes, so a
//! system flag is written `"\\Seen"`. All comparisons ignore case;
//! `matches` takes Sieve wildcards (`*`, `?`, and `\\*` for a literal star).
//! `addflag` maps `\Seen`, `\Answered`, `\Flagged`, `\Draft` and `\Deleted`
//! to system flags and anything else to a keyword. `size over N` and
//! `size under N` are strict, as in Sieve. See [`crate::matcher`] for what
//! each field looks at.
//!
//! Errors name the line and column, e.g. `line 3, column 24: expected
//! "then", found "fileinto"`.

use std::fmt;

use crate::ast::*;
use crate::dem::mail::types::MailFlags;
use crate::lex::{Kind, Token, tokenize};
use crate::wildcard::Pattern;

/// A config error at a line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Parses a whole config into rules, in order.
pub fn parse_config(text: &str) -> Result<Vec<Rule>, ParseError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: format!(
                "config is {} bytes, more than the limit of {MAX_CONFIG_BYTES}",
                text.len()
            ),
        });
    }
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let tokens = tokenize(line).map_err(|error| ParseError {
            line: number,
            column: error.column,
            message: error.message,
        })?;
        if tokens.is_empty() {
            continue;
        }
        if rules.len() == MAX_RULES {
            return Err(ParseError {
                line: number,
                column: 1,
                message: format!("more than {MAX_RULES} rules"),
            });
        }
        let mut parser = Parser {
            tokens: &tokens,
            position: 0,
            end_column: line.chars().count() + 1,
        };
        let rule = parser
            .rule(number)
            .map_err(|(column, message)| ParseError {
                line: number,
                column,
                message,
            })?;
        rules.push(rule);
    }
    Ok(rules)
}

/// An error within a line: column and message.
type LineError = (usize, String);

/// Parses the tokens of one line.
struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    /// Column just past the line, where "expected ..." errors point at the
    /// end of input.
    end_column: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.position);
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    /// The error for finding something other than `expected` here.
    fn unexpected(&self, expected: &str) -> LineError {
        match self.peek() {
            Some(token) => (token.column, format!("expected {expected}, found {token}")),
            None => (
                self.end_column,
                format!("expected {expected}, found the end of the line"),
            ),
        }
    }

    /// Whether the next token is the keyword `keyword`; consumes it if so.
    fn eat(&mut self, keyword: &str) -> bool {
        let found = self
            .peek()
            .and_then(Token::word)
            .is_some_and(|word| word.eq_ignore_ascii_case(keyword));
        if found {
            self.position += 1;
        }
        found
    }

    fn expect(&mut self, keyword: &str) -> Result<(), LineError> {
        if self.eat(keyword) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{keyword}`")))
        }
    }

    /// The next token if it is one of `keywords`, lower-cased, with its
    /// column.
    fn keyword(&mut self, keywords: &[&str], expected: &str) -> Result<(String, usize), LineError> {
        let found = self.peek().and_then(|token| {
            let word = token.word()?.to_ascii_lowercase();
            keywords
                .contains(&word.as_str())
                .then_some((word, token.column))
        });
        match found {
            Some(found) => {
                self.position += 1;
                Ok(found)
            }
            None => Err(self.unexpected(expected)),
        }
    }

    /// A quoted string of at most `max` bytes, with its column.
    fn string(&mut self, what: &str, max: usize) -> Result<(String, usize), LineError> {
        let (text, column) = match self.peek() {
            Some(Token {
                kind: Kind::Str(text),
                column,
            }) => (text.clone(), *column),
            _ => return Err(self.unexpected(&format!("a quoted {what}"))),
        };
        self.position += 1;
        if text.len() > max {
            return Err((column, format!("{what} is longer than {max} bytes")));
        }
        Ok((text, column))
    }

    fn rule(&mut self, line: usize) -> Result<Rule, LineError> {
        self.expect("if")?;
        let any_of = self.condition()?;
        let action = self.action()?;
        if let Some(token) = self.peek() {
            return Err((token.column, format!("unexpected {token} after the action")));
        }
        Ok(Rule {
            line,
            any_of,
            action,
        })
    }

    /// Tests joined by `and`/`or`, up to and including `then`.
    fn condition(&mut self) -> Result<Vec<Vec<Condition>>, LineError> {
        let mut any_of = Vec::new();
        let mut group = Vec::new();
        let mut count = 0;
        loop {
            count += 1;
            if count > MAX_TESTS_PER_RULE {
                let column = self.peek().map_or(self.end_column, |t| t.column);
                return Err((
                    column,
                    format!("more than {MAX_TESTS_PER_RULE} tests in one rule"),
                ));
            }
            group.push(self.negatable()?);
            let (joiner, _) = self.keyword(&["and", "or", "then"], "`and`, `or` or `then`")?;
            match joiner.as_str() {
                "and" => {}
                "or" => any_of.push(std::mem::take(&mut group)),
                _ => {
                    any_of.push(group);
                    return Ok(any_of);
                }
            }
        }
    }

    /// A test after any number of `not`s, counted rather than recursed.
    fn negatable(&mut self) -> Result<Condition, LineError> {
        let mut negated = false;
        while self.eat("not") {
            negated = !negated;
        }
        Ok(Condition {
            negated,
            test: self.test()?,
        })
    }

    fn test(&mut self) -> Result<Test, LineError> {
        let (name, _) = self.keyword(
            &[
                "any",
                "attachment",
                "header",
                "from",
                "to",
                "cc",
                "subject",
                "size",
            ],
            "a test (any, attachment, header, from, to, cc, subject or size)",
        )?;
        let field = match name.as_str() {
            "any" => return Ok(Test::Any),
            "attachment" => return Ok(Test::Attachment),
            "size" => return self.size(),
            "from" => Field::From,
            "to" => Field::To,
            "cc" => Field::Cc,
            "subject" => Field::Subject,
            _ => {
                let (header, column) = self.string("header name", MAX_HEADER_NAME_BYTES)?;
                let header = header.trim().to_ascii_lowercase();
                if header.is_empty() || header.chars().any(|c| c.is_control() || c == ':') {
                    return Err((column, "invalid header name".to_string()));
                }
                if self.eat("exists") {
                    return Ok(Test::Exists(header));
                }
                Field::Header(header)
            }
        };
        let expected = if matches!(field, Field::Header(_)) {
            "`contains`, `is`, `matches` or `exists`"
        } else {
            "`contains`, `is` or `matches`"
        };
        let (operator, _) = self.keyword(&["contains", "is", "matches"], expected)?;
        let (operand, _) = self.string("string", MAX_PATTERN_BYTES)?;
        let operand = operand.to_lowercase();
        let comparison = match operator.as_str() {
            "contains" => Comparison::Contains(operand),
            "is" => Comparison::Is(operand),
            _ => Comparison::Matches(Pattern::new(&operand)),
        };
        Ok(Test::Compare { field, comparison })
    }

    /// `over|under SIZE` after `size`.
    fn size(&mut self) -> Result<Test, LineError> {
        let (direction, _) = self.keyword(&["over", "under"], "`over` or `under`")?;
        let Some(token) = self.next() else {
            return Err(self.unexpected("a size such as 500K or 1M"));
        };
        let column = token.column;
        let Some(text) = token.word() else {
            return Err((
                column,
                format!("expected a size such as 500K or 1M, found {token}"),
            ));
        };
        let bytes = parse_size(text).ok_or_else(|| {
            (
                column,
                format!("`{text}` is not a size (digits, then optionally K, M or G)"),
            )
        })?;
        Ok(match direction.as_str() {
            "over" => Test::SizeOver(bytes),
            _ => Test::SizeUnder(bytes),
        })
    }

    fn action(&mut self) -> Result<Action, LineError> {
        let (name, column) = self.keyword(
            &["keep", "fileinto", "addflag", "reject"],
            "an action (keep, fileinto, addflag or reject)",
        )?;
        match name.as_str() {
            "keep" => Ok(Action::Keep),
            "fileinto" => {
                let (folder, column) = self.string("folder name", MAX_FOLDER_BYTES)?;
                if folder.is_empty() || folder.chars().any(char::is_control) {
                    return Err((column, "invalid folder name".to_string()));
                }
                Ok(Action::FileInto(folder))
            }
            "reject" => {
                let (reason, column) = self.string("reason", MAX_REASON_BYTES)?;
                if reason.trim().is_empty() {
                    return Err((column, "the reject reason must not be empty".to_string()));
                }
                Ok(Action::Reject(reason))
            }
            _ => self.add_flags(column),
        }
    }

    /// One or more flags after `addflag` (at `column`).
    fn add_flags(&mut self, column: usize) -> Result<Action, LineError> {
        let mut flags = MailFlags::empty();
        let mut keywords: Vec<String> = Vec::new();
        let mut count = 0;
        loop {
            let (flag, flag_column) = self.string("flag", MAX_KEYWORD_BYTES)?;
            count += 1;
            if count > MAX_FLAGS_PER_ACTION {
                return Err((
                    column,
                    format!("more than {MAX_FLAGS_PER_ACTION} flags in one addflag"),
                ));
            }
            if let Some(system) = flag.strip_prefix('\\') {
                flags |= system_flag(system).ok_or_else(|| {
                    (
                        flag_column,
                        format!(
                            "unknown system flag {flag:?} (expected \\Seen, \\Answered, \\Flagged, \\Draft or \\Deleted)"
                        ),
                    )
                })?;
            } else if is_keyword(&flag) {
                if !keywords.contains(&flag) {
                    keywords.push(flag);
                }
            } else {
                return Err((
                    flag_column,
                    format!(
                        "{flag:?} is not a valid keyword (no spaces, control characters or ( ) {{ % * \" \\ ])"
                    ),
                ));
            }
            if !matches!(
                self.peek(),
                Some(Token {
                    kind: Kind::Str(_),
                    ..
                })
            ) {
                return Ok(Action::AddFlags { flags, keywords });
            }
        }
    }
}

/// The system flag called `\name` (case-insensitive).
fn system_flag(name: &str) -> Option<MailFlags> {
    match name.to_ascii_lowercase().as_str() {
        "seen" => Some(MailFlags::SEEN),
        "answered" => Some(MailFlags::ANSWERED),
        "flagged" => Some(MailFlags::FLAGGED),
        "draft" => Some(MailFlags::DRAFT),
        "deleted" => Some(MailFlags::DELETED),
        _ => None,
    }
}

/// Whether `text` is a usable IMAP keyword: a non-empty atom, since the
/// keywords end up as IMAP flags.
fn is_keyword(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
        })
}

/// `123`, `500K`, `1M`, `2G` (binary multiples, case-insensitive) in bytes;
/// `None` if malformed or too large for a u64.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests;
