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
