//! Policy tests: YAML files of requests and the decisions a policy must give
//! (`*.test.yaml`), run against a compiled engine, with rule coverage.
//!
//! ```yaml
//! cases:
//!   - name: a refund needs a supervisor
//!     before:                                   # optional, decided first, not checked
//!       - {agent: refundAgent, tool: getOrder, session: s1}
//!       - {repeat: 3, request: {agent: refundAgent, tool: getOrder, session: s1}}
//!     request: {agent: refundAgent, tool: issueRefund, session: s1, args: {amount: 10}}
//!     expect: require_approval        # allow | deny | require_approval
//!     rule: refundAgent.approvalGates.issueRefund   # optional
//!     approver: human_supervisor                    # optional
//!   - name: a key in a file is redacted before the model reads it
//!     request: {agent: reader, tool: fs/read_file}
//!     expect: allow
//!     result: "aws_access_key_id = AKIAZ7EXAMPLEKEY4Q2M"  # or a CallToolResult object
//!     output:                                         # what the agent receives
//!       verdict: changed                              # passed | changed | withheld
//!       findings: [aws-access-key-id]
//!       text: "aws_access_key_id = [REDACTED:aws-access-key-id]"
//!       contains: ["[REDACTED"]                       # and `lacks: [...]`
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use std::sync::Arc;

use crate::engine::table::DecisionTable;
use crate::engine::{Decision, Engine, Outcome, Request};
use crate::service::{AuditBatch, Service, ServiceConfig};
use crate::state::State;

/// One test file, checked: every request valid, every expectation one the
/// runner can check.
#[derive(Debug)]
pub struct TestFile {
    /// The cases, run in order, each on fresh state.
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug)]
pub struct Case {
    /// What it checks, in words.
    pub name: String,
    /// Requests decided first, in the same state (their answers are not
    /// checked), each with how many times.
    pub before: Vec<(Request, u64)>,
    /// The request whose answer is checked.
    pub request: Request,
    /// The expected decision.
    pub expect: Outcome,
    /// The expected deciding rule, if the case names one.
    pub rule: Option<String>,
    /// The expected approver, if the case names one.
    pub approver: Option<String>,
    /// A tool result for the allowed call, and what the agent must
    /// receive of it under the output rules.
    pub output: Option<(Value, OutputExpectation)>,
}

/// What the agent must receive of a case's `result`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputExpectation {
    /// `passed`, `changed` or `withheld`.
    pub verdict: Option<String>,
    /// The ids of the rules that found something, in any order.
    pub findings: Option<Vec<String>>,
    /// The text blocks the agent receives, joined.
    pub text: Option<String>,
    /// Texts the agent's text must contain.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Texts it must not contain.
    #[serde(default)]
    pub lacks: Vec<String>,
}

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    before: Vec<Spanned<Value>>,
    request: Spanned<Value>,
    expect: Spanned<String>,
    rule: Option<String>,
    approver: Option<String>,
    result: Option<Spanned<Value>>,
    output: Option<Spanned<OutputExpectation>>,
}

impl TestFile {
    /// Parses and checks a test file's text. Every malformed entry makes
    /// the whole file invalid (a case run without its setup would prove
    /// nothing); the error names the line.
    pub fn parse(text: &str) -> Result<TestFile, String> {
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut cases = Vec::new();
        for case in raw.cases {
            let at = |line: u64, what: &str, problem: String| {
                format!("line {line}: case `{}`: {what}: {problem}", case.name)
            };
            let mut before = Vec::new();
            for (i, entry) in case.before.iter().enumerate() {
                match before_entry(&entry.value) {
                    Ok(step) => before.push(step),
                    Err(problem) => problems.push(at(
                        entry.referenced.line(),
                        &format!("`before` entry {}", i + 1),
                        problem,
                    )),
                }
            }
            let request = request(&case.request.value)
                .map_err(|problem| problems.push(at(case.request.referenced.line(), "`request`", problem)));
            let expect = match case.expect.value.as_str() {
                "allow" => Ok(Outcome::Allow),
                "deny" => Ok(Outcome::Deny),
                "require_approval" => Ok(Outcome::RequireApproval),
                other => {
                    let problem =
                        format!("`{other}` is not a decision; use `allow`, `deny` or `require_approval`");
                    problems.push(at(case.expect.referenced.line(), "`expect`", problem));
                    Err(())
                }
            };
            let output = match (case.result, case.output) {
                (None, None) => Ok(None),
                (Some(result), Some(expected)) => match tool_result(result.value) {
                    Ok(result) => Ok(Some((result, expected.value))),
                    Err(problem) => {
                        problems.push(at(result.referenced.line(), "`result`", problem));
                        Err(())
                    }
                },
                (Some(result), None) => {
                    let problem = String::from("say what the agent receives under `output`");
                    problems.push(at(result.referenced.line(), "`result`", problem));
                    Err(())
                }
                (None, Some(expected)) => {
                    let problem = String::from("give the tool's `result` the expectation is about");
                    problems.push(at(expected.referenced.line(), "`output`", problem));
                    Err(())
                }
            };
            if let (Ok(request), Ok(expect), Ok(output)) = (request, expect, output) {
                let (name, rule, approver) = (case.name, case.rule, case.approver);
                cases.push(Case { name, before, request, expect, rule, approver, output });
            }
        }
        if problems.is_empty() { Ok(TestFile { cases }) } else { Err(problems.join("\n")) }
    }
}

