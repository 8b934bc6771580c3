//! The same decisions in three engines: toolgate, Rego on regorus (bytecode
//! VM and interpreter), and Cedar (`cedar-policy`). Each [`Workload`] holds
//! one policy written three ways and one request in each engine's form;
//! [`Workload::check`] proves the three agree before anything is timed.
//!
//! The Rego and Cedar are written as a user of each would write them (sets,
//! data lookups, entity hierarchies), not generated from toolgate's export,
//! so the comparison is with each engine at its idiomatic best.

use std::str::FromStr;

use serde_json::{Value, json};
use toolgate::compiler::PolicySource;
use toolgate::engine::{Engine, Outcome, Request};

/// One policy and one request in the three engines' forms.
#[derive(Clone)]
pub struct Workload {
    /// What the workload is.
    pub name: String,
    /// toolgate's policy, as YAML.
    pub yaml: String,
    /// The Rego module (package `bench`, rule `data.bench.allow`).
    pub rego: String,
    /// The Cedar policy set.
    pub cedar: String,
    /// The Cedar entities (tools and their groups), as JSON.
    pub cedar_entities: Value,
    /// The request, as toolgate's wire JSON.
    pub request: Value,
    /// The tool's Cedar entity id.
    pub cedar_resource: String,
}

/// The rule the Rego modules define.
pub const REGO_ENTRY: &str = "data.bench.allow";

/// The reference workload: an agent with 50 tools (40 named, 10 through two
/// globs), a denied glob, and on the called tool three `params` rules, a
/// `when` condition and a per-session cap counted in memory.
pub fn reference() -> Workload {
    let named: Vec<String> = (0..40).map(|i| format!("tool_{i:02}")).collect();
    let quoted = |names: &[String]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    let yaml = include_str!("../../benches/reference.yaml").to_owned();
    let rego = format!(
        r#"package bench

import rego.v1

named := {{{}}}

default allow := false

allow if {{
	input.agent == "refAgent"
	tool_allowed
	not glob.match("files/delete_*", ["/"], input.tool)
	constraints_hold
}}

tool_allowed if input.tool in named
tool_allowed if glob.match("files/*", ["/"], input.tool)
tool_allowed if glob.match("search_*", ["/"], input.tool)

constraints_hold if input.tool != "files/write"

constraints_hold if {{
	input.tool == "files/write"
	is_string(input.args.path)
	count(input.args.path) <= 4096
	is_number(input.args.size)
	input.args.size <= 1000000
	input.args.mode in {{"create", "overwrite"}}
	startswith(input.args.path, "/srv/docs/")
	not contains(input.args.path, "..")
	input.calls < 1000000000000
}}
"#,
        quoted(&named)
    );
    // Cedar has no string length and no globs over `/`: `like` stands in for
    // the globs and the length rule is left out.
    let cedar = r#"@id("named")
permit(principal == Agent::"refAgent", action == Action::"call", resource in Group::"named");

@id("globs")
permit(principal == Agent::"refAgent", action == Action::"call", resource)
when { context.tool like "files/*" || context.tool like "search_*" };

@id("denied")
forbid(principal, action, resource) when { context.tool like "files/delete_*" };

@id("write")
forbid(principal, action, resource) when { context.tool == "files/write" }
unless {
  context has args.path && context has args.size && context has args.mode &&
  context.args.size <= 1000000 &&
  ["create", "overwrite"].contains(context.args.mode) &&
  context.args.path like "/srv/docs/*" && !(context.args.path like "*..*") &&
  context.calls < 1000000000000
};
"#
    .to_owned();
    let entities: Vec<Value> = named
        .iter()
        .map(|n| json!({"uid": {"type": "Tool", "id": n}, "attrs": {}, "parents": [{"type": "Group", "id": "named"}]}))
        .chain([json!({"uid": {"type": "Tool", "id": "files/write"}, "attrs": {}, "parents": []})])
        .collect();
    Workload {
        name: String::from("reference"),
        yaml,
        rego,
        cedar,
        cedar_entities: Value::Array(entities),
        request: json!({
            "agent": "refAgent", "tool": "files/write", "session": "s",
            "args": {"path": "/srv/docs/guide.md", "size": 1200, "mode": "create"}
        }),
        cedar_resource: String::from("files/write"),
    }
}

