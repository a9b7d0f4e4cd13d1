//! Case-insensitive word and phrase matching.
//!
//! Spam words are matched as whole words so that `sex` does not fire on
//! `Sussex` and `cialis` not on `specialist`. Texts are normalised once
//! (lower-cased, white-space runs collapsed to one space) so a phrase like
//! `free money` also matches across a line break or double space.

/// Lower-cases `text` and collapses every run of white space to a single
/// space, trimming both ends.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars().flat_map(char::to_lowercase) {
            out.push(c);
        }
    }
    out
}

/// Whether the normalised `haystack` contains the normalised `needle` as a
/// whole word or phrase: where the needle starts (ends) with a letter or
/// digit, the character before (after) it must not be one. A needle such
/// as `$$$` or `!!!` therefore matches anywhere.
pub fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let needs_start = needle.chars().next().is_some_and(char::is_alphanumeric);
    let needs_end = needle
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    // Every occurrence is tried: the first may sit inside a longer word
    // (`viagras viagra`). `match_indices` is linear in the haystack per
    // needle character, so this stays cheap.
    haystack.match_indices(needle).any(|(start, _)| {
        let end = start + needle.len();
        let before_ok = !needs_start
            || !haystack[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
        let after_ok = !needs_end
            || !haystack[end..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric);
        before_ok && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(haystack: &str, needle: &str) -> bool {
        contains_word(&normalize(haystack), &normalize(needle))
    }

    #[test]
    fn normalize_lowercases_and_collapses() {
        assert_eq!(normalize("  Free\n\tMONEY  now "), "free money now");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("ÄÖÜ"), "äöü");
    }

    #[test]
    fn whole_words_only() {
        assert!(has("Buy VIAGRA now", "viagra"));
        assert!(has("viagra", "viagra"));
        assert!(has("(viagra)", "viagra"));
        assert!(has("viagra!", "viagra"));
        assert!(!has("viagras", "viagra"));
        assert!(!has("aviagra", "viagra"));
        assert!(has("viagras and viagra", "viagra"));
        assert!(!has("specialist", "cialis"));
        assert!(!has("Sussex", "sex"));
    }

    #[test]
    fn phrases_span_white_space() {
        assert!(has("get FREE\n  money today", "free money"));
        assert!(!has("free moneys", "free money"));
        assert!(!has("carefree money", "free money"));
    }

    #[test]
    fn unicode_boundaries() {
        assert!(!has("grünviagra", "viagra"));
        assert!(has("größe", "größe"));
        assert!(!has("übergröße", "größe"));
    }

    #[test]
    fn punctuation_needles_match_anywhere() {
        assert!(has("cash$$$now", "$$$"));
        assert!(has("100% free!", "100% free"));
        assert!(!has("100% freedom", "100% free"));
    }

    #[test]
    fn empty_needle_never_matches() {
        assert!(!contains_word("anything", ""));
    }
}
