//! Finding what the rules look for in a text: a keyword pass over the
//! whole text decides which rules run, then each running rule's regular
//! expression, then the rule's checksum on each match.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

use super::catalogue::{BUILTIN, Class, Finder, Validation};

/// The largest compiled form of one policy pattern, in bytes: a pattern
/// that needs more is refused when the policy compiles.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The shortest base64 run the `Base64Run` finder reports.
const BASE64_RUN: usize = 256;

/// A rule the policy writes itself (`output.patterns`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyPattern {
    /// Its id (findings and redaction markers name it).
    pub id: String,
    /// The regular expression.
    pub regex: String,
    /// Lower-case words one of which must occur for it to run; empty:
    /// it always runs.
    pub keywords: Vec<String>,
}

/// Which setting governs a rule of the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Governed {
    /// A built-in rule: its class's setting (or its own, by id).
    Builtin(Class),
    /// A policy pattern: its own action.
    Policy,
}

/// One compiled rule.
#[derive(Debug)]
pub struct ScanRule {
    /// The rule's id.
    pub id: Box<str>,
    /// What governs its action.
    pub governed: Governed,
    regex: Regex,
    validation: Validation,
    finder: Finder,
}

impl ScanRule {
    /// The expression as compiled.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// Every match's byte range, in order; `starts` are where the rule's
    /// keywords occur (for `AtKeyword`).
    fn find(&self, text: &str, starts: &[usize]) -> Vec<(usize, usize)> {
        match self.finder {
            Finder::AtKeyword => {
                let bytes = text.as_bytes();
                let mut found: Vec<(usize, usize)> = Vec::new();
                for &at in starts {
                    let word_start = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
                    let after_last = found.last().is_none_or(|&(_, end)| at >= end);
                    // Keywords are ASCII: `at` starts a character.
                    if word_start
                        && after_last
                        && text.is_char_boundary(at)
                        && let Some(m) = self.regex.find(&text[at..])
                    {
                        found.push((at + m.start(), at + m.end()));
                    }
                }
                found
            }
            Finder::Search => self.regex.find_iter(text).map(|m| (m.start(), m.end())).collect(),
            Finder::CountryCode => {
                let bytes = text.as_bytes();
                let mut found = Vec::new();
                let mut at = 0;
                while at + 4 <= bytes.len() {
                    let starts = bytes[at].is_ascii_uppercase()
                        && bytes[at + 1].is_ascii_uppercase()
                        && bytes[at + 2].is_ascii_digit()
                        && bytes[at + 3].is_ascii_digit()
                        && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric());
                    // An ASCII capital starts a character: slicing there is sound.
                    let found_here = if starts { self.regex.find(&text[at..]) } else { None };
                    match found_here {
                        Some(m) => {
                            found.push((at + m.start(), at + m.end()));
                            at += m.end().max(1);
                        }
                        None => at += 1,
                    }
                }
                found
            }
            Finder::Base64Run => base64_runs(text.as_bytes()),
        }
    }
}

/// Runs of at least [`BASE64_RUN`] base64 characters, with up to two `=`
/// after them. A run that long covers any position `BASE64_RUN - 1` after
/// its start, so the scan probes one byte per window and only walks the
/// runs it lands in.
fn base64_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    const BASE64: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
            b += 1;
        }
        table
    };
    let base64 = |b: u8| BASE64[b as usize];
    let mut found = Vec::new();
    // Invariant: `at` is 0 or follows a byte that is not base64.
    let mut at = 0;
    while at + BASE64_RUN <= bytes.len() {
        let probe = at + BASE64_RUN - 1;
        if !base64(bytes[probe]) {
            at = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > at && base64(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < bytes.len() && base64(bytes[end]) {
            end += 1;
        }
        let mut padded = end;
        while padded < bytes.len() && padded - end < 2 && bytes[padded] == b'=' {
            padded += 1;
        }
        if end - start >= BASE64_RUN {
            found.push((start, padded));
        }
        at = padded.max(end + 1);
    }
    found
}

/// Why a policy pattern cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternError {
    /// The pattern's id.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

/// One match: the rule (its index in the scanner) and the byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The index of the rule in [`Scanner::rules`].
    pub rule: usize,
    /// Where the match starts, in bytes.
    pub start: usize,
    /// Where it ends, in bytes.
    pub end: usize,
}

