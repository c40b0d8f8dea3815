//! The library's top-level error: the one a caller of the handles
//! ([`Process`](crate::Process), [`Python`](crate::Python),
//! [`Object`](crate::Object)) sees. It sits above the Python model, whose
//! [`PythonError`] it carries; the layers below raise their own errors
//! ([`OpenError`], [`ReadError`]), which convert into it.

use std::path::PathBuf;

pub use crate::corefile::OpenError;
pub use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::python::PythonError;
pub use crate::read_error::{ReadError, ReadFailure};

/// Errors that stop pymortem from opening or analysing an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
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
        cause: PythonError,
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
        matches!(self, Error::Open(open) if open.is_not_a_core())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Open(OpenError::io(path, source))
    }
}
