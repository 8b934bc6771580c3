//! Joining files into one set of agents and resolving `extends`.

use std::collections::HashMap;

use crate::compiler::ast::{AgentDecl, PolicyFile};
use crate::diagnostic::suggest;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

/// Every agent declaration once; a second declaration of a name is an error.
pub fn unique_agents<'f>(files: &'f [PolicyFile], diagnostics: &mut Diagnostics) -> Vec<&'f AgentDecl> {
    let mut seen: HashMap<&str, &AgentDecl> = HashMap::new();
    let mut agents = Vec::new();
    for agent in files.iter().flat_map(|f| &f.agents) {
        match seen.get(agent.name.value.as_str()) {
            Some(first) => diagnostics.push(
                Diagnostic::new(
                    Code::DuplicateAgent,
                    format!("agent `{}` is defined twice", agent.name.value),
                    agent.name.location,
                )
                .with_label("second definition")
                .with_secondary(first.name.location, "first definition")
                .with_help("merge the two policies, or rename one agent"),
            ),
            None => {
                seen.insert(&agent.name.value, agent);
                agents.push(agent);
            }
        }
    }
    agents
}

/// For each agent, itself followed by all its ancestors (depth first, each
/// once). Unknown parents and cycles are reported and cut.
pub fn resolve(agents: &[&AgentDecl], diagnostics: &mut Diagnostics) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> =
        agents.iter().enumerate().map(|(i, a)| (a.name.value.as_str(), i)).collect();
    let mut parents: Vec<Vec<usize>> = Vec::with_capacity(agents.len());
    for agent in agents {
        let mut list = Vec::new();
        for parent in &agent.extends {
            match index.get(parent.value.as_str()) {
                Some(&p) => list.push(p),
                None => {
                    let mut diagnostic = Diagnostic::new(
                        Code::UnknownParent,
                        format!("agent `{}` extends unknown agent `{}`", agent.name.value, parent.value),
                        parent.location,
                    );
                    diagnostic = match suggest(&parent.value, index.keys().copied()) {
                        Some(best) => diagnostic
                            .with_label(crate::diagnostic::did_you_mean(best))
                            .with_help(format!("replace `{}` with `{best}`", parent.value)),
                        None => diagnostic.with_help("extend an agent defined in this policy set"),
                    };
                    diagnostics.push(diagnostic);
                }
            }
        }
        parents.push(list);
    }
    report_cycles(agents, &mut parents, diagnostics);
    let lineages: Vec<Option<Vec<usize>>> = (0..agents.len()).map(|i| lineage(i, &parents)).collect();
    // Reported where the limit is first crossed: at an agent whose own
    // parents are within it (not at every agent below it in a long chain).
    for (agent, found) in lineages.iter().enumerate() {
        if found.is_none() && parents[agent].iter().all(|p| lineages[*p].is_some()) {
            let decl = agents[agent];
            let at = decl.extends.first().map_or(decl.name.location, |e| e.location);
            diagnostics.push(
                Diagnostic::new(
                    Code::ResourceLimit,
                    format!("agent `{}` inherits from more than {MAX_ANCESTORS} agents", decl.name.value),
                    at,
                )
                .with_help("flatten the `extends` chain: a deep chain makes every agent below it carry every rule above it"),
            );
        }
    }
    lineages.into_iter().enumerate().map(|(i, found)| found.unwrap_or_else(|| vec![i])).collect()
}

/// The most ancestors an agent may have (all of them, through every
/// `extends`): each agent's effective rules are its ancestors' too, so a
/// bound keeps a policy set's size, and its compile time, linear in the
/// number of agents.
pub const MAX_ANCESTORS: usize = 64;

/// The agent followed by its ancestors, depth first, each once; `None` past
/// [`MAX_ANCESTORS`].
fn lineage(start: usize, parents: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![start];
    while let Some(agent) = stack.pop() {
        if !seen.insert(agent) {
            continue;
        }
        if order.len() > MAX_ANCESTORS {
            return None;
        }
        order.push(agent);
        stack.extend(parents[agent].iter().rev());
    }
    Some(order)
}

/// Finds each cycle once, reports it at the `extends` entry that closes it,
/// and removes that edge so lineages stay finite.
fn report_cycles(agents: &[&AgentDecl], parents: &mut [Vec<usize>], diagnostics: &mut Diagnostics) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; agents.len()];
    for root in 0..agents.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (agent, next parent position).
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Open;
        while let Some(&(agent, next)) = path.last() {
            let Some(&parent) = parents[agent].get(next) else {
                marks[agent] = Mark::Done;
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 = next + 1;
            }
            match marks[parent] {
                Mark::New => {
                    marks[parent] = Mark::Open;
                    path.push((parent, 0));
                }
                Mark::Open => {
                    let start = path.iter().position(|(a, _)| *a == parent).unwrap_or(0);
                    let names: Vec<&str> = path[start..]
                        .iter()
                        .map(|(a, _)| agents[*a].name.value.as_str())
                        .chain(std::iter::once(agents[parent].name.value.as_str()))
                        .collect();
                    let entry = agents[agent]
                        .extends
                        .iter()
                        .find(|e| e.value == agents[parent].name.value)
                        .map_or(agents[agent].name.location, |e| e.location);
                    diagnostics.push(
                        Diagnostic::new(
                            Code::ExtendsCycle,
                            format!("`extends` forms a cycle: {}", names.join(" → ")),
                            entry,
                        )
                        .with_label("this closes the cycle")
                        .with_help("an agent cannot inherit from itself; remove one `extends` entry"),
                    );
                    parents[agent].remove(next);
                    if let Some(top) = path.last_mut() {
                        top.1 = next;
                    }
                }
                Mark::Done => {}
            }
        }
    }
}
