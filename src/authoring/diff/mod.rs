//! Semantic diff: what two policy sets decide differently.
//!
//! For every agent, each tool name either set can decide differently is
//! summarised as the decision table sees it (denied, not allowed, or
//! allowed with its constraints, gates and caps) and the two summaries are
//! compared rule by rule. Text that decides nothing (order of a list, YAML
//! style, anchors, comments, descriptions) never shows up.
//!
//! The names compared are every name either policy writes out, every tool
//! of either set's catalogs, and, for a glob no catalog describes, one
//! stand-in name it matches (`github/get_…` for `github/get_*`). Where
//! either set selects tools by the annotations a call carries (`where`
//! selectors on servers no catalog describes), each name is compared once
//! per combination of the annotations those selectors read.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

mod params;

use crate::compiler::catalog::{Hint, Hints};
use crate::compiler::checked::{CheckedPolicySet, GateTrigger};
use crate::compiler::params::ParamCheck;
use crate::compiler::pattern::ToolPattern;
use crate::engine::table::{AgentTable, DecisionTable, ToolPlan};

/// Which way a change to a rule moves what is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// More calls are allowed (or allowed with less oversight) than before.
    Widened,
    /// Fewer calls are allowed than before.
    Narrowed,
    /// Different, in a way toolgate cannot order: review it.
    Changed,
}

/// One difference between two policy sets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// The agent.
    pub agent: String,
    /// The tool, or `None` for the agent as a whole.
    pub tool: Option<String>,
    /// Widened, narrowed, or changed in a way that needs a reviewer.
    pub direction: Direction,
    /// What changed, e.g. `maxPerSession raised from 5 to 10`.
    pub what: String,
}

/// Every difference, sorted by agent, tool and direction.
pub fn diff(old: CheckedPolicySet, new: CheckedPolicySet) -> Vec<Change> {
    let (old_names, new_names) = (tool_names(&old), tool_names(&new));
    let (old_read, new_read) = (hints_read(&old), hints_read(&new));
    let old = DecisionTable::build(old);
    let new = DecisionTable::build(new);
    let agents: BTreeSet<&str> = old.agents.keys().chain(new.agents.keys()).map(|a| &**a).collect();
    let mut changes = Vec::new();
    for agent in agents {
        let mut push = |tool: Option<&str>, direction, what: String| {
            changes.push(Change { agent: agent.to_owned(), tool: tool.map(str::to_owned), direction, what });
        };
        let (a, b) = match (old.agents.get(agent), new.agents.get(agent)) {
            (Some(a), Some(b)) => (a, b),
            (None, Some(_)) => {
                push(None, Direction::Widened, String::from("new agent"));
                continue;
            }
            (Some(_), None) => {
                push(None, Direction::Narrowed, String::from("agent removed: all its calls are denied"));
                continue;
            }
            (None, None) => continue,
        };
        for (direction, what) in compare_agent(a, b) {
            push(None, direction, what);
        }
        let none = BTreeSet::new();
        let names = |all: &'_ BTreeMap<String, BTreeSet<String>>| all.get(agent).unwrap_or(&none).clone();
        let read: BTreeSet<Hint> =
            [&old_read, &new_read].iter().flat_map(|r| r.get(agent)).flatten().copied().collect();
        for tool in names(&old_names).union(&names(&new_names)) {
            for (hints, label) in annotation_cases(&read) {
                let summaries = (summarise(&old, a, tool, hints), summarise(&new, b, tool, hints));
                for (direction, what) in compare_tool(&summaries.0, &summaries.1) {
                    push(Some(&format!("{tool}{label}")), direction, what);
                }
            }
        }
    }
    changes.extend(compare_servers(old.servers(), new.servers()));
    changes.sort();
    changes
}

/// The credential scopes of servers (`servers.<name>.env`), reported under
/// the agent `(servers)`: a variable a server now receives widens, one it
/// no longer receives narrows; a server no longer scoped receives all of
/// its proxy's environment (widened), a newly scoped one only its list.
fn compare_servers(old: &BTreeMap<String, Vec<String>>, new: &BTreeMap<String, Vec<String>>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut push = |server: &str, direction, what: String| {
        changes.push(Change {
            agent: String::from("(servers)"),
            tool: Some(server.to_owned()),
            direction,
            what,
        });
    };
    for server in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        match (old.get(server), new.get(server)) {
            (Some(_), None) => push(
                server,
                Direction::Widened,
                String::from("no longer scoped: receives all of its proxy's environment"),
            ),
            (None, Some(env)) => push(
                server,
                Direction::Narrowed,
                format!(
                    "now receives only {}",
                    if env.is_empty() { String::from("no variable") } else { env.join(", ") }
                ),
            ),
            (Some(a), Some(b)) => {
                for variable in b.iter().filter(|v| !a.contains(v)) {
                    push(server, Direction::Widened, format!("now receives `{variable}`"));
                }
                for variable in a.iter().filter(|v| !b.contains(v)) {
                    push(server, Direction::Narrowed, format!("no longer receives `{variable}`"));
                }
            }
            (None, None) => {}
        }
    }
    changes
}

