//! The CPython model: what the interpreter's memory means.

pub mod runtime;

pub use crate::layout::version::{self, PythonVersion, VersionInfo, VersionSource};
pub use runtime::{RuntimeLocation, locate};
