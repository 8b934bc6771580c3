//! Sizes of what the model receives: bytes, and an estimate of tokens
//! that needs no tokenizer and gives the same answer everywhere.

/// The estimated tokens of a text: a quarter of its ASCII bytes (rounded
/// up) plus one per other character. English averages about four
/// characters a token in the common tokenizers; characters outside ASCII
/// (CJK, emoji, accented letters) are counted as a token each, which errs
/// towards more tokens for such text.
pub fn estimate_tokens(text: &str) -> u64 {
    let mut ascii = 0u64;
    let mut other = 0u64;
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// A budget in bytes and estimated tokens; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Bytes left.
    pub bytes: Option<u64>,
    /// Estimated tokens left.
    pub tokens: Option<u64>,
}

impl Budget {
    /// Whether a text of this size fits.
    pub fn fits(&self, bytes: u64, tokens: u64) -> bool {
        self.bytes.is_none_or(|b| bytes <= b) && self.tokens.is_none_or(|t| tokens <= t)
    }

    /// The longest prefix of `text` that fits, cut at a character
    /// boundary.
    pub fn prefix<'t>(&self, text: &'t str) -> &'t str {
        let (mut bytes, mut ascii, mut other) = (0u64, 0u64, 0u64);
        let mut end = 0;
        for (at, c) in text.char_indices() {
            let width = c.len_utf8() as u64;
            let (next_ascii, next_other) = if c.is_ascii() { (ascii + 1, other) } else { (ascii, other + 1) };
            if !self.fits(bytes + width, next_ascii.div_ceil(4) + next_other) {
                break;
            }
            bytes += width;
            (ascii, other) = (next_ascii, next_other);
            end = at + c.len_utf8();
        }
        &text[..end]
    }

    /// What is left after spending a text of this size (none below zero).
    pub fn spend(&mut self, bytes: u64, tokens: u64) {
        self.bytes = self.bytes.map(|b| b.saturating_sub(bytes));
        self.tokens = self.tokens.map(|t| t.saturating_sub(tokens));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_a_quarter_of_ascii_and_one_per_other_character() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("日本語"), 3);
        assert_eq!(estimate_tokens("ab日"), 2);
    }

    #[test]
    fn a_prefix_never_splits_a_character_and_respects_both_limits() {
        let budget = Budget { bytes: Some(4), tokens: None };
        assert_eq!(budget.prefix("ab日本"), "ab");
        let budget = Budget { bytes: None, tokens: Some(2) };
        assert_eq!(budget.prefix("abcdefghij"), "abcdefgh");
        assert_eq!(Budget::default().prefix("all of it"), "all of it");
    }
}
