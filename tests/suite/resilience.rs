//! Attacks on the server's resources, driven as a hostile client and a
//! failing disk would: client-chosen ids, a full disk, a frozen disk. The
//! server must stay within its bounds, answer every request, deny what it
//! cannot decide, and heal when the cause is gone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::server::{Client, Server, admin, verify_trail};
use crate::util::mount::Mount;
use crate::util::tempdir::TempDir;

const CAPPED: &str =
    "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        maxPerSession: 2\n";

fn call(session: &str) -> Value {
    json!({"agent": "bot", "tool": "t", "session": session, "args": {}})
}

/// A session id of 256 bytes (the longest allowed), distinct for each `n`.
fn long_session(n: usize) -> String {
    format!("{n:0>256}")
}

fn sessions_are_bounded(extra: &[&str]) {
    let mut args = vec!["--max-sessions", "100"];
    args.extend_from_slice(extra);
    let server = Server::start(CAPPED, &args);
    let mut client = server.connect();
    for _ in 0..2 {
        assert_eq!(client.ask(call("victim"))["decision"], "allow");
    }
    assert_eq!(client.ask(call("victim"))["reason_code"], "cap_reached");
    let mut limited = 0;
    for n in 0..500 {
        let answer = client.ask(call(&long_session(n)));
        match answer["reason_code"].as_str() {
            Some("allowed") => {}
            Some("session_limit") => {
                assert_eq!(answer["decision"], "deny");
                limited += 1;
            }
            other => panic!("unexpected answer {other:?}: {answer}"),
        }
    }
    // The victim holds one of the 100 places.
    assert_eq!(limited, 500 - 99, "every session beyond --max-sessions is denied");
    // Opening sessions reset nobody's cap.
    assert_eq!(client.ask(call("victim"))["reason_code"], "cap_reached");
    assert_eq!(client.ask(call(&long_session(0)))["decision"], "allow");
    assert_eq!(client.ask(call(&long_session(0)))["reason_code"], "cap_reached");
}

/// Client-chosen session ids were stored forever: 1,000 requests with
/// 1 MB ids grew the server by 0.95 GiB and filled a 256 MiB state disk.
#[test]
fn client_chosen_sessions_are_bounded_and_cannot_reset_another_sessions_cap() {
    sessions_are_bounded(&[]);
    let state = TempDir::new();
    sessions_are_bounded(&["--state", &state.path().join("state").to_string_lossy()]);
    let size = std::fs::metadata(state.path().join("state/state.redb")).expect("state file").len();
    assert!(size < 8 << 20, "the state file stays small: {size} bytes");
}

fn health(client: &mut Client) -> Value {
    client.ask(json!({"op": "health"}))
}

