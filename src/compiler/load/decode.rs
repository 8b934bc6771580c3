//! Typed reading of YAML nodes, reporting every problem with its location.
//!
//! Each reader returns `None` after recording a diagnostic, so a caller can go
//! on with the next key and a file yields all its errors in one run.

use crate::compiler::ast::Spanned;
use crate::compiler::yaml::{Node, Value};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, suggest};
use crate::source::{Location, SourceId, Span};

/// Reads nodes of one file.
pub struct Decoder<'d> {
    source: SourceId,
    text: &'d str,
    diagnostics: &'d mut Diagnostics,
}

/// The entries of a mapping whose keys were all known.
pub struct Fields<'n> {
    entries: Vec<(&'static str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value node of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }
}

impl<'d> Decoder<'d> {
    /// A decoder for nodes of `source`.
    pub fn new(source: SourceId, text: &'d str, diagnostics: &'d mut Diagnostics) -> Self {
        Decoder { source, text, diagnostics }
    }

    /// The source text of a span, if the span is valid.
    pub fn slice(&self, span: Span) -> Option<&'d str> {
        self.text.get(span.start as usize..span.end as usize)
    }

    /// The location of a span in this file.
    pub fn at(&self, span: Span) -> Location {
        Location::new(self.source, span)
    }

    /// Records a diagnostic.
    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let diagnostic = Diagnostic::new(
            Code::WrongType,
            format!("{what} must be {expected}, found {}", node.value.kind()),
            self.at(node.span),
        );
        self.report(diagnostic);
    }

    /// The entries of a mapping, keys as spanned strings.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<Vec<(Spanned<String>, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            if node.value == Value::Null {
                return Some(Vec::new());
            }
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let name = match &key.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    self.wrong_type(key, &format!("a key of {what}"), "a string");
                    continue;
                }
            };
            out.push((Spanned::new(name, self.at(key.span)), value));
        }
        Some(out)
    }

    /// A mapping with a fixed set of keys; unknown keys are reported with a
    /// suggestion and skipped.
    pub fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&'static str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            if node.value == Value::Null {
                return Some(Fields { entries: Vec::new() });
            }
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut fields = Fields { entries: Vec::with_capacity(entries.len()) };
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.wrong_type(key, &format!("a key of {what}"), "a string");
                continue;
            };
            match known.iter().find(|k| **k == name.as_str()) {
                Some(k) => fields.entries.push((k, key, value)),
                None => self.unknown_key(key, name, what, known),
            }
        }
        Some(fields)
    }

    fn unknown_key(&mut self, key: &Node, name: &str, what: &str, known: &[&'static str]) {
        let mut diagnostic =
            Diagnostic::new(Code::UnknownKey, format!("unknown key `{name}` in {what}"), self.at(key.span));
        diagnostic = match suggest(name, known.iter().copied()) {
            Some(best) => diagnostic
                .with_label(crate::diagnostic::did_you_mean(best))
                .with_help(format!("replace `{name}` with `{best}`")),
            None => diagnostic.with_help(format!("the keys of {what} are: {}", known.join(", "))),
        };
        self.report(diagnostic);
    }

    /// A string.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), self.at(node.span))),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    /// A list of strings; a null value is an empty list.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.value {
            Value::Seq(items) => {
                items.iter().filter_map(|item| self.string(item, &format!("each entry of {what}"))).collect()
            }
            Value::Null => Vec::new(),
            Value::Str(single) => {
                let diagnostic = Diagnostic::new(
                    Code::WrongType,
                    format!("{what} must be a list of strings, found a string"),
                    self.at(node.span),
                )
                .with_help(format!("write a list: `[{single}]`"));
                self.report(diagnostic);
                Vec::new()
            }
            _ => {
                self.wrong_type(node, what, "a list of strings");
                Vec::new()
            }
        }
    }

    /// A boolean.
    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<Spanned<bool>> {
        match node.value {
            Value::Bool(b) => Some(Spanned::new(b, self.at(node.span))),
            _ => {
                self.wrong_type(node, what, "`true` or `false`");
                None
            }
        }
    }

    /// A non-negative integer.
    pub fn count(&mut self, node: &Node, what: &str) -> Option<Spanned<u64>> {
        match node.value {
            Value::Int(i) if i >= 0 => Some(Spanned::new(i as u64, self.at(node.span))),
            Value::Int(i) => {
                let diagnostic = Diagnostic::new(
                    Code::InvalidValue,
                    format!("{what} must not be negative, found `{i}`"),
                    self.at(node.span),
                )
                .with_help("use 0 to allow no call at all");
                self.report(diagnostic);
                None
            }
            _ => {
                self.wrong_type(node, what, "a non-negative integer");
                None
            }
        }
    }

    /// A finite number.
    pub fn number(&mut self, node: &Node, what: &str) -> Option<Spanned<f64>> {
        match node.value {
            Value::Int(i) => Some(Spanned::new(i as f64, self.at(node.span))),
            Value::Float(f) if f.is_finite() => Some(Spanned::new(f, self.at(node.span))),
            _ => {
                self.wrong_type(node, what, "a number");
                None
            }
        }
    }

    /// Any scalar or structure, as JSON.
    pub fn json(&mut self, node: &Node, what: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match &node.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None => {
                    self.wrong_type(node, what, "a finite number");
                    return None;
                }
            },
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(|i| self.json(i, what)).collect::<Option<_>>()?),
            Value::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    let Value::Str(k) = &key.value else {
                        self.wrong_type(key, &format!("a key in {what}"), "a string");
                        return None;
                    };
                    object.insert(k.clone(), self.json(value, what)?);
                }
                J::Object(object)
            }
        })
    }
}
