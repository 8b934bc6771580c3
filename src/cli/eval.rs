//! `toolgate eval`: the wire protocol over stdin and stdout.

use std::path::PathBuf;

use tokio::io::{AsyncWriteExt, BufReader};
use toolgate::engine::Engine;
use toolgate::wire::{self, Command, Read, WireError, WireErrorCode};

use super::{Exit, output};

/// The default longest request line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

pub fn run(policies: &[PathBuf], max_line: usize) -> Exit {
    let engine = match output::compile_or_report(policies) {
        Ok(policy) => Engine::new(policy),
        Err(exit) => return exit,
    };
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
    let mut line = wire::LineBuffer::default();
    let mut out = Vec::new();
    loop {
        line.clear();
        let read = wire::read_line(&mut input, &mut line, max_line).await?;
        match read {
            Read::Eof => break,
            Read::Line if line.bytes().iter().all(u8::is_ascii_whitespace) => {}
            Read::Line => answer(engine, line.bytes(), &mut out),
            Read::TooLong => wire::write_error(
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
        return wire::write_error(out, &serde_json::Value::Null, &error);
    };
    let parsed = wire::parse_line(text);
    match parsed.command {
        Ok(Command::Decide(request)) => {
            let decision = engine.decide(&request);
            wire::write_decision(out, &parsed.id, &decision, engine.policy_hash());
        }
        Ok(Command::Other(op, _)) => {
            let error =
                WireError::new(WireErrorCode::UnknownOp, format!("`eval` answers only `decide`, not `{op}`"));
            wire::write_error(out, &parsed.id, &error);
        }
        Err(error) => wire::write_error(out, &parsed.id, &error),
    }
}
