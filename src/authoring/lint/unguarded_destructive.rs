//! # TL001 unguarded-destructive
//!
//! A wildcard allow (a glob or a `where` selector) that lets the agent call
//! destructive tools with no approval gate in front of them. Wildcards grow
//! with the server: a tool added to the catalog next month is allowed the
//! day it appears, and a destructive one should not be one nobody reviewed.
//!
//! With a catalog, the rule lists the tools the pattern allows whose
//! annotations say they may be destructive (`destructiveHint`, which MCP
//! assumes for tools that do not say they are read-only), that no deny
//! entry removes and no approval gate covers. Without a catalog, it flags
//! an allow of a whole server (`server/*`, `*`, `**`) that no gate
//! overlaps.
//!
//! Fix: gate them (`approvalGates: {"github/* where destructiveHint":
//! {required: true, approver: ...}}`), deny them, or allow read-only tools
//! only (`github/* where readOnlyHint`).
//!
//! Silence: `lintIgnore: [unguarded-destructive]` on the agent or at the top
//! of its file.

use super::AgentView;
use crate::compiler::catalog::Hint;
use crate::compiler::checked::GateTrigger;
use crate::compiler::pattern::ToolPattern;
use crate::diagnostic::{Code, Diagnostic};

/// How many tool names a finding lists before it says "and N more".
const LISTED: usize = 5;

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    let a = agent.agent;
    let gated =
        |tool: &str| a.gates.iter().any(|g| !matches!(g.trigger, GateTrigger::Never) && g.tool.matches(tool));
    for allow in a.allow.iter().filter(|r| !matches!(r.pattern, ToolPattern::Exact(_))) {
        let text = allow.pattern.text();
        let message = if agent.catalogs.covers(text) || matches!(allow.pattern, ToolPattern::Selected { .. })
        {
            let unguarded: Vec<&str> = agent
                .catalogs
                .tools()
                .filter(|t| t.hints.has(Hint::Destructive) && allow.pattern.matches(&t.name))
                .filter(|t| !a.deny.iter().any(|d| d.pattern.matches(&t.name)) && !gated(&t.name))
                .map(|t| t.name.as_str())
                .collect();
            if unguarded.is_empty() {
                continue;
            }
            let mut names: Vec<String> = unguarded.iter().take(LISTED).map(|n| format!("`{n}`")).collect();
            if unguarded.len() > LISTED {
                names.push(format!("and {} more", unguarded.len() - LISTED));
            }
            format!(
                "`{text}` allows {} destructive tool{} without an approval gate: {}",
                unguarded.len(),
                if unguarded.len() == 1 { "" } else { "s" },
                names.join(", ")
            )
        } else {
            let whole_server = ["*", "**"].contains(&text) || text.ends_with("/*") || text.ends_with("/**");
            let any_gate = a.gates.iter().any(|g| !matches!(g.trigger, GateTrigger::Never));
            if !whole_server || any_gate {
                continue;
            }
            format!(
                "`{text}` allows every tool of its server, destructive ones included, and no approval gate applies"
            )
        };
        findings.push(
            agent
                .finding(Code::UnguardedDestructive, message, allow.rule)
                .with_help("gate them with `<server>/* where destructiveHint`, deny them, or allow `where readOnlyHint` only"),
        );
    }
}
