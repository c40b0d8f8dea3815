//! The `threads` report: every thread with its Python stack.

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::asyncio::EventLoop;
use crate::error::{Diagnostic, DiagnosticSource};
use crate::interpreter::runtime_address::RuntimeStrategy;
use crate::layout::LayoutSource;
use crate::process::Process;
use crate::python::{NestingOrder, PyFrame, PyThread, PythonError, PythonState};
use crate::stacks::{MergedStack, SourceCache, merged_stack_of};

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
    /// Every interpreter, by id (the main interpreter, 0, first).
    pub interpreters: Vec<InterpreterReport>,
    /// Every thread: the core's threads, then thread states matching none
    /// of them (one entry each). Every thread state of every interpreter is
    /// in exactly one entry's `thread_states`.
    pub threads: Vec<ThreadEntry>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
    /// With `--tasks`: every asyncio task, by event loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<EventLoop>>,
    /// With `--tasks`: why tasks or facts about them may be missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks_incomplete: Vec<String>,
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

/// One thread state of a thread.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadStateEntry {
    /// Address of the `PyThreadState`.
    pub thread_state: u64,
    /// Address of its interpreter.
    pub interpreter: u64,
    /// Its interpreter's id (0 is the main interpreter).
    pub interpreter_id: Option<i64>,
    /// Whether it held the GIL (its interpreter's).
    pub holds_gil: bool,
    /// Python frames, innermost first.
    pub frames: Vec<PyFrame>,
    /// Why the frame walk stopped early, if it did.
    pub frames_error: Option<String>,
}

impl ThreadStateEntry {
    fn new(s: &PyThread) -> ThreadStateEntry {
        ThreadStateEntry {
            thread_state: s.tstate,
            interpreter: s.interpreter,
            interpreter_id: s.interpreter_id,
            holds_gil: s.holds_gil,
            frames: s.stack.frames.clone(),
            frames_error: s.stack.error.clone(),
        }
    }
}

/// One thread.
///
/// A thread that runs subinterpreters holds several thread states; the
/// fields `holds_gil` to `frames_error` describe the one it runs now (its
/// innermost), `thread_states` lists them all.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadEntry {
    /// Kernel thread id; null for a thread state that matches no thread of the core.
    pub lwp: Option<i32>,
    /// `pthread_t`: the core's (see [`crate::memory::threads`]), else the
    /// thread state's `thread_id`; null when neither gives it.
    pub pthread_id: Option<u64>,
    /// Whether it crashed.
    pub crashed: bool,
    /// Whether its current thread state held the GIL.
    pub holds_gil: bool,
    /// Address of its current `PyThreadState`; null for a thread without one.
    pub thread_state: Option<u64>,
    /// Address of that thread state's interpreter.
    pub interpreter: Option<u64>,
    /// That interpreter's id.
    pub interpreter_id: Option<i64>,
    /// That thread state's Python frames, innermost first.
    pub frames: Vec<PyFrame>,
    /// Why the frame walk stopped early, if it did.
    pub frames_error: Option<String>,
    /// Every thread state of the thread, outermost (entered first) first;
    /// the last is the current one.
    pub thread_states: Vec<ThreadStateEntry>,
    /// How the order of `thread_states` was found; null without thread states.
    pub thread_states_order: Option<NestingOrder>,
    /// With `--native`: native and Python frames merged, innermost first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<MergedStack>,
}

impl ThreadEntry {
    /// A thread with its thread states, outermost first.
    fn new(
        lwp: Option<i32>,
        pthread_id: Option<u64>,
        crashed: bool,
        states: &[&PyThread],
    ) -> ThreadEntry {
        let current = states.last();
        ThreadEntry {
            lwp,
            // A thread state names its thread by `pthread_t` where the core does not.
            pthread_id: pthread_id.or_else(|| states.first().map(|s| s.thread_id)),
            crashed,
            holds_gil: current.is_some_and(|s| s.holds_gil),
            thread_state: current.map(|s| s.tstate),
            interpreter: current.map(|s| s.interpreter),
            interpreter_id: current.and_then(|s| s.interpreter_id),
            frames: current.map(|s| s.stack.frames.clone()).unwrap_or_default(),
            frames_error: current.and_then(|s| s.stack.error.clone()),
            thread_states: states.iter().map(|s| ThreadStateEntry::new(s)).collect(),
            thread_states_order: current.map(|s| s.nesting_order),
            stack: None,
        }
    }
}

impl ThreadsReport {
    /// Unwind each core thread and merge its Python frames in.
    pub fn add_native_stacks(&mut self, process: &Process, python: Option<&PythonState>) {
        let mut sources = SourceCache::default();
        for t in &mut self.threads {
            let Some(lwp) = t.lwp else {
                continue;
            };
            let states = python.map(|p| p.thread_states_of(lwp)).unwrap_or_default();
            t.stack = Some(merged_stack_of(process, lwp, &states, Some(&mut sources)));
        }
    }

    /// Build the report. `python` is the interpreter state, or why it could not be read.
    pub fn build(process: &Process, python: Result<&PythonState, &PythonError>) -> ThreadsReport {
        let crashed = process.crashed_thread().map(|t| t.lwp);
        let mut diagnostics = process.diagnostics().to_vec();
        let mut threads = Vec::new();
        let (layout_source, runtime_strategy, interpreters) = match &python {
            Ok(state) => {
                diagnostics.extend(state.diagnostics.iter().cloned());
                let mut interps: Vec<InterpreterReport> = state
                    .interpreters
                    .iter()
                    .map(|i| InterpreterReport {
                        address: i.address,
                        id: i.id,
                        threads: i.threads.len(),
                    })
                    .collect();
                // CPython links the newest interpreter first.
                interps.sort_by_key(|i| i.id.unwrap_or(i64::MAX));
                (
                    Some(state.layout.layout.source.clone()),
                    Some(state.runtime.strategy),
                    interps,
                )
            }
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    DiagnosticSource::Python,
                    format!("no Python stacks: {e}"),
                ));
                (None, None, Vec::new())
            }
        };
        let state = python.as_ref().ok();
        for t in process.threads() {
            let states = state.map(|p| p.thread_states_of(t.lwp)).unwrap_or_default();
            threads.push(ThreadEntry::new(
                Some(t.lwp),
                crate::memory::threads::pthread_id(process.memory(), t),
                Some(t.lwp) == crashed,
                &states,
            ));
        }
        let unmatched = state.map_or(&[][..], |p| p.threads.as_slice());
        for s in unmatched.iter().filter(|s| s.lwp.is_none()) {
            threads.push(ThreadEntry::new(None, Some(s.thread_id), false, &[s]));
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
            tasks: None,
            tasks_incomplete: Vec::new(),
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
