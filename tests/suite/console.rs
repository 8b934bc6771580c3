//! The approvals console and the metrics endpoint over real HTTP, against
//! the real binary: sign-in, approvals bound to the signed-in account,
//! kills, the live tail, and every kind of bad request an attacker would
//! send (no cookie, a forged one, no CSRF token, another origin, an
//! oversized body, a wrong method, password guessing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::Server;
use crate::util::free_port;
use crate::util::tempdir::TempDir;

const POLICY: &str = r#"
approvers:
  finance:
    groups: [finance]
  release:
    users: [carol]
agentPolicies:
  bot:
    allowedTools: [pay, deploy, search]
    sensitiveArgs: [card]
    constraints:
      pay:
        requiresFields: [amount, to, card]
    approvalGates:
      pay:
        required: true
        approver: finance
        description: Payments need finance's approval
      deploy:
        required: true
        approver: release
"#;

/// A server with the console and the metrics endpoint, and its accounts:
/// alice (group finance), bob (no group), olivia (operator).
pub(crate) struct Console {
    pub(crate) server: Server,
    pub(crate) port: u16,
    pub(crate) metrics: u16,
}

pub(crate) fn hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hash-password runs");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("write");
    let output = child.wait_with_output().expect("hash-password ends");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

pub(crate) fn accounts_text() -> String {
    format!(
        "accounts:\n  alice:\n    password: \"{}\"\n    groups: [finance]\n  bob:\n    password: \"{}\"\n  olivia:\n    password: \"{}\"\n    operator: true\n  frank:\n    password: \"{}\"\n    groups: [finance]\n",
        hash("alice-pw"),
        hash("bob-pw"),
        hash("olivia-pw"),
        hash("frank-pw"),
    )
}

impl Console {
    pub(crate) fn start(policy: &str, extra: &[&str]) -> Console {
        Console::start_with(policy, extra, &accounts_text())
    }

