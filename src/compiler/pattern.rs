//! Tool patterns: exact names (`github/create_issue`) or globs (`github/delete_*`).
//!
//! In a glob, `*` matches any run of characters except `/`, so `github/*`
//! is every tool of the `github` server but no tool of another. `?`, `[abc]`
//! and `{a,b}` work as in shell globs; `**` crosses `/`.

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::compiler::catalog::{Hint, Hints};

/// The annotation terms of a `where` selector: each hint with whether the
/// tool must have it (`true`) or lack it.
pub type HintTerms = Box<[(Hint, bool)]>;

/// Whether annotations satisfy every term.
pub fn satisfied(terms: &[(Hint, bool)], hints: Hints) -> bool {
    terms.iter().all(|&(hint, wanted)| hints.has(hint) == wanted)
}

/// A compiled tool name or glob.
#[derive(Clone, Debug)]
pub enum ToolPattern {
    /// A plain tool name.
    Exact(Box<str>),
    /// A glob.
    Glob {
        /// The glob as written.
        text: Box<str>,
        /// Its compiled form.
        matcher: GlobMatcher,
    },
    /// Catalog tools chosen by their annotations
    /// (`github/* where readOnlyHint`), resolved when the policy compiled.
    Selected {
        /// The selector as written.
        text: Box<str>,
        /// The tools it selects, sorted.
        tools: Box<[Box<str>]>,
    },
    /// Tools of a server no catalog describes, chosen by the annotations
    /// each call carries (`fs/* where readOnlyHint`): the server's own
    /// claims, read per call.
    Annotated {
        /// The selector as written.
        text: Box<str>,
        /// The glob before `where`, compiled.
        matcher: GlobMatcher,
        /// The annotations a tool must have or lack.
        terms: HintTerms,
    },
}

/// Why a pattern does not compile.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternError(pub String);

impl ToolPattern {
    /// Compiles a pattern; text without glob characters is an exact name.
    pub fn new(text: &str) -> Result<ToolPattern, PatternError> {
        if text.trim().is_empty() {
            return Err(PatternError(String::from("tool name is empty")));
        }
        if !text.contains(['*', '?', '[', ']', '{', '}']) {
            return Ok(ToolPattern::Exact(text.into()));
        }
        GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map(|glob: Glob| ToolPattern::Glob { text: text.into(), matcher: glob.compile_matcher() })
            .map_err(|e| PatternError(e.kind().to_string()))
    }

    /// A selector's pattern: exactly the given tools.
    pub fn selected(text: &str, mut tools: Vec<Box<str>>) -> ToolPattern {
        tools.sort_unstable();
        tools.dedup();
        ToolPattern::Selected { text: text.into(), tools: tools.into() }
    }

    /// A selector read per call: the glob and its annotation terms.
    pub fn annotated(text: &str, glob: &str, terms: Vec<(Hint, bool)>) -> Result<ToolPattern, PatternError> {
        let matcher = match ToolPattern::new(glob)? {
            ToolPattern::Glob { matcher, .. } => matcher,
            _ => GlobBuilder::new(&globset::escape(glob))
                .build()
                .map_err(|e| PatternError(e.kind().to_string()))?
                .compile_matcher(),
        };
        Ok(ToolPattern::Annotated { text: text.into(), matcher, terms: terms.into() })
    }

    /// The pattern as written.
    pub fn text(&self) -> &str {
        match self {
            ToolPattern::Exact(name) => name,
            ToolPattern::Glob { text, .. }
            | ToolPattern::Selected { text, .. }
            | ToolPattern::Annotated { text, .. } => text,
        }
    }

    /// Whether this is a glob rather than a known set of names.
    pub fn is_glob(&self) -> bool {
        matches!(self, ToolPattern::Glob { .. } | ToolPattern::Annotated { .. })
    }

    /// The names this pattern matches when it is not a glob.
    pub fn names(&self) -> &[Box<str>] {
        match self {
            ToolPattern::Exact(name) => std::slice::from_ref(name),
            ToolPattern::Glob { .. } | ToolPattern::Annotated { .. } => &[],
            ToolPattern::Selected { tools, .. } => tools,
        }
    }

