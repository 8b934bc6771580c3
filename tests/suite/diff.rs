//! `toolgate diff`: a table of policy edits and the decision changes each
//! must (and must not) report, then git revisions and exit codes.

use serde_json::Value;

use crate::util::{scratch, toolgate};

const BASE: &str = "\
agentPolicies:
  support:
    allowedTools: [getOrderHistory, createSupportTicket, issueRefund]
    deniedTools: [deleteAccount]
    constraints:
      createSupportTicket:
        maxPerSession: 3
        requiresFields: [category]
        params:
          category: {type: string, enum: [billing, shipping]}
          description: {type: string, maxLength: 2000}
          attachment: {pathWithin: /srv/uploads}
          files: {type: array, items: {properties: {path: {pathNotWithin: [.git]}}}}
      getOrderHistory:
        when: \"args.limit <= 50\"
    approvalGates:
      issueRefund:
        required: true
        approver: supervisor
        maxAmount: 500
    session: {maxToolCalls: 40}
approvers:
  supervisor: {groups: [supervisors]}
";

/// (edit, from, to, expected `direction tool: change` lines).
const EDITS: &[(&str, &str, &str, &[&str])] = &[
    (
        "reordered lists, YAML style and an anchor",
        "allowedTools: [getOrderHistory, createSupportTicket, issueRefund]",
        "allowedTools:\n      - &refund issueRefund\n      - createSupportTicket\n      - getOrderHistory",
        &[],
    ),
    (
        "a condition respaced and parenthesised",
        "when: \"args.limit <= 50\"",
        "when: \"(args.limit<=50)\"",
        &[],
    ),
    (
        "a new tool allowed",
        "[getOrderHistory, createSupportTicket, issueRefund]",
        "[getOrderHistory, createSupportTicket, issueRefund, exportData]",
        &["widened exportData: not allowed → allowed"],
    ),
    (
        "a tool no longer allowed",
        "[getOrderHistory, createSupportTicket, issueRefund]",
        "[getOrderHistory, createSupportTicket]",
        &["narrowed issueRefund: allowed with approval → not allowed"],
    ),
    (
        "a cap raised",
        "maxPerSession: 3",
        "maxPerSession: 5",
        &["widened createSupportTicket: maxPerSession raised from 3 to 5"],
    ),
    (
        "a call made dearer",
        "maxPerSession: 3",
        "maxPerSession: 3\n        cost: 0.5",
        &["narrowed createSupportTicket: cost 0.5 added"],
    ),
    (
        "the session cap removed",
        "    session: {maxToolCalls: 40}\n",
        "",
        &["widened (agent): session.maxToolCalls 40 removed"],
    ),
    (
        "an approval gate made conditional",
        "required: true\n        approver",
        "when: \"args.amount > 100\"\n        approver",
        &["widened issueRefund: approval always, by supervisor → when `args.amount > 100`, by supervisor"],
    ),
    (
        "an approval ceiling raised",
        "maxAmount: 500",
        "maxAmount: 900",
        &["widened issueRefund: maxAmount of `amount` raised from 500 to 900"],
    ),
    (
        "an enum value added",
        "enum: [billing, shipping]",
        "enum: [billing, shipping, other]",
        &["widened createSupportTicket: argument `category`: enum: added \"other\""],
    ),
    (
        "a length limit tightened",
        "maxLength: 2000",
        "maxLength: 200",
        &["narrowed createSupportTicket: argument `description`: maxLength lowered from 2000 to 200"],
    ),
    ("a path root spelt differently", "pathWithin: /srv/uploads", "pathWithin: [\"//srv/./uploads/\"]", &[]),
    (
        "a path root added",
        "pathWithin: /srv/uploads",
        "pathWithin: [/srv/uploads, /tmp]",
        &["widened createSupportTicket: argument `attachment`: pathWithin: added /tmp"],
    ),
    (
        "an excluded directory added inside a list's objects",
        "pathNotWithin: [.git]",
        "pathNotWithin: [.git, .github/workflows]",
        &[
            "narrowed createSupportTicket: argument `files`: items: field `path`: pathNotWithin: added .github/workflows",
        ],
    ),
    (
        "a required field dropped",
        "requiresFields: [category]",
        "requiresFields: []",
        &["widened createSupportTicket: `category` no longer required"],
    ),
    (
        "a condition rewritten",
        "args.limit <= 50",
        "args.limit <= 50 && has(args.customer)",
        &["changed getOrderHistory: condition `args.limit <= 50` → `args.limit <= 50 && has(args.customer)`"],
    ),
];

