//! The CPython model: what the interpreter's memory means.

pub mod attributes;
pub mod code;
mod datastack;
pub mod frames;
pub mod nesting;
pub(crate) mod objects;
pub mod runtime;
pub mod source;
pub mod threads;
pub mod types;

pub use crate::interpreter::version::{self, PythonVersion, VersionInfo, VersionSource};
pub use frames::{FrameWalk, Local, PyFrame};
pub use nesting::NestingOrder;
pub use runtime::{RuntimeError, RuntimeLocation, locate};
pub use threads::{PyInterpreter, PyThread, PythonError, PythonState, ThreadOptions, python_state};
