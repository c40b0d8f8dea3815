//! The `threads` report: every thread with its Python stack.

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::error::Diagnostic;
use crate::layout::LayoutSource;
use crate::layout::runtime_address::RuntimeStrategy;
use crate::process::Process;
use crate::python::{PyFrame, PythonState};
use crate::stacks::{MergedStack, SourceCache, merged_stack};

/// The whole `threads` report.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsReport {
    /// Always `"threads"`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Process id.
    pub pid: Option<i32>,
    /// The Python version.
    pub python_version: Option<String>,
    /// Where the layout came from.
    pub layout_source: Option<LayoutSource>,
    /// How the interpreters were found.
    pub runtime_strategy: Option<RuntimeStrategy>,
    /// LWP of the crashing thread.
    pub crashed_lwp: Option<i32>,
    /// Every interpreter, main first.
    pub interpreters: Vec<InterpreterReport>,
    /// Every thread: the core's threads, then thread states matching none of them.
    pub threads: Vec<ThreadEntry>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
}

/// One interpreter.
#[derive(Debug, Clone, Serialize)]
pub struct InterpreterReport {
    /// Address of its `PyInterpreterState`.
    pub address: u64,
    /// Its id (0 is the main interpreter).
    pub id: Option<i64>,
    /// Number of thread states.
    pub threads: usize,
}

/// One thread.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadEntry {
    /// Kernel thread id; null for a thread state that matches no thread of the core.
    pub lwp: Option<i32>,
    /// `pthread_t` (`fs_base` for core threads, `thread_id` otherwise).
    pub pthread_id: u64,
    /// Whether it crashed.
    pub crashed: bool,
    /// Whether it held the GIL.
    pub holds_gil: bool,
    /// Address of its `PyThreadState`; null for a thread without one.
    pub thread_state: Option<u64>,
    /// Address of its interpreter.
    pub interpreter: Option<u64>,
    /// Python frames, innermost first.
    pub frames: Vec<PyFrame>,
    /// Why the frame walk stopped early, if it did.
    pub frames_error: Option<String>,
    /// With `--native`: native and Python frames merged, innermost first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<MergedStack>,
}

impl ThreadsReport {
    /// Unwind each core thread and merge its Python frames in.
    pub fn add_native_stacks(&mut self, process: &Process, python: Option<&PythonState>) {
        let mut sources = SourceCache::default();
        for t in &mut self.threads {
            let Some(lwp) = t.lwp else {
                continue;
            };
            let state = python.and_then(|p| p.threads.iter().find(|s| s.lwp == Some(lwp)));
            t.stack = Some(merged_stack(process, lwp, state, Some(&mut sources)));
        }
    }

    /// Build the report. `python` is the interpreter state, or why it could not be read.
    pub fn build(process: &Process, python: Result<&PythonState, String>) -> ThreadsReport {
        let crashed = process.crashed_thread().map(|t| t.lwp);
        let mut diagnostics = process.diagnostics().to_vec();
        let mut threads = Vec::new();
        let (layout_source, runtime_strategy, interpreters) = match &python {
            Ok(state) => {
                diagnostics.extend(state.diagnostics.iter().cloned());
                let interps = state
                    .interpreters
                    .iter()
                    .map(|i| InterpreterReport {
                        address: i.address,
                        id: i.id,
                        threads: i.threads.len(),
                    })
                    .collect();
                (
                    Some(state.layout.layout.source.clone()),
                    Some(state.runtime.strategy),
                    interps,
                )
            }
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    "python",
                    format!("no Python stacks: {e}"),
                ));
                (None, None, Vec::new())
            }
        };
        let states: &[crate::python::PyThread] =
            python.as_ref().map(|s| s.threads.as_slice()).unwrap_or(&[]);
        for t in process.threads() {
            let state = states.iter().find(|s| s.lwp == Some(t.lwp));
            threads.push(ThreadEntry {
                lwp: Some(t.lwp),
                pthread_id: t.pthread_id(),
                crashed: Some(t.lwp) == crashed,
                holds_gil: state.is_some_and(|s| s.holds_gil),
                thread_state: state.map(|s| s.tstate),
                interpreter: state.map(|s| s.interpreter),
                frames: state.map(|s| s.stack.frames.clone()).unwrap_or_default(),
                frames_error: state.and_then(|s| s.stack.error.clone()),
                stack: None,
            });
        }
        for s in states.iter().filter(|s| s.lwp.is_none()) {
            threads.push(ThreadEntry {
                lwp: None,
                pthread_id: s.thread_id,
                crashed: false,
                holds_gil: s.holds_gil,
                thread_state: Some(s.tstate),
                interpreter: Some(s.interpreter),
                frames: s.stack.frames.clone(),
                frames_error: s.stack.error.clone(),
                stack: None,
            });
        }
        ThreadsReport {
            schema: "threads",
            schema_version: SCHEMA_VERSION,
            pid: process.pid(),
            python_version: process.python().map(|p| p.version.to_string()),
            layout_source,
            runtime_strategy,
            crashed_lwp: crashed,
            interpreters,
            threads,
            diagnostics,
        }
    }
}

impl ThreadsReport {
    /// 0 when every thread state's frames were read; 3 (incomplete) when the
    /// interpreter's structures could not be read, no thread shows a Python
    /// frame, or a frame walk stopped early; 2 when the core holds no Python.
    pub fn exit_code(&self) -> i32 {
        if self.python_version.is_none() {
            2
        } else if self.layout_source.is_none()
            || self.threads.iter().all(|t| t.frames.is_empty())
            || self.threads.iter().any(|t| t.frames_error.is_some())
        {
            3
        } else {
            0
        }
    }
}
