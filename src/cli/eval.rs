//! `toolgate eval`: the wire protocol over stdin and stdout.

use std::path::PathBuf;

use tokio::io::{AsyncWriteExt, BufReader};
use toolgate::engine::Engine;
use toolgate::protocol::{self, Command, Read, WireError, WireErrorCode};

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
    let engine = Engine::new(policy, toolgate::state::State::in_memory());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error(&format!("cannot start the runtime: {error}"));
            return Exit::Usage;
        }
    };
    match runtime.block_on(answer_all(&engine, max_line)) {
        Ok(()) => Exit::Ok,
        Err(error) => {
            output::error(&format!("cannot read stdin or write stdout: {error}"));
            Exit::Usage
        }
    }
}

async fn answer_all(engine: &Engine, max_line: usize) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut line = protocol::LineBuffer::default();
    let mut out = Vec::new();
    loop {
        line.clear();
        let read = protocol::read_line(&mut input, &mut line, max_line).await?;
        match read {
            Read::Eof => break,
            Read::Line if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
            Read::Line => answer(engine, line.bytes(), &mut out),
            Read::TooLong => protocol::write_error(
                &mut out,
                &serde_json::Value::Null,
                &WireError::new(
                    WireErrorCode::LineTooLong,
                    format!("request line is longer than {max_line} bytes"),
                ),
            ),
        }
        // Flush when no further input is already waiting, so a client that
        // sends one line and waits gets its answer at once.
        if input.buffer().is_empty() || out.len() > 64 * 1024 {
            stdout.write_all(&out).await?;
            stdout.flush().await?;
            out.clear();
        }
    }
    stdout.write_all(&out).await?;
    stdout.flush().await
}

fn answer(engine: &Engine, line: &[u8], out: &mut Vec<u8>) {
    let Ok(text) = std::str::from_utf8(line) else {
        let error = WireError::new(WireErrorCode::InvalidJson, "request line is not UTF-8");
        return protocol::write_error(out, &serde_json::Value::Null, &error);
    };
    let parsed = protocol::parse_line(text);
    match parsed.command {
        Ok(Command::Decide(request)) => {
            let decision = engine.decide(&request);
            protocol::write_decision(out, &parsed.id, &decision, engine.policy_hash());
        }
        Ok(Command::Other(op, _)) => {
            let error =
                WireError::new(WireErrorCode::UnknownOp, format!("`eval` answers only `decide`, not `{op}`"));
            protocol::write_error(out, &parsed.id, &error);
        }
        Err(error) => protocol::write_error(out, &parsed.id, &error),
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
        match parsed.command {
            Ok(Command::Decide(request)) => match gateway.decide(&request) {
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
            Ok(Command::Other(op, _)) => {
                let error = WireError::new(
                    WireErrorCode::UnknownOp,
                    format!("`eval` answers only `decide`, not `{op}`"),
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
