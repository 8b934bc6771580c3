//! `sensitiveArgs` and `auditFields` must name arguments the agent's calls
//! can carry: a misspelt `card.numbr` would silently leave the card number
//! in the trail in clear.

use serde_json::Value;

use crate::compiler::ast::{AgentDecl, Spanned};
use crate::compiler::catalog::Catalogs;
use crate::compiler::checked::CheckedAgent;
use crate::compiler::params::ParamCheck;
use crate::compiler::privacy::{FieldPath, Step};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// What is known of a value's shape.
#[derive(Clone, Copy)]
enum Shape<'a> {
    /// Nothing: any field below it may exist.
    Open,
    /// `params` rules.
    Params(&'a ParamCheck),
    /// A JSON Schema (a catalog tool's `inputSchema` or part of it).
    Schema(&'a Value),
}

impl<'a> Shape<'a> {
    /// The shape one step down, or the names that were possible there.
    fn step(self, step: &Step) -> Result<Shape<'a>, Vec<&'a str>> {
        match (self, step) {
            (Shape::Open, _) => Ok(Shape::Open),
            (Shape::Params(check), Step::Field(name)) if !check.properties.is_empty() => check
                .properties
                .iter()
                .find(|(field, _)| &**field == name)
                .map(|(_, inner)| Shape::Params(inner))
                .ok_or_else(|| check.properties.iter().map(|(field, _)| &**field).collect()),
            (Shape::Params(check), Step::Items) => {
                Ok(check.items.as_deref().map_or(Shape::Open, Shape::Params))
            }
            (Shape::Params(_), Step::Field(_)) => Ok(Shape::Open),
            (Shape::Schema(schema), Step::Field(name)) => {
                match schema.get("properties").and_then(Value::as_object) {
                    Some(properties) => properties
                        .get(name)
                        .map(Shape::Schema)
                        .ok_or_else(|| properties.keys().map(String::as_str).collect()),
                    None => Ok(Shape::Open),
                }
            }
            (Shape::Schema(schema), Step::Items) => {
                Ok(schema.get("items").map_or(Shape::Open, Shape::Schema))
            }
        }
    }
}

/// The argument shapes of every call `agent` may make: its `params` and
/// `requiresFields`, and the `inputSchema` of each catalogued tool its
/// allow lists match.
fn argument_roots<'a>(agent: &'a CheckedAgent, catalogs: &'a Catalogs) -> Vec<(&'a str, Shape<'a>)> {
    let mut roots: Vec<(&str, Shape<'_>)> = Vec::new();
    for constraint in &agent.constraints {
        roots.extend(constraint.params.iter().map(|p| (p.name.as_str(), Shape::Params(&p.check))));
        if let Some((fields, _)) = &constraint.requires_fields {
            roots.extend(fields.iter().map(|f| (f.as_str(), Shape::Open)));
        }
    }
    for tool in catalogs.tools().filter(|t| agent.allow.iter().any(|a| a.pattern.matches(&t.name))) {
        if let Some(properties) = tool.input_schema.get("properties").and_then(Value::as_object) {
            roots.extend(properties.iter().map(|(name, schema)| (name.as_str(), Shape::Schema(schema))));
        }
    }
    roots
}

/// Whether `steps` lead somewhere from one of `roots`; if not, the deepest
/// step that failed and the names possible there.
fn resolve<'a>(roots: &[(&'a str, Shape<'a>)], steps: &[Step]) -> Result<(), (usize, Vec<&'a str>)> {
    let Some((Step::Field(first), rest)) = steps.split_first() else {
        return Ok(());
    };
    let mut deepest: (usize, Vec<&str>) = (0, roots.iter().map(|(name, _)| *name).collect());
    for (_, root) in roots.iter().filter(|(name, _)| name == first) {
        let mut shape = *root;
        let mut failed = None;
        for (depth, step) in rest.iter().enumerate() {
            match shape.step(step) {
                Ok(next) => shape = next,
                Err(possible) => {
                    failed = Some((depth + 1, possible));
                    break;
                }
            }
        }
        match failed {
            None => return Ok(()),
            Some(found) if found.0 >= deepest.0 => deepest = found,
            Some(_) => {}
        }
    }
    Err(deepest)
}

/// Checks an agent's own `sensitiveArgs` and `auditFields` entries against
/// what the calls of the agent and of every agent inheriting them can carry
/// (`heirs`, the agent included): a base agent may name what its
/// descendants' tools take.
pub fn check(decl: &AgentDecl, heirs: &[&CheckedAgent], catalogs: &Catalogs, diagnostics: &mut Diagnostics) {
    let roots: Vec<(&str, Shape<'_>)> =
        heirs.iter().flat_map(|agent| argument_roots(agent, catalogs)).collect();
    let entries = [("sensitiveArgs", &decl.sensitive_args), ("auditFields", &decl.audit_fields)];
    for (key, entry) in entries.iter().flat_map(|(key, list)| list.iter().map(move |e| (*key, e))) {
        let Ok(path) = FieldPath::parse(&entry.value) else { continue };
        let Some(steps) = path.argument_steps() else { continue };
        if let Err((depth, possible)) = resolve(&roots, steps) {
            diagnostics.push(unknown(key, entry, &decl.name.value, steps, depth, &possible));
        }
    }
}

fn unknown(
    key: &str,
    entry: &Spanned<String>,
    agent: &str,
    steps: &[Step],
    depth: usize,
    possible: &[&str],
) -> Diagnostic {
    let name = match steps.get(depth) {
        Some(Step::Field(name)) => name.as_str(),
        _ => "",
    };
    let mut possible: Vec<&str> = possible.to_vec();
    possible.sort_unstable();
    possible.dedup();
    let help = if possible.is_empty() {
        format!(
            "no argument of `{agent}`'s calls is declared: declare it in `params` or `requiresFields`, or give the tools' catalog"
        )
    } else {
        format!("the names possible there: {}", possible.join(", "))
    };
    let message = if depth == 0 {
        format!("`{}` in `{key}` matches no argument of the calls `{agent}` may make", entry.value)
    } else {
        let above: Vec<&str> = steps[..depth]
            .iter()
            .filter_map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                Step::Items => None,
            })
            .collect();
        format!("`{}` in `{key}`: `{}` has no field `{name}`", entry.value, above.join("."))
    };
    Diagnostic::new(Code::UnknownArgument, message, entry.location)
        .with_help(help)
        .with_suggestion(name, possible.iter().copied())
}
