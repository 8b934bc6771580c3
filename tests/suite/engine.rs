//! Decision semantics through the library API, as a table of
//! (policy, requests, expected outcome and rule).

use serde_json::{Value, json};
use toolgate::compiler::PolicySource;
use toolgate::engine::{Engine, Outcome, Request};

use crate::util::{engine, request};

/// Runs `requests` in order; checks the last one's outcome and rule.
fn check(policy: &str, requests: &[Value], outcome: Outcome, rule: &str) {
    let engine = engine(policy);
    let requests: Vec<Request> = requests.iter().map(request).collect();
    let (last, before) = requests.split_last().expect("a request");
    for r in before {
        engine.decide(r);
    }
    let decision = engine.decide(last);
    assert_eq!(
        (decision.outcome, decision.rule),
        (outcome, rule),
        "{policy}\n{:?}\n{}",
        last.args,
        decision.reason
    );
}

const INHERIT: &str = r#"
agentPolicies:
  base:
    allowedTools: [read, "files/*"]
    deniedTools: [files/secret]
    constraints:
      "files/*":
        maxPerSession: 2
  child:
    extends: [base]
    allowedTools: [write]
    deniedTools: [read]
"#;

#[test]
fn inheritance_unions_rules_and_deny_wins() {
    let call = |agent: &str, tool: &str| json!({"agent": agent, "tool": tool, "session": "s"});
    check(INHERIT, &[call("child", "write")], Outcome::Allow, "child.allowedTools.write");
    check(INHERIT, &[call("child", "read")], Outcome::Deny, "child.deniedTools.read");
    check(INHERIT, &[call("base", "read")], Outcome::Allow, "base.allowedTools.read");
    check(INHERIT, &[call("child", "files/secret")], Outcome::Deny, "base.deniedTools.files/secret");
    check(INHERIT, &[call("child", "files/a")], Outcome::Allow, "base.allowedTools.files/*");
    // A glob cap counts every tool it matches together.
    let three = [call("child", "files/a"), call("child", "files/b"), call("child", "files/c")];
    check(INHERIT, &three, Outcome::Deny, "base.constraints.files/*.maxPerSession");
}

const GATES: &str = r#"
agentPolicies:
  bot:
    allowedTools: [pay, refund, note]
    constraints:
      pay:
        when: "args.amount <= principal.limit"
    approvalGates:
      pay:
        when: "args.amount > 100"
        approver: finance
      refund:
        required: true
        maxAmount: 500
        amountField: value
"#;

#[test]
fn gates_and_conditions_fail_closed() {
    let pay = |args: Value, principal: Value| json!({"agent": "bot", "tool": "pay", "args": args, "principal": principal});
    let limit = json!({"limit": 1000});
    check(GATES, &[pay(json!({"amount": 50}), limit.clone())], Outcome::Allow, "bot.allowedTools.pay");
    check(
        GATES,
        &[pay(json!({"amount": 500}), limit.clone())],
        Outcome::RequireApproval,
        "bot.approvalGates.pay",
    );
    check(GATES, &[pay(json!({"amount": 5000}), limit.clone())], Outcome::Deny, "bot.constraints.pay.when");
    // No principal: the constraint cannot be evaluated, so it fails.
    check(GATES, &[pay(json!({"amount": 5}), Value::Null)], Outcome::Deny, "bot.constraints.pay.when");
    // A string amount: the constraint fails before the gate is consulted.
    check(GATES, &[pay(json!({"amount": "5"}), limit.clone())], Outcome::Deny, "bot.constraints.pay.when");
    let refund = |args: Value| json!({"agent": "bot", "tool": "refund", "args": args});
    check(GATES, &[refund(json!({"value": 20}))], Outcome::RequireApproval, "bot.approvalGates.refund");
    check(GATES, &[refund(json!({"value": 501}))], Outcome::Deny, "bot.approvalGates.refund.maxAmount");
    check(GATES, &[refund(json!({"amount": 20}))], Outcome::Deny, "bot.approvalGates.refund.maxAmount");
}

const GATE_ERROR: &str = r#"
agentPolicies:
  bot:
    allowedTools: [pay]
    approvalGates:
      pay:
        when: "context.risk > 5"
        approver: finance
"#;

