//! Compiling and checking generated policies of 100, 10,000 and 100,000
//! tools: time (criterion) and peak memory (each size compiled once in a
//! fresh child process, which reports how far its peak resident set grew).
//! Run with `cargo bench -p toolgate-peers --bench compile`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use toolgate::load::PolicySource;

const SIZES: [usize; 3] = [100, 10_000, 100_000];

fn source(tools: usize) -> PolicySource {
    PolicySource { name: String::from("bench.yaml"), bytes: toolgate_peers::scaled(tools).yaml.into_bytes() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--peak-child") {
        let tools: usize = args.get(position + 1).and_then(|n| n.parse().ok()).expect("a size");
        return peak_child(tools);
    }
    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut c = Criterion::default().output_directory(&output).sample_size(10).configure_from_args();
    let mut group = c.benchmark_group("compile");
    for tools in SIZES {
        let source = source(tools);
        group.bench_function(format!("tools_{tools}"), |b| {
            b.iter(|| black_box(toolgate::compile(vec![source.clone()]).policy.is_some()))
        });
    }
    group.finish();
    c.final_summary();
    println!("\npeak memory of one compile (resident set growth, fresh process):");
    let exe = std::env::current_exe().expect("own path");
    for tools in SIZES {
        let out = std::process::Command::new(&exe)
            .args(["--peak-child", &tools.to_string()])
            .output()
            .expect("child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Compiles once and prints how much the peak resident set grew.
fn peak_child(tools: usize) {
    let source = source(tools);
    let before = status_kib("VmHWM");
    let started = std::time::Instant::now();
    let checked = toolgate::compile(vec![source]);
    let elapsed = started.elapsed();
    assert!(checked.policy.is_some(), "the generated policy compiles");
    let after = status_kib("VmHWM");
    println!(
        "tools_{tools}: {:.1} MB peak growth ({:.1} MB peak resident in all), {:.0} ms",
        (after - before) as f64 / 1024.0,
        after as f64 / 1024.0,
        elapsed.as_secs_f64() * 1000.0
    );
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?.trim_start_matches(':').trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .expect("the field")
}
