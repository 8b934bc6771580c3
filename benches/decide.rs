//! In-process decision latency on the example policies.
//!
//! Run with `cargo bench --bench decide`.

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use toolgate::engine::{Engine, Request};

fn engine() -> Engine {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let sources = toolgate::compiler::files::read_policies(&[dir]).expect("policies");
    Engine::new(
        toolgate::compile(sources, &toolgate::DiskFiles).policy.expect("compiles"),
        toolgate::state::State::in_memory(),
    )
}

fn request(line: &str) -> Request {
    match toolgate::protocol::parse_line(line).op {
        Ok(toolgate::protocol::Op::Decide(request)) => request,
        _ => unreachable!("a decide request"),
    }
}

fn decide(c: &mut Criterion) {
    let engine = engine();
    let cases = [
        (
            "exact_allow_no_session",
            r#"{"agent":"githubReader","tool":"github/issue_read","args":{"owner":"acme"}}"#,
        ),
        (
            "glob_allow_with_session",
            r#"{"agent":"developerAgent","tool":"github/get_file_contents","session":"s","args":{"owner":"acme","repo":"api","path":"README.md"}}"#,
        ),
        (
            "params_and_when",
            r#"{"agent":"docsAgent","tool":"filesystem/read_text_file","session":"s","args":{"path":"/srv/docs/guide.md","head":10}}"#,
        ),
        (
            "deny_glob",
            r#"{"agent":"developerAgent","tool":"github/delete_repository","session":"s","args":{}}"#,
        ),
        ("unknown_agent", r#"{"agent":"intruder","tool":"x"}"#),
    ];
    let mut group = c.benchmark_group("decide");
    for (name, line) in cases {
        let request = request(line);
        group.bench_function(name, |b| b.iter(|| black_box(engine.decide(black_box(&request))).outcome));
    }
    // The reference workload of the performance targets (also in peers/).
    let reference = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference.yaml");
    let sources = toolgate::compiler::files::read_policies(&[reference]).expect("reference policy");
    let engine = Engine::new(
        toolgate::compile(sources, &toolgate::NoFiles).policy.expect("compiles"),
        toolgate::state::State::in_memory(),
    );
    let request = request(
        r#"{"agent":"refAgent","tool":"files/write","session":"s","args":{"path":"/srv/docs/guide.md","size":1200,"mode":"create"}}"#,
    );
    assert_eq!(engine.decide(&request).outcome, toolgate::engine::Outcome::Allow);
    group.bench_function("reference_workload", |b| {
        b.iter(|| black_box(engine.decide(black_box(&request))).outcome)
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let sources = toolgate::compiler::files::read_policies(&[dir]).expect("policies");
    c.bench_function("compile_examples", |b| {
        b.iter(|| black_box(toolgate::compile(sources.clone(), &toolgate::DiskFiles).policy.is_some()))
    });
}

criterion_group!(benches, decide, compile);
criterion_main!(benches);
