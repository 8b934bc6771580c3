//! Compiling one agent's own declarations, then its effective policy.

use crate::compiler::privacy::{FieldPath, Privacy};
use std::collections::HashMap;
use std::sync::Arc;

use super::catalog;
use crate::compiler::ast::AuditLevel;
use crate::compiler::ast::{
    AgentDecl, ArgValidation, CircuitDecl, ConstraintDecl, FailureDecl, GateDecl, Spanned,
};
use crate::compiler::catalog::Catalogs;
use crate::compiler::checked::*;
use crate::compiler::condition::Condition;
use crate::compiler::condition::{ConditionError, Type, TypeEnv};
use crate::compiler::pattern::ToolPattern;
use crate::diagnostic::Diagnostics;
use crate::diagnostic::{Code, Diagnostic};
use crate::output::{OutputRules, PolicyPattern, Scanner};
use crate::source::Location;
use crate::source::Span;

/// The rules an agent declares itself, compiled.
pub struct OwnRules {
    pub allow: Vec<ToolRule>,
    pub deny: Vec<ToolRule>,
    pub constraints: Vec<CheckedConstraint>,
    pub gates: Vec<CheckedGate>,
    pub session: SessionLimits,
    pub audit: Option<AuditLevel>,
    pub privacy: Privacy,
    pub validation: Option<(ArgValidation, RuleId)>,
    /// `output`, and the patterns it declares.
    pub output: Option<(OutputRules, Vec<PolicyPattern>)>,
}

/// What compiling a constraint or gate needs to know about its agent.
struct Context<'a> {
    agent: &'a str,
    /// The ids of the agent's own output patterns.
    patterns: Vec<String>,
    envs: &'a HashMap<&'a str, TypeEnv>,
    catalogs: &'a Catalogs,
}

impl Context<'_> {
    /// The type environment of conditions on `tool` (the key as written).
    fn env(&self, key: &str, tool: &ToolPattern) -> TypeEnv {
        let declared = self.envs.get(key).cloned().unwrap_or_default();
        catalog::type_env(declared, &catalog::matched(tool, self.catalogs))
    }
}

pub fn compile(
    decl: &AgentDecl,
    catalogs: &Catalogs,
    rego: &mut super::rego_refs::RegoModules<'_>,
    rules: &mut Rules,
    diagnostics: &mut Diagnostics,
) -> OwnRules {
    let agent = decl.name.value.as_str();
    let tool_rules =
        |list: &[Spanned<String>], key: &str, rules: &mut Rules, diagnostics: &mut Diagnostics| {
            list.iter()
                .filter_map(|entry| {
                    let pattern = catalog::pattern(entry, catalogs, diagnostics)?;
                    let rule = rules.add(format!("{agent}.{key}.{}", entry.value), entry.location);
                    Some(ToolRule { pattern, rule })
                })
                .collect::<Vec<_>>()
        };
    let allow = tool_rules(&decl.allowed_tools, "allowedTools", rules, diagnostics);
    let deny = tool_rules(&decl.denied_tools, "deniedTools", rules, diagnostics);
    let arg_types = declared_arg_types(decl);
    let output = decl.output.as_ref().map(|o| super::output::compile(o, &[], diagnostics));
    let patterns = output.iter().flat_map(|(_, p)| p.iter().map(|p| p.id.clone())).collect();
    let context = Context { agent, patterns, envs: &arg_types, catalogs };
    let constraints =
        decl.constraints.iter().filter_map(|c| constraint(&context, c, rego, rules, diagnostics)).collect();
    let gates =
        decl.approval_gates.iter().filter_map(|g| gate(&context, g, rego, rules, diagnostics)).collect();
    let validation = decl.validate_args.as_ref().map(|mode| {
        if mode.value != ArgValidation::Off {
            for entry in decl.allowed_tools.iter().filter(|e| !catalogs.covers(&e.value)) {
                diagnostics.push(catalog::needs_catalog(
                    entry,
                    "`validateArgs` checks arguments against the tool's inputSchema",
                ));
            }
        }
        (mode.value, rules.add(format!("{agent}.validateArgs"), mode.location))
    });
    let session = decl.session.as_ref().map_or_else(SessionLimits::default, |s| SessionLimits {
        max_tool_calls: s.max_tool_calls.as_ref().map(|m| Limit {
            max: m.value,
            rule: rules.add(format!("{agent}.session.maxToolCalls"), m.location),
        }),
        max_cost: s
            .max_cost
            .as_ref()
            .map(|m| Limit { max: m.value, rule: rules.add(format!("{agent}.session.maxCost"), m.location) }),
        max_consecutive_errors: s.max_consecutive_errors.as_ref().map(|m| Limit {
            max: m.value,
            rule: rules.add(format!("{agent}.session.maxConsecutiveErrors"), m.location),
        }),
    });
    let paths = |entries: &[Spanned<String>], key: &str, diagnostics: &mut Diagnostics| -> Vec<FieldPath> {
        entries
            .iter()
            .filter_map(|entry| match FieldPath::parse(&entry.value) {
                Ok(path) => Some(path),
                Err(problem) => {
                    diagnostics.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            format!("`{}` in `{key}` is not a path", entry.value),
                            entry.location,
                        )
                        .with_label(problem)
                        .with_help("name an argument (`card.number`, `files[].content`), or `principal.<field>` or `context.<field>`"),
                    );
                    None
                }
            })
            .collect()
    };
    let privacy = Privacy {
        sensitive: paths(&decl.sensitive_args, "sensitiveArgs", diagnostics),
        recorded: paths(&decl.audit_fields, "auditFields", diagnostics),
    };
    OwnRules {
        allow,
        deny,
        constraints,
        gates,
        session,
        audit: decl.audit_level.as_ref().map(|a| a.value),
        privacy,
        validation,
        output,
    }
}

