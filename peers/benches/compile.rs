//! Compiling and checking generated policies of 100, 10,000 and 100,000
//! tools: time (criterion) and peak memory (each size compiled once in a
//! fresh child process that reads the policy from a file, resets its peak
//! resident set just before the compile, and reports how far it grew).
//! Run with `cargo bench -p toolgate-peers --bench compile`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::Criterion;
use toolgate::compiler::PolicySource;

const SIZES: [usize; 3] = [100, 10_000, 100_000];

fn source(tools: usize) -> PolicySource {
    PolicySource { name: String::from("bench.yaml"), bytes: toolgate_peers::scaled(tools).yaml.into_bytes() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--peak-child") {
        let path = args.get(position + 1).expect("a policy file");
        return peak_child(Path::new(path));
    }
    let output = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut c = Criterion::default().output_directory(&output).sample_size(10).configure_from_args();
    let mut group = c.benchmark_group("compile");
    for tools in SIZES {
        let source = source(tools);
        group.bench_function(format!("tools_{tools}"), |b| {
            b.iter(|| black_box(toolgate::compile(vec![source.clone()], &toolgate::NoFiles).policy.is_some()))
        });
    }
    group.finish();
    c.final_summary();
    println!("\npeak memory of one compile (fresh process):");
    let exe = std::env::current_exe().expect("own path");
    for tools in SIZES {
        // The child reads the policy from a file, so the generator's garbage
        // is not in its heap.
        let path = std::env::temp_dir().join(format!("toolgate-compile-{tools}.yaml"));
        std::fs::write(&path, source(tools).bytes).expect("policy file");
        let out = std::process::Command::new(&exe).arg("--peak-child").arg(&path).output().expect("child");
        print!("tools_{tools}: {}", String::from_utf8_lossy(&out.stdout));
        let _ = std::fs::remove_file(path);
    }
}

/// Compiles the policy in `path` once and prints how much the resident set
/// grew at its peak during the compile.
fn peak_child(path: &Path) {
    let source =
        PolicySource { name: String::from("bench.yaml"), bytes: std::fs::read(path).expect("policy file") };
    // Reset the peak resident set to the current one (Linux).
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
    let before = status_kib("VmRSS");
    let started = std::time::Instant::now();
    let checked = toolgate::compile(vec![source], &toolgate::NoFiles);
    let elapsed = started.elapsed();
    assert!(checked.policy.is_some(), "the generated policy compiles");
    let after = status_kib("VmHWM");
    println!(
        "{:.1} MB peak growth during the compile ({:.1} MB peak resident in all), {:.0} ms",
        after.saturating_sub(before) as f64 / 1024.0,
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