/// A case's `result`: a `CallToolResult` object, or a string for a result
/// of one text block.
fn tool_result(value: Value) -> Result<Value, String> {
    match value {
        Value::String(text) => Ok(serde_json::json!({"content": [{"type": "text", "text": text}]})),
        result @ Value::Object(_) => Ok(result),
        _ => Err(String::from("a result is a string or a CallToolResult object")),
    }
}

/// A `before` entry: a request, or `{repeat: N, request: {...}}` (N from 1
/// to 100,000).
fn before_entry(value: &Value) -> Result<(Request, u64), String> {
    let Some(object) = value.as_object() else {
        return Err(String::from("a `before` entry is a request or `{repeat: N, request: {...}}`"));
    };
    if !object.contains_key("repeat") {
        return request(value).map(|request| (request, 1));
    }
    if let Some(other) = object.keys().find(|k| !["repeat", "request"].contains(&k.as_str())) {
        return Err(format!("unknown key `{other}` beside `repeat`; the request goes under `request`"));
    }
    let times = object
        .get("repeat")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_REPEAT).contains(n))
        .ok_or_else(|| format!("`repeat` must be a whole number from 1 to {MAX_REPEAT}"))?;
    let inner = object.get("request").ok_or("`repeat` needs its `request`")?;
    request(inner).map(|request| (request, times))
}

/// The outcome of one case.
#[derive(Debug, Serialize)]
pub struct CaseResult {
    /// The test file.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// The decision given (or `error` for a request that could not be decided).
    pub decision: String,
    /// The deciding rule.
    pub rule: String,
    /// What differed, for a failed case.
    pub failure: Option<String>,
}

/// All results and the coverage of the policy's rules.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Every case, in order.
    pub cases: Vec<CaseResult>,
    /// Rule ids that at least one request exercised (decided by it, or
    /// passed the allow entry).
    pub covered: Vec<String>,
    /// Rule ids of the policy no request exercised.
    pub uncovered: Vec<String>,
}

impl Report {
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed).count()
    }

    /// Percentage of the policy's rules that decided at least one request.
    pub fn coverage_percent(&self) -> f64 {
        let total = self.covered.len() + self.uncovered.len();
        if total == 0 { 100.0 } else { 100.0 * self.covered.len() as f64 / total as f64 }
    }
}

fn request(value: &Value) -> Result<Request, String> {
    crate::protocol::decode::request_from_json(value).map_err(|error| error.message)
}

/// The most times a `before` entry may repeat its request.
const MAX_REPEAT: u64 = 100_000;

/// One case's gateway: the policy's table on fresh, in-memory state,
/// deciding through the service as a server would.
struct Run {
    service: Service,
}

impl Run {
    fn new(table: &Arc<DecisionTable>) -> Run {
        let engine = Engine::with_table(Arc::clone(table), State::in_memory());
        // No approvals are opened: nothing in a test file can grant one.
        Run { service: Service::new(engine, ServiceConfig::default(), None) }
    }

