//! Stage 2: the policy as written — a typed AST with a location on every value.
//!
//! Nothing here is resolved yet: `extends` is a list of names, tool patterns
//! are text, conditions are unparsed strings. The checker turns this into a
//! [`crate::compiler::CheckedPolicySet`]; only the checker can build that type.

use crate::source::{Location, SourceId};

/// A value together with where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is in the policy text.
    pub location: Location,
}

impl<T> Spanned<T> {
    /// Pairs a value with its location.
    pub fn new(value: T, location: Location) -> Self {
        Spanned { value, location }
    }
}

/// Equality ignores the location, so tests can compare values only.
impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// One policy file.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyFile {
    /// The file.
    pub source: SourceId,
    /// Its agents, in source order.
    pub agents: Vec<AgentDecl>,
    /// `catalogs`: the MCP tool catalogs the policy is checked against.
    pub catalogs: Vec<CatalogDecl>,
    /// `lintIgnore`: lint rules silenced for the whole file.
    pub lint_ignore: Vec<Spanned<String>>,
    /// `approvers`: who may decide the approvals of gates naming them.
    pub approvers: Vec<ApproverDecl>,
    /// `servers`: what each MCP server a proxy starts may receive.
    pub servers: Vec<ServerDecl>,
}

/// `servers.<name>`: the credential scope of one MCP server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerDecl {
    /// The server's name, as `--server` and catalogs name it (the key).
    pub name: Spanned<String>,
    /// `env`: the environment variables it receives from the proxy's
    /// environment; every other one is withheld. `None`: not said.
    pub env: Option<Vec<Spanned<String>>>,
}

/// `approvers.<name>`: the Unix users and groups who may decide approvals
/// for gates whose `approver` is this name.
#[derive(Clone, Debug, PartialEq)]
pub struct ApproverDecl {
    /// The name gates use (the mapping key).
    pub name: Spanned<String>,
    /// `users`: user names, or numeric user ids.
    pub users: Vec<Spanned<String>>,
    /// `groups`: group names, or numeric group ids.
    pub groups: Vec<Spanned<String>>,
}

/// `catalogs[i]`: one MCP `tools/list` result the policy names.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogDecl {
    /// `file`: the JSON file, relative to the policy file.
    pub file: Spanned<String>,
    /// `server`: the prefix of the catalog's tools in policies (`github`
    /// makes `create_issue` into `github/create_issue`).
    pub server: Option<Spanned<String>>,
    /// `onDrift`: `log` (the default) or `deny` (calls to a tool whose live
    /// description differs from the catalog's are denied).
    pub on_drift: Option<Spanned<String>>,
}

/// `validateArgs`: whether calls are checked against the tool's `inputSchema`.
/// Ordered from loosest to strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum ArgValidation {
    /// No schema validation (the default).
    #[default]
    Off,
    /// Arguments must satisfy the tool's `inputSchema`.
    Schema,
    /// As `Schema`, and no argument the schema does not name.
    Strict,
}

impl ArgValidation {
    /// Every mode with its keyword.
    pub const ALL: [(&'static str, ArgValidation); 3] =
        [("off", ArgValidation::Off), ("schema", ArgValidation::Schema), ("strict", ArgValidation::Strict)];
}

/// `agentPolicies.<name>`: the policy of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentDecl {
    /// The agent's name (the mapping key).
    pub name: Spanned<String>,
    /// `description`.
    pub description: Option<Spanned<String>>,
    /// `extends`: parents to inherit from.
    pub extends: Vec<Spanned<String>>,
    /// `allowedTools`: tool names or globs.
    pub allowed_tools: Vec<Spanned<String>>,
    /// `deniedTools`: tool names or globs.
    pub denied_tools: Vec<Spanned<String>>,
    /// `constraints.<tool>`.
    pub constraints: Vec<ConstraintDecl>,
    /// `approvalGates.<tool>`.
    pub approval_gates: Vec<GateDecl>,
    /// `session`.
    pub session: Option<SessionDecl>,
    /// `auditLevel`.
    pub audit_level: Option<Spanned<AuditLevel>>,
    /// `sensitiveArgs`: paths (`card.number`, `principal.email`,
    /// `files[].content`) redacted wherever the call is recorded or shown.
    pub sensitive_args: Vec<Spanned<String>>,
    /// `auditFields`: paths whose values are recorded even at `metadata`.
    pub audit_fields: Vec<Spanned<String>>,
    /// `validateArgs`: schema validation of every allowed call's arguments.
    pub validate_args: Option<Spanned<ArgValidation>>,
    /// `lintIgnore`: lint rules silenced for this agent.
    pub lint_ignore: Vec<Spanned<String>>,
    /// `output`: what the agent's tool results may carry.
    pub output: Option<OutputDecl>,
}

/// `output`: budgets and detector actions for tool results, on an agent or
/// on a constraint's tools.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OutputDecl {
    /// Where the mapping is.
    pub location: Option<Location>,
    /// `maxBytes`.
    pub max_bytes: Option<Spanned<u64>>,
    /// `maxTokens`.
    pub max_tokens: Option<Spanned<u64>>,
    /// `onOversize`: `truncate` or `deny`.
    pub on_oversize: Option<Spanned<String>>,
    /// `secrets`: the action of the credential rules.
    pub secrets: Option<Spanned<String>>,
    /// `personalData.<kind>`: each kind's action.
    pub personal_data: Vec<(Spanned<String>, Spanned<String>)>,
    /// `injection`: the action of the injection heuristics.
    pub injection: Option<Spanned<String>>,
    /// `rules.<id>`: one rule's action.
    pub rules: Vec<(Spanned<String>, Spanned<String>)>,
    /// `patterns.<id>`: the policy's own rules (agents only).
    pub patterns: Vec<OutputPatternDecl>,
}

