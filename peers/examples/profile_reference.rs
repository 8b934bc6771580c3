//! Decides the reference workload in a loop, for profilers:
//! `valgrind --tool=callgrind --toggle-collect='*Engine*decide*' target/release/examples/profile_reference`.

fn main() {
    let workload = toolgate_peers::reference();
    let engine = toolgate_peers::toolgate_engine(&workload);
    let request = toolgate_peers::toolgate_request(&workload);
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut allowed = 0;
    for _ in 0..rounds {
        if std::hint::black_box(engine.decide(std::hint::black_box(&request))).outcome
            == toolgate::engine::Outcome::Allow
        {
            allowed += 1;
        }
    }
    println!("{allowed} of {rounds} allowed");
}
