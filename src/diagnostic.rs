//! Problems that do not stop an analysis: kept beside its results, raised
//! by every layer (so this module sits below them all).

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; results are complete.
    Note,
    /// Some results may be missing or less trustworthy.
    Warning,
    /// A part of the analysis failed; its results are missing.
    Error,
}

/// A problem that did not stop the analysis, kept in the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Which part of pymortem reported it, e.g. `core`, `modules`, `python`.
    pub source: &'static str,
    /// What happened, with addresses and file names, and what to do next.
    pub message: String,
}

impl Diagnostic {
    /// A warning from `source`.
    pub fn warning(source: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            source,
            message: message.into(),
        }
    }
    /// A note from `source`.
    pub fn note(source: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Note,
            source,
            message: message.into(),
        }
    }
    /// An error from `source`.
    pub fn error(source: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            source,
            message: message.into(),
        }
    }
}
