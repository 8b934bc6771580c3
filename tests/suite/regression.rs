//! Regression tests, each named after the bug it pins.

use serde_json::json;
use toolgate::compiler::PolicySource;
use toolgate::engine::{Engine, Outcome, Request};

use crate::util::engine;

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

/// An unknown request field was ignored, so `"arg"` for `"args"` decided a
/// call with no arguments, skipping its `params` rules: a fail-open typo.
#[test]
fn a_misspelt_request_field_is_refused_not_ignored() {
    let dir = crate::util::scratch(&[(
        "p.yaml",
        "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        params:\n          limit: {maximum: 50}\n",
    )]);
    let output = crate::util::run_with_input(
        crate::util::toolgate(dir.path()).args(["eval", "--policy", "p.yaml"]),
        br#"{"id": 1, "agent": "bot", "tool": "t", "arg": {"limit": 500}}"#,
    );
    let answer = &crate::util::json_lines(&output)[0];
    assert_eq!(answer["decision"], "deny");
    assert_eq!(answer["error"]["code"], "invalid_request");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("did you mean `args`")));
}

/// `check a.yaml .` named one file twice and reported its agents as
/// defined twice (TG020).
#[test]
fn a_file_named_twice_is_loaded_once() {
    let dir = crate::util::scratch(&[("a.yaml", "agentPolicies:\n  bot:\n    allowedTools: [t]\n")]);
    let output =
        crate::util::toolgate(dir.path()).args(["check", "a.yaml", ".", "./a.yaml"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The policy hash included the path as typed, so `policies` and
/// `./policies` gave two hashes for one policy.
#[test]
fn the_policy_hash_does_not_depend_on_how_the_path_is_written() {
    let dir = crate::util::scratch(&[("p/a.yaml", "agentPolicies:\n  bot:\n    allowedTools: [t]\n")]);
    let hash = |path: &str| {
        let output = crate::util::run_with_input(
            crate::util::toolgate(dir.path()).args(["eval", "--policy", path]),
            br#"{"agent": "bot", "tool": "t"}"#,
        );
        crate::util::json_lines(&output)[0]["policy"].clone()
    };
    assert_eq!(hash("p"), hash("./p/"));
    assert_eq!(hash("p"), hash("p/a.yaml"));
}

/// Glob coverage read one glob's text as a tool name, so a deny of
/// `files/?` was taken to cover an allow of `files/*` (a false TG100).
#[test]
fn a_narrower_glob_is_not_taken_to_cover_a_wider_one() {
    let policy = "agentPolicies:\n  bot:\n    allowedTools: [\"files/*\"]\n    deniedTools: [\"files/?\"]\n";
    let checked = toolgate::compile(
        vec![PolicySource { name: "p.yaml".into(), bytes: policy.as_bytes().to_vec() }],
        &toolgate::NoFiles,
    );
    assert!(checked.diagnostics.as_slice().is_empty(), "{:?}", checked.diagnostics);
}

/// `toolgate query` sent an argument containing a newline as two requests,
/// read one answer, and could exit 0 although the second was denied.
#[test]
fn query_refuses_a_request_argument_spanning_two_lines() {
    let output = crate::util::toolgate(&crate::util::root())
        .args([
            "query",
            "--socket",
            "/nonexistent.sock",
            "{\"agent\":\"a\",\"tool\":\"t\"}\n{\"agent\":\"a\",\"tool\":\"rm\"}",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be one line"));
}

/// With `allowedTools: ["db/*"]` and `deniedTools: [db/drop_table]`, names
/// that only look like `db/drop_table` (trailing space, NUL, newline,
/// zero-width space, a Cyrillic `а`, other capitals) were allowed; and with
/// duplicate keys the last one won, so `{"path": "/etc/shadow", "path":
/// "/srv/docs/a.md"}` was decided on the harmless path.
#[test]
fn look_alike_names_and_duplicate_keys_are_refused_not_allowed() {
    let policy = "agentPolicies:\n  db:\n    allowedTools: [\"db/*\", write]\n    deniedTools: [db/drop_table]\n    constraints:\n      write:\n        params:\n          path: {type: string, pattern: \"^/srv/docs/\"}\n";
    let dir = crate::util::scratch(&[("policy.yaml", policy)]);
    let tools = [
        "db/drop_table ",
        "db/drop_table\u{0}",
        "db/drop_table\n",
        "db/drop\u{200b}_table",
        "db/drop_t\u{430}ble",
        "db/DROP_TABLE",
        "DB/Drop_Table",
    ];
    let mut lines: Vec<String> =
        tools.iter().map(|tool| json!({"agent": "db", "tool": tool}).to_string()).collect();
    lines.push(
        r#"{"agent": "db", "tool": "write", "args": {"path": "/etc/shadow", "path": "/srv/docs/a.md"}}"#
            .into(),
    );
    lines.push(r#"{"op": "decide", "op": "health", "agent": "db", "tool": "db/drop_table"}"#.into());
    lines.push(r#"{"agent": "db", "tool": "db/read"}"#.into());
    let output = crate::util::run_with_input(
        crate::util::toolgate(dir.path()).args(["eval", "--policy", "policy.yaml"]),
        lines.join("\n").as_bytes(),
    );
    let answers = crate::util::json_lines(&output);
    assert_eq!(answers.len(), lines.len(), "{answers:?}");
    let codes: Vec<String> = answers
        .iter()
        .map(|a| a["error"]["code"].as_str().or(a["reason_code"].as_str()).unwrap_or("?").to_owned())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_name",
            "invalid_name",
            "invalid_name",
            "invalid_name",
            "invalid_name",
            "tool_denied",
            "tool_denied",
            "duplicate_key",
            "duplicate_key",
            "allowed"
        ]
    );
    for answer in &answers[..answers.len() - 1] {
        assert_eq!(answer["decision"], "deny", "{answer}");
    }
    // In process, too: the engine denies a name the wire would refuse.
    let engine = engine(policy);
    let request = Request { agent: "db".into(), tool: "db/drop_table ".into(), ..Request::default() };
    let decision = engine.decide(&request);
    assert_eq!((decision.outcome, decision.reason.code().as_str()), (Outcome::Deny, "invalid_name"));
}

/// The policy hash left out the Rego modules: dropping another `.rego`
/// file beside the policy changed decisions under the same hash, and
/// approvals bound to that hash survived the change.
#[test]
fn the_policy_hash_covers_the_rego_modules_beside_the_policy() {
    let policy = "agentPolicies:\n  ops:\n    allowedTools: [deploy]\n    approvalGates:\n      deploy:\n        rego: data.ops.needs_approval\n";
    let module = "package ops\n\nimport rego.v1\n\ndefault needs_approval := false\n";
    let dir = crate::util::scratch(&[("p/policy.yaml", policy), ("p/ops.rego", module)]);
    let decide = |path: &str| {
        let output = crate::util::run_with_input(
            crate::util::toolgate(dir.path()).args(["eval", "--policy", path]),
            br#"{"agent": "ops", "tool": "deploy"}"#,
        );
        let answer = crate::util::json_lines(&output)[0].clone();
        (
            answer["decision"].as_str().unwrap_or("?").to_owned(),
            answer["policy"].as_str().unwrap_or("?").to_owned(),
        )
    };
    let (decision, before) = decide("p");
    assert_eq!(decision, "allow");
    assert_eq!(decide("./p/").1, before, "the hash does not depend on how the path is written");
    std::fs::write(
        dir.path().join("p/more.rego"),
        "package ops\n\nimport rego.v1\n\nneeds_approval if input.tool == \"deploy\"\n",
    )
    .expect("write");
    let (decision, after) = decide("p");
    assert_eq!(decision, "require_approval");
    assert_ne!(after, before, "another module decides otherwise under another hash");
}