/// `output.patterns.<id>`.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputPatternDecl {
    /// The rule id (the mapping key).
    pub id: Spanned<String>,
    /// `regex`.
    pub regex: Option<Spanned<String>>,
    /// `action`.
    pub action: Option<Spanned<String>>,
    /// `keywords`: words one of which must occur for the rule to run.
    pub keywords: Vec<Spanned<String>>,
}

/// How much of a call the audit trail records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Nothing beyond the decision itself.
    None,
    /// Who called which tool, when, and the decision; no arguments.
    #[default]
    Metadata,
    /// Everything, arguments included.
    Full,
}

impl AuditLevel {
    /// The name used in policies and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditLevel::None => "none",
            AuditLevel::Metadata => "metadata",
            AuditLevel::Full => "full",
        }
    }
}

/// `constraints.<tool>`: conditions every call of the tool must meet.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstraintDecl {
    /// The tool name or glob (the mapping key).
    pub tool: Spanned<String>,
    /// `maxPerSession`.
    pub max_per_session: Option<Spanned<u64>>,
    /// `rateLimit`, as written (`100/min`).
    pub rate_limit: Option<Spanned<String>>,
    /// `requiresFields`.
    pub requires_fields: Vec<Spanned<String>>,
    /// `params.<arg>`.
    pub params: Vec<ParamDecl>,
    /// `when`.
    pub when: Option<ConditionText>,
    /// `validateArgs`: overrides the agent's setting for these tools.
    pub validate_args: Option<Spanned<ArgValidation>>,
    /// `rego`: a Rego rule (`data.<package>.<rule>`) that must be true.
    pub rego: Option<Spanned<String>>,
    /// `cost`: what one call costs, in the unit of `session.maxCost`.
    pub cost: Option<Spanned<f64>>,
    /// `output`: output rules for these tools, over the agent's.
    pub output: Option<OutputDecl>,
    /// `timeout`: how long a call may run (`30s`, `500ms`).
    pub timeout: Option<Spanned<String>>,
    /// `onFailure`: what the model is told when a call fails.
    pub on_failure: Option<FailureDecl>,
    /// `circuitBreaker`: stop calling a tool that keeps failing.
    pub circuit_breaker: Option<CircuitDecl>,
}

/// `constraints.<tool>.circuitBreaker`.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitDecl {
    /// Where the mapping is.
    pub location: Location,
    /// `failures`: failed calls in a row that open the circuit.
    pub failures: Option<Spanned<u64>>,
    /// `cooldown`: how long it stays open (`60s`).
    pub cooldown: Option<Spanned<String>>,
}

/// `constraints.<tool>.onFailure`: the failure policy of a tool.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureDecl {
    /// Where the mapping is.
    pub location: Location,
    /// `retries`: how many failed calls in a row the model may retry.
    pub retries: Option<Spanned<u64>>,
    /// `retryAfter`: how long to wait before a retry (`2s`).
    pub retry_after: Option<Spanned<String>>,
    /// `fallback`: a tool to try instead.
    pub fallback: Option<Spanned<String>>,
    /// `userMessage`: what to tell the user if nothing recovers.
    pub user_message: Option<Spanned<String>>,
}

/// `params.<arg>`: JSON Schema keywords for one argument.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// The argument name (the mapping key).
    pub name: Spanned<String>,
    /// The keywords.
    pub schema: ParamSchema,
}

