//! Decoding one policy file's node tree into the AST.

use super::decode::Decoder;
use crate::compiler::ast::*;
use crate::compiler::yaml::{Node, Value};
use crate::diagnostic::{Code, Diagnostic};

const ROOT_KEYS: &[&str] = &["agentPolicies", "catalogs", "approvers", "servers", "lintIgnore"];
const SERVER_KEYS: &[&str] = &["env", "description"];
const APPROVER_KEYS: &[&str] = &["users", "groups", "description"];
const CATALOG_KEYS: &[&str] = &["file", "server", "onDrift"];
const AGENT_KEYS: &[&str] = &[
    "description",
    "extends",
    "allowedTools",
    "deniedTools",
    "constraints",
    "approvalGates",
    "session",
    "auditLevel",
    "sensitiveArgs",
    "auditFields",
    "validateArgs",
    "lintIgnore",
    "output",
];
const CONSTRAINT_KEYS: &[&str] = &[
    "maxPerSession",
    "rateLimit",
    "requiresFields",
    "params",
    "when",
    "rego",
    "validateArgs",
    "cost",
    "output",
    "timeout",
    "onFailure",
    "circuitBreaker",
    "description",
];
const CIRCUIT_KEYS: &[&str] = &["failures", "cooldown"];
const FAILURE_KEYS: &[&str] = &["retries", "retryAfter", "fallback", "userMessage"];
const OUTPUT_KEYS: &[&str] =
    &["maxBytes", "maxTokens", "onOversize", "secrets", "personalData", "injection", "rules", "patterns"];
const CONSTRAINT_OUTPUT_KEYS: &[&str] =
    &["maxBytes", "maxTokens", "onOversize", "secrets", "personalData", "injection", "rules"];
const OUTPUT_PATTERN_KEYS: &[&str] = &["regex", "action", "keywords", "description"];
const GATE_KEYS: &[&str] =
    &["required", "when", "rego", "approver", "approvals", "maxAmount", "amountField", "description"];
const SESSION_KEYS: &[&str] = &["maxToolCalls", "maxCost", "maxConsecutiveErrors"];
const PARAM_KEYS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "pathWithin",
    "pathNotWithin",
    "description",
];

/// What one file declares.
#[derive(Default)]
pub struct FileDecls {
    pub agents: Vec<AgentDecl>,
    pub catalogs: Vec<CatalogDecl>,
    pub lint_ignore: Vec<Spanned<String>>,
    pub approvers: Vec<ApproverDecl>,
    pub servers: Vec<ServerDecl>,
}

/// Decodes a whole file; `root` is its top-level node.
pub fn decode_file(decoder: &mut Decoder<'_>, root: &Node) -> FileDecls {
    let Some(fields) = decoder.fields(root, "the policy file", ROOT_KEYS) else {
        return FileDecls::default();
    };
    let catalogs = match fields.get("catalogs") {
        Some(node) => decode_catalogs(decoder, node),
        None => Vec::new(),
    };
    let lint_ignore =
        fields.get("lintIgnore").map(|n| decoder.string_list(n, "`lintIgnore`")).unwrap_or_default();
    let approvers = fields.get("approvers").map(|n| decode_approvers(decoder, n));
    let servers = fields.get("servers").map(|n| decode_servers(decoder, n));
    // A file may declare only approvers or servers (one file the security
    // team owns).
    let agents = match (fields.get("agentPolicies"), approvers.is_some() || servers.is_some()) {
        (None, true) => Vec::new(),
        (policies, _) => decode_agents(decoder, root, policies),
    };
    let approvers = approvers.unwrap_or_default();
    let servers = servers.unwrap_or_default();
    FileDecls { agents, catalogs, lint_ignore, approvers, servers }
}

