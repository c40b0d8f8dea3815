//! Report models. Each command's text tables and `--json` output are rendered
//! from the same serde model; the JSON schema is versioned and documented in
//! `docs/json-schema.md`.

mod check;
#[cfg(feature = "crashdb")]
mod groups;
#[cfg(feature = "crashdb")]
pub mod html;
mod info;
mod layout;
mod tasks;
mod threads;

pub use check::{CheckPart, CheckReport, ObjectReport};
#[cfg(feature = "crashdb")]
pub use groups::groups_json;
pub use info::{CoreSummary, InfoReport, ModuleReport, PythonReport, SignalReport, ThreadReport};
pub use layout::LayoutReport;
pub use tasks::TasksReport;
pub use threads::{InterpreterReport, ThreadEntry, ThreadStateEntry, ThreadsReport};

/// Version of the JSON schema family. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