fn compare_agent(old: &AgentTable, new: &AgentTable) -> Vec<(Direction, String)> {
    let mut out = Vec::new();
    let session = |t: &AgentTable| t.session_cap.as_ref().map(|(cap, _)| cap.limit as f64);
    upper(&mut out, "session.maxToolCalls", session(old), session(new));
    let limit = |t: &AgentTable| t.limits.max_consecutive_errors.map(|l| l.max as f64);
    upper(&mut out, "session.maxConsecutiveErrors", limit(old), limit(new));
    let cost = |t: &AgentTable| t.limits.max_cost.map(|l| l.max);
    upper(&mut out, "session.maxCost", cost(old), cost(new));
    if old.audit != new.audit {
        let direction =
            if (new.audit as u8) < (old.audit as u8) { Direction::Widened } else { Direction::Narrowed };
        out.push((direction, format!("auditLevel {} → {}", old.audit.as_str(), new.audit.as_str())));
    }
    let redacted =
        |t: &AgentTable| t.privacy.sensitive.iter().map(|p| p.text.clone()).collect::<BTreeSet<_>>();
    for path in redacted(old).difference(&redacted(new)) {
        out.push((Direction::Widened, format!("`{path}` no longer redacted in the audit trail")));
    }
    for path in redacted(new).difference(&redacted(old)) {
        out.push((Direction::Narrowed, format!("`{path}` now redacted in the audit trail")));
    }
    let recorded =
        |t: &AgentTable| t.privacy.recorded.iter().map(|p| p.text.clone()).collect::<BTreeSet<_>>();
    for path in recorded(new).difference(&recorded(old)) {
        out.push((Direction::Widened, format!("`{path}` now recorded at the metadata level")));
    }
    for path in recorded(old).difference(&recorded(new)) {
        out.push((Direction::Narrowed, format!("`{path}` no longer recorded at the metadata level")));
    }
    let rules = |t: &AgentTable| t.output.as_ref().map(|o| o.rules.clone()).unwrap_or_default();
    compare_output(&mut out, "output", &rules(old), &rules(new));
    let patterns = |t: &AgentTable| -> BTreeMap<String, String> {
        let scanner = t.output.as_ref().map(|o| o.scanner.rules()).unwrap_or_default();
        let own = scanner.iter().filter(|r| r.governed == crate::output::scan::Governed::Policy);
        own.map(|r| (r.id.to_string(), r.pattern().to_owned())).collect()
    };
    let (old_patterns, new_patterns) = (patterns(old), patterns(new));
    for (id, regex) in &old_patterns {
        if new_patterns.get(id).is_some_and(|new| new != regex) {
            out.push((Direction::Changed, format!("output pattern `{id}`: regex changed")));
        }
    }
    out
}

/// Output rules: a budget raised or removed widens; an action weakened
/// (kill → deny → redact → flag → off) widens; `onOversize: deny` →
/// `truncate` widens; the opposites narrow.
fn compare_output(
    out: &mut Vec<(Direction, String)>,
    prefix: &str,
    old: &crate::output::OutputRules,
    new: &crate::output::OutputRules,
) {
    use crate::output::{Action, Oversize};
    let bytes = |r: &crate::output::OutputRules| r.max_bytes.map(|b| b as f64);
    upper(out, &format!("{prefix}.maxBytes"), bytes(old), bytes(new));
    let tokens = |r: &crate::output::OutputRules| r.max_tokens.map(|t| t as f64);
    upper(out, &format!("{prefix}.maxTokens"), tokens(old), tokens(new));
    let oversize = |r: &crate::output::OutputRules| r.oversize.unwrap_or(Oversize::Truncate);
    match (oversize(old), oversize(new)) {
        (Oversize::Deny, Oversize::Truncate) => {
            out.push((Direction::Widened, format!("{prefix}.onOversize deny → truncate")))
        }
        (Oversize::Truncate, Oversize::Deny) => {
            out.push((Direction::Narrowed, format!("{prefix}.onOversize truncate → deny")))
        }
        _ => {}
    }
    let mut actions = |name: String, a: Option<Action>, b: Option<Action>| {
        let (a, b) = (a.unwrap_or(Action::Off), b.unwrap_or(Action::Off));
        let direction = match a.cmp(&b) {
            std::cmp::Ordering::Less => Direction::Narrowed,
            std::cmp::Ordering::Greater => Direction::Widened,
            std::cmp::Ordering::Equal => return,
        };
        out.push((direction, format!("{prefix}.{name} {} → {}", a.as_str(), b.as_str())));
    };
    for class in old.classes.keys().chain(new.classes.keys()).collect::<BTreeSet<_>>() {
        actions(class.name(), old.classes.get(class).copied(), new.classes.get(class).copied());
    }
    for rule in old.rules.keys().chain(new.rules.keys()).collect::<BTreeSet<_>>() {
        actions(format!("rules.{rule}"), old.rules.get(rule).copied(), new.rules.get(rule).copied());
    }
}