fn decode_servers(decoder: &mut Decoder<'_>, node: &Node) -> Vec<ServerDecl> {
    let entries = decoder.map(node, "`servers`").unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|(name, node)| {
            let what = format!("server `{}`", name.value);
            let fields = decoder.fields(node, &what, SERVER_KEYS)?;
            if let Some(description) = fields.get("description") {
                decoder.string(description, "`description`");
            }
            let env = fields.get("env").map(|n| decoder.string_list(n, "`env`"));
            Some(ServerDecl { name, env })
        })
        .collect()
}

fn decode_approvers(decoder: &mut Decoder<'_>, node: &Node) -> Vec<ApproverDecl> {
    let Some(entries) = decoder.map(node, "`approvers`") else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|(name, node)| {
            if let Some(problem) =
                crate::compiler::names::name_problem(crate::compiler::names::Name::Approver, &name.value)
            {
                decoder.report(
                    Diagnostic::new(
                        Code::InvalidName,
                        format!("invalid approver name `{}`", name.value.escape_debug()),
                        name.location,
                    )
                    .with_label(problem)
                    .with_help("approver names are 1 to 256 ASCII letters, digits and `_ - . /`"),
                );
            }
            let what = format!("approver `{}`", name.value);
            let fields = decoder.fields(node, &what, APPROVER_KEYS)?;
            let list = |decoder: &mut Decoder<'_>, key: &str| {
                fields.get(key).map(|n| decoder.string_list(n, &format!("`{key}`"))).unwrap_or_default()
            };
            let (users, groups) = (list(decoder, "users"), list(decoder, "groups"));
            if let Some(description) = fields.get("description") {
                decoder.string(description, "`description`");
            }
            if users.is_empty() && groups.is_empty() {
                decoder.report(
                    Diagnostic::new(
                        Code::MissingKey,
                        format!(
                            "approver `{}` names no `users` or `groups`: nobody could approve",
                            name.value
                        ),
                        name.location,
                    )
                    .with_help("list who approves: `users: [alice]` or `groups: [finance]`"),
                );
            }
            Some(ApproverDecl { name, users, groups })
        })
        .collect()
}

fn decode_catalogs(decoder: &mut Decoder<'_>, node: &Node) -> Vec<CatalogDecl> {
    let Value::Seq(items) = &node.value else {
        let diagnostic = Diagnostic::new(
            Code::WrongType,
            format!("`catalogs` must be a list, found {}", node.value.kind()),
            decoder.at(node.span),
        )
        .with_help(
            "write `catalogs:` followed by entries like `- {file: github.tools.json, server: github}`",
        );
        decoder.report(diagnostic);
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let fields = decoder.fields(item, "a catalog", CATALOG_KEYS)?;
            let server = fields.get("server").and_then(|n| decoder.string(n, "`server`"));
            let on_drift = fields.get("onDrift").and_then(|n| decoder.string(n, "`onDrift`"));
            let Some(file) = fields.get("file") else {
                let diagnostic =
                    Diagnostic::new(Code::MissingKey, "catalog entry has no `file`", decoder.at(item.span))
                        .with_help("name the `tools/list` JSON file, relative to this policy file");
                decoder.report(diagnostic);
                return None;
            };
            Some(CatalogDecl { file: decoder.string(file, "`file`")?, server, on_drift })
        })
        .collect()
}

fn decode_agents(decoder: &mut Decoder<'_>, root: &Node, policies: Option<&Node>) -> Vec<AgentDecl> {
    let Some(policies) = policies else {
        let diagnostic =
            Diagnostic::new(Code::MissingKey, "policy file has no `agentPolicies`", decoder.at(root.span))
                .with_help("put the agents under a top-level `agentPolicies:` mapping");
        decoder.report(diagnostic);
        return Vec::new();
    };
    let Some(entries) = decoder.map(policies, "`agentPolicies`") else {
        return Vec::new();
    };
    entries.into_iter().filter_map(|(name, node)| decode_agent(decoder, name, node)).collect()
}

