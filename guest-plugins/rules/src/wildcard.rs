//! Sieve `:matches` wildcards: `*` matches any run of characters (also
//! none), `?` exactly one character, and a backslash makes the next
//! character literal (`\*`, `\?`, `\\`).
//!
//! Matching is iterative with a single backtrack point (the last `*`), the
//! classic glob algorithm: it runs in O(text × pattern) time and constant
//! extra space whatever the pattern, unlike the naive recursive matcher,
//! which is exponential on patterns like `*a*a*a*a*b` and can overflow the
//! stack. Case-folding is the caller's job: patterns and values are both
//! lower-cased before they get here.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// This exact character.
    Literal(char),
    /// `?`: any one character.
    One,
    /// `*`: any run of characters.
    Star,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Compiles `pattern`; never fails (a trailing lone backslash stands for
    /// itself), and runs of `*` collapse into one since they mean the same.
    pub fn new(pattern: &str) -> Pattern {
        let mut pieces = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '*' => Piece::Star,
                '?' => Piece::One,
                '\\' => Piece::Literal(chars.next().unwrap_or('\\')),
                other => Piece::Literal(other),
            };
            if piece == Piece::Star && pieces.last() == Some(&Piece::Star) {
                continue;
            }
            pieces.push(piece);
        }
        Pattern { pieces }
    }

    /// Whether the whole of `text` matches the pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pieces = &self.pieces;
        let (mut p, mut t) = (0, 0);
        // Where the last `*` was and the text position it is currently
        // assumed to extend to; on a mismatch it swallows one more character.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match pieces.get(p) {
                Some(Piece::Star) => {
                    backtrack = Some((p, t));
                    p += 1;
                }
                Some(Piece::One) => {
                    p += 1;
                    t += 1;
                }
                Some(Piece::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((star, from)) => {
                        p = star + 1;
                        t = from + 1;
                        backtrack = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        pieces[p.min(pieces.len())..]
            .iter()
            .all(|piece| *piece == Piece::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern).matches(text)
    }

    #[test]
    fn literals() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn question_mark() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("???", "é√x"));
        assert!(!m("?", ""));
    }

    #[test]
    fn star() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("a*", "a"));
        assert!(m("*@example.com", "boss@example.com"));
        assert!(!m("*@example.com", "boss@example.com.evil"));
        assert!(m("*invoice*", "your invoice #42"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a*b", "abab"));
        assert!(m("*a*", "bab"));
        assert!(m("**a**", "a"));
    }

    #[test]
    fn mixed() {
        assert!(m("?*", "x"));
        assert!(!m("?*", ""));
        assert!(m("*?", "x"));
        assert!(m("a?*?z", "abcz"));
        assert!(!m("a?*?z", "abz"));
        assert!(m("[list-?] *", "[list-a] hello"));
    }

    #[test]
    fn escapes() {
        assert!(m(r"\*", "*"));
        assert!(!m(r"\*", "x"));
        assert!(m(r"what\?", "what?"));
        assert!(!m(r"what\?", "whatx"));
        assert!(m(r"a\\b", r"a\b"));
        // A trailing backslash is literal.
        assert!(m("a\\", "a\\"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        // Exponential for a recursive matcher; quadratic at worst here.
        let pattern = "*a".repeat(100) + "b";
        let text = "a".repeat(10_000);
        assert!(!m(&pattern, &text));
        assert!(m(&pattern, &(text + "b")));
    }
}