    /// Whether a tool name matches whatever its annotations: an
    /// annotated selector matches no name by the name alone.
    pub fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Exact(name) => **name == *tool,
            ToolPattern::Glob { matcher, .. } => matcher.is_match(tool),
            ToolPattern::Selected { tools, .. } => tools.binary_search_by(|t| (**t).cmp(tool)).is_ok(),
            ToolPattern::Annotated { .. } => false,
        }
    }

    /// Whether a tool name matches for some annotations: an annotated
    /// selector's glob matches it.
    pub fn may_match(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Annotated { matcher, .. } => matcher.is_match(tool),
            other => other.matches(tool),
        }
    }

    /// Whether a tool with these annotations matches.
    pub fn matches_annotated(&self, tool: &str, hints: Hints) -> bool {
        match self {
            ToolPattern::Annotated { matcher, terms, .. } => {
                matcher.is_match(tool) && satisfied(terms, hints)
            }
            other => other.matches(tool),
        }
    }

    /// Whether every tool `other` matches is matched by `self` too.
    ///
    /// Exact where `other` is an exact name or a selector. Between globs it answers yes
    /// only when it can prove it: the same glob, or `self` is `<prefix>*`
    /// and `other` is `<prefix>` followed by wildcards that stay within one
    /// name segment (no `/`, `**` or character class, which may match `/`).
    /// Warnings built on it are therefore never false alarms.
    pub fn covers(&self, other: &ToolPattern) -> bool {
        match (self, other) {
            (ToolPattern::Annotated { text: a, .. }, ToolPattern::Annotated { text: b, .. }) => a == b,
            (ToolPattern::Annotated { .. }, _) => false,
            (_, ToolPattern::Annotated { text, .. }) => {
                let glob = text.split_once(" where ").map_or(&**text, |(glob, _)| glob.trim());
                ToolPattern::new(glob).is_ok_and(|glob| self.covers(&glob))
            }
            (_, ToolPattern::Exact(_) | ToolPattern::Selected { .. }) => {
                // A selector that selects nothing is covered by nothing:
                // warnings about it would be vacuous.
                !other.names().is_empty() && other.names().iter().all(|name| self.matches(name))
            }
            (ToolPattern::Exact(_) | ToolPattern::Selected { .. }, ToolPattern::Glob { .. }) => false,
            (ToolPattern::Glob { text: a, .. }, ToolPattern::Glob { text: b, .. }) => {
                if a == b {
                    return true;
                }
                let Some(prefix) = a.strip_suffix('*') else { return false };
                if prefix.contains(['*', '?', '[', ']', '{', '}', '\\']) {
                    return false;
                }
                b.strip_prefix(prefix).is_some_and(|rest| {
                    !rest.contains(['/', '[', ']', '{', '}', '\\']) && !rest.contains("**")
                })
            }
        }
    }
}

/// A list of patterns indexed by tool name: exact names and selector
/// members in a hash map, globs scanned. Answers in list order, so "the first
/// entry that matches" is the same as scanning the list, at the cost of one
/// lookup plus the globs rather than the whole list.
#[derive(Clone, Debug, Default)]
pub struct PatternIndex {
    exact: crate::hash::FastMap<Box<str>, Vec<u32>>,
    globs: Vec<(u32, GlobMatcher)>,
    /// Annotated selectors: they match only when a call's annotations
    /// are given (the `*_annotated` methods).
    annotated: Vec<(u32, GlobMatcher, HintTerms)>,
}