/// An upper limit: raised or removed widens, lowered or added narrows.
fn upper(out: &mut Vec<(Direction, String)>, name: &str, old: Option<f64>, new: Option<f64>) {
    match (old, new) {
        (Some(o), Some(n)) if n > o => {
            out.push((Direction::Widened, format!("{name} raised from {o} to {n}")))
        }
        (Some(o), Some(n)) if n < o => {
            out.push((Direction::Narrowed, format!("{name} lowered from {o} to {n}")))
        }
        (Some(o), None) => out.push((Direction::Widened, format!("{name} {o} removed"))),
        (None, Some(n)) => out.push((Direction::Narrowed, format!("{name} {n} added"))),
        _ => {}
    }
}

/// The annotations each agent's `where` selectors read at decision time.
fn hints_read(policy: &CheckedPolicySet) -> BTreeMap<String, BTreeSet<Hint>> {
    let mut all = BTreeMap::new();
    for agent in &policy.agents {
        let patterns = agent.patterns();
        let read: BTreeSet<Hint> = patterns
            .filter_map(|p| match p {
                ToolPattern::Annotated { terms, .. } => Some(terms.iter().map(|(hint, _)| *hint)),
                _ => None,
            })
            .flatten()
            .collect();
        all.insert(agent.name.clone(), read);
    }
    all
}

/// The annotations to compare a name under, each with the label that
/// names it (`" where readOnlyHint"`): one case per combination of the
/// hints read that a tool can have, or the call without annotations when
/// none is read.
fn annotation_cases(read: &BTreeSet<Hint>) -> Vec<(Option<Hints>, String)> {
    if read.is_empty() {
        return vec![(None, String::new())];
    }
    let mut cases: BTreeMap<Vec<bool>, Hints> = BTreeMap::new();
    for bits in 0u8..16 {
        let annotations = Hint::ALL
            .iter()
            .enumerate()
            .map(|(i, (name, _))| ((*name).to_owned(), serde_json::Value::Bool(bits & (1 << i) != 0)))
            .collect();
        let hints = Hints::from_annotations(Some(&annotations));
        cases.entry(read.iter().map(|h| hints.has(*h)).collect()).or_insert(hints);
    }
    cases
        .into_iter()
        .map(|(has, hints)| {
            let terms: Vec<String> = read
                .iter()
                .zip(has)
                .map(
                    |(hint, has)| {
                        if has { hint.as_str().to_owned() } else { format!("not {}", hint.as_str()) }
                    },
                )
                .collect();
            (Some(hints), format!(" where {}", terms.join(" and ")))
        })
        .collect()
}

/// The names to compare, per agent of one set.
fn tool_names(policy: &CheckedPolicySet) -> BTreeMap<String, BTreeSet<String>> {
    let catalogs = policy.catalogs();
    let mut all = BTreeMap::new();
    for agent in &policy.agents {
        let patterns = agent.patterns();
        let mut names: BTreeSet<String> = catalogs.tools().map(|t| t.name.clone()).collect();
        for pattern in patterns {
            names.extend(pattern.names().iter().map(|n| n.to_string()));
            let glob = match pattern {
                ToolPattern::Glob { text, .. } => Some(&**text),
                ToolPattern::Annotated { text, .. } => {
                    text.split_once(" where ").map(|(glob, _)| glob.trim())
                }
                _ => None,
            };
            if let Some(glob) = glob
                && !catalogs.covers(glob)
                && let Some(stand_in) = stand_in(glob)
            {
                names.insert(stand_in);
            }
        }
        all.insert(agent.name.clone(), names);
    }
    all
}

