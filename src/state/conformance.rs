//! The properties every store must have, as checks any implementation can
//! run: the test suite runs them against the in-memory and the redb
//! stores, and a new store (Redis) only plugs in.
//!
//! Each check builds fresh stores with the given constructor, on a
//! [`ManualClock`] it moves itself, and returns the first property that
//! does not hold.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::approval::{
    ApprovalError, ApprovalStatus, ApprovalStore, Binding, Call, MAX_PENDING_PER_AGENT,
    MAX_PENDING_PER_SESSION, Shown, canonical_digest,
};
use super::clock::{Clock, ManualClock};
use super::kill::{Kill, KillScope, KillStore};
use super::session::{
    Admission, CallOutcome, Cap, Counter, MAX_TOOLS_PER_SESSION, OutcomeTotals, SessionKey, SessionLimits,
    SessionStore,
};

/// A property a store does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The property.
    pub property: &'static str,
    /// What was seen instead.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

impl std::error::Error for Failure {}

/// Fails with `property` unless `seen == expected`.
fn expect<T: PartialEq + std::fmt::Debug>(
    property: &'static str,
    seen: T,
    expected: T,
) -> Result<(), Failure> {
    if seen == expected {
        Ok(())
    } else {
        Err(Failure { property, detail: format!("got {seen:?}, expected {expected:?}") })
    }
}

const KEY: SessionKey<'static> = SessionKey { agent: "a", session: "s" };

/// Checks a session store. `make` builds an empty store on the given
/// clock, within the given limits.
pub fn sessions(
    make: &dyn Fn(Arc<dyn Clock>, SessionLimits) -> Arc<dyn SessionStore>,
) -> Result<(), Failure> {
    let within = |limits: SessionLimits| {
        let clock = Arc::new(ManualClock::default());
        (make(Arc::clone(&clock) as Arc<dyn Clock>, limits), clock)
    };
    let fresh = || within(SessionLimits::default());
    let small = SessionLimits { idle: Duration::from_secs(60), max_sessions: 3 };
    let (store, clock) = within(small);
    idle_sessions_start_again(store.as_ref(), &clock)?;
    let (store, clock) = within(small);
    a_full_store_refuses_new_sessions_and_keeps_live_ones(store.as_ref(), &clock)?;
    let (store, _) = fresh();
    a_session_counts_a_bounded_number_of_tools(store.as_ref())?;
    let (store, _) = fresh();
    admits_only_when_every_cap_has_room(store.as_ref())?;
    let (store, _) = fresh();
    keeps_sessions_and_agents_apart(store.as_ref())?;
    let (store, clock) = fresh();
    rate_limits_refill_with_time(store.as_ref(), &clock)?;
    let (store, _) = fresh();
    records_outcomes(store.as_ref())?;
    let (store, _) = fresh();
    never_exceeds_a_cap_under_concurrency(store)
}

fn idle_sessions_start_again(store: &dyn SessionStore, clock: &ManualClock) -> Result<(), Failure> {
    let property = "a session idle for the idle time starts again";
    let caps = [Cap::count("a.t.max", 1)];
    expect(property, store.admit(KEY, "t", &caps), Admission::Admitted)?;
    clock.advance(Duration::from_secs(59));
    expect(property, store.admit(KEY, "t", &caps), Admission::Refused(0))?;
    // The refused call used the session: idle time counts from it.
    clock.advance(Duration::from_secs(59));
    expect(property, store.admit(KEY, "t", &caps), Admission::Refused(0))?;
    clock.advance(Duration::from_secs(60));
    expect(property, store.admit(KEY, "t", &caps), Admission::Admitted)?;
    expect(property, store.count(KEY, Counter::Total), Some(1))
}