impl PatternIndex {
    /// Indexes patterns by their position in the iterator.
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a ToolPattern>) -> PatternIndex {
        let mut index = PatternIndex::default();
        for (position, pattern) in (0u32..).zip(patterns) {
            match pattern {
                ToolPattern::Glob { matcher, .. } => index.globs.push((position, matcher.clone())),
                ToolPattern::Annotated { matcher, terms, .. } => {
                    index.annotated.push((position, matcher.clone(), terms.clone()))
                }
                names => {
                    for name in names.names() {
                        index.exact.entry(name.clone()).or_default().push(position);
                    }
                }
            }
        }
        index
    }

    /// The positions of every pattern that matches `tool`, ascending
    /// (annotated selectors left out).
    pub fn matching(&self, tool: &str) -> Vec<u32> {
        self.matching_annotated(tool, None)
    }

    /// The positions of every pattern that matches `tool` with these
    /// annotations (`None`: annotated selectors left out), ascending.
    pub fn matching_annotated(&self, tool: &str, hints: Option<Hints>) -> Vec<u32> {
        let mut positions: Vec<u32> = self.exact.get(tool).cloned().unwrap_or_default();
        positions.extend(self.globs.iter().filter(|(_, m)| m.is_match(tool)).map(|(p, _)| *p));
        if let Some(hints) = hints {
            let annotated =
                self.annotated.iter().filter(|(_, m, terms)| m.is_match(tool) && satisfied(terms, hints));
            positions.extend(annotated.map(|(p, ..)| *p));
        }
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    /// The position of the first pattern that matches `tool` (annotated
    /// selectors left out).
    pub fn first(&self, tool: &str) -> Option<u32> {
        self.first_annotated(tool, None)
    }

    /// The position of the first pattern that matches `tool` with these
    /// annotations (`None`: annotated selectors left out).
    pub fn first_annotated(&self, tool: &str, hints: Option<Hints>) -> Option<u32> {
        let exact = self.exact.get(tool).and_then(|p| p.first().copied());
        let glob = self.globs.iter().find(|(_, m)| m.is_match(tool)).map(|(p, _)| *p);
        let annotated = hints.and_then(|hints| {
            self.annotated
                .iter()
                .find(|(_, m, terms)| m.is_match(tool) && satisfied(terms, hints))
                .map(|(p, ..)| *p)
        });
        [exact, glob, annotated].into_iter().flatten().min()
    }

    /// Whether the list has annotated selectors.
    pub fn has_annotated(&self) -> bool {
        !self.annotated.is_empty()
    }

    /// Whether any pattern matches `tool`.
    pub fn any(&self, tool: &str) -> bool {
        self.exact.contains_key(tool) || self.globs.iter().any(|(_, m)| m.is_match(tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stops_at_the_server_separator() {
        let all_github = ToolPattern::new("github/*").expect("glob");
        assert!(all_github.matches("github/create_issue"));
        assert!(!all_github.matches("gitlab/create_issue"));
        assert!(!all_github.matches("github/x/y"));
        let star = ToolPattern::new("*").expect("glob");
        assert!(star.matches("getOrderHistory"));
        assert!(!star.matches("github/create_issue"));
        let deletes = ToolPattern::new("github/delete_*").expect("glob");
        assert!(all_github.covers(&deletes));
        assert!(!deletes.covers(&all_github));
        assert!(all_github.covers(&ToolPattern::new("github/delete_?").expect("glob")));
        // `?` matches the character `*` when read as a name, but does not cover `*`.
        let one_char = ToolPattern::new("files/?").expect("glob");
        assert!(!one_char.covers(&ToolPattern::new("files/*").expect("glob")));
        assert!(one_char.covers(&ToolPattern::Exact("files/a".into())));
        assert!(!all_github.covers(&ToolPattern::new("github/**").expect("glob")));
        assert!(!all_github.covers(&ToolPattern::new("github/[a-z]").expect("glob")));
        assert!(ToolPattern::new("github/[").is_err());
        assert!(ToolPattern::new(" ").is_err());
    }

    #[test]
    fn the_index_answers_in_list_order() {
        let patterns: Vec<ToolPattern> = ["github/get_me", "github/*", "github/get_me", "gitlab/*"]
            .iter()
            .map(|p| ToolPattern::new(p).expect("pattern"))
            .collect();
        let index = PatternIndex::new(&patterns);
        assert_eq!(index.matching("github/get_me"), [0, 1, 2]);
        assert_eq!(index.first("github/get_me"), Some(0));
        assert_eq!(index.first("github/issue_read"), Some(1));
        assert_eq!(index.first("slack/post"), None);
        assert!(index.any("gitlab/x"));
        assert!(!index.any("slack/post"));
    }
}
