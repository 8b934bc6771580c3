//! Checking a policy against its MCP tool catalogs: tool names, selectors,
//! argument names and types, and the type environment of conditions.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::compiler::FileReader;
use crate::compiler::ast::{
    ArgValidation, CatalogDecl, ConstraintDecl, JsonType, ParamDecl, PolicyFile, Spanned,
};
use crate::compiler::catalog::{self, CatalogTool, Catalogs};
use crate::compiler::checked::*;
use crate::compiler::condition::{Type, TypeEnv};
use crate::compiler::pattern::ToolPattern;
use crate::diagnostic::Diagnostics;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{Location, SourceMap};

/// Reads and parses every catalog the files name; returns them with the
/// bytes read, in order, for the policy hash.
pub fn load(
    files: &[PolicyFile],
    sources: &SourceMap,
    reader: &dyn FileReader,
    diagnostics: &mut Diagnostics,
) -> (Catalogs, Vec<Vec<u8>>) {
    let mut catalogs = Catalogs::default();
    let mut contents = Vec::new();
    for file in files {
        let policy = sources.get(file.source).map_or("", |f| f.name());
        for decl in &file.catalogs {
            let server = decl.server.as_ref().map(|s| s.value.as_str());
            if let Some(server) = decl.server.as_ref().filter(|s| s.value.is_empty() || s.value.contains('/'))
            {
                diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("catalog server `{}` is not a server name", server.value),
                        server.location,
                    )
                    .with_help(
                        "a server is the tool-name prefix before `/`, e.g. `github`; omit it for none",
                    ),
                );
                continue;
            }
            match decl.on_drift.as_ref().map(|d| d.value.as_str()) {
                None | Some("log") => {}
                Some("deny") => catalogs.deny_drift(server),
                Some(other) => diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("`onDrift` `{other}` is neither `log` nor `deny`"),
                        decl.on_drift.as_ref().map_or(decl.file.location, |d| d.location),
                    )
                    .with_help("`log` records a tool that changed; `deny` also refuses its calls"),
                ),
            }
            let parsed = reader
                .read(policy, &decl.file.value)
                .and_then(|bytes| catalog::parse(&bytes, server).map(|t| (t, bytes)).map_err(|e| e.0));
            match parsed {
                Ok((tools, bytes)) => {
                    for name in catalogs.add(server, tools) {
                        diagnostics.push(unreadable(
                            decl,
                            format!("tool `{name}` is also described, differently, by another catalog"),
                        ));
                    }
                    contents.push(bytes);
                }
                Err(error) => diagnostics.push(unreadable(decl, error)),
            }
        }
    }
    (catalogs, contents)
}

fn unreadable(decl: &CatalogDecl, error: String) -> Diagnostic {
    Diagnostic::new(
        Code::CatalogUnreadable,
        format!("cannot use catalog `{}`", decl.file.value),
        decl.file.location,
    )
    .with_label(error)
    .with_help(
        "a catalog is the JSON result of an MCP `tools/list` call; the path is relative to this policy file",
    )
}

/// Compiles a tool name, glob or selector, checking it against the catalogs.
pub fn pattern(
    entry: &Spanned<String>,
    catalogs: &Catalogs,
    diagnostics: &mut Diagnostics,
) -> Option<ToolPattern> {
    if let Some(selector) = catalog::parse_selector(&entry.value) {
        return selected(entry, selector, catalogs, diagnostics);
    }
    let pattern = compile_glob(entry, &entry.value, diagnostics)?;
    if !catalogs.covers(&entry.value) {
        return Some(pattern);
    }
    if !pattern.is_glob() {
        if catalogs.get(&entry.value).is_none() {
            diagnostics.push(unknown_tool(entry, catalogs));
        }
    } else if !catalogs.tools().any(|t| pattern.matches(&t.name)) {
        diagnostics.push(matches_nothing(entry, "glob"));
    }
    Some(pattern)
}

