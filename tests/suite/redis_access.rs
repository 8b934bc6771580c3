//! How a replica reaches Redis, driven through `toolgate serve`: over TLS
//! only with the right certificates, with a password read from a file and
//! never shown, under a namespace of its own, waiting for a Redis that
//! starts after it, under the least-privilege user the book recommends,
//! and following a failover through Redis Sentinel, in plain text or TLS.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Server;
use crate::util::certificates::Pki;
use crate::util::redis_server::RedisServer;
use crate::util::tempdir::TempDir;

/// `search` capped at two calls a session.
const POLICY: &str = "agentPolicies:\n  bot:\n    allowedTools: [search]\n    constraints:\n      search:\n        maxPerSession: 2\n";

/// A replica on `state` with `extra` flags, serving.
fn replica(state: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--state", state];
    args.extend_from_slice(extra);
    Server::start(POLICY, &args)
}

/// How many of four calls in one session `server` allows (two, if it
/// counts them in Redis).
fn allowed_of_four(server: &Server, session: &str) -> usize {
    let call = json!({"agent": "bot", "tool": "search", "session": session});
    let mut client = server.connect();
    (0..4).filter(|_| client.ask(call.clone())["decision"] == "allow").count()
}

/// Runs `toolgate serve` on `state` with `extra` flags, expecting it to
/// refuse to start: its exit code, its stderr, and how long it took.
fn refused(state: &str, extra: &[&str]) -> (Option<i32>, String, Duration) {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["serve", "--policy", "policy.yaml", "--socket", "s.sock", "--state", state])
        .args(extra)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("toolgate starts");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("toolgate serve --state {state} {extra:?} did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), started.elapsed())
}