#[test]
fn a_gate_whose_condition_cannot_be_evaluated_applies() {
    let pay = |context: Value| json!({"agent": "bot", "tool": "pay", "context": context});
    check(GATE_ERROR, &[pay(json!({"risk": 1}))], Outcome::Allow, "bot.allowedTools.pay");
    check(GATE_ERROR, &[pay(json!({"risk": 9}))], Outcome::RequireApproval, "bot.approvalGates.pay");
    check(GATE_ERROR, &[pay(Value::Null)], Outcome::RequireApproval, "bot.approvalGates.pay");
    check(GATE_ERROR, &[pay(json!({"risk": "high"}))], Outcome::RequireApproval, "bot.approvalGates.pay");
}

const SESSIONS: &str = r#"
agentPolicies:
  bot:
    allowedTools: [search, fetch]
    constraints:
      fetch:
        when: "session.calls_of('search') >= 1 && session.calls < 3"
"#;

#[test]
fn conditions_read_session_counters() {
    let call = |tool: &str| json!({"agent": "bot", "tool": tool, "session": "s"});
    check(SESSIONS, &[call("fetch")], Outcome::Deny, "bot.constraints.fetch.when");
    check(SESSIONS, &[call("search"), call("fetch")], Outcome::Allow, "bot.allowedTools.fetch");
    check(
        SESSIONS,
        &[call("search"), call("search"), call("search"), call("fetch")],
        Outcome::Deny,
        "bot.constraints.fetch.when",
    );
    // Without a session the counters cannot be read: the constraint fails.
    check(SESSIONS, &[json!({"agent": "bot", "tool": "fetch"})], Outcome::Deny, "bot.constraints.fetch.when");
}

#[test]
fn condition_language_evaluates_like_cel() {
    // (condition, args, holds)
    let cases: &[(&str, Value, bool)] = &[
        ("args.a + 1 == 3", json!({"a": 2}), true),
        ("args.a * 2.5 > 4.9", json!({"a": 2}), true),
        ("args.a % 3 == 1", json!({"a": 7}), true),
        ("args.s.startsWith('ab') && args.s.endsWith('yz')", json!({"s": "ab-yz"}), true),
        ("args.s.matches('^[a-z]+-[0-9]+$')", json!({"s": "ticket-42"}), true),
        ("args.s.matches('^[a-z]+$')", json!({"s": "Ticket"}), false),
        ("size(args.s) == 3 && args.s.size() == 3", json!({"s": "héé"}), true),
        ("'x' in args.list", json!({"list": ["w", "x"]}), true),
        ("'k' in args.map", json!({"map": {"k": 1}}), true),
        ("args.list == ['a', 'b']", json!({"list": ["a", "b"]}), true),
        ("args.n == 1", json!({"n": 1.0}), true),
        ("args['odd-name'].inner == true", json!({"odd-name": {"inner": true}}), true),
        ("has(args.a.b) && !has(args.a.c)", json!({"a": {"b": 1}}), true),
        ("has(args.x.y)", json!({}), false),
        ("args.list[1] == 'b'", json!({"list": ["a", "b"]}), true),
        ("tool == 't' && agent == 'bot'", json!({}), true),
        ("args.s + '!' == 'hi!'", json!({"s": "hi"}), true),
        // Errors on one side of || and && do not matter when the other side decides.
        ("args.missing > 1 || true", json!({}), true),
        ("false && args.missing > 1", json!({}), false),
        // An error that decides nothing fails the constraint.
        ("args.missing > 1 || false", json!({}), false),
        ("args.a / 0 == 1", json!({"a": 1}), false),
        ("args.a + 1 > 0", json!({"a": 9223372036854775807i64}), false),
        ("args.s > 3", json!({"s": "text"}), false),
        ("-args.a == 5", json!({"a": -5}), true),
        ("args.s < 'b'", json!({"s": "a"}), true),
        ("args.n != null", json!({"n": 0}), true),
    ];
    for (condition, args, holds) in cases {
        let policy = format!(
            "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        when: {}\n",
            Value::from(*condition)
        );
        let expected = if *holds {
            (Outcome::Allow, "bot.allowedTools.t")
        } else {
            (Outcome::Deny, "bot.constraints.t.when")
        };
        check(&policy, &[json!({"agent": "bot", "tool": "t", "args": args})], expected.0, expected.1);
    }
}

