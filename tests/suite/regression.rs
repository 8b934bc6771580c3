//! Regression tests, each named after the bug it pins.

use serde_json::json;
use toolgate::engine::{Engine, Outcome, Request};
use toolgate::load::PolicySource;

fn engine(policy: &str) -> Engine {
    let checked =
        toolgate::compile(vec![PolicySource { name: "p.yaml".into(), bytes: policy.as_bytes().to_vec() }]);
    Engine::new(checked.policy.expect("compiles"))
}

fn decide(engine: &Engine, tool: &str, args: serde_json::Value) -> Outcome {
    let args = args.as_object().cloned().unwrap_or_default();
    engine.decide(&Request { agent: "bot".into(), tool: tool.into(), args, ..Request::default() }).outcome
}

/// `n`, `y`, `no`, `on` and `off` are YAML 1.1 booleans; read as such, a
/// parameter named `n` became `false` and its rules never applied.
#[test]
fn yaml_1_1_boolean_words_stay_strings() {
    let policy = "agentPolicies:\n  bot:\n    allowedTools: [n, on]\n    constraints:\n      n:\n        params:\n          n: {type: integer, maximum: 50}\n          y: {enum: [no, off]}\n";
    let engine = engine(policy);
    assert_eq!(decide(&engine, "n", json!({"n": 500})), Outcome::Deny);
    assert_eq!(decide(&engine, "n", json!({"n": 5, "y": "no"})), Outcome::Allow);
    assert_eq!(decide(&engine, "n", json!({"y": false})), Outcome::Deny);
    assert_eq!(decide(&engine, "on", json!({})), Outcome::Allow);
}

/// pest inserts implicit whitespace between the parts of a non-atomic rule,
/// so `"in" ~ !ident_char` looked past the space and rejected `x in list`.
#[test]
fn in_operator_accepts_a_space_before_its_right_operand() {
    let policy = "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        when: \"'x' in args.list\"\n";
    let engine = engine(policy);
    assert_eq!(decide(&engine, "t", json!({"list": ["x"]})), Outcome::Allow);
    assert_eq!(decide(&engine, "t", json!({"list": ["y"]})), Outcome::Deny);
}
