//! A gateway asking toolgate before each tool call: over the decision
//! socket, and in-process through the library.
//!
//! Usage: `gateway SOCKET POLICY_DIR`. Built by `cargo test`; the book runs it.

#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};
use toolgate::engine::{Engine, Outcome, Request};
use toolgate::state::State;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: gateway SOCKET POLICY_DIR")?;
    let policies = args.next().ok_or("usage: gateway SOCKET POLICY_DIR")?;

    // Over the socket: one connection, reused for every call.
    let stream = UnixStream::connect(&socket)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let call = json!({"id": 1, "agent": "docsAgent", "tool": "filesystem/write_file", "session": "s-1",
                      "args": {"path": "/srv/docs/deploy.sh", "content": "echo hi"}});
    writeln!(writer, "{call}")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let answer: Value = serde_json::from_str(&line)?;
    match answer["decision"].as_str() {
        Some("allow") => println!("socket: call the tool"),
        Some("require_approval") => {
            println!("socket: ask {} first ({})", answer["approver"], answer["reason"])
        }
        _ => println!("socket: refuse the call: {}", answer["reason"]),
    }

    // In-process: compile once, share the engine, decide in nanoseconds.
    let sources = toolgate::compiler::files::read_policies(&[policies.into()])?;
    let checked = toolgate::compile(sources, &toolgate::DiskFiles);
    let engine = Engine::new(checked.policy.ok_or("the policy does not compile")?, State::in_memory());
    let mut args = serde_json::Map::new();
    args.insert("path".into(), json!("/etc/passwd"));
    let request = Request {
        agent: "docsAgent".into(),
        tool: "filesystem/read_text_file".into(),
        args,
        session: Some("s-1".into()),
        ..Request::default()
    };
    let decision = engine.decide(&request);
    assert_eq!(decision.outcome, Outcome::Deny);
    println!("in-process: {} by `{}`: {}", decision.outcome.as_str(), decision.rule, decision.reason);
    Ok(())
}