/// Every built-in rule plus a policy's own patterns, compiled.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<ScanRule>,
    keywords: AhoCorasick,
    /// For each keyword, the rules it wakes.
    woken: Vec<Vec<usize>>,
    /// Rules without keywords.
    always: Vec<usize>,
}

impl Scanner {
    /// Compiles the built-in rules and `patterns`.
    pub fn new(patterns: &[PolicyPattern]) -> Result<Scanner, PatternError> {
        let mut rules = Vec::new();
        let mut keyword_list: Vec<(String, usize)> = Vec::new();
        let mut always = Vec::new();
        for rule in BUILTIN {
            let pattern = match rule.finder {
                // Tried at candidate starts: anchored there.
                Finder::CountryCode | Finder::AtKeyword => format!("^(?:{})", rule.pattern),
                Finder::Search | Finder::Base64Run => rule.pattern.to_owned(),
            };
            let regex = compile(&pattern).map_err(|message| PatternError { id: rule.id.into(), message })?;
            let index = rules.len();
            rules.push(ScanRule {
                id: rule.id.into(),
                governed: Governed::Builtin(rule.class),
                regex,
                validation: rule.validation,
                finder: rule.finder,
            });
            if rule.keywords.is_empty() {
                always.push(index);
            }
            keyword_list.extend(rule.keywords.iter().map(|k| ((*k).to_owned(), index)));
        }
        for pattern in patterns {
            let regex = compile(&pattern.regex)
                .map_err(|message| PatternError { id: pattern.id.clone(), message })?;
            let index = rules.len();
            rules.push(ScanRule {
                id: pattern.id.as_str().into(),
                governed: Governed::Policy,
                regex,
                validation: Validation::None,
                finder: Finder::Search,
            });
            if pattern.keywords.is_empty() {
                always.push(index);
            }
            keyword_list.extend(pattern.keywords.iter().map(|k| (k.to_lowercase(), index)));
        }
        let mut words: Vec<String> = keyword_list.iter().map(|(k, _)| k.clone()).collect();
        words.sort();
        words.dedup();
        let woken = words
            .iter()
            .map(|word| keyword_list.iter().filter(|(k, _)| k == word).map(|(_, i)| *i).collect())
            .collect();
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| PatternError { id: String::from("keywords"), message: e.to_string() })?;
        Ok(Scanner { rules, keywords, woken, always })
    }

    /// The compiled rules, in order: the built-in ones, then the policy's.
    pub fn rules(&self) -> &[ScanRule] {
        &self.rules
    }

    /// Every match in `text` of the rules `active` says run (indexed as
    /// [`Scanner::rules`]), ordered by where they start.
    pub fn scan(&self, text: &str, active: &[bool]) -> Vec<Hit> {
        let mut run = vec![false; self.rules.len()];
        for &index in &self.always {
            run[index] = true;
        }
        // Where the keywords of rules that start at one occur.
        let mut starts: Vec<Vec<usize>> = vec![Vec::new(); self.rules.len()];
        // Overlapping keyword matches: every keyword present is found.
        for found in self.keywords.find_overlapping_iter(text) {
            if let Some(rules) = self.woken.get(found.pattern().as_usize()) {
                for &index in rules {
                    run[index] = true;
                    if self.rules[index].finder == Finder::AtKeyword {
                        starts[index].push(found.start());
                    }
                }
            }
        }
        let mut hits = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !run[index] || !active.get(index).copied().unwrap_or(false) {
                continue;
            }
            for (start, end) in rule.find(text, &starts[index]) {
                let found = &text[start..end];
                let valid = match rule.validation {
                    Validation::None => true,
                    Validation::Luhn => super::check::luhn(found),
                    Validation::Iban => super::check::iban(found),
                };
                if valid {
                    hits.push(Hit { rule: index, start, end });
                }
            }
        }
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        hits
    }
}

/// Whether a policy pattern compiles as the scanner compiles it; why not.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    compile(pattern).map(|_| ())
}