fn selected(
    entry: &Spanned<String>,
    selector: Result<catalog::Selector<'_>, String>,
    catalogs: &Catalogs,
    diagnostics: &mut Diagnostics,
) -> Option<ToolPattern> {
    let selector = match selector {
        Ok(selector) => selector,
        Err(error) => {
            diagnostics.push(
                Diagnostic::new(Code::InvalidValue, format!("invalid tool selector `{}`", entry.value), entry.location)
                    .with_label(error)
                    .with_help("write `<glob> where <annotation>`, e.g. `github/* where readOnlyHint`; combine with `and`, negate with `not`"),
            );
            return None;
        }
    };
    let glob = compile_glob(entry, selector.glob, diagnostics)?;
    if !catalogs.covers(selector.glob) {
        // No catalog pins the server's annotations: the selector reads
        // the ones each call carries (the server's own claims).
        return ToolPattern::annotated(&entry.value, selector.glob, selector.terms).ok();
    }
    let tools: Vec<Box<str>> = catalogs
        .tools()
        .filter(|t| {
            glob.matches(&t.name) && selector.terms.iter().all(|(hint, wanted)| t.hints.has(*hint) == *wanted)
        })
        .map(|t| t.name.as_str().into())
        .collect();
    if tools.is_empty() {
        diagnostics.push(matches_nothing(entry, "selector"));
    }
    Some(ToolPattern::selected(&entry.value, tools))
}

fn compile_glob(entry: &Spanned<String>, text: &str, diagnostics: &mut Diagnostics) -> Option<ToolPattern> {
    if let Some(problem) = crate::compiler::names::pattern_problem(text) {
        diagnostics.push(
            Diagnostic::new(
                Code::InvalidName,
                format!("invalid tool name `{}`", text.escape_debug()),
                entry.location,
            )
            .with_label(problem)
            .with_help("tool names are 1 to 256 ASCII letters, digits and `_ - . /`, as MCP names tools"),
        );
        return None;
    }
    match ToolPattern::new(text) {
        Ok(p) => Some(p),
        Err(error) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidGlob,
                    format!("invalid tool pattern `{}`", entry.value),
                    entry.location,
                )
                .with_label(error.0)
                .with_help(
                    "`*` matches any characters but `/`; escape a literal `*`, `?`, `[` or `{` with `\\`",
                ),
            );
            None
        }
    }
}

fn unknown_tool(entry: &Spanned<String>, catalogs: &Catalogs) -> Diagnostic {
    let mut diagnostic = Diagnostic::new(
        Code::UnknownTool,
        format!("no tool `{}` in the catalog", entry.value),
        entry.location,
    )
    .with_help("use a tool the server lists, or update the catalog if the server changed");
    diagnostic = diagnostic.with_suggestion(&entry.value, catalogs.tools().map(|t| t.name.as_str()));
    diagnostic
}

fn matches_nothing(entry: &Spanned<String>, kind: &str) -> Diagnostic {
    Diagnostic::new(
        Code::MatchesNoTool,
        format!("{kind} `{}` matches no tool in the catalog", entry.value),
        entry.location,
    )
    .with_help("check the spelling against the catalog, or delete the entry")
}

/// A diagnostic for a feature used where no catalog describes the tools.
pub fn needs_catalog(entry: &Spanned<String>, why: &str) -> Diagnostic {
    Diagnostic::new(Code::NeedsCatalog, format!("no catalog describes `{}`", entry.value), entry.location)
        .with_label(why.to_owned())
        .with_help("add the server's `tools/list` result under `catalogs:` with its `server` prefix")
}

/// The catalog tools a pattern can match (none when no catalog covers it).
pub fn matched<'c>(pattern: &ToolPattern, catalogs: &'c Catalogs) -> Vec<&'c CatalogTool> {
    if !catalogs.covers(pattern.text()) && !matches!(pattern, ToolPattern::Selected { .. }) {
        return Vec::new();
    }
    catalogs.tools().filter(|t| pattern.matches(&t.name)).collect()
}

