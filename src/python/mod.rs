//! The CPython model: what the interpreter's memory means.

pub mod version;

pub use version::{PythonVersion, VersionInfo, VersionSource};