fn decode_agent(decoder: &mut Decoder<'_>, name: Spanned<String>, node: &Node) -> Option<AgentDecl> {
    if let Some(problem) =
        crate::compiler::names::name_problem(crate::compiler::names::Name::Agent, &name.value)
    {
        decoder.report(
            Diagnostic::new(
                Code::InvalidName,
                format!("invalid agent name `{}`", name.value.escape_debug()),
                name.location,
            )
            .with_label(problem)
            .with_help("agent names are 1 to 256 ASCII letters, digits and `_ - . /`"),
        );
    }
    let what = format!("agent `{}`", name.value);
    let fields = decoder.fields(node, &what, AGENT_KEYS)?;
    let strings = |decoder: &mut Decoder<'_>, key: &str| {
        fields.get(key).map(|n| decoder.string_list(n, &format!("`{key}`"))).unwrap_or_default()
    };
    let extends = strings(decoder, "extends");
    let allowed_tools = strings(decoder, "allowedTools");
    let denied_tools = strings(decoder, "deniedTools");
    let description = fields.get("description").and_then(|n| decoder.string(n, "`description`"));
    let constraints = fields
        .get("constraints")
        .and_then(|n| decoder.map(n, "`constraints`"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(tool, n)| decode_constraint(decoder, tool, n))
        .collect();
    let approval_gates = fields
        .get("approvalGates")
        .and_then(|n| decoder.map(n, "`approvalGates`"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(tool, n)| decode_gate(decoder, tool, n))
        .collect();
    let session = fields.get("session").and_then(|n| decode_session(decoder, n));
    let audit_level = fields.get("auditLevel").and_then(|n| decode_audit_level(decoder, n));
    let sensitive_args = strings(decoder, "sensitiveArgs");
    let audit_fields = strings(decoder, "auditFields");
    let validate_args = fields.get("validateArgs").and_then(|n| decode_validation(decoder, n));
    let lint_ignore = strings(decoder, "lintIgnore");
    let output = fields.get("output").and_then(|n| decode_output(decoder, n, OUTPUT_KEYS));
    Some(AgentDecl {
        name,
        description,
        extends,
        allowed_tools,
        denied_tools,
        constraints,
        approval_gates,
        session,
        audit_level,
        sensitive_args,
        audit_fields,
        validate_args,
        lint_ignore,
        output,
    })
}

fn decode_output(decoder: &mut Decoder<'_>, node: &Node, keys: &[&'static str]) -> Option<OutputDecl> {
    let fields = decoder.fields(node, "`output`", keys)?;
    let actions = |decoder: &mut Decoder<'_>, key: &str| -> Vec<(Spanned<String>, Spanned<String>)> {
        let what = format!("`output.{key}`");
        let entries = fields.get(key).and_then(|n| decoder.map(n, &what)).unwrap_or_default();
        entries
            .into_iter()
            .filter_map(|(name, n)| {
                decoder.string(n, &format!("`output.{key}.{}`", name.value)).map(|a| (name, a))
            })
            .collect()
    };
    let personal_data = actions(decoder, "personalData");
    let rules = actions(decoder, "rules");
    let patterns = fields
        .get("patterns")
        .and_then(|n| decoder.map(n, "`output.patterns`"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, n)| {
            let what = format!("the output pattern `{}`", id.value);
            let fields = decoder.fields(n, &what, OUTPUT_PATTERN_KEYS)?;
            if let Some(description) = fields.get("description") {
                decoder.string(description, "`description`");
            }
            Some(OutputPatternDecl {
                regex: fields.get("regex").and_then(|n| decoder.string(n, "`regex`")),
                action: fields.get("action").and_then(|n| decoder.string(n, "`action`")),
                keywords: fields
                    .get("keywords")
                    .map(|n| decoder.string_list(n, "`keywords`"))
                    .unwrap_or_default(),
                id,
            })
        })
        .collect();
    Some(OutputDecl {
        location: Some(decoder.at(node.span)),
        max_bytes: fields.get("maxBytes").and_then(|n| decoder.count(n, "`maxBytes`")),
        max_tokens: fields.get("maxTokens").and_then(|n| decoder.count(n, "`maxTokens`")),
        on_oversize: fields.get("onOversize").and_then(|n| decoder.string(n, "`onOversize`")),
        secrets: fields.get("secrets").and_then(|n| decoder.string(n, "`secrets`")),
        personal_data,
        injection: fields.get("injection").and_then(|n| decoder.string(n, "`injection`")),
        rules,
        patterns,
    })
}