/// The JSON Schema keywords toolgate understands for an argument.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParamSchema {
    /// Where the schema mapping is.
    pub location: Option<Location>,
    /// `type`: one type or a list of types.
    pub types: Option<Spanned<Vec<JsonType>>>,
    /// `enum`.
    pub enumeration: Option<Spanned<Vec<serde_json::Value>>>,
    /// `const`.
    pub constant: Option<Spanned<serde_json::Value>>,
    /// `minimum`.
    pub minimum: Option<Spanned<f64>>,
    /// `maximum`.
    pub maximum: Option<Spanned<f64>>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: Option<Spanned<f64>>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: Option<Spanned<f64>>,
    /// `minLength`.
    pub min_length: Option<Spanned<u64>>,
    /// `maxLength`.
    pub max_length: Option<Spanned<u64>>,
    /// `pattern`.
    pub pattern: Option<Spanned<String>>,
    /// `items`.
    pub items: Option<Box<ParamSchema>>,
    /// `minItems`.
    pub min_items: Option<Spanned<u64>>,
    /// `maxItems`.
    pub max_items: Option<Spanned<u64>>,
    /// `pathWithin`: the roots a path must be within.
    pub path_within: Option<Spanned<Vec<Spanned<String>>>>,
    /// `pathNotWithin`: the directories a path must not be within.
    pub path_not_within: Option<Spanned<Vec<Spanned<String>>>>,
    /// `properties`: rules for fields of an object.
    pub properties: Option<Vec<ParamDecl>>,
}

/// A JSON Schema primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonType {
    /// `string`.
    String,
    /// `integer`.
    Integer,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// `array`.
    Array,
    /// `object`.
    Object,
    /// `null`.
    Null,
}

impl JsonType {
    /// Every type with its keyword.
    pub const ALL: [(&'static str, JsonType); 7] = [
        ("string", JsonType::String),
        ("integer", JsonType::Integer),
        ("number", JsonType::Number),
        ("boolean", JsonType::Boolean),
        ("array", JsonType::Array),
        ("object", JsonType::Object),
        ("null", JsonType::Null),
    ];

    /// The keyword, e.g. `integer`.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map_or("?", |(name, _)| name)
    }

    /// Whether a JSON value has this type (integers are numbers too).
    pub fn admits(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (self, value) {
            (JsonType::String, V::String(_)) => true,
            (JsonType::Number, V::Number(_)) => true,
            (JsonType::Integer, V::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            (JsonType::Boolean, V::Bool(_)) => true,
            (JsonType::Array, V::Array(_)) => true,
            (JsonType::Object, V::Object(_)) => true,
            (JsonType::Null, V::Null) => true,
            _ => false,
        }
    }
}

/// `approvalGates.<tool>`: when a call needs a human's approval.
#[derive(Clone, Debug, PartialEq)]
pub struct GateDecl {
    /// The tool name or glob (the mapping key).
    pub tool: Spanned<String>,
    /// Where the gate's mapping is.
    pub location: Location,
    /// `required`.
    pub required: Option<Spanned<bool>>,
    /// `when`.
    pub when: Option<ConditionText>,
    /// `approver`.
    pub approver: Option<Spanned<String>>,
    /// `maxAmount`.
    pub max_amount: Option<Spanned<f64>>,
    /// `amountField`: which argument holds the amount (default `amount`).
    pub amount_field: Option<Spanned<String>>,
    /// `rego`: a Rego rule (`data.<package>.<rule>`); approval is required when it is true.
    pub rego: Option<Spanned<String>>,
    /// `description`: what the gate is for, shown to approvers.
    pub description: Option<Spanned<String>>,
    /// `approvals`: how many different people must grant (four eyes: 2).
    pub approvals: Option<Spanned<u64>>,
}

/// `session`: limits over a whole session.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SessionDecl {
    /// `maxToolCalls`.
    pub max_tool_calls: Option<Spanned<u64>>,
    /// `maxCost`.
    pub max_cost: Option<Spanned<f64>>,
    /// `maxConsecutiveErrors`.
    pub max_consecutive_errors: Option<Spanned<u64>>,
}

/// The text of a `when` condition and where its characters are.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionText {
    /// The condition as the YAML string holds it.
    pub text: String,
    /// The whole YAML scalar.
    pub location: Location,
    /// The byte offset in the file where `text` starts, when the scalar's
    /// characters map one to one onto `text` (plain or quoted without
    /// escapes). `None` when they do not; diagnostics then point at the
    /// whole scalar.
    pub text_start: Option<u32>,
}