/// Declared argument types per tool key, for typing `args.<name>` in conditions.
fn declared_arg_types(decl: &AgentDecl) -> HashMap<&str, TypeEnv> {
    let mut envs: HashMap<&str, TypeEnv> = HashMap::new();
    for constraint in &decl.constraints {
        let env = envs.entry(constraint.tool.value.as_str()).or_default();
        for param in &constraint.params {
            let ty = param.schema.types.as_ref().map_or(Type::Dyn, |t| match t.value.as_slice() {
                [crate::compiler::ast::JsonType::String] => Type::String,
                [crate::compiler::ast::JsonType::Integer] => Type::Int,
                [crate::compiler::ast::JsonType::Number] => Type::Double,
                [crate::compiler::ast::JsonType::Boolean] => Type::Bool,
                [crate::compiler::ast::JsonType::Array] => Type::List,
                [crate::compiler::ast::JsonType::Object] => Type::Map,
                _ => Type::Dyn,
            });
            env.args.insert(param.name.value.clone(), ty);
        }
    }
    envs
}

fn constraint(
    context: &Context<'_>,
    decl: &ConstraintDecl,
    rego: &mut super::rego_refs::RegoModules<'_>,
    rules: &mut Rules,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedConstraint> {
    let tool = catalog::pattern(&decl.tool, context.catalogs, diagnostics)?;
    catalog::check_arguments(decl, &catalog::matched(&tool, context.catalogs), diagnostics);
    let base = format!("{}.constraints.{}", context.agent, decl.tool.value);
    let max_per_session = decl
        .max_per_session
        .as_ref()
        .map(|m| Limit { max: m.value, rule: rules.add(format!("{base}.maxPerSession"), m.location) });
    let rate_limit = decl.rate_limit.as_ref().and_then(|text| match parse_rate(&text.value) {
        Some((max, window_ms)) => {
            Some((Limit { max, rule: rules.add(format!("{base}.rateLimit"), text.location) }, window_ms))
        }
        None => {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("`rateLimit` `{}` is not a rate", text.value),
                    text.location,
                )
                .with_help(
                    "write a number of calls per second, minute or hour, e.g. `100/min`, `5/s`, `1000/hour`",
                ),
            );
            None
        }
    });
    let requires_fields = (!decl.requires_fields.is_empty()).then(|| {
        let location = decl.requires_fields[0].location;
        let fields = decl.requires_fields.iter().map(|f| f.value.clone()).collect();
        (fields, rules.add(format!("{base}.requiresFields"), location))
    });
    let params = decl
        .params
        .iter()
        .map(|p| ParamRule {
            name: p.name.value.clone(),
            check: super::params::compile(&p.schema, &p.name.value, diagnostics),
            rule: rules.add(format!("{base}.params.{}", p.name.value), p.name.location),
        })
        .collect();
    let env = context.env(&decl.tool.value, &tool);
    let when = decl.when.as_ref().and_then(|w| {
        let condition = condition(w, &env, diagnostics)?;
        Some((condition, rules.add(format!("{base}.when"), w.location)))
    });
    let validation = decl.validate_args.as_ref().map(|mode| {
        if mode.value != ArgValidation::Off && catalog::matched(&tool, context.catalogs).is_empty() {
            diagnostics.push(catalog::needs_catalog(
                &decl.tool,
                "`validateArgs` checks arguments against the tool's inputSchema",
            ));
        }
        (mode.value, rules.add(format!("{base}.validateArgs"), mode.location))
    });
    let rego = decl
        .rego
        .as_ref()
        .and_then(|r| Some((rego.rule(r, diagnostics)?, rules.add(format!("{base}.rego"), r.location))));
    let cost = decl.cost.as_ref().and_then(|cost| {
        if cost.value >= 0.0 {
            return Some(cost.value);
        }
        diagnostics.push(
            Diagnostic::new(Code::InvalidValue, format!("`cost` {} is negative", cost.value), cost.location)
                .with_help("a call's cost is 0 or more, in the unit of `session.maxCost`"),
        );
        None
    });
    Some(CheckedConstraint {
        tool,
        location: decl.tool.location,
        max_per_session,
        rate_limit,
        requires_fields,
        params,
        when,
        validation,
        rego,
        cost,
        output: decl.output.as_ref().map(|o| super::output::compile(o, &context.patterns, diagnostics).0),
        timeout_ms: decl.timeout.as_ref().and_then(|t| duration_ms(t, "timeout", diagnostics)),
        on_failure: decl.on_failure.as_ref().and_then(|f| failure_policy(f, diagnostics)),
        circuit: decl.circuit_breaker.as_ref().and_then(|c| {
            let breaker = breaker(c, diagnostics)?;
            Some((breaker, rules.add(format!("{base}.circuitBreaker"), c.location)))
        }),
    })
}

