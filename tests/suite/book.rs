//! The book's examples are real: regenerating them with this build's binary
//! must reproduce `book/src` exactly.

use toolgate::diagnostic::Code;

use crate::util::root;

#[test]
fn book_examples_match_what_the_binary_prints() {
    for tool in ["python3", "jq"] {
        let found =
            std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found, "the book's examples need `{tool}`: install it (e.g. `apt-get install {tool}`)");
    }
    let output = std::process::Command::new("python3")
        .arg(root().join("book/gen.py"))
        .arg("--check")
        .env("TOOLGATE_BIN", env!("CARGO_BIN_EXE_toolgate"))
        .output()
        .expect("python3 runs book/gen.py");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_diagnostic_code_is_documented() {
    let text = std::fs::read_to_string(root().join("book/src/reference/diagnostics.md")).expect("chapter");
    for code in Code::ALL {
        assert!(text.contains(code.as_str()), "{} is not in the diagnostics chapter", code.as_str());
    }
}

/// The protocol reference lists every reason code with its meaning.
#[test]
fn the_protocol_reference_lists_every_reason_code() {
    let page = std::fs::read_to_string(crate::util::root().join("book/templates/reference/protocol.md"))
        .expect("page");
    for code in toolgate::engine::ReasonCode::ALL {
        let row = page
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", code.as_str())))
            .unwrap_or_else(|| panic!("`{}` is not in the protocol reference", code.as_str()));
        let meaning = code.meaning().trim_end_matches('.').to_lowercase();
        assert!(
            row.to_lowercase().ends_with(&format!("| {meaning} |")),
            "`{}`: {row} does not say {meaning:?}",
            code.as_str()
        );
    }
}

/// An example whose command fails unexpectedly fails the generation: the
/// book never shows an error transcript as if it were the example. A failure
/// the example means to show says so (`# exit N`).
#[test]
fn an_unexpected_failure_fails_the_book_generation() {
    let generate = |template: &str| {
        let dir = crate::util::scratch(&[("page.md", template)]);
        std::process::Command::new("python3")
            .arg(root().join("book/gen.py"))
            .args(["--run-only", &dir.path().display().to_string()])
            .env("TOOLGATE_BIN", env!("CARGO_BIN_EXE_toolgate"))
            .output()
            .expect("python3 runs book/gen.py")
    };
    let unexpected = generate("```run\n$ toolgate query --socket missing.sock --agent a --tool t\n```\n");
    assert!(!unexpected.status.success());
    let said = String::from_utf8_lossy(&unexpected.stderr);
    assert!(said.contains("exited 2, not 0") && said.contains("cannot connect"), "{said}");
    let piped = generate("```run\n$ toolgate check no-such-file.yaml | cat\n```\n");
    assert!(!piped.status.success(), "a failure inside a pipeline counts too");
    let meant = generate("```run\n$ toolgate check no-such-file.yaml  # exit 2\n```\n");
    assert!(meant.status.success(), "{}", String::from_utf8_lossy(&meant.stderr));
}