/// Checks a constraint's `params` and `requiresFields` against the
/// `inputSchema` of every tool it applies to.
pub fn check_arguments(decl: &ConstraintDecl, tools: &[&CatalogTool], diagnostics: &mut Diagnostics) {
    if tools.is_empty() {
        return;
    }
    for field in &decl.requires_fields {
        if !tools.iter().any(|t| t.argument(&field.value).is_some()) {
            diagnostics.push(unknown_argument(&field.value, field.location, tools));
        }
    }
    for param in &decl.params {
        let schemas: Vec<&Value> = tools.iter().filter_map(|t| t.argument(&param.name.value)).collect();
        if schemas.is_empty() {
            diagnostics.push(unknown_argument(&param.name.value, param.name.location, tools));
            continue;
        }
        for schema in schemas {
            check_param(param, schema, diagnostics);
        }
    }
}

fn unknown_argument(name: &str, location: Location, tools: &[&CatalogTool]) -> Diagnostic {
    let mut known: Vec<&str> = tools.iter().flat_map(|t| t.arguments()).collect();
    known.sort_unstable();
    known.dedup();
    let what = match tools {
        [tool] => format!("`{}`", tool.name),
        _ => String::from("any tool it applies to"),
    };
    let mut diagnostic =
        Diagnostic::new(Code::UnknownArgument, format!("{what} takes no argument `{name}`"), location)
            .with_help(format!("the inputSchema names: {}", quoted(&known)));
    diagnostic = diagnostic.with_suggestion(name, known.iter().copied());
    diagnostic
}

