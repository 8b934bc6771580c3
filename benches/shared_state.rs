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
//! second in aggregate and the 50th and 99th percentile of one admission.

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
        let (rate, p50, p99) = run(&stores, options.clients, options.calls);
        println!("redis, {replicas} replica(s): {rate:>9.0} calls/s, p50 {p50:>7.1} µs, p99 {p99:>7.1} µs");
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