fn diff(old: &str, new: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let dir = scratch(&[("old.yaml", old), ("new.yaml", new)]);
    let mut args = vec!["diff", "--format", "json", "old.yaml", "new.yaml"];
    args.extend(extra);
    let output = toolgate(dir.path()).args(&args).output().expect("runs");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), json)
}

fn lines(json: &Value) -> Vec<String> {
    json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let tool = c["tool"].as_str().unwrap_or("(agent)");
            format!("{} {tool}: {}", c["direction"].as_str().unwrap(), c["change"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn each_edit_reports_exactly_its_decision_changes() {
    for (edit, from, to, expected) in EDITS {
        assert!(BASE.contains(from), "{edit}: the base has no `{from}`");
        let (status, json) = diff(BASE, &BASE.replacen(from, to, 1), &[]);
        assert_eq!(status, Some(0), "{edit}");
        assert_eq!(lines(&json), *expected, "{edit}");
    }
}

#[test]
fn fail_on_widen_exits_3_only_when_something_widened() {
    let widened = BASE.replace("maxPerSession: 3", "maxPerSession: 5");
    let narrowed = BASE.replace("maxPerSession: 3", "maxPerSession: 2");
    assert_eq!(diff(BASE, &widened, &["--fail-on-widen"]).0, Some(3));
    assert_eq!(diff(BASE, &narrowed, &["--fail-on-widen"]).0, Some(0));
    assert_eq!(diff(BASE, "agentPolicies: {bot: {allowedTool: [x]}}", &[]).0, Some(1));
}

#[test]
fn markdown_and_human_formats_summarise_the_same_changes() {
    let dir =
        scratch(&[("old.yaml", BASE), ("new.yaml", &BASE.replace("maxPerSession: 3", "maxPerSession: 5"))]);
    let run = |format: &str| {
        let output = toolgate(dir.path())
            .args(["diff", "--format", format, "old.yaml", "new.yaml"])
            .output()
            .expect("runs");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    assert_eq!(
        run("human"),
        "support\n  + createSupportTicket: maxPerSession raised from 3 to 5\n1 widened (+), 0 narrowed (-), 0 to review (~)\n"
    );
    let markdown = run("markdown");
    assert!(markdown.contains("**1 widened**, 0 narrowed, 0 to review."), "{markdown}");
    assert!(
        markdown.contains(
            "| ⚠️ widened | `support` | `createSupportTicket` | maxPerSession raised from 3 to 5 |"
        ),
        "{markdown}"
    );
}

#[test]
fn git_revisions_are_read_with_their_catalogs() {
    let dir = scratch(&[("policies/p.yaml", BASE)]);
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git runs")
            .status;
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    std::fs::write(dir.path().join("policies/p.yaml"), BASE.replace("maxAmount: 500", "maxAmount: 400"))
        .expect("edit");
    let output = toolgate(&dir.path().join("policies"))
        .args(["diff", "--format", "json", "HEAD:p.yaml", "p.yaml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(lines(&json), ["narrowed issueRefund: maxAmount of `amount` lowered from 500 to 400"]);
    let bad =
        toolgate(dir.path()).args(["diff", "nosuchrev:p.yaml", "policies/p.yaml"]).output().expect("runs");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn refusing_drifted_tools_narrows_every_tool_of_the_catalog() {
    let catalog = r#"{"tools": [{"name": "read", "inputSchema": {"type": "object"}}, {"name": "write", "inputSchema": {"type": "object"}}]}"#;
    let policy = |on_drift: &str| {
        format!(
            "catalogs:\n  - file: fs.tools.json\n    server: fs{on_drift}\nagentPolicies:\n  bot:\n    allowedTools: [fs/read]\n"
        )
    };
    let (old, new) = (policy(""), policy("\n    onDrift: deny"));
    let dir = scratch(&[("fs.tools.json", catalog), ("old.yaml", &old), ("new.yaml", &new)]);
    let run = |a: &str, b: &str| {
        let output = toolgate(dir.path())
            .args(["diff", "--format", "json", "--fail-on-widen", a, b])
            .output()
            .expect("runs");
        (output.status.code(), lines(&serde_json::from_slice(&output.stdout).expect("JSON")))
    };
    assert_eq!(
        run("old.yaml", "new.yaml"),
        (
            Some(0),
            vec![String::from(
                "narrowed fs/read: refused if the tool drifts from its catalog (onDrift: deny)"
            )]
        )
    );
    let (code, widened) = run("new.yaml", "old.yaml");
    assert_eq!((code, widened.len()), (Some(3), 1), "{widened:?}");
}

#[test]
fn selectors_on_live_annotations_are_compared_per_combination_of_the_hints_they_read() {
    let old = "agentPolicies:\n  bot:\n    allowedTools: [\"fs/*\"]\n";
    let new = "agentPolicies:\n  bot:\n    allowedTools: [\"fs/* where readOnlyHint\"]\n    deniedTools: [\"fs/* where openWorldHint and not readOnlyHint\"]\n";
    let dir = scratch(&[("old.yaml", old), ("new.yaml", new)]);
    let run = |a: &str, b: &str| {
        let output = toolgate(dir.path())
            .args(["diff", "--format", "json", "--fail-on-widen", a, b])
            .output()
            .expect("runs");
        (output.status.code(), lines(&serde_json::from_slice(&output.stdout).expect("JSON")))
    };
    // Read-only tools stay allowed whatever openWorldHint says; the rest are
    // denied (open world) or no longer allowed (closed world).
    assert_eq!(
        run("old.yaml", "new.yaml"),
        (
            Some(0),
            vec![
                String::from(
                    "narrowed fs/… where not readOnlyHint and not openWorldHint: allowed → not allowed"
                ),
                String::from("narrowed fs/… where not readOnlyHint and openWorldHint: allowed → denied"),
            ]
        )
    );
    let (code, widened) = run("new.yaml", "old.yaml");
    assert_eq!((code, widened.len()), (Some(3), 2), "{widened:?}");
}

#[test]
fn loosening_an_output_rule_widens_and_tightening_it_narrows() {
    let old = "agentPolicies:\n  bot:\n    allowedTools: [t, u]\n    output:\n      maxBytes: 1000\n      secrets: redact\n      patterns:\n        ticket: {regex: 'T-[0-9]+', action: redact}\n    constraints:\n      u:\n        output: {injection: deny}\n";
    let new = "agentPolicies:\n  bot:\n    allowedTools: [t, u]\n    output:\n      maxBytes: 5000\n      secrets: flag\n      onOversize: deny\n      patterns:\n        ticket: {regex: 'TK-[0-9]+', action: redact}\n    constraints:\n      u:\n        output: {injection: kill}\n";
    let dir = scratch(&[("old.yaml", old), ("new.yaml", new)]);
    let output = toolgate(dir.path())
        .args(["diff", "--format", "json", "--fail-on-widen", "old.yaml", "new.yaml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "a widening fails the review");
    let changes = lines(&serde_json::from_slice(&output.stdout).expect("JSON"));
    assert_eq!(
        changes,
        [
            "widened (agent): output.maxBytes raised from 1000 to 5000",
            "widened (agent): output.secrets redact → flag",
            "narrowed (agent): output.onOversize truncate → deny",
            "changed (agent): output pattern `ticket`: regex changed",
            "narrowed u: output for this tool.injection deny → kill",
        ]
    );
}

#[test]
fn a_variable_a_server_now_receives_widens() {
    let old = "servers:\n  github: {env: [PATH]}\n  fs: {env: [PATH, HOME]}\nagentPolicies:\n  bot:\n    allowedTools: [t]\n";
    let new =
        "servers:\n  github: {env: [PATH, GITHUB_TOKEN]}\nagentPolicies:\n  bot:\n    allowedTools: [t]\n";
    let dir = scratch(&[("old.yaml", old), ("new.yaml", new)]);
    let output = toolgate(dir.path())
        .args(["diff", "--format", "json", "--fail-on-widen", "old.yaml", "new.yaml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3));
    let changes = lines(&serde_json::from_slice(&output.stdout).expect("JSON"));
    assert_eq!(
        changes,
        [
            "widened fs: no longer scoped: receives all of its proxy's environment",
            "widened github: now receives `GITHUB_TOKEN`",
        ]
    );
}

#[test]
fn fewer_approvals_needed_widens_and_more_narrows() {
    let gate = |n: u32| {
        format!(
            "approvers:\n  finance: {{groups: [finance]}}\nagentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n        approver: finance\n        approvals: {n}\n"
        )
    };
    let (old, new) = (gate(2), gate(1));
    let dir = scratch(&[("old.yaml", &old), ("new.yaml", &new)]);
    let output = toolgate(dir.path())
        .args(["diff", "--format", "json", "old.yaml", "new.yaml"])
        .output()
        .expect("runs");
    assert_eq!(
        lines(&serde_json::from_slice(&output.stdout).expect("JSON")),
        ["widened pay: approvals needed 2 → 1"]
    );
    let output = toolgate(dir.path())
        .args(["diff", "--format", "json", "new.yaml", "old.yaml"])
        .output()
        .expect("runs");
    assert_eq!(
        lines(&serde_json::from_slice(&output.stdout).expect("JSON")),
        ["narrowed pay: approvals needed 1 → 2"]
    );
}
