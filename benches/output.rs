//! Output rules on realistic tool output: every built-in rule on (secrets
//! redacted, personal data and injection flagged), over clean prose, clean
//! JSON records, and prose with a credential every 4 KiB.
//!
//! Run with `cargo bench --bench output`; criterion reports throughput.

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use toolgate::output::{Action, Class, OutputRules, PersonalKind, Scanner, apply};

/// About 1 MiB of clean English prose: the lines of the book's own
/// chapters in which no built-in rule finds anything (the chapters quote
/// example keys, addresses and injection phrases).
fn prose() -> String {
    let scanner = Scanner::new(&[]).expect("built-in rules");
    let active = vec![true; scanner.rules().len()];
    let clean: Vec<String> =
        book().lines().filter(|l| scanner.scan(l, &active).is_empty()).map(str::to_owned).collect();
    let mut text = String::new();
    while text.len() < 1 << 20 {
        for line in &clean {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The book's chapters.
fn book() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("book/templates");
    let mut text = String::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir).expect("book").flatten().map(|e| e.path()).collect();
    names.sort();
    while text.len() < 1 << 20 {
        for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
            // Keep it clean: the chapters quote example keys and injection phrases.
            let chapter = std::fs::read_to_string(path).expect("chapter");
            text.extend(
                chapter
                    .lines()
                    .filter(|l| !l.contains("AKIA") && !l.contains("gnore"))
                    .map(|l| format!("{l}\n")),
            );
        }
    }
    text
}

/// About 1 MiB of JSON records, as a database or API tool returns them.
fn records() -> String {
    let rows: Vec<Value> = (0..6000)
        .map(|i| {
            json!({"id": i, "sku": format!("SKU-{i:06}"), "title": "Stainless steel water bottle, 750 ml",
                   "status": if i % 3 == 0 { "shipped" } else { "pending" }, "quantity": i % 7 + 1,
                   "price": {"amount": 1999 + i, "currency": "EUR"}, "created": "2026-11-30T10:15:00Z"})
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("JSON")
}

fn rules() -> OutputRules {
    let mut classes = std::collections::BTreeMap::new();
    classes.insert(Class::Secret, Action::Redact);
    classes.insert(Class::Injection, Action::Flag);
    for (_, kind) in PersonalKind::ALL {
        classes.insert(Class::PersonalData(kind), Action::Flag);
    }
    OutputRules { classes, ..OutputRules::default() }
}

fn output(c: &mut Criterion) {
    let scanner = Scanner::new(&[]).expect("built-in rules");
    let rules = rules();
    let prose = prose();
    let mut leaky = String::new();
    for (i, chunk) in prose.as_bytes().chunks(4096).enumerate() {
        leaky.push_str(&String::from_utf8_lossy(chunk));
        leaky.push_str(&format!(" ghp_{:036} ", i));
    }
    let cases =
        [("clean_prose", prose), ("clean_json_records", records()), ("prose_with_a_key_every_4k", leaky)];
    let mut group = c.benchmark_group("output");
    for (name, text) in cases {
        let result = json!({"content": [{"type": "text", "text": text}]});
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(apply(black_box(&result), &scanner, &rules, None)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = output
}
criterion_main!(benches);
