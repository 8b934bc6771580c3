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
        return run_rego(&policy, max_line);
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
/// Lines are bounded as for the engine (`--max-line-bytes`).
fn run_rego(policy: &toolgate::compiler::CheckedPolicySet, max_line: usize) -> Exit {
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
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error(&format!("cannot start the runtime: {error}"));
            return Exit::Usage;
        }
    };
    match runtime.block_on(answer_with_rego(&mut gateway, max_line)) {
        Ok(()) => Exit::Ok,
        Err(error) => {
            output::error(&format!("cannot read stdin or write stdout: {error}"));
            Exit::Usage
        }
    }
}

async fn answer_with_rego(
    gateway: &mut toolgate::authoring::rego_oracle::Gateway,
    max_line: usize,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut line = protocol::LineBuffer::default();
    loop {
        let read = protocol::read_line(&mut input, &mut line, max_line).await?;
        let mut answer = Vec::new();
        match read {
            protocol::ReadLine::Eof => break,
            protocol::ReadLine::Line if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
            protocol::ReadLine::Line => decide_with_rego(gateway, line.bytes(), &mut answer),
            protocol::ReadLine::TooLong => {
                let message =
                    format!("request line is longer than {max_line} bytes; skipped to the next line");
                let error = WireError::new(WireErrorCode::LineTooLong, message);
                protocol::write_error(&mut answer, &serde_json::Value::Null, &error);
            }
        }
        line.clear();
        stdout.write_all(&answer).await?;
    }
    stdout.flush().await
}

fn decide_with_rego(
    gateway: &mut toolgate::authoring::rego_oracle::Gateway,
    line: &[u8],
    answer: &mut Vec<u8>,
) {
    let Ok(text) = std::str::from_utf8(line) else {
        let error = WireError::new(WireErrorCode::InvalidJson, "request line is not UTF-8");
        return protocol::write_error(answer, &serde_json::Value::Null, &error);
    };
    let parsed = protocol::parse_line(text);
    match parsed.op {
        Ok(Op::Decide(request)) => match gateway.decide(&request) {
            Ok(mut decision) => {
                if let Some(object) = decision.as_object_mut() {
                    object.remove("counters");
                    object.insert(String::from("id"), parsed.id.clone());
                }
                protocol::write_json(answer, &decision);
            }
            Err(error) => {
                let error = WireError::new(WireErrorCode::Unavailable, format!("regorus: {error}"));
                protocol::write_error(answer, &parsed.id, &error);
            }
        },
        Ok(op) => {
            let message = format!("unknown op `{}`; `eval` answers only `decide`", op.kind().as_str());
            protocol::write_error(answer, &parsed.id, &WireError::new(WireErrorCode::UnknownOp, message));
        }
        Err(error) => protocol::write_error(answer, &parsed.id, &error),
    }
}
