//! Socket throughput and latency of `toolgate serve` with 1, 8 and 32
//! pipelining clients.
//!
//! Run with `cargo bench --bench socket`; options after `--`:
//! `--requests N` per client (default 50000), `--window W` requests in
//! flight per client (default 2), `--clients 1,8,32`, `--audit always|os`
//! (keep an audit trail with that `--audit-sync`), `--state` (durable
//! session counters and approvals), `--redis` (the state on a `redis-server`
//! this benchmark starts on a Unix socket: `--state redis+unix://…`), `--naive` (each client writes all its
//! requests before reading any answer), `--approvals` (every request is a
//! gated call that opens an approval: 64 agents, 4,096 sessions, approvals
//! expiring after `--approval-ttl` seconds, default 1, so that about
//! rate × TTL approvals are open at any time).
//!
//! `TOOLGATE_BENCH_WRAPPER` prefixes the server command (a profiler).
//!
//! Each client keeps `W` requests in flight on one connection: it sends `W`,
//! then one more for every answer. Latency is from writing a request to
//! reading its answer, so it includes the queueing the window causes.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/redis.rs"]
mod support;
use support::redis_server;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    requests: usize,
    window: usize,
    clients: Vec<usize>,
    audit: Option<String>,
    state: bool,
    redis: bool,
    approvals: Option<u64>,
}

fn options() -> Options {
    let mut options = Options {
        requests: 50_000,
        window: 2,
        clients: vec![1, 8, 32],
        audit: None,
        state: false,
        redis: false,
        approvals: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(n) = value("--requests") {
        options.requests = n.parse().expect("--requests N");
    }
    if let Some(w) = value("--window") {
        options.window = w.parse().expect("--window W");
    }
    options.audit = value("--audit");
    options.state = args.iter().any(|a| a == "--state");
    options.redis = args.iter().any(|a| a == "--redis");
    if let Some(c) = value("--clients") {
        options.clients = c.split(',').map(|n| n.parse().expect("--clients 1,8,32")).collect();
    }
    if args.iter().any(|a| a == "--naive") {
        options.window = options.requests;
    }
    if args.iter().any(|a| a == "--approvals") {
        options.approvals =
            Some(value("--approval-ttl").map_or(1, |t| t.parse().expect("--approval-ttl SECS")));
    }
    options
}

/// The approvals workload's policy: 64 agents, each calling a gated tool.
fn gated_policy() -> String {
    let mut text = String::from("agentPolicies:\n");
    for agent in 0..64 {
        text.push_str(&format!(
            "  a{agent}:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n"
        ));
    }
    text
}

/// Gated calls, spread over 64 agents and 4,096 sessions, each distinct.
fn gated_requests(client: usize) -> Vec<String> {
    (0..65_536)
        .map(|i| {
            let n = client * 65_536 + i;
            format!(
                "{{\"agent\":\"a{}\",\"tool\":\"pay\",\"session\":\"s{}\",\"args\":{{\"n\":{n}}}}}\n",
                n % 64,
                (n / 64) % 4096
            )
        })
        .collect()
}

fn requests() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/examples.jsonl");
    std::fs::read_to_string(path).expect("examples").lines().map(|l| format!("{l}\n")).collect()
}

/// One client's run: latencies in nanoseconds, and how many answers
/// required approval.
fn client(socket: &Path, lines: &[String], requests: usize, window: usize) -> (Vec<u64>, usize) {
    let stream = UnixStream::connect(socket).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut sent = Vec::with_capacity(requests);
    let mut latencies = Vec::with_capacity(requests);
    let mut answer = String::new();
    let mut gated = 0;
    let mut send = |i: usize, sent: &mut Vec<Instant>| {
        sent.push(Instant::now());
        writer.write_all(lines[i % lines.len()].as_bytes()).expect("send");
    };
    for i in 0..window.min(requests) {
        send(i, &mut sent);
    }
    for i in 0..requests {
        answer.clear();
        reader.read_line(&mut answer).expect("answer");
        assert!(answer.contains("\"decision\""), "{answer}");
        gated += usize::from(answer.contains("\"decision\":\"require_approval\""));
        latencies.push(sent[i].elapsed().as_nanos() as u64);
        if i + window < requests {
            send(i + window, &mut sent);
        }
    }
    (latencies, gated)
}