fn quoted(names: &[&str]) -> String {
    if names.is_empty() {
        return String::from("no arguments");
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The declared types of a parameter must be types the schema admits, and
/// its `const`/`enum` values must satisfy the schema.
fn check_param(param: &ParamDecl, schema: &Value, diagnostics: &mut Diagnostics) {
    let name = &param.name.value;
    let allowed = schema_types(schema);
    if let (Some(declared), Some(allowed)) = (&param.schema.types, &allowed) {
        for ty in &declared.value {
            let fits =
                allowed.contains(ty) || (*ty == JsonType::Integer && allowed.contains(&JsonType::Number));
            if !fits {
                diagnostics.push(
                    Diagnostic::new(
                        Code::SchemaMismatch,
                        format!(
                            "argument `{name}` is declared `{}`, but the tool's schema says {}",
                            ty.as_str(),
                            type_list(allowed)
                        ),
                        declared.location,
                    )
                    .with_help("use the type of the tool's inputSchema, or delete `type` to inherit it"),
                );
            }
        }
    }
    let validator = jsonschema::options().should_validate_formats(false).build(schema).ok();
    let Some(validator) = validator else { return };
    let values =
        param.schema.constant.iter().map(|c| (&c.value, c.location)).chain(
            param.schema.enumeration.iter().flat_map(|e| e.value.iter().map(move |v| (v, e.location))),
        );
    for (value, location) in values {
        if let Some(error) = validator.iter_errors(value).next() {
            diagnostics.push(
                Diagnostic::new(
                    Code::SchemaMismatch,
                    format!("argument `{name}` can never be {value}: the tool's schema rejects it"),
                    location,
                )
                .with_label(error.to_string())
                .with_help("allow only values the tool accepts"),
            );
        }
    }
}

fn schema_types(schema: &Value) -> Option<Vec<JsonType>> {
    let named = |name: &str| JsonType::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    match schema.get("type")? {
        Value::String(name) => named(name).map(|t| vec![t]),
        Value::Array(names) => names.iter().map(|n| n.as_str().and_then(named)).collect(),
        _ => None,
    }
}

fn type_list(types: &[JsonType]) -> String {
    types.iter().map(|t| format!("`{}`", t.as_str())).collect::<Vec<_>>().join(" or ")
}

/// The type environment of a condition on `tools`: argument names from
/// their schemas (every tool's, when several), types from the schema of a
/// single tool, and declared `params` types over both.
pub fn type_env(declared: TypeEnv, tools: &[&CatalogTool]) -> TypeEnv {
    if tools.is_empty() {
        return declared;
    }
    let mut known: Vec<String> = tools.iter().flat_map(|t| t.arguments()).map(str::to_owned).collect();
    known.sort_unstable();
    known.dedup();
    let mut args = declared.args;
    if let [tool] = tools {
        for name in &known {
            let ty = tool.argument(name).and_then(schema_types).map_or(Type::Dyn, |types| {
                match types.as_slice() {
                    [JsonType::String] => Type::String,
                    [JsonType::Integer] => Type::Int,
                    [JsonType::Number] => Type::Double,
                    [JsonType::Boolean] => Type::Bool,
                    [JsonType::Array] => Type::List,
                    [JsonType::Object] => Type::Map,
                    _ => Type::Dyn,
                }
            });
            args.entry(name.clone()).or_insert(ty);
        }
    }
    TypeEnv { args, known_args: Some(known) }
}

/// Compiles the `inputSchema` of every catalog tool the agent allows and
/// validates (`validateArgs` on the agent or on a constraint covering the
/// tool, the strictest winning); `compiled` shares validators across agents.
pub fn validators(
    agent: &CheckedAgent,
    catalogs: &Catalogs,
    rules: &Rules,
    compiled: &mut HashMap<(String, ArgValidation), Arc<jsonschema::Validator>>,
    diagnostics: &mut Diagnostics,
) -> HashMap<Box<str>, SchemaCheck> {
    let mut checks = HashMap::new();
    let with_modes: Vec<&CheckedConstraint> =
        agent.constraints.iter().filter(|c| c.validation.is_some()).collect();
    if agent.validation.is_none() && with_modes.is_empty() {
        return checks;
    }
    let allows = crate::compiler::pattern::PatternIndex::new(agent.allow.iter().map(|r| &r.pattern));
    let constraints = crate::compiler::pattern::PatternIndex::new(with_modes.iter().map(|c| &c.tool));
    for tool in catalogs.tools() {
        if !allows.any(&tool.name) {
            continue;
        }
        let matching = constraints.matching(&tool.name);
        let modes = agent.validation.iter().chain(
            matching.iter().filter_map(|&i| with_modes.get(i as usize)).filter_map(|c| c.validation.as_ref()),
        );
        let Some(&(mode, rule)) = modes.rev().max_by_key(|(mode, _)| *mode) else { continue };
        if mode == ArgValidation::Off {
            continue;
        }
        let key = (tool.name.clone(), mode);
        let validator = match compiled.get(&key) {
            Some(validator) => validator.clone(),
            None => match compile_schema(&tool.input_schema, mode) {
                Ok(validator) => {
                    let validator = Arc::new(validator);
                    compiled.insert(key, validator.clone());
                    validator
                }
                Err(error) => {
                    let code = Code::CatalogUnreadable;
                    let message = format!("the inputSchema of `{}` is not a valid JSON Schema", tool.name);
                    let diagnostic = match rules.location(rule) {
                        Some(at) => Diagnostic::new(code, message, at).with_label(error),
                        None => Diagnostic::unlocated(code, format!("{message}: {error}")),
                    };
                    diagnostics.push(
                        diagnostic.with_help("fix the catalog, or switch `validateArgs` off for this tool"),
                    );
                    continue;
                }
            },
        };
        checks.insert(tool.name.as_str().into(), SchemaCheck { validator, mode, rule });
    }
    checks
}

/// Compiles a schema; `strict` also refuses top-level arguments it does not name.
fn compile_schema(schema: &Value, mode: ArgValidation) -> Result<jsonschema::Validator, String> {
    let mut schema = schema.clone();
    if mode == ArgValidation::Strict
        && let Some(object) = schema.as_object_mut()
    {
        object.insert(String::from("additionalProperties"), Value::Bool(false));
    }
    jsonschema::options().should_validate_formats(false).build(&schema).map_err(|e| e.to_string())
}