    /// Decides a request; returns the rules it exercised (the allow entry
    /// it passed, if any, and the rule that decided it) and what `see` makes
    /// of the decision.
    fn decide<R>(&self, request: &Request, see: impl FnOnce(&Decision<'_>) -> R) -> (Vec<String>, R) {
        let engine = self.service.engine();
        let mut rules: Vec<String> = engine.allow_rule(request).map(str::to_owned).into_iter().collect();
        let answer = self.service.decide(&engine, &Value::Null, request, &mut AuditBatch::default());
        rules.push(answer.decision.rule.to_owned());
        (rules, see(&answer.decision))
    }
}

impl Case {
    /// What differs between the expectations and a decision.
    fn failures(&self, decision: &Decision<'_>) -> Vec<String> {
        let mut failures = Vec::new();
        if decision.outcome != self.expect {
            failures.push(format!(
                "expected `{}`, got `{}` ({})",
                self.expect.as_str(),
                decision.outcome.as_str(),
                decision.reason
            ));
        }
        if let Some(rule) = self.rule.as_ref().filter(|r| r.as_str() != decision.rule) {
            failures.push(format!("expected rule `{rule}`, got `{}`", decision.rule));
        }
        if let Some(approver) = self.approver.as_ref().filter(|a| Some(a.as_str()) != decision.approver) {
            failures.push(format!(
                "expected approver `{approver}`, got `{}`",
                decision.approver.unwrap_or("none")
            ));
        }
        failures
    }

    /// What differs between the case's output expectation and what the
    /// agent receives of its result.
    fn output_failures(&self, engine: &Engine) -> Vec<String> {
        let Some((result, expected)) = &self.output else { return Vec::new() };
        let applied = match engine.output_rules(&self.request.agent, &self.request.tool) {
            Some((scanner, rules)) => crate::output::apply(result, &scanner, &rules, None),
            None => crate::output::Applied {
                result: result.clone(),
                findings: Vec::new(),
                verdict: crate::output::Verdict::Passed,
            },
        };
        let mut failures = Vec::new();
        let verdict = match applied.verdict {
            crate::output::Verdict::Passed => "passed",
            crate::output::Verdict::Changed => "changed",
            crate::output::Verdict::Withheld { .. } => "withheld",
        };
        if let Some(want) = expected.verdict.as_deref().filter(|w| *w != verdict) {
            failures.push(format!("expected output `{want}`, got `{verdict}`"));
        }
        if let Some(want) = &expected.findings {
            let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            let got: BTreeSet<&str> = applied.findings.iter().map(|f| f.rule.as_str()).collect();
            if want != got {
                failures.push(format!("expected findings {want:?}, got {got:?}"));
            }
        }
        let content = applied.result.get("content").and_then(Value::as_array).into_iter().flatten();
        let text: String = content.filter_map(|item| item.get("text").and_then(Value::as_str)).collect();
        if let Some(want) = expected.text.as_ref().filter(|w| **w != text) {
            failures.push(format!("expected the agent to read {want:?}, got {text:?}"));
        }
        for want in expected.contains.iter().filter(|w| !text.contains(w.as_str())) {
            failures.push(format!("expected the agent's text to contain {want:?}, got {text:?}"));
        }
        for unwanted in expected.lacks.iter().filter(|w| text.contains(w.as_str())) {
            failures.push(format!("expected the agent's text to lack {unwanted:?}"));
        }
        failures
    }
}

/// Runs every case of `files` (name, parsed file) against the policy's
/// `table`, each case on fresh state.
pub fn run(table: &Arc<DecisionTable>, files: &[(String, TestFile)]) -> Report {
    let mut exercised: BTreeSet<String> = BTreeSet::new();
    let mut cases = Vec::new();
    for (file, tests) in files {
        for case in &tests.cases {
            let run = Run::new(table);
            for (request, times) in &case.before {
                for _ in 0..*times {
                    exercised.extend(run.decide(request, |_| ()).0);
                }
            }
            let engine = run.service.engine();
            let (rules, result) = run.decide(&case.request, |decision| {
                let mut failures = case.failures(decision);
                if decision.outcome == Outcome::Allow {
                    failures.extend(case.output_failures(&engine));
                }
                CaseResult {
                    file: file.clone(),
                    name: case.name.clone(),
                    passed: failures.is_empty(),
                    decision: decision.outcome.as_str().to_owned(),
                    rule: decision.rule.to_owned(),
                    failure: (!failures.is_empty()).then(|| failures.join("; ")),
                }
            });
            exercised.extend(rules);
            cases.push(result);
        }
    }
    let all: BTreeSet<String> = table.rules().iter().map(|r| r.id.clone()).collect();
    let covered = all.iter().filter(|r| exercised.contains(*r)).cloned().collect();
    let uncovered = all.iter().filter(|r| !exercised.contains(*r)).cloned().collect();
    Report { cases, covered, uncovered }
}