/// Compiles a rule's expression with ASCII word boundaries (a Unicode `\b`
/// costs the fast engines) and a size limit.
fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&pattern.replace(r"\b", r"(?-u:\b)"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::catalogue::BUILTIN;

    fn all(scanner: &Scanner) -> Vec<bool> {
        vec![true; scanner.rules().len()]
    }

    #[test]
    fn every_builtin_rule_finds_its_examples_and_none_of_its_near_misses() {
        let scanner = Scanner::new(&[]).expect("built-in rules compile");
        let active = all(&scanner);
        for (index, rule) in BUILTIN.iter().enumerate() {
            for example in rule.examples {
                let hits = scanner.scan(example, &active);
                assert!(hits.iter().any(|h| h.rule == index), "{} misses {example:?}", rule.id);
            }
            for near in rule.near_misses {
                let hits = scanner.scan(near, &active);
                assert!(!hits.iter().any(|h| h.rule == index), "{} finds near-miss {near:?}", rule.id);
            }
        }
    }

    #[test]
    fn candidates_next_to_multibyte_characters_are_sliced_soundly() {
        let scanner = Scanner::new(&[]).expect("compiles");
        let active = all(&scanner);
        let text = "é€DE89 3704 0044 0532 0130 00日本GB82WEST12345698765432 ü";
        let ids: Vec<&str> =
            scanner.scan(text, &active).iter().map(|h| &*scanner.rules()[h.rule].id).collect();
        assert_eq!(ids.iter().filter(|id| **id == "iban").count(), 2, "{ids:?}");
    }

    #[test]
    fn base64_runs_are_found_wherever_they_start_and_end() {
        for (before, len, after) in
            [(0, 256, 0), (1, 256, 1), (255, 300, 0), (257, 256, 3), (10, 255, 10), (0, 600, 0)]
        {
            let text = format!("{}{}{}", " ".repeat(before), "A".repeat(len), ".".repeat(after));
            let runs = base64_runs(text.as_bytes());
            let expected = if len >= BASE64_RUN { vec![(before, before + len)] } else { vec![] };
            assert_eq!(runs, expected, "{before} {len} {after}");
        }
        assert_eq!(base64_runs(format!("{}==x", "A".repeat(256)).as_bytes()), [(0, 258)]);
        let two = format!("{} {}", "A".repeat(300), "B".repeat(256));
        assert_eq!(base64_runs(two.as_bytes()), [(0, 300), (301, 557)]);
    }

    #[test]
    fn a_long_encoded_run_is_found_and_a_short_one_is_not() {
        let scanner = Scanner::new(&[]).expect("compiles");
        let active = all(&scanner);
        let blob = "QUJD".repeat(70);
        let id =
            |hits: Vec<Hit>| hits.iter().map(|h| &*scanner.rules()[h.rule].id).collect::<Vec<_>>().join(",");
        assert_eq!(id(scanner.scan(&format!("data: {blob}"), &active)), "encoded-blob");
        assert_eq!(id(scanner.scan(&"QUJD".repeat(60), &active)), "");
    }

    #[test]
    fn inactive_rules_do_not_run_and_policy_patterns_do() {
        let pattern = PolicyPattern {
            id: String::from("ticket"),
            regex: String::from(r"\bTICKET-[0-9]{4}\b"),
            keywords: vec![String::from("ticket-")],
        };
        let scanner = Scanner::new(&[pattern]).expect("compiles");
        let mut active = vec![false; scanner.rules().len()];
        *active.last_mut().expect("one pattern") = true;
        let hits = scanner.scan("see TICKET-1234 and AKIAZ7EXAMPLEKEY4Q2M", &active);
        assert_eq!(hits.len(), 1);
        assert_eq!(&*scanner.rules()[hits[0].rule].id, "ticket");
        let bad =
            PolicyPattern { id: String::from("bad"), regex: String::from("(unclosed"), keywords: vec![] };
        assert_eq!(Scanner::new(&[bad]).expect_err("refused").id, "bad");
    }

    proptest::proptest! {
        #[test]
        fn scanning_and_applying_never_panic(text in "(?s).{0,400}", extra in "[A-Z0-9 +@=/-]{0,300}") {
            static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
            let scanner = SCANNER.get_or_init(|| Scanner::new(&[]).expect("compiles"));
            let active = all(scanner);
            let text = format!("{text}{extra}");
            let _ = scanner.scan(&text, &active);
            let rules = crate::output::OutputRules {
                max_bytes: Some(64),
                classes: [(Class::Secret, crate::output::Action::Redact), (Class::Injection, crate::output::Action::Flag)].into(),
                ..crate::output::OutputRules::default()
            };
            let result = serde_json::json!({"content": [{"type": "text", "text": text}], "structuredContent": {"t": text}});
            let _ = crate::output::apply(&result, scanner, &rules, None);
        }
    }
}