fn decode_constraint(
    decoder: &mut Decoder<'_>,
    tool: Spanned<String>,
    node: &Node,
) -> Option<ConstraintDecl> {
    let what = format!("the constraint on `{}`", tool.value);
    let fields = decoder.fields(node, &what, CONSTRAINT_KEYS)?;
    let max_per_session = fields.get("maxPerSession").and_then(|n| decoder.count(n, "`maxPerSession`"));
    let rate_limit = fields.get("rateLimit").and_then(|n| decoder.string(n, "`rateLimit`"));
    let requires_fields =
        fields.get("requiresFields").map(|n| decoder.string_list(n, "`requiresFields`")).unwrap_or_default();
    let params = fields
        .get("params")
        .and_then(|n| decoder.map(n, "`params`"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, n)| {
            let what = format!("the rules of argument `{}`", name.value);
            decode_schema(decoder, n, &what).map(|schema| ParamDecl { name, schema })
        })
        .collect();
    let when = fields.get("when").and_then(|n| decode_condition(decoder, n));
    if let Some(description) = fields.get("description") {
        decoder.string(description, "`description`");
    }
    let validate_args = fields.get("validateArgs").and_then(|n| decode_validation(decoder, n));
    let rego = fields.get("rego").and_then(|n| decoder.string(n, "`rego`"));
    let cost = fields.get("cost").and_then(|n| decoder.number(n, "`cost`"));
    let output = fields.get("output").and_then(|n| decode_output(decoder, n, CONSTRAINT_OUTPUT_KEYS));
    let timeout = fields.get("timeout").and_then(|n| decoder.string(n, "`timeout`"));
    let on_failure = fields.get("onFailure").and_then(|n| {
        let failure = decoder.fields(n, "`onFailure`", FAILURE_KEYS)?;
        Some(FailureDecl {
            location: decoder.at(n.span),
            retries: failure.get("retries").and_then(|n| decoder.count(n, "`retries`")),
            retry_after: failure.get("retryAfter").and_then(|n| decoder.string(n, "`retryAfter`")),
            fallback: failure.get("fallback").and_then(|n| decoder.string(n, "`fallback`")),
            user_message: failure.get("userMessage").and_then(|n| decoder.string(n, "`userMessage`")),
        })
    });
    let circuit_breaker = fields.get("circuitBreaker").and_then(|n| {
        let circuit = decoder.fields(n, "`circuitBreaker`", CIRCUIT_KEYS)?;
        Some(CircuitDecl {
            location: decoder.at(n.span),
            failures: circuit.get("failures").and_then(|n| decoder.count(n, "`failures`")),
            cooldown: circuit.get("cooldown").and_then(|n| decoder.string(n, "`cooldown`")),
        })
    });
    Some(ConstraintDecl {
        tool,
        max_per_session,
        rate_limit,
        requires_fields,
        params,
        when,
        validate_args,
        rego,
        cost,
        output,
        timeout,
        on_failure,
        circuit_breaker,
    })
}

fn decode_gate(decoder: &mut Decoder<'_>, tool: Spanned<String>, node: &Node) -> Option<GateDecl> {
    let what = format!("the approval gate on `{}`", tool.value);
    let fields = decoder.fields(node, &what, GATE_KEYS)?;
    Some(GateDecl {
        description: fields.get("description").and_then(|n| decoder.string(n, "`description`")),
        location: decoder.at(node.span),
        required: fields.get("required").and_then(|n| decoder.boolean(n, "`required`")),
        when: fields.get("when").and_then(|n| decode_condition(decoder, n)),
        approver: fields.get("approver").and_then(|n| decoder.string(n, "`approver`")),
        max_amount: fields.get("maxAmount").and_then(|n| decoder.number(n, "`maxAmount`")),
        amount_field: fields.get("amountField").and_then(|n| decoder.string(n, "`amountField`")),
        rego: fields.get("rego").and_then(|n| decoder.string(n, "`rego`")),
        approvals: fields.get("approvals").and_then(|n| decoder.count(n, "`approvals`")),
        tool,
    })
}

