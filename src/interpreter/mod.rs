//! Which CPython a process ran and where its runtime lies: the version
//! (from symbols, `Py_Version`, the debug-offsets cookie or the module's
//! name) and the address of `_PyRuntime`. Below the layouts, which are
//! chosen for this version.

pub mod runtime_address;
pub mod version;

pub use version::{PythonVersion, VersionInfo, VersionSource};
