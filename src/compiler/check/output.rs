//! Compiling `output` (on agents and on constraints) into output rules,
//! with a located diagnostic for every value that is not one.

use crate::compiler::ast::{OutputDecl, Spanned};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::output::catalogue::{BUILTIN, Class, PersonalKind};
use crate::output::rules::{Action, OutputRules, Oversize, personal_kind};
use crate::output::scan::{PolicyPattern, check_pattern};

/// An `output` mapping compiled: its rules, and its own patterns.
/// `agent_patterns` are the ids of the agent's patterns, which a
/// constraint's `rules` may name.
pub fn compile(
    decl: &OutputDecl,
    agent_patterns: &[String],
    diagnostics: &mut Diagnostics,
) -> (OutputRules, Vec<PolicyPattern>) {
    let mut rules = OutputRules {
        max_bytes: decl.max_bytes.as_ref().and_then(|n| positive(n, "maxBytes", diagnostics)),
        max_tokens: decl.max_tokens.as_ref().and_then(|n| positive(n, "maxTokens", diagnostics)),
        ..OutputRules::default()
    };
    rules.oversize = decl.on_oversize.as_ref().and_then(|text| match text.value.as_str() {
        "truncate" => Some(Oversize::Truncate),
        "deny" => Some(Oversize::Deny),
        other => {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("`onOversize` `{other}` is neither `truncate` nor `deny`"),
                    text.location,
                )
                .with_help("`truncate` keeps a prefix within the budget; `deny` withholds the whole result"),
            );
            None
        }
    });
    let classes = [(Class::Secret, &decl.secrets), (Class::Injection, &decl.injection)];
    for (class, text) in classes {
        if let Some(action) = text.as_ref().and_then(|t| action(t, diagnostics)) {
            rules.classes.insert(class, action);
        }
    }
    for (kind, text) in &decl.personal_data {
        let Some(kind) = personal_kind(&kind.value).or_else(|| {
            let keys = PersonalKind::ALL.map(|(k, _)| k);
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("no personal data detector `{}`", kind.value),
                    kind.location,
                )
                .with_help(format!("the detectors are {}", keys.join(", ")))
                .with_suggestion(&kind.value, keys),
            );
            None
        }) else {
            continue;
        };
        if let Some(action) = action(text, diagnostics) {
            rules.classes.insert(Class::PersonalData(kind), action);
        }
    }
    let mut patterns = Vec::new();
    for pattern in &decl.patterns {
        let id = &pattern.id;
        if let Some(problem) = id_problem(&id.value) {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidName,
                    format!("invalid output rule id `{}`", id.value.escape_debug()),
                    id.location,
                )
                .with_label(problem)
                .with_help("a rule id is 1 to 64 ASCII letters, digits, `-` and `_`"),
            );
            continue;
        }
        if BUILTIN.iter().any(|r| r.id == id.value) {
            diagnostics.push(
                Diagnostic::new(Code::InvalidName, format!("`{}` is a built-in output rule", id.value), id.location)
                    .with_help(format!("name your pattern differently, or set the built-in rule's action under `rules: {{{}: ...}}`", id.value)),
            );
            continue;
        }
        let Some(regex) = &pattern.regex else {
            diagnostics.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("output pattern `{}` has no `regex`", id.value),
                    id.location,
                )
                .with_help("add `regex: '<expression>'`"),
            );
            continue;
        };
        if let Err(error) = check_pattern(&regex.value) {
            diagnostics.push(
                Diagnostic::new(Code::InvalidRegex, format!("invalid regex in output pattern `{}`", id.value), regex.location)
                    .with_label(first_line(&error))
                    .with_help("write a Rust `regex` expression (no look-around or back-references), at most 1 MiB compiled"),
            );
            continue;
        }
        let Some(text) = &pattern.action else {
            diagnostics.push(
                Diagnostic::new(
                    Code::MissingKey,
                    format!("output pattern `{}` has no `action`", id.value),
                    id.location,
                )
                .with_help("add `action: redact` (or flag, deny, kill, off)"),
            );
            continue;
        };
        let Some(action) = action(text, diagnostics) else { continue };
        rules.rules.insert(id.value.clone(), action);
        patterns.push(PolicyPattern {
            id: id.value.clone(),
            regex: regex.value.clone(),
            keywords: pattern.keywords.iter().map(|k| k.value.to_lowercase()).collect(),
        });
    }
    for (id, text) in &decl.rules {
        let known = BUILTIN.iter().any(|r| r.id == id.value)
            || decl.patterns.iter().any(|p| p.id.value == id.value)
            || agent_patterns.contains(&id.value);
        if !known {
            diagnostics.push(
                Diagnostic::new(Code::InvalidValue, format!("no output rule `{}`", id.value), id.location)
                    .with_help("name a built-in rule (`toolgate detectors` lists them) or one of this agent's `patterns`")
                    .with_suggestion(&id.value, BUILTIN.iter().map(|r| r.id)),
            );
            continue;
        }
        if let Some(action) = action(text, diagnostics) {
            rules.rules.insert(id.value.clone(), action);
        }
    }
    (rules, patterns)
}

fn action(text: &Spanned<String>, diagnostics: &mut Diagnostics) -> Option<Action> {
    let action = Action::named(&text.value);
    if action.is_none() {
        let names = Action::ALL.map(|(n, _)| n);
        diagnostics.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("unknown output action `{}`", text.value),
                text.location,
            )
            .with_help(format!("use one of {}", names.join(", ")))
            .with_suggestion(&text.value, names),
        );
    }
    action
}

fn positive(value: &Spanned<u64>, key: &str, diagnostics: &mut Diagnostics) -> Option<u64> {
    if value.value == 0 {
        diagnostics.push(
            Diagnostic::new(Code::InvalidValue, format!("`{key}` must be at least 1"), value.location)
                .with_help(format!("remove `{key}` for no limit")),
        );
        return None;
    }
    Some(value.value)
}

fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > 64 {
        return Some("it must be 1 to 64 characters");
    }
    (!id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some("it has a character other than ASCII letters, digits, `-` and `_`")
}

fn first_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_owned()
}