fn decode_session(decoder: &mut Decoder<'_>, node: &Node) -> Option<SessionDecl> {
    let fields = decoder.fields(node, "`session`", SESSION_KEYS)?;
    Some(SessionDecl {
        max_tool_calls: fields.get("maxToolCalls").and_then(|n| decoder.count(n, "`maxToolCalls`")),
        max_cost: fields.get("maxCost").and_then(|n| decoder.number(n, "`maxCost`")),
        max_consecutive_errors: fields
            .get("maxConsecutiveErrors")
            .and_then(|n| decoder.count(n, "`maxConsecutiveErrors`")),
    })
}

fn decode_audit_level(decoder: &mut Decoder<'_>, node: &Node) -> Option<Spanned<AuditLevel>> {
    let text = decoder.string(node, "`auditLevel`")?;
    let level = match text.value.as_str() {
        "none" => AuditLevel::None,
        "metadata" => AuditLevel::Metadata,
        "full" => AuditLevel::Full,
        other => {
            let mut diagnostic =
                Diagnostic::new(Code::InvalidValue, format!("unknown audit level `{other}`"), text.location)
                    .with_help("use one of `none`, `metadata`, `full`");
            diagnostic = diagnostic.with_suggestion(other, ["none", "metadata", "full"]);
            decoder.report(diagnostic);
            return None;
        }
    };
    Some(Spanned::new(level, text.location))
}

fn decode_validation(decoder: &mut Decoder<'_>, node: &Node) -> Option<Spanned<ArgValidation>> {
    let text = decoder.string(node, "`validateArgs`")?;
    let keywords = ArgValidation::ALL.map(|(k, _)| k);
    if let Some((_, mode)) = ArgValidation::ALL.iter().find(|(k, _)| *k == text.value) {
        return Some(Spanned::new(*mode, text.location));
    }
    let mut diagnostic = Diagnostic::new(
        Code::InvalidValue,
        format!("unknown `validateArgs` mode `{}`", text.value),
        text.location,
    )
    .with_help("use `schema` (arguments must satisfy the tool's inputSchema), `strict` (and no other arguments) or `off`");
    diagnostic = diagnostic.with_suggestion(&text.value, keywords);
    decoder.report(diagnostic);
    None
}

fn decode_condition(decoder: &mut Decoder<'_>, node: &Node) -> Option<ConditionText> {
    let text = decoder.string(node, "`when`")?;
    let start = node.span.start as usize;
    let raw = decoder.slice(node.span);
    let text_start =
        raw.and_then(|raw| content_offset(raw, &text.value)).map(|offset| (start + offset) as u32);
    Some(ConditionText { text: text.value, location: text.location, text_start })
}

/// Where the characters of `value` start inside the scalar's source text
/// `raw`, when they map one to one (plain, or quoted without escapes).
fn content_offset(raw: &str, value: &str) -> Option<usize> {
    if raw == value {
        return Some(0);
    }
    let quoted =
        (raw.starts_with('"') && raw.ends_with('"')) || (raw.starts_with('\'') && raw.ends_with('\''));
    (quoted && raw.len() >= 2 && &raw[1..raw.len() - 1] == value).then_some(1)
}

