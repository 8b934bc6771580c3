//! The example policies in `policies/` check clean against the real tool
//! catalogs, a drifted catalog fails them, and
//! the seed example behaves as the issue describes. (Their test cases run
//! through `toolgate test` in `cli.rs`.)

use serde_json::Value;

use crate::util::{root, scratch, toolgate};

#[test]
fn example_policies_check_clean_against_their_catalogs() {
    let dir = root().join("policies");
    let output = toolgate(&dir).args(["check", "--deny-warnings", "."]).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Every policy naming a server's tools checks them against that server's catalog.
    for name in ["github-developer.yaml", "filesystem-agent.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("policy");
        let server = name.split('-').next().expect("server");
        assert!(text.contains(&format!("file: catalogs/{server}.tools.json")), "{name} names no catalog");
    }
}

#[test]
fn shipped_catalogs_are_the_real_fixtures_unchanged() {
    let shared = root().join("../shared/fixtures/mcp");
    if !shared.exists() {
        return; // a checkout without the shared fixtures: nothing to compare against
    }
    for name in ["github.tools.json", "filesystem.tools.json"] {
        let ours = std::fs::read(root().join("policies/catalogs").join(name)).expect("shipped catalog");
        let theirs = std::fs::read(shared.join(name)).expect("fixture");
        assert!(ours == theirs, "policies/catalogs/{name} differs from the fixture");
    }
}

/// Tool drift: the server renamed a parameter and removed a tool since the
/// policy was written. `check` must fail and name both.
#[test]
fn a_catalog_that_drifted_under_the_policy_fails_the_check() {
    let scratch = scratch(&[]);
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("catalogs")).expect("dir");
    std::fs::copy(root().join("policies/github-developer.yaml"), dir.join("policy.yaml")).expect("copy");
    let text = std::fs::read_to_string(root().join("policies/catalogs/github.tools.json")).expect("catalog");
    let mut catalog: Value = serde_json::from_str(&text).expect("JSON");
    let tools = catalog["tools"].as_array_mut().expect("tools");
    tools.retain(|t| t["name"] != "merge_pull_request");
    let push = tools.iter_mut().find(|t| t["name"] == "push_files").expect("push_files");
    let properties = push["inputSchema"]["properties"].as_object_mut().expect("properties");
    let branch = properties.remove("branch").expect("branch");
    properties.insert("ref".into(), branch);
    std::fs::write(dir.join("catalogs/github.tools.json"), catalog.to_string()).expect("write");

    let output = toolgate(dir).args(["check", "--format", "json", "policy.yaml"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let found: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    let messages: Vec<(&str, &str)> =
        found.iter().map(|d| (d["code"].as_str().unwrap(), d["message"].as_str().unwrap())).collect();
    assert!(
        messages.contains(&("TG051", "no tool `github/merge_pull_request` in the catalog")),
        "{messages:?}"
    );
    assert!(messages.contains(&("TG052", "the tool takes no argument `branch`")), "{messages:?}");
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