/// A name a simple glob matches: each `*`, `**` and `?` becomes `…`.
/// Globs with classes or alternatives get none.
fn stand_in(glob: &str) -> Option<String> {
    if glob.contains(['[', ']', '{', '}', '\\']) {
        return None;
    }
    Some(glob.replace("**", "*").replace(['*', '?'], "…"))
}

/// What a set says about one tool, in comparable form.
#[derive(Debug)]
enum Summary {
    Denied,
    NotAllowed,
    UnknownTool,
    Allowed(Box<Allowed>),
}

#[derive(Debug, Default)]
struct Allowed {
    /// Gate trigger (`always`, or the condition's canonical form) → how
    /// it reads and its approver.
    gates: BTreeMap<String, (String, Option<String>)>,
    /// The most distinct approvals any of its gates needs (`approvals`).
    quorum: u32,
    /// `maxAmount` ceilings by argument.
    ceilings: BTreeMap<String, f64>,
    /// Caps by kind (`maxPerSession`, `rateLimit per 60s`): the tightest.
    caps: BTreeMap<String, f64>,
    requires: BTreeSet<String>,
    params: BTreeMap<String, Vec<ParamCheck>>,
    /// `when` conditions: canonical form → text.
    conditions: BTreeMap<String, String>,
    validation: Option<crate::compiler::ast::ArgValidation>,
    /// What one call costs towards `session.maxCost` (the largest `cost`).
    cost: Option<f64>,
    /// The tool's catalog says `onDrift: deny`.
    drift_denied: bool,
    /// The output rules of the constraints on the tool (over the agent's).
    output: crate::output::OutputRules,
    /// The shortest `timeout`, in milliseconds.
    timeout_ms: Option<u64>,
    /// The first `onFailure`: its retries and fallback.
    on_failure: Option<(u64, Option<String>)>,
    /// The circuit breakers: the fewest failures and the longest cooldown.
    breaker: Option<(u64, u64)>,
}

fn summarise(table: &DecisionTable, agent: &AgentTable, tool: &str, hints: Option<Hints>) -> Summary {
    if !agent.exact.contains_key(tool) && table.uncatalogued(tool) {
        return Summary::UnknownTool;
    }
    let plan = agent.plan(tool, hints, &table.rules);
    let ToolPlan::Allowed { constraints, gates, schema, .. } = &*plan else {
        return if matches!(&*plan, ToolPlan::Denied(_)) { Summary::Denied } else { Summary::NotAllowed };
    };
    let server = tool.split_once('/').map(|(server, _)| server);
    let mut allowed = Allowed {
        validation: schema.as_ref().map(|s| s.mode),
        drift_denied: table.denies_drift(server),
        ..Allowed::default()
    };
    for constraint in constraints.iter().filter_map(|&i| agent.constraints.get(i as usize)) {
        let mut cap = |kind: String, limit: f64| {
            let entry = allowed.caps.entry(kind).or_insert(limit);
            *entry = entry.min(limit);
        };
        if let Some(limit) = constraint.max_per_session {
            cap(String::from("maxPerSession"), limit.max as f64);
        }
        if let Some(cost) = constraint.cost {
            allowed.cost = Some(allowed.cost.map_or(cost, |known: f64| known.max(cost)));
        }
        if let Some((limit, window_ms)) = constraint.rate_limit {
            cap(format!("rateLimit per {}s", window_ms / 1000), limit.max as f64);
        }
        if let Some((fields, _)) = &constraint.requires_fields {
            allowed.requires.extend(fields.iter().cloned());
        }
        for param in &constraint.params {
            allowed.params.entry(param.name.clone()).or_default().push(param.check.clone());
        }
        if let Some((condition, _)) = &constraint.when {
            allowed.conditions.insert(condition.canonical(), condition.text().to_owned());
        }
        if let Some((rule, _)) = &constraint.rego {
            allowed.conditions.insert(format!("rego {}", rule.entry), rule.entry.clone());
        }
        if let Some(output) = &constraint.output {
            allowed.output = std::mem::take(&mut allowed.output).strictest(output);
        }
        if let Some(ms) = constraint.timeout_ms {
            allowed.timeout_ms = Some(allowed.timeout_ms.map_or(ms, |known| known.min(ms)));
        }
        if let Some((breaker, _)) = constraint.circuit {
            let (failures, cooldown) = allowed.breaker.unwrap_or((u64::MAX, 0));
            allowed.breaker = Some((failures.min(breaker.failures), cooldown.max(breaker.cooldown_ms)));
        }
        if allowed.on_failure.is_none() {
            allowed.on_failure = constraint.on_failure.as_ref().map(|f| (f.retries, f.fallback.clone()));
        }
    }
    for gate in gates.iter().filter_map(|&i| agent.gates.get(i as usize)) {
        let trigger = match &gate.trigger {
            GateTrigger::Always => Some((String::from("always"), String::from("always"))),
            GateTrigger::When(c) => Some((c.canonical(), format!("when `{}`", c.text()))),
            GateTrigger::Rego(rule) => {
                Some((format!("rego {}", rule.entry), format!("when `{}`", rule.entry)))
            }
            GateTrigger::Never => None,
        };
        if let Some((key, text)) = trigger {
            allowed.gates.insert(key, (text, gate.approver.clone()));
            allowed.quorum = allowed.quorum.max(gate.approvals);
        }
        if let Some(ceiling) = &gate.ceiling {
            allowed.ceilings.insert(ceiling.field.clone(), ceiling.max);
        }
    }
    Summary::Allowed(Box::new(allowed))
}

