//! Diagnostics: typed findings of the loader and the checker.
//!
//! A [`Diagnostic`] carries a stable [`Code`], a message, the located
//! [`Label`]s and an optional help text. It is rendered only at the edge
//! (see [`render`]), for people or as JSON for tools.

mod codes;
pub mod render;
pub mod sarif;
mod suggest;

pub use codes::{Code, Severity};
pub use suggest::{did_you_mean, suggest};

use crate::source::Location;

/// A located finding about a policy set.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The stable code; it also fixes the severity.
    pub code: Code,
    /// What is wrong, lowercase, user input in backticks, no final period.
    pub message: String,
    /// The place the finding is about, if it has one.
    pub primary: Option<Label>,
    /// Other places that explain it (the other duplicate, the overriding deny).
    pub secondary: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
}

/// A located note inside a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Where.
    pub location: Location,
    /// What this place has to do with the finding (may be empty).
    pub text: String,
}

impl Diagnostic {
    /// A diagnostic with `code` and `message` at `location`.
    pub fn new(code: Code, message: impl Into<String>, location: Location) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            primary: Some(Label { location, text: String::new() }),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A diagnostic about no particular place.
    pub fn unlocated(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), primary: None, secondary: Vec::new(), help: None }
    }

    /// Sets the text of the primary label.
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        if let Some(primary) = &mut self.primary {
            primary.text = text.into();
        }
        self
    }

    /// Labels the primary location "did you mean `x`?" when one of
    /// `candidates` is close enough to `name` to be what was meant.
    pub fn with_suggestion<'a>(self, name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match suggest::suggest(name, candidates) {
            Some(best) => self.with_label(suggest::did_you_mean(best)),
            None => self,
        }
    }

    /// Adds a secondary label.
    pub fn with_secondary(mut self, location: Location, text: impl Into<String>) -> Self {
        self.secondary.push(Label { location, text: text.into() });
        self
    }

    /// Sets the help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The severity, fixed by the code.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// Whether this is an error (the policy set does not compile).
    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// Collects diagnostics while a stage runs; stages never stop at the first.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Self {
        Diagnostics::default()
    }

    /// Records one diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Whether any recorded diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// The recorded diagnostics, in the order they were found.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }

    /// The recorded diagnostics.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Orders diagnostics by file and position (stable: equal places keep
    /// the order they were found in); unlocated ones come first.
    pub fn sort_by_location(&mut self) {
        self.items.sort_by_key(|d| d.primary.as_ref().map(|l| (l.location.source, l.location.span.start)));
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(other);
    }
}
