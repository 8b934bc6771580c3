//! `toolgate proxy` on real MCP traffic: the official Python SDK as the
//! client against the reference MCP servers from npm and a Python SDK
//! server (tests/mcp/scenarios.py), and a raw JSON-RPC driver against
//! tests/mcp/raw_server.py for exact wire checks and attacks.
//!
//! The peers are installed by `tests/mcp/install` (which `.ci/run` runs);
//! these tests never download anything.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{root, tempdir::TempDir};

fn peers() -> PathBuf {
    let mcp = root().join("tests/mcp");
    let python = root().join("target/mcp-venv/bin/python");
    assert!(
        mcp.join("node_modules/.bin/mcp-server-everything").exists() && python.exists(),
        "the MCP peers are not installed: run tests/mcp/install (.ci/run does)"
    );
    mcp
}

/// Runs one scenario of tests/mcp/scenarios.py.
fn scenario(name: &str) {
    let mcp = peers();
    let work = TempDir::new();
    let output = Command::new(root().join("target/mcp-venv/bin/python"))
        .arg(mcp.join("scenarios.py"))
        .arg(name)
        .env("TOOLGATE", env!("CARGO_BIN_EXE_toolgate"))
        .env("WORK", work.path())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "scenario {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn allowed_results_equal_direct_results() {
    scenario("allowed_results_equal_direct_results");
}

#[test]
fn denials_say_why_and_hidden_tools_do_not_exist() {
    scenario("denials_say_why_and_hidden_tools_do_not_exist");
}

#[test]
fn kill_switch_stops_the_next_call() {
    scenario("kill_switch_stops_the_next_call");
}

#[test]
fn approval_loop() {
    scenario("approval_loop");
}

#[test]
fn both_eras_relay_through_the_proxy() {
    scenario("both_eras_relay_through_the_proxy");
}

#[test]
fn errors_in_a_row_stop_the_session() {
    scenario("errors_in_a_row_stop_the_session");
}

#[test]
fn progress_notifications_pass_through() {
    scenario("progress_notifications_pass_through");
}

#[test]
fn cancelled_calls_release_and_the_session_goes_on() {
    scenario("cancelled_calls_release_and_the_session_goes_on");
}

#[test]
fn roots_requests_reach_the_client() {
    scenario("roots_requests_reach_the_client");
}

/// A proxy in front of tests/mcp/raw_server.py, driven line by line.
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    _dir: TempDir,
}