/// A policy of `tools` named tools, every tenth with an argument limit; the
/// request calls the middle tool, which has one.
pub fn scaled(tools: usize) -> Workload {
    let name = |i: usize| format!("tool_{i:06}");
    let limited = |i: usize| i.is_multiple_of(10);
    let called = (tools / 2) / 10 * 10;
    let mut yaml = String::from("agentPolicies:\n  scaleAgent:\n    allowedTools:\n");
    for i in 0..tools {
        yaml.push_str(&format!("      - {}\n", name(i)));
    }
    yaml.push_str("    constraints:\n");
    for i in (0..tools).filter(|i| limited(*i)) {
        yaml.push_str(&format!(
            "      {}:\n        params:\n          n: {{type: integer, maximum: {}}}\n",
            name(i),
            100 + i
        ));
    }
    let names: Vec<String> = (0..tools).map(|i| format!("\"{}\"", name(i))).collect();
    let limits: Vec<String> =
        (0..tools).filter(|i| limited(*i)).map(|i| format!("\"{}\": {}", name(i), 100 + i)).collect();
    let rego = format!(
        "package bench\n\nimport rego.v1\n\ntools := {{\n\t{}\n}}\n\nlimits := {{\n\t{}\n}}\n\n\
         default allow := false\n\n\
         allow if {{\n\tinput.agent == \"scaleAgent\"\n\tinput.tool in tools\n\tnot over_limit\n}}\n\n\
         over_limit if {{\n\tlimit := limits[input.tool]\n\tinput.args.n > limit\n}}\n\n\
         over_limit if {{\n\t_ = limits[input.tool]\n\tnot is_number(input.args.n)\n}}\n",
        names.join(",\n\t"),
        limits.join(",\n\t")
    );
    let cedar = r#"@id("allowed")
permit(principal == Agent::"scaleAgent", action == Action::"call", resource in Group::"allowed");

@id("limit")
forbid(principal, action, resource) when { resource has limit }
unless { context has args.n && context.args.n <= resource.limit };
"#
    .to_owned();
    let entities: Vec<Value> = (0..tools)
        .map(|i| {
            let attrs = if limited(i) { json!({"limit": 100 + i}) } else { json!({}) };
            json!({"uid": {"type": "Tool", "id": name(i)}, "attrs": attrs, "parents": [{"type": "Group", "id": "allowed"}]})
        })
        .collect();
    Workload {
        name: format!("{tools} tools"),
        yaml,
        rego,
        cedar,
        cedar_entities: Value::Array(entities),
        request: json!({"agent": "scaleAgent", "tool": name(called), "session": "s", "args": {"n": 7}}),
        cedar_resource: name(called),
    }
}

/// A compiled toolgate engine for the workload.
pub fn toolgate_engine(workload: &Workload) -> Engine {
    let source = PolicySource { name: String::from("bench.yaml"), bytes: workload.yaml.clone().into_bytes() };
    let checked = toolgate::compile(vec![source], &toolgate::NoFiles);
    match checked.policy {
        Some(policy) => Engine::new(policy, toolgate::state::State::in_memory()),
        None => panic!("{}: the toolgate policy does not compile: {:?}", workload.name, checked.diagnostics),
    }
}

/// The workload's request for toolgate.
pub fn toolgate_request(workload: &Workload) -> Request {
    match toolgate::protocol::parse_line(&workload.request.to_string()).op {
        Ok(toolgate::protocol::Op::Decide(request)) => request,
        other => panic!("{}: not a decide request: {other:?}", workload.name),
    }
}

/// The Rego input: the request, with the session's call count.
pub fn rego_input(workload: &Workload) -> regorus::Value {
    let mut input = workload.request.clone();
    input["calls"] = json!(0);
    regorus::Value::from(input)
}

/// A regorus engine with the module loaded and prepared.
pub fn rego_engine(workload: &Workload) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_policy_length_config(regorus::PolicyLengthConfig {
        max_col: std::num::NonZeroU32::new(1 << 16).expect("non-zero"),
        max_file_bytes: std::num::NonZeroUsize::new(256 << 20).expect("non-zero"),
        max_lines: std::num::NonZeroUsize::new(10_000_000).expect("non-zero"),
    });
    engine.add_policy(String::from("bench.rego"), workload.rego.clone()).expect("the Rego parses");
    engine
}

