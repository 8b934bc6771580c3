//! `toolgate test`: run policy test files and report rule coverage.

use std::io::Write;
use std::path::PathBuf;

use toolgate::authoring::testing::{self, Report, TestFile};
use toolgate::engine::table::DecisionTable;

use super::{Exit, output};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    /// A line per case, failures explained, coverage summary.
    #[default]
    Human,
    /// One JSON object with every case and the coverage.
    Json,
    /// JUnit XML, for CI systems.
    Junit,
}

pub fn run(paths: &[PathBuf], format: TestFormat, min_coverage: Option<f64>) -> Exit {
    let policy = match output::compile_or_report(paths) {
        Ok(policy) => policy,
        Err(exit) => return exit,
    };
    let table = std::sync::Arc::new(DecisionTable::build(policy));
    let sources = match toolgate::compiler::files::read_tests(paths) {
        Ok(sources) => sources,
        Err(error) => {
            output::error(&error.to_string());
            return Exit::Usage;
        }
    };
    if sources.is_empty() {
        output::error("no test files (*.test.yaml) found");
        return Exit::Usage;
    }
    let mut files = Vec::new();
    for source in sources {
        let parsed = std::str::from_utf8(&source.bytes).map_err(|e| e.to_string()).and_then(TestFile::parse);
        match parsed {
            Ok(file) => files.push((source.name, file)),
            Err(error) => {
                output::error(&format!("`{}` is not a valid test file: {error}", source.name));
                return Exit::Usage;
            }
        }
    }
    let report = testing::run(&table, &files);
    let text = match format {
        TestFormat::Human => human(&report),
        TestFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        TestFormat::Junit => junit(&report),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    let below = min_coverage.is_some_and(|min| report.coverage_percent() < min);
    if below && format == TestFormat::Human {
        output::error(&format!(
            "rule coverage {:.1}% is below --min-coverage {}",
            report.coverage_percent(),
            min_coverage.unwrap_or(0.0)
        ));
    }
    if report.failed() > 0 || below { Exit::Findings } else { Exit::Ok }
}

fn human(report: &Report) -> String {
    let mut out = String::new();
    for case in &report.cases {
        let mark = if case.passed { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {}: {}\n", case.file, case.name));
        if let Some(failure) = &case.failure {
            out.push_str(&format!("     {failure}\n"));
        }
    }
    let total = report.covered.len() + report.uncovered.len();
    out.push_str(&format!(
        "\ncases: {} passed, {} failed\nrule coverage: {} of {total} rules ({:.1}%)\n",
        report.cases.len() - report.failed(),
        report.failed(),
        report.covered.len(),
        report.coverage_percent()
    ));
    if !report.uncovered.is_empty() {
        out.push_str("rules no case exercised:\n");
        for rule in &report.uncovered {
            out.push_str(&format!("  {rule}\n"));
        }
    }
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"toolgate\" tests=\"{}\" failures=\"{}\">\n",
        report.cases.len(),
        report.failed()
    ));
    let mut files: Vec<&str> = report.cases.iter().map(|c| c.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<_> = report.cases.iter().filter(|c| c.file == file).collect();
        let failed = cases.iter().filter(|c| !c.passed).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
            xml(file),
            cases.len()
        ));
        for case in cases {
            out.push_str(&format!("    <testcase classname=\"{}\" name=\"{}\"", xml(file), xml(&case.name)));
            match &case.failure {
                None => out.push_str("/>\n"),
                Some(failure) => out.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(failure),
                    xml(&format!("decision {} by rule {}", case.decision, case.rule))
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