fn a_full_store_refuses_new_sessions_and_keeps_live_ones(
    store: &dyn SessionStore,
    clock: &ManualClock,
) -> Result<(), Failure> {
    let property = "a full store refuses a new session and resets no live one";
    let caps = [Cap::count("a.t.max", 1)];
    fn key(session: &str) -> SessionKey<'_> {
        SessionKey { agent: "a", session }
    }
    for session in ["s0", "s1", "s2"] {
        expect(property, store.admit(key(session), "t", &caps), Admission::Admitted)?;
    }
    for attempt in 0..5 {
        let fresh = format!("new-{attempt}");
        expect(property, store.admit(key(&fresh), "t", &caps), Admission::SessionLimit)?;
        expect(property, store.check(key(&fresh), &caps), Admission::SessionLimit)?;
        clock.advance(Duration::from_secs(2));
    }
    for session in ["s0", "s1", "s2"] {
        expect(property, store.admit(key(session), "t", &caps), Admission::Refused(0))?;
    }
    // Once the others are idle long enough, there is room again.
    clock.advance(Duration::from_secs(61));
    expect(property, store.admit(key("late"), "t", &caps), Admission::Admitted)?;
    expect(property, store.admit(key("s0"), "t", &caps), Admission::Admitted)
}

fn a_session_counts_a_bounded_number_of_tools(store: &dyn SessionStore) -> Result<(), Failure> {
    let property = "a session counts at most MAX_TOOLS_PER_SESSION tools";
    for n in 0..MAX_TOOLS_PER_SESSION {
        expect(property, store.admit(KEY, &format!("db/t{n}"), &[]), Admission::Admitted)?;
    }
    expect(property, store.admit(KEY, "db/one-more", &[]), Admission::SessionLimit)?;
    expect(property, store.admit(KEY, "db/t0", &[]), Admission::Admitted)?;
    expect(property, store.count(KEY, Counter::Tool("db/t0")), Some(2))?;
    expect(property, store.count(KEY, Counter::Total), Some(MAX_TOOLS_PER_SESSION as u64 + 1))
}

fn admits_only_when_every_cap_has_room(store: &dyn SessionStore) -> Result<(), Failure> {
    let caps = [Cap::count("a.t.maxPerSession", 2), Cap::count("a.session.maxToolCalls", 10)];
    let property = "an admission counts only when every cap has room";
    expect(property, store.admit(KEY, "t", &caps), Admission::Admitted)?;
    expect(property, store.check(KEY, &caps), Admission::Admitted)?;
    expect(property, store.admit(KEY, "t", &caps), Admission::Admitted)?;
    expect(property, store.admit(KEY, "t", &caps), Admission::Refused(0))?;
    expect(property, store.check(KEY, &caps), Admission::Refused(0))?;
    expect("a refused call is not counted", store.count(KEY, Counter::Total), Some(2))?;
    expect("calls are counted per tool", store.count(KEY, Counter::Tool("t")), Some(2))?;
    expect("calls are counted per cap", store.count(KEY, Counter::Cap("a.session.maxToolCalls")), Some(2))?;
    expect("an uncounted counter is 0", store.count(KEY, Counter::Tool("other")), Some(0))?;
    Ok(())
}

fn keeps_sessions_and_agents_apart(store: &dyn SessionStore) -> Result<(), Failure> {
    expect("admitted", store.admit(KEY, "t", &[]), Admission::Admitted)?;
    let others = [
        SessionKey { agent: "a", session: "other" },
        SessionKey { agent: "b", session: "s" },
        // Crafted names must not reach another session's counters.
        SessionKey { agent: "a", session: "s|1:a" },
        SessionKey { agent: "s|1:a", session: "" },
        SessionKey { agent: "", session: "s" },
    ];
    for other in others {
        expect("sessions and agents count apart", store.count(other, Counter::Total), Some(0))?;
    }
    Ok(())
}

