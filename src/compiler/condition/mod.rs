//! The condition language of `when`: a subset of CEL.
//!
//! text → [`syntax::Expr`] ([`parse`]) → checked [`Condition`] ([`Condition::compile`])
//! → a boolean or an [`EvalError`] ([`Condition::eval`]).

mod eval;
mod ir;
mod lower;
mod parse;
pub mod syntax;
pub mod to_rego;

pub use eval::{EvalError, NoSession, Scope, SessionView};
pub use lower::{REGEX_SIZE_LIMIT, Type, TypeEnv, regex_error_text};
pub use parse::{MAX_CONDITION_BYTES, MAX_NESTING, parse};

use crate::diagnostic::Code;
use crate::source::Span;

/// A problem with a condition; the span is relative to the condition text.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionError {
    /// The diagnostic code.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// Where, in the condition text.
    pub span: Span,
    /// A note at the span.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl ConditionError {
    fn new(code: Code, message: impl Into<String>, span: Span) -> Self {
        ConditionError { code, message: message.into(), span, label: None, help: None }
    }

    fn with_suggestion<'a>(self, name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match crate::diagnostic::suggest(name, candidates) {
            Some(best) => self.with_label(crate::diagnostic::did_you_mean(best)),
            None => self,
        }
    }

    fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A parsed, type-checked condition ready to evaluate.
#[derive(Clone, Debug)]
pub struct Condition {
    ir: ir::Ir,
    text: Box<str>,
}

/// Whether a regular expression is anchored at a path: `^/srv/docs/`.
pub fn looks_like_path_pattern(pattern: &str) -> bool {
    pattern.starts_with("^/") || pattern.starts_with("^\\./") || pattern.starts_with("^\\.\\./")
}

impl Condition {
    /// Parses and checks a condition.
    pub fn compile(text: &str, env: &TypeEnv) -> Result<Condition, Vec<ConditionError>> {
        let expr = parse(text).map_err(|e| vec![e])?;
        lower::lower(&expr, env).map(|ir| Condition { ir, text: text.into() })
    }

    /// The condition as Rego rules named `<prefix>_<n>` (see [`to_rego`]).
    pub fn to_rego(&self, prefix: &str) -> to_rego::RegoCondition {
        to_rego::translate(&self.ir, prefix)
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A form that is equal for conditions that parse to the same tree,
    /// whatever their spacing or parentheses.
    pub fn canonical(&self) -> String {
        format!("{:?}", self.ir)
    }

    /// Evaluates the condition on a request.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<bool, EvalError> {
        eval::eval_bool(&self.ir, scope)
    }

    /// The string comparisons that look like confining a path: the
    /// literals of `startsWith` calls that contain a `/`, and `matches`
    /// patterns anchored at a `/` (`^/srv/`), as written.
    pub fn path_prefixes(&self) -> Vec<String> {
        fn walk(ir: &ir::Ir, found: &mut Vec<String>) {
            use ir::Ir::*;
            match ir {
                StrMethod(ir::StrMethod::StartsWith, target, prefix) => {
                    if let Const(ir::Const::Str(text)) = &**prefix
                        && text.contains('/')
                    {
                        found.push(format!("startsWith('{text}')"));
                    }
                    walk(target, found);
                }
                Matches(target, regex) => {
                    if looks_like_path_pattern(regex.as_str()) {
                        found.push(format!("matches('{}')", regex.as_str()));
                    }
                    walk(target, found);
                }
                SessionCalls | Const(_) | Path(..) | Has(..) | Agent | Tool => {}
                SessionCallsOf(a) => walk(a, found),
                List(items) => items.iter().for_each(|i| walk(i, found)),
                HasField(a, _) | Field(a, _) | Size(a) | PathWithin(a, _) | Not(a) | Neg(a) => walk(a, found),
                Index(a, b) | StrMethod(_, a, b) | And(a, b) | Or(a, b) | Binary(_, a, b) => {
                    walk(a, found);
                    walk(b, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.ir, &mut found);
        found
    }

    /// Whether the condition reads the session's counters.
    pub fn reads_session(&self) -> bool {
        fn walk(ir: &ir::Ir) -> bool {
            use ir::Ir::*;
            match ir {
                SessionCalls | SessionCallsOf(_) => true,
                Const(_) | Path(..) | Has(..) | Agent | Tool => false,
                List(items) => items.iter().any(walk),
                HasField(a, _)
                | Field(a, _)
                | Size(a)
                | Matches(a, _)
                | PathWithin(a, _)
                | Not(a)
                | Neg(a) => walk(a),
                Index(a, b) | StrMethod(_, a, b) | And(a, b) | Or(a, b) | Binary(_, a, b) => {
                    walk(a) || walk(b)
                }
            }
        }
        walk(&self.ir)
    }
}
