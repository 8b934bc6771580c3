//! The store conformance suite (`toolgate::state::conformance`) against
//! every store: in memory and on disk.

use std::sync::Arc;
use std::time::Duration;

use toolgate::state::conformance;
use toolgate::state::{
    ApprovalStore, DurableOptions, DurableSessions, KillStore, KillSwitch, Ledger, MemorySessions,
    SessionStore,
};

use crate::util::tempdir::TempDir;

#[test]
fn memory_stores_conform() {
    conformance::sessions(&|clock, limits| {
        Arc::new(MemorySessions::with_limits(clock, limits)) as Arc<dyn SessionStore>
    })
    .unwrap();
    conformance::kills(&|| Arc::new(KillSwitch::in_memory()) as Arc<dyn KillStore>).unwrap();
    conformance::approvals(&|clock| {
        Arc::new(Ledger::with_clock(Duration::from_secs(60), clock)) as Arc<dyn ApprovalStore>
    })
    .unwrap();
}

#[test]
fn durable_stores_conform() {
    let dir = TempDir::new();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let fresh = |name: &str| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dir.path().join(format!("{n}-{name}"))
    };
    conformance::sessions(&|clock, limits| {
        let options = DurableOptions { clock, limits, ..DurableOptions::default() };
        Arc::new(DurableSessions::open_with(&fresh("state.redb"), options).unwrap()) as Arc<dyn SessionStore>
    })
    .unwrap();
    conformance::kills(&|| {
        Arc::new(KillSwitch::persistent(fresh("kills.json")).unwrap()) as Arc<dyn KillStore>
    })
    .unwrap();
    conformance::approvals(&|clock| {
        let file = fresh("approvals.log");
        Arc::new(Ledger::persistent(&file, Duration::from_secs(60), clock).unwrap()) as Arc<dyn ApprovalStore>
    })
    .unwrap();
}

/// The Redis store passes the same properties as the others, against a
/// real `redis-server` (each store under a namespace of its own).
#[test]
fn redis_stores_conform() {
    use toolgate::state::redis::{Link, RedisOptions, RedisSessions};
    let server = crate::util::redis_server::RedisServer::start(&[]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let link = || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Link::to(&server.url(), &format!("test{n}"), Duration::from_secs(1)).unwrap()
    };
    conformance::sessions(&|clock, limits| {
        let options = RedisOptions { clock: Some(clock), limits };
        Arc::new(RedisSessions::open(&link(), options).unwrap()) as Arc<dyn SessionStore>
    })
    .unwrap();
    conformance::approvals(&|clock| {
        let store = toolgate::state::redis::approvals::RedisApprovals::open(
            &link(),
            Duration::from_secs(60),
            toolgate::state::ApprovalLimits::default(),
            clock,
        );
        Arc::new(store.unwrap()) as Arc<dyn ApprovalStore>
    })
    .unwrap();
}

