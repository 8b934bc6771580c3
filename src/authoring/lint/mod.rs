//! `toolgate lint`: rules for policies that compile but carry risk.
//!
//! Each rule is one file whose module documentation is the rule's
//! documentation (`toolgate lint --explain <rule>` prints it). A rule looks
//! at one effective agent at a time and reports [`Diagnostic`]s with its
//! code; a policy silences a rule with `lintIgnore: [<name or code>]` on the
//! agent or at the top of its file.

mod gate_without_approver;
mod no_session_cap;
mod path_prefix;
mod redundant_deny;
mod server_claims;
mod shadowed_pattern;
mod unguarded_destructive;

use std::collections::HashSet;

use crate::compiler::catalog::Catalogs;
use crate::compiler::checked::{CheckedAgent, CheckedPolicySet, RuleId, Rules};
use crate::diagnostic::{Code, Diagnostic};
use crate::source::Location;

/// One lint rule.
pub struct Rule {
    /// Its code; the code's name is the rule's name.
    pub code: Code,
    /// The source of its file, whose `//!` lines are its documentation.
    source: &'static str,
    check: fn(&AgentView<'_>, &mut Vec<Diagnostic>),
}

impl Rule {
    /// The rule's documentation: its file's module doc comment.
    pub fn documentation(&self) -> String {
        let lines = self.source.lines().map_while(|line| line.strip_prefix("//!"));
        let text: Vec<&str> = lines.map(|line| line.strip_prefix(' ').unwrap_or(line)).collect();
        text.join("\n").trim().to_owned()
    }
}

/// Every rule, in code order.
pub static RULES: [Rule; 7] = [
    Rule {
        code: Code::UnguardedDestructive,
        source: include_str!("unguarded_destructive.rs"),
        check: unguarded_destructive::check,
    },
    Rule {
        code: Code::GateWithoutApprover,
        source: include_str!("gate_without_approver.rs"),
        check: gate_without_approver::check,
    },
    Rule {
        code: Code::NoSessionCap,
        source: include_str!("no_session_cap.rs"),
        check: no_session_cap::check,
    },
    Rule {
        code: Code::RedundantDeny,
        source: include_str!("redundant_deny.rs"),
        check: redundant_deny::check,
    },
    Rule {
        code: Code::ShadowedPattern,
        source: include_str!("shadowed_pattern.rs"),
        check: shadowed_pattern::check,
    },
    Rule { code: Code::PathPrefix, source: include_str!("path_prefix.rs"), check: path_prefix::check },
    Rule { code: Code::ServerClaims, source: include_str!("server_claims.rs"), check: server_claims::check },
];

/// The rule with this name (`no-session-cap`) or code (`TL003`).
pub fn find(name: &str) -> Option<&'static Rule> {
    let code = Code::lint_named(name)?;
    RULES.iter().find(|r| r.code == code)
}

/// What a rule sees: one effective agent and the set around it.
pub(crate) struct AgentView<'a> {
    /// The agent.
    pub agent: &'a CheckedAgent,
    /// Every agent of the set, this one included.
    pub all: &'a [CheckedAgent],
    rules: &'a Rules,
    /// The catalogs of the set.
    pub catalogs: &'a Catalogs,
}

impl<'a> AgentView<'a> {
    /// Every agent whose effective lists hold the entry `rule` (the agent
    /// that wrote it and every agent inheriting it), as views.
    pub fn sharing(&self, rule: RuleId) -> impl Iterator<Item = AgentView<'a>> + '_ {
        self.all
            .iter()
            .filter(move |a| a.allow.iter().chain(&a.deny).any(|r| r.rule == rule))
            .map(|agent| AgentView { agent, all: self.all, rules: self.rules, catalogs: self.catalogs })
    }

    /// Where a rule of the policy is written.
    pub fn location(&self, rule: RuleId) -> Option<Location> {
        self.rules.location(rule)
    }

    /// A finding at the place `rule` is written.
    pub fn finding(&self, code: Code, message: String, rule: RuleId) -> Diagnostic {
        match self.location(rule) {
            Some(location) => Diagnostic::new(code, message, location),
            None => Diagnostic::unlocated(code, message),
        }
    }

    /// Adds a secondary label at the place `rule` is written.
    pub fn also(&self, finding: Diagnostic, rule: RuleId, text: &str) -> Diagnostic {
        match self.location(rule) {
            Some(location) => finding.with_secondary(location, text),
            None => finding,
        }
    }
}

/// Runs every rule on every agent; findings a policy silences are dropped,
/// and a finding about one place reported for several agents (an inherited
/// entry) is reported once.
pub fn run(policy: &CheckedPolicySet) -> Vec<Diagnostic> {
    let mut findings = Vec::new();
    let mut seen = HashSet::new();
    for agent in &policy.agents {
        let view = AgentView { agent, all: &policy.agents, rules: &policy.rules, catalogs: &policy.catalogs };
        for rule in &RULES {
            let silenced = agent.lint_ignore.iter().any(|n| n == rule.code.name() || n == rule.code.as_str());
            if silenced {
                continue;
            }
            let mut found = Vec::new();
            (rule.check)(&view, &mut found);
            for finding in found {
                let key = match &finding.primary {
                    Some(label) => (finding.code, Some(label.location), String::new()),
                    None => (finding.code, None, finding.message.clone()),
                };
                if seen.insert(key) {
                    findings.push(finding);
                }
            }
        }
    }
    findings.sort_by_key(|d| d.primary.as_ref().map(|l| (l.location.source, l.location.span.start)));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_documented_and_found_by_name_and_code() {
        for rule in &RULES {
            assert!(rule.code.is_lint());
            let doc = rule.documentation();
            assert!(doc.len() > 100, "{} is barely documented: {doc}", rule.code);
            assert!(doc.contains("lintIgnore"), "{} does not say how to silence it", rule.code);
            assert!(std::ptr::eq(find(rule.code.name()).expect("by name"), rule));
            assert!(std::ptr::eq(find(rule.code.as_str()).expect("by code"), rule));
        }
        assert!(find("no-such-rule").is_none());
        // `lintIgnore` names are checked against the code table: every lint
        // code must have its rule.
        let lint_codes = Code::ALL.iter().filter(|c| c.is_lint()).count();
        assert_eq!(lint_codes, RULES.len(), "a TL code without a rule, or a rule without a code");
    }
}