fn compare_tool(old: &Summary, new: &Summary) -> Vec<(Direction, String)> {
    use Direction::*;
    let name = |s: &Summary| match s {
        Summary::Denied => "denied",
        Summary::NotAllowed => "not allowed",
        Summary::UnknownTool => "not in the catalog",
        Summary::Allowed(a) if a.gates.is_empty() => "allowed",
        Summary::Allowed(_) => "allowed with approval",
    };
    match (old, new) {
        (Summary::Allowed(a), Summary::Allowed(b)) => compare_allowed(a, b),
        (Summary::Allowed(_), _) => vec![(Narrowed, format!("{} → {}", name(old), name(new)))],
        (_, Summary::Allowed(_)) => vec![(Widened, format!("{} → {}", name(old), name(new)))],
        _ => Vec::new(),
    }
}

fn compare_allowed(old: &Allowed, new: &Allowed) -> Vec<(Direction, String)> {
    use Direction::*;
    let mut out = Vec::new();
    match (old.gates.is_empty(), new.gates.is_empty()) {
        (false, true) => out.push((Widened, String::from("approval no longer required"))),
        (true, false) => {
            out.push((Narrowed, format!("approval now required ({})", describe_gates(&new.gates))))
        }
        (false, false) if old.gates != new.gates => {
            let always = |g: &BTreeMap<String, (String, Option<String>)>| g.contains_key("always");
            let direction = match (always(&old.gates), always(&new.gates)) {
                (true, false) => Widened,
                (false, true) => Narrowed,
                _ => Changed,
            };
            out.push((
                direction,
                format!("approval {} → {}", describe_gates(&old.gates), describe_gates(&new.gates)),
            ));
        }
        _ => {}
    }
    if !old.gates.is_empty() && !new.gates.is_empty() && old.quorum != new.quorum {
        let direction = if new.quorum < old.quorum { Widened } else { Narrowed };
        out.push((direction, format!("approvals needed {} → {}", old.quorum, new.quorum)));
    }
    for field in old.ceilings.keys().chain(new.ceilings.keys()).collect::<BTreeSet<_>>() {
        upper(
            &mut out,
            &format!("maxAmount of `{field}`"),
            old.ceilings.get(field).copied(),
            new.ceilings.get(field).copied(),
        );
    }
    for kind in old.caps.keys().chain(new.caps.keys()).collect::<BTreeSet<_>>() {
        upper(&mut out, kind, old.caps.get(kind).copied(), new.caps.get(kind).copied());
    }
    match (old.drift_denied, new.drift_denied) {
        (false, true) => {
            out.push((Narrowed, String::from("refused if the tool drifts from its catalog (onDrift: deny)")))
        }
        (true, false) => {
            out.push((Widened, String::from("no longer refused if the tool drifts from its catalog")))
        }
        _ => {}
    }
    compare_output(&mut out, "output for this tool", &old.output, &new.output);
    match (old.breaker, new.breaker) {
        (Some(_), None) => out.push((Widened, String::from("circuit breaker removed"))),
        (None, Some((n, ms))) => {
            out.push((Narrowed, format!("circuit breaker added ({n} failures, {ms} ms)")))
        }
        (Some(a), Some(b)) if a != b => {
            let direction = if b.0 >= a.0 && b.1 <= a.1 {
                Widened
            } else if b.0 <= a.0 && b.1 >= a.1 {
                Narrowed
            } else {
                Changed
            };
            out.push((
                direction,
                format!("circuit breaker ({} failures, {} ms) → ({} failures, {} ms)", a.0, a.1, b.0, b.1),
            ));
        }
        _ => {}
    }
    let ms = |t: Option<u64>| t.map(|ms| ms as f64);
    upper(&mut out, "timeout (ms)", ms(old.timeout_ms), ms(new.timeout_ms));
    let retries = |f: &Option<(u64, Option<String>)>| f.as_ref().map(|(n, _)| *n as f64);
    upper(&mut out, "onFailure.retries", retries(&old.on_failure), retries(&new.on_failure));
    let fallback = |f: &Option<(u64, Option<String>)>| f.as_ref().and_then(|(_, t)| t.clone());
    if fallback(&old.on_failure) != fallback(&new.on_failure) {
        let show = |t: Option<String>| t.map_or_else(|| String::from("none"), |t| format!("`{t}`"));
        let (from, to) = (show(fallback(&old.on_failure)), show(fallback(&new.on_failure)));
        out.push((Changed, format!("onFailure.fallback {from} → {to}")));
    }
    // A dearer call reaches `session.maxCost` sooner: the inverse of a cap.
    match (old.cost, new.cost) {
        (Some(o), Some(n)) if n > o => out.push((Narrowed, format!("cost raised from {o} to {n}"))),
        (Some(o), Some(n)) if n < o => out.push((Widened, format!("cost lowered from {o} to {n}"))),
        (Some(o), None) => out.push((Widened, format!("cost {o} removed"))),
        (None, Some(n)) => out.push((Narrowed, format!("cost {n} added"))),
        _ => {}
    }
    for field in old.requires.difference(&new.requires) {
        out.push((Widened, format!("`{field}` no longer required")));
    }
    for field in new.requires.difference(&old.requires) {
        out.push((Narrowed, format!("`{field}` now required")));
    }
    for arg in old.params.keys().chain(new.params.keys()).collect::<BTreeSet<_>>() {
        match (old.params.get(arg), new.params.get(arg)) {
            (Some(_), None) => out.push((Widened, format!("argument `{arg}` no longer checked"))),
            (None, Some(_)) => out.push((Narrowed, format!("argument `{arg}` now checked"))),
            (Some(o), Some(n)) if o.len() == 1 && n.len() == 1 => {
                out.extend(
                    params::compare(&o[0], &n[0])
                        .into_iter()
                        .map(|(d, text)| (d, format!("argument `{arg}`: {text}"))),
                );
            }
            (Some(o), Some(n)) => {
                if format!("{o:?}") != format!("{n:?}") {
                    out.push((Changed, format!("argument `{arg}`: rules changed")));
                }
            }
            (None, None) => {}
        }
    }
    let removed: Vec<&String> =
        old.conditions.iter().filter(|(k, _)| !new.conditions.contains_key(*k)).map(|(_, t)| t).collect();
    let added: Vec<&String> =
        new.conditions.iter().filter(|(k, _)| !old.conditions.contains_key(*k)).map(|(_, t)| t).collect();
    match (removed.is_empty(), added.is_empty()) {
        (true, true) => {}
        (false, true) => out.push((Widened, format!("condition removed: {}", list(&removed)))),
        (true, false) => out.push((Narrowed, format!("condition added: {}", list(&added)))),
        (false, false) => out.push((Changed, format!("condition {} → {}", list(&removed), list(&added)))),
    }
    if old.validation != new.validation {
        let direction = if new.validation < old.validation { Widened } else { Narrowed };
        let mode = |v: Option<crate::compiler::ast::ArgValidation>| {
            v.and_then(|v| crate::compiler::ast::ArgValidation::ALL.iter().find(|(_, m)| *m == v))
                .map_or("off", |(k, _)| k)
        };
        out.push((direction, format!("validateArgs {} → {}", mode(old.validation), mode(new.validation))));
    }
    out
}

fn describe_gates(gates: &BTreeMap<String, (String, Option<String>)>) -> String {
    let one = |(trigger, approver): &(String, Option<String>)| match approver {
        Some(approver) => format!("{trigger}, by {approver}"),
        None => trigger.clone(),
    };
    gates.values().map(one).collect::<Vec<_>>().join("; ")
}

fn list(conditions: &[&String]) -> String {
    conditions.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}