/// Waits until `check` holds for a fresh answer, at most `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// After the state disk was filled and freed, every call stayed denied
/// until a restart ("Previous I/O error occurred"), while `health` said ok.
#[test]
fn a_full_state_disk_denies_calls_then_heals_when_space_returns() {
    let dir = TempDir::new();
    let Some(disk) = Mount::tmpfs(&dir.path().join("disk"), 8) else { return };
    let state = disk.path().join("state");
    let server = Server::start(CAPPED, &["--state", &state.to_string_lossy()]);
    let mut client = server.connect();
    assert_eq!(client.ask(call("first"))["decision"], "allow");
    assert_eq!(health(&mut client)["health"], "ok");
    let filler = disk.fill();
    let mut failed = None;
    for n in 0..20_000 {
        let answer = client.ask(call(&long_session(n)));
        if answer["reason_code"] == "state_unavailable" {
            failed = Some(n);
            break;
        }
        assert_eq!(answer["decision"], "allow", "{answer}");
    }
    assert!(failed.is_some(), "a full disk makes commits fail");
    let report = health(&mut client);
    assert_eq!(report["health"], "degraded", "{report}");
    assert_eq!(report["state"]["condition"], "degraded", "{report}");
    assert!(report["state"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{report}");
    // Still full: still denied, never allowed uncounted.
    assert_eq!(client.ask(call("during"))["decision"], "deny");
    std::fs::remove_file(filler).expect("free the disk");
    let healed = eventually(Duration::from_secs(5), || client.ask(call("after"))["decision"] == "allow");
    assert!(healed, "the store reopens once there is space again");
    assert_eq!(health(&mut client)["health"], "ok");
    // What was counted before the failure is still counted.
    assert_eq!(client.ask(call("first"))["decision"], "allow");
    assert_eq!(client.ask(call("first"))["reason_code"], "cap_reached");
}

/// With the state or audit disk frozen, decisions hung with no answer and
/// `health` said ok.
#[test]
fn a_frozen_disk_gets_a_decision_timeout_and_the_trail_says_which_answers_were_withheld() {
    let dir = TempDir::new();
    let Some(disk) = Mount::ext4(&dir.path().join("disk"), 32) else { return };
    let admin_socket = dir.path().join("admin.sock");
    let server = Server::start(
        CAPPED,
        &[
            "--state",
            &disk.path().join("state").to_string_lossy(),
            "--audit",
            &disk.path().join("audit.jsonl").to_string_lossy(),
            "--admin-socket",
            &admin_socket.to_string_lossy(),
            "--decision-timeout",
            "300",
        ],
    );
    let mut client = server.connect();
    assert_eq!(client.ask(call("s1"))["decision"], "allow");
    let frozen = disk.freeze();
    let asked = Instant::now();
    let answer = client.ask(call("s2"));
    let took = asked.elapsed();
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["error"]["code"], "decision_timeout", "{answer}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    let report = health(&mut client);
    assert_eq!(report["health"], "degraded", "{report}");
    // The operator still gets an answer: the change cannot be recorded, so
    // it is refused (and the refusal's own record times out too).
    let asked = Instant::now();
    let (_, killed) = admin(&["kill", "--agent", "bot", "--reason", "frozen"], &admin_socket);
    assert!(asked.elapsed() < Duration::from_secs(5), "the kill switch answers");
    assert_eq!(killed["error"]["code"], "decision_timeout", "{killed}");
    // So does a reload, which is recorded first too: the policy stays.
    let asked = Instant::now();
    let reloaded = Client::connect(&admin_socket).ask(json!({"op": "reload"}));
    assert!(asked.elapsed() < Duration::from_secs(5), "the reload answers");
    assert_eq!(reloaded["reload"]["ok"], false, "{reloaded}");
    drop(frozen);
    let healed = eventually(Duration::from_secs(5), || client.ask(call("s3"))["decision"] == "allow");
    assert!(healed, "decisions are answered again once the disk thaws");
    assert!(eventually(Duration::from_secs(5), || health(&mut client)["health"] == "ok"));
    let (_, kills) = admin(&["kills"], &admin_socket);
    assert_eq!(kills["kills"], json!([]), "a refused kill is not in force: {kills}");
    let (ok, report) = verify_trail(disk.path());
    assert!(ok, "{report}");
    let trail = std::fs::read_to_string(disk.path().join("audit.jsonl")).expect("trail");
    let records: Vec<Value> = trail.lines().map(|l| serde_json::from_str(l).expect("record")).collect();
    let unanswered = records.iter().find(|r| r["kind"] == "unanswered").expect("an unanswered record");
    let ranges = unanswered["records"].as_array().expect("ranges");
    let withheld: Vec<&Value> = records
        .iter()
        .filter(|r| {
            let seq = r["seq"].as_u64().unwrap_or(0);
            ranges.iter().any(|range| range[0].as_u64() <= Some(seq) && Some(seq) <= range[1].as_u64())
        })
        .collect();
    assert!(withheld.iter().any(|r| r["session"] == "s2"), "the timed-out decision is named: {unanswered}");
    drop(server);
}

/// The state store's own deadline: without a trail, the answer is a
/// decision, denied with `reason_code` `decision_timeout`.
#[test]
fn a_frozen_state_disk_denies_with_decision_timeout() {
    let dir = TempDir::new();
    let Some(disk) = Mount::ext4(&dir.path().join("disk"), 32) else { return };
    let state = disk.path().join("state");
    let server = Server::start(CAPPED, &["--state", &state.to_string_lossy(), "--decision-timeout", "200"]);
    let mut client = server.connect();
    assert_eq!(client.ask(call("s1"))["decision"], "allow");
    let frozen = disk.freeze();
    for session in ["s1", "s2"] {
        let asked = Instant::now();
        let answer = client.ask(call(session));
        assert_eq!(answer["reason_code"], "decision_timeout", "{answer}");
        assert_eq!(answer["rule"], "toolgate.decisionTimeout", "{answer}");
        assert!(asked.elapsed() < Duration::from_secs(2), "answered in {:?}", asked.elapsed());
    }
    assert!(eventually(Duration::from_secs(3), || health(&mut client)["state"]["condition"] == "degraded"));
    drop(frozen);
    assert!(eventually(Duration::from_secs(5), || client.ask(call("s3"))["decision"] == "allow"));
    // Timed-out calls may still have been counted (over-counting, never under).
    assert_eq!(client.ask(call("s1"))["decision"], "deny");
    drop(server);
}

/// `numbers.range(1, 1e8)` ran 2.9 s and 2.35 GB against the 50 ms limit,
/// and a server under a memory limit aborted on reloading such a policy.
/// Now the module is refused before it is parsed; the last good policy
/// keeps serving.
#[test]
fn a_rego_module_that_would_allocate_without_bound_is_refused_and_the_last_good_policy_serves() {
    const POLICY: &str = "agentPolicies:\n  bot:\n    allowedTools: [t]\n    constraints:\n      t:\n        rego: data.limits.ok\n";
    const GOOD: &str = "package limits\n\nimport rego.v1\n\nok if input.args.n <= 10\n";
    let dir = TempDir::new();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    std::fs::write(dir.path().join("limits.rego"), GOOD).expect("module");
    let admin_socket = dir.path().join("admin.sock");
    let socket = dir.path().join("toolgate.sock");
    let server =
        Server::start_in(dir, socket, &["--no-watch", "--admin-socket", &admin_socket.to_string_lossy()]);
    let mut client = server.connect();
    let ask =
        |client: &mut Client, n: u64| client.ask(json!({"agent": "bot", "tool": "t", "args": {"n": n}}));
    assert_eq!(ask(&mut client, 5)["decision"], "allow");
    for hostile in [
        "ok if count(numbers.range(1, 100000000)) > input.args.n\n",
        "ok if units.parse(input.args.size) > 0\n",
        "ok if input.args.n < 1e2000000000\n",
        "ok if sprintf(\"%0999999999d\", [input.args.n]) != \"\"\n",
    ] {
        let module = format!("package limits\n\nimport rego.v1\n\n{hostile}");
        std::fs::write(server.dir.path().join("limits.rego"), module).expect("module");
        let started = Instant::now();
        let reply = Client::connect(&admin_socket).ask(json!({"op": "reload"}));
        assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
        assert_eq!(reply["reload"]["ok"], false, "{reply}");
        assert!(reply["reload"]["errors"].to_string().contains("TG062"), "{reply}");
        assert_eq!(ask(&mut client, 5)["decision"], "allow", "the last good policy serves");
        assert_eq!(ask(&mut client, 50)["decision"], "deny");
    }
    let check =
        crate::util::toolgate(server.dir.path()).args(["check", "policy.yaml"]).output().expect("runs");
    assert_eq!(check.status.code(), Some(1));
}

/// One agent opened the server's 100,000 approvals in 0.6 s, and every
/// other agent's gated calls were denied for 75 minutes.
#[test]
fn one_agent_cannot_take_every_approval_and_pending_ones_expire_at_their_ttl() {
    const GATED: &str = "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n  other:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n";
    let state = TempDir::new();
    // Long enough that none expires while the 3,000 calls are answered (a
    // debug build under a loaded CI machine took over 2 s), or the count
    // would include room that expiry made.
    const TTL: Duration = Duration::from_secs(6);
    let ttl = TTL.as_secs().to_string();
    let server = Server::start(
        GATED,
        &["--state", &state.path().join("state").to_string_lossy(), "--approval-ttl", &ttl],
    );
    let mut client = server.connect();
    let gated = |agent: &str, session: &str, n: usize| {
        json!({"agent": agent, "tool": "pay", "session": session, "args": {"n": n}}).to_string()
    };
    // 3,000 gated calls from one agent, pipelined, over 300 sessions.
    let started = Instant::now();
    for n in 0..3_000 {
        client.send(&gated("bot", &format!("s{}", n % 300), n));
    }
    let (mut opened, mut first_opened) = (0, None);
    for _ in 0..3_000 {
        let answer = client.receive();
        match answer["reason_code"].as_str() {
            Some("approval_required") => {
                opened += 1;
                first_opened.get_or_insert_with(Instant::now);
            }
            Some("approval_unavailable") => {
                assert!(answer["reason"].as_str().is_some_and(|r| r.contains("agent")), "{answer}");
            }
            other => panic!("unexpected {other:?}: {answer}"),
        }
    }
    assert!(started.elapsed() < TTL, "answered in {:?}: approvals expired meanwhile", started.elapsed());
    assert_eq!(opened, 1_000, "an agent has at most --max-pending-per-agent approvals waiting");
    // Another agent is not held up; one session of it is bounded on its own.
    let mut other = 0;
    for n in 0..40 {
        let answer = client.ask(serde_json::from_str(&gated("other", "one", n)).expect("json"));
        other += usize::from(answer["decision"] == "require_approval");
    }
    assert_eq!(other, 32, "a session has at most --max-pending-per-session approvals waiting");
    // Pending approvals stop counting when they expire, not an hour later.
    // The first approval was open before its answer came: it has expired
    // a TTL after that.
    let first_expired = first_opened.expect("approvals were opened") + TTL + Duration::from_millis(100);
    std::thread::sleep(first_expired.saturating_duration_since(Instant::now()));
    let answer = client.ask(serde_json::from_str(&gated("bot", "s0", 99_999)).expect("json"));
    assert_eq!(answer["decision"], "require_approval", "{answer}");
    let log = std::fs::metadata(state.path().join("state/approvals.log")).expect("log").len();
    assert!(log > 0, "the approvals are saved");
}

/// The approvals' log on a full disk: a gated call whose approval cannot
/// be saved is denied (no approval id is handed out that a restart would
/// forget), and the log heals once there is space.
#[test]
fn approvals_on_a_full_disk_are_refused_then_heal() {
    const GATED: &str = "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n";
    let dir = TempDir::new();
    let Some(disk) = Mount::tmpfs(&dir.path().join("disk"), 8) else { return };
    let state = disk.path().join("state");
    let server = Server::start(GATED, &["--state", &state.to_string_lossy()]);
    let mut client = server.connect();
    let gated = |n: usize| json!({"agent": "bot", "tool": "pay", "args": {"n": n, "pad": "x".repeat(2000)}});
    assert_eq!(client.ask(gated(0))["decision"], "require_approval");
    let filler = disk.fill();
    let mut refused = None;
    for n in 1..5_000 {
        let answer = client.ask(gated(n));
        if answer["decision"] == "deny" {
            assert_eq!(answer["reason_code"], "approval_unavailable", "{answer}");
            assert!(answer.get("approval").is_none(), "no approval id is handed out: {answer}");
            refused = Some(n);
            break;
        }
        assert_eq!(answer["decision"], "require_approval", "{answer}");
    }
    assert!(refused.is_some(), "a full disk refuses to save an approval");
    std::fs::remove_file(filler).expect("free the disk");
    assert!(eventually(Duration::from_secs(5), || client.ask(gated(9_999))["decision"] == "require_approval"));
    drop(server);
    // Every approval handed out is still there after a restart.
    let text = std::fs::read_to_string(state.join("approvals.log")).expect("log");
    assert!(text.lines().all(|line| serde_json::from_str::<Value>(line).is_ok()), "no torn or partial line");
}