const PARAMS: &str = r#"
agentPolicies:
  bot:
    allowedTools: [t]
    constraints:
      t:
        params:
          n: {type: integer, minimum: 1, exclusiveMaximum: 10}
          s: {type: string, minLength: 2, maxLength: 4, pattern: "^[a-z]+$"}
          e: {enum: [red, 1, true]}
          c: {const: fixed}
          list: {type: array, minItems: 1, maxItems: 2, items: {type: string}}
          either: {type: [string, "null"]}
"#;

#[test]
fn params_apply_json_schema_keywords_to_present_arguments() {
    let cases: &[(Value, &str)] = &[
        (json!({}), "bot.allowedTools.t"),
        (
            json!({"n": 1, "s": "ab", "e": 1, "c": "fixed", "list": ["x"], "either": null}),
            "bot.allowedTools.t",
        ),
        (json!({"n": 9.0}), "bot.allowedTools.t"),
        (json!({"n": 0}), "bot.constraints.t.params.n"),
        (json!({"n": 10}), "bot.constraints.t.params.n"),
        (json!({"n": 2.5}), "bot.constraints.t.params.n"),
        (json!({"s": "a"}), "bot.constraints.t.params.s"),
        (json!({"s": "abcde"}), "bot.constraints.t.params.s"),
        (json!({"s": "AB"}), "bot.constraints.t.params.s"),
        (json!({"e": "blue"}), "bot.constraints.t.params.e"),
        (json!({"e": true}), "bot.allowedTools.t"),
        (json!({"c": "other"}), "bot.constraints.t.params.c"),
        (json!({"list": []}), "bot.constraints.t.params.list"),
        (json!({"list": ["a", "b", "c"]}), "bot.constraints.t.params.list"),
        (json!({"list": ["a", 2]}), "bot.constraints.t.params.list"),
        (json!({"either": 3}), "bot.constraints.t.params.either"),
    ];
    for (args, rule) in cases {
        let outcome = if rule.contains("allowedTools") { Outcome::Allow } else { Outcome::Deny };
        check(PARAMS, &[json!({"agent": "bot", "tool": "t", "args": args})], outcome, rule);
    }
}

#[test]
fn decisions_name_the_approver_and_audit_level() {
    let engine = engine(GATES);
    let request = request(
        &json!({"agent": "bot", "tool": "pay", "args": {"amount": 500}, "principal": {"limit": 1000}}),
    );
    let decision = engine.decide(&request);
    assert_eq!(decision.approver, Some("finance"));
    assert_eq!(decision.audit, toolgate::compiler::ast::AuditLevel::Metadata);
    assert_eq!(decision.reason.to_string(), "approval gate condition holds");
}

#[test]
fn engines_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
}

const RATED: &str = r#"
agentPolicies:
  bot:
    allowedTools: [search, fetch]
    constraints:
      search:
        rateLimit: 3/min
      fetch:
        rateLimit: "2/s"
"#;

#[test]
fn rate_limits_count_per_agent_across_sessions_and_refill() {
    let engine = engine(RATED);
    let search =
        |session: Option<&str>| request(&json!({"agent": "bot", "tool": "search", "session": session}));
    let outcomes: Vec<Outcome> =
        [Some("a"), Some("b"), None, Some("c")].iter().map(|s| engine.decide(&search(*s)).outcome).collect();
    assert_eq!(outcomes, [Outcome::Allow, Outcome::Allow, Outcome::Allow, Outcome::Deny]);
    let denied = search(Some("d"));
    let decision = engine.decide(&denied);
    assert_eq!(decision.rule, "bot.constraints.search.rateLimit");
    assert_eq!(decision.reason.to_string(), "rate limit of 3 calls per minute reached for this agent");
    let fetch = request(&json!({"agent": "bot", "tool": "fetch"}));
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow);
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow);
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Deny);
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(engine.decide(&fetch).outcome, Outcome::Allow, "a token refills in 500 ms");
}

#[test]
fn a_rate_that_is_not_a_rate_is_an_error() {
    for bad in ["fast", "0/min", "10/week", "-1/s"] {
        let policy = format!(
            "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        rateLimit: \"{bad}\"\n"
        );
        let checked = toolgate::compile(
            vec![PolicySource { name: "p.yaml".into(), bytes: policy.into_bytes() }],
            &toolgate::NoFiles,
        );
        let codes: Vec<&str> = checked.diagnostics.as_slice().iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["TG013"], "{bad}");
    }
}
