//! Warnings about rules that can never take effect.

use super::agent::OwnRules;
use crate::compiler::checked::{CheckedAgent, Rules, ToolRule};
use crate::compiler::pattern::{PatternIndex, ToolPattern};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// Reports, for the agent's own rules, allows that a deny shadows and
/// constraints or gates on tools the agent can never call.
pub fn warn(agent: &CheckedAgent, own: &OwnRules, rules: &Rules, diagnostics: &mut Diagnostics) {
    let allows = PatternIndex::new(agent.allow.iter().map(|r| &r.pattern));
    let denies = PatternIndex::new(agent.deny.iter().map(|r| &r.pattern));
    let lists = Lists { agent, allows: &allows, denies: &denies };
    for allow in &own.allow {
        if let Some(deny) = lists.covering_deny(&allow.pattern)
            && let (Some(at), Some(denied_at)) = (rules.location(allow.rule), rules.location(deny.rule))
        {
            diagnostics.push(
                Diagnostic::new(
                    Code::AllowShadowedByDeny,
                    format!(
                        "`{}` is both allowed and denied for agent `{}`",
                        allow.pattern.text(),
                        agent.name
                    ),
                    at,
                )
                .with_label("this allow never takes effect")
                .with_secondary(denied_at, "because this deny wins")
                .with_help("deny always wins; remove one of the two entries"),
            );
        }
    }
    let targets =
        own.constraints.iter().map(|c| (&c.tool, "constraint", c.location)).chain(
            own.gates.iter().filter_map(|g| Some((&g.tool, "approval gate", rules.location(g.rule)?))),
        );
    for (tool, kind, location) in targets {
        if let Some(reason) = lists.unreachable(tool) {
            let mut diagnostic = Diagnostic::new(
                Code::DeadRule,
                format!(
                    "{kind} on `{}` never applies: agent `{}` can never call it",
                    tool.text(),
                    agent.name
                ),
                location,
            );
            diagnostic = match reason {
                Unreachable::Denied(deny) => {
                    let help = format!("delete the {kind}, or take `{}` out of `deniedTools`", tool.text());
                    let diagnostic = diagnostic.with_label(format!("this {kind} is dead")).with_help(help);
                    match rules.location(deny.rule) {
                        Some(denied_at) => diagnostic.with_secondary(denied_at, "denied here"),
                        None => diagnostic,
                    }
                }
                Unreachable::NotAllowed => diagnostic
                    .with_label(format!(
                        "this {kind} is dead: no `allowedTools` entry matches `{}`",
                        tool.text()
                    ))
                    .with_help(format!("delete the {kind}, or add `{}` to `allowedTools`", tool.text())),
            };
            diagnostics.push(diagnostic);
        }
    }
}

enum Unreachable<'a> {
    Denied(&'a ToolRule),
    NotAllowed,
}

/// An agent's lists with indexes, so checking an exact name costs a lookup
/// rather than a scan (policies can name 100,000 tools).
struct Lists<'a> {
    agent: &'a CheckedAgent,
    allows: &'a PatternIndex,
    denies: &'a PatternIndex,
}

impl<'a> Lists<'a> {
    /// The first deny entry that covers every tool `pattern` matches.
    fn covering_deny(&self, pattern: &ToolPattern) -> Option<&'a ToolRule> {
        match pattern {
            ToolPattern::Exact(name) => self.denies.first(name).and_then(|i| self.agent.deny.get(i as usize)),
            _ => self.agent.deny.iter().find(|d| d.pattern.covers(pattern)),
        }
    }

    fn unreachable(&self, tool: &ToolPattern) -> Option<Unreachable<'a>> {
        if let ToolPattern::Exact(name) = tool {
            if let Some(deny) = self.covering_deny(tool) {
                return Some(Unreachable::Denied(deny));
            }
            return (!self.allows.any(name)).then_some(Unreachable::NotAllowed);
        }
        unreachable(self.agent, tool)
    }
}

fn unreachable<'a>(agent: &'a CheckedAgent, tool: &ToolPattern) -> Option<Unreachable<'a>> {
    if matches!(tool, ToolPattern::Selected { tools, .. } if tools.is_empty()) {
        return None; // TG103 already says it selects nothing.
    }
    if let Some(deny) = agent.deny.iter().find(|d| d.pattern.covers(tool)) {
        return Some(Unreachable::Denied(deny));
    }
    let may_overlap = |allow: &ToolRule| match (allow.pattern.is_glob(), tool.is_glob()) {
        (true, true) => true,
        (true, false) => tool.names().iter().any(|n| allow.pattern.may_match(n)),
        (false, _) => allow.pattern.names().iter().any(|n| tool.may_match(n)),
    };
    (!agent.allow.iter().any(may_overlap)).then_some(Unreachable::NotAllowed)
}
