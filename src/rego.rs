//! Evaluating Rego with regorus: exported policies (the differential
//! oracle, `toolgate eval --engine rego`) and the modules behind `rego:`
//! conditions.
//!
//! A [`Module`] is parsed and compiled once; each evaluation runs on the
//! bytecode VM when regorus can compile the module for it, else on the
//! tree interpreter. Both have execution limits; an error or a limit hit
//! is an `Err`, which callers turn into a denial.

use std::sync::Arc;

use regorus::rvm::{Program, RegoVM};
use serde_json::Value;

/// Instructions one VM evaluation may execute.
pub const MAX_INSTRUCTIONS: usize = 1_000_000;
/// Wall-clock time one evaluation may take.
pub const TIME_LIMIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A compiled Rego module and the rule it is evaluated for.
#[derive(Clone)]
pub struct Module {
    engine: regorus::Engine,
    program: Option<Arc<Program>>,
    entry: String,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("entry", &self.entry).field("vm", &self.program.is_some()).finish()
    }
}

/// Which evaluator runs a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluator {
    /// regorus's bytecode VM.
    Vm,
    /// regorus's tree-walking interpreter.
    Interpreter,
}

impl Module {
    /// Parses `sources` (name, text) and prepares `entry` (`data.pkg.rule`).
    pub fn new(sources: &[(String, String)], entry: &str) -> Result<Module, String> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(timer());
        // Exported policies of large catalogs are long; the text is ours.
        engine.set_policy_length_config(regorus::PolicyLengthConfig {
            max_col: std::num::NonZeroU32::new(1 << 16).unwrap_or(std::num::NonZeroU32::MIN),
            max_file_bytes: std::num::NonZeroUsize::new(256 << 20).unwrap_or(std::num::NonZeroUsize::MIN),
            max_lines: std::num::NonZeroUsize::new(10_000_000).unwrap_or(std::num::NonZeroUsize::MIN),
        });
        for (name, text) in sources {
            engine.add_policy(name.clone(), text.clone()).map_err(|e| e.to_string())?;
        }
        let compiled = engine.compile_with_entrypoint(&entry.into()).map_err(|e| e.to_string())?;
        let program =
            regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[entry]).ok();
        Ok(Module { engine, program, entry: entry.to_owned() })
    }

    /// The evaluator [`Module::session`] uses.
    pub fn evaluator(&self) -> Evaluator {
        if self.program.is_some() { Evaluator::Vm } else { Evaluator::Interpreter }
    }

    /// A session for evaluating, on the VM if it compiled for it.
    pub fn session(&self) -> Session {
        self.session_with(self.evaluator())
    }

    /// A session on a chosen evaluator (the VM only if the module compiled for it).
    pub fn session_with(&self, evaluator: Evaluator) -> Session {
        match (&self.program, evaluator) {
            (Some(program), Evaluator::Vm) => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                let _ = vm.set_data(regorus::Value::new_object());
                vm.set_max_instructions(MAX_INSTRUCTIONS);
                vm.set_execution_timer_config(Some(timer()));
                Session::Vm(Box::new(vm))
            }
            _ => Session::Interpreter(Box::new(self.engine.clone()), self.entry.clone()),
        }
    }
}

fn timer() -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit: TIME_LIMIT,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
    }
}

/// Mutable evaluation state: evaluations need `&mut`, so each thread keeps its own.
pub enum Session {
    /// On the VM.
    Vm(Box<RegoVM>),
    /// On the interpreter, with the rule to evaluate.
    Interpreter(Box<regorus::Engine>, String),
}

impl Session {
    /// Evaluates the module's rule for `input`; `Ok(None)` when it is undefined.
    pub fn eval(&mut self, input: &Value) -> Result<Option<Value>, String> {
        let input = regorus::Value::from(input.clone());
        let value = match self {
            Session::Vm(vm) => {
                vm.set_input(input);
                vm.execute().map_err(|e| e.to_string())?
            }
            Session::Interpreter(engine, entry) => {
                engine.set_input(input);
                engine.eval_rule(entry.clone()).map_err(|e| e.to_string())?
            }
        };
        if value == regorus::Value::Undefined {
            return Ok(None);
        }
        let json = value.to_json_str().map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map(Some).map_err(|e| e.to_string())
    }
}

/// An exported policy ([`crate::export::rego`]) evaluated the way a gateway
/// would use it: it keeps the counters the module reads from its input and
/// adds one to each counter an allowed call lists.
pub struct Gateway {
    session: Session,
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
    pub fn new(policy: &crate::check::CheckedPolicySet, evaluator: Evaluator) -> Result<Gateway, String> {
        Ok(Gateway::with_module(policy, &Gateway::module(policy)?, evaluator))
    }

    /// The exported module of `policy`, compiled, for [`Gateway::with_module`].
    pub fn module(policy: &crate::check::CheckedPolicySet) -> Result<Module, String> {
        let mut sources = vec![(String::from("toolgate.rego"), crate::export::rego(policy))];
        sources.extend(policy.rego_modules());
        Module::new(&sources, &format!("data.{}.decision", crate::export::PACKAGE))
    }

