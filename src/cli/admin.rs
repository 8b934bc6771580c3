//! `toolgate kill`, `revive` and `kills`: clients of the admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::Value;

use super::{Exit, output};

pub fn kill(socket: &Path, scope: &Value, reason: &str, by: Option<&str>) -> Exit {
    let mut line = scope.clone();
    line["op"] = Value::from("kill");
    line["reason"] = Value::from(reason);
    if let Some(by) = by {
        line["by"] = Value::from(by);
    }
    request(socket, &line)
}

pub fn revive(socket: &Path, scope: &Value) -> Exit {
    let mut line = scope.clone();
    line["op"] = Value::from("revive");
    request(socket, &line)
}

pub fn list(socket: &Path) -> Exit {
    request(socket, &serde_json::json!({"op": "kills"}))
}

/// Sends one admin request and prints the answer; exit 0 unless it is an error.
pub fn request(socket: &Path, request: &Value) -> Exit {
    let answer = (|| -> std::io::Result<String> {
        let mut stream = UnixStream::connect(socket)?;
        writeln!(stream, "{request}")?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer)
    })();
    match answer {
        Ok(answer) if !answer.is_empty() => {
            print!("{answer}");
            let value: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
            if value.get("error").is_some() { Exit::Invalid } else { Exit::Ok }
        }
        Ok(_) => {
            output::error("the server closed the connection without answering");
            Exit::Usage
        }
        Err(error) => {
            output::error(&format!("cannot talk to `{}`: {error}", socket.display()));
            Exit::Usage
        }
    }
}
