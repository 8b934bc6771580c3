//! `toolgate eval`: the wire protocol over stdin and stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use toolgate::engine::Engine;
use toolgate::wire::{self, Command, WireError, WireErrorCode};

use super::{Exit, Format, output};

/// The default longest request line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

pub fn run(policies: &[PathBuf], max_line: usize) -> Exit {
    let sources = match toolgate::files::read_policies(policies) {
        Ok(sources) => sources,
        Err(error) => {
            output::error(&error.to_string());
            return Exit::Usage;
        }
    };
    let checked = toolgate::compile(sources);
    let Some(policy) = checked.policy else {
        output::diagnostics(checked.diagnostics.as_slice(), &checked.sources, Format::Human);
        output::error(&format!(
            "policy does not compile ({})",
            output::summary(checked.diagnostics.as_slice())
        ));
        return Exit::Invalid;
    };
    let engine = Engine::new(policy);
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        let read = match read_line(&mut input, &mut line, max_line) {
            Ok(read) => read,
            Err(error) => {
                output::error(&format!("cannot read stdin: {error}"));
                return Exit::Usage;
            }
        };
        match read {
            Read::Eof => break,
            Read::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            Read::Line => answer(&engine, &line, &mut out),
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
            if stdout.write_all(&out).and_then(|()| stdout.flush()).is_err() {
                return Exit::Usage;
            }
            out.clear();
        }
    }
    if stdout.write_all(&out).and_then(|()| stdout.flush()).is_err() {
        return Exit::Usage;
    }
    Exit::Ok
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

enum Read {
    Line,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its newline), at most `max` bytes; a
/// longer line is consumed up to its newline and reported as too long.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Read> {
    let mut too_long = false;
    let mut seen_any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(if !seen_any {
                Read::Eof
            } else if too_long {
                Read::TooLong
            } else {
                Read::Line
            });
        }
        seen_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        input.consume(consumed);
        if done.is_some() {
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}