fn rate_limits_refill_with_time(store: &dyn SessionStore, clock: &ManualClock) -> Result<(), Failure> {
    let rate = [Cap { counter: "a.t.rateLimit".into(), limit: 2, window_ms: Some(1000) }];
    let per_agent = SessionKey { agent: "a", session: "" };
    let other_session = SessionKey { agent: "a", session: "s2" };
    let property = "a rate limit admits its limit per window, across sessions";
    expect(property, store.admit(KEY, "t", &rate), Admission::Admitted)?;
    expect(property, store.admit(other_session, "t", &rate), Admission::Admitted)?;
    expect(property, store.admit(per_agent, "t", &rate), Admission::Refused(0))?;
    expect("a check sees a spent rate limit", store.check(KEY, &rate), Admission::Refused(0))?;
    clock.advance(Duration::from_millis(499));
    expect(
        "a token refills only after its share of the window",
        store.admit(KEY, "t", &rate),
        Admission::Refused(0),
    )?;
    clock.advance(Duration::from_millis(1));
    expect("a check takes no token", store.check(KEY, &rate), Admission::Admitted)?;
    expect(
        "a token refills after its share of the window",
        store.admit(KEY, "t", &rate),
        Admission::Admitted,
    )?;
    expect("the refilled token is used", store.admit(KEY, "t", &rate), Admission::Refused(0))?;
    clock.advance(Duration::from_secs(3600));
    expect("a bucket refills up to its limit, no more", store.admit(KEY, "t", &rate), Admission::Admitted)?;
    expect("a bucket refills up to its limit, no more", store.admit(KEY, "t", &rate), Admission::Admitted)?;
    expect("a bucket refills up to its limit, no more", store.admit(KEY, "t", &rate), Admission::Refused(0))?;
    let other_agent = SessionKey { agent: "b", session: "s" };
    expect("each agent has its own buckets", store.admit(other_agent, "t", &rate), Admission::Admitted)?;
    // A call refused by a count cap takes no token from a bucket before it.
    clock.advance(Duration::from_secs(3600));
    let both = [rate[0].clone(), Cap::count("a.t.maxPerSession", 0)];
    expect("a refused call takes no token", store.admit(KEY, "t", &both), Admission::Refused(1))?;
    expect("a refused call takes no token", store.admit(KEY, "t", &rate), Admission::Admitted)?;
    expect("a refused call takes no token", store.admit(KEY, "t", &rate), Admission::Admitted)?;
    Ok(())
}

fn records_outcomes(store: &dyn SessionStore) -> Result<(), Failure> {
    let error = CallOutcome { error: true, cost_micros: 1_500_000 };
    let ok = CallOutcome { error: false, cost_micros: 250_000 };
    let totals = |consecutive_errors, cost_micros| Some(OutcomeTotals { consecutive_errors, cost_micros });
    let property = "errors in a row and cost are totalled; a success ends the streak";
    expect(property, store.record_outcome(KEY, error), totals(1, 1_500_000))?;
    expect(property, store.record_outcome(KEY, error), totals(2, 3_000_000))?;
    expect(property, store.count(KEY, Counter::ConsecutiveErrors), Some(2))?;
    expect(property, store.record_outcome(KEY, ok), totals(0, 3_250_000))?;
    expect(property, store.count(KEY, Counter::CostMicros), Some(3_250_000))?;
    expect("outcomes are not calls", store.count(KEY, Counter::Total), Some(0))?;
    Ok(())
}

fn never_exceeds_a_cap_under_concurrency(store: Arc<dyn SessionStore>) -> Result<(), Failure> {
    let (threads, per_thread, limit) = (8, 100, 250);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let caps = [Cap::count("a.t.maxPerSession", limit)];
                (0..per_thread).filter(|_| store.admit(KEY, "t", &caps) == Admission::Admitted).count()
            })
        })
        .collect();
    let admitted: usize = workers.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    expect("concurrent admissions never exceed a cap", admitted as u64, limit)?;
    expect("concurrent admissions are all counted", store.count(KEY, Counter::Total), Some(limit))
}

fn kill(reason: &str) -> Kill {
    Kill { reason: reason.into(), by: "test".into(), at: "2026-01-01T00:00:00Z".into() }
}