    /// A console whose accounts file says `accounts` (replicas share one).
    pub(crate) fn start_with(policy: &str, extra: &[&str], accounts: &str) -> Console {
        let dir = TempDir::new();
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
        let accounts_text = accounts;
        let accounts = dir.path().join("accounts.yaml");
        std::fs::write(&accounts, accounts_text).expect("accounts");
        std::fs::set_permissions(&accounts, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("mode");
        let (port, metrics) = (free_port(), free_port());
        let socket = dir.path().join("toolgate.sock");
        let (console, metrics_at) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{metrics}"));
        let audit = dir.path().join("audit.log").display().to_string();
        let accounts = accounts.display().to_string();
        let mut args = vec![
            "--console",
            &console,
            "--console-accounts",
            &accounts,
            "--metrics",
            &metrics_at,
            "--audit",
            &audit,
        ];
        args.extend_from_slice(extra);
        let server = Server::start_in(dir, socket, &args);
        Console { server, port, metrics }
    }

    pub(crate) fn ask(&self, request: Value) -> Value {
        self.server.connect().ask(request)
    }

    pub(crate) fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.server.dir.path().join("audit.log")).expect("trail");
        text.lines().map(|l| serde_json::from_str(l).expect("record")).collect()
    }

    /// Signs in; the session token.
    pub(crate) fn sign_in(&self, name: &str, password: &str) -> String {
        let answer = http(self.port, "POST", "/login", &[], &form(&[("name", name), ("password", password)]));
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = answer.header("set-cookie").expect("a session cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        cookie.split(';').next().and_then(|c| c.strip_prefix("toolgate_session=")).expect("token").to_owned()
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> Answer {
        http(self.port, "GET", path, &[("Cookie", &format!("toolgate_session={token}"))], "")
    }

    pub(crate) fn post(&self, path: &str, token: &str, fields: &[(&str, &str)]) -> Answer {
        http(self.port, "POST", path, &[("Cookie", &format!("toolgate_session={token}"))], &form(fields))
    }

    /// The CSRF token of the session, from a page's forms.
    pub(crate) fn csrf(&self, token: &str) -> String {
        let page = self.get("/approvals", token);
        let at = page.body.find("name=\"csrf\" value=\"").expect("a form") + 19;
        page.body[at..at + 64].to_owned()
    }
}

pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
                b' ' => String::from("+"),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a new connection; the whole answer.
pub(crate) fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

fn pay(amount: u64, session: &str) -> Value {
    json!({"agent": "bot", "tool": "pay", "session": session, "args": {"amount": amount, "to": "ACME Corp", "card": "4111111111111111"}})
}

#[test]
fn an_approver_signs_in_sees_the_amount_and_approves_the_call_exactly_once() {
    let console = Console::start(POLICY, &[]);
    let asked = console.ask(pay(1250, "s1"));
    assert_eq!(asked["decision"], "require_approval");
    let id = asked["approval"]["id"].as_str().expect("an approval").to_owned();

    let alice = console.sign_in("alice", "alice-pw");
    let listing = console.get("/approvals", &alice);
    assert_eq!(listing.status, 200);
    assert!(listing.body.contains("1250") && listing.body.contains("ACME Corp"), "{}", listing.body);
    assert!(listing.body.contains("Payments need finance&#39;s approval"), "{}", listing.body);
    assert!(!listing.body.contains("4111111111111111"), "sensitive arguments are redacted");
    let detail = console.get(&format!("/approvals/{id}"), &alice);
    assert!(detail.body.contains("finance (groups finance)"), "who may decide: {}", detail.body);

    let csrf = console.csrf(&alice);
    let approved = console.post(
        &format!("/approvals/{id}/approve"),
        &alice,
        &[("csrf", &csrf), ("comment", "invoice 4411 checked")],
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    let again = console.post(&format!("/approvals/{id}/approve"), &alice, &[("csrf", &csrf)]);
    assert_eq!(again.status, 400, "decided once: {}", again.body);

    let retried = console.ask(pay(1250, "s1"));
    assert_eq!(
        (retried["decision"].as_str(), retried["reason_code"].as_str()),
        (Some("allow"), Some("approved"))
    );
    let third = console.ask(pay(1250, "s1"));
    assert_eq!(third["decision"], "require_approval", "used once: {third}");
    assert_ne!(third["approval"]["id"], id.as_str());

    let records = console.audit();
    let decided = records.iter().find(|r| r["kind"] == "approval").expect("the decision is recorded");
    assert_eq!(decided["by"], "alice (console)");
    assert_eq!(decided["comment"], "invoice 4411 checked");
    assert_eq!(decided["granted"], true);
    let signin = records.iter().find(|r| r["kind"] == "console_signin").expect("the sign-in is recorded");
    assert_eq!(signin["from"], "127.0.0.1");
}

#[test]
fn a_rejected_approval_denies_the_call() {
    let console = Console::start(POLICY, &[]);
    let id = console.ask(pay(9999, "s2"))["approval"]["id"].as_str().expect("approval").to_owned();
    let alice = console.sign_in("alice", "alice-pw");
    let csrf = console.csrf(&alice);
    let rejected =
        console.post(&format!("/approvals/{id}/reject"), &alice, &[("csrf", &csrf), ("comment", "no")]);
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    let retried = console.ask(json!({"agent": "bot", "tool": "pay", "session": "s2", "approval": id, "args": {"amount": 9999, "to": "ACME Corp", "card": "4111111111111111"}}));
    assert_eq!(retried["decision"], "deny", "{retried}");
}

#[test]
fn an_account_the_gate_does_not_name_can_neither_see_nor_decide_it() {
    let console = Console::start(POLICY, &[]);
    let id = console.ask(pay(10, "s3"))["approval"]["id"].as_str().expect("approval").to_owned();
    for (name, password) in [("bob", "bob-pw"), ("olivia", "olivia-pw")] {
        let token = console.sign_in(name, password);
        let csrf = console.csrf(&token);
        let decided = console.post(&format!("/approvals/{id}/approve"), &token, &[("csrf", &csrf)]);
        assert_eq!(decided.status, 403, "{name}: {}", decided.body);
        assert!(decided.body.contains("is not approver `finance`"), "{}", decided.body);
    }
    let bob = console.sign_in("bob", "bob-pw");
    assert!(!console.get("/approvals", &bob).body.contains(&id), "bob is shown nothing");
    assert_eq!(console.get(&format!("/approvals/{id}"), &bob).status, 404);
    assert!(
        console.get("/approvals", &console.sign_in("olivia", "olivia-pw")).body.contains(&id),
        "operators see all"
    );
    let refused = console.audit().into_iter().filter(|r| r["kind"] == "approval_refused").count();
    assert_eq!(refused, 2, "each refusal is recorded");
    assert_eq!(console.ask(pay(10, "s3"))["approval"]["state"], "pending");
}

#[test]
fn requests_without_a_session_a_csrf_token_or_from_another_origin_change_nothing() {
    let console = Console::start(POLICY, &[]);
    let id = console.ask(pay(77, "s4"))["approval"]["id"].as_str().expect("approval").to_owned();
    let approve = format!("/approvals/{id}/approve");
    let alice = console.sign_in("alice", "alice-pw");
    let csrf = console.csrf(&alice);

    // Pages without a session go to the sign-in page; a forged session too.
    for token in ["", "0000000000000000000000000000000000000000000000000000000000000000", &csrf] {
        let page = console.get("/approvals", token);
        assert_eq!((page.status, page.header("location")), (303, Some("/login")), "token {token:?}");
    }
    let no_cookie = http(console.port, "POST", &approve, &[], &form(&[("csrf", &csrf)]));
    assert_eq!(no_cookie.status, 403);
    let forged = console.post(&approve, &"ab".repeat(32), &[("csrf", &csrf)]);
    assert_eq!(forged.status, 403);
    let no_token = console.post(&approve, &alice, &[("comment", "x")]);
    assert!((400..500).contains(&no_token.status), "{}", no_token.status);
    let wrong_token = console.post(&approve, &alice, &[("csrf", &"0".repeat(64))]);
    assert_eq!(wrong_token.status, 403);
    let cookie = format!("toolgate_session={alice}");
    let body = form(&[("csrf", &csrf)]);
    for (header, value) in
        [("Origin", "http://evil.example"), ("Origin", "null"), ("Sec-Fetch-Site", "cross-site")]
    {
        let cross = http(console.port, "POST", &approve, &[("Cookie", &cookie), (header, value)], &body);
        assert_eq!(cross.status, 403, "{header}: {value}");
    }
    let long = "x".repeat(2_001);
    let too_long = console.post(&approve, &alice, &[("csrf", &csrf), ("comment", &long)]);
    assert_eq!(too_long.status, 400, "{}", too_long.body);
    let oversized = console.post(&approve, &alice, &[("csrf", &csrf), ("comment", &"y".repeat(20_000))]);
    assert_eq!(oversized.status, 413);
    for (method, path) in [("GET", "/kill"), ("GET", "/logout"), ("PUT", "/login"), ("DELETE", "/approvals")]
    {
        assert_eq!(
            http(console.port, method, path, &[("Cookie", &cookie)], "").status,
            405,
            "{method} {path}"
        );
    }
    assert_eq!(console.get("/nowhere", &alice).status, 404);
    let garbage = http(console.port, "POST", "/login", &[], "name=%ZZ&&&password");
    assert!((400..500).contains(&garbage.status), "{}", garbage.status);

    // After all that, the approval still waits; the honest request decides it.
    assert_eq!(console.ask(pay(77, "s4"))["approval"]["state"], "pending");
    assert_eq!(console.post(&approve, &alice, &[("csrf", &csrf)]).status, 200);

    // Signing out ends the session for good.
    assert_eq!(console.post("/logout", &alice, &[("csrf", &csrf)]).status, 303);
    assert_eq!(console.get("/approvals", &alice).status, 303);
    let page = console.get("/approvals", &console.sign_in("alice", "alice-pw"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'")));
}

#[test]
fn failed_sign_ins_are_refused_throttled_and_recorded() {
    let console = Console::start(POLICY, &[]);
    let attempt = |name: &str, password: &str| {
        http(console.port, "POST", "/login", &[], &form(&[("name", name), ("password", password)]))
    };
    for _ in 0..5 {
        let wrong = attempt("alice", "guess");
        assert_eq!(wrong.status, 401);
        assert!(wrong.header("set-cookie").is_none());
    }
    let right = attempt("alice", "alice-pw");
    assert_eq!(right.status, 429, "even the right password waits");
    assert!(right.header("retry-after").is_some());
    assert_eq!(attempt("alice", "alice-pw").status, 429);
    assert_eq!(attempt("mallory", "x").status, 401, "another name from the same address is still checked");
    let forged = attempt(&format!("{}\n2026-01-01 INFO forged line", "z".repeat(100)), "x");
    assert_eq!(forged.status, 401, "a name no account can have");
    let records = console.audit();
    let refused: Vec<&Value> = records.iter().filter(|r| r["kind"] == "console_signin_refused").collect();
    assert_eq!(refused.len(), 7, "5 wrong, the first throttled refusal, mallory: {refused:?}");
    assert!(
        !records.iter().any(|r| r.to_string().contains("forged line")),
        "nothing recorded of the impossible name"
    );
    let metrics = scrape(console.metrics);
    assert_eq!(metrics.value("toolgate_console_signins_refused_total", &[]), Some(9.0));
    std::thread::sleep(Duration::from_millis(1100));
    console.sign_in("alice", "alice-pw");

    // Twenty failures from one address slow its sign-ins down, without
    // refusing them: people behind one proxy still get in.
    for i in 0..20 {
        assert_eq!(attempt(&format!("user{i}"), "x").status, 401);
    }
    let started = std::time::Instant::now();
    assert_eq!(attempt("olivia", "olivia-pw").status, 303);
    assert!(started.elapsed() >= Duration::from_millis(900), "slowed: {:?}", started.elapsed());
}

/// Guesses sent all at once: each counts as a failure as soon as it is
/// made, so only the free five are checked, not every one that arrived
/// before the first was found wrong.
#[test]
fn a_burst_of_guesses_gets_only_the_free_failures_checked() {
    let console = Console::start(POLICY, &[]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let guesses: Vec<_> = (0..16)
            .map(|i| {
                let port = console.port;
                scope.spawn(move || {
                    let fields = form(&[("name", "bob"), ("password", &format!("guess-{i}"))]);
                    http(port, "POST", "/login", &[], &fields).status
                })
            })
            .collect();
        guesses.into_iter().map(|guess| guess.join().expect("a guess")).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
}

/// Consoles of replicas on one Redis count failed sign-ins together: a
/// balancer spreading one name's guesses over two replicas does not give it
/// twice the free failures. Redis away, sign-ins are refused, not let
/// through unthrottled.
#[test]
fn failed_sign_ins_count_across_replicas_on_one_redis() {
    let mut redis = crate::util::redis_server::RedisServer::start(&[]);
    let url = redis.url();
    let (a, b) = (Console::start(POLICY, &["--state", &url]), Console::start(POLICY, &["--state", &url]));
    let attempt = |console: &Console, password: &str| {
        http(console.port, "POST", "/login", &[], &form(&[("name", "alice"), ("password", password)])).status
    };
    for console in [&a, &b, &a, &b, &a] {
        assert_eq!(attempt(console, "guess"), 401);
    }
    assert_eq!(attempt(&a, "alice-pw"), 429, "five failures in a row, over two replicas");
    assert_eq!(attempt(&b, "alice-pw"), 429);
    // Redis keeps a digest of the name, not the name.
    let keys =
        std::process::Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["KEYS", "*"]).output();
    let keys = String::from_utf8_lossy(&keys.expect("redis-cli").stdout).into_owned();
    assert!(keys.contains("{tg:console}:throttle:sha256:") && !keys.contains("alice"), "{keys}");
    std::thread::sleep(Duration::from_millis(1100));
    b.sign_in("alice", "alice-pw");
    assert_eq!(attempt(&a, "guess"), 401, "signing in on one replica forgave the failures on all");
    assert_eq!(attempt(&a, "alice-pw"), 303);

    redis.stop();
    // A wrong password would be 401 had the throttle been skipped.
    assert_eq!(attempt(&a, "guess"), 503, "no sign-in goes unthrottled");
    redis.start_again();
    let started = std::time::Instant::now();
    while attempt(&a, "alice-pw") != 303 {
        assert!(started.elapsed() < Duration::from_secs(10), "sign-ins resume when Redis is back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Consoles of replicas on one Redis share their sessions: signed in on
/// one, a browser is signed in on every one (behind a balancer without
/// sticky sessions), and signing out on any ends it on all. Redis keeps
/// digests of the tokens, each with an expiry. Redis away, pages are
/// refused (503), not served to whoever holds a cookie; back, they are
/// served again.
#[test]
fn a_session_signed_in_on_one_replica_is_good_on_every_replica() {
    // Sessions outlive a crash of a Redis that persists every write.
    let mut redis =
        crate::util::redis_server::RedisServer::start(&["--appendonly yes", "--appendfsync always"]);
    let url = redis.url();
    // The replicas are given the same accounts file, as they must be.
    let accounts = accounts_text();
    let replica = || Console::start_with(POLICY, &["--state", &url], &accounts);
    let (a, b) = (replica(), replica());
    let token = a.sign_in("alice", "alice-pw");
    assert_eq!(b.get("/approvals", &token).status, 200, "signed in on the other replica too");
    let csrf = a.csrf(&token);
    assert_eq!(b.csrf(&token), csrf, "one session, one CSRF token");
    let cli = |args: &[&str]| {
        let output =
            std::process::Command::new("redis-cli").arg("-s").arg(redis.socket()).args(args).output();
        String::from_utf8_lossy(&output.expect("redis-cli").stdout).into_owned()
    };
    let keys = cli(&["KEYS", "{tg:console}:sessions:s:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(!keys.contains(&token) && !cli(&["KEYS", "*"]).contains(&token), "only a digest of the token");
    let ttl: i64 = cli(&["PTTL", keys.trim()]).trim().parse().expect("a number");
    assert!(ttl > 29 * 60 * 1000 && ttl <= 30 * 60 * 1000, "an idle session expires in 30 minutes: {ttl}");

    // Signed out through the other replica, the session is gone from both.
    assert_eq!(b.post("/logout", &token, &[("csrf", &csrf)]).status, 303);
    assert_eq!(a.get("/approvals", &token).status, 303, "signed out everywhere");
    assert_eq!(b.get("/approvals", &token).status, 303);

    // An account signing in again and again ends its own oldest sessions,
    // on whichever replica, never another account's.
    let olivia = a.sign_in("olivia", "olivia-pw");
    let (oldest, next) = (b.sign_in("alice", "alice-pw"), a.sign_in("alice", "alice-pw"));
    for _ in 0..14 {
        a.sign_in("alice", "alice-pw");
    }
    assert_eq!(b.get("/approvals", &oldest).status, 200, "16 sessions of alice live");
    a.sign_in("alice", "alice-pw");
    assert_eq!(a.get("/approvals", &oldest).status, 303, "the 17th ended the oldest");
    assert_eq!(b.get("/approvals", &next).status, 200, "the next oldest lives");
    assert_eq!(b.get("/approvals", &olivia).status, 200, "another account's session lives");

    let token = b.sign_in("olivia", "olivia-pw");
    redis.stop();
    assert_eq!(a.get("/operations", &token).status, 503, "no page without a session that can be checked");
    redis.start_again();
    let started = std::time::Instant::now();
    while a.get("/operations", &token).status != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "pages resume when Redis is back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_operator_kills_a_session_and_revives_it_and_an_approver_cannot() {
    let console = Console::start(POLICY, &[]);
    let search = json!({"agent": "bot", "tool": "search", "session": "s5"});
    assert_eq!(console.ask(search.clone())["decision"], "allow");
    let alice = console.sign_in("alice", "alice-pw");
    let alice_csrf = console.csrf(&alice);
    assert_eq!(console.get("/operations", &alice).status, 403);
    let kill = [
        ("csrf", alice_csrf.as_str()),
        ("scope", "session"),
        ("agent", "bot"),
        ("session", "s5"),
        ("reason", "x"),
    ];
    assert_eq!(console.post("/kill", &alice, &kill).status, 403);
    assert_eq!(console.ask(search.clone())["decision"], "allow");

    let olivia = console.sign_in("olivia", "olivia-pw");
    let csrf = console.csrf(&olivia);
    let page = console.get("/operations", &olivia);
    assert!(page.body.contains("Nothing is killed") && page.body.contains("sha256:"), "{}", page.body);
    let killed = console.post(
        "/kill",
        &olivia,
        &[
            ("csrf", &csrf),
            ("scope", "session"),
            ("agent", "bot"),
            ("session", "s5"),
            ("reason", "runaway loop"),
        ],
    );
    assert_eq!(killed.status, 200, "{}", killed.body);
    assert!(!killed.body.contains("Warning"), "{}", killed.body);
    let denied = console.ask(search.clone());
    assert_eq!((denied["decision"].as_str(), denied["reason_code"].as_str()), (Some("deny"), Some("killed")));
    assert_eq!(
        console.ask(json!({"agent": "bot", "tool": "search", "session": "other"}))["decision"],
        "allow"
    );
    let page = console.get("/operations", &olivia);
    assert!(page.body.contains("runaway loop") && page.body.contains("olivia (console)"), "{}", page.body);
    let no_reason = console.post(
        "/kill",
        &olivia,
        &[("csrf", &csrf), ("scope", "agent"), ("agent", "bot"), ("reason", " ")],
    );
    assert_eq!(no_reason.status, 400);
    // A kill of an agent the policy does not name stands, with a warning.
    let typo = console.post(
        "/kill",
        &olivia,
        &[("csrf", &csrf), ("scope", "agent"), ("agent", "b0t"), ("reason", "typo")],
    );
    assert_eq!(typo.status, 200, "{}", typo.body);
    assert!(
        typo.body.contains("Warning: the policy in force on this server names no agent `b0t`"),
        "{}",
        typo.body
    );
    let revived = console.post(
        "/revive",
        &olivia,
        &[("csrf", &csrf), ("scope", "agent"), ("agent", "b0t"), ("session", "")],
    );
    assert_eq!(revived.status, 200, "{}", revived.body);
    let bad_scope = console.post("/kill", &olivia, &[("csrf", &csrf), ("scope", "galaxy"), ("reason", "x")]);
    assert_eq!(bad_scope.status, 400);

    let revived = console.post(
        "/revive",
        &olivia,
        &[("csrf", &csrf), ("scope", "session"), ("agent", "bot"), ("session", "s5")],
    );
    assert_eq!(revived.status, 200, "{}", revived.body);
    assert_eq!(console.ask(search)["decision"], "allow");
    let kinds: Vec<String> =
        console.audit().iter().map(|r| r["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert!(kinds.contains(&String::from("kill")) && kinds.contains(&String::from("revive")), "{kinds:?}");
}

#[test]
fn the_live_tail_streams_decisions_to_operators_only() {
    let console = Console::start(POLICY, &[]);
    let alice = console.sign_in("alice", "alice-pw");
    assert_eq!(console.get("/events", &alice).status, 403);
    let olivia = console.sign_in("olivia", "olivia-pw");
    let mut stream = TcpStream::connect(("127.0.0.1", console.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let request = format!(
        "GET /events?tool=search&outcome=deny HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: toolgate_session={olivia}\r\n\r\n",
        console.port
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Subscribed once the headers are out; then decisions, only the matching ones.
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
    }
    assert_eq!(console.ask(json!({"agent": "bot", "tool": "search", "session": "t"}))["decision"], "allow");
    assert_eq!(console.ask(json!({"agent": "nobody", "tool": "search", "session": "t"}))["decision"], "deny");
    let event = loop {
        line.clear();
        reader.read_line(&mut line).expect("an event");
        if let Some(at) = line.find("data: {") {
            break serde_json::from_str::<Value>(line[at + 6..].trim()).expect("JSON");
        }
    };
    assert_eq!(
        (event["agent"].as_str(), event["outcome"].as_str()),
        (Some("nobody"), Some("deny")),
        "{event}"
    );
    assert_eq!(event["reason_code"], "unknown_agent");
}

/// Prometheus text, parsed strictly: every sample belongs to a family with
/// `# HELP` and `# TYPE`, names and labels are well formed, values are numbers.
pub(crate) struct Scrape {
    samples: Vec<Sample>,
}

/// A sample: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

impl Scrape {
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    }
}

pub(crate) fn scrape(port: u16) -> Scrape {
    let answer = http(port, "GET", "/metrics", &[], "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    parse_prometheus(&answer.body)
}

fn parse_prometheus(text: &str) -> Scrape {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(name_ok(name), "{line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            typed.insert(name.to_owned(), kind.to_owned());
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("closed labels");
                    let labels = labels
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("label=value");
                            assert!(name_ok(k), "{line}");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("quoted");
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            assert!(name_ok(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family) && helped.contains(family), "no HELP/TYPE for {name}");
            samples.push((name.to_owned(), labels, value));
        }
    }
    Scrape { samples }
}

#[test]
fn the_metrics_endpoint_speaks_prometheus_text_and_moves_with_decisions() {
    let console = Console::start(POLICY, &[]);
    let before = scrape(console.metrics);
    let allowed = |s: &Scrape| {
        s.value("toolgate_decisions_total", &[("agent", "bot"), ("outcome", "allow")]).unwrap_or(0.0)
    };
    for session in ["a", "b", "c"] {
        assert_eq!(
            console.ask(json!({"agent": "bot", "tool": "search", "session": session}))["decision"],
            "allow"
        );
    }
    for i in 0..4 {
        console.ask(json!({"agent": format!("stranger-{i}"), "tool": "search"}));
    }
    console.ask(pay(5, "m"));
    let after = scrape(console.metrics);
    assert_eq!(allowed(&after) - allowed(&before), 3.0);
    assert_eq!(
        after.value("toolgate_decisions_total", &[("agent", "(unknown)"), ("outcome", "deny")]),
        Some(4.0)
    );
    assert!(
        after.value("toolgate_decisions_total", &[("agent", "stranger-0")]).is_none(),
        "no series per unknown name"
    );
    assert_eq!(after.value("toolgate_decision_duration_seconds_count", &[]), Some(8.0));
    assert_eq!(after.value("toolgate_decision_duration_seconds_bucket", &[("le", "+Inf")]), Some(8.0));
    assert_eq!(after.value("toolgate_approvals_opened_total", &[]), Some(1.0));
    assert_eq!(after.value("toolgate_approvals_pending", &[]), Some(1.0));
    assert_eq!(after.value("toolgate_audit_trail_up", &[]), Some(1.0));
    assert_eq!(after.value("toolgate_state_store_up", &[]), Some(1.0));
    assert!(after.value("toolgate_audit_records_total", &[]).is_some_and(|n| n >= 8.0));
    assert_eq!(
        http(console.metrics, "GET", "/approvals", &[], "").status,
        404,
        "the metrics listener serves metrics only"
    );
}

#[test]
fn a_console_with_unusable_accounts_or_a_public_address_does_not_start() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let accounts = dir.path().join("accounts.yaml");
    let start = |console: &str| {
        Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args(["serve", "--policy"])
            .arg(dir.path().join("policy.yaml"))
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .args(["--console", console, "--console-accounts"])
            .arg(&accounts)
            .output()
            .expect("runs")
    };
    let port = format!("127.0.0.1:{}", free_port());
    std::fs::write(&accounts, accounts_text()).expect("accounts");
    std::fs::set_permissions(&accounts, std::os::unix::fs::PermissionsExt::from_mode(0o666)).expect("mode");
    let output = start(&port);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("writable by others"), "{output:?}");
    std::fs::write(&accounts, "accounts:\n  eve:\n    password: hunter2\n").expect("accounts");
    std::fs::set_permissions(&accounts, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
    let output = start(&port);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a password hash"), "{output:?}");
    std::fs::write(&accounts, accounts_text()).expect("accounts");
    let output = start(&format!("0.0.0.0:{}", free_port()));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback only"), "{output:?}");
}

#[test]
fn json_logs_carry_each_decisions_rule_reason_session_and_id() {
    let mut console = Console::start(POLICY, &["--log-format", "json", "--log-decisions"]);
    console.ask(json!({"agent": "bot", "tool": "search", "session": "logged"}));
    console.server.signal("TERM");
    console.server.wait(Duration::from_secs(10)).expect("stops");
    let mut stderr = String::new();
    console.server.child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
    let lines: Vec<Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("JSON: {l}"))).collect();
    let decision = lines.iter().find(|l| l["message"] == "decision").expect("a decision line");
    assert_eq!(decision["session"], "logged");
    assert_eq!(decision["reason_code"], "allowed");
    assert_eq!(decision["rule"], "bot.allowedTools.search");
    assert!(decision["decision_id"].as_str().is_some_and(|id| !id.is_empty()), "{decision}");
}

/// The console in a real browser: Debian's Chromium driven by
/// playwright-core (`tests/browser/console.mjs`, which says what it does),
/// against this server; then the trail must hold what the browser did.
/// With `TOOLGATE_BOOK_SCREENSHOTS=1`, its screenshots go to the book.
#[test]
fn in_a_real_browser_an_approver_decides_and_an_operator_kills() {
    let root = crate::util::root();
    let playwright = root.join("tests/mcp/node_modules/playwright-core");
    assert!(
        playwright.exists() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs playwright-core (tests/mcp/install) and Debian's chromium (apt-get install chromium); .ci/run installs both"
    );
    let console = Console::start(POLICY, &[]);
    let shots = match std::env::var_os("TOOLGATE_BOOK_SCREENSHOTS") {
        Some(_) => root.join("book/src/images"),
        None => root.join("target/console-screenshots"),
    };
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let output = Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}", console.port))
        .env("SOCKET", &console.server.socket)
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    for name in [
        "console-signin-refused.png",
        "console-approvals.png",
        "console-approval.png",
        "console-operations.png",
    ] {
        assert!(shots.join(name).metadata().is_ok_and(|m| m.len() > 1000), "{name} was taken");
    }
    let records = console.audit();
    let by = |kind: &str| records.iter().filter(|r| r["kind"] == kind).cloned().collect::<Vec<_>>();
    let approvals = by("approval");
    assert_eq!(approvals.len(), 2, "one rejection, one approval: {approvals:?}");
    assert_eq!(approvals[0]["granted"], false);
    assert_eq!(approvals[0]["comment"], "Not on the approved vendor list");
    assert_eq!(approvals[1]["granted"], true);
    assert_eq!(approvals[1]["by"], "alice (console)");
    assert_eq!(by("approval_refused").len(), 1, "the release gate's approval, forced by alice");
    assert_eq!(by("console_signin_refused").len(), 1);
    assert_eq!(by("kill")[0]["by"], "olivia (console)");
}

/// A webhook receiver on loopback: answers each request with the next
/// status of `statuses` (then 200), and hands over what it received.
fn webhook_receiver(statuses: Vec<u16>) -> (u16, std::sync::mpsc::Receiver<(String, Value)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("header");
                if header == "\r\n" || header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            let status = statuses.next().unwrap_or(200);
            let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            reader.get_mut().write_all(answer.as_bytes()).expect("answer");
            let _ = sender.send((path, serde_json::from_slice(&body).expect("a JSON body")));
        }
    });
    (port, receiver)
}

#[test]
fn approvers_are_notified_by_webhook_with_retries_and_a_link_to_the_console() {
    let (hook, received) = webhook_receiver(vec![503]);
    let settings = TempDir::new();
    let notify = settings.path().join("notify.yaml");
    std::fs::write(
        &notify,
        format!(
            "console: https://toolgate.example.com/\nwebhooks:\n  finance:\n    url: http://127.0.0.1:{hook}/finance\ndefault:\n  url: http://127.0.0.1:{hook}/others\n  format: slack\n"
        ),
    )
    .expect("settings");
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
    let console = Console::start(POLICY, &["--notify", notify.to_str().expect("utf-8")]);
    let paid = console.ask(pay(1250, "n1"));
    let id = paid["approval"]["id"].as_str().expect("an approval");
    let wait = Duration::from_secs(20);
    // The first try is answered 503; the retry, a second later, is taken.
    let (first, body) = received.recv_timeout(wait).expect("a first try");
    let (second, again) = received.recv_timeout(wait).expect("a retry");
    assert_eq!((first.as_str(), second.as_str()), ("/finance", "/finance"));
    assert_eq!(body, again);
    assert_eq!(body["event"], "approval_opened");
    assert_eq!(body["url"], format!("https://toolgate.example.com/approvals/{id}"));
    assert_eq!(body["approval"]["args"]["amount"], 1250);
    assert_eq!(body["approval"]["args"]["card"], "[redacted]", "redacted as the policy says");
    assert_eq!(body["approval"]["approver"], "finance");
    // The release approver has no webhook of its own: the default one, as Slack.
    let deploy = json!({"agent": "bot", "tool": "deploy", "session": "n1", "args": {"amount": 1, "to": "prod", "card": "-"}});
    let deploy_id = console.ask(deploy)["approval"]["id"].as_str().expect("an approval").to_owned();
    let (path, slack) = received.recv_timeout(wait).expect("the default webhook");
    assert_eq!(path, "/others");
    let text = slack["text"].as_str().expect("text");
    assert!(text.contains("`deploy` for agent `bot`") && text.contains(&deploy_id), "{slack}");
    assert_eq!(
        slack["blocks"][2]["elements"][0]["url"],
        format!("https://toolgate.example.com/approvals/{deploy_id}")
    );
    // The same call asked again finds its approval: no second notification.
    console.ask(pay(1250, "n1"));
    assert!(received.recv_timeout(Duration::from_millis(1500)).is_err(), "notified once per approval");
    let metrics = scrape(console.metrics);
    assert_eq!(metrics.value("toolgate_notifications_sent_total", &[]), Some(2.0));
    assert_eq!(metrics.value("toolgate_notifications_dropped_total", &[]), Some(0.0));
}

#[test]
fn a_webhook_that_refuses_a_notification_is_not_retried_and_the_failure_is_counted() {
    let (hook, received) = webhook_receiver(vec![404]);
    let settings = TempDir::new();
    let notify = settings.path().join("notify.yaml");
    std::fs::write(
        &notify,
        format!("console: http://127.0.0.1:1\ndefault:\n  url: http://127.0.0.1:{hook}/gone\n"),
    )
    .expect("settings");
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
    let console = Console::start(POLICY, &["--notify", notify.to_str().expect("utf-8")]);
    console.ask(pay(3, "r1"));
    let (path, _) = received.recv_timeout(Duration::from_secs(20)).expect("one try");
    assert_eq!(path, "/gone");
    assert!(received.recv_timeout(Duration::from_millis(2500)).is_err(), "a 404 is not retried");
    assert_eq!(scrape(console.metrics).value("toolgate_notifications_failed_total", &[]), Some(1.0));
}

/// With a certificate the console speaks only TLS, may listen beyond
/// loopback, marks its cookie `Secure`, and a client that never finishes
/// its handshake holds up nobody else.
#[test]
fn over_tls_the_console_may_listen_beyond_loopback_and_its_cookie_is_secure() {
    let certs = TempDir::new();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=toolgate-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let dir = TempDir::new();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(&accounts, accounts_text()).expect("accounts");
    std::fs::set_permissions(&accounts, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
    let port = free_port();
    let (address, socket) = (format!("0.0.0.0:{port}"), dir.path().join("s.sock"));
    let args = [
        "--console",
        &address,
        "--console-accounts",
        accounts.to_str().expect("utf-8"),
        "--console-tls-cert",
        cert.to_str().expect("utf-8"),
        "--console-tls-key",
        key.to_str().expect("utf-8"),
    ];
    let _server = Server::start_in(dir, socket, &args);
    // A client that connects and says nothing.
    let _silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let url = format!("https://127.0.0.1:{port}/login");
    let signed_in = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--cacert", cert.to_str().expect("utf-8")])
        .args(["-d", "name=alice&password=alice-pw", &url])
        .output()
        .expect("curl runs");
    let answer = String::from_utf8_lossy(&signed_in.stdout);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie =
        answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("__Host-toolgate_session="), "a host-only cookie over TLS: {cookie}");
    let plain = http(port, "GET", "/login", &[], "");
    assert_ne!(plain.status, 200, "plain HTTP is not served");
}

/// A gate with `approvals: 2` needs two different people: the first grant
/// leaves the call waiting, the same person twice is refused, the second
/// person's grant lets the call through once.
#[test]
fn a_four_eyes_gate_needs_two_different_approvers() {
    let policy = POLICY.replace(
        "        description: Payments need finance's approval\n",
        "        description: Payments need finance's approval\n        approvals: 2\n",
    );
    assert!(policy.contains("approvals: 2"));
    let console = Console::start(&policy, &[]);
    let id = console.ask(pay(50_000, "q1"))["approval"]["id"].as_str().expect("an approval").to_owned();
    let approve = format!("/approvals/{id}/approve");
    let alice = console.sign_in("alice", "alice-pw");
    let csrf = console.csrf(&alice);
    let first = console.post(&approve, &alice, &[("csrf", &csrf), ("comment", "looks right")]);
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body.contains("It needs 2 different people: 1 of them have granted it."), "{}", first.body);
    assert_eq!(console.ask(pay(50_000, "q1"))["approval"]["state"], "pending", "one grant is not enough");
    let twice = console.post(&approve, &alice, &[("csrf", &csrf)]);
    assert_eq!(twice.status, 400);
    assert!(twice.body.contains("granted this approval already"), "{}", twice.body);
    let page = console.get(&format!("/approvals/{id}"), &console.sign_in("frank", "frank-pw"));
    assert!(page.body.contains("2 different people; granted by alice (console)"), "{}", page.body);
    let frank = console.sign_in("frank", "frank-pw");
    let second = console.post(&approve, &frank, &[("csrf", &console.csrf(&frank))]);
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.body.contains("Approved"), "{}", second.body);
    let allowed = console.ask(pay(50_000, "q1"));
    assert_eq!(
        (allowed["decision"].as_str(), allowed["reason_code"].as_str()),
        (Some("allow"), Some("approved"))
    );
    let records: Vec<Value> = console.audit().into_iter().filter(|r| r["kind"] == "approval").collect();
    let by: Vec<&str> = records.iter().map(|r| r["by"].as_str().unwrap_or("")).collect();
    assert_eq!(by, ["alice (console)", "frank (console)"]);
    assert!(records.iter().all(|r| r["quorum"] == 2), "{records:?}");
}

/// Connections that send half a request, as many as an attacker can open,
/// cost the console its own slots only: the decision socket and the
/// metrics keep answering, and the console drops them within seconds.
#[test]
fn held_console_connections_starve_nothing_else_and_are_dropped() {
    let console = Console::start(POLICY, &[]);
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", console.port)).ok()?;
            stream.write_all(b"GET /approvals HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").ok()?;
            Some(stream)
        })
        .collect();
    assert!(held.len() >= 200, "{} connections held", held.len());
    let started = std::time::Instant::now();
    assert_eq!(console.ask(json!({"agent": "bot", "tool": "search", "session": "h"}))["decision"], "allow");
    assert!(scrape(console.metrics).value("toolgate_decisions_total", &[("agent", "bot")]).is_some());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Within the header timeout (10 s), the console drops them and serves again.
    let mut first = held.into_iter().next().expect("a held connection");
    first.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    let dropped_after = started.elapsed();
    assert!(dropped_after < Duration::from_secs(16), "dropped after {dropped_after:?}");
    let page = http(console.port, "GET", "/login", &[], "");
    assert_eq!(page.status, 200);
}

#[test]
fn a_host_name_the_console_does_not_answer_for_is_refused() {
    let console = Console::start(POLICY, &[]);
    let evil = format!("evil.example:{}", console.port);
    let body = form(&[("name", "alice"), ("password", "alice-pw")]);
    let rebound = http(
        console.port,
        "POST",
        "/login",
        &[("Host", &evil), ("Origin", &format!("http://{evil}"))],
        &body,
    );
    assert_eq!(rebound.status, 421, "DNS rebinding");
    let metrics = http(
        console.metrics,
        "GET",
        "/metrics",
        &[("Host", &format!("evil.example:{}", console.metrics))],
        "",
    );
    assert_eq!(metrics.status, 421);
    let local = http(console.port, "GET", "/login", &[("Host", &format!("localhost:{}", console.port))], "");
    assert_eq!(local.status, 200);
}

#[test]
fn racing_decisions_of_one_approval_record_only_the_one_that_took_effect() {
    let console = Console::start(POLICY, &[]);
    let id = console.ask(pay(640, "race"))["approval"]["id"].as_str().expect("approval").to_owned();
    let alice = console.sign_in("alice", "alice-pw");
    let csrf = console.csrf(&alice);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let verb = if i % 2 == 0 { "approve" } else { "reject" };
                let (path, alice, csrf) = (format!("/approvals/{id}/{verb}"), &alice, &csrf);
                let console = &console;
                scope.spawn(move || console.post(&path, alice, &[("csrf", csrf)]).status)
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("racer")).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    let decisions = console.audit().into_iter().filter(|r| r["kind"] == "approval").count();
    assert_eq!(decisions, 1, "only the decision that took effect is recorded as one");
}

