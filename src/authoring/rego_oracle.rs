//! The differential oracle: an exported policy ([`super::export::rego`])
//! run on regorus the way a gateway would use it, keeping the counters the
//! module reads from its input. `toolgate eval --engine rego` and the
//! agreement tests decide through it.

use serde_json::Value;

use crate::compiler::CheckedPolicySet;
use crate::compiler::rego_vm::{Evaluation, Evaluator, Module};
use crate::engine::Request;

/// The time a whole exported policy may take for one request: it evaluates
/// every rule of the agent, where a `rego:` condition gets
/// [`crate::compiler::rego_vm::TIME_LIMIT`] for one rule. (An unoptimised
/// build on a loaded machine took 60 ms for the example policies.)
pub const WHOLE_POLICY_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// An exported policy evaluated the way a gateway would use it: it keeps
/// the counters the module reads from its input and adds one to each
/// counter an allowed call lists.
pub struct Gateway {
    evaluation: Evaluation,
    /// Cap counters: per agent and session, or per agent for rate limits.
    counts: std::collections::HashMap<(String, String), serde_json::Map<String, Value>>,
    /// Allowed calls per agent and session, in total and per tool.
    calls: std::collections::HashMap<(String, String), (u64, serde_json::Map<String, Value>)>,
    /// The counters that are rate limits (kept per agent).
    rate_counters: std::collections::HashSet<String>,
}

impl Gateway {
    /// Compiles an exported module for `policy` (whose rate-limit counters it
    /// needs to know).
    pub fn new(policy: &CheckedPolicySet, evaluator: Evaluator) -> Result<Gateway, String> {
        Ok(Gateway::with_module(policy, &Gateway::module(policy)?, evaluator))
    }

    /// The exported module of `policy`, compiled, for [`Gateway::with_module`].
    pub fn module(policy: &CheckedPolicySet) -> Result<Module, String> {
        let mut sources = vec![(String::from("toolgate.rego"), super::export::rego(policy))];
        sources.extend(policy.rego_modules());
        Module::new(&sources, &format!("data.{}.decision", super::export::PACKAGE))
    }

    /// A gateway with fresh counters on an already compiled export of `policy`.
    pub fn with_module(policy: &CheckedPolicySet, module: &Module, evaluator: Evaluator) -> Gateway {
        let rate_counters = policy
            .agents
            .iter()
            .flat_map(|a| a.constraints.iter())
            .filter_map(|c| c.rate_limit.map(|(limit, _)| limit.rule))
            .map(|rule| policy.rules.id(rule).to_owned())
            .collect();
        Gateway {
            evaluation: module.evaluation_within(evaluator, WHOLE_POLICY_TIME_LIMIT),
            counts: Default::default(),
            calls: Default::default(),
            rate_counters,
        }
    }

    /// Decides one request; the decision object of the module.
    pub fn decide(&mut self, request: &Request) -> Result<Value, String> {
        let session = request.session.clone();
        let key = (request.agent.clone(), session.clone().unwrap_or_default());
        let agent_key = (request.agent.clone(), String::new());
        let mut counts = self.counts.get(&agent_key).cloned().unwrap_or_default();
        if session.is_some() {
            counts.extend(self.counts.get(&key).cloned().unwrap_or_default());
        }
        let mut input = request.rego_input();
        if let Some(object) = input.as_object_mut() {
            object.insert(String::from("counts"), Value::Object(counts));
            if session.is_some() {
                let (total, per_tool) = self.calls.get(&key).cloned().unwrap_or_default();
                object.insert(String::from("session_calls"), Value::from(total));
                object.insert(String::from("session_calls_of"), Value::Object(per_tool));
            }
        }
        let decision = self.evaluation.eval(&input)?.ok_or("the module decided nothing")?;
        if decision["decision"] == "allow" {
            for counter in decision["counters"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let at = if self.rate_counters.contains(counter) { agent_key.clone() } else { key.clone() };
                let entry = self.counts.entry(at).or_default().entry(counter).or_insert(Value::from(0));
                *entry = Value::from(entry.as_u64().unwrap_or(0) + 1);
            }
            if session.is_some() {
                let (total, per_tool) = self.calls.entry(key).or_default();
                *total += 1;
                let entry = per_tool.entry(request.tool.clone()).or_insert(Value::from(0));
                *entry = Value::from(entry.as_u64().unwrap_or(0) + 1);
            }
        }
        Ok(decision)
    }
}
