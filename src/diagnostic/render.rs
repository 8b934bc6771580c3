//! Rendering diagnostics: for people (through miette) and as JSON for tools.
//!
//! This is the only place that turns a [`Diagnostic`] into text.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::{Diagnostic, Label, Severity};
use crate::source::{Location, SourceMap};

/// Whether human output may use colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// ANSI colours and Unicode box drawing.
    Always,
    /// Unicode box drawing, no colour (`NO_COLOR`, pipes, snapshots).
    Never,
}

/// Renders diagnostics for a terminal, with source snippets.
pub fn human(diagnostics: &[Diagnostic], sources: &SourceMap, color: Color) -> String {
    let theme = match color {
        Color::Always => GraphicalTheme::unicode(),
        Color::Never => GraphicalTheme::unicode_nocolor(),
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let view = MietteView::new(diagnostic, sources);
        // Writing into a String cannot fail; a renderer error still leaves the plain line.
        if handler.render_report(&mut out, &view).is_err() {
            out.push_str(&plain_line(diagnostic, sources));
            out.push('\n');
        }
    }
    out
}

/// One diagnostic as a single `file:line:column: severity[code]: message` line.
pub fn plain_line(diagnostic: &Diagnostic, sources: &SourceMap) -> String {
    let place = diagnostic.primary.as_ref().map(|label| position(label.location, sources));
    let prefix = match place {
        Some(p) => format!("{}:{}:{}: ", p.file, p.line, p.column),
        None => String::new(),
    };
    format!(
        "{prefix}{}[{}]: {}",
        diagnostic.severity().as_str(),
        diagnostic.code.as_str(),
        diagnostic.message
    )
}

/// A diagnostic as tools read it (`--format json`).
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// `error` or `warning`.
    pub severity: &'static str,
    /// The stable code, e.g. `TG010`.
    pub code: &'static str,
    /// The code's kebab-case name.
    pub name: &'static str,
    /// The message.
    pub message: String,
    /// The file of the primary location, if any.
    pub file: Option<String>,
    /// 1-based line of the primary location.
    pub line: Option<usize>,
    /// 1-based column (characters) of the primary location.
    pub column: Option<usize>,
    /// 1-based line where the primary span ends.
    pub end_line: Option<usize>,
    /// 1-based column where the primary span ends (exclusive).
    pub end_column: Option<usize>,
    /// How to fix it.
    pub help: Option<String>,
    /// Every located label, primary first.
    pub labels: Vec<JsonLabel>,
}

/// A located label in JSON output.
#[derive(Debug, Serialize)]
pub struct JsonLabel {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What this place has to do with the finding.
    pub text: String,
}

/// Converts diagnostics into their JSON form.
pub fn json(diagnostics: &[Diagnostic], sources: &SourceMap) -> Vec<JsonDiagnostic> {
    diagnostics.iter().map(|d| json_one(d, sources)).collect()
}

fn json_one(diagnostic: &Diagnostic, sources: &SourceMap) -> JsonDiagnostic {
    let start = diagnostic.primary.as_ref().map(|l| position(l.location, sources));
    let end = diagnostic.primary.as_ref().map(|l| {
        let end = Location::new(
            l.location.source,
            crate::source::Span { start: l.location.span.end, end: l.location.span.end },
        );
        position(end, sources)
    });
    let labels = diagnostic
        .primary
        .iter()
        .chain(&diagnostic.secondary)
        .map(|label| {
            let p = position(label.location, sources);
            JsonLabel { file: p.file, line: p.line, column: p.column, text: label.text.clone() }
        })
        .collect();
    JsonDiagnostic {
        severity: diagnostic.severity().as_str(),
        code: diagnostic.code.as_str(),
        name: diagnostic.code.name(),
        message: diagnostic.message.clone(),
        file: start.as_ref().map(|p| p.file.clone()),
        line: start.as_ref().map(|p| p.line),
        column: start.as_ref().map(|p| p.column),
        end_line: end.as_ref().map(|p| p.line),
        end_column: end.as_ref().map(|p| p.column),
        help: diagnostic.help.clone(),
        labels,
    }
}

struct Position {
    file: String,
    line: usize,
    column: usize,
}

fn position(location: Location, sources: &SourceMap) -> Position {
    match sources.get(location.source) {
        Some(file) => {
            let lc = file.line_column(location.span.start);
            Position { file: file.name().to_owned(), line: lc.line, column: lc.column }
        }
        None => Position { file: String::from("<unknown>"), line: 0, column: 0 },
    }
}

/// The shape miette renders: one source file per report, labels in other
/// files become related reports.
#[derive(Debug)]
struct MietteView {
    message: String,
    code: &'static str,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<MietteView>,
}

impl MietteView {
    fn new(diagnostic: &Diagnostic, sources: &SourceMap) -> Self {
        let severity = match diagnostic.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        };
        let home = diagnostic.primary.as_ref().map(|l| l.location.source);
        let source =
            home.and_then(|id| sources.get(id)).map(|file| NamedSource::new(file.name(), file.shared_text()));
        let (here, elsewhere): (Vec<&Label>, Vec<&Label>) = diagnostic
            .primary
            .iter()
            .chain(&diagnostic.secondary)
            .partition(|label| Some(label.location.source) == home);
        let labels = here.into_iter().map(labeled_span).collect();
        let related = elsewhere
            .into_iter()
            .map(|label| MietteView {
                message: if label.text.is_empty() {
                    String::from("related to this")
                } else {
                    label.text.clone()
                },
                code: "",
                severity: miette::Severity::Advice,
                help: None,
                source: sources
                    .get(label.location.source)
                    .map(|file| NamedSource::new(file.name(), file.shared_text())),
                labels: vec![labeled_span(label)],
                related: Vec::new(),
            })
            .collect();
        MietteView {
            message: diagnostic.message.clone(),
            code: diagnostic.code.as_str(),
            severity,
            help: diagnostic.help.clone(),
            source,
            labels,
            related,
        }
    }
}

fn labeled_span(label: &Label) -> LabeledSpan {
    let span = SourceSpan::new((label.location.span.start as usize).into(), label.location.span.len());
    let text = (!label.text.is_empty()).then(|| label.text.clone());
    LabeledSpan::new_with_span(text, span)
}

impl fmt::Display for MietteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteView {}

impl miette::Diagnostic for MietteView {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.code.is_empty()).then(|| Box::new(self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty())
            .then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = LabeledSpan>>)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (!self.related.is_empty()).then(|| {
            Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic))
                as Box<dyn Iterator<Item = &dyn miette::Diagnostic>>
        })
    }
}