fn breaker(decl: &CircuitDecl, diagnostics: &mut Diagnostics) -> Option<Breaker> {
    let missing = |key: &str| {
        Diagnostic::new(Code::MissingKey, format!("`circuitBreaker` needs `{key}`"), decl.location)
            .with_help("write `circuitBreaker: {failures: 5, cooldown: 60s}`")
    };
    let failures = match &decl.failures {
        Some(n) if n.value >= 1 => n.value,
        Some(n) => {
            diagnostics.push(
                Diagnostic::new(Code::InvalidValue, "`failures` must be at least 1", n.location)
                    .with_help("the number of failed calls in a row that opens the circuit"),
            );
            return None;
        }
        None => {
            diagnostics.push(missing("failures"));
            return None;
        }
    };
    let Some(cooldown) = &decl.cooldown else {
        diagnostics.push(missing("cooldown"));
        return None;
    };
    Some(Breaker { failures, cooldown_ms: duration_ms(cooldown, "cooldown", diagnostics)? })
}

/// A duration (`30s`, `500ms`, `2m`) in milliseconds: at least 1 ms, at
/// most a day.
fn duration_ms(text: &Spanned<String>, key: &str, diagnostics: &mut Diagnostics) -> Option<u64> {
    let parsed = humantime::parse_duration(text.value.trim()).ok().map(|d| d.as_millis());
    match parsed {
        Some(ms @ 1..=86_400_000) => u64::try_from(ms).ok(),
        _ => {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("`{key}` `{}` is not a duration", text.value),
                    text.location,
                )
                .with_help("write a duration from 1ms to 24h, e.g. `30s`, `500ms`, `2m`"),
            );
            None
        }
    }
}

