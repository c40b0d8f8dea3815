//! The `layout` report: a CPython layout and how it was chosen.

use std::path::PathBuf;

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::layout::Layout;
use crate::layout::select::Attempt;
use crate::python::RuntimeLocation;

/// The whole `layout` report.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutReport {
    /// Always `"layout"`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The core or binary the layout is for.
    pub target: PathBuf,
    /// The Python version the layout is for, when known.
    pub python_version: Option<String>,
    /// Every source tried, in order.
    pub attempts: Vec<Attempt>,
    /// Where the interpreters are (cores only).
    pub runtime: Option<RuntimeLocation>,
    /// Why the interpreters were not found, when they were looked for and not found.
    pub runtime_error: Option<String>,
    /// The layout.
    pub layout: Layout,
}

impl LayoutReport {
    /// A report for `target`.
    pub fn new(
        target: PathBuf,
        python_version: Option<String>,
        attempts: Vec<Attempt>,
        layout: Layout,
    ) -> Self {
        LayoutReport {
            schema: "layout",
            schema_version: SCHEMA_VERSION,
            target,
            python_version,
            attempts,
            runtime: None,
            runtime_error: None,
            layout,
        }
    }
}
