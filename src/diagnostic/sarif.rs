//! Diagnostics as a SARIF 2.1.0 log, for code-scanning upload
//! (GitHub, Azure DevOps, any SARIF viewer).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::render::{JsonDiagnostic, json};
use super::{Code, Diagnostic, Severity};
use crate::source::SourceMap;

/// The schema the log declares (the OASIS 2.1.0 errata 01 schema).
pub const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// One run of `toolgate` with every code as a rule and every diagnostic as
/// a result. `describe` gives a rule's full documentation.
pub fn sarif(
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    version: &str,
    describe: &dyn Fn(Code) -> String,
) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|code| {
            let full = describe(*code);
            json!({
                "id": code.as_str(),
                "name": code.name(),
                "shortDescription": {"text": code.summary()},
                "fullDescription": {"text": full},
                "help": {"text": full},
                "defaultConfiguration": {"level": level(code.severity())},
            })
        })
        .collect();
    let results: Vec<Value> = json(diagnostics, sources).iter().map(result).collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "toolgate",
                "version": version,
                "semanticVersion": version,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn result(d: &JsonDiagnostic) -> Value {
    let index = Code::ALL.iter().position(|c| c.as_str() == d.code).unwrap_or_default();
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str(". Fix: ");
        message.push_str(help);
    }
    let mut result = json!({
        "ruleId": d.code,
        "ruleIndex": index,
        "level": d.severity,
        "message": {"text": message},
    });
    if let (Some(file), Some(line), Some(column)) = (&d.file, d.line, d.column) {
        let uri = file.trim_start_matches("./");
        let end_line = d.end_line.unwrap_or(line);
        // SARIF's endColumn is exclusive, like ours.
        let end_column = d.end_column.filter(|_| end_line >= line).unwrap_or(column + 1).max(1);
        result["locations"] = json!([{
            "physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column},
            },
        }]);
        // Stable across edits that move the finding to another line.
        let digest = Sha256::digest(format!("{}\0{uri}\0{}", d.code, d.message).as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        result["partialFingerprints"] = json!({"primaryLocationLineHash": format!("{hex}:1")});
    }
    result
}

/// Diagnostics as GitHub Actions workflow commands: one `::error` or
/// `::warning` line each, shown as annotations on the pull request's diff.
pub fn github_annotations(diagnostics: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in json(diagnostics, sources) {
        let mut properties = Vec::new();
        if let (Some(file), Some(line), Some(column)) = (&d.file, d.line, d.column) {
            properties.push(format!("file={}", escape_property(file.trim_start_matches("./"))));
            properties.push(format!("line={line}"));
            properties.push(format!("col={column}"));
            if let (Some(end_line), Some(end_column)) = (d.end_line, d.end_column) {
                properties.push(format!("endLine={end_line}"));
                properties.push(format!("endColumn={end_column}"));
            }
        }
        properties.push(format!("title={}", escape_property(&format!("{} {}", d.code, d.name))));
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        out.push_str(&format!("::{} {}::{}\n", d.severity, properties.join(","), escape_data(&message)));
    }
    out
}

/// Escapes a workflow command's message (`%` first, so nothing is escaped twice).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_escape_what_the_runner_unescapes() {
        assert_eq!(escape_data("50% done\r\nnext: a, b"), "50%25 done%0D%0Anext: a, b");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }
}