#[test]
fn what_cannot_be_an_approval_id_is_not_found_and_not_recorded() {
    let console = Console::start(POLICY, &[]);
    let bob = console.sign_in("bob", "bob-pw");
    let csrf = console.csrf(&bob);
    let long = format!("/approvals/apr_{}/approve", "A".repeat(5000));
    assert_eq!(console.post(&long, &bob, &[("csrf", &csrf)]).status, 404);
    assert_eq!(console.get(&format!("/approvals/{}", "x".repeat(3000)), &bob).status, 404);
    let records = console.audit();
    assert!(records.iter().all(|r| r["kind"] != "approval_refused" && r["kind"] != "error"), "{records:?}");
}

#[test]
fn invisible_characters_in_arguments_are_shown_escaped() {
    let console = Console::start(POLICY, &[]);
    let call = json!({"agent": "bot", "tool": "pay", "session": "bidi", "args": {"amount": "\u{202e}10000", "to": "A\u{200b}CME", "card": "x"}});
    assert_eq!(console.ask(call)["decision"], "require_approval");
    let page = console.get("/approvals", &console.sign_in("alice", "alice-pw"));
    assert!(page.body.contains("\\u{202e}10000") && page.body.contains("A\\u{200b}CME"), "{}", page.body);
    assert!(!page.body.contains('\u{202e}'), "the control character itself is not in the page");
}

