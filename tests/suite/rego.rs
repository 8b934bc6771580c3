//! Rego interop: the export of every example policy, run by regorus (VM and
//! interpreter), decides every test case as the engine does.

use serde_json::Value;
use toolgate::authoring::rego_oracle::Gateway;
use toolgate::authoring::testing::TestFile;
use toolgate::compiler::rego_vm::Evaluator;
use toolgate::engine::{Engine, Request};

use crate::util::{compile_examples, request, root};

/// (decision, rule, approver, reason) of the engine.
fn native(engine: &Engine, request: &Request) -> (String, String, Option<String>, String) {
    let d = engine.decide(request);
    (d.outcome.as_str().to_owned(), d.rule.to_owned(), d.approver.map(str::to_owned), d.reason.to_string())
}

fn exported(gateway: &mut Gateway, request: &Request) -> (String, String, Option<String>, String) {
    let d = gateway.decide(request).unwrap_or_else(|e| panic!("regorus: {e}"));
    let text = |key: &str| d[key].as_str().unwrap_or_default().to_owned();
    (text("decision"), text("rule"), d["approver"].as_str().map(str::to_owned), text("reason"))
}

/// Reasons agree except where the engine names what went wrong in more
/// detail than Rego can see (which evaluation error; the schema's message).
fn same_reason(native: &str, rego: &str) -> bool {
    native == rego
        || (native.contains("could not be evaluated") && rego.contains("could not be evaluated"))
        || (native.contains("inputSchema") && rego.contains("inputSchema"))
}

#[test]
fn exported_example_policies_agree_with_the_engine_on_every_test_case() {
    let engine = Engine::new(compile_examples(), toolgate::state::State::in_memory());
    let policy = compile_examples();
    let mut files = Vec::new();
    for source in toolgate::compiler::files::read_tests(&[root().join("policies")]).expect("tests") {
        let text = String::from_utf8(source.bytes).expect("UTF-8");
        files.push((source.name, serde_saphyr::from_str::<TestFile>(&text).expect("test file")));
    }
    let module = Gateway::module(&policy).expect("regorus loads the export");
    let mut compared = 0;
    for evaluator in [Evaluator::Vm, Evaluator::Interpreter] {
        for (file, tests) in &files {
            for case in &tests.cases {
                let fresh = Engine::with_table(
                    std::sync::Arc::clone(engine.table()),
                    toolgate::state::State::in_memory(),
                );
                let mut gateway = Gateway::with_module(&policy, &module, evaluator);
                let mut requests = Vec::new();
                for before in &case.before {
                    let times = before.get("repeat").and_then(Value::as_u64).unwrap_or(1);
                    let inner = before.get("request").unwrap_or(before);
                    requests.extend(std::iter::repeat_n(request(inner), times as usize));
                }
                requests.push(request(&case.request));
                for (i, request) in requests.iter().enumerate() {
                    let (a, b) = (native(&fresh, request), exported(&mut gateway, request));
                    let context = format!("{evaluator:?} {file}: {} (request {i})", case.name);
                    assert_eq!((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2), "{context}");
                    assert!(same_reason(&a.3, &b.3), "{context}: reason {:?} vs {:?}", a.3, b.3);
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} decisions compared");
}

#[test]
fn the_exported_module_runs_on_the_bytecode_vm() {
    let policy = compile_examples();
    let module = toolgate::compiler::rego_vm::Module::new(
        &[(String::from("toolgate.rego"), toolgate::authoring::export::rego(&policy))],
        "data.toolgate.decision",
    )
    .expect("module");
    assert_eq!(module.evaluator(), Evaluator::Vm);
}

#[test]
fn rego_rules_in_constraints_and_gates_decide_through_the_binary() {
    let policy = "\
agentPolicies:
  ops:
    allowedTools: [deploy, restart]
    constraints:
      deploy:
        rego: data.ops.deploy_allowed
      restart:
        rego: data.ops.broken
    approvalGates:
      deploy:
        rego: data.ops.needs_approval
        approver: sre
";
    let module = "\
package ops

import rego.v1

default deploy_allowed := false

deploy_allowed if {
	input.args.env in {\"staging\", \"prod\"}
	not input.args.version == \"\"
}

needs_approval if input.args.env == \"prod\"

# Not a boolean: every call that reads it fails closed.
broken := \"yes\"
";
    let dir = crate::util::scratch(&[("policy.yaml", policy), ("ops.rego", module)]);
    let requests = [
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "staging", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "prod", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "dev", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "prod"}}"#,
        r#"{"agent": "ops", "tool": "restart", "args": {}}"#,
    ];
    let output = crate::util::run_with_input(
        crate::util::toolgate(dir.path()).args(["eval", "--policy", "policy.yaml"]),
        requests.join("\n").as_bytes(),
    );
    let answers: Vec<(String, String, String)> = crate::util::json_lines(&output)
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (text("decision"), text("rule"), text("reason"))
        })
        .collect();
    let expected = [
        ("allow", "ops.allowedTools.deploy", "allowed by policy"),
        (
            "require_approval",
            "ops.approvalGates.deploy",
            "Rego rule `data.ops.needs_approval` requires approval",
        ),
        ("deny", "ops.constraints.deploy.rego", "Rego rule `data.ops.deploy_allowed` is not true"),
        // `input.args.version` is undefined: `not ... == ""` holds in Rego.
        (
            "require_approval",
            "ops.approvalGates.deploy",
            "Rego rule `data.ops.needs_approval` requires approval",
        ),
        (
            "deny",
            "ops.constraints.restart.rego",
            "Rego rule `data.ops.broken` could not be evaluated (the rule's value is \"yes\", not a boolean); failing closed",
        ),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(answers, expected);
}
