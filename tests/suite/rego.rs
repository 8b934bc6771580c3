//! Rego interop: the export of every example policy, run by regorus (VM and
//! interpreter), decides every test case as the engine does.

use toolgate::authoring::rego_oracle::Gateway;
use toolgate::authoring::testing::TestFile;
use toolgate::compiler::rego_vm::Evaluator;
use toolgate::engine::{Engine, Request};

use crate::util::{compile_examples, root};

/// (decision, rule, reason code, approver) of a decision, and its reason
/// when the reason is an argument's (`argument \`files[2].path\` is ...`),
/// which both must word alike.
type Compared = (String, String, String, Option<String>, Option<String>);

fn compared(
    decision: String,
    rule: String,
    code: String,
    approver: Option<String>,
    reason: String,
) -> Compared {
    let reason = (code == "invalid_argument").then_some(reason);
    (decision, rule, code, approver, reason)
}

fn native(engine: &Engine, request: &Request) -> Compared {
    let d = engine.decide(request);
    let code = d.reason.code().as_str().to_owned();
    compared(
        d.outcome.as_str().to_owned(),
        d.rule.to_owned(),
        code,
        d.approver.map(str::to_owned),
        d.reason.to_string(),
    )
}

/// The same of the exported policy: the reasons' codes must agree (their
/// text may say more in the engine: which evaluation error, the schema's
/// message).
fn exported(gateway: &mut Gateway, request: &Request) -> Compared {
    let d = gateway.decide(request).unwrap_or_else(|e| panic!("regorus: {e}"));
    let text = |key: &str| d[key].as_str().unwrap_or_default().to_owned();
    compared(
        text("decision"),
        text("rule"),
        text("reason_code"),
        d["approver"].as_str().map(str::to_owned),
        text("reason"),
    )
}

/// Decides every case of the policy in `dir` (its `*.test.yaml` files) on
/// the engine and on the export, on both of regorus's evaluators; returns
/// how many decisions were compared.
fn agree_on(dir: &std::path::Path) -> usize {
    let compile = || {
        let sources = toolgate::compiler::files::read_policies(&[dir.to_path_buf()]).expect("policies");
        toolgate::compile(sources, &toolgate::DiskFiles).policy.expect("compiles")
    };
    let policy = compile();
    let table = std::sync::Arc::new(toolgate::engine::table::DecisionTable::build(compile()));
    let mut files = Vec::new();
    for source in toolgate::compiler::files::read_tests(&[dir.to_path_buf()]).expect("tests") {
        let text = String::from_utf8(source.bytes).expect("UTF-8");
        files.push((source.name, TestFile::parse(&text).expect("test file")));
    }
    let module = Gateway::module(&policy).expect("regorus loads the export");
    let mut compared = 0;
    for evaluator in [Evaluator::Vm, Evaluator::Interpreter] {
        for (file, tests) in &files {
            for case in &tests.cases {
                let fresh =
                    Engine::with_table(std::sync::Arc::clone(&table), toolgate::state::State::in_memory());
                let mut gateway = Gateway::with_module(&policy, &module, evaluator);
                let mut requests = Vec::new();
                for (request, times) in &case.before {
                    requests.extend(std::iter::repeat_n(request.clone(), *times as usize));
                }
                requests.push(case.request.clone());
                for (i, request) in requests.iter().enumerate() {
                    let context = format!("{evaluator:?} {file}: {} (request {i})", case.name);
                    assert_eq!(native(&fresh, request), exported(&mut gateway, request), "{context}");
                    compared += 1;
                }
            }
        }
    }
    compared
}

#[test]
fn exported_example_policies_agree_with_the_engine_on_every_test_case() {
    let compared = agree_on(&root().join("policies"));
    assert!(compared > 1000, "only {compared} decisions compared");
}

#[test]
fn exported_semantics_fixtures_agree_with_the_engine_on_every_case() {
    let mut compared = 0;
    for fixture in crate::util::engine_fixtures() {
        compared += agree_on(&fixture);
    }
    assert!(compared > 100, "only {compared} decisions compared");
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
    // The policy and module of the `rego` semantics fixture.
    let dir = root().join("tests/fixtures/engine/rego");
    let requests = [
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "staging", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "prod", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "dev", "version": "1.2"}}"#,
        r#"{"agent": "ops", "tool": "deploy", "args": {"env": "prod"}}"#,
        r#"{"agent": "ops", "tool": "restart", "args": {}}"#,
    ];
    let output = crate::util::run_with_input(
        crate::util::toolgate(&dir).args(["eval", "--policy", "policy.yaml"]),
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
