//! Decision semantics. The cases live as data in `tests/fixtures/engine/`
//! (a policy and its `*.test.yaml` cases per topic), run through the
//! binary here and through the Rego export in `rego.rs`; what data cannot
//! express stays in Rust: time, types, compile errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use toolgate::engine::{Engine, Outcome};
use toolgate::state::{ManualClock, State};

use crate::util::{engine, engine_fixtures, request, toolgate};

#[test]
fn every_semantics_fixture_passes_toolgate_test() {
    let fixtures = engine_fixtures();
    assert!(fixtures.len() >= 7, "{fixtures:?}");
    for fixture in fixtures {
        let output = toolgate(&fixture).args(["test", "."]).output().expect("toolgate runs");
        assert!(
            output.status.success(),
            "{}:\n{}{}",
            fixture.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn decisions_name_the_approver_audit_level_and_reason() {
    let engine = engine(
        &std::fs::read_to_string(crate::util::root().join("tests/fixtures/engine/gates/policy.yaml"))
            .expect("policy"),
    );
    let request = request(
        &json!({"agent": "bot", "tool": "pay", "args": {"amount": 500}, "principal": {"limit": 1000}}),
    );
    let decision = engine.decide(&request);
    assert_eq!(decision.approver, Some("finance"));
    assert_eq!(decision.audit, toolgate::compiler::ast::AuditLevel::Metadata);
    assert_eq!(decision.reason.to_string(), "approval gate condition holds");
    assert_eq!(decision.reason.code().as_str(), "approval_condition");
}

#[test]
fn engines_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
}

#[test]
fn a_rate_limit_token_refills_with_time() {
    let policy = "agentPolicies:\n  bot:\n    allowedTools: [search, fetch]\n    constraints:\n      search:\n        rateLimit: 3/min\n      fetch:\n        rateLimit: \"2/s\"\n";
    let clock = Arc::new(ManualClock::default());
    let state = State::in_memory_with(clock.clone(), Duration::from_secs(60));
    let policy = engine(policy);
    let engine = Engine::with_table(Arc::clone(policy.table()), state);
    let fetch = request(&json!({"agent": "bot", "tool": "fetch"}));
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow);
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow);
    let denied = engine.decide(&fetch);
    assert_eq!((denied.outcome, denied.reason.code().as_str()), (Outcome::Deny, "rate_limited"));
    assert_eq!(denied.reason.to_string(), "rate limit of 2 calls per second reached for this agent");
    clock.advance(Duration::from_millis(499));
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Deny, "no token before 500 ms");
    clock.advance(Duration::from_millis(1));
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow, "a token refills in 500 ms");
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Deny);
}

#[test]
fn a_rate_that_is_not_a_rate_is_an_error() {
    for bad in ["fast", "0/min", "10/week", "-1/s"] {
        let policy = format!(
            "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        rateLimit: \"{bad}\"\n"
        );
        let source = toolgate::PolicySource { name: "p.yaml".into(), bytes: policy.into_bytes() };
        let checked = toolgate::compile(vec![source], &toolgate::NoFiles);
        let codes: Vec<&str> = checked.diagnostics.as_slice().iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["TG013"], "{bad}");
    }
}
