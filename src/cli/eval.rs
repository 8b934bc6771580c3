//! `toolgate eval`: the wire protocol over stdin and stdout.

use std::path::PathBuf;

use toolgate::engine::Engine;
use toolgate::protocol::{self, Op, WireError, WireErrorCode};
use toolgate::server::connection::{self, Settings};
use toolgate::service::{Role, Service, ServiceConfig};
use toolgate::state::State;

use super::{Exit, output};

/// The default longest request line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Who decides in `eval`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalEngine {
    /// toolgate's decision engine.
    #[default]
    Toolgate,
    /// regorus's VM, on the policy exported as Rego (stateless parts; see `export`).
    Rego,
}

pub fn run(policies: &[PathBuf], max_line: usize, which: EvalEngine) -> Exit {
    let policy = match output::compile_or_report(policies) {
        Ok(policy) => policy,
        Err(exit) => return exit,
    };
    if which == EvalEngine::Rego {
        return run_rego(&policy);
    }
    let engine = Engine::new(policy, State::in_memory());
    // `eval` opens no approvals: it has no admin socket to grant them on.
    let service = Service::new(engine, ServiceConfig::default(), None);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error(&format!("cannot start the runtime: {error}"));
            return Exit::Usage;
        }
    };
    let settings = Settings { idle_timeout: None, max_line_bytes: max_line };
    let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
    match runtime.block_on(connection::serve(stdin, stdout, &service, settings, Role::Eval, None)) {
        Ok(()) => Exit::Ok,
        Err(error) => {
            output::error(&format!("cannot read stdin or write stdout: {error}"));
            Exit::Usage
        }
    }
}

/// `--engine rego`: one line in, one decision object out, through regorus.
fn run_rego(policy: &toolgate::compiler::CheckedPolicySet) -> Exit {
    use std::io::{BufRead, Write};
    let mut gateway = match toolgate::authoring::rego_oracle::Gateway::new(
        policy,
        toolgate::compiler::rego_vm::Evaluator::Vm,
    ) {
        Ok(gateway) => gateway,
        Err(error) => {
            output::error(&format!("regorus cannot load the exported policy: {error}"));
            return Exit::Invalid;
        }
    };
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return Exit::Usage };
        if line.trim().is_empty() {
            continue;
        }
        let mut answer = Vec::new();
        let parsed = protocol::parse_line(&line);
        match parsed.op {
            Ok(Op::Decide(request)) => match gateway.decide(&request) {
                Ok(mut decision) => {
                    if let Some(object) = decision.as_object_mut() {
                        object.remove("counters");
                        object.insert(String::from("id"), parsed.id.clone());
                    }
                    protocol::write_json(&mut answer, &decision);
                }
                Err(error) => {
                    let error = WireError::new(WireErrorCode::Unavailable, format!("regorus: {error}"));
                    protocol::write_error(&mut answer, &parsed.id, &error);
                }
            },
            Ok(op) => {
                let error = WireError::new(
                    WireErrorCode::UnknownOp,
                    format!("unknown op `{}`; `eval` answers only `decide`", op.kind().as_str()),
                );
                protocol::write_error(&mut answer, &parsed.id, &error);
            }
            Err(error) => protocol::write_error(&mut answer, &parsed.id, &error),
        }
        if out.write_all(&answer).is_err() {
            return Exit::Usage;
        }
    }
    Exit::Ok
}
