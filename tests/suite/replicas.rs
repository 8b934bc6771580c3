//! Three `toolgate serve` replicas sharing one real Redis (`--state
//! redis+unix://…`): one session cap and one rate limit in total, a kill
//! on one replica in force on the others, an approval opened on one,
//! granted on another and redeemed once on a third, and Redis lost and
//! back mid-load.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, admin, approvers};
use crate::util::redis_server::RedisServer;

/// The replicas' policy: `search` capped at `cap` calls a session.
fn policy(cap: u64) -> String {
    format!(
        "agentPolicies:\n  bot:\n    allowedTools: [search, pay, fetch]\n    constraints:\n      search:\n        maxPerSession: {cap}\n      fetch:\n        rateLimit: 40/min\n    approvalGates:\n      pay:\n        required: true\n        approver: finance\n{}",
        approvers(&["finance"])
    )
}

/// Three replicas on `redis`, each with an admin socket, `search` capped at `cap`.
fn replicas(redis: &RedisServer, cap: u64) -> Vec<(Server, std::path::PathBuf)> {
    (0..3)
        .map(|_| {
            let dir = crate::util::tempdir::TempDir::new();
            std::fs::write(dir.path().join("policy.yaml"), policy(cap)).expect("policy");
            let (socket, admin_socket) = (dir.path().join("toolgate.sock"), dir.path().join("admin.sock"));
            let url = redis.url();
            let admin_arg = admin_socket.display().to_string();
            let server = Server::start_in(dir, socket, &["--state", &url, "--admin-socket", &admin_arg]);
            (server, admin_socket)
        })
        .collect()
}

/// Sends `requests` on one connection to `server`, pipelined; the answers.
fn pipelined(server: &Server, requests: &[Value]) -> Vec<Value> {
    let mut client = server.connect();
    for request in requests {
        client.send(&request.to_string());
    }
    requests.iter().map(|_| client.receive()).collect()
}

#[test]
fn replicas_on_one_redis_share_caps_rate_limits_kills_and_approvals() {
    let redis = RedisServer::start(&[]);
    let replicas = replicas(&redis, 50);

    // One session cap, in total: 6 clients × 20 calls spread over 3 replicas.
    let search = json!({"agent": "bot", "tool": "search", "session": "shared"});
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..6)
            .map(|i| {
                let (server, _) = &replicas[i % 3];
                let requests = vec![search.clone(); 20];
                scope.spawn(move || pipelined(server, &requests))
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().expect("client")).collect()
    });
    let allowed = answers.iter().filter(|a| a["decision"] == "allow").count();
    assert_eq!(allowed, 50, "the cap holds in total across replicas");
    assert!(answers.iter().filter(|a| a["decision"] == "deny").all(|a| a["reason_code"] == "cap_reached"));

    // One rate limit, in total: 40 a minute for the agent, whichever replica.
    let fetch = |session: &str| json!({"agent": "bot", "tool": "fetch", "session": session});
    let fetched: Vec<Value> =
        (0..60).map(|i| replicas[i % 3].0.connect().ask(fetch(&format!("r{i}")))).collect();
    assert_eq!(fetched.iter().filter(|a| a["decision"] == "allow").count(), 40);

    // A kill on replica 0 is in force on replicas 1 and 2.
    let other = json!({"agent": "bot", "tool": "search", "session": "k1"});
    assert_eq!(replicas[1].0.connect().ask(other.clone())["decision"], "allow");
    let (code, answer) =
        admin(&["kill", "--agent", "bot", "--session", "k1", "--reason", "runaway"], &replicas[0].1);
    assert_eq!(code, Some(0), "{answer}");
    let killed_at = Instant::now();
    for (server, _) in &replicas[1..] {
        let mut client = server.connect();
        loop {
            let answer = client.ask(other.clone());
            if answer["reason_code"] == "killed" {
                break;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(2), "not killed in time: {answer}");
        }
    }
    eprintln!("a kill on one replica was in force on the others after {:?}", killed_at.elapsed());

    // An approval opened on replica 0, granted on replica 1's admin socket,
    // redeemed once on replica 2, refused after that anywhere.
    let pay = json!({"agent": "bot", "tool": "pay", "session": "p1", "args": {"amount": 9}});
    let asked = replicas[0].0.connect().ask(pay.clone());
    assert_eq!(asked["decision"], "require_approval");
    let id = asked["approval"]["id"].as_str().expect("an approval").to_owned();
    let (_, listed) = admin(&["approvals"], &replicas[2].1);
    assert!(listed.to_string().contains(&id), "listed on another replica: {listed}");
    let (code, granted) = admin(&["approve", &id], &replicas[1].1);
    assert_eq!(code, Some(0), "{granted}");
    let mut with_id = pay.clone();
    with_id["approval"] = json!(id);
    let redeemed = replicas[2].0.connect().ask(with_id.clone());
    assert_eq!(
        (redeemed["decision"].as_str(), redeemed["reason_code"].as_str()),
        (Some("allow"), Some("approved"))
    );
    for (server, _) in &replicas {
        let again = server.connect().ask(with_id.clone());
        assert_eq!(again["reason_code"], "approval_used", "{again}");
    }
}

