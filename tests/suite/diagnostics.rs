//! One fixture per diagnostic code: the rendered output is snapshotted, so a
//! reviewer sees exactly what a policy author would see.

use toolgate::diagnostic::Code;

use crate::util::{root, toolgate};

fn fixtures() -> Vec<String> {
    let dir = root().join("tests/fixtures/diagnostics");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_code_has_a_fixture_that_produces_it() {
    let names = fixtures();
    for code in Code::ALL {
        let prefix = format!("{}-{}", code.as_str(), code.name());
        let fixture = names.iter().find(|n| n.starts_with(&prefix));
        assert!(fixture.is_some(), "no fixture named {prefix}*");
    }
}

#[test]
fn rendered_diagnostics_match_their_snapshots() {
    let dir = root().join("tests/fixtures/diagnostics");
    for name in fixtures() {
        let code = &name[..5];
        // Lint rules are reported by `lint` (exit 3 on findings); the
        // checker's warnings (TG1xx) and errors by `check`.
        let (command, status) = match &code[..3] {
            "TL0" => ("lint", 3),
            "TG1" => ("check", 0),
            _ => ("check", 1),
        };
        let human = toolgate(&dir).args([command, &name]).output().expect("runs");
        assert_eq!(human.status.code(), Some(status), "{name}");
        let rendered = String::from_utf8_lossy(&human.stderr);
        let stem = name.trim_end_matches(".yaml");
        insta::assert_snapshot!(stem, rendered);

        let json = toolgate(&dir).args([command, "--format", "json", &name]).output().expect("runs");
        let found: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).expect("JSON array");
        assert!(found.iter().any(|d| d["code"] == code), "{name}: JSON output lacks {code}: {found:?}");
        for diagnostic in &found {
            for key in ["severity", "code", "message", "file", "line", "column"] {
                assert!(!diagnostic[key].is_null(), "{name}: `{key}` missing in {diagnostic}");
            }
        }
    }
}
