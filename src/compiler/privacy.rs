//! What the audit trail and approvers may see of a call: `sensitiveArgs`
//! (values replaced by `"[redacted]"`) and `auditFields` (values kept even
//! at the `metadata` level). Both are lists of paths into the call:
//! `card.number` or `args.card.number` (an argument), `principal.email`,
//! `context.prompt`, and `files[].content` (a field of every item of a list).

use serde_json::{Map, Value};

/// Which of the call's values a path starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `args`.
    Args,
    /// `principal`.
    Principal,
    /// `context`.
    Context,
}

impl Source {
    /// `args`, `principal` or `context`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Args => "args",
            Source::Principal => "principal",
            Source::Context => "context",
        }
    }
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A field of an object.
    Field(String),
    /// Every item of a list (`[]`).
    Items,
}

/// A path into a call's values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath {
    /// Where it starts.
    pub source: Source,
    /// The steps from there; none for the whole value.
    pub steps: Vec<Step>,
    /// As written in the policy.
    pub text: String,
}

/// The text of the value that replaces a sensitive one.
pub const REDACTED: &str = "[redacted]";

impl FieldPath {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut segments = text.split('.').peekable();
        let source = match segments.peek() {
            Some(&"args") => Source::Args,
            Some(&"principal") => Source::Principal,
            Some(&"context") => Source::Context,
            _ => {
                return FieldPath::steps(segments).map(|steps| FieldPath {
                    source: Source::Args,
                    steps,
                    text: text.to_owned(),
                });
            }
        };
        segments.next();
        let steps = FieldPath::steps(segments)?;
        if source == Source::Args && steps.is_empty() {
            return Err(String::from("`args` alone would hide every argument; name the argument"));
        }
        Ok(FieldPath { source, steps, text: text.to_owned() })
    }

    fn steps<'a>(segments: impl Iterator<Item = &'a str>) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        for segment in segments {
            let (name, items) = match segment.strip_suffix("[]") {
                Some(name) => (name, true),
                None => (segment, false),
            };
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(format!(
                    "`{segment}` is not a field name; write fields with dots and `[]` after a list: `files[].content`"
                ));
            }
            steps.push(Step::Field(name.to_owned()));
            if items {
                steps.push(Step::Items);
            }
        }
        Ok(steps)
    }

    /// The names of the argument fields along the path (for checking them
    /// against declarations): `None` for `principal` and `context`.
    pub fn argument_steps(&self) -> Option<&[Step]> {
        (self.source == Source::Args).then_some(&self.steps)
    }

    /// Replaces what the path names in `value` (the source's value) by
    /// `"[redacted]"`; in every item, for `[]`.
    pub fn redact(&self, value: &mut Value) {
        redact_steps(value, &self.steps);
    }

    /// What the path names in `value` (the source's value), if present: for
    /// `[]`, the list of what it names in each item.
    pub fn get(&self, value: &Value) -> Option<Value> {
        get_steps(value, &self.steps)
    }
}

fn redact_steps(value: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else {
        *value = Value::from(REDACTED);
        return;
    };
    match (step, value) {
        (Step::Field(name), Value::Object(map)) => {
            if let Some(inner) = map.get_mut(name) {
                redact_steps(inner, rest);
            }
        }
        (Step::Items, Value::Array(items)) => items.iter_mut().for_each(|item| redact_steps(item, rest)),
        _ => {}
    }
}

fn get_steps(value: &Value, steps: &[Step]) -> Option<Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(value.clone());
    };
    match (step, value) {
        (Step::Field(name), Value::Object(map)) => get_steps(map.get(name)?, rest),
        (Step::Items, Value::Array(items)) => {
            Some(items.iter().filter_map(|item| get_steps(item, rest)).collect())
        }
        _ => None,
    }
}

/// An agent's privacy rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privacy {
    /// `sensitiveArgs`: redacted wherever the call is recorded or shown.
    pub sensitive: Vec<FieldPath>,
    /// `auditFields`: recorded even at the `metadata` level.
    pub recorded: Vec<FieldPath>,
}

/// No privacy rules (for denials no agent's policy shaped).
pub static NO_PRIVACY: Privacy = Privacy { sensitive: Vec::new(), recorded: Vec::new() };

impl Privacy {
    /// `value` (the call's `source` value) with the sensitive paths into it
    /// redacted.
    pub fn redacted(&self, source: Source, value: &Value) -> Value {
        let mut value = value.clone();
        for path in self.sensitive.iter().filter(|p| p.source == source) {
            path.redact(&mut value);
        }
        value
    }

    /// The arguments with the sensitive ones redacted.
    pub fn redacted_args(&self, args: &Map<String, Value>) -> Value {
        self.redacted(Source::Args, &Value::Object(args.clone()))
    }

    /// The `auditFields` present in the call, by path, sensitive parts
    /// redacted.
    pub fn recorded_fields(&self, values: impl Fn(Source) -> Value) -> Map<String, Value> {
        let mut fields = Map::new();
        for path in &self.recorded {
            let redacted = self.redacted(path.source, &values(path.source));
            if let Some(value) = path.get(&redacted) {
                fields.insert(path.text.clone(), value);
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_parse_into_a_source_and_steps() {
        let path = FieldPath::parse("files[].content").expect("parses");
        assert_eq!(path.source, Source::Args);
        assert_eq!(path.steps, vec![Step::Field("files".into()), Step::Items, Step::Field("content".into())]);
        assert_eq!(FieldPath::parse("principal.email").expect("parses").source, Source::Principal);
        assert_eq!(FieldPath::parse("context").expect("parses").steps, vec![]);
        assert_eq!(FieldPath::parse("args.card.number").expect("parses").steps.len(), 2);
        for bad in ["", "a..b", "a.[]", "args", "a[0]", "x.]"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sensitive_values_are_redacted_and_recorded_fields_kept() {
        let privacy = Privacy {
            sensitive: ["card.number", "files[].content", "principal.email"]
                .iter()
                .map(|p| FieldPath::parse(p).expect("parses"))
                .collect(),
            recorded: ["principal.user", "principal.email", "files[].path"]
                .iter()
                .map(|p| FieldPath::parse(p).expect("parses"))
                .collect(),
        };
        let args = json!({"card": {"number": "4111", "holder": "A"}, "files": [{"path": "a", "content": "x"}, {"path": "b", "content": "y"}]});
        let Value::Object(args) = args else { panic!() };
        assert_eq!(
            privacy.redacted_args(&args),
            json!({"card": {"number": REDACTED, "holder": "A"}, "files": [{"path": "a", "content": REDACTED}, {"path": "b", "content": REDACTED}]})
        );
        let principal = json!({"user": "u-1", "email": "a@example.com", "ssn": "078-05-1120"});
        let fields = privacy.recorded_fields(|source| match source {
            Source::Args => Value::Object(args.clone()),
            Source::Principal => principal.clone(),
            Source::Context => Value::Null,
        });
        assert_eq!(
            Value::Object(fields),
            json!({"principal.user": "u-1", "principal.email": REDACTED, "files[].path": ["a", "b"]})
        );
    }
}
