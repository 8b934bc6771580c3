//! The same decisions by toolgate, regorus (bytecode VM and interpreter) and
//! Cedar, side by side, then the ratios. Run with
//! `cargo bench -p toolgate-peers --bench compare`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use toolgate_peers::{
    REGO_ENTRY, Workload, cedar, reference, rego_engine, rego_input, rego_vm, scaled, toolgate_engine,
    toolgate_request,
};

const ENGINES: [&str; 4] = ["toolgate", "regorus_vm", "regorus_interpreter", "cedar"];

fn main() {
    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut c = Criterion::default().output_directory(&output).configure_from_args();
    let workloads: Vec<(String, Workload)> = [("reference".to_owned(), reference())]
        .into_iter()
        .chain([10, 1_000, 100_000].map(|n| (format!("tools_{n}"), scaled(n))))
        .collect();
    for (_, workload) in &workloads {
        workload.check();
    }
    for (id, workload) in &workloads {
        let mut group = c.benchmark_group(format!("decide_{id}"));
        let engine = toolgate_engine(workload);
        let request = toolgate_request(workload);
        group
            .bench_function(ENGINES[0], |b| b.iter(|| black_box(engine.decide(black_box(&request))).outcome));
        let mut vm = rego_vm(workload);
        let input = rego_input(workload);
        group.bench_function(ENGINES[1], |b| {
            b.iter(|| {
                vm.set_input(black_box(input.clone()));
                black_box(vm.execute().is_ok())
            })
        });
        let mut interpreter = rego_engine(workload);
        group.bench_function(ENGINES[2], |b| {
            b.iter(|| {
                interpreter.set_input(black_box(input.clone()));
                black_box(interpreter.eval_rule(REGO_ENTRY.into()).is_ok())
            })
        });
        let side = cedar(workload);
        let authorizer = cedar_policy::Authorizer::new();
        group.bench_function(ENGINES[3], |b| b.iter(|| black_box(side.decide(&authorizer))));
        group.finish();
    }
    c.final_summary();
    print_ratios(&output, &workloads.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>());
}

/// The median of one benchmark, from criterion's estimates, in nanoseconds.
fn median(output: &std::path::Path, group: &str, engine: &str) -> Option<f64> {
    let path = output.join(group).join(engine).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn print_ratios(output: &std::path::Path, workloads: &[&str]) {
    println!("\nmedian per decision, and how many times toolgate's median each takes:");
    println!(
        "{:<12} {:>12} {:>22} {:>22} {:>22}",
        "workload", ENGINES[0], ENGINES[1], ENGINES[2], ENGINES[3]
    );
    let mut toolgate = Vec::new();
    for workload in workloads {
        let group = format!("decide_{workload}");
        let Some(base) = median(output, &group, ENGINES[0]) else { continue };
        toolgate.push((*workload, base));
        let cell = |engine: &str| match median(output, &group, engine) {
            Some(ns) => format!("{} ({:.1}x)", format_ns(ns), ns / base),
            None => String::from("-"),
        };
        println!(
            "{workload:<12} {:>12} {:>22} {:>22} {:>22}",
            format_ns(base),
            cell(ENGINES[1]),
            cell(ENGINES[2]),
            cell(ENGINES[3])
        );
    }
    let smallest = toolgate.iter().find(|(w, _)| *w == "tools_10").map(|(_, ns)| *ns);
    let largest = toolgate.iter().find(|(w, _)| *w == "tools_100000").map(|(_, ns)| *ns);
    if let (Some(small), Some(large)) = (smallest, largest) {
        println!("toolgate, 100,000 tools vs 10 tools: {:.2}x", large / small);
    }
}

fn format_ns(ns: f64) -> String {
    if ns < 1_000.0 { format!("{ns:.0} ns") } else { format!("{:.2} µs", ns / 1_000.0) }
}
