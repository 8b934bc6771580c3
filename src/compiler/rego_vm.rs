//! Evaluating Rego with regorus: the modules behind `rego:` conditions,
//! and any other module (the exported policy of the differential oracle,
//! `toolgate eval --engine rego`).
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
        engine.set_execution_timer_config(timer(TIME_LIMIT));
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

    /// The evaluator [`Module::evaluation`] uses.
    pub fn evaluator(&self) -> Evaluator {
        if self.program.is_some() { Evaluator::Vm } else { Evaluator::Interpreter }
    }

    /// An evaluation state, on the VM if the module compiled for it.
    pub fn evaluation(&self) -> Evaluation {
        self.evaluation_with(self.evaluator())
    }

    /// An evaluation state on a chosen evaluator (the VM only if the module compiled for it).
    pub fn evaluation_with(&self, evaluator: Evaluator) -> Evaluation {
        self.evaluation_within(evaluator, TIME_LIMIT)
    }

    /// The same, with another time limit on the VM (the instruction limit
    /// holds all the same).
    pub fn evaluation_within(&self, evaluator: Evaluator, limit: std::time::Duration) -> Evaluation {
        match (&self.program, evaluator) {
            (Some(program), Evaluator::Vm) => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                let _ = vm.set_data(regorus::Value::new_object());
                vm.set_max_instructions(MAX_INSTRUCTIONS);
                vm.set_execution_timer_config(Some(timer(limit)));
                Evaluation::Vm(Box::new(vm))
            }
            _ => {
                let mut engine = self.engine.clone();
                engine.set_execution_timer_config(timer(limit));
                Evaluation::Interpreter(Box::new(engine), self.entry.clone())
            }
        }
    }
}

fn timer(limit: std::time::Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
    }
}

/// Mutable evaluation state: evaluations need `&mut`, so each thread keeps its own.
pub enum Evaluation {
    /// On the VM.
    Vm(Box<RegoVM>),
    /// On the interpreter, with the rule to evaluate.
    Interpreter(Box<regorus::Engine>, String),
}

impl Evaluation {
    /// Evaluates the module's rule for `input`; `Ok(None)` when it is undefined.
    pub fn eval(&mut self, input: &Value) -> Result<Option<Value>, String> {
        let input = regorus::Value::from(input.clone());
        let value = match self {
            Evaluation::Vm(vm) => {
                vm.set_input(input);
                vm.execute().map_err(|e| e.to_string())?
            }
            Evaluation::Interpreter(engine, entry) => {
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
    evaluations: std::sync::Mutex<Vec<Evaluation>>,
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

/// Evaluation states kept for reuse per rule; more concurrent evaluations make new ones.
const POOLED_EVALUATIONS: usize = 16;

impl RegoRule {
    /// Compiles `entry` of `sources`.
    pub fn new(sources: Arc<Vec<(String, String)>>, entry: &str) -> Result<RegoRule, ModuleError> {
        let module = Module::compile(&sources, entry)?;
        Ok(RegoRule {
            module,
            evaluations: std::sync::Mutex::new(Vec::new()),
            entry: entry.to_owned(),
            sources,
        })
    }

    /// Evaluates the rule for `input`.
    pub fn eval(&self, input: &Value) -> Result<bool, String> {
        let pooled = self.evaluations.lock().ok().and_then(|mut pool| pool.pop());
        let mut evaluation = pooled.unwrap_or_else(|| self.module.evaluation());
        let result = evaluation.eval(input);
        if let Ok(mut pool) = self.evaluations.lock()
            && pool.len() < POOLED_EVALUATIONS
        {
            pool.push(evaluation);
        }
        match result? {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(format!("the rule's value is {other}, not a boolean")),
        }
    }
}
