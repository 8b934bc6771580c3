//! Capped admissions per second through a session store shared by
//! replicas: Redis (a real `redis-server` this benchmark starts on a Unix
//! socket) next to redb on this machine's disk.
//!
//! Run with `cargo bench --bench shared_state`; options after `--`:
//! `--clients N` (threads admitting at once, default 8), `--calls N` (per
//! client, default 20000), `--replicas N` (stores sharing one Redis, the
//! clients spread across them, default 1 and 3). Every call is one
//! `admit` under a `maxPerSession` cap and a rate limit, each client in a
//! session of its own; the store answers only after its group commit
//! (redb: fsync; Redis: the pipelined scripts' replies). Reports calls per
//! second in aggregate and the 50th and 99th percentile of one admission;
//! for Redis, also what it says a script run cost it (`INFO
//! commandstats`) and the CPU it and this process used meanwhile.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/redis.rs"]
mod support;
use support::redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use toolgate::state::durable::{DurableOptions, DurableSessions};
use toolgate::state::redis::{Link, RedisOptions, RedisSessions};
use toolgate::state::session::{Admission, Cap, SessionKey, SessionLimits, SessionStore};

struct Options {
    clients: usize,
    calls: usize,
    replicas: Vec<usize>,
}

fn options() -> Options {
    let mut options = Options { clients: 8, calls: 20_000, replicas: vec![1, 3] };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--clients" => options.clients = value().unwrap_or(options.clients),
            "--calls" => options.calls = value().unwrap_or(options.calls),
            "--replicas" => options.replicas = vec![value().unwrap_or(1)],
            _ => {}
        }
        i += 1;
    }
    options
}

/// Runs the clients against `stores` (client i on store i % len); returns
/// (calls per second, p50 µs, p99 µs).
fn run(stores: &[Arc<dyn SessionStore>], clients: usize, calls: usize) -> (f64, f64, f64) {
    let caps = [
        Cap::count("bench.constraints.t.maxPerSession", u64::MAX / 2),
        Cap {
            counter: "bench.constraints.t.rateLimit".into(),
            limit: 1_000_000_000,
            window_ms: Some(60_000),
        },
    ];
    let started = Instant::now();
    let mut latencies: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let store = Arc::clone(&stores[client % stores.len()]);
                let caps = &caps;
                scope.spawn(move || {
                    let session = format!("client-{client}");
                    let key = SessionKey { agent: "bench", session: &session };
                    let mut latencies = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        let call = Instant::now();
                        assert_eq!(store.admit(key, "t", caps), Admission::Admitted);
                        latencies.push(u64::try_from(call.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    }
                    latencies
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    ((clients * calls) as f64 / elapsed, at(0.50), at(0.99))
}

/// What `redis-cli` prints for `args` on the benchmark's Redis.
fn redis_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .arg("-s")
        .arg(dir.join("redis.sock"))
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CPU seconds Redis has used (`INFO cpu`: user and system).
fn redis_cpu(dir: &std::path::Path) -> f64 {
    let info = redis_cli(dir, &["INFO", "cpu"]);
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .filter(|(name, _)| *name == "used_cpu_sys" || *name == "used_cpu_user")
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// The CPU seconds this process has used (user and system, from
/// `/proc/self/stat`, in the usual 100 ticks a second).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |at: usize| fields.get(at).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let options = options();
    let dir = std::env::temp_dir().join(format!("toolgate-bench-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = redis_server(&dir);
    let url = format!("redis+unix://{}", dir.join("redis.sock").display());
    let limits = SessionLimits::default();
    println!("{} clients x {} capped admissions each", options.clients, options.calls);
    for &replicas in &options.replicas {
        let stores: Vec<Arc<dyn SessionStore>> = (0..replicas)
            .map(|_| {
                let link = Link::to(&url, &format!("bench{replicas}"), Duration::from_secs(1)).unwrap();
                let options = RedisOptions { clock: None, limits };
                Arc::new(RedisSessions::open(&link, options).unwrap()) as Arc<dyn SessionStore>
            })
            .collect();
        redis_cli(&dir, &["CONFIG", "RESETSTAT"]);
        let (redis_before, own_before, started) = (redis_cpu(&dir), own_cpu(), Instant::now());
        let (rate, p50, p99) = run(&stores, options.clients, options.calls);
        let wall = started.elapsed().as_secs_f64();
        println!("redis, {replicas} replica(s): {rate:>9.0} calls/s, p50 {p50:>7.1} µs, p99 {p99:>7.1} µs");
        let stats = redis_cli(&dir, &["INFO", "commandstats"]);
        if let Some(line) = stats.lines().find(|line| line.starts_with("cmdstat_evalsha:")) {
            println!("  in Redis: {}", line.trim());
        }
        println!(
            "  CPU: redis-server {:.0}% of a core, the clients and stores {:.0}% (of {} cores)",
            (redis_cpu(&dir) - redis_before) / wall * 100.0,
            (own_cpu() - own_before) / wall * 100.0,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    let durable: Arc<dyn SessionStore> = Arc::new(
        DurableSessions::open_with(
            &dir.join("state.redb"),
            DurableOptions { limits, ..DurableOptions::default() },
        )
        .unwrap(),
    );
    let (rate, p50, p99) = run(&[durable], options.clients, options.calls);
    println!("redb (one process, fsync):  {rate:>9.0} calls/s, p50 {p50:>7.1} µs, p99 {p99:>7.1} µs");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
