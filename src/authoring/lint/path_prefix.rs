//! # TL006 path-prefix
//!
//! A path confined by comparing strings: a condition with
//! `args.path.startsWith('/srv/docs/')` or `matches('^/srv/docs/')`, or a
//! `params` rule with `pattern: '^/srv/docs/'`. A file server resolves
//! `.`, `..` and repeated slashes; a string comparison does not, so
//! `/srv/docs/../../etc/shadow` passes it and reads `/etc/shadow`. Adding
//! `!args.path.contains('..')` closes that hole but refuses harmless names
//! (`notes..md`) and is easy to forget in the next rule someone copies.
//!
//! Fix: compare paths in normal form. In `params`,
//! `path: {pathWithin: /srv/docs}` (or `pathNotWithin` to keep a path out
//! of a directory); in a condition, `pathWithin(args.path, '/srv/docs')`.
//!
//! Silence: `lintIgnore: [path-prefix]` on the agent or at the top of its
//! file, when the argument is not a path (a URL, a branch name).

use super::AgentView;
use crate::compiler::checked::GateTrigger;
use crate::compiler::condition::looks_like_path_pattern;
use crate::compiler::params::ParamCheck;
use crate::diagnostic::{Code, Diagnostic};

const HELP: &str = "compare paths in normal form: `params: {path: {pathWithin: /srv/docs}}`, or `pathWithin(args.path, '/srv/docs')` in a condition";

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    let mut report = |what: String, rule| {
        let message = format!("{what} compares a path as a string: `..` and `//` get past it");
        findings.push(agent.finding(Code::PathPrefix, message, rule).with_help(HELP));
    };
    for constraint in &agent.agent.constraints {
        if let Some((condition, rule)) = &constraint.when {
            for found in condition.path_prefixes() {
                report(format!("`when` of `{}` ({found})", constraint.tool.text()), *rule);
            }
        }
        for param in &constraint.params {
            if let Some(pattern) = anchored_pattern(&param.check) {
                report(format!("`pattern: '{pattern}'` of argument `{}`", param.name), param.rule);
            }
        }
    }
    for gate in &agent.agent.gates {
        if let GateTrigger::When(condition) = &gate.trigger {
            for found in condition.path_prefixes() {
                report(format!("the approval gate's `when` on `{}` ({found})", gate.tool.text()), gate.rule);
            }
        }
    }
}

/// A `pattern` anchored at a path, here or in the rules for items or fields.
fn anchored_pattern(check: &ParamCheck) -> Option<&str> {
    let own = check.pattern.as_ref().map(|(text, _)| &**text).filter(|p| looks_like_path_pattern(p));
    own.or_else(|| check.items.as_deref().and_then(anchored_pattern))
        .or_else(|| check.properties.iter().find_map(|(_, c)| anchored_pattern(c)))
}
