//! Tool patterns: exact names (`github/create_issue`) or globs (`github/delete_*`).
//!
//! In a glob, `*` matches any run of characters except `/`, so `github/*`
//! is every tool of the `github` server but no tool of another. `?`, `[abc]`
//! and `{a,b}` work as in shell globs; `**` crosses `/`.

use globset::{Glob, GlobBuilder, GlobMatcher};

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

    /// The pattern as written.
    pub fn text(&self) -> &str {
        match self {
            ToolPattern::Exact(name) => name,
            ToolPattern::Glob { text, .. } | ToolPattern::Selected { text, .. } => text,
        }
    }

    /// Whether this is a glob rather than a known set of names.
    pub fn is_glob(&self) -> bool {
        matches!(self, ToolPattern::Glob { .. })
    }

    /// The names this pattern matches when it is not a glob.
    pub fn names(&self) -> &[Box<str>] {
        match self {
            ToolPattern::Exact(name) => std::slice::from_ref(name),
            ToolPattern::Glob { .. } => &[],
            ToolPattern::Selected { tools, .. } => tools,
        }
    }

    /// Whether a tool name matches.
    pub fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Exact(name) => **name == *tool,
            ToolPattern::Glob { matcher, .. } => matcher.is_match(tool),
            ToolPattern::Selected { tools, .. } => tools.binary_search_by(|t| (**t).cmp(tool)).is_ok(),
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
}

impl PatternIndex {
    /// Indexes patterns by their position in the iterator.
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a ToolPattern>) -> PatternIndex {
        let mut index = PatternIndex::default();
        for (position, pattern) in (0u32..).zip(patterns) {
            match pattern {
                ToolPattern::Glob { matcher, .. } => index.globs.push((position, matcher.clone())),
                names => {
                    for name in names.names() {
                        index.exact.entry(name.clone()).or_default().push(position);
                    }
                }
            }
        }
        index
    }

    /// The positions of every pattern that matches `tool`, ascending.
    pub fn matching(&self, tool: &str) -> Vec<u32> {
        let mut positions: Vec<u32> = self.exact.get(tool).cloned().unwrap_or_default();
        positions.extend(self.globs.iter().filter(|(_, m)| m.is_match(tool)).map(|(p, _)| *p));
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    /// The position of the first pattern that matches `tool`.
    pub fn first(&self, tool: &str) -> Option<u32> {
        let exact = self.exact.get(tool).and_then(|p| p.first().copied());
        let glob = self.globs.iter().find(|(_, m)| m.is_match(tool)).map(|(p, _)| *p);
        match (exact, glob) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