fn failure_policy(decl: &FailureDecl, diagnostics: &mut Diagnostics) -> Option<FailurePolicy> {
    let retry_after_ms = match &decl.retry_after {
        Some(text) => Some(duration_ms(text, "retryAfter", diagnostics)?),
        None => None,
    };
    if let Some(fallback) = &decl.fallback
        && let Some(problem) =
            crate::compiler::names::name_problem(crate::compiler::names::Name::Tool, &fallback.value)
    {
        diagnostics.push(
            Diagnostic::new(
                Code::InvalidName,
                format!("invalid fallback tool `{}`", fallback.value.escape_debug()),
                fallback.location,
            )
            .with_label(problem)
            .with_help("name one tool, server-qualified as the policy names it (`github/search_code`)"),
        );
        return None;
    }
    Some(FailurePolicy {
        retries: decl.retries.as_ref().map_or(0, |r| r.value),
        retry_after_ms,
        fallback: decl.fallback.as_ref().map(|f| f.value.clone()),
        user_message: decl.user_message.as_ref().map(|m| m.value.clone()),
    })
}

fn gate(
    context: &Context<'_>,
    decl: &GateDecl,
    rego: &mut super::rego_refs::RegoModules<'_>,
    rules: &mut Rules,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedGate> {
    let tool = catalog::pattern(&decl.tool, context.catalogs, diagnostics)?;
    let base = format!("{}.approvalGates.{}", context.agent, decl.tool.value);
    let env = context.env(&decl.tool.value, &tool);
    if let (Some(when), Some(reference)) = (&decl.when, &decl.rego) {
        diagnostics.push(
            Diagnostic::new(
                Code::AmbiguousGate,
                format!("approval gate on `{}` has both `when` and `rego`", decl.tool.value),
                reference.location,
            )
            .with_secondary(when.location, "and this condition")
            .with_help("use one trigger; express both in the Rego rule if you need both"),
        );
        return None;
    }
    if let Some(reference) = &decl.rego {
        let rule = rego.rule(reference, diagnostics)?;
        if decl.required.as_ref().is_some_and(|r| r.value) {
            diagnostics.push(
                Diagnostic::new(
                    Code::AmbiguousGate,
                    format!("approval gate on `{}` has both `required: true` and `rego`", decl.tool.value),
                    reference.location,
                )
                .with_help("keep `required: true` to gate every call, or `rego` to gate some calls"),
            );
            return None;
        }
        let gate_rule = rules.add(base.clone(), decl.tool.location);
        return Some(CheckedGate {
            tool,
            rule: gate_rule,
            trigger: GateTrigger::Rego(rule),
            approver: decl.approver.as_ref().map(|a| a.value.clone()),
            description: decl.description.as_ref().map(|d| d.value.clone()),
            approvals: quorum(decl, diagnostics)?,
            ceiling: decl.max_amount.as_ref().map(|max| AmountCeiling {
                max: max.value,
                field: decl.amount_field.as_ref().map_or_else(|| String::from("amount"), |f| f.value.clone()),
                rule: rules.add(format!("{base}.maxAmount"), max.location),
            }),
        });
    }
    let trigger = match (&decl.required, &decl.when) {
        (Some(required), Some(when)) if required.value => {
            diagnostics.push(
                Diagnostic::new(
                    Code::AmbiguousGate,
                    format!("approval gate on `{}` has both `required: true` and `when`", decl.tool.value),
                    required.location,
                )
                .with_secondary(when.location, "this condition would never matter")
                .with_help("keep `required: true` to gate every call, or `when` to gate some calls"),
            );
            return None;
        }
        (_, Some(when)) => GateTrigger::When(condition(when, &env, diagnostics)?),
        (Some(required), None) if required.value => GateTrigger::Always,
        (Some(required), None) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::InactiveGate,
                    format!("approval gate on `{}` never applies", decl.tool.value),
                    required.location,
                )
                .with_help("set `required: true`, add a `when` condition, or delete the gate"),
            );
            GateTrigger::Never
        }
        (None, None) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!(
                        "approval gate on `{}` says neither `required: true` nor `when`",
                        decl.tool.value
                    ),
                    decl.tool.location,
                )
                .with_help("add `required: true` to gate every call, or `when: <condition>` to gate some"),
            );
            return None;
        }
    };
    let rule = rules.add(base.clone(), decl.tool.location);
    let ceiling = decl.max_amount.as_ref().map(|max| AmountCeiling {
        max: max.value,
        field: decl.amount_field.as_ref().map_or_else(|| String::from("amount"), |f| f.value.clone()),
        rule: rules.add(format!("{base}.maxAmount"), max.location),
    });
    Some(CheckedGate {
        tool,
        rule,
        trigger,
        approver: decl.approver.as_ref().map(|a| a.value.clone()),
        description: decl.description.as_ref().map(|d| d.value.clone()),
        approvals: quorum(decl, diagnostics)?,
        ceiling,
    })
}

