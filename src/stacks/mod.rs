//! Whole stacks: a thread's native frames (from [`crate::unwind`]) with its
//! Python frames (from [`crate::python`]) interleaved at the eval-loop frames
//! that run them, and the fatal error a thread died in.

mod fatal;
mod tail_calls;

use std::collections::HashMap;

use serde::Serialize;

pub use fatal::{FatalError, fatal_error};

use crate::dwarf::SourceLines;
use crate::layout::PythonVersion;
use crate::modules::Module;
use crate::process::Process;
use crate::python::{PyFrame, PyThread, PythonState};
use crate::unwind::{NativeFrame, NativeStack, StopReason, unwind_thread};

/// One frame of a merged stack.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StackFrame {
    /// A Python frame.
    Python(PyFrame),
    /// A native frame.
    Native(NativeFrame),
}

/// A thread's merged stack.
#[derive(Debug, Clone, Serialize)]
pub struct MergedStack {
    /// Innermost first; each eval-loop frame follows the Python frames it runs.
    pub frames: Vec<StackFrame>,
    /// Why the native unwind stopped.
    pub native_stop: Option<StopReason>,
    /// Python frames that no eval-loop frame claimed (the native unwind
    /// ended early or lacks symbols); they are at the outer end.
    pub unattached_python_frames: usize,
    /// What the thread was dying of, when it is inside a fatal-error function.
    pub fatal_error: Option<FatalError>,
}

/// Whether a native function is CPython's eval loop.
pub fn is_eval_frame(function: &str) -> bool {
    // GCC clones and LTO copies carry suffixes: `.cold`, `.lto_priv.0`.
    let base = function.split('.').next().unwrap_or(function);
    matches!(base, "_PyEval_EvalFrameDefault" | "PyEval_EvalFrameEx")
}

/// Interleave `python` (innermost first) into `native`: up to 3.10 each eval
/// frame runs one Python frame; from 3.11 it runs every frame down to and
/// including the next entry frame. Returns the frames and how many Python
/// frames no eval frame claimed (appended at the outer end).
pub fn merge(
    native: &NativeStack,
    python: &[PyFrame],
    version: Option<PythonVersion>,
) -> (Vec<StackFrame>, usize) {
    let several_per_eval = version.is_some_and(|v| v.major_minor() >= (3, 11));
    let mut out = Vec::with_capacity(native.frames.len() + python.len());
    let mut next = python.iter();
    for frame in &native.frames {
        // A tail-call frame is not on the stack: it runs no Python frame.
        if frame.trust != crate::unwind::Trust::TailCall
            && frame.function.as_deref().is_some_and(is_eval_frame)
        {
            for p in next.by_ref() {
                out.push(StackFrame::Python(p.clone()));
                if !several_per_eval || p.entry {
                    break;
                }
            }
        }
        out.push(StackFrame::Native(frame.clone()));
    }
    let unattached = next.len();
    out.extend(next.cloned().map(StackFrame::Python));
    (out, unattached)
}

/// The merged stack of the crashing thread, with its Python frames when
/// `python` has a thread state for it.
pub fn crashed_stack(
    process: &Process,
    python: Option<&PythonState>,
    sources: Option<&mut SourceCache>,
) -> Option<MergedStack> {
    let lwp = process.crashed_thread()?.lwp;
    let thread = python.and_then(|p| p.threads.iter().find(|t| t.lwp == Some(lwp)));
    Some(merged_stack(process, lwp, thread, sources))
}

/// Debug info per module (source lines, inlined functions, call sites),
/// read on first use and kept for every thread of a report.
#[derive(Default)]
pub struct SourceCache {
    by_module: HashMap<String, Option<SourceLines>>,
    tail_calls: tail_calls::TailCallCache,
}

impl SourceCache {
    /// The module's source lines and call sites, when it has DWARF.
    fn lines(&mut self, module: &Module) -> Option<&SourceLines> {
        self.by_module
            .entry(module.recorded_path.clone())
            .or_insert_with(|| {
                [module.debug_file(), module.file()]
                    .into_iter()
                    .flatten()
                    .find_map(SourceLines::new)
            })
            .as_ref()
    }

    /// Give each frame its source lines and inlined functions.
    pub fn annotate(&mut self, process: &Process, frames: &mut [NativeFrame]) {
        for frame in frames {
            let Some(module) = process.modules().by_address(frame.address.address()) else {
                continue;
            };
            let Some(bias) = module.load_bias else {
                continue;
            };
            if let Some(lines) = self.lines(module) {
                frame.source = lines.frames(frame.address.lookup().wrapping_sub(bias));
            }
        }
    }
}

/// The merged stack of the core thread `lwp`, with its Python thread state
/// when it has one; `sources`, when given, adds source lines.
pub fn merged_stack(
    process: &Process,
    lwp: i32,
    python: Option<&PyThread>,
    sources: Option<&mut SourceCache>,
) -> MergedStack {
    let version = process.python().map(|p| p.version);
    let py_frames = python.map_or(&[][..], |t| t.stack.frames.as_slice());
    let Some(mut native) = unwind_thread(process, lwp) else {
        return MergedStack {
            frames: py_frames.iter().cloned().map(StackFrame::Python).collect(),
            native_stop: None,
            unattached_python_frames: py_frames.len(),
            fatal_error: None,
        };
    };
    if let Some(sources) = sources {
        tail_calls::add_tail_call_frames(process, sources, &mut native.frames);
        sources.annotate(process, &mut native.frames);
    }
    let (frames, unattached_python_frames) = merge(&native, py_frames, version);
    MergedStack {
        fatal_error: fatal_error(process, &native),
        frames,
        native_stop: Some(native.stop),
        unattached_python_frames,
    }
}
