//! Properties over random input: nothing panics, and nothing unknown is allowed.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use toolgate::compiler::PolicySource;
use toolgate::engine::{Engine, Outcome, Request};

/// One engine for all cases: counters accumulate across cases, which only
/// widens what is exercised.
static EXAMPLES: std::sync::LazyLock<Engine> = std::sync::LazyLock::new(|| {
    let dir = crate::util::root().join("policies");
    let sources = toolgate::compiler::files::read_policies(&[dir]).expect("policies");
    Engine::new(
        toolgate::compile(sources, &toolgate::DiskFiles).policy.expect("compiles"),
        toolgate::state::State::in_memory(),
    )
});

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z/._ -]{0,12}".prop_map(Value::from),
        Just(Value::from("/srv/docs/a.md")),
        Just(Value::from("main")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const AGENTS: &[&str] =
    &["customerServiceAgent", "refundAgent", "developerAgent", "githubReader", "docsAgent", "supportBase"];
const TOOLS: &[&str] = &[
    "getOrderHistory",
    "createSupportTicket",
    "issueRefund",
    "github/create_pull_request",
    "github/create_or_update_file",
    "github/push_files",
    "github/get_me",
    "filesystem/write_file",
    "filesystem/read_multiple_files",
    "filesystem/edit_file",
];
const ARG_NAMES: &[&str] = &[
    "amount",
    "path",
    "paths",
    "branch",
    "files",
    "title",
    "owner",
    "category",
    "description",
    "content",
    "limit",
    "dryRun",
    "base",
    "draft",
];

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![prop::sample::select(AGENTS).prop_map(String::from), "[a-zA-Z]{0,10}"],
        prop_oneof![prop::sample::select(TOOLS).prop_map(String::from), "[a-z/_*]{0,20}"],
        prop::collection::vec((prop::sample::select(ARG_NAMES), json_value()), 0..8),
        prop::option::of("[a-c]"),
        prop::option::of(json_value()),
    )
        .prop_map(|(agent, tool, args, session, context)| Request {
            agent,
            tool,
            args: args.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<String, Value>>(),
            session,
            principal: None,
            context,
            approval: None,
            annotations: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_engine_never_panics_and_never_allows_unknown_agents(requests in prop::collection::vec(request(), 1..20)) {
        let engine = &*EXAMPLES;
        for request in &requests {
            let decision = engine.decide(request);
            if !AGENTS.contains(&request.agent.as_str()) {
                prop_assert_eq!(decision.outcome, Outcome::Deny);
            }
            let mut line = Vec::new();
            let answer = toolgate::protocol::Answer { decision, policy: engine.policy_hash(), approval: None, decision_id: None, obligations: None };
            toolgate::protocol::write_answer(&mut line, &json!(1), &answer);
            prop_assert!(serde_json::from_slice::<Value>(&line).is_ok());
        }
    }

    #[test]
    fn the_loader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = toolgate::compile(vec![PolicySource { name: "p.yaml".into(), bytes }], &toolgate::NoFiles);
    }

    #[test]
    fn the_loader_never_panics_on_policy_shaped_text(
        keys in prop::collection::vec(prop::sample::select(&["allowedTools", "deniedTools", "constraints", "approvalGates", "when", "params", "extends", "maxPerSession", "required", "session", "x"][..]), 1..8),
        values in prop::collection::vec("[a-z*/\\[\\]{}:'\" .<>=&|!()-]{0,16}", 1..8),
    ) {
        let mut text = String::from("agentPolicies:\n  a:\n");
        for (depth, (key, value)) in keys.iter().zip(values.iter().cycle()).enumerate() {
            text.push_str(&format!("{}{key}: {value}\n", "  ".repeat(2 + depth % 3)));
        }
        let _ = toolgate::compile(vec![PolicySource { name: "p.yaml".into(), bytes: text.into_bytes() }], &toolgate::NoFiles);
    }

    #[test]
    fn conditions_never_panic_to_compile_or_evaluate(
        text in "[a-z0-9_.'\"()\\[\\] <>=!&|+*/%-]{0,60}",
        args in prop::collection::btree_map("[a-c]", json_value(), 0..4),
    ) {
        let env = toolgate::compiler::condition::TypeEnv::default();
        if let Ok(condition) = toolgate::compiler::condition::Condition::compile(&text, &env) {
            let args: Map<String, Value> = args.into_iter().collect();
            let scope = toolgate::compiler::condition::Scope {
                agent: "a", tool: "t", args: &args, principal: None, context: None,
                session: &toolgate::compiler::condition::NoSession,
            };
            let _ = condition.eval(&scope);
        }
    }
}