#[test]
fn a_live_tail_ends_when_its_session_does() {
    let console = Console::start(POLICY, &[]);
    let olivia = console.sign_in("olivia", "olivia-pw");
    let mut stream = TcpStream::connect(("127.0.0.1", console.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let request = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: toolgate_session={olivia}\r\n\r\n",
        console.port
    );
    stream.write_all(request.as_bytes()).expect("send");
    let csrf = console.csrf(&olivia);
    assert_eq!(console.post("/logout", &olivia, &[("csrf", &csrf)]).status, 303);
    let started = std::time::Instant::now();
    // The stream's body ends (its last, empty chunk) once the tail sees the session is gone.
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !received.ends_with(b"\r\n0\r\n\r\n") {
        let n = stream.read(&mut chunk).expect("the stream ends, not the read timeout");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the stream ended {:?} after sign-out",
        started.elapsed()
    );
}

/// An operator verifies the audit trail's chain from the console; an edit
/// of a past record is found, shown and recorded.
#[test]
fn an_operator_verifies_the_trail_and_sees_an_edit() {
    let console = Console::start(POLICY, &[]);
    console.ask(json!({"agent": "bot", "tool": "search", "session": "v"}));
    let olivia = console.sign_in("olivia", "olivia-pw");
    let csrf = console.csrf(&olivia);
    let alice = console.sign_in("alice", "alice-pw");
    assert_eq!(console.post("/audit/verify", &alice, &[("csrf", &console.csrf(&alice))]).status, 403);
    let intact = console.post("/audit/verify", &olivia, &[("csrf", &csrf)]);
    assert_eq!(intact.status, 200, "{}", intact.body);
    assert!(intact.body.contains("The audit trail is intact at"), "{}", intact.body);
    let trail = console.server.dir.path().join("audit.log");
    let text = std::fs::read_to_string(&trail).expect("trail");
    std::fs::write(&trail, text.replacen("\"tool\":\"search\"", "\"tool\":\"seArch\"", 1)).expect("edit");
    let broken = console.post("/audit/verify", &olivia, &[("csrf", &csrf)]);
    assert!(broken.body.contains("The audit trail is BROKEN at"), "{}", broken.body);
    assert!(console.get("/operations", &olivia).body.contains("BROKEN at"), "kept for the Operations page");
    let verified: Vec<Value> =
        console.audit().into_iter().filter(|r| r["kind"] == "audit_verified").collect();
    assert_eq!(verified.iter().map(|r| r["ok"].as_bool()).collect::<Vec<_>>(), [Some(true), Some(false)]);
}