fn decode_schema(decoder: &mut Decoder<'_>, node: &Node, what: &str) -> Option<ParamSchema> {
    let fields = decoder.fields(node, what, PARAM_KEYS)?;
    let mut schema = ParamSchema { location: Some(decoder.at(node.span)), ..ParamSchema::default() };
    if let Some(n) = fields.get("type") {
        schema.types = decode_types(decoder, n);
    }
    if let Some(n) = fields.get("enum") {
        let values = match &n.value {
            Value::Seq(items) => items.iter().filter_map(|i| decoder.json(i, "`enum`")).collect(),
            _ => {
                let diagnostic = Diagnostic::new(
                    Code::WrongType,
                    format!("`enum` must be a list, found {}", n.value.kind()),
                    decoder.at(n.span),
                );
                decoder.report(diagnostic);
                Vec::new()
            }
        };
        schema.enumeration = Some(Spanned::new(values, decoder.at(n.span)));
    }
    if let Some(n) = fields.get("const") {
        schema.constant = decoder.json(n, "`const`").map(|v| Spanned::new(v, decoder.at(n.span)));
    }
    let number = |decoder: &mut Decoder<'_>, key: &str| {
        fields.get(key).and_then(|n| decoder.number(n, &format!("`{key}`")))
    };
    schema.minimum = number(decoder, "minimum");
    schema.maximum = number(decoder, "maximum");
    schema.exclusive_minimum = number(decoder, "exclusiveMinimum");
    schema.exclusive_maximum = number(decoder, "exclusiveMaximum");
    let count = |decoder: &mut Decoder<'_>, key: &str| {
        fields.get(key).and_then(|n| decoder.count(n, &format!("`{key}`")))
    };
    schema.min_length = count(decoder, "minLength");
    schema.max_length = count(decoder, "maxLength");
    schema.min_items = count(decoder, "minItems");
    schema.max_items = count(decoder, "maxItems");
    schema.pattern = fields.get("pattern").and_then(|n| decoder.string(n, "`pattern`"));
    if let Some(n) = fields.get("items") {
        schema.items = decode_schema(decoder, n, "`items`").map(Box::new);
    }
    if let Some(n) = fields.get("properties") {
        schema.properties = decoder.map(n, "`properties`").map(|entries| {
            entries
                .into_iter()
                .filter_map(|(name, n)| {
                    let what = format!("the rules of field `{}`", name.value);
                    decode_schema(decoder, n, &what).map(|schema| ParamDecl { name, schema })
                })
                .collect()
        });
    }
    let paths = |decoder: &mut Decoder<'_>, key: &str| {
        let n = fields.get(key)?;
        let roots = match &n.value {
            Value::Str(_) => vec![decoder.string(n, &format!("`{key}`"))?],
            _ => decoder.string_list(n, &format!("`{key}`")),
        };
        Some(Spanned::new(roots, decoder.at(n.span)))
    };
    schema.path_within = paths(decoder, "pathWithin");
    schema.path_not_within = paths(decoder, "pathNotWithin");
    if let Some(description) = fields.get("description") {
        decoder.string(description, "`description`");
    }
    Some(schema)
}

fn decode_types(decoder: &mut Decoder<'_>, node: &Node) -> Option<Spanned<Vec<JsonType>>> {
    let names: Vec<_> = match &node.value {
        Value::Str(_) => vec![decoder.string(node, "`type`")?],
        Value::Seq(_) => decoder.string_list(node, "`type`"),
        _ => {
            let diagnostic = Diagnostic::new(
                Code::WrongType,
                format!("`type` must be a type name or a list of them, found {}", node.value.kind()),
                decoder.at(node.span),
            );
            decoder.report(diagnostic);
            return None;
        }
    };
    let mut types = Vec::with_capacity(names.len());
    for name in names {
        match JsonType::ALL.iter().find(|(k, _)| *k == name.value) {
            Some((_, t)) => types.push(*t),
            None => {
                let keywords = JsonType::ALL.map(|(k, _)| k);
                let mut diagnostic = Diagnostic::new(
                    Code::InvalidValue,
                    format!("unknown type `{}`", name.value),
                    name.location,
                )
                .with_help(format!("use one of: {}", keywords.join(", ")));
                diagnostic = diagnostic.with_suggestion(&name.value, keywords);
                decoder.report(diagnostic);
            }
        }
    }
    Some(Spanned::new(types, decoder.at(node.span)))
}
