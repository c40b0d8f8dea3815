//! Problems that do not stop an analysis: kept beside its results, raised
//! by every layer (so this module sits below them all).

use serde::Serialize;

use crate::read_error::ReadFailure;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing; results are complete.
    Note,
    /// Some results may be missing or less trustworthy.
    Warning,
    /// A part of the analysis failed; its results are missing.
    Error,
}

/// The part of pymortem that reported a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiagnosticSource {
    /// Reading a bundle.
    Bundle,
    /// Opening the core file.
    Core,
    /// Finding and verifying the mapped files.
    Modules,
    /// Choosing the layout.
    Layout,
    /// Reading the interpreter's state.
    Python,
    /// The forensic checks.
    Forensics,
}

impl DiagnosticSource {
    /// Its name, as in JSON: `core`, `python`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticSource::Bundle => "bundle",
            DiagnosticSource::Core => "core",
            DiagnosticSource::Modules => "modules",
            DiagnosticSource::Layout => "layout",
            DiagnosticSource::Python => "python",
            DiagnosticSource::Forensics => "forensics",
        }
    }
}

impl std::fmt::Display for DiagnosticSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem that did not stop the analysis, kept in the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Which part of pymortem reported it.
    pub source: DiagnosticSource,
    /// What happened, with addresses and file names, and what to do next.
    pub message: String,
    /// Why memory could not be read, when that is what happened: it decides
    /// the remedy, which the message's words must not.
    #[serde(skip)]
    pub read_failure: Option<ReadFailure>,
}

impl Diagnostic {
    /// A warning from `source`.
    pub fn warning(source: DiagnosticSource, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Warning, source, message)
    }
    /// A note from `source`.
    pub fn note(source: DiagnosticSource, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Note, source, message)
    }
    /// An error from `source`.
    pub fn error(source: DiagnosticSource, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Error, source, message)
    }

    fn new(severity: Severity, source: DiagnosticSource, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            source,
            message: message.into(),
            read_failure: None,
        }
    }

    /// The same, saying which read failure it reports.
    pub fn with_read_failure(mut self, failure: Option<ReadFailure>) -> Self {
        self.read_failure = failure;
        self
    }
}
