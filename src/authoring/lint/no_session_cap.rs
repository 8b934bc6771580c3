//! # TL003 no-session-cap
//!
//! An agent whose sessions have no `session.maxToolCalls`, neither its own
//! nor inherited. A looping or hijacked agent can then call its tools
//! without end; a cap turns a runaway session into a denial the gateway sees
//! and the audit trail records.
//!
//! Fix: add `session: {maxToolCalls: N}` with a generous N (a cap far above
//! normal use still stops a loop). Per-tool `maxPerSession` caps do not
//! count: they bound one tool, not the session.
//!
//! Silence: `lintIgnore: [no-session-cap]` on the agent or at the top of
//! its file, for agents whose sessions are bounded elsewhere.

use super::AgentView;
use crate::diagnostic::{Code, Diagnostic};

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    if agent.agent.session.max_tool_calls.is_some() || agent.agent.allow.is_empty() {
        return;
    }
    let message = format!("agent `{}` has no cap on calls per session", agent.agent.name);
    findings.push(
        agent
            .finding(Code::NoSessionCap, message, agent.agent.default_deny)
            .with_help("add `session: {maxToolCalls: N}`"),
    );
}