impl Raw {
    fn start(extra: &[&str], server_args: &[&str]) -> Raw {
        let policy = peers().join("policies/raw.yaml");
        let mut args = vec![String::from("--policy"), policy.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Raw::start_with(&args, server_args)
    }

    fn start_with(extra: &[String], server_args: &[&str]) -> Raw {
        let mcp = peers();
        let dir = TempDir::new();
        let log = dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolgate"));
        command
            .arg("proxy")
            .args(["--agent", "bot", "--server", "raw"])
            .args(extra)
            .args(["--", "python3"])
            .arg(mcp.join("raw_server.py"))
            .arg(&log)
            .args(server_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("proxy starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Raw { child, stdin, lines, log, _dir: dir }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// The next line on stdout: it must be one JSON-RPC 2.0 message.
    fn recv(&self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(10)).expect("an answer within 10 s");
        let message: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout not JSON: {line}: {e}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        message
    }

    fn recv_line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(10)).expect("an answer within 10 s")
    }

    fn initialize(&mut self) {
        self.send(r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
        assert_eq!(self.recv()["id"], "init");
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    /// What the server received, one message a line.
    fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("logged JSON")).collect()
    }

    fn server_pid(&self) -> i32 {
        let pid = std::fs::read_to_string(self.log.with_extension("log.pid")).expect("pid file");
        pid.trim().parse().expect("pid")
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn wait(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut stderr = String::new();
                if let Some(mut err) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                return (status, stderr);
            }
            assert!(start.elapsed() < within, "the proxy did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ids_are_mapped_both_ways_and_cancellations_find_their_request() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    // The client's id 1 and the server's own request id 1 must not meet.
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask","arguments":{}}}"#);
    let asked = proxy.recv();
    assert_eq!(asked["method"], "roots/list");
    assert_ne!(asked["id"], json!(1), "the server's request travels under a proxy id: {asked}");
    proxy.send(&json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": []}}).to_string());
    let answered = proxy.recv();
    assert_eq!(
        (answered["id"].clone(), answered["result"]["content"][0]["text"].clone()),
        (json!(1), json!("asked"))
    );
    let to_server = proxy.received();
    let reply =
        to_server.iter().find(|m| m.get("result").is_some()).expect("the client's reply reached the server");
    assert_eq!(reply["id"], json!(1), "the server got its own id back");

    // A call that hangs, then its cancellation: the server sees the id it was sent.
    proxy.send(
        r#"{"jsonrpc":"2.0","id":"c-7","method":"tools/call","params":{"name":"hang","arguments":{}}}"#,
    );
    proxy.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c-7","reason":"user"}}"#);
    // A cancellation of nothing in flight is dropped, not passed on.
    proxy.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"never"}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["id"], json!(2));
    let to_server = proxy.received();
    let hang = to_server.iter().find(|m| m["params"]["name"] == "hang").expect("hang forwarded");
    let cancels: Vec<&Value> =
        to_server.iter().filter(|m| m["method"] == "notifications/cancelled").collect();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0]["params"]["requestId"], hang["id"]);
    assert_eq!(cancels[0]["params"]["reason"], "user");
}

#[test]
fn members_the_proxy_does_not_know_pass_byte_for_byte() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"n":1.50,"raw":true}},"x-client":1e400}"#);
    let line = proxy.recv_line();
    assert!(line.contains(r#""x-extra":{"kept":[1.50,1e400,123456789012345678901234567890]}"#), "{line}");
    let log = std::fs::read_to_string(&proxy.log).expect("log");
    assert!(log.contains(r#""arguments":{"n":1.50,"raw":true}},"x-client":1e400"#), "{log}");
}

#[test]
fn lists_hide_tools_on_every_page_and_become_private() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let line = proxy.recv_line();
    assert!(line.contains(r#""x-unknown":{"kept":[1.50,1e400,123456789012345678901234567890]}"#), "{line}");
    let first: Value = serde_json::from_str(&line.replace("1e400", "0")).expect("JSON");
    let names = |page: &Value| -> Vec<String> {
        page["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["echo", "hang", "ask"]);
    assert_eq!(first["result"]["nextCursor"], "page-2");
    assert_eq!(first["result"]["cacheScope"], "private", "a filtered list must not be cached for others");
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"page-2"}}"#);
    assert_eq!(names(&proxy.recv()), ["crash"], "secret_admin is hidden on the second page too");
    proxy.send(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"secret_admin","arguments":{}}}"#,
    );
    let hidden = proxy.recv();
    assert_eq!(hidden["error"], json!({"code": -32602, "message": "Unknown tool: secret_admin"}));
    assert!(
        !proxy.received().iter().any(|m| m["params"]["name"] == "secret_admin"),
        "never reached the server"
    );
}

#[test]
fn hostile_lines_are_answered_and_never_reach_the_server() {
    let mut proxy = Raw::start(&["--max-message-bytes", "2048"], &[]);
    proxy.initialize();
    let cases: &[(&str, i64)] = &[
        ("this is not json", -32700),
        (r#"[{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"secret_admin"}}]"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","method":"tools/call","params":{"name":"secret_admin"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","name":"secret_admin"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#,
            -32602,
        ),
        (r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":7}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"secret_admin"}}"#, -32600),
        (r#"{"id":9,"method":"tools/call","params":{"name":"secret_admin"}}"#, -32600),
        // Arguments the policy cannot read are refused, not decided as absent
        // (`path` must be within /srv).
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/etc/shadow","n":1e400}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/srv/a","path":"/etc/shadow"}}}"#,
            -32602,
        ),
    ];
    for (line, code) in cases {
        proxy.send(line);
        let answer = proxy.recv();
        assert_eq!(answer["error"]["code"], json!(code), "{line} → {answer}");
    }
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(4096)
    );
    proxy.send(&long);
    assert!(proxy.recv()["error"]["message"].as_str().expect("message").contains("longer than 2048"));
    // A request id already in flight is refused, not sent twice.
    proxy.send(r#"{"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"hang"}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"hang"}}"#);
    assert_eq!(proxy.recv()["error"]["code"], -32600);
    proxy.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/etc/shadow"}}}"#);
    assert_eq!(proxy.recv()["result"]["_meta"]["dev.toolgate/decision"]["reason_code"], "invalid_argument");
    // The stream goes on.
    proxy.send(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["id"], 10);
    let calls: Vec<Value> = proxy.received().into_iter().filter(|m| m["method"] == "tools/call").collect();
    let names: Vec<&Value> = calls.iter().map(|m| &m["params"]["name"]).collect();
    assert_eq!(names, [&json!("hang"), &json!("echo")], "only the valid calls reached the server");
}