/// How many approvals are waiting, from the server's `status`.
fn pending(socket: &Path) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.write_all(b"{\"op\":\"status\"}\n").expect("send");
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).expect("status");
    let key = "\"pending\":";
    answer.find(key).map_or_else(
        || String::from("?"),
        |at| answer[at + key.len()..].chars().take_while(char::is_ascii_digit).collect(),
    )
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() {
    let options = options();
    let dir = std::env::temp_dir().join(format!("toolgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("bench.sock");
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    // `TOOLGATE_BENCH_WRAPPER="valgrind --tool=callgrind"` runs the server
    // under a profiler (with fewer `--requests`: it is much slower there).
    let wrapper = std::env::var("TOOLGATE_BENCH_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut server = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(env!("CARGO_BIN_EXE_toolgate"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_toolgate")),
    };
    let policies = match options.approvals {
        Some(_) => {
            let file = dir.join("gated.yaml");
            std::fs::write(&file, gated_policy()).expect("policy");
            file
        }
        None => policies,
    };
    server.args(["serve", "--no-watch", "--policy"]).arg(&policies).arg("--socket").arg(&socket);
    if let Some(ttl) = options.approvals {
        server.args(["--approval-ttl", &ttl.to_string()]);
    }
    if options.state {
        server.arg("--state").arg(dir.join("state"));
    }
    let mut redis = options.redis.then(|| redis_server(&dir));
    if redis.is_some() {
        server.arg("--state").arg(format!("redis+unix://{}", dir.join("redis.sock").display()));
    }
    if let Some(sync) = &options.audit {
        server.arg("--audit").arg(dir.join("audit.jsonl")).args(["--audit-sync", sync]);
    }
    let mut server = server.stderr(Stdio::null()).spawn().expect("server");
    let deadline = Instant::now() + Duration::from_secs(120);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = requests();
    let workload = options.approvals.map_or_else(
        || String::from("the example requests"),
        |ttl| format!("gated calls opening approvals (64 agents, 4,096 sessions, --approval-ttl {ttl})"),
    );
    let audit = options
        .audit
        .as_deref()
        .map_or_else(|| String::from("no audit trail"), |s| format!("audit trail, --audit-sync {s}"));
    let state = match (options.state, options.redis) {
        (_, true) => "state on Redis",
        (true, false) => "durable state",
        (false, false) => "state in memory",
    };
    println!(
        "toolgate serve: {workload}, {} requests per client, window {}, {state}, {audit}",
        options.requests, options.window
    );
    println!("{:>8} {:>14} {:>10} {:>10} {:>10}", "clients", "decisions/s", "p50 µs", "p99 µs", "p99.9 µs");
    for &clients in &options.clients {
        // Warm up: one short run so the server's allocator and caches settle.
        let lines_of =
            |client: usize| if options.approvals.is_some() { gated_requests(client) } else { lines.clone() };
        client(&socket, &lines_of(usize::MAX / 65_536 - 1), 2_000, options.window.min(2_000));
        let start = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|n| {
                let socket = socket.clone();
                let lines = lines_of(n + clients * 64);
                let (requests, window) = (options.requests, options.window);
                std::thread::spawn(move || client(&socket, &lines, requests, window))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut gated = 0;
        for thread in threads {
            let (mine, opened) = thread.join().expect("client");
            latencies.extend(mine);
            gated += opened;
        }
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        let rate = latencies.len() as f64 / elapsed.as_secs_f64();
        println!(
            "{clients:>8} {rate:>14.0} {:>10.1} {:>10.1} {:>10.1}{}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            if options.approvals.is_some() {
                format!("   {gated} approvals opened, {} pending at the end", pending(&socket))
            } else {
                String::new()
            }
        );
    }
    // SIGTERM first: the server drains and exits, and a profiler wrapping
    // it writes its data; SIGKILL if it has not exited after 60 s.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
    if let Some(redis) = redis.as_mut() {
        let _ = redis.kill();
        let _ = redis.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
