//! The example policies in `policies/` check clean, use real tool names, and
//! the seed example behaves as the issue describes. (Their test cases run
//! through `toolgate test` in `cli.rs`.)

use serde_json::Value;

use crate::util::{root, toolgate};

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
            // Policies only: test files name unknown tools on purpose.
            if path.extension().is_none_or(|e| e != "yaml") || toolgate::files::is_test_file(&path) {
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