#[test]
fn a_crashing_server_fails_the_calls_in_flight_and_the_proxy_exits_4() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":"waiting","method":"tools/call","params":{"name":"hang"}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","id":"boom","method":"tools/call","params":{"name":"crash"}}"#);
    let mut failed = [proxy.recv(), proxy.recv()];
    failed.sort_by_key(|m| m["id"].as_str().unwrap_or_default().to_owned());
    for (message, id) in failed.iter().zip(["boom", "waiting"]) {
        assert_eq!(message["id"], id);
        assert_eq!(message["error"]["code"], -32603, "{message}");
    }
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("exited (exit status: 3)"), "{stderr}");
}

#[test]
fn a_client_that_leaves_takes_the_server_with_it() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    let pid = proxy.server_pid();
    assert!(alive(pid));
    proxy.close_stdin();
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    wait_until("the server is gone", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn a_server_that_ignores_its_stdin_and_sigterm_is_killed() {
    let mut proxy = Raw::start(&["--shutdown-grace", "1"], &["--stubborn"]);
    proxy.initialize();
    let pid = proxy.server_pid();
    proxy.close_stdin();
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    wait_until("the stubborn server is killed", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn one_server_for_many_proxies() {
    scenario("one_server_for_many_proxies");
}

#[test]
fn answers_to_requests_sent_before_the_client_left_still_arrive() {
    let mut proxy = Raw::start(&[], &[]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":"last","method":"tools/call","params":{"name":"echo"}}"#);
    proxy.close_stdin();
    assert_eq!(proxy.recv()["id"], "last");
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn without_its_decision_server_the_proxy_denies_everything_and_lists_nothing() {
    let dir = TempDir::new();
    let socket = dir.path().join("toolgate.sock");
    let socket_arg = || vec!["--decision-socket".to_owned(), socket.to_string_lossy().into_owned()];
    // A proxy that cannot learn what its server may receive does not start it.
    let mut refused = Raw::start_with(&socket_arg(), &[]);
    let (status, stderr) = refused.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot learn what the MCP server `raw` may receive"), "{stderr}");

    let policy = std::fs::read_to_string(peers().join("policies/raw.yaml")).expect("policy");
    let serve = |socket: &std::path::Path| {
        let served = TempDir::new();
        std::fs::write(served.path().join("policy.yaml"), &policy).expect("policy");
        crate::server::Server::start_in(served, socket.to_path_buf(), &[])
    };
    let server = serve(&socket);
    let mut proxy = Raw::start_with(&socket_arg(), &[]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo");
    // The decision server goes away: every call is denied, lists are empty.
    drop(server);
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert_eq!(proxy.recv()["result"]["tools"], json!([]));
    proxy.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#);
    let denied = proxy.recv();
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    assert_eq!(denied["result"]["_meta"]["dev.toolgate/decision"]["reason_code"], "unavailable", "{denied}");
    let calls = proxy.received().iter().filter(|m| m["method"] == "tools/call").count();
    assert_eq!(calls, 1, "only the call decided before reached the server");
    // Once a server listens again, the next call is decided there.
    let _server = serve(&socket);
    proxy.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo");
}

#[test]
fn catalog_fetches_every_tool_a_live_server_lists() {
    let mcp = peers();
    let dir = TempDir::new();
    let file = dir.path().join("filesystem.tools.json");
    let output = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["catalog", "--output"])
        .arg(&file)
        .arg("--")
        .arg(mcp.join("node_modules/.bin/mcp-server-filesystem"))
        .arg(dir.path())
        .output()
        .expect("toolgate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("wrote 14 tools"));
    let fetched: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("written")).expect("JSON");
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("policies/catalogs/filesystem.tools.json")).expect("shipped"),
    )
    .expect("JSON");
    assert_eq!(fetched, shipped, "the shipped catalog is what the pinned server lists");

    // Every page: raw_server.py lists its tools on two pages.
    let log = dir.path().join("raw.log");
    let output = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["catalog", "--", "python3"])
        .arg(mcp.join("raw_server.py"))
        .arg(&log)
        .arg("--plain")
        .output()
        .expect("toolgate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["echo", "hang", "ask", "crash", "secret_admin"]);
}

/// A server whose tool list holds a number beyond ±1.8e308.
const RAW_LIST: &str = r#"
import sys
for line in sys.stdin:
    if '"initialize"' in line:
        print('{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}', flush=True)
    if '"tools/list"' in line:
        print('{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a","inputSchema":{"maximum":1e400}}]}}', flush=True)
"#;

#[test]
fn catalog_says_why_when_a_server_cannot_be_listed() {
    for (args, why) in [
        (&["/nonexistent/mcp-server"][..], "cannot start the MCP server `/nonexistent/mcp-server`"),
        (&["sleep", "30"][..], "did not answer within 1 s"),
        (&["true"][..], "closed its output before answering"),
        (&["python3", "-c", RAW_LIST][..], "answered tools/list with a result toolgate cannot read"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args(["catalog", "--timeout", "1", "--"])
            .args(args)
            .output()
            .expect("toolgate runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing on stdout");
    }
}

#[test]
fn a_listing_that_drifted_from_its_catalog_is_logged_and_audited() {
    let policy = peers().join("policies/raw-catalog.yaml").to_string_lossy().into_owned();
    let dir = TempDir::new();
    let trail = dir.path().join("audit.jsonl");
    let args = ["--policy".into(), policy, "--audit".into(), trail.to_string_lossy().into_owned()];
    let mut proxy = Raw::start_with(&args, &["--plain"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    proxy.recv();
    // Nothing is compared before the last page.
    let records = || -> Vec<Value> {
        std::fs::read_to_string(&trail)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect()
    };
    assert!(!records().iter().any(|r| r["kind"] == "tool_drift"));
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"page-2"}}"#);
    let last = proxy.recv();
    let names: Vec<&Value> =
        last["result"]["tools"].as_array().expect("tools").iter().map(|t| &t["name"]).collect();
    assert_eq!(names, [&json!("crash")], "an added tool is not in the catalog, so never callable: hidden");
    let drift: Vec<Value> = records().into_iter().filter(|r| r["kind"] == "tool_drift").collect();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(
        drift[0]["drift"],
        json!({"added": ["raw/secret_admin"], "removed": ["raw/old_tool"], "changed": [{"name": "raw/crash", "what": ["inputSchema"]}]}),
        "{drift:?}"
    );
    assert_eq!(drift[0]["server"], "raw");
    proxy.close_stdin();
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the server's tools differ from its catalog"), "{stderr}");
}

#[test]
fn a_carriage_return_cannot_smuggle_a_second_message_past_the_gate() {
    let mut proxy = Raw::start(&[], &["--plain"]);
    proxy.initialize();
    // Python's text streams end a line at a bare CR: the server would read
    // three messages where the proxy decided one.
    proxy.send("{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\",\"params\":{\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"secret_admin\",\"arguments\":{}}}\r}}");
    proxy.send("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"s\":\"a\u{2028}b\"}}}");
    assert_eq!(proxy.recv()["id"], 3);
    let log = std::fs::read_to_string(&proxy.log).expect("log");
    assert!(!log.contains('\r') && !log.contains('\u{2028}'), "{log:?}");
    assert!(!proxy.received().iter().any(|m| m["params"]["name"] == "secret_admin"), "{log}");
}

#[test]
fn a_tool_call_without_an_id_is_not_forwarded() {
    let mut proxy = Raw::start(&[], &["--plain"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"path":"/etc/shadow"}}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#);
    assert_eq!(proxy.recv()["id"], 1);
    let calls = proxy.received().into_iter().filter(|m| m["method"] == "tools/call").count();
    assert_eq!(calls, 1, "only the call with an id, decided");
}

#[test]
fn a_cancelled_request_is_forgotten_and_its_id_may_be_used_again() {
    let mut proxy = Raw::start(&[], &["--plain"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":"L","method":"tools/call","params":{"name":"hang"}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"L"}}"#);
    proxy.send(r#"{"jsonrpc":"2.0","id":"L","method":"tools/call","params":{"name":"echo"}}"#);
    let answer = proxy.recv();
    assert_eq!(
        (answer["id"].clone(), answer["result"]["content"][0]["text"].clone()),
        (json!("L"), json!("echo")),
        "{answer}"
    );
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":"{}","method":"tools/call","params":{{"name":"hang"}}}}"#,
        "x".repeat(257)
    );
    proxy.send(&long);
    assert_eq!(proxy.recv()["error"]["code"], -32600, "an id too long to remember");
}

#[test]
fn a_tool_list_the_proxy_cannot_read_is_not_passed_on() {
    let mut proxy = Raw::start(&[], &["--plain"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"dup"}}"#);
    let line = proxy.recv_line();
    assert!(!line.contains("secret_admin"), "{line}");
    let answer: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(1), json!(-32603)),
        "{answer}"
    );
}

#[test]
fn a_server_that_reads_nothing_does_not_hold_the_proxy_or_outlive_it() {
    let dir = TempDir::new();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["proxy", "--policy"])
        .arg(peers().join("policies/raw.yaml"))
        .args(["--agent", "bot", "--shutdown-grace", "1", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let notification = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{}"}}}}"#,
        "x".repeat(1000)
    );
    for _ in 0..200 {
        // The pipe to the server fills: writes here may block once the proxy stops reading.
        if writeln!(stdin, "{notification}").is_err() {
            break;
        }
    }
    wait_until("the server started", Duration::from_secs(5), || pid_file.exists());
    let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("pid");
    drop(stdin);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the proxy hangs on a server that reads nothing");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    wait_until("the server is gone", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn a_proxy_stopped_by_a_signal_stops_its_server_first() {
    let mut proxy = Raw::start(&[], &["--stubborn", "--plain"]);
    proxy.initialize();
    let pid = proxy.server_pid();
    std::thread::sleep(Duration::from_millis(200));
    let proxy_pid = proxy.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &proxy_pid]).status().expect("kill").success());
    let (status, stderr) = proxy.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}: {stderr}");
    wait_until("the stubborn server is gone", Duration::from_secs(5), || !alive(pid));
}

