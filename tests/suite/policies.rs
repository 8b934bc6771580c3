//! The example policies in `policies/` decide their test cases as expected,
//! through `toolgate eval` as a gateway would call it.

use serde::Deserialize;
use serde_json::Value;

use crate::util::{json_lines, root, run_with_input, toolgate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    before: Vec<Value>,
    request: Value,
    expect: String,
    rule: Option<String>,
    approver: Option<String>,
}

/// Gives each case its own sessions, so cases are independent within one run.
fn isolate(mut request: Value, case: usize) -> Value {
    if let Some(session) = request.get_mut("session")
        && let Some(s) = session.as_str()
    {
        *session = Value::from(format!("case{case}/{s}"));
    }
    request
}

#[test]
fn example_policies_decide_their_cases() {
    let dir = root().join("policies");
    let mut test_files: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    test_files.sort();
    assert!(test_files.len() >= 3, "every example policy has a test file");
    for path in test_files {
        let text = std::fs::read_to_string(&path).expect("read");
        let file: CaseFile =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut input = String::new();
        let mut checked = Vec::new();
        for (index, case) in file.cases.iter().enumerate() {
            for before in &case.before {
                input.push_str(&isolate(before.clone(), index).to_string());
                input.push('\n');
            }
            let mut request = isolate(case.request.clone(), index);
            request["id"] = Value::from(index);
            input.push_str(&request.to_string());
            input.push('\n');
            checked.push(index);
        }
        let output = run_with_input(toolgate(&dir).args(["eval", "--policy", "."]), input.as_bytes());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let answers: Vec<Value> = json_lines(&output).into_iter().filter(|a| a["id"].is_u64()).collect();
        assert_eq!(answers.len(), file.cases.len());
        for (case, answer) in file.cases.iter().zip(&answers) {
            let context = format!("{}: {}: {answer}", path.display(), case.name);
            assert_eq!(answer["decision"], case.expect, "{context}");
            if let Some(rule) = &case.rule {
                assert_eq!(answer["rule"], *rule, "{context}");
            }
            if let Some(approver) = &case.approver {
                assert_eq!(answer["approver"], *approver, "{context}");
            }
        }
    }
}

#[test]
fn example_policies_check_clean_and_match_real_tool_names() {
    let dir = root().join("policies");
    let output = toolgate(&dir).args(["check", "--deny-warnings", "."]).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Every exact server-qualified tool name used must exist in that server's real catalog.
    for (server, catalog) in [("github", "github.tools.json"), ("filesystem", "filesystem.tools.json")] {
        let path = root().join("../shared/fixtures/mcp").join(catalog);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tools: Value = serde_json::from_str(&text).expect("catalog JSON");
        let names: Vec<&str> =
            tools["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
        for entry in std::fs::read_dir(&dir).expect("policies/") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("read");
            for word in text.split(|c: char| c.is_whitespace() || "[],:'\"{}".contains(c)) {
                if let Some(tool) = word.strip_prefix(&format!("{server}/"))
                    && !tool.contains(['*', '?', '[', '{'])
                    && !tool.is_empty()
                {
                    assert!(names.contains(&tool), "{server}/{tool} is not in {catalog}");
                }
            }
        }
    }
}

#[test]
fn the_seed_example_compiles_and_warns_that_the_refund_gate_is_dead() {
    let output = toolgate(&root().join("tests"))
        .args(["check", "--format", "json", "seed.yaml"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let diagnostics: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0]["code"], "TG101");
    assert!(diagnostics[0]["message"].as_str().expect("message").contains("issueRefund"));
    assert_eq!(diagnostics[0]["line"], 10);
}