/// The most distinct approvals a gate may ask for.
const MAX_QUORUM: u64 = 10;

/// A gate's `approvals`: 1 unless it asks for more, at most
/// [`MAX_QUORUM`]; the agent's own user is one person.
fn quorum(decl: &GateDecl, diagnostics: &mut Diagnostics) -> Option<u32> {
    let Some(approvals) = &decl.approvals else { return Some(1) };
    let problem = match approvals.value {
        0 => Some(String::from("`approvals` is at least 1")),
        n if n > MAX_QUORUM => Some(format!("`approvals` is at most {MAX_QUORUM}")),
        n if n > 1
            && decl
                .approver
                .as_ref()
                .is_some_and(|a| a.value == crate::compiler::approvers::USER_APPROVER) =>
        {
            Some(format!(
                "`approver: user` is the agent's own user, one person: `approvals: {n}` cannot be met"
            ))
        }
        _ => None,
    };
    match problem {
        Some(message) => {
            diagnostics.push(
                Diagnostic::new(Code::InvalidValue, message, approvals.location).with_help(
                    "`approvals: 2` asks two different members of the gate's approver to grant each call (four eyes)",
                ),
            );
            None
        }
        None => u32::try_from(approvals.value).ok(),
    }
}

fn condition(
    text: &crate::compiler::ast::ConditionText,
    env: &TypeEnv,
    diagnostics: &mut Diagnostics,
) -> Option<Condition> {
    Condition::compile(&text.text, env)
        .map_err(|errors| {
            for error in errors {
                diagnostics.push(condition_diagnostic(text, error));
            }
        })
        .ok()
}

/// Places an error inside the condition string at its exact column in the YAML file.
fn condition_diagnostic(text: &crate::compiler::ast::ConditionText, error: ConditionError) -> Diagnostic {
    let location = match text.text_start {
        Some(start) => {
            let start = start as usize;
            let span = Span::new(start + error.span.start as usize, start + error.span.end as usize);
            Location::new(text.location.source, span)
        }
        None => text.location,
    };
    let mut diagnostic = Diagnostic::new(error.code, error.message, location);
    if let Some(label) = error.label {
        diagnostic = diagnostic.with_label(label);
    }
    if let Some(help) = error.help {
        diagnostic = diagnostic.with_help(help);
    }
    diagnostic
}

