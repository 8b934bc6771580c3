//! Stage 1: YAML text → a spanned node tree.
//!
//! The tree keeps a byte span on every node, so that the loader can report
//! *every* problem of a file (unknown keys, wrong types) at its exact place,
//! not just the first one serde would stop at. Parsing goes through
//! `serde-saphyr`, which rejects duplicate keys and bounds alias expansion,
//! nesting depth and node count; on top of that this module bounds the file
//! size and checks UTF-8 before any parsing starts.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use serde_saphyr::options::AliasLimits;

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{Location, SourceId, Span};

/// The largest policy file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The deepest nesting of mappings and sequences accepted. Policies need
/// about ten levels; the bound keeps parsing within a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 32;

/// The most nodes (scalars, lists, mappings, alias expansions) in one file.
pub const MAX_NODES: usize = 2_000_000;
/// The most events alias expansion may replay in one file: aliases are
/// rare in policies, and expansion is how small files become huge.
pub const MAX_ALIAS_EXPANSION: usize = 200_000;

/// One YAML node with the byte span of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the node's text is.
    pub span: Span,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are unique.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How the kind of this value is named in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one policy file's bytes into a node tree.
///
/// Returns `Ok(None)` for a file with no content, which the caller reports.
pub fn parse(bytes: &[u8], source: SourceId) -> Result<Option<Node>, Diagnostic> {
    let at = |span: Span| Location::new(source, span);
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            Code::ResourceLimit,
            format!("file is larger than the limit of {MAX_FILE_BYTES} bytes"),
            at(Span::default()),
        )
        .with_help("split the policy set into several files in one directory"));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let offset = error.valid_up_to();
        Diagnostic::new(Code::NotUtf8, "file is not UTF-8 text", at(Span::new(offset, offset)))
            .with_label(format!("invalid byte at offset {offset}"))
            .with_help("save the file as UTF-8")
    })?;
    if text.trim().lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#')) {
        return Ok(None);
    }
    let mut alias_limits = AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_ALIAS_EXPANSION;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: 2 * MAX_NODES,
            max_aliases: 1_000,
        },
        alias_limits: alias_limits,
        // YAML 1.2 booleans only: `n`, `no`, `on`, `y` stay strings, so an
        // argument or tool named `n` is not silently renamed `false`.
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(node) => Ok(node.filter(|n| n.value != Value::Null)),
        Err(error) => Err(convert_error(&error, text, source)),
    }
}

fn convert_error(error: &serde_saphyr::Error, text: &str, source: SourceId) -> Diagnostic {
    use serde_saphyr::Error as E;
    let message = first_line_lowercase(&error.to_string());
    // Alias errors arrive wrapped; their text is the only stable signal.
    let over_limit = message.contains("limit exceeded") || message.contains("budget");
    let (code, help) = match error {
        _ if over_limit => {
            (Code::ResourceLimit, "policies need no deep nesting or mass aliasing; write the values out")
        }
        E::DuplicateMappingKey { .. } => {
            (Code::DuplicateKey, "remove one of the two entries; YAML keeps neither silently")
        }
        E::Budget { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => {
            (Code::ResourceLimit, "policies need no deep nesting or mass aliasing; write the values out")
        }
        _ => (Code::YamlSyntax, "fix the YAML syntax at this place"),
    };
    let offset = error
        .location()
        .filter(|l| l.line() > 0)
        .and_then(|l| {
            l.span().byte_offset().map(|b| b as usize).or_else(|| {
                crate::source::SourceFile::new("", "", text).offset_of(l.line() as usize, l.column() as usize)
            })
        })
        .unwrap_or(0);
    let message = match code {
        Code::ResourceLimit if message.contains("Depth") || message.contains("recursion") => {
            format!("nesting is deeper than {MAX_DEPTH} levels")
        }
        Code::ResourceLimit if message.contains("alias") => {
            format!("aliases expand to more than {MAX_ALIAS_EXPANSION} nodes")
        }
        Code::ResourceLimit => format!("file exceeds a safety limit ({message})"),
        Code::DuplicateKey => match error {
            E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
            _ => String::from("duplicate key"),
        },
        _ => message,
    };
    Diagnostic::new(code, message, Location::new(source, Span::new(offset, offset))).with_help(help)
}

/// serde-saphyr's message without its position suffix, in the house style.
fn first_line_lowercase(message: &str) -> String {
    let line = message.lines().next().unwrap_or("invalid YAML").trim();
    let line = match line.find(" at line ") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut chars = line.chars();
    let lowered: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::from("invalid YAML"),
    };
    lowered.trim_end_matches('.').to_owned()
}

fn span_of<T>(spanned: &Spanned<T>, value: &Value) -> Span {
    let span = spanned.referenced.span();
    let start = span.byte_offset().unwrap_or(0) as usize;
    let len = span.byte_len().unwrap_or(0) as usize;
    // Containers report only their start; scalars their whole text.
    let len = match value {
        Value::Seq(_) | Value::Map(_) => len.min(1),
        _ => len,
    };
    Span::new(start, start + len)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let span = span_of(&spanned, &spanned.value);
        Ok(Node { value: spanned.value, span })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Node, Node>()? {
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        parse(text.as_bytes(), SourceId(0)).expect("parses").expect("not empty")
    }

    fn parse_err(bytes: &[u8]) -> Diagnostic {
        parse(bytes, SourceId(0)).expect_err("rejected")
    }

    #[test]
    fn scalars_carry_their_byte_spans() {
        let text = "a:\n  b: hello\n  c: [1, 'x']\n";
        let root = parse_ok(text);
        let Value::Map(entries) = &root.value else { panic!("map") };
        let Value::Map(inner) = &entries[0].1.value else { panic!("inner map") };
        let (key, value) = &inner[0];
        assert_eq!(&text[key.span.start as usize..key.span.end as usize], "b");
        assert_eq!(&text[value.span.start as usize..value.span.end as usize], "hello");
        let Value::Seq(items) = &inner[1].1.value else { panic!("seq") };
        assert_eq!(&text[items[1].span.start as usize..items[1].span.end as usize], "'x'");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert_eq!(parse_err(b"a: 1\na: 2\n").code, Code::DuplicateKey);
    }

    #[test]
    fn hostile_inputs_fail_fast() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert_eq!(parse_err(bomb.as_bytes()).code, Code::ResourceLimit);
        let deep = "[".repeat(100_000);
        assert!(matches!(parse_err(deep.as_bytes()).code, Code::ResourceLimit | Code::YamlSyntax));
        let deep_block: String = (0..100_000).map(|_| "- ").collect();
        assert!(matches!(parse_err(deep_block.as_bytes()).code, Code::ResourceLimit | Code::YamlSyntax));
        assert_eq!(parse_err(b"a: \xff\xfe").code, Code::NotUtf8);
        assert_eq!(parse(b"", SourceId(0)), Ok(None));
        assert_eq!(parse(b"# only a comment\n", SourceId(0)), Ok(None));
    }
}