/// Checks a kill store. `make` builds an empty store.
pub fn kills(make: &dyn Fn() -> Arc<dyn KillStore>) -> Result<(), Failure> {
    let store = make();
    let scope = |kill: Option<Arc<(KillScope, Kill)>>| kill.map(|k| k.0.clone());
    expect("an empty store is empty", store.is_empty(), true)?;
    expect("an empty store kills nothing", scope(store.check("bot", Some("s1"))), None)?;
    let session = KillScope::Session { agent: "bot".into(), session: "s1".into() };
    store.kill(session.clone(), kill("runaway")).map_err(io_failure)?;
    expect("a kill is in force at once", store.is_empty(), false)?;
    expect(
        "a session kill covers its session",
        scope(store.check("bot", Some("s1"))),
        Some(session.clone()),
    )?;
    expect("a session kill covers nothing else", scope(store.check("bot", Some("s2"))), None)?;
    expect("a session kill covers nothing else", scope(store.check("bot", None)), None)?;
    expect("a session kill covers nothing else", scope(store.check("other", Some("s1"))), None)?;
    let agent = KillScope::Agent { agent: "other".into() };
    store.kill(agent.clone(), kill("compromised")).map_err(io_failure)?;
    expect(
        "an agent kill covers every session",
        scope(store.check("other", Some("x"))),
        Some(agent.clone()),
    )?;
    expect("an agent kill covers every session", scope(store.check("other", None)), Some(agent.clone()))?;
    store.kill(agent.clone(), kill("again")).map_err(io_failure)?;
    expect("a second kill of a scope replaces the first", store.list().len(), 2)?;
    expect("a revival says it revived", store.revive(&agent).map_err(io_failure)?, true)?;
    expect("a second revival finds nothing", store.revive(&agent).map_err(io_failure)?, false)?;
    expect("a revived scope is free", scope(store.check("other", None)), None)?;
    store.kill(KillScope::All, kill("incident")).map_err(io_failure)?;
    expect("killing everything covers anyone", scope(store.check("anyone", None)), Some(KillScope::All))?;
    store.revive(&KillScope::All).map_err(io_failure)?;
    store.revive(&session).map_err(io_failure)?;
    expect("a store emptied by revivals is empty", store.is_empty(), true)
}

fn io_failure(error: std::io::Error) -> Failure {
    Failure { property: "a change is saved", detail: error.to_string() }
}

/// The binding of a `pay` call with `args`, through `gate` (`bot.approvalGates.pay`
/// unless said otherwise), acting for principal `ann`.
fn binding(args: serde_json::Value, approver: Option<&str>) -> Binding {
    let args = args.as_object().cloned().unwrap_or_default();
    let principal = json!({"user": "ann"});
    let context = json!({"risk": 1});
    let call = Call {
        agent: "bot",
        session: Some("s"),
        tool: "pay",
        args: &args,
        principal: Some(&principal),
        context: Some(&context),
    };
    Binding::new(call, "bot.approvalGates.pay", approver, "sha256:p")
}

