//! The differential test: random policies and request sequences, decided by
//! the engine and by regorus's VM running the exported Rego; they must agree
//! on every decision, deciding rule and approver. On a disagreement proptest
//! shrinks the case and the failure prints the policy and the requests.
//!
//! `cargo test differential` runs 300 cases; set `TOOLGATE_DIFF_CASES` to run
//! more (e.g. `TOOLGATE_DIFF_CASES=20000 cargo test --release differential`).

use proptest::prelude::*;
use serde_json::{Value, json};
use toolgate::authoring::rego_oracle::Gateway;
use toolgate::compiler::PolicySource;
use toolgate::compiler::rego_vm::Evaluator;
use toolgate::engine::{Engine, Request};

const TOOLS: [&str; 6] = ["a", "b", "c", "srv/x", "srv/y", "srv/z"];
const PATTERNS: [&str; 13] = [
    "a",
    "b",
    "c",
    "srv/x",
    "srv/y",
    "srv/z",
    "srv/*",
    "*",
    "srv/?",
    "srv/* where readOnlyHint",
    "srv/? where not destructiveHint",
    "srv/x where openWorldHint and not idempotentHint",
    "* where destructiveHint",
];
const ARGS: [&str; 3] = ["p", "q", "r"];

fn cases() -> u32 {
    std::env::var("TOOLGATE_DIFF_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300)
}

fn pattern() -> impl Strategy<Value = String> {
    prop::sample::select(&PATTERNS[..]).prop_map(str::to_owned)
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..12).prop_map(|i| i.to_string()),
        prop::sample::select(vec!["''", "'a'", "'main'", "'/srv/x'", "'ab'"]).prop_map(str::to_owned),
        Just(String::from("true")),
        Just(String::from("null")),
    ]
}

fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&ARGS[..]).prop_map(|a| format!("args.{a}")),
        2 => literal(),
        1 => prop::sample::select(&ARGS[..]).prop_map(|a| format!("size(args.{a})")),
        1 => prop::sample::select(&ARGS[..]).prop_map(|a| format!("args.{a}.x")),
        1 => Just(String::from("tool")),
        1 => Just(String::from("session.calls")),
        1 => prop::sample::select(&ARGS[..]).prop_map(|a| format!("(args.{a} + 1)")),
        1 => prop::sample::select(&ARGS[..]).prop_map(|a| format!("(args.{a} / 2)")),
    ]
}

fn atom() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    prop_oneof![
        (operand(), ops, operand()).prop_map(|(l, op, r)| format!("{l} {op} {r}")),
        (operand(), prop::collection::vec(literal(), 0..3))
            .prop_map(|(l, items)| format!("{l} in [{}]", items.join(", "))),
        (prop::sample::select(&ARGS[..]), literal()).prop_map(|(a, s)| format!("args.{a}.startsWith({s})")),
        prop::sample::select(&ARGS[..]).prop_map(|a| format!("has(args.{a})")),
        prop::sample::select(&ARGS[..]).prop_map(|a| format!("args.{a}.matches('^[a-m]')")),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn param_rules() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..5, 3i64..10).prop_map(|(lo, hi)| format!("{{type: integer, minimum: {lo}, maximum: {hi}}}")),
        Just(String::from("{type: string, maxLength: 2}")),
        Just(String::from("{enum: [a, main, 1]}")),
        Just(String::from("{type: array, maxItems: 2, items: {type: integer, maximum: 5}}")),
        Just(String::from("{type: string, pattern: '^/srv/'}")),
    ]
}

fn constraint() -> impl Strategy<Value = String> {
    (
        pattern(),
        prop::option::of(prop::collection::vec(prop::sample::select(&ARGS[..]), 1..3)),
        prop::option::of((prop::sample::select(&ARGS[..]), param_rules())),
        prop::option::of(condition()),
        prop::option::of(1u64..3),
    )
        .prop_map(|(tool, requires, param, when, cap)| {
            let mut text = format!("      \"{tool}\":\n        description: generated\n");
            if let Some(fields) = requires {
                text.push_str(&format!("        requiresFields: [{}]\n", fields.join(", ")));
            }
            if let Some((name, rules)) = param {
                text.push_str(&format!("        params:\n          {name}: {rules}\n"));
            }
            if let Some(when) = when {
                text.push_str(&format!("        when: \"{when}\"\n"));
            }
            if let Some(cap) = cap {
                text.push_str(&format!("        maxPerSession: {cap}\n"));
            }
            text
        })
}

