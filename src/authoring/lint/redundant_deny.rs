//! # TL004 redundant-deny
//!
//! A `deniedTools` entry that no `allowedTools` entry of the agent overlaps.
//! toolgate denies every tool that is not allowed, so the entry changes no
//! decision; it only suggests to a reader that something would otherwise be
//! allowed. Often the allow it was meant to carve out of was renamed or
//! removed, which is worth knowing.
//!
//! The rule reports an entry only when it can tell there is no overlap: an
//! exact name or a selector against the allow patterns, and two globs
//! through the catalog's tools. Globs with no catalog are assumed to
//! overlap. An entry inherited by several agents is reported only if it is
//! redundant for every one of them.
//!
//! Fix: delete the entry, or restore the allow it was written against.
//!
//! Silence: `lintIgnore: [redundant-deny]` on the agent or at the top of its
//! file (for example for a deny kept as documentation, or to guard against
//! a future allow in an agent that extends this one).

use super::AgentView;
use crate::compiler::checked::ToolRule;
use crate::compiler::pattern::ToolPattern;
use crate::diagnostic::{Code, Diagnostic};

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    for deny in &agent.agent.deny {
        // Redundant only if no agent holding the entry allows anything it denies.
        let needed =
            agent.sharing(deny.rule).any(|other| other.agent.allow.iter().any(|a| overlaps(&other, a, deny)));
        if needed {
            continue;
        }
        let message =
            format!("`{}` is denied but never allowed; default-deny already denies it", deny.pattern.text());
        findings.push(
            agent
                .finding(Code::RedundantDeny, message, deny.rule)
                .with_help("delete the entry, or restore the allow it was meant to restrict"),
        );
    }
}

fn overlaps(agent: &AgentView<'_>, allow: &ToolRule, deny: &ToolRule) -> bool {
    match (&allow.pattern, &deny.pattern) {
        (a @ ToolPattern::Glob { .. }, d @ ToolPattern::Glob { .. }) => {
            let described = agent.catalogs.covers(a.text()) && agent.catalogs.covers(d.text());
            !described || agent.catalogs.tools().any(|t| a.matches(&t.name) && d.matches(&t.name))
        }
        (ToolPattern::Glob { .. }, names) => names.names().iter().any(|n| allow.pattern.matches(n)),
        (names, _) => names.names().iter().any(|n| deny.pattern.matches(n)),
    }
}