    /// A gateway with fresh counters on an already compiled export of `policy`.
    pub fn with_module(
        policy: &crate::check::CheckedPolicySet,
        module: &Module,
        evaluator: Evaluator,
    ) -> Gateway {
        let rate_counters = policy
            .agents
            .iter()
            .flat_map(|a| a.constraints.iter())
            .filter_map(|c| c.rate_limit.map(|(limit, _)| limit.rule))
            .filter_map(|rule| policy.rules.get(rule.0 as usize).map(|r| r.id.clone()))
            .collect();
        Gateway {
            session: module.session_with(evaluator),
            counts: Default::default(),
            calls: Default::default(),
            rate_counters,
        }
    }

    /// Decides one request; the decision object of the module.
    pub fn decide(&mut self, request: &crate::engine::Request) -> Result<Value, String> {
        let session = request.session.clone();
        let key = (request.agent.clone(), session.clone().unwrap_or_default());
        let agent_key = (request.agent.clone(), String::new());
        let mut counts = self.counts.get(&agent_key).cloned().unwrap_or_default();
        if session.is_some() {
            counts.extend(self.counts.get(&key).cloned().unwrap_or_default());
        }
        let mut input = serde_json::json!({
            "agent": request.agent,
            "tool": request.tool,
            "args": request.args,
            "counts": counts,
        });
        if let Some(object) = input.as_object_mut() {
            let mut set = |name: &str, value: Option<Value>| {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            };
            set("principal", request.principal.clone());
            set("context", request.context.clone());
            set("session", session.clone().map(Value::String));
            if session.is_some() {
                let (total, per_tool) = self.calls.get(&key).cloned().unwrap_or_default();
                set("session_calls", Some(Value::from(total)));
                set("session_calls_of", Some(Value::Object(per_tool)));
            }
        }
        let decision = self.session.eval(&input)?.ok_or("the module decided nothing")?;
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

/// Why the VM could not take a module (for diagnostics and tests).
pub fn vm_compile_error(sources: &[(String, String)], entry: &str) -> Option<String> {
    let mut engine = regorus::Engine::new();
    for (name, text) in sources {
        if let Err(e) = engine.add_policy(name.clone(), text.clone()) {
            return Some(e.to_string());
        }
    }
    let compiled = match engine.compile_with_entrypoint(&entry.into()) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[entry])
        .err()
        .map(|e| e.to_string())
}

/// Why a Rego module cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub enum ModuleError {
    /// A module does not parse (regorus's message, with file, line and column).
    Parse(String),
    /// The rule is not defined, or cannot be compiled.
    Rule(String),
}

impl Module {
    /// As [`Module::new`], telling parse errors from a missing rule.
    pub fn compile(sources: &[(String, String)], entry: &str) -> Result<Module, ModuleError> {
        let mut check = regorus::Engine::new();
        for (name, text) in sources {
            check.add_policy(name.clone(), text.clone()).map_err(|e| ModuleError::Parse(e.to_string()))?;
        }
        Module::new(sources, entry).map_err(ModuleError::Rule)
    }
}

/// A `rego:` condition: one rule of the Rego modules beside a policy,
/// evaluated with the request as `input`. Undefined counts as false; any
/// other non-boolean value, an error or a limit hit is an `Err`.
pub struct RegoRule {
    module: Module,
    sessions: std::sync::Mutex<Vec<Session>>,
    /// The rule, `data.<package>.<rule>`.
    pub entry: String,
    /// The modules it was compiled from (name, text).
    pub sources: Arc<Vec<(String, String)>>,
}

impl std::fmt::Debug for RegoRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoRule").field("entry", &self.entry).field("module", &self.module).finish()
    }
}

/// Sessions kept for reuse per rule; more concurrent evaluations make new ones.
const POOLED_SESSIONS: usize = 16;

impl RegoRule {
    /// Compiles `entry` of `sources`.
    pub fn new(sources: Arc<Vec<(String, String)>>, entry: &str) -> Result<RegoRule, ModuleError> {
        let module = Module::compile(&sources, entry)?;
        Ok(RegoRule { module, sessions: std::sync::Mutex::new(Vec::new()), entry: entry.to_owned(), sources })
    }

    /// Evaluates the rule for `input`.
    pub fn eval(&self, input: &Value) -> Result<bool, String> {
        let pooled = self.sessions.lock().ok().and_then(|mut pool| pool.pop());
        let mut session = pooled.unwrap_or_else(|| self.module.session());
        let result = session.eval(input);
        if let Ok(mut pool) = self.sessions.lock()
            && pool.len() < POOLED_SESSIONS
        {
            pool.push(session);
        }
        match result? {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(format!("the rule's value is {other}, not a boolean")),
        }
    }
}

/// The input a `rego:` rule sees: the request's fields.
pub fn request_input(request: &crate::engine::Request) -> Value {
    let mut input = serde_json::json!({"agent": request.agent, "tool": request.tool, "args": request.args});
    if let Some(object) = input.as_object_mut() {
        for (key, value) in [
            ("principal", request.principal.clone()),
            ("context", request.context.clone()),
            ("session", request.session.clone().map(Value::String)),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
    }
    input
}
