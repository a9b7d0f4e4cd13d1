//! Splits one config line into tokens.
//!
//! The config formats are line based, so the lexer works a line at a time
//! and every token keeps its 1-based column (in characters) for error
//! messages. Tokens are:
//!
//! - quoted strings, `"..."`, with the escapes `\"` and `\\` (anything else
//!   after a backslash is an error, so a typo is not silently swallowed);
//! - `=`, on its own, so `key=value` needs no spaces;
//! - words: any other run of characters up to white space, `"`, `=` or `#`.
//!
//! A `#` outside a quoted string starts a comment that runs to the end of
//! the line.

use std::fmt;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A bare word, e.g. `if`, `5.0`, `1M`, `X-Mailer`.
    Word(String),
    /// The contents of a quoted string, escapes resolved.
    Str(String),
    /// `=`.
    Equals,
}

/// One token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// 1-based character column of the token's first character.
    pub column: usize,
}

impl Token {
    /// The word, if this token is a bare word.
    pub fn word(&self) -> Option<&str> {
        match &self.kind {
            Kind::Word(word) => Some(word),
            _ => None,
        }
    }
}

impl fmt::Display for Token {
    /// Shows a token the way the user wrote it, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Word(word) => write!(f, "`{word}`"),
            Kind::Str(text) => write!(f, "{text:?}"),
            Kind::Equals => write!(f, "`=`"),
        }
    }
}

/// A lexing error at a column of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub column: usize,
    pub message: String,
}

/// Splits `line` into tokens, dropping any comment.
pub fn tokenize(line: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Vec::new();
    // Columns are counted in characters, as an editor shows them.
    let mut chars = line.chars().enumerate().peekable();
    while let Some(&(index, c)) = chars.peek() {
        let column = index + 1;
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            break;
        } else if c == '=' {
            chars.next();
            tokens.push(Token {
                kind: Kind::Equals,
                column,
            });
        } else if c == '"' {
            chars.next();
            let mut text = String::new();
            let mut closed = false;
            while let Some((index, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, escaped @ ('"' | '\\'))) => text.push(escaped),
                        Some((_, other)) => {
                            return Err(LexError {
                                column: index + 1,
                                message: format!(
                                    "unknown escape `\\{other}` (only `\\\"` and `\\\\` are allowed)"
                                ),
                            });
                        }
                        None => break,
                    },
                    other => text.push(other),
                }
            }
            if !closed {
                return Err(LexError {
                    column,
                    message: "unterminated string".to_string(),
                });
            }
            tokens.push(Token {
                kind: Kind::Str(text),
                column,
            });
        } else {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() || matches!(c, '"' | '=' | '#') {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token {
                kind: Kind::Word(word),
                column,
            });
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, column: usize) -> Token {
        Token {
            kind: Kind::Word(text.to_string()),
            column,
        }
    }

    fn string(text: &str, column: usize) -> Token {
        Token {
            kind: Kind::Str(text.to_string()),
            column,
        }
    }

    #[test]
    fn words_strings_and_equals() {
        let tokens = tokenize(r#"a=1  "b c" d"#).unwrap_or_default();
        assert_eq!(
            tokens,
            vec![
                word("a", 1),
                Token {
                    kind: Kind::Equals,
                    column: 2
                },
                word("1", 3),
                string("b c", 6),
                word("d", 12),
            ]
        );
    }

    #[test]
    fn comments_are_dropped_outside_strings_only() {
        assert_eq!(
            tokenize(r##"x "#y" # z"##),
            Ok(vec![word("x", 1), string("#y", 3)])
        );
        assert_eq!(tokenize("# all comment"), Ok(vec![]));
        assert_eq!(tokenize("   "), Ok(vec![]));
    }

    #[test]
    fn escapes() {
        assert_eq!(tokenize(r#""a\"b\\c""#), Ok(vec![string(r#"a"b\c"#, 1)]));
        let error = tokenize(r#"x "a\nb""#).unwrap_err();
        assert_eq!(error.column, 5);
        assert!(error.message.contains("escape"));
    }

    #[test]
    fn unterminated_strings() {
        assert_eq!(tokenize(r#"if "abc"#).unwrap_err().column, 4);
        // A backslash at the very end cannot close the string either.
        assert_eq!(tokenize(r#""abc\"#).unwrap_err().column, 1);
    }

    #[test]
    fn words_stop_at_quotes() {
        assert_eq!(
            tokenize(r#"ab"c""#),
            Ok(vec![word("ab", 1), string("c", 3)])
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(tokenize("\"é\" x"), Ok(vec![string("é", 1), word("x", 5)]));
    }

    #[test]
    fn display() {
        assert_eq!(word("if", 1).to_string(), "`if`");
        assert_eq!(string("a\"b", 1).to_string(), r#""a\"b""#);
    }
}
