//! Finding what the rules look for in a text: a keyword pass over the
//! whole text decides which rules run, then each running rule's regular
//! expression, then the rule's checksum on each match.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

use super::catalogue::{BUILTIN, Class, Validation};

/// The largest compiled form of one policy pattern, in bytes: a pattern
/// that needs more is refused when the policy compiles.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

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
}

impl ScanRule {
    /// The expression as compiled.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }
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
            let regex =
                compile(rule.pattern).map_err(|message| PatternError { id: rule.id.into(), message })?;
            let index = rules.len();
            rules.push(ScanRule {
                id: rule.id.into(),
                governed: Governed::Builtin(rule.class),
                regex,
                validation: rule.validation,
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
        // Overlapping keyword matches: every keyword present is found.
        for found in self.keywords.find_overlapping_iter(text) {
            if let Some(rules) = self.woken.get(found.pattern().as_usize()) {
                for &index in rules {
                    run[index] = true;
                }
            }
        }
        let mut hits = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !run[index] || !active.get(index).copied().unwrap_or(false) {
                continue;
            }
            for found in rule.regex.find_iter(text) {
                let valid = match rule.validation {
                    Validation::None => true,
                    Validation::Luhn => super::check::luhn(found.as_str()),
                    Validation::Iban => super::check::iban(found.as_str()),
                };
                if valid {
                    hits.push(Hit { rule: index, start: found.start(), end: found.end() });
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
}
