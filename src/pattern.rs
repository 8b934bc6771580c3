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

    /// The pattern as written.
    pub fn text(&self) -> &str {
        match self {
            ToolPattern::Exact(name) => name,
            ToolPattern::Glob { text, .. } => text,
        }
    }

    /// Whether this is a glob rather than an exact name.
    pub fn is_glob(&self) -> bool {
        matches!(self, ToolPattern::Glob { .. })
    }

    /// Whether a tool name matches.
    pub fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Exact(name) => **name == *tool,
            ToolPattern::Glob { matcher, .. } => matcher.is_match(tool),
        }
    }

    /// Whether every tool `other` matches is matched by `self` too.
    ///
    /// Exact where `other` is an exact name. Between globs it answers yes
    /// only when it can prove it: the same glob, or `self` is `<prefix>*`
    /// and `other` is `<prefix>` followed by wildcards that stay within one
    /// name segment (no `/`, `**` or character class, which may match `/`).
    /// Warnings built on it are therefore never false alarms.
    pub fn covers(&self, other: &ToolPattern) -> bool {
        match (self, other) {
            (ToolPattern::Exact(a), ToolPattern::Exact(b)) => a == b,
            (ToolPattern::Exact(_), ToolPattern::Glob { .. }) => false,
            (ToolPattern::Glob { .. }, ToolPattern::Exact(name)) => self.matches(name),
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
}
