//! The condition language on arbitrary text: pre-scan, pest grammar, Pratt
//! parser, type checker, then evaluation on a fixed request. Run with
//! `cargo fuzz run condition fuzz/seeds/condition -- -max_total_time=600 -timeout=5 -rss_limit_mb=1024`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolgate::compiler::condition::{Condition, NoSession, Scope, TypeEnv};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(condition) = Condition::compile(text, &TypeEnv::default()) else { return };
    let args = serde_json::json!({"path": "/srv/docs/a.md", "n": 3, "items": [1, "a", null], "m": {"k": true}});
    let Some(args) = args.as_object() else { return };
    let scope = Scope { agent: "a", tool: "t", args, principal: None, context: None, session: &NoSession };
    let _ = condition.eval(&scope);
    let _ = condition.to_rego("c");
});
