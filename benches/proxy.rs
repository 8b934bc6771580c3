//! What `toolgate proxy` adds to a `tools/call` round trip, and what an idle
//! proxy holds in memory.
//!
//! Run with `cargo bench --bench proxy`; options after `--`: `--calls N`
//! (default 20000), `--server fixture|everything` (default both), `--audit`
//! (the proxy keeps an audit trail, `--audit-sync always`).
//! `TOOLGATE_BENCH_WRAPPER` prefixes the proxy's command (a profiler).
//!
//! Each measurement starts the server (directly, or behind the proxy),
//! does the MCP handshake, then makes `N` calls one at a time — write a
//! `tools/call`, read its answer — and reports the round trip's median and
//! 99th percentile; the difference between the two runs is the proxy's
//! cost. `fixture` is this benchmark's own binary acting as an MCP server
//! that answers every call at once (so the server's own time is nearly
//! nothing); `everything` is the reference server's `echo`, from npm
//! (tests/mcp/install). The proxy decides every call on a policy with an
//! argument rule, in-process, like a desktop client's proxy.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const POLICY: &str = "agentPolicies:\n  bench:\n    allowedTools: [srv/echo]\n    constraints:\n      srv/echo:\n        params:\n          message: {maxLength: 64}\n";

/// The fixture server: answers `initialize`, `tools/list` and every
/// `tools/call` at once.
fn serve_fixture() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.expect("line");
        let message: serde_json::Value = serde_json::from_str(&line).expect("json");
        let Some(id) = message.get("id") else { continue };
        let result = match message["method"].as_str() {
            Some("initialize") => {
                serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "fixture", "version": "1"}})
            }
            Some("tools/list") => {
                serde_json::json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})
            }
            _ => serde_json::json!({"content": [{"type": "text", "text": "Echo: hi"}]}),
        };
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
        writeln!(out, "{answer}").expect("write");
        out.flush().expect("flush");
    }
}

struct Peer {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(command: &[String]) -> Peer {
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .env("TOOLGATE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut peer = Peer { child, stdin, stdout };
        peer.ask(r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#, "\"init\"");
        writeln!(peer.stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).expect("write");
        peer
    }

    /// Sends a request and reads lines until its answer (`id` as JSON text).
    fn ask(&mut self, request: &str, id: &str) {
        writeln!(self.stdin, "{request}").expect("write");
        self.stdin.flush().expect("flush");
        let needle = format!("\"id\":{id}");
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.stdout.read_line(&mut line).expect("read") > 0, "the peer closed");
            if line.contains(&needle) {
                assert!(!line.contains("\"isError\":true"), "denied: {line}");
                return;
            }
        }
    }

    /// Round trips of `calls` sequential `tools/call`s, in microseconds, sorted.
    fn round_trips(&mut self, calls: usize) -> Vec<f64> {
        let mut times = Vec::with_capacity(calls);
        for n in 0..calls {
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello {n}"}}}}}}"#
            );
            let start = Instant::now();
            self.ask(&request, &n.to_string());
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        times
    }

    /// CPU time the process itself has used (user + system), in microseconds.
    fn cpu_us(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        let tck = Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
        let per_second: f64 = String::from_utf8_lossy(&tck.stdout).trim().parse().expect("CLK_TCK");
        ticks / per_second * 1e6
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("kB")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM, so that a profiler wrapping the proxy writes its data.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    if std::env::var_os("TOOLGATE_BENCH_FIXTURE_SERVER").is_some() {
        return serve_fixture();
    }
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let calls: usize = value("--calls").map_or(20_000, |n| n.parse().expect("--calls N"));
    let audit = args.iter().any(|a| a == "--audit");
    let servers: Vec<String> =
        value("--server").map_or(vec!["fixture".into(), "everything".into()], |s| vec![s]);
    let dir = std::env::temp_dir().join(format!("toolgate-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    println!(
        "toolgate proxy: {calls} sequential tools/call round trips{}",
        if audit { ", audit trail --audit-sync always" } else { "" }
    );
    println!(
        "{:>10} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "server", "path", "median µs", "p99 µs", "mean µs", "RSS KiB"
    );
    for server in servers {
        let command = server_command(&server, &root);
        let mut direct = Peer::start(&command);
        direct.round_trips(calls / 10); // warm up
        let plain = direct.round_trips(calls);
        drop(direct);
        // `TOOLGATE_BENCH_WRAPPER="perf record -g --"` runs the proxy under a profiler.
        let wrapper = std::env::var("TOOLGATE_BENCH_WRAPPER").unwrap_or_default();
        let mut proxy_command: Vec<String> = wrapper.split_whitespace().map(str::to_owned).collect();
        proxy_command.extend([
            env!("CARGO_BIN_EXE_toolgate").to_owned(),
            "proxy".into(),
            "--policy".into(),
            policy.to_string_lossy().into_owned(),
            "--agent".into(),
            "bench".into(),
            "--server".into(),
            "srv".into(),
        ]);
        if audit {
            proxy_command.extend(["--audit".into(), dir.join("audit.jsonl").to_string_lossy().into_owned()]);
        }
        proxy_command.push("--".into());
        proxy_command.extend(command.iter().cloned());
        let mut proxied = Peer::start(&proxy_command);
        let idle = proxied.rss_kib();
        proxied.round_trips(calls / 10);
        let cpu_before = proxied.cpu_us();
        let through = proxied.round_trips(calls);
        let cpu_per_call = (proxied.cpu_us() - cpu_before) / calls as f64;
        let busy = proxied.rss_kib();
        drop(proxied);
        let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
        let row = |path: &str, t: &[f64], rss: String| {
            println!(
                "{server:>10} {path:>9} {:>10.1} {:>10.1} {:>10.1} {rss:>10}",
                percentile(t, 0.5),
                percentile(t, 0.99),
                mean(t)
            );
        };
        row("direct", &plain, String::from("-"));
        row("proxy", &through, format!("{idle}/{busy}"));
        println!(
            "{server:>10} {:>9} {:>10.1} {:>10.1} {:>10.1}   (the proxy's own CPU: {cpu_per_call:.1} µs a call)",
            "added",
            percentile(&through, 0.5) - percentile(&plain, 0.5),
            percentile(&through, 0.99) - percentile(&plain, 0.99),
            mean(&through) - mean(&plain)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn server_command(server: &str, root: &Path) -> Vec<String> {
    match server {
        "fixture" => {
            // This binary, as the fixture server (see `serve_fixture`).
            let me = std::env::current_exe().expect("exe").to_string_lossy().into_owned();
            vec!["env".into(), "TOOLGATE_BENCH_FIXTURE_SERVER=1".into(), me]
        }
        "everything" => {
            let bin = root.join("tests/mcp/node_modules/.bin/mcp-server-everything");
            assert!(bin.exists(), "run tests/mcp/install first");
            vec![bin.to_string_lossy().into_owned(), "stdio".into()]
        }
        other => panic!("--server fixture|everything, not {other}"),
    }
}
