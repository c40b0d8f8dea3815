//! The `tasks` report: every asyncio task, by event loop.

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::asyncio::{EventLoop, Tasks};
use crate::error::{Diagnostic, DiagnosticSource};
use crate::process::Process;
use crate::python::{PythonError, PythonState};

/// The whole `tasks` report.
#[derive(Debug, Clone, Serialize)]
pub struct TasksReport {
    /// Always `"tasks"`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Process id.
    pub pid: Option<i32>,
    /// The Python version.
    pub python_version: Option<String>,
    /// Where the layout of the task structure came from.
    pub task_layout_source: Option<String>,
    /// Event loops, each with its tasks.
    pub loops: Vec<EventLoop>,
    /// Why tasks or facts about them may be missing, and what would let
    /// pymortem read them; empty when every task was read.
    pub incomplete: Vec<String>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
}

impl TasksReport {
    /// Build the report. `python` is the interpreter state, or why it could not be read.
    pub fn build(process: &Process, python: Result<&PythonState, &PythonError>) -> TasksReport {
        let mut diagnostics = process.diagnostics().to_vec();
        let tasks = match python {
            Ok(state) => {
                diagnostics.extend(state.diagnostics.iter().cloned());
                crate::asyncio::tasks(process, state)
            }
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    DiagnosticSource::Python,
                    format!("no asyncio tasks: {e}"),
                ));
                Tasks {
                    incomplete: vec![format!(
                        "the interpreter's structures could not be read: {e}"
                    )],
                    ..Tasks::default()
                }
            }
        };
        TasksReport {
            schema: "tasks",
            schema_version: SCHEMA_VERSION,
            pid: process.pid(),
            python_version: process.python().map(|p| p.version.to_string()),
            task_layout_source: tasks.layout_source,
            loops: tasks.loops,
            incomplete: tasks.incomplete,
            diagnostics,
        }
    }

    /// 0 when every task was read; 3 (incomplete) when some could not be
    /// (a missing layout, GC lists that could not be walked, an unreadable
    /// task); 2 when the core holds no Python.
    pub fn exit_code(&self) -> i32 {
        if self.python_version.is_none() {
            2
        } else if !self.incomplete.is_empty()
            || self
                .loops
                .iter()
                .flat_map(|l| &l.tasks)
                .any(|t| t.unreadable.is_some())
        {
            3
        } else {
            0
        }
    }
}
