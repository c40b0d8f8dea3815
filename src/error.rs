//! Error types shared by every layer.
//!
//! Reads of process memory fail with a [`ReadError`] that always carries the
//! address and the reason. Opening inputs fails with an [`Error`] that names the
//! file. Problems that do not stop the analysis become [`Diagnostic`]s that are
//! kept in the results.

use std::path::PathBuf;

use serde::Serialize;

/// Why a read of process memory failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadFailure {
    /// No segment of the core and no mapped file covers the address.
    #[error("not mapped in the process")]
    NotMapped,
    /// The process had the page mapped, but the core does not contain it and no
    /// verified file on disk can supply it.
    #[error("mapped but not dumped in the core")]
    NotDumped,
    /// The page is mapped from a file that pymortem could not find.
    #[error("mapped from {path}, which was not found")]
    FileMissing {
        /// The path recorded in the core.
        path: String,
    },
    /// The file found on disk is not the one the process had mapped.
    #[error("mapped from {path}, whose build-id differs from the core's")]
    BuildIdMismatch {
        /// The path recorded in the core.
        path: String,
    },
    /// The core file ends before the segment that holds the address.
    #[error("the core file is truncated before this address")]
    Truncated,
    /// The read was larger than the caller's bound.
    #[error("read of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Requested length.
        len: u64,
        /// The bound that was exceeded.
        limit: u64,
    },
    /// A value read from memory was not what the reader expected.
    #[error("invalid data: {0}")]
    Invalid(String),
}

/// A failed read of process memory: where, how much, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("cannot read {len} bytes at {addr:#x}: {reason}")]
pub struct ReadError {
    /// First address of the failed read.
    pub addr: u64,
    /// Number of bytes requested.
    pub len: u64,
    /// Why it failed.
    pub reason: ReadFailure,
}

impl ReadError {
    /// A read error for `len` bytes at `addr`.
    pub fn new(addr: u64, len: u64, reason: ReadFailure) -> Self {
        ReadError { addr, len, reason }
    }
}

/// Serialise an optional error as its message (the JSON carries the text).
pub(crate) fn serialize_message<S, E>(error: &Option<E>, out: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    E: std::fmt::Display,
{
    match error {
        Some(e) => out.collect_str(e),
        None => out.serialize_none(),
    }
}

/// Errors that stop pymortem from opening or analysing an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF core file (or a compressed one).
    #[error("{path}: not an ELF core file: {reason}")]
    NotACore {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The core is for an architecture pymortem does not support.
    #[error("{path}: unsupported core: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// Decompressing a compressed core failed before any usable data came out.
    #[error("{path}: cannot decompress ({format}): {reason}")]
    Decompress {
        /// The compressed file.
        path: PathBuf,
        /// zstd, lz4, xz or gzip.
        format: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The file is a bundle that cannot be read.
    #[error("{path}: not a usable pymortem bundle: {reason}")]
    Bundle {
        /// The bundle.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A memory read failed where the caller needed the value.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The core holds no CPython runtime that could be read.
    #[error("{path}: no Python runtime: {cause}")]
    NoPython {
        /// The core file.
        path: PathBuf,
        /// What was missing.
        #[source]
        cause: crate::python::PythonError,
    },
    /// The interpreter is a free-threaded build (3.13t+), whose object
    /// layout pymortem does not read yet.
    #[error("{path}: free-threaded CPython {build} is not supported yet ({evidence})")]
    FreeThreaded {
        /// The core file.
        path: PathBuf,
        /// `3.13t`.
        build: String,
        /// What shows it is free-threaded.
        evidence: String,
    },
    /// An object is not of the type an accessor reads.
    #[error("the object at {address:#x} is a {found}, not a {expected}")]
    WrongType {
        /// The object.
        address: u64,
        /// What the accessor reads, e.g. `tuple`.
        expected: &'static str,
        /// Its type's name.
        found: String,
    },
}

impl Error {
    /// Whether the input was read and is not a core pymortem can open (as
    /// opposed to a failure of the disk, the temp dir or the decoder).
    pub fn is_not_a_core(&self) -> bool {
        matches!(self, Error::NotACore { .. } | Error::Unsupported { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

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
