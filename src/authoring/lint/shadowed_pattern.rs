//! # TL005 shadowed-pattern
//!
//! An `allowedTools` or `deniedTools` entry that another entry of the same
//! list (the agent's own or inherited) already covers, such as
//! `github/get_me` next to `github/get_*`. The narrower entry changes no
//! decision, and it misleads: a reader who deletes it expecting the tool to
//! be refused finds it still allowed through the wider one. The decision
//! and rule id reported for such a tool name the first matching entry.
//!
//! Coverage between globs is judged conservatively (`github/*` covers
//! `github/get_*`; globs with character classes or `**` are not compared),
//! so every finding is real.
//!
//! Fix: delete the narrower entry, or narrow the wider one.
//!
//! Silence: `lintIgnore: [shadowed-pattern]` on the agent or at the top of
//! its file.

use super::AgentView;
use crate::compiler::checked::{CheckedAgent, ToolRule};
use crate::diagnostic::{Code, Diagnostic};

type List = fn(&CheckedAgent) -> &[ToolRule];

pub fn check(agent: &AgentView<'_>, findings: &mut Vec<Diagnostic>) {
    let lists: [(List, &str); 2] = [(|a| &a.allow, "allowedTools"), (|a| &a.deny, "deniedTools")];
    for (list, key) in lists {
        for narrow in list(agent.agent) {
            // An entry is redundant only if it is covered in every agent
            // holding it: a parent's entry is not redundant because a child
            // allows more.
            let everywhere =
                agent.sharing(narrow.rule).all(|other| wider(list(other.agent), narrow).is_some());
            if let (true, Some(wide)) = (everywhere, wider(list(agent.agent), narrow)) {
                let message = format!(
                    "`{}` in `{key}` is already covered by `{}`",
                    narrow.pattern.text(),
                    wide.pattern.text()
                );
                let finding = agent
                    .finding(Code::ShadowedPattern, message, narrow.rule)
                    .with_help("delete the narrower entry, or narrow the wider one");
                findings.push(agent.also(finding, wide.rule, "covered by this entry"));
            }
        }
    }
}

/// Another entry of `list` that covers `narrow`; of two identical entries,
/// the earlier one covers the later.
fn wider<'l>(list: &'l [ToolRule], narrow: &ToolRule) -> Option<&'l ToolRule> {
    let position = list.iter().position(|r| r.rule == narrow.rule)?;
    list.iter().enumerate().find_map(|(j, wide)| {
        let distinct = wide.pattern.text() != narrow.pattern.text() || j < position;
        (j != position && distinct && wide.pattern.covers(&narrow.pattern)).then_some(wide)
    })
}