/// Checks an approval store. `make` builds an empty store on the given
/// clock, whose approvals expire after 60 seconds.
pub fn approvals(make: &dyn Fn(Arc<dyn Clock>) -> Arc<dyn ApprovalStore>) -> Result<(), Failure> {
    let clock = Arc::new(ManualClock::default());
    let store = make(Arc::clone(&clock) as Arc<dyn Clock>);
    let args = json!({"amount": 10, "to": {"iban": "X", "name": "Y"}});
    let call = binding(args.clone(), Some("finance"));
    let open = |binding: &Binding| {
        store
            .open(
                binding.clone(),
                Shown { args: json!({"amount": 10}), description: Some(String::from("Payments")) },
                1,
            )
            .map_err(|e| Failure { property: "an approval opens", detail: e.to_string() })
    };
    let approval = open(&call)?;
    expect("an approval's approver is its gate's", approval.approver.as_deref(), Some("finance"))?;
    expect(
        "an approval keeps what its approvers are shown",
        approval.shown.description.as_deref(),
        Some("Payments"),
    )?;
    expect("an approval knows when it was opened", approval.opened_at, clock.now_secs())?;
    expect(
        "an approval is found by its id",
        store.get(&approval.id).map(|a| a.id),
        Some(approval.id.clone()),
    )?;
    expect("an id is unguessable (128 bits of hex)", approval.id.len(), "apr_".len() + 32)?;
    expect("an id is new", open(&call)?.id == approval.id, false)?;
    expect("an approval is pending", store.pending().iter().any(|a| a.id == approval.id), true)?;
    expect(
        "a pending approval is not redeemed",
        store.redeem(&approval.id, &call),
        Err(ApprovalError::Pending),
    )?;
    let wrong = store.decide(&approval.id, Some("clerk"), "mallory (uid 1003)", true).map(|_| ());
    let expected = Err(ApprovalError::WrongApprover { expected: "finance".into() });
    expect("an approval is decided for its gate's approver only", wrong, expected)?;
    let unnamed = store.decide(&approval.id, None, "root (uid 0)", true).map(|_| ());
    let expected = Err(ApprovalError::WrongApprover { expected: "finance".into() });
    expect("a named approver cannot be skipped", unnamed, expected)?;
    let granted = store
        .decide(&approval.id, Some("finance"), "alice (uid 1000)", true)
        .map(|a| a.status(clock.now_secs()));
    expect("the named approver grants", granted, Ok(ApprovalStatus::Granted))?;
    expect(
        "a granted approval is no longer pending",
        store.pending().iter().any(|a| a.id == approval.id),
        false,
    )?;
    let twice = store.decide(&approval.id, Some("finance"), "bob (uid 1001)", false).map(|_| ());
    expect(
        "an approval is decided once",
        twice,
        Err(ApprovalError::AlreadyDecided(ApprovalStatus::Granted)),
    )?;
    let reordered = binding(json!({"to": {"name": "Y", "iban": "X"}, "amount": 10}), Some("finance"));
    expect("key order does not change the call", reordered.args_digest == call.args_digest, true)?;
    // Everything the gate's decision depended on is bound.
    let swapped = binding(json!({"amount": 10000, "to": {"iban": "X", "name": "Y"}}), Some("finance"));
    let other_gate = Binding { gate: "bot.approvalGates.pa*".into(), ..call.clone() };
    let other_approver = binding(args.clone(), Some("clerk"));
    let other_principal =
        Binding { principal_digest: canonical_digest(&json!({"user": "mallory"})), ..call.clone() };
    let other_context = Binding { context_digest: canonical_digest(&json!({"risk": 9})), ..call.clone() };
    let other_policy = Binding { policy: "sha256:q".into(), ..call.clone() };
    for (other, what) in [
        (&swapped, "arguments"),
        (&other_gate, "gate"),
        (&other_approver, "approver"),
        (&other_principal, "principal"),
        (&other_context, "context"),
        (&other_policy, "policy"),
    ] {
        let refused = store.redeem(&approval.id, other);
        expect(
            "another call is refused, and says what differs",
            refused,
            Err(ApprovalError::Mismatch(what)),
        )?;
    }
    expect("the approved call is allowed", store.redeem(&approval.id, &reordered), Ok(()))?;
    expect("a redeemed approval is used", store.status(&approval.id), Some(ApprovalStatus::Used))?;
    expect("an unknown approval has no status", store.status("apr_nope"), None)?;
    expect("an approval is used once", store.redeem(&approval.id, &call), Err(ApprovalError::Used))?;
    expect("an unknown id is refused", store.redeem("apr_nope", &call), Err(ApprovalError::Unknown))?;
    let open_to_anyone = binding(args, None);
    let rejected = open(&open_to_anyone)?;
    let by_anyone = store.decide(&rejected.id, None, "anyone", false).map(|a| a.status(clock.now_secs()));
    expect("a gate without approver is decided for no approver", by_anyone, Ok(ApprovalStatus::Rejected))?;
    expect(
        "a rejected approval is refused",
        store.redeem(&rejected.id, &open_to_anyone),
        Err(ApprovalError::Rejected),
    )?;
    let late = open(&open_to_anyone)?;
    let granted_late = open(&open_to_anyone)?;
    store
        .decide(&granted_late.id, None, "anyone", true)
        .map_err(|e| Failure { property: "an approval is granted", detail: e.to_string() })?;
    clock.advance(Duration::from_secs(61));
    expect("an expired approval is not pending", store.pending().iter().any(|a| a.id == late.id), false)?;
    let expired = store.decide(&late.id, None, "anyone", true).map(|_| ());
    expect("an expired approval cannot be decided", expired, Err(ApprovalError::Expired))?;
    expect(
        "an expired grant is refused",
        store.redeem(&granted_late.id, &open_to_anyone),
        Err(ApprovalError::Expired),
    )?;
    let clock = Arc::new(ManualClock::default());
    an_open_approval_is_found_by_its_call(make(Arc::clone(&clock) as Arc<dyn Clock>).as_ref(), &clock)?;
    let clock = Arc::new(ManualClock::default());
    pending_approvals_are_bounded_per_session_and_agent(
        make(Arc::clone(&clock) as Arc<dyn Clock>).as_ref(),
        &clock,
    )
}