#[test]
fn the_user_is_asked_through_the_client() {
    scenario("the_user_is_asked_through_the_client");
}

#[test]
fn a_call_cancelled_while_its_user_is_asked_withdraws_the_question_and_is_never_made() {
    let policy = peers().join("policies/raw-user.yaml").to_string_lossy().into_owned();
    let mut proxy = Raw::start_with(&["--policy".into(), policy], &["--plain"]);
    proxy.send(r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}"#);
    assert_eq!(proxy.recv()["id"], "init");
    proxy.send(r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"confirm":true}}}"#);
    let question = proxy.recv();
    assert_eq!(question["method"], "elicitation/create", "{question}");
    assert!(question["params"]["message"].as_str().is_some_and(|m| m.contains("`echo`")), "{question}");
    // The same id again while the first waits is refused.
    proxy.send(r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"confirm":true}}}"#);
    assert_eq!(proxy.recv()["error"]["code"], -32600);
    proxy.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1"}}"#);
    let withdrawn = proxy.recv();
    assert_eq!(withdrawn["method"], "notifications/cancelled", "{withdrawn}");
    assert_eq!(withdrawn["params"]["requestId"], question["id"]);
    // A late answer to the withdrawn question changes nothing.
    proxy.send(&json!({"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept"}}).to_string());
    proxy
        .send(r#"{"jsonrpc":"2.0","id":"c2","method":"tools/call","params":{"name":"echo","arguments":{}}}"#);
    let next = proxy.recv();
    assert_eq!(next["id"], "c2", "no answer for the cancelled call: {next}");
    let calls: Vec<Value> = proxy.received().into_iter().filter(|m| m["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 1, "only c2 was made: {calls:?}");
}

#[test]
fn a_request_abandoned_half_way_never_lends_its_answer_to_the_next() {
    // A decision server that takes 20 ms an answer: allow for raw/echo,
    // deny for anything else, each answer with its request's id.
    let dir = TempDir::new();
    let socket = dir.path().join("slow.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let request: Value = serde_json::from_str(&line).expect("JSON");
                    std::thread::sleep(Duration::from_millis(20));
                    let allowed = request["tool"] == "raw/echo";
                    let answer = json!({"id": request["id"], "decision": if allowed { "allow" } else { "deny" },
                        "reason_code": if allowed { "allowed" } else { "tool_not_allowed" }});
                    if writeln!(writer, "{answer}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    let gate = toolgate::proxy::gate::Gate::remote(socket, Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ask = |tool: &str| json!({"id": 0, "op": "decide", "agent": "bot", "tool": tool, "session": "s"});
    runtime.block_on(async {
        for round in 0..3 {
            let allowed = ask("raw/echo");
            let abandoned = tokio::time::timeout(Duration::from_millis(5), gate.ask(&allowed)).await;
            assert!(abandoned.is_err(), "given up before its answer");
            let answer = gate.ask(&ask("raw/secret_admin")).await;
            assert_eq!(
                answer["decision"], "deny",
                "round {round}: the abandoned request's allow was taken: {answer}"
            );
        }
    });
}

#[test]
fn a_stateful_server_keeps_its_state_through_the_proxy() {
    scenario("a_stateful_server_keeps_its_state_through_the_proxy");
}

#[test]
fn a_proxy_reloads_its_policy_when_the_file_changes() {
    let dir = TempDir::new();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "agentPolicies:\n  bot:\n    allowedTools: [raw/echo, raw/hang]\n")
        .expect("policy");
    let mut proxy =
        Raw::start_with(&["--policy".into(), policy.to_string_lossy().into_owned()], &["--plain"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo");
    // A policy with errors is not taken: echo stays allowed.
    std::fs::write(&policy, "agentPolicies:\n  bot:\n    alowedTools: [raw/hang]\n").expect("broken");
    std::thread::sleep(Duration::from_millis(800));
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo", "the last good policy decides");
    std::fs::write(&policy, "agentPolicies:\n  bot:\n    allowedTools: [raw/hang]\n").expect("narrowed");
    let start = Instant::now();
    let mut n = 3;
    loop {
        proxy.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo"}}}}"#
        ));
        let answer = proxy.recv();
        if answer["error"]["code"] == -32602 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not reloaded: {answer}");
        std::thread::sleep(Duration::from_millis(100));
        n += 1;
    }
}

#[test]
fn the_cost_the_policy_declares_stops_a_session_at_its_ceiling() {
    let policy = peers().join("policies/raw-cost.yaml").to_string_lossy().into_owned();
    let dir = TempDir::new();
    let trail = dir.path().join("audit.jsonl");
    let args = ["--policy".into(), policy, "--audit".into(), trail.to_string_lossy().into_owned()];
    let mut proxy = Raw::start_with(&args, &["--plain"]);
    proxy.initialize();
    // 0.4 a call (the larger of the two costs that apply): the third call
    // brings the session to 1.2, past maxCost 1, and the fourth is refused.
    for n in 1..=3 {
        proxy.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo"}}}}"#
        ));
        assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo", "call {n}");
    }
    proxy.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo"}}"#);
    let stopped = proxy.recv();
    assert_eq!(stopped["result"]["_meta"]["dev.toolgate/decision"]["reason_code"], "killed", "{stopped}");
    assert!(
        stopped["result"]["content"][0]["text"].as_str().is_some_and(|t| t.contains("maxCost")),
        "{stopped}"
    );
    let costs: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record"))
        .filter(|r| r["kind"] == "outcome")
        .map(|r| r["cost"].clone())
        .collect();
    assert_eq!(costs, [json!(0.4), json!(0.4), json!(0.4)], "the counted cost is in the trail");
}

#[test]
fn a_catalog_that_denies_drift_stops_calls_to_a_tool_that_changed() {
    let policy = peers().join("policies/raw-catalog-deny.yaml").to_string_lossy().into_owned();
    let mut proxy = Raw::start_with(&["--policy".into(), policy], &["--plain"]);
    proxy.initialize();
    let call = |proxy: &mut Raw, id: u32, tool: &str| {
        proxy.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        ));
    };
    // `crash` changed its inputSchema; the proxy learns it from a listing.
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    proxy.recv();
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"page-2"}}"#);
    proxy.recv();
    call(&mut proxy, 3, "crash");
    let denied = proxy.recv();
    let decision = &denied["result"]["_meta"]["dev.toolgate/decision"];
    assert_eq!(
        (decision["reason_code"].as_str(), decision["rule"].as_str()),
        (Some("tool_drift"), Some("toolgate.toolDrift")),
        "{denied}"
    );
    call(&mut proxy, 4, "echo");
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo", "an unchanged tool is called");
    assert!(
        !proxy.received().iter().any(|m| m["params"]["name"] == "crash"),
        "the changed tool was never called"
    );
}