/// Kills on Redis pass the kill conformance suite, and a kill on one
/// replica is in force on another within milliseconds (pub/sub), or within
/// the periodic re-read when the message is lost.
#[test]
fn redis_kills_conform_and_reach_every_replica() {
    use toolgate::state::kill::{Kill, KillScope, KillStore};
    use toolgate::state::redis::kills::{REREAD_EVERY, RedisKills};
    let server = crate::util::redis_server::RedisServer::start(&[]);
    let link = |namespace: &str| {
        toolgate::state::redis::Link::to(&server.url(), namespace, Duration::from_secs(1)).unwrap()
    };
    conformance::kills(&|| Arc::new(RedisKills::open(&link("conformance")).unwrap()) as Arc<dyn KillStore>)
        .unwrap();
    let (a, b) = (RedisKills::open(&link("replicas")).unwrap(), RedisKills::open(&link("replicas")).unwrap());
    let scope = KillScope::Session { agent: "bot".into(), session: "s1".into() };
    let kill = Kill { reason: "runaway".into(), by: "test".into(), at: "now".into() };
    let until = |what: &dyn Fn() -> bool, within: Duration| {
        let started = std::time::Instant::now();
        while !what() {
            assert!(started.elapsed() < within, "not within {within:?}");
            std::thread::sleep(Duration::from_micros(200));
        }
        started.elapsed()
    };
    a.kill(scope.clone(), kill.clone()).unwrap();
    assert!(a.check("bot", Some("s1")).is_some(), "in force on its own replica at once");
    let propagated = until(&|| b.check("bot", Some("s1")).is_some(), Duration::from_millis(500));
    eprintln!("kill propagation to another replica: {propagated:?}");
    assert!(b.revive(&scope).unwrap());
    until(&|| a.check("bot", Some("s1")).is_none(), Duration::from_millis(500));
    // A change whose message is lost (written behind the replicas' back,
    // without PUBLISH) arrives with the next re-read.
    let value = r#"{"order":1000,"kill":{"reason":"quiet","by":"redis-cli","at":"now"}}"#;
    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(server.socket())
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    cli(&["HSET", "{replicas:kills}:set", r#"{"scope":"agent","agent":"bot"}"#, value]);
    cli(&["INCR", "{replicas:kills}:version"]);
    until(&|| b.check("bot", Some("any")).is_some(), REREAD_EVERY * 3);
    until(&|| a.list().len() == 1, REREAD_EVERY * 3);

    // A kill no replica can read (a newer format, a bad write by hand) is
    // not dropped: it stops what its field names, or everything.
    cli(&["HDEL", "{replicas:kills}:set", r#"{"scope":"agent","agent":"bot"}"#]);
    cli(&["HSET", "{replicas:kills}:set", r#"{"scope":"agent","agent":"other"}"#, "{not json"]);
    cli(&["INCR", "{replicas:kills}:version"]);
    let reads_other_only = |store: &RedisKills| {
        store.check("other", Some("s")).is_some() && store.check("bot", Some("s")).is_none()
    };
    until(&|| reads_other_only(&a) && reads_other_only(&b), REREAD_EVERY * 3);
    cli(&["HSET", "{replicas:kills}:set", "a scope of the future", "{}"]);
    cli(&["INCR", "{replicas:kills}:version"]);
    // Both replicas hold the set without "bot", so "bot" stopped again
    // can only come from the unreadable scope stopping everything.
    until(&|| a.check("bot", Some("s")).is_some(), REREAD_EVERY * 3);
    let everything = a.check("anyone", None).expect("everything is killed");
    assert!(everything.1.reason.contains("cannot read"), "{everything:?}");
    cli(&["DEL", "{replicas:kills}:set"]);
    cli(&["INCR", "{replicas:kills}:version"]);
    until(&|| a.check("anyone", None).is_none() && b.check("other", None).is_none(), REREAD_EVERY * 3);

    // A change this replica has not read yet (its message lost), then a
    // kill made here: the kill's answer carries the whole set, so the
    // other change is in force here at once, not skipped as "not newer".
    let quiet = r#"{"order":5000,"kill":{"reason":"quiet","by":"redis-cli","at":"now"}}"#;
    cli(&["HSET", "{replicas:kills}:set", r#"{"scope":"agent","agent":"quiet"}"#, quiet]);
    cli(&["INCR", "{replicas:kills}:version"]);
    a.kill(KillScope::Agent { agent: "loud".into() }, kill.clone()).unwrap();
    assert!(a.check("quiet", None).is_some(), "the change read with the kill's answer");
    std::thread::sleep(REREAD_EVERY * 2);
    assert!(a.check("quiet", None).is_some() && a.check("loud", None).is_some());

    // Redis loses everything (a restart without persistence, a FLUSHALL):
    // the versions start again at 1, under a new epoch, and the replicas
    // take the new set although its version is lower than theirs.
    cli(&["FLUSHALL"]);
    b.kill(KillScope::Agent { agent: "after".into() }, kill.clone()).unwrap();
    until(&|| a.check("after", None).is_some() && a.check("loud", None).is_none(), REREAD_EVERY * 3);
}

/// An approval opened on one replica is decided on a second and redeemed
/// exactly once among three racing to use it; a four-eyes approval needs
/// two different people whichever replica they decide on.
#[test]
fn redis_approvals_are_shared_and_redeemed_exactly_once() {
    use toolgate::state::approval::{ApprovalError, ApprovalStatus, Binding, Call, Shown};
    use toolgate::state::redis::approvals::RedisApprovals;
    let server = crate::util::redis_server::RedisServer::start(&[]);
    let replica = || {
        let clock: Arc<dyn toolgate::state::Clock> = Arc::new(toolgate::state::SystemClock);
        let limits = toolgate::state::ApprovalLimits::default();
        let link = toolgate::state::redis::Link::to(&server.url(), "shared", Duration::from_secs(1)).unwrap();
        Arc::new(RedisApprovals::open(&link, Duration::from_secs(60), limits, clock).unwrap())
    };
    let (a, b, c) = (replica(), replica(), replica());
    let args = serde_json::json!({"amount": 5}).as_object().cloned().unwrap();
    let call =
        Call { agent: "bot", session: Some("s"), tool: "pay", args: &args, principal: None, context: None };
    let binding = Binding::new(call, "bot.approvalGates.pay", Some("finance"), "sha256:p");
    let opened = a.open(binding.clone(), Shown::default(), 1).unwrap();
    assert_eq!(
        c.find(&binding),
        Some((opened.id.clone(), ApprovalStatus::Pending)),
        "found from another replica"
    );
    b.decide(&opened.id, Some("finance"), "alice (console)", true).unwrap();
    let stores = [Arc::clone(&a), Arc::clone(&b), Arc::clone(&c)];
    let results: Vec<Result<(), ApprovalError>> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..12)
            .map(|i| {
                let (store, binding, id) = (Arc::clone(&stores[i % 3]), binding.clone(), opened.id.clone());
                scope.spawn(move || store.redeem(&id, &binding))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ApprovalError::Used)), "{results:?}");

    let four_eyes = a.open(binding.clone(), Shown::default(), 2).unwrap();
    let first = b.decide(&four_eyes.id, Some("finance"), "alice (uid 1000)", true).unwrap();
    assert_eq!(first.status(0), ApprovalStatus::Pending);
    assert_eq!(
        c.decide(&four_eyes.id, Some("finance"), "alice (console)", true).map(|_| ()),
        Err(ApprovalError::SamePerson { granted: 1, quorum: 2 })
    );
    let second = c.decide(&four_eyes.id, Some("finance"), "bob (console)", true).unwrap();
    assert_eq!(second.grants.len(), 2);
    assert_eq!(a.status(&four_eyes.id), Some(ApprovalStatus::Granted));
}

/// Without Redis, calls that need state are denied and the store says it
/// is degraded; when Redis is back, the store recovers by itself; with an
/// append-only file fsynced on every write, counts survive a Redis crash.
#[test]
fn a_redis_store_fails_closed_heals_and_keeps_counts_redis_persisted() {
    use toolgate::state::redis::{Link, RedisSessions};
    use toolgate::state::session::{Admission, Cap, Counter, SessionKey};
    let mut server =
        crate::util::redis_server::RedisServer::start(&["--appendonly yes", "--appendfsync always"]);
    let link = Link::to(&server.url(), "tg", Duration::from_millis(300)).unwrap();
    let store = RedisSessions::open(&link, Default::default()).unwrap();
    let kills = toolgate::state::redis::kills::RedisKills::open(&link).unwrap();
    let approvals = toolgate::state::redis::approvals::RedisApprovals::open(
        &link,
        Duration::from_secs(60),
        toolgate::state::ApprovalLimits::default(),
        Arc::new(toolgate::state::SystemClock),
    )
    .unwrap();
    let within = |what: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !what() {
            assert!(started.elapsed() < Duration::from_secs(5), "not within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let key = SessionKey { agent: "bot", session: "s" };
    let caps = [Cap::count("bot.constraints.pay.maxPerSession", 3)];
    for _ in 0..2 {
        assert_eq!(store.admit(key, "pay", &caps), Admission::Admitted);
    }
    server.stop();
    let admission = store.admit(key, "pay", &caps);
    assert!(matches!(admission, Admission::Unavailable | Admission::TimedOut), "{admission:?}");
    assert!(!store.condition().is_ok(), "degraded while Redis is away");
    assert_eq!(store.count(key, Counter::Total), None);
    // The kills' listener and the approvals say so too.
    within(&|| !KillStore::condition(&kills).is_ok());
    // A kill made now holds here, and is shared once Redis is back.
    let scope = toolgate::state::kill::KillScope::Agent { agent: "while-away".into() };
    let kill = toolgate::state::kill::Kill { reason: "r".into(), by: "t".into(), at: "now".into() };
    assert!(kills.kill(scope, kill).is_err(), "it says it could not be shared");
    assert!(kills.check("while-away", None).is_some());
    assert!(approvals.pending().is_empty());
    assert!(!ApprovalStore::condition(&approvals).is_ok());
    server.start_again();
    within(&|| KillStore::condition(&kills).is_ok());
    let later = toolgate::state::redis::kills::RedisKills::open(&link).unwrap();
    within(&|| later.check("while-away", None).is_some());
    let started = std::time::Instant::now();
    let admission = loop {
        match store.admit(key, "pay", &caps) {
            Admission::Unavailable | Admission::TimedOut if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break other,
        }
    };
    assert_eq!(admission, Admission::Admitted, "the third call, counted before the crash as two");
    assert!(store.condition().is_ok());
    assert_eq!(
        store.admit(key, "pay", &caps),
        Admission::Refused(0),
        "the cap holds across the Redis restart"
    );
    assert_eq!(store.count(key, Counter::Total), Some(3));
    assert!(approvals.pending().is_empty());
    assert!(ApprovalStore::condition(&approvals).is_ok());
}

/// The approvals' log: every change is one appended line, read back after
/// a crash (a torn last line dropped), and compacted once it is mostly
/// changes long superseded.
#[test]
fn the_approvals_log_survives_a_torn_line_and_stays_compact() {
    use std::io::Write;
    use toolgate::state::approval::{ApprovalStatus, Binding, Call, Shown};
    let dir = TempDir::new();
    let file = dir.path().join("approvals.log");
    let args = serde_json::Map::new();
    let call = |session: &'static str| {
        let call = Call {
            agent: "bot",
            session: Some(session),
            tool: "pay",
            args: &args,
            principal: None,
            context: None,
        };
        Binding::new(call, "bot.approvalGates.pay", None, "sha256:p")
    };
    let ttl = Duration::from_secs(600);
    let (used, granted, pending) = {
        let ledger = Ledger::persistent(&file, ttl, Arc::new(toolgate::state::SystemClock)).unwrap();
        let used = ledger.open(call("a"), Shown::default(), 1).unwrap().id;
        ledger.decide(&used, None, "ann", true).unwrap();
        ledger.redeem(&used, &call("a")).unwrap();
        let granted = ledger.open(call("b"), Shown::default(), 1).unwrap().id;
        ledger.decide(&granted, None, "ann", true).unwrap();
        let pending = ledger.open(call("c"), Shown::default(), 1).unwrap().id;
        (used, granted, pending)
    };
    // A crash in the middle of appending a line.
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(b"{\"id\":\"apr_").unwrap();
    let ledger = Ledger::persistent(&file, ttl, Arc::new(toolgate::state::SystemClock)).unwrap();
    assert_eq!(ledger.status(&used), Some(ApprovalStatus::Used), "a used approval stays used");
    assert_eq!(ledger.status(&granted), Some(ApprovalStatus::Granted));
    assert_eq!(ledger.status(&pending), Some(ApprovalStatus::Pending));
    assert!(ledger.redeem(&used, &call("a")).is_err(), "and cannot be used again");
    // 30,000 changes to a handful of approvals: the log is compacted.
    let mut sessions = Vec::new();
    for n in 0..10_000 {
        let session: &'static str = Box::leak(format!("s{}", n % 16).into_boxed_str());
        let id = ledger.open(call(session), Shown::default(), 1).unwrap().id;
        ledger.decide(&id, None, "ann", true).unwrap();
        ledger.redeem(&id, &call(session)).unwrap();
        sessions.push(id);
    }
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size < 16 << 20, "the log is compacted: {size} bytes");
    let reopened = Ledger::persistent(&file, ttl, Arc::new(toolgate::state::SystemClock)).unwrap();
    assert!(sessions.iter().all(|id| reopened.status(id) == Some(ApprovalStatus::Used)));
}

/// Replicas whose clocks disagree by twenty minutes agree on when an
/// approval expires once each tells Redis's time: an approval opened on a
/// replica running behind is still pending on one running ahead (on their
/// own clocks, the one ahead would find it expired at once).
#[test]
fn replicas_with_skewed_clocks_agree_on_approvals_through_redis_time() {
    use toolgate::state::approval::{ApprovalStatus, Binding, Call, Shown};
    use toolgate::state::redis::approvals::RedisApprovals;
    use toolgate::state::redis::{Link, RedisClock};
    use toolgate::state::{Clock, ManualClock, SystemClock};
    let server = crate::util::redis_server::RedisServer::start(&[]);
    let link = Link::to(&server.url(), "skew", Duration::from_secs(1)).unwrap();
    let now = SystemClock.now_ms();
    let skewed = |by: i64| Arc::new(ManualClock::at_ms(now.saturating_add_signed(by))) as Arc<dyn Clock>;
    let (ahead, behind) = (skewed(600_000), skewed(-600_000));
    let store = |clock: Arc<dyn Clock>| {
        let limits = toolgate::state::ApprovalLimits::default();
        RedisApprovals::open(&link, Duration::from_secs(60), limits, clock).unwrap()
    };
    let told = |base: &Arc<dyn Clock>| {
        let clock = RedisClock::over(Arc::clone(base));
        clock.sample(&mut link.connect().unwrap()).unwrap();
        assert!((clock.now_ms().abs_diff(now)) < 5_000, "Redis's time, not the base's");
        Arc::new(clock) as Arc<dyn Clock>
    };
    let args = serde_json::json!({"amount": 5}).as_object().cloned().unwrap();
    let call =
        Call { agent: "bot", session: Some("s"), tool: "pay", args: &args, principal: None, context: None };
    let binding = Binding::new(call, "bot.approvalGates.pay", Some("finance"), "sha256:p");

    // On their own clocks, the replica ahead finds the other's approval expired.
    let opened = store(Arc::clone(&behind)).open(binding.clone(), Shown::default(), 1).unwrap();
    assert_eq!(store(Arc::clone(&ahead)).status(&opened.id), Some(ApprovalStatus::Expired));

    // On Redis's time they agree: pending, decidable, redeemable.
    let (on_behind, on_ahead) = (store(told(&behind)), store(told(&ahead)));
    let opened = on_behind.open(binding.clone(), Shown::default(), 1).unwrap();
    assert_eq!(on_ahead.status(&opened.id), Some(ApprovalStatus::Pending));
    on_ahead.decide(&opened.id, Some("finance"), "alice (console)", true).unwrap();
    assert_eq!(on_behind.status(&opened.id), Some(ApprovalStatus::Granted));
    on_ahead.redeem(&opened.id, &binding).unwrap();
}

/// Approvals that expire leave Redis's index of open approvals (every
/// distinct gated call would otherwise stay in it for good), and only a
/// granted approval can be redeemed.
#[test]
fn expired_redis_approvals_leave_the_index() {
    use toolgate::state::approval::{ApprovalError, Binding, Call, Shown};
    use toolgate::state::redis::approvals::RedisApprovals;
    let server = crate::util::redis_server::RedisServer::start(&[]);
    let link = toolgate::state::redis::Link::to(&server.url(), "index", Duration::from_secs(1)).unwrap();
    let clock = Arc::new(toolgate::state::ManualClock::default());
    let limits = toolgate::state::ApprovalLimits::default();
    let store =
        RedisApprovals::open(&link, Duration::from_secs(60), limits, Arc::clone(&clock) as _).unwrap();
    let args = serde_json::Map::new();
    let binding = |tool| {
        let call =
            Call { agent: "bot", session: Some("s"), tool, args: &args, principal: None, context: None };
        Binding::new(call, "gate", None, "sha256:p")
    };
    let pending = store.open(binding("a"), Shown::default(), 1).unwrap();
    let granted = store.open(binding("b"), Shown::default(), 1).unwrap();
    store.decide(&granted.id, None, "alice", true).unwrap();
    let cli = |args: &[&str]| {
        let output =
            std::process::Command::new("redis-cli").arg("-s").arg(server.socket()).args(args).output();
        String::from_utf8_lossy(&output.unwrap().stdout).trim().to_owned()
    };
    assert_eq!(cli(&["HLEN", "{index:approvals}:open"]), "2");
    assert_eq!(store.redeem(&pending.id, &binding("a")), Err(ApprovalError::Pending));
    clock.advance(Duration::from_secs(61));
    assert_eq!(store.expired_count(), 1, "the pending one expired");
    assert_eq!(cli(&["HLEN", "{index:approvals}:open"]), "0", "neither is open any more");
    assert_eq!(cli(&["ZCARD", "{index:approvals}:expiring"]), "0");
    assert_eq!(store.redeem(&granted.id, &binding("b")), Err(ApprovalError::Expired));
}

/// A failover to a replica that lagged: the new primary has the same
/// epoch but an older version, without the last kill. Replicas follow
/// what the new server has, not what their version numbers say.
#[test]
fn kills_follow_a_new_primary_whose_version_went_back() {
    use toolgate::state::kill::{Kill, KillScope, KillStore};
    use toolgate::state::redis::kills::{REREAD_EVERY, RedisKills};
    let mut server = crate::util::redis_server::RedisServer::start(&[]);
    let link = toolgate::state::redis::Link::to(&server.url(), "lag", Duration::from_secs(1)).unwrap();
    let store = RedisKills::open(&link).unwrap();
    let kill = Kill { reason: "r".into(), by: "t".into(), at: "now".into() };
    store.kill(KillScope::Agent { agent: "first".into() }, kill.clone()).unwrap();
    let cli = |server: &crate::util::redis_server::RedisServer, args: &[&str]| {
        let output =
            std::process::Command::new("redis-cli").arg("-s").arg(server.socket()).args(args).output();
        String::from_utf8_lossy(&output.unwrap().stdout).trim().to_owned()
    };
    let epoch = cli(&server, &["GET", "{lag:kills}:epoch"]);
    let first_field = r#"{"scope":"agent","agent":"first"}"#;
    let first_value = cli(&server, &["HGET", "{lag:kills}:set", first_field]);
    store.kill(KillScope::Agent { agent: "second".into() }, kill).unwrap();
    assert!(store.check("second", None).is_some());

    // The primary dies; the replica promoted had the first kill only.
    server.start_again();
    cli(&server, &["SET", "{lag:kills}:epoch", &epoch]);
    cli(&server, &["SET", "{lag:kills}:version", "1"]);
    cli(&server, &["HSET", "{lag:kills}:set", first_field, &first_value]);
    let started = std::time::Instant::now();
    // (It may see the new server empty for a moment, before it has data.)
    while store.check("second", None).is_some() || store.check("first", None).is_none() {
        assert!(started.elapsed() < REREAD_EVERY * 5, "not at the new primary's kills");
        std::thread::sleep(Duration::from_millis(20));
    }
}
