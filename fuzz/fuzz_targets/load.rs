//! The policy loader and checker on arbitrary bytes: YAML parsing, decoding,
//! checking, condition compilation. Run with
//! `cargo fuzz run load corpus/load ../policies ../tests/fixtures/diagnostics ../tests/fixtures/engine -- -max_total_time=600 -timeout=5 -rss_limit_mb=1024`
//! from `fuzz/`: the seeds are the fixtures, read where they are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolgate::compiler::PolicySource;

fuzz_target!(|bytes: &[u8]| {
    let checked = toolgate::compile(vec![PolicySource { name: "fuzz.yaml".into(), bytes: bytes.to_vec() }], &toolgate::NoFiles);
    // Rendering must not panic either, whatever the diagnostics hold.
    let _ = toolgate::diagnostic::render::json(checked.diagnostics.as_slice(), &checked.sources);
    if let Some(policy) = checked.policy {
        let _ = toolgate::engine::table::DecisionTable::build(policy);
    }
});