/// A regorus VM with the module compiled to bytecode.
pub fn rego_vm(workload: &Workload) -> regorus::rvm::RegoVM {
    let mut engine = rego_engine(workload);
    let compiled = engine.compile_with_entrypoint(&REGO_ENTRY.into()).expect("the rule compiles");
    let program = regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[REGO_ENTRY])
        .expect("the VM takes the module");
    let mut vm = regorus::rvm::RegoVM::new();
    vm.load_program(program);
    vm.set_data(regorus::Value::new_object()).expect("data");
    vm.set_max_instructions(10_000_000);
    vm
}

/// Cedar's policies, entities and request for the workload.
pub struct CedarSide {
    /// The policy set.
    pub policies: cedar_policy::PolicySet,
    /// The tools and groups.
    pub entities: cedar_policy::Entities,
    /// The request.
    pub request: cedar_policy::Request,
}

/// Builds Cedar's side of the workload.
pub fn cedar(workload: &Workload) -> CedarSide {
    let policies = cedar_policy::PolicySet::from_str(&workload.cedar).expect("the Cedar parses");
    let entities =
        cedar_policy::Entities::from_json_value(workload.cedar_entities.clone(), None).expect("entities");
    let uid = |text: String| cedar_policy::EntityUid::from_str(&text).expect("entity uid");
    let agent = workload.request["agent"].as_str().expect("agent");
    let mut context = json!({"tool": workload.request["tool"], "args": workload.request["args"], "calls": 0});
    if let Some(object) = context.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    let request = cedar_policy::Request::new(
        uid(format!("Agent::{}", json!(agent))),
        uid(String::from("Action::\"call\"")),
        uid(format!("Tool::{}", json!(workload.cedar_resource))),
        cedar_policy::Context::from_json_value(context, None).expect("context"),
        None,
    )
    .expect("request");
    CedarSide { policies, entities, request }
}

impl CedarSide {
    /// Decides the request.
    pub fn decide(&self, authorizer: &cedar_policy::Authorizer) -> bool {
        authorizer.is_authorized(&self.request, &self.policies, &self.entities).decision()
            == cedar_policy::Decision::Allow
    }
}

impl Workload {
    /// Decides the request in every engine and panics unless all allow it,
    /// and unless all deny a variant they should deny.
    pub fn check(&self) {
        let engine = toolgate_engine(self);
        assert_eq!(engine.decide(&toolgate_request(self)).outcome, Outcome::Allow, "{}: toolgate", self.name);
        let mut vm = rego_vm(self);
        vm.set_input(rego_input(self));
        assert_eq!(vm.execute().expect("VM"), regorus::Value::from(true), "{}: regorus VM", self.name);
        let mut interpreter = rego_engine(self);
        interpreter.set_input(rego_input(self));
        assert_eq!(
            interpreter.eval_rule(REGO_ENTRY.into()).expect("eval"),
            regorus::Value::from(true),
            "{}: regorus",
            self.name
        );
        assert!(cedar(self).decide(&cedar_policy::Authorizer::new()), "{}: Cedar", self.name);

        // The same request with an argument every engine must refuse.
        let mut denied = Workload { name: format!("{} (denied)", self.name), ..self.clone() };
        let args = denied.request["args"].as_object_mut().expect("args");
        if args.contains_key("n") {
            args.insert(String::from("n"), json!(1_000_000));
        } else {
            args.insert(String::from("path"), json!("/etc/passwd"));
        }
        let engine = toolgate_engine(&denied);
        assert_eq!(
            engine.decide(&toolgate_request(&denied)).outcome,
            Outcome::Deny,
            "{}: toolgate",
            denied.name
        );
        let mut vm = rego_vm(&denied);
        vm.set_input(rego_input(&denied));
        assert_eq!(vm.execute().expect("VM"), regorus::Value::from(false), "{}: regorus VM", denied.name);
        assert!(!cedar(&denied).decide(&cedar_policy::Authorizer::new()), "{}: Cedar", denied.name);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_engine_decides_every_workload_alike() {
        super::reference().check();
        for tools in [10, 1_000, 100_000] {
            super::scaled(tools).check();
        }
    }
}
