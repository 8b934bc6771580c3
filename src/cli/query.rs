//! `toolgate query`: a client of the decision socket for people and shell
//! scripts; the exit status reflects the decisions.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{Value, json};

use super::{Exit, output};

pub struct QueryArgs<'a> {
    pub socket: &'a Path,
    pub requests: &'a [String],
    pub agent: Option<String>,
    pub tool: Option<String>,
    pub args: Option<String>,
    pub session: Option<String>,
}

pub fn run(query: QueryArgs<'_>) -> Exit {
    let lines = match request_lines(&query) {
        Ok(lines) => lines,
        Err(message) => {
            output::error(&message);
            return Exit::Usage;
        }
    };
    match exchange(query.socket, &lines) {
        Ok(answers) => {
            let mut stdout = std::io::stdout().lock();
            let (mut denied, mut gated) = (false, false);
            for answer in &answers {
                let _ = writeln!(stdout, "{answer}");
                let value: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
                match (value.get("decision").and_then(Value::as_str), value.get("error")) {
                    (Some("allow"), None) => {}
                    (Some("require_approval"), None) => gated = true,
                    // An answer to an operation (health, status) is fine;
                    // anything unreadable or unexpected counts as a deny.
                    (None, None) if value.is_object() => {}
                    _ => denied = true,
                }
            }
            // Deny outranks approval: a script must proceed on neither.
            if denied {
                Exit::Denied
            } else if gated {
                Exit::ApprovalRequired
            } else {
                Exit::Ok
            }
        }
        Err(message) => {
            output::error(&message);
            Exit::Usage
        }
    }
}

fn request_lines(query: &QueryArgs<'_>) -> Result<Vec<String>, String> {
    if let (Some(agent), Some(tool)) = (&query.agent, &query.tool) {
        let args: Value = match &query.args {
            Some(text) => serde_json::from_str(text).map_err(|e| format!("--args is not JSON: {e}"))?,
            None => json!({}),
        };
        return Ok(vec![
            json!({"agent": agent, "tool": tool, "args": args, "session": query.session}).to_string(),
        ]);
    }
    if query.agent.is_some() || query.tool.is_some() {
        return Err(String::from("--agent and --tool go together"));
    }
    if !query.requests.is_empty() {
        // One argument is one request line: a newline inside would send two
        // requests and read one answer.
        if query.requests.iter().any(|r| r.contains('\n')) {
            return Err(String::from("a request argument must be one line (no newline inside)"));
        }
        return Ok(query.requests.iter().filter(|r| !r.trim().is_empty()).cloned().collect());
    }
    let stdin = std::io::stdin();
    let lines: Result<Vec<String>, _> = stdin.lock().lines().collect();
    let lines = lines.map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(lines.into_iter().filter(|l| !l.trim().is_empty()).collect())
}

/// Sends every line (pipelined), then reads one answer per line.
fn exchange(socket: &Path, lines: &[String]) -> Result<Vec<String>, String> {
    let stream =
        UnixStream::connect(socket).map_err(|e| format!("cannot connect to `{}`: {e}", socket.display()))?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let payload: String = lines.iter().map(|l| format!("{}\n", l.trim_end())).collect();
    let sender = std::thread::spawn(move || writer.write_all(payload.as_bytes()));
    let mut reader = BufReader::new(stream);
    let mut answers = Vec::with_capacity(lines.len());
    for _ in lines {
        let mut answer = String::new();
        match reader.read_line(&mut answer) {
            Ok(0) => {
                return Err(String::from("the server closed the connection before answering every request"));
            }
            Ok(_) => answers.push(answer.trim_end().to_owned()),
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
    sender.join().map_err(|_| String::from("sending failed"))?.map_err(|e| format!("cannot send: {e}"))?;
    Ok(answers)
}
