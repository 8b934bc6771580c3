//! The rules for names: what a tool, agent or session name may be. Names
//! with invisible or look-alike characters, or surrounding whitespace,
//! would slip past exact `deniedTools` entries (`"db/drop_table "`,
//! `db/drop\u{200b}_table`, a Cyrillic `а`); the compiler refuses them in
//! policies, the wire refuses every such name in requests, and the engine
//! denies a tool name that breaks them.

/// The longest agent, tool or session name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Why a name is refused, if it is: a tool or agent name is 1 to
/// [`MAX_NAME_BYTES`] of ASCII letters, digits and `_ - . /` (the MCP tool
/// name characters, with `/` for a server prefix); a session id is 1 to
/// [`MAX_NAME_BYTES`] bytes without control or invisible formatting
/// characters and without surrounding whitespace.
pub fn name_problem(what: Name, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("{} is empty", what.as_str()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!("{} is longer than {MAX_NAME_BYTES} bytes", what.as_str()));
    }
    match what {
        Name::Tool | Name::Agent | Name::Approver => name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
            .map(|c| {
                format!(
                    "{} has the character {c:?}; names use ASCII letters, digits and `_ - . /`",
                    what.as_str()
                )
            }),
        Name::Session => {
            if name.trim() != name {
                return Some(format!("{} has surrounding whitespace", what.as_str()));
            }
            name.chars()
                .find(|c| c.is_control() || is_format(*c))
                .map(|c| format!("{} has the invisible character U+{:04X}", what.as_str(), u32::from(c)))
        }
    }
}

/// Why a tool pattern (a name or a glob) is refused, if it is: a name
/// follows the rules for tool names; a glob may use, besides them, the
/// glob characters `* ? [ ] { } , ! ^ \`.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    const GLOB: [char; 10] = ['*', '?', '[', ']', '{', '}', ',', '!', '^', '\\'];
    if !pattern.contains(['*', '?', '[', ']', '{', '}']) {
        return name_problem(Name::Tool, pattern);
    }
    if pattern.len() > MAX_NAME_BYTES {
        return Some(format!("the pattern is longer than {MAX_NAME_BYTES} bytes"));
    }
    pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/') || GLOB.contains(c)))
        .map(|c| {
            format!("the pattern has the character {c:?}; tool names use ASCII letters, digits and `_ - . /`")
        })
}

/// Unicode format characters and others that change text invisibly: zero
/// width, bidirectional controls, the tag block, variation selectors.
pub fn is_format(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0xFE00..=0xFE0F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE0000..=0xE007F)
}

/// Which kind of name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// An agent name.
    Agent,
    /// A tool name.
    Tool,
    /// A session id.
    Session,
    /// An approver's name.
    Approver,
}

impl Name {
    /// How the name is called in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Agent => "`agent`",
            Name::Tool => "`tool`",
            Name::Session => "`session`",
            Name::Approver => "`approver`",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_tricks_are_refused() {
        for tool in [
            "db/drop_table ",
            "db/drop_table\u{0}",
            "db/drop_table\n",
            "db/drop\u{200b}_table",
            "db/drop_t\u{430}ble",
            "",
        ] {
            assert!(name_problem(Name::Tool, tool).is_some(), "{tool:?}");
        }
        assert!(name_problem(Name::Tool, "github/create_issue").is_none());
        assert!(name_problem(Name::Tool, &"t".repeat(MAX_NAME_BYTES + 1)).is_some());
        for session in [" s", "s\t", "a\u{202e}b", "x\u{e0041}"] {
            assert!(name_problem(Name::Session, session).is_some(), "{session:?}");
        }
        assert!(name_problem(Name::Session, "sess-41:ü").is_none());
    }
}