#[test]
fn the_user_is_asked_in_the_2026_protocol() {
    scenario("the_user_is_asked_in_the_2026_protocol");
}

#[test]
fn selectors_read_the_annotations_the_server_lists() {
    scenario("selectors_read_the_annotations_the_server_lists");
}

#[test]
fn output_rules_govern_what_the_model_reads() {
    scenario("output_rules_govern_what_the_model_reads");
}

#[test]
fn a_slow_call_is_cancelled_at_its_timeout_and_the_model_told_what_next() {
    scenario("a_slow_call_is_cancelled_at_its_timeout_and_the_model_told_what_next");
}

#[test]
fn a_server_receives_only_the_environment_its_policy_names() {
    scenario("a_server_receives_only_the_environment_its_policy_names");
}

#[test]
fn output_rules_reach_tool_definitions_resources_and_prompts() {
    let policy = peers().join("policies/raw-output.yaml").to_string_lossy().into_owned();
    let trail = TempDir::new();
    let audit = trail.path().join("audit.jsonl");
    let args = ["--policy".to_owned(), policy, "--audit".to_owned(), audit.to_string_lossy().into_owned()];
    let mut proxy = Raw::start_with(&args, &["--plain", "--poisoned"]);
    proxy.initialize();
    proxy.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let page = proxy.recv();
    let tools = page["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["echo", "ask"], "the tool whose description steers the model is left out: {page}");
    assert_eq!(
        tools[1]["inputSchema"]["properties"]["key"]["description"],
        "use [REDACTED:aws-access-key-id]"
    );
    assert_eq!(page["result"]["nextCursor"], "page-2");
    proxy.send(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///deploy.txt"}}"#);
    let read = proxy.recv();
    assert_eq!(read["result"]["contents"][0]["text"], "deploy token [REDACTED:github-token]", "{read}");
    proxy.send(r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"setup"}}"#);
    let prompt = proxy.recv_line();
    assert!(
        prompt.contains("toolgate withheld this prompt") && !prompt.contains("developer mode"),
        "{prompt}"
    );
    // The poisoned tool's calls are still decided by the policy, which allows it.
    proxy.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(proxy.recv()["result"]["content"][0]["text"], "echo");
    // A server's error message reaches the model too: judged as text.
    proxy.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"fail"}}"#);
    let failed = proxy.recv_line();
    assert!(failed.contains("cannot connect to [REDACTED:url-credentials]"), "{failed}");
    assert!(!failed.contains("s3cret"), "neither in the message nor in its data: {failed}");
    let recorded = std::fs::read_to_string(&audit).expect("trail");
    let contents: Vec<String> = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "output")
        .filter_map(|r| r["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(contents, ["tools", "resource", "prompt"], "{recorded}");
    assert!(recorded.contains(r#""tool":"raw/fail""#), "the error's finding is recorded: {recorded}");
    assert!(!recorded.contains("ghp_1a2B") && !recorded.contains("developer mode"), "{recorded}");
}

/// Two proxies deciding in-process on one Redis (`--state redis+unix://…`)
/// share their session's cap, a kill made through one proxy's admin socket
/// stops the other's next call, and with Redis gone the kill cannot be
/// revived (a revival that cannot be shared does not happen) and holds.
#[test]
fn proxies_on_one_redis_share_caps_and_kills() {
    let mut redis = crate::util::redis_server::RedisServer::start(&[]);
    let dir = TempDir::new();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "agentPolicies:\n  bot:\n    allowedTools: [raw/echo]\n    constraints:\n      raw/echo:\n        maxPerSession: 3\n",
    )
    .expect("policy");
    let admin_socket = dir.path().join("admin.sock");
    let proxy = |admin: bool| {
        let mut args: Vec<String> = ["--policy", &policy.to_string_lossy(), "--state", &redis.url()]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(["--session".to_owned(), "shared".to_owned()]);
        if admin {
            args.extend(["--admin-socket".to_owned(), admin_socket.to_string_lossy().into_owned()]);
        }
        let mut proxy = Raw::start_with(&args, &[]);
        proxy.initialize();
        proxy
    };
    let (mut a, mut b) = (proxy(true), proxy(false));
    let call = |proxy: &mut Raw, id: u32| {
        proxy.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#
        ));
        let answer = proxy.recv();
        answer["result"]["_meta"]["dev.toolgate/decision"]["reason_code"]
            .as_str()
            .unwrap_or("allowed")
            .to_owned()
    };
    let answers: Vec<String> = (0..4).flat_map(|id| [call(&mut a, id), call(&mut b, id)]).collect();
    assert_eq!(answers.iter().filter(|r| *r == "allowed").count(), 3, "{answers:?}");
    assert!(answers.iter().filter(|r| *r != "allowed").all(|r| r == "cap_reached"), "{answers:?}");
    let forwarded = a.received().len() + b.received().len();

    let (code, answer) =
        crate::server::admin(&["kill", "--agent", "bot", "--reason", "incident"], &admin_socket);
    assert_eq!(code, Some(0), "{answer}");
    let started = Instant::now();
    loop {
        if call(&mut b, 10) == "killed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the kill did not reach the other proxy");
    }
    redis.stop();
    let (code, answer) = crate::server::admin(&["revive", "--agent", "bot"], &admin_socket);
    assert_ne!(code, Some(0), "a revival that cannot be shared does not happen: {answer}");
    assert_eq!(call(&mut a, 11), "killed");
    assert_eq!(a.received().len() + b.received().len(), forwarded, "nothing denied reached a server");
}
