//! # TL007 server-claims
//!
//! A `where` selector on a server that no catalog describes. Such a
//! selector is read per call, from the annotations the server itself lists
//! (`toolgate proxy` passes them on): the server, not a reviewer, decides
//! what the entry matches. A server that calls its `delete_repo` read-only
//! gets it through `github/* where readOnlyHint`, and one that calls it not
//! destructive slips past a gate on `github/* where destructiveHint`.
//!
//! Fix: pin the annotations with a catalog of the server's tools
//! (`toolgate catalog -- COMMAND > server.tools.json`, listed under
//! `catalogs:` with its `server`), so that the selection is made when the
//! policy compiles and reviewed with it; add `onDrift: deny` so that a
//! server whose tools change later is refused until the catalog is
//! reviewed again.
//!
//! Silence: `lintIgnore: [server-claims]` on the agent or at the top of its
//! file, for servers you run and trust to describe their tools.

use super::AgentView;
use crate::compiler::pattern::ToolPattern;
use crate::diagnostic::{Code, Diagnostic};

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    let a = agent.agent;
    let lists = a.allow.iter().map(|r| ("allowedTools", &r.pattern, r.rule));
    let lists = lists.chain(a.deny.iter().map(|r| ("deniedTools", &r.pattern, r.rule)));
    let lists = lists.chain(a.gates.iter().map(|g| ("approvalGates", &g.tool, g.rule)));
    for (list, pattern, rule) in lists {
        if !matches!(pattern, ToolPattern::Annotated { .. }) {
            continue;
        }
        let message =
            format!("`{}` in `{list}` matches what the server says about its own tools", pattern.text());
        findings.push(agent.finding(Code::ServerClaims, message, rule).with_help(
            "pin the annotations with a catalog of the server's tools (`toolgate catalog -- COMMAND`)",
        ));
    }
}
