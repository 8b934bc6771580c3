//! Paths as a file server will resolve them: `pathWithin` and
//! `pathNotWithin` compare normal forms, never strings.
//!
//! A path is normalised lexically: repeated slashes and `.` components are
//! dropped and each `..` removes the component before it. So
//! `/srv/docs/../../etc/shadow` is `/etc/shadow`, which a string prefix check
//! would take for a path under `/srv/docs`. A path whose `..` would climb
//! above its start (`/..`, `../x`), an empty path and one with a NUL byte
//! have no normal form: no rule can tell where they lead, so they are within
//! nothing and fail every path rule. Symbolic links are not followed (the
//! policy cannot see the file system); that is the file server's part.

/// A path in normal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// Whether it starts at `/`.
    pub absolute: bool,
    /// Its components, without `.`, `..` or empty ones.
    pub parts: Vec<&'a str>,
}

/// The normal form of `path`, or `None` if it has none.
pub fn normalize(path: &str) -> Option<NormalPath<'_>> {
    if path.is_empty() || path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(NormalPath { absolute: path.starts_with('/'), parts })
}

/// A root a rule names, kept with its text and normal form.
#[derive(Clone, Debug)]
pub struct PathRoot {
    /// As written in the policy.
    pub text: Box<str>,
    absolute: bool,
    parts: Vec<Box<str>>,
}

impl PathRoot {
    /// A root, if `text` has a normal form.
    pub fn new(text: &str) -> Option<PathRoot> {
        let normal = normalize(text)?;
        Some(PathRoot {
            text: text.into(),
            absolute: normal.absolute,
            parts: normal.parts.into_iter().map(Box::from).collect(),
        })
    }

    /// The normal form as text: `/srv/docs` for `//srv/./docs/`.
    pub fn normal(&self) -> String {
        let joined = self.parts.join("/");
        match (self.absolute, joined.is_empty()) {
            (true, _) => format!("/{joined}"),
            (false, true) => String::from("."),
            (false, false) => joined,
        }
    }

    /// Whether `path` has a normal form that is this root or below it.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_some_and(|p| self.holds(&p))
    }

    /// Whether the normal path `path` is this root or below it (both
    /// absolute, or both relative).
    pub fn holds(&self, path: &NormalPath<'_>) -> bool {
        path.absolute == self.absolute
            && path.parts.len() >= self.parts.len()
            && path.parts.iter().zip(&self.parts).all(|(a, b)| *a == &**b)
    }
}

impl PartialEq for PathRoot {
    fn eq(&self, other: &Self) -> bool {
        self.absolute == other.absolute && self.parts == other.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_compared_in_normal_form() {
        let docs = PathRoot::new("/srv/docs").expect("a root");
        let cases = [
            ("/srv/docs", true),
            ("/srv/docs/", true),
            ("/srv/docs/a.md", true),
            ("//srv///docs/./a.md", true),
            ("/srv/docs/x/../a.md", true),
            ("/srv/docs/../../etc/shadow", false),
            ("/srv/docs/../docs-private/a", false),
            ("/srv/docs-private/a", false),
            ("/srv/doc", false),
            ("/", false),
            ("srv/docs/a.md", false),
            ("/../srv/docs/a.md", false),
            ("", false),
            ("/srv/docs/a\0/../../../etc", false),
            ("/srv/docs/..", false),
            ("/SRV/docs/a", false),
        ];
        for (path, inside) in cases {
            assert_eq!(docs.contains(path), inside, "{path:?}");
        }
        let workflows = PathRoot::new(".github/workflows").expect("a relative root");
        for (path, inside) in [
            (".github/workflows/ci.yml", true),
            ("./.github//workflows/ci.yml", true),
            ("src/../.github/workflows/ci.yml", true),
            (".github/workflows-old/ci.yml", false),
            ("/.github/workflows/ci.yml", false),
            ("docs/.github/workflows/ci.yml", false),
        ] {
            assert_eq!(workflows.contains(path), inside, "{path:?}");
        }
        assert!(PathRoot::new("/").expect("root").contains("/etc"));
        assert!(PathRoot::new("../up").is_none());
        assert_eq!(PathRoot::new("/srv//docs/"), PathRoot::new("/srv/docs"));
        let normal = |text: &str| PathRoot::new(text).map(|r| r.normal());
        assert_eq!(normal("//srv/./docs/"), Some(String::from("/srv/docs")));
        assert_eq!(normal("a/../b/"), Some(String::from("b")));
        assert_eq!(normal("./"), Some(String::from(".")));
        assert_eq!(normal("/"), Some(String::from("/")));
    }
}