#[test]
fn a_replica_reaches_redis_over_tls_only_with_the_right_certificates() {
    let pki = Pki::make();
    let port = crate::util::free_port();
    let settings = [
        format!("--tls-port {port}"),
        format!("--tls-cert-file {}", pki.arg("server.crt")),
        format!("--tls-key-file {}", pki.arg("server.key")),
        format!("--tls-ca-cert-file {}", pki.arg("ca.crt")),
        String::from("--tls-auth-clients yes"),
    ];
    let redis = RedisServer::start(&settings.iter().map(String::as_str).collect::<Vec<_>>());
    let url = format!("rediss://127.0.0.1:{port}/0");
    let (ca, cert, key) = (pki.arg("ca.crt"), pki.arg("client.crt"), pki.arg("client.key"));

    let tls = ["--redis-ca", &ca, "--redis-cert", &cert, "--redis-key", &key];
    let (a, b) = (replica(&url, &tls), replica(&url, &tls));
    assert_eq!(allowed_of_four(&a, "t1") + allowed_of_four(&b, "t1"), 2, "one cap across both");
    let keys = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["KEYS", "tg:*"]).output();
    assert!(String::from_utf8_lossy(&keys.expect("redis-cli").stdout).contains("t1"), "counted in Redis");

    // Without a client certificate, the server ends the handshake; that is
    // not worth waiting for (--redis-wait is 10 s by default).
    let (code, stderr, took) = refused(&url, &["--redis-ca", &ca]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(took < Duration::from_secs(5), "waited {took:?} for a refused handshake: {stderr}");
    assert!(
        stderr.contains(&format!("cannot open the shared state on `{url}`: Redis does not answer")),
        "{stderr}"
    );
    // A server whose certificate another CA signed is not trusted.
    let other = pki.arg("other-ca.crt");
    let (code, stderr, took) =
        refused(&url, &["--redis-ca", &other, "--redis-cert", &cert, "--redis-key", &key]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(took < Duration::from_secs(5), "waited {took:?} for an untrusted certificate: {stderr}");
    // Plain Redis protocol to the TLS port gets nowhere.
    let plain = format!("redis://127.0.0.1:{port}/0");
    let (code, stderr, _) = refused(&plain, &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    // Certificates are for TLS addresses; turning checks off is refused.
    let (code, stderr, _) = refused(&plain, &["--redis-ca", &ca]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is not a TLS address"), "{stderr}");
    let (code, stderr, _) = refused(&format!("{url}#insecure"), &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("turns off certificate checks"), "{stderr}");
}

#[test]
fn a_redis_password_comes_from_a_file_and_is_never_shown() {
    let redis = RedisServer::start(&["--requirepass s3cret-pass-1"]);
    let dir = TempDir::new();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "s3cret-pass-1\n").expect("password");
    std::fs::write(&wrong, "not-the-pass-2\n").expect("password");
    // A password others can read is refused until it is private.
    let (code, stderr, _) = refused(&redis.url(), &["--redis-password-file", &right.display().to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is readable or writable by others") && stderr.contains("chmod 600"), "{stderr}");
    for file in [&right, &wrong] {
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    }

    let server = replica(&redis.url(), &["--redis-password-file", &right.display().to_string()]);
    assert_eq!(allowed_of_four(&server, "p1"), 2);

    // A wrong password is not worth waiting for: refused at once, and
    // neither password appears in what is said.
    let (code, stderr, took) =
        refused(&redis.url(), &["--redis-password-file", &wrong.display().to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(took < Duration::from_secs(5), "waited {took:?} for a wrong password: {stderr}");
    assert!(!stderr.contains("not-the-pass-2") && !stderr.contains("s3cret"), "{stderr}");
    // A password in the URL is hidden too.
    let in_url = format!("{}?pass=not-the-pass-2", redis.url());
    let (code, stderr, _) = refused(&in_url, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("not-the-pass-2") && stderr.contains("pass=***"), "{stderr}");
    // No password at all.
    let (code, stderr, _) = refused(&redis.url(), &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn namespaces_keep_deployments_on_one_redis_apart() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let metrics = format!("127.0.0.1:{}", crate::util::free_port());
    let prod_a = replica(&url, &["--redis-namespace", "prod", "--metrics", &metrics]);
    let prod_b = replica(&url, &["--redis-namespace", "prod"]);
    let dir = TempDir::new();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let (socket, admin_socket) = (dir.path().join("s.sock"), dir.path().join("admin.sock"));
    let admin_arg = admin_socket.display().to_string();
    let flags = ["--state", &url, "--redis-namespace", "staging", "--admin-socket", &admin_arg];
    let staging = Server::start_in(dir, socket, &flags);
    assert_eq!(allowed_of_four(&prod_a, "n1") + allowed_of_four(&prod_b, "n1"), 2, "one deployment, one cap");
    assert_eq!(allowed_of_four(&staging, "n1"), 2, "another deployment counts its own");
    // A kill in one namespace stops nothing in another.
    let (code, answer) =
        crate::server::admin(&["kill", "--agent", "bot", "--reason", "incident"], &admin_socket);
    assert_eq!(code, Some(0), "{answer}");
    let call = json!({"agent": "bot", "tool": "search", "session": "n2"});
    assert_eq!(prod_a.connect().ask(call.clone())["decision"], "allow");
    assert_eq!(staging.connect().ask(call)["reason_code"], "killed");

    // The operator sees where the state is, and Redis's clock offset.
    let status = prod_a.connect().ask(json!({"op": "status"}));
    let redis = &status["status"]["state"]["redis"];
    assert_eq!(
        (redis["address"].as_str(), redis["namespace"].as_str()),
        (Some(url.as_str()), Some("prod")),
        "{status}"
    );
    assert!(redis["clock_offset_ms"].as_i64().is_some_and(|ms| ms.abs() < 1000), "{status}");
    let scraped =
        Command::new("curl").args(["-s", "--max-time", "10", &format!("http://{metrics}/metrics")]).output();
    let scraped = String::from_utf8_lossy(&scraped.expect("curl").stdout).into_owned();
    assert!(
        scraped.contains("toolgate_redis_clock_offset_seconds ")
            && scraped.contains("toolgate_state_store_up 1"),
        "{scraped}"
    );

    for bad in ["a:b", "{tg}", ""] {
        let (code, stderr, _) = refused(&url, &["--redis-namespace", bad]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("namespace"), "{stderr}");
    }
    let (code, stderr, _) = refused("memory-dir", &["--redis-namespace", "prod"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--redis-namespace needs a Redis"), "{stderr}");
}

#[test]
fn a_replica_waits_for_a_redis_that_starts_after_it() {
    let mut redis = RedisServer::start(&[]);
    redis.stop();
    let url = redis.url();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        redis.start_again();
        redis
    });
    let server = replica(&url, &[]);
    let _redis = starter.join().expect("redis started");
    assert_eq!(allowed_of_four(&server, "w1"), 2);

    // A Redis that never comes is given up on after --redis-wait.
    let nowhere = TempDir::new();
    let url = format!("redis+unix://{}", nowhere.path().join("none.sock").display());
    let (code, stderr, took) = refused(&url, &["--redis-wait", "1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!((Duration::from_millis(900)..Duration::from_secs(10)).contains(&took), "{took:?}");
    assert!(stderr.contains("waiting for Redis") && stderr.contains("Redis does not answer"), "{stderr}");
}

/// The least-privilege Redis user the book recommends, read from the
/// chapter itself so that the two cannot drift apart, with `password`.
fn book_acl(password: &str) -> String {
    let chapter =
        std::fs::read_to_string(crate::util::root().join("book/templates/replicas.md")).expect("chapter");
    let line = chapter.lines().find(|line| line.starts_with("user toolgate on ")).expect("the chapter's ACL");
    line.replacen(">PASSWORD", &format!(">{password}"), 1)
}

#[test]
fn the_books_least_privilege_redis_user_is_all_a_replica_needs() {
    let acl = book_acl("acl-pass-3");
    let redis = RedisServer::start(&[&format!("--{acl}")]);
    let dir = TempDir::new();
    let password = dir.path().join("password");
    std::fs::write(&password, "acl-pass-3\n").expect("password");
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let policy = format!(
        "agentPolicies:\n  bot:\n    allowedTools: [search, pay]\n    constraints:\n      search:\n        maxPerSession: 2\n        rateLimit: 100/min\n    approvalGates:\n      pay:\n        required: true\n        approver: finance\n{}",
        crate::server::approvers(&["finance"])
    );
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
    let (socket, admin_socket) = (dir.path().join("s.sock"), dir.path().join("admin.sock"));
    let url = format!("{}?user=toolgate", redis.url());
    let (password_arg, admin_arg) = (password.display().to_string(), admin_socket.display().to_string());
    let flags = ["--state", &url, "--redis-password-file", &password_arg, "--admin-socket", &admin_arg];
    let server = Server::start_in(dir, socket, &flags);

    assert_eq!(allowed_of_four(&server, "a1"), 2, "caps and rate limits");
    let admin = |args: &[&str]| {
        let (code, answer) = crate::server::admin(args, &admin_socket);
        assert_eq!(code, Some(0), "{args:?}: {answer}");
        answer
    };
    admin(&["kill", "--agent", "bot", "--session", "k", "--reason", "test"]);
    let call = json!({"agent": "bot", "tool": "search", "session": "k"});
    assert_eq!(server.connect().ask(call.clone())["reason_code"], "killed");
    admin(&["revive", "--agent", "bot", "--session", "k"]);
    assert_eq!(server.connect().ask(call)["decision"], "allow");
    let pay = json!({"agent": "bot", "tool": "pay", "session": "p", "args": {"amount": 1}});
    let asked = server.connect().ask(pay.clone());
    let id = asked["approval"]["id"].as_str().expect("an approval opened").to_owned();
    assert!(admin(&["approvals"]).to_string().contains(&id));
    admin(&["approve", &id]);
    let mut redeem = pay;
    redeem["approval"] = json!(id);
    assert_eq!(server.connect().ask(redeem)["reason_code"], "approved");
    let health = server.connect().ask(json!({"op": "health"}));
    assert_eq!(health["state"]["condition"], "ok", "{health}");
    // The console's sessions and sign-in throttle, under the same user.
    let console =
        crate::console::Console::start(POLICY, &["--state", &url, "--redis-password-file", &password_arg]);
    let login = |password: &str| {
        let fields = crate::console::form(&[("name", "alice"), ("password", password)]);
        crate::console::http(console.port, "POST", "/login", &[], &fields).status
    };
    assert_eq!(login("guess"), 401);
    let token = console.sign_in("alice", "alice-pw");
    assert_eq!(console.get("/approvals", &token).status, 200);
    assert_eq!(console.post("/logout", &token, &[("csrf", &console.csrf(&token))]).status, 303);
    // Signing in again tidies the account's ended sessions away.
    let token = console.sign_in("alice", "alice-pw");
    assert_eq!(console.get("/approvals", &token).status, 200);
    let log = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["ACL", "LOG"]).output();
    let log = String::from_utf8_lossy(&log.expect("redis-cli").stdout).into_owned();
    assert!(log.trim().is_empty(), "Redis refused the replica something: {log}");
}

/// A Redis primary, its replica and a sentinel watching them, on loopback
/// ports; all stopped on drop.
struct Sentineled {
    _dir: TempDir,
    children: Vec<(u16, std::process::Child)>,
    sentinel: u16,
    /// `redis-cli`'s TLS arguments, when everything speaks TLS.
    tls: Vec<String>,
    /// The password the sentinel asks for, if it asks for one.
    sentinel_password: Option<String>,
}

impl Sentineled {
    fn start() -> Sentineled {
        Sentineled::start_with(None, None)
    }

    /// A primary, its replica and a sentinel; with `tls`, each listens on
    /// TLS only, asks clients for a certificate, and replicates and
    /// monitors over TLS — the nodes with the certificate `tls.1` names
    /// (`server`, or `other-server`, which another CA signed), the
    /// sentinel with `server`'s; with `sentinel_password`, the sentinel
    /// asks clients for it.
    fn start_with(tls: Option<(&Pki, &str)>, sentinel_password: Option<&str>) -> Sentineled {
        let dir = TempDir::new();
        let (primary, replica, sentinel) =
            (crate::util::free_port(), crate::util::free_port(), crate::util::free_port());
        // How each listens on `port`: plain, or TLS only with `cert`.
        let listen = |port: u16, cert: &str| -> Vec<String> {
            let Some((pki, _)) = tls else { return vec![format!("port {port}")] };
            vec![
                String::from("port 0"),
                format!("tls-port {port}"),
                format!("tls-cert-file {}", pki.arg(&format!("{cert}.crt"))),
                format!("tls-key-file {}", pki.arg(&format!("{cert}.key"))),
                format!("tls-ca-cert-file {}", pki.arg("both-cas.crt")),
                String::from("tls-auth-clients yes"),
                String::from("tls-replication yes"),
            ]
        };
        // A configuration file's lines as command-line flags.
        let flags = |lines: Vec<String>| -> Vec<String> {
            let pairs = lines.into_iter().filter_map(|line| {
                line.split_once(' ').map(|(key, value)| [format!("--{key}"), value.to_owned()])
            });
            pairs.flatten().collect()
        };
        let redis = |port: u16, extra: &[String]| {
            let child = Command::new("redis-server")
                .args(flags(listen(port, tls.map_or("server", |(_, nodes)| nodes))))
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs");
            (port, child)
        };
        let mut children = vec![redis(primary, &[])];
        children.push(redis(replica, &["--replicaof".into(), "127.0.0.1".into(), primary.to_string()]));
        let config = dir.path().join("sentinel.conf");
        let mut lines = listen(sentinel, "server");
        lines.extend([
            String::from("bind 127.0.0.1"),
            format!("sentinel monitor tg 127.0.0.1 {primary} 1"),
            String::from("sentinel down-after-milliseconds tg 500"),
            String::from("sentinel failover-timeout tg 5000"),
        ]);
        lines.extend(sentinel_password.map(|password| format!("requirepass {password}")));
        std::fs::write(&config, lines.join("\n") + "\n").expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel runs");
        children.push((sentinel, child));
        let tls = match tls {
            Some((pki, _)) => {
                ["--tls", "--cacert", &pki.arg("both-cas.crt"), "--cert", &pki.arg("client.crt")]
                    .into_iter()
                    .chain(["--key", &pki.arg("client.key")])
                    .map(String::from)
                    .collect()
            }
            None => Vec::new(),
        };
        let sentinel_password = sentinel_password.map(str::to_owned);
        let cluster = Sentineled { _dir: dir, children, sentinel, tls, sentinel_password };
        // Ready once the sentinel knows the primary and its replica, and the
        // replica has its copy.
        cluster.wait_for("the sentinel to see the replica", |c| {
            c.cli(sentinel, &["SENTINEL", "replicas", "tg"]).contains(&replica.to_string())
                && c.cli(replica, &["INFO", "replication"]).contains("master_link_status:up")
        });
        cluster
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut cli = Command::new("redis-cli");
        cli.args(&self.tls).args(["-p", &port.to_string()]);
        if let Some(password) = self.sentinel_password.as_ref().filter(|_| port == self.sentinel) {
            cli.env("REDISCLI_AUTH", password);
        }
        let output = cli.args(args).output();
        String::from_utf8_lossy(&output.expect("redis-cli").stdout).into_owned()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Sentineled) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < Duration::from_secs(30), "waited 30 s for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_empty() { "redis" } else { "rediss" };
        format!("{scheme}+sentinel://127.0.0.1:{}/tg", self.sentinel)
    }

    /// Kills the primary (as a crash would).
    fn kill_primary(&mut self) -> u16 {
        let (port, child) = &mut self.children[0];
        let _ = child.kill();
        let _ = child.wait();
        *port
    }
}

impl Drop for Sentineled {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn through_sentinel_a_replica_follows_a_failover_to_the_new_primary() {
    follows_a_failover(Sentineled::start(), &[]);
}

/// Through `rediss+sentinel://`, the sentinels and the nodes they name are
/// all reached over TLS, checked against the given CA, with the client
/// certificate; a failover is followed over TLS too.
#[test]
fn through_sentinel_over_tls_every_connection_is_checked() {
    let pki = Pki::make();
    // The nodes' certificates come from another CA than the sentinel's.
    let cluster = Sentineled::start_with(Some((&pki, "other-server")), None);
    let (cert, key) = (pki.arg("client.crt"), pki.arg("client.key"));
    let url = cluster.url();
    let with_ca = |ca: &str| {
        refused(&url, &["--redis-ca", ca, "--redis-cert", &cert, "--redis-key", &key, "--redis-wait", "0"])
    };
    // Trusting only the nodes' CA, the sentinel is not trusted; trusting
    // only the sentinel's, the nodes it names are not.
    for ca in ["other-ca.crt", "ca.crt"] {
        let (code, stderr, _) = with_ca(&pki.arg(ca));
        assert_eq!(code, Some(2), "{ca}: {stderr}");
        assert!(stderr.contains("invalid peer certificate"), "{ca}: {stderr}");
    }
    let both = pki.arg("both-cas.crt");
    // Without a client certificate the sentinel ends the handshake.
    let (code, stderr, _) = refused(&url, &["--redis-ca", &both, "--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("CertificateRequired"), "{stderr}");
    // Plain Sentinel protocol to TLS ports gets nowhere, and certificates
    // on a plain address are a mistake said at once.
    let plain = url.replacen("rediss+", "redis+", 1);
    let (code, stderr, _) = refused(&plain, &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr, _) = refused(&plain, &["--redis-ca", &both, "--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is not a TLS address") && stderr.contains("rediss+sentinel://"), "{stderr}");

    follows_a_failover(cluster, &["--redis-ca", &both, "--redis-cert", &cert, "--redis-key", &key]);
}

/// A sentinel that takes connections and never answers (listed first)
/// costs a replica one deadline, not its state: it asks the next sentinel.
/// A service no sentinel knows is refused, and said so.
#[test]
fn a_sentinel_that_never_answers_is_passed_over() {
    let cluster = Sentineled::start();
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stalled_port = stalled.local_addr().expect("address").port();
    // Accepts every connection and holds it open, answering nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = stalled.incoming().collect();
        drop(held);
    });
    let url = format!("redis+sentinel://127.0.0.1:{stalled_port},127.0.0.1:{}/tg", cluster.sentinel);
    let started = Instant::now();
    let server = replica(&url, &[]);
    assert_eq!(allowed_of_four(&server, "st"), 2, "counted on the primary the second sentinel named");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let health = server.connect().ask(json!({"op": "health"}));
    assert_eq!(health["state"]["condition"], "ok", "{health}");

    let unknown = format!("redis+sentinel://127.0.0.1:{}/nosuch", cluster.sentinel);
    let (code, stderr, _) = refused(&unknown, &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the sentinel knows no primary of this name") && stderr.contains("nosuch"),
        "{stderr}"
    );
}

/// Sentinels that ask for a password get the one from
/// `--redis-sentinel-password-file` (private, never shown); without it, or
/// with a wrong one, a replica does not start.
#[test]
fn sentinels_that_ask_for_a_password_get_it_from_a_file() {
    let cluster = Sentineled::start_with(None, Some("sentinel-pw-1"));
    let dir = TempDir::new();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    for (file, password) in [(&right, "sentinel-pw-1\n"), (&wrong, "not-the-pw-2\n")] {
        std::fs::write(file, password).expect("password");
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    }
    let url = cluster.url();
    let (code, stderr, _) = refused(&url, &["--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot open the shared state") && stderr.contains("NOAUTH"), "{stderr}");
    let (code, stderr, _) =
        refused(&url, &["--redis-sentinel-password-file", &wrong.display().to_string(), "--redis-wait", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains("not-the-pw-2") && !stderr.contains("sentinel-pw-1"), "{stderr}");
    // It is the sentinels' password: for any other address, a mistake.
    let direct = format!("redis://127.0.0.1:{}/0", cluster.children[0].0);
    let (code, stderr, _) =
        refused(&direct, &["--redis-sentinel-password-file", &right.display().to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is for an address through Sentinel"), "{stderr}");

    let server = replica(&url, &["--redis-sentinel-password-file", &right.display().to_string()]);
    assert_eq!(allowed_of_four(&server, "sp"), 2, "counted on the primary the sentinel named");
}

/// A replica on `cluster` (with `extra` flags) counts calls, loses the
/// primary, resumes on the one the sentinel promotes with the counts
/// intact, and its kills' listener finds the new primary too.
fn follows_a_failover(mut cluster: Sentineled, extra: &[&str]) {
    let policy = "agentPolicies:\n  bot:\n    allowedTools: [search]\n    constraints:\n      search:\n        maxPerSession: 5\n";
    let url = cluster.url();
    let mut flags = vec!["--state", &url];
    flags.extend_from_slice(extra);
    let server = Server::start(policy, &flags);
    let call = json!({"agent": "bot", "tool": "search", "session": "f1"});
    let mut client = server.connect();
    for _ in 0..2 {
        assert_eq!(client.ask(call.clone())["decision"], "allow");
    }
    let (primary, replica) = (cluster.children[0].0, cluster.children[1].0);
    // The counts are on the replica before the primary dies: it has read
    // the primary's whole stream. (`WAIT` from another connection would
    // wait for nothing: it waits for that connection's own writes.)
    let offset = |port: u16| {
        let info = cluster.cli(port, &["INFO", "replication"]);
        info.lines().find_map(|line| line.trim().strip_prefix("master_repl_offset:")?.parse::<u64>().ok())
    };
    cluster.wait_for("the replica to have the counts", |_| {
        offset(primary).is_some_and(|written| offset(replica).is_some_and(|read| read >= written))
    });
    let old = cluster.kill_primary();

    let started = Instant::now();
    let first = loop {
        let answer = server.connect().ask(call.clone());
        if answer["decision"] == "allow" {
            break answer;
        }
        let code = answer["reason_code"].as_str().unwrap_or("");
        assert!(["state_unavailable", "decision_timeout"].contains(&code), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(30), "no failover within 30 s: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("decisions resumed {:?} after the primary died: {first}", started.elapsed());
    let now_primary = cluster.cli(cluster.sentinel, &["SENTINEL", "get-master-addr-by-name", "tg"]);
    assert!(!now_primary.contains(&old.to_string()), "the sentinel moved on: {now_primary}");
    // Two counted before, one now: two more, then the cap.
    let mut client = server.connect();
    let rest: Vec<String> = (0..3).map(|_| client.ask(call.clone())["reason_code"].to_string()).collect();
    assert_eq!(rest, ["\"allowed\"", "\"allowed\"", "\"cap_reached\""], "the count survived the failover");
    // The kills' listener finds the new primary too (it tries every 250 ms).
    let started = Instant::now();
    loop {
        let health = server.connect().ask(json!({"op": "health"}));
        if health["state"]["condition"] == "ok" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{health}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_warns_of_a_redis_that_evicts_keys() {
    let stderr_of = |settings: &[&str]| {
        let redis = RedisServer::start(settings);
        let mut server = replica(&redis.url(), &[]);
        let _ = server.child.kill();
        let _ = server.child.wait();
        let mut stderr = String::new();
        let mut pipe = server.child.stderr.take().expect("stderr");
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read");
        stderr
    };
    let evicting = stderr_of(&["--maxmemory 100mb", "--maxmemory-policy volatile-lru"]);
    assert!(evicting.contains("set maxmemory-policy noeviction"), "{evicting}");
    let safe = stderr_of(&["--maxmemory 100mb", "--maxmemory-policy noeviction"]);
    assert!(!safe.contains("evicts keys"), "{safe}");
}

#[test]
fn with_redis_replicas_asked_for_a_redemption_counts_only_once_a_replica_has_it() {
    let cluster = Sentineled::start();
    let (primary, replica) = (cluster.children[0].0, &cluster.children[1].1);
    let dir = TempDir::new();
    let policy = format!(
        "agentPolicies:\n  bot:\n    allowedTools: [pay]\n    approvalGates:\n      pay:\n        required: true\n        approver: finance\n{}",
        crate::server::approvers(&["finance"])
    );
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
    let (socket, admin_socket) = (dir.path().join("s.sock"), dir.path().join("admin.sock"));
    let url = format!("redis://127.0.0.1:{primary}/0");
    let admin_arg = admin_socket.display().to_string();
    // A deadline a loaded machine still meets (WAIT gets half of it).
    let deadline = ["--decision-timeout", "3000"];
    let flags = ["--state", &url, "--redis-replicas", "1", "--admin-socket", &admin_arg];
    let server = Server::start_in(dir, socket, &[&flags[..], &deadline[..]].concat());
    let approved = |amount: u32| {
        let pay = json!({"agent": "bot", "tool": "pay", "session": "r", "args": {"amount": amount}});
        let asked = server.connect().ask(pay.clone());
        let id = asked["approval"]["id"].as_str().expect("an approval").to_owned();
        let (code, answer) = crate::server::admin(&["approve", &id], &admin_socket);
        assert_eq!(code, Some(0), "{answer}");
        let mut redeem = pay;
        redeem["approval"] = json!(id);
        redeem
    };
    let first = approved(1);
    assert_eq!(server.connect().ask(first)["reason_code"], "approved", "the replica confirmed it");

    // The replica stops answering: a redemption it has not confirmed is
    // denied, and spent; a kill is made but reported unconfirmed.
    let second = approved(2);
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &replica.id().to_string()]).status().expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    let denied = server.connect().ask(second.clone());
    signal("-CONT");
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(server.connect().ask(second)["reason_code"], "approval_used", "it was spent");
    signal("-STOP");
    let (code, answer) = crate::server::admin(&["kill", "--agent", "bot", "--reason", "r"], &admin_socket);
    signal("-CONT");
    assert_ne!(code, Some(0), "{answer}");
    assert!(answer.to_string().contains("of the 1 Redis replicas"), "{answer}");
    let call = json!({"agent": "bot", "tool": "pay", "session": "k", "args": {"amount": 3}});
    assert_eq!(server.connect().ask(call)["reason_code"], "killed", "in force all the same");

    // A console sign-out the replica has not confirmed: signed out on the
    // primary, and the trail says the replicas lack it.
    let flags = ["--state", &url, "--redis-replicas", "1"];
    let console = crate::console::Console::start(POLICY, &[&flags[..], &deadline[..]].concat());
    let (token, other) = (console.sign_in("alice", "alice-pw"), console.sign_in("bob", "bob-pw"));
    assert_eq!(console.post("/logout", &other, &[("csrf", &console.csrf(&other))]).status, 303);
    let csrf = console.csrf(&token);
    signal("-STOP");
    let signed_out = console.post("/logout", &token, &[("csrf", &csrf)]);
    signal("-CONT");
    assert_eq!(signed_out.status, 303, "{}", signed_out.body);
    assert_eq!(console.get("/approvals", &token).status, 303, "ended on the primary");
    let records = console.audit();
    let signouts: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "console_signout").collect();
    assert_eq!(signouts.len(), 2, "{signouts:?}");
    assert!(signouts[0].get("unconfirmed").is_none(), "bob's was confirmed: {:?}", signouts[0]);
    let why = signouts[1]["unconfirmed"].as_str().unwrap_or_default();
    assert!(why.contains("of the 1 Redis replicas"), "{:?}", signouts[1]);
}