/// An agent's effective policy: its own rules, then its ancestors' in order.
pub fn effective(
    decl: &AgentDecl,
    lineage: &[usize],
    own: &[OwnRules],
    rules: &mut Rules,
    scanners: &mut HashMap<Vec<PolicyPattern>, Arc<Scanner>>,
    diagnostics: &mut Diagnostics,
) -> CheckedAgent {
    let parts: Vec<&OwnRules> = lineage.iter().map(|&i| &own[i]).collect();
    let collect =
        |f: fn(&OwnRules) -> &Vec<ToolRule>| parts.iter().flat_map(|p| f(p).iter().cloned()).collect();
    let tighter = |a: Option<Limit<u64>>, b: Option<Limit<u64>>| match (a, b) {
        (Some(a), Some(b)) => Some(if b.max < a.max { b } else { a }),
        (a, b) => a.or(b),
    };
    let mut session = SessionLimits::default();
    for part in &parts {
        session.max_tool_calls = tighter(session.max_tool_calls, part.session.max_tool_calls);
        session.max_consecutive_errors =
            tighter(session.max_consecutive_errors, part.session.max_consecutive_errors);
        session.max_cost = match (session.max_cost, part.session.max_cost) {
            (Some(a), Some(b)) => Some(if b.max < a.max { b } else { a }),
            (a, b) => a.or(b),
        };
    }
    let audit = parts.iter().filter_map(|p| p.audit).max_by_key(|level| *level as u8).unwrap_or_default();
    // The strictest validation anywhere in the lineage; the nearest on ties.
    let validation = parts.iter().filter_map(|p| p.validation).rev().max_by_key(|(mode, _)| *mode);
    let output = effective_output(decl, &parts, scanners, diagnostics);
    CheckedAgent {
        name: decl.name.value.clone(),
        allow: collect(|p| &p.allow),
        deny: collect(|p| &p.deny),
        constraints: parts.iter().flat_map(|p| p.constraints.iter().cloned()).collect(),
        gates: parts.iter().flat_map(|p| p.gates.iter().cloned()).collect(),
        session,
        audit,
        privacy: {
            let union = |of: fn(&Privacy) -> &Vec<FieldPath>| {
                let mut paths: Vec<FieldPath> =
                    parts.iter().flat_map(|p| of(&p.privacy).iter().cloned()).collect();
                paths.sort_by(|a, b| a.text.cmp(&b.text));
                paths.dedup_by(|a, b| a.text == b.text);
                paths
            };
            Privacy { sensitive: union(|p| &p.sensitive), recorded: union(|p| &p.recorded) }
        },
        validation,
        validators: HashMap::new(),
        output,
        lint_ignore: Vec::new(),
        default_deny: rules.add(format!("{}.defaultDeny", decl.name.value), decl.name.location),
    }
}

/// The agent's output rules: the strictest of its lineage's, with the
/// lineage's patterns; `None` when neither the agent nor a constraint of
/// its lineage says anything about output.
fn effective_output(
    decl: &AgentDecl,
    parts: &[&OwnRules],
    scanners: &mut HashMap<Vec<PolicyPattern>, Arc<Scanner>>,
    diagnostics: &mut Diagnostics,
) -> Option<AgentOutput> {
    let constrained = parts.iter().flat_map(|p| &p.constraints).any(|c| c.output.is_some());
    if !constrained && parts.iter().all(|p| p.output.is_none()) {
        return None;
    }
    let mut rules = OutputRules::default();
    let mut patterns: Vec<PolicyPattern> = Vec::new();
    for (own_rules, own_patterns) in parts.iter().filter_map(|p| p.output.as_ref()) {
        rules = rules.strictest(own_rules);
        for pattern in own_patterns {
            if !patterns.iter().any(|p| p.id == pattern.id) {
                patterns.push(pattern.clone());
            }
        }
    }
    let scanner = match scanners.get(&patterns) {
        Some(scanner) => scanner.clone(),
        None => match Scanner::new(&patterns) {
            Ok(scanner) => {
                let scanner = Arc::new(scanner);
                scanners.insert(patterns, scanner.clone());
                scanner
            }
            Err(error) => {
                diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidRegex,
                        format!("the output rules of agent `{}` cannot be compiled", decl.name.value),
                        decl.name.location,
                    )
                    .with_label(format!("{}: {}", error.id, error.message)),
                );
                return None;
            }
        },
    };
    Some(AgentOutput { rules, scanner })
}

/// `N/unit` → (N, the unit in milliseconds), for units s, sec, second,
/// min, minute, h, hour (plurals too); N must be at least 1.
fn parse_rate(text: &str) -> Option<(u64, u64)> {
    let (count, unit) = text.split_once('/')?;
    let count: u64 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let window_ms = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        _ => return None,
    };
    Some((count, window_ms))
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_are_a_positive_count_per_named_unit() {
        for (text, rate) in [
            ("100/min", Some((100, 60_000))),
            (" 5 / s ", Some((5, 1_000))),
            ("2/seconds", Some((2, 1_000))),
            ("3/hours", Some((3, 3_600_000))),
            ("5/", None),
            ("5/ss", None),
            ("5/hs", None),
            ("0/min", None),
            ("5/day", None),
            ("min", None),
        ] {
            assert_eq!(parse_rate(text), rate, "{text:?}");
        }
    }
}