/// `find`: the pending or granted approval of exactly this call, and no
/// other; none once used, rejected or expired.
fn an_open_approval_is_found_by_its_call(
    store: &dyn ApprovalStore,
    clock: &ManualClock,
) -> Result<(), Failure> {
    let property = "an open approval is found by its call";
    let call = binding(json!({"amount": 10}), Some("finance"));
    let shown = || Shown { args: json!({}), description: None };
    let opened =
        store.open(call.clone(), shown(), 1).map_err(|e| Failure { property, detail: e.to_string() })?;
    expect(property, store.find(&call), Some((opened.id.clone(), ApprovalStatus::Pending)))?;
    let reordered = binding(json!({"amount": 10}), Some("finance"));
    expect(
        "the same call in another key order finds it",
        store.find(&reordered).map(|f| f.0),
        Some(opened.id.clone()),
    )?;
    for other in [
        binding(json!({"amount": 11}), Some("finance")),
        Binding { session: Some("t".into()), ..call.clone() },
        Binding { session: None, ..call.clone() },
        Binding { policy: "sha256:q".into(), ..call.clone() },
        Binding { gate: "bot.approvalGates.pa*".into(), ..call.clone() },
    ] {
        expect("another call finds nothing", store.find(&other), None)?;
    }
    store
        .decide(&opened.id, Some("finance"), "alice", true)
        .map_err(|e| Failure { property, detail: e.to_string() })?;
    expect(
        "a granted approval is found",
        store.find(&call),
        Some((opened.id.clone(), ApprovalStatus::Granted)),
    )?;
    expect("the found approval is used", store.redeem(&opened.id, &call), Ok(()))?;
    expect("a used approval is not found", store.find(&call), None)?;
    let rejected =
        store.open(call.clone(), shown(), 1).map_err(|e| Failure { property, detail: e.to_string() })?;
    store
        .decide(&rejected.id, Some("finance"), "alice", false)
        .map_err(|e| Failure { property, detail: e.to_string() })?;
    expect("a rejected approval is not found", store.find(&call), None)?;
    store.open(call.clone(), shown(), 1).map_err(|e| Failure { property, detail: e.to_string() })?;
    clock.advance(Duration::from_secs(61));
    expect("an expired approval is not found", store.find(&call), None)
}

/// The binding of a call of `agent` in `session`.
fn call_of(agent: &str, session: &str) -> Binding {
    let args = serde_json::Map::new();
    let call =
        Call { agent, session: Some(session), tool: "pay", args: &args, principal: None, context: None };
    Binding::new(call, "bot.approvalGates.pay", None, "sha256:p")
}

fn pending_approvals_are_bounded_per_session_and_agent(
    store: &dyn ApprovalStore,
    clock: &ManualClock,
) -> Result<(), Failure> {
    let open = |binding: Binding| store.open(binding, Shown::default(), 1).map(|a| a.id);
    let property = "an agent's pending approvals are bounded per session and per agent";
    for _ in 0..MAX_PENDING_PER_SESSION {
        open(call_of("bot", "s")).map_err(|e| Failure { property, detail: e.to_string() })?;
    }
    expect(property, open(call_of("bot", "s")), Err(ApprovalError::TooMany("the session")))?;
    // Another agent, and another session, are not held up.
    let other = open(call_of("other", "s")).map_err(|e| Failure { property, detail: e.to_string() })?;
    let freed = open(call_of("bot", "s2")).map_err(|e| Failure { property, detail: e.to_string() })?;
    // Deciding one makes room.
    store.decide(&freed, None, "anyone", false).map_err(|e| Failure { property, detail: e.to_string() })?;
    let _ = other;
    let mut sessions = 1;
    let mut opened = MAX_PENDING_PER_SESSION;
    while opened < MAX_PENDING_PER_AGENT {
        let session = format!("s{}", 100 + sessions);
        for _ in 0..MAX_PENDING_PER_SESSION.min(MAX_PENDING_PER_AGENT - opened) {
            open(call_of("bot", &session)).map_err(|e| Failure { property, detail: e.to_string() })?;
            opened += 1;
        }
        sessions += 1;
    }
    expect(property, open(call_of("bot", "fresh")), Err(ApprovalError::TooMany("the agent")))?;
    // Pending approvals stop counting the moment they expire.
    clock.advance(Duration::from_secs(60));
    expect(property, open(call_of("bot", "s")).is_ok(), true)?;
    expect(property, store.pending().len(), 1)
}