#[test]
fn replicas_deny_what_needs_redis_while_it_is_away_and_resume_when_it_is_back() {
    let mut redis = RedisServer::start(&[]);
    let replicas = replicas(&redis, 50);
    let capped = |session: &str| json!({"agent": "bot", "tool": "search", "session": session});
    assert_eq!(replicas[0].0.connect().ask(capped("a"))["decision"], "allow");
    redis.stop();
    for (server, _) in &replicas {
        let answer = server.connect().ask(capped("a"));
        assert_eq!(answer["decision"], "deny", "{answer}");
        let code = answer["reason_code"].as_str().unwrap_or("");
        assert!(["state_unavailable", "decision_timeout"].contains(&code), "{answer}");
        let free = server.connect().ask(json!({"agent": "bot", "tool": "unlisted"}));
        assert_eq!(
            free["reason_code"], "tool_not_allowed",
            "a call that needs no state still decides: {free}"
        );
        let health = server.connect().ask(json!({"op": "health"}));
        assert_ne!(health["health"]["state"]["condition"], "ok", "{health}");
    }
    redis.start_again();
    let started = Instant::now();
    for (server, _) in &replicas {
        loop {
            let answer = server.connect().ask(capped("b"));
            if answer["decision"] == "allow" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "did not resume: {answer}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Redis stopped and started again while clients keep calling through
/// three replicas: while it is away every call that needs it is denied;
/// no allow is lost (every allowed call is in Redis's count after the
/// restart, with `appendfsync always`), and a call is counted twice never
/// (the count exceeds the allows only by calls denied because Redis failed
/// while answering them, which it may have counted first).
#[test]
fn redis_lost_mid_load_loses_and_doubles_no_allowed_call() {
    let mut redis = RedisServer::start(&["--appendonly yes", "--appendfsync always"]);
    let replicas = replicas(&redis, 1_000_000);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let tallies: Vec<(String, usize, usize, usize)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..6)
            .map(|i| {
                let (server, _) = &replicas[i % 3];
                let stop = &stop;
                scope.spawn(move || {
                    let session = format!("load-{i}");
                    let request = json!({"agent": "bot", "tool": "search", "session": session});
                    let (mut allowed, mut unavailable, mut timed_out) = (0, 0, 0);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let answer = server.connect().ask(request.clone());
                        match (answer["decision"].as_str(), answer["reason_code"].as_str()) {
                            (Some("allow"), _) => allowed += 1,
                            (_, Some("state_unavailable")) => unavailable += 1,
                            (_, Some("decision_timeout")) => timed_out += 1,
                            (_, Some("cap_reached")) => break,
                            other => panic!("unexpected answer {other:?}: {answer}"),
                        }
                    }
                    (session, allowed, unavailable, timed_out)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        redis.stop();
        std::thread::sleep(Duration::from_millis(700));
        redis.start_again();
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        clients.into_iter().map(|c| c.join().expect("client")).collect()
    });
    let denied: usize = tallies.iter().map(|(_, _, unavailable, timed_out)| unavailable + timed_out).sum();
    assert!(denied > 0, "calls were made while Redis was away: {tallies:?}");
    for (session, allowed, unavailable, timed_out) in &tallies {
        let key = format!("tg:{{bot}}:s:{}:{session}", session.len());
        let output = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(redis.socket())
            .args(["HGET", &key, "t"])
            .output()
            .expect("redis-cli");
        let counted: usize = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
        assert!(counted >= *allowed, "{session}: {allowed} allowed but {counted} counted");
        let denied = unavailable + timed_out;
        assert!(
            counted <= allowed + denied,
            "{session}: {counted} counted for {allowed} allowed, {denied} denied"
        );
    }
}

/// Every replica killed and Redis restarted (with an append-only file
/// fsynced on every write): new replicas find the counts, the kills and a
/// granted approval where the old ones left them.
#[test]
fn counts_kills_and_approvals_survive_restarting_the_replicas_and_redis() {
    let mut redis = RedisServer::start(&["--appendonly yes", "--appendfsync always"]);
    let search = |session: &str| json!({"agent": "bot", "tool": "search", "session": session});
    let pay = json!({"agent": "bot", "tool": "pay", "session": "p", "args": {"amount": 3}});
    let id = {
        let before = replicas(&redis, 5);
        for (server, _) in &before {
            assert_eq!(server.connect().ask(search("r"))["decision"], "allow");
        }
        let (code, answer) =
            admin(&["kill", "--agent", "bot", "--session", "k", "--reason", "runaway"], &before[0].1);
        assert_eq!(code, Some(0), "{answer}");
        let asked = before[1].0.connect().ask(pay.clone());
        let id = asked["approval"]["id"].as_str().expect("an approval").to_owned();
        let (code, granted) = admin(&["approve", &id], &before[2].1);
        assert_eq!(code, Some(0), "{granted}");
        id
    };
    redis.start_again();
    let after = replicas(&redis, 5);
    let answers: Vec<Value> = (0..4).map(|i| after[i % 3].0.connect().ask(search("r"))).collect();
    let allowed = answers.iter().filter(|a| a["decision"] == "allow").count();
    assert_eq!(allowed, 2, "3 of 5 were used before the restart: {answers:?}");
    assert_eq!(after[1].0.connect().ask(search("k"))["reason_code"], "killed");
    let mut with_id = pay.clone();
    with_id["approval"] = json!(id);
    assert_eq!(after[2].0.connect().ask(with_id.clone())["reason_code"], "approved");
    assert_eq!(after[0].0.connect().ask(with_id)["reason_code"], "approval_used");
}
