//! `toolgate lint` as CI runs it: exit codes, silencing, and every output
//! format, SARIF validated against the official SARIF 2.1.0 schema.

use serde_json::Value;

use crate::util::{root, scratch, toolgate};

const RISKY: &str = "\
agentPolicies:
  support:
    allowedTools: [search, issueRefund]
    deniedTools: [deleteAccount]
    approvalGates:
      issueRefund: {required: true}
";

#[test]
fn lint_exit_codes_distinguish_findings_from_broken_policies() {
    let dir = scratch(&[
        ("risky.yaml", RISKY),
        (
            "clean.yaml",
            "agentPolicies:\n  bot:\n    allowedTools: [search]\n    session: {maxToolCalls: 9}\n",
        ),
        ("broken.yaml", "agentPolicies:\n  bot:\n    allowedTool: [search]\n"),
    ]);
    let status = |args: &[&str]| toolgate(dir.path()).args(args).output().expect("runs").status.code();
    assert_eq!(status(&["lint", "clean.yaml"]), Some(0));
    assert_eq!(status(&["lint", "risky.yaml"]), Some(3));
    assert_eq!(status(&["lint", "--exit-zero", "risky.yaml"]), Some(0));
    assert_eq!(status(&["lint", "broken.yaml"]), Some(1));
    assert_eq!(status(&["lint", "--exit-zero", "broken.yaml"]), Some(1));
    assert_eq!(status(&["lint", "missing.yaml"]), Some(2));
    assert_eq!(status(&["lint", "--explain", "no-such-rule"]), Some(2));
}

#[test]
fn lint_reports_each_rule_once_and_policies_can_silence_them() {
    let json = |text: &str| -> Vec<String> {
        let dir = scratch(&[("p.yaml", text)]);
        let output =
            toolgate(dir.path()).args(["lint", "--format", "json", "p.yaml"]).output().expect("runs");
        let found: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
        found.iter().map(|d| d["code"].as_str().expect("code").to_owned()).collect()
    };
    // In source order.
    assert_eq!(json(RISKY), ["TL003", "TL004", "TL002"]);
    let agent_silenced =
        RISKY.replace("  support:\n", "  support:\n    lintIgnore: [TL002, no-session-cap]\n");
    assert_eq!(json(&agent_silenced), ["TL004"]);
    let file_silenced = format!("lintIgnore: [redundant-deny]\n{RISKY}");
    assert_eq!(json(&file_silenced), ["TL003", "TL002"]);
    // A misspelt rule name is an error, not a silent no-op.
    let typo = RISKY.replace("  support:\n", "  support:\n    lintIgnore: [no-sesion-cap]\n");
    assert_eq!(json(&typo), ["TG013"]);
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let schema_text = std::fs::read_to_string(root().join("tests/fixtures/sarif/sarif-schema-2.1.0.json"))
        .expect("SARIF schema");
    let schema: Value = serde_json::from_str(&schema_text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let dir = scratch(&[("risky.yaml", RISKY)]);
    for command in ["lint", "check"] {
        let output =
            toolgate(dir.path()).args([command, "--format", "sarif", "risky.yaml"]).output().expect("runs");
        let log: Value = serde_json::from_slice(&output.stdout).expect("SARIF is JSON");
        let errors: Vec<String> =
            validator.iter_errors(&log).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{command}: {errors:?}");
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        for result in run["results"].as_array().expect("results") {
            let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
            assert_eq!(rules[index]["id"], result["ruleId"]);
            let location = &result["locations"][0]["physicalLocation"];
            assert_eq!(location["artifactLocation"]["uri"], "risky.yaml");
            assert!(location["region"]["startLine"].as_u64().expect("line") >= 1);
        }
    }
    // A lint rule's full description is its documentation.
    let output =
        toolgate(dir.path()).args(["lint", "--format", "sarif", "risky.yaml"]).output().expect("runs");
    let log: Value = serde_json::from_slice(&output.stdout).expect("SARIF");
    let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().expect("rules");
    let tl003 = rules.iter().find(|r| r["id"] == "TL003").expect("TL003");
    assert!(tl003["fullDescription"]["text"].as_str().expect("text").contains("lintIgnore"));
    let codes: Vec<&str> = log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["ruleId"].as_str().expect("id"))
        .collect();
    assert_eq!(codes, ["TL003", "TL004", "TL002"]);
}

#[test]
fn github_format_prints_one_escaped_workflow_command_per_finding() {
    let dir = scratch(&[("risky.yaml", RISKY)]);
    let output =
        toolgate(dir.path()).args(["lint", "--format", "github", "risky.yaml"]).output().expect("runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[2],
        "::warning file=risky.yaml,line=6,col=7,endLine=6,endColumn=18,title=TL002 gate-without-approver::\
         approval gate on `issueRefund` names no approver%0Ahelp: add `approver: <group>`, or deny the tool if nobody should approve it"
    );
    assert!(lines.iter().all(|l| l.starts_with("::warning file=risky.yaml,line=")));
}

#[test]
fn the_example_policies_lint_clean() {
    let output = toolgate(&root()).args(["lint", "policies/"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}