fn gate() -> impl Strategy<Value = String> {
    (
        pattern(),
        prop::option::of(condition()),
        prop::option::of(prop::sample::select(vec![5u64, 50])),
        any::<bool>(),
    )
        .prop_map(|(tool, when, ceiling, approver)| {
            let mut text = format!("      \"{tool}\":\n");
            match when {
                Some(when) => text.push_str(&format!("        when: \"{when}\"\n")),
                None => text.push_str("        required: true\n"),
            }
            if let Some(max) = ceiling {
                text.push_str(&format!("        maxAmount: {max}\n        amountField: p\n"));
            }
            if approver {
                text.push_str("        approver: leads\n");
            }
            text
        })
}

fn policy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(pattern(), 0..4),
        prop::collection::vec(pattern(), 0..2),
        prop::collection::vec(constraint(), 0..3),
        prop::collection::vec(gate(), 0..2),
        prop::option::of(2u64..6),
    )
        .prop_map(|(allow, deny, constraints, gates, session)| {
            let quoted =
                |list: &[String]| list.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
            let mut text = format!(
                "agentPolicies:\n  bot:\n    allowedTools: [{}]\n    deniedTools: [{}]\n",
                quoted(&allow),
                quoted(&deny)
            );
            if !constraints.is_empty() {
                text.push_str("    constraints:\n");
                // Later constraints on the same key would be duplicate keys.
                let mut seen = std::collections::HashSet::new();
                for c in constraints.iter().filter(|c| seen.insert(c.lines().next().map(str::to_owned))) {
                    text.push_str(c);
                }
            }
            if !gates.is_empty() {
                text.push_str("    approvalGates:\n");
                let mut seen = std::collections::HashSet::new();
                for g in gates.iter().filter(|g| seen.insert(g.lines().next().map(str::to_owned))) {
                    text.push_str(g);
                }
            }
            if let Some(max) = session {
                text.push_str(&format!("    session: {{maxToolCalls: {max}}}\n"));
            }
            text.push_str("approvers:\n  leads: {groups: [leads]}\n");
            text
        })
}

fn arg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..12).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "main", "/srv/x", "ab", "zz"]).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec((0i64..8).prop_map(Value::from), 0..4).prop_map(Value::from),
        (0i64..3).prop_map(|x| json!({"x": x})),
    ]
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["bot", "bot", "bot", "other"]),
        prop::sample::select(&TOOLS[..]),
        prop::collection::btree_map(prop::sample::select(&ARGS[..]), arg_value(), 0..3),
        prop::option::of(prop::sample::select(vec!["s1", "s2"])),
        prop::option::of(prop::sample::select(vec![
            json!({}),
            json!({"readOnlyHint": true}),
            json!({"destructiveHint": false}),
            json!({"readOnlyHint": "yes", "destructiveHint": 0}),
            json!({"openWorldHint": false, "idempotentHint": true}),
        ])),
    )
        .prop_map(|(agent, tool, args, session, annotations)| {
            let mut request = json!({"agent": agent, "tool": tool, "args": args});
            if let Some(session) = session {
                request["session"] = json!(session);
            }
            if let Some(annotations) = annotations {
                request["annotations"] = annotations;
            }
            request
        })
}

fn parse(value: &Value) -> Request {
    crate::util::request(value)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_global_rejects: cases() * 2,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn differential_engine_and_exported_rego_agree(
        text in policy(),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        let source = PolicySource { name: "p.yaml".into(), bytes: text.clone().into_bytes() };
        let checked = toolgate::compile(vec![source.clone()], &toolgate::NoFiles);
        // Generated conditions may not type-check; those policies prove nothing.
        prop_assume!(checked.policy.is_some());
        let engine = Engine::new(checked.policy.expect("compiles"), toolgate::state::State::in_memory());
        let policy = toolgate::compile(vec![source], &toolgate::NoFiles).policy.expect("compiles");
        let mut gateway = Gateway::new(&policy, Evaluator::Vm).expect("regorus loads the export");
        for (i, value) in requests.iter().enumerate() {
            let request = parse(value);
            let native = engine.decide(&request);
            let rego = gateway.decide(&request).expect("regorus decides");
            let native = (native.outcome.as_str(), native.rule, native.reason.code().as_str(), native.approver);
            let exported = (
                rego["decision"].as_str().unwrap_or("?"),
                rego["rule"].as_str().unwrap_or("?"),
                rego["reason_code"].as_str().unwrap_or("?"),
                rego["approver"].as_str(),
            );
            prop_assert_eq!(
                native, exported,
                "request {} of {}: {}\npolicy:\n{}\nrequests:\n{}",
                i, requests.len(), value, text,
                requests.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
            );
        }
    }
}
