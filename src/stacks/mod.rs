//! Whole stacks: a thread's native frames (from [`crate::unwind`]) with its
//! Python frames (from [`crate::python`]) interleaved at the eval-loop frames
//! that run them, and the fatal error a thread died in.

pub(crate) mod crash_site;
mod fatal;
mod tail_calls;

use std::collections::HashMap;

use serde::Serialize;

pub use fatal::{FatalError, fatal_error};

use crate::dwarf::SourceLines;
use crate::layout::VersionRules;
use crate::modules::Module;
use crate::process::Process;
use crate::python::{PyFrame, PyThread, PythonState};
use crate::unwind::{NativeFrame, NativeStack, StopReason, unwind_thread};

/// One frame of a merged stack.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
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
    /// The thread states whose Python frames the stack holds, outermost
    /// first (several when the thread runs subinterpreters). Their Python
    /// frames appear in the stack innermost thread state first.
    pub thread_states: Vec<StackThreadState>,
}

/// One thread state whose Python frames a merged stack holds.
#[derive(Debug, Clone, Serialize)]
pub struct StackThreadState {
    /// Address of the `PyThreadState`.
    pub thread_state: u64,
    /// Its interpreter's id (0 is the main interpreter).
    pub interpreter_id: Option<i64>,
    /// How many of the stack's Python frames are its.
    pub python_frames: usize,
}

/// The Python frames of one thread state, for [`merge_thread_states`].
#[derive(Debug, Clone, Copy)]
pub struct PythonSegment<'a> {
    /// Innermost first.
    pub frames: &'a [PyFrame],
    /// An address in the C frame of the innermost eval loop that runs them
    /// ([`PyThread::c_stack_anchor`]).
    pub anchor: Option<u64>,
}

/// A native function's name without the suffixes of GCC's clones and LTO's
/// copies (`.cold`, `.lto_priv.0`, `.constprop.N`).
pub(crate) fn base_name(function: &str) -> &str {
    function.split('.').next().unwrap_or(function)
}

/// Whether a native function is CPython's eval loop.
pub fn is_eval_frame(function: &str) -> bool {
    matches!(
        base_name(function),
        "_PyEval_EvalFrameDefault" | "PyEval_EvalFrameEx"
    )
}

/// Interleave `python` (innermost first) into `native`: each eval frame runs
/// one Python frame, or, where `rules` say it runs several (3.11+), every
/// frame down to and including the next entry frame. Returns the frames and
/// how many Python frames no eval frame claimed (appended at the outer end).
pub fn merge(
    native: &NativeStack,
    python: &[PyFrame],
    rules: Option<&VersionRules>,
) -> (Vec<StackFrame>, usize) {
    let segment = PythonSegment {
        frames: python,
        anchor: None,
    };
    merge_thread_states(native, &[segment], rules)
}

/// [`merge`] for a thread that holds several thread states: `segments`,
/// innermost thread state first, each run by eval-loop frames deeper in the
/// stack than the next one's. A segment whose anchor lies in an eval-loop
/// frame starts there; one without starts at the first eval-loop frame after
/// the segment inside it. Frames a segment had left when the next one started
/// stay in place, before it, and count as unattached.
pub fn merge_thread_states(
    native: &NativeStack,
    segments: &[PythonSegment<'_>],
    rules: Option<&VersionRules>,
) -> (Vec<StackFrame>, usize) {
    let several_per_eval = rules.is_some_and(|r| r.several_frames_per_eval);
    let total: usize = segments.iter().map(|s| s.frames.len()).sum();
    let mut out = Vec::with_capacity(native.frames.len() + total);
    let is_eval = |f: &NativeFrame| {
        // A tail-call frame is not on the stack: it runs no Python frame.
        f.trust != crate::unwind::Trust::TailCall
            && f.function.as_deref().is_some_and(is_eval_frame)
    };
    let starts: Vec<Option<usize>> = segments
        .iter()
        .map(|s| {
            s.anchor
                .and_then(|a| frame_holding(native, a))
                .filter(|&i| is_eval(&native.frames[i]))
        })
        .collect();
    let (mut seg, mut pos, mut unattached) = (0, 0, 0);
    for (i, frame) in native.frames.iter().enumerate() {
        if is_eval(frame) {
            if let Some(k) = (seg + 1..segments.len()).find(|&k| starts[k] == Some(i)) {
                for (j, left) in segments.iter().enumerate().take(k).skip(seg) {
                    let rest = &left.frames[if j == seg { pos } else { 0 }..];
                    unattached += rest.len();
                    out.extend(rest.iter().cloned().map(StackFrame::Python));
                }
                (seg, pos) = (k, 0);
            }
            // The segment is done: the next one may start here unless it is anchored further out.
            while seg < segments.len()
                && pos == segments[seg].frames.len()
                && seg + 1 < segments.len()
                && starts[seg + 1].is_none_or(|s| s == i)
            {
                (seg, pos) = (seg + 1, 0);
            }
            if let Some(segment) = segments.get(seg) {
                while let Some(p) = segment.frames.get(pos) {
                    out.push(StackFrame::Python(p.clone()));
                    pos += 1;
                    if !several_per_eval || p.entry {
                        break;
                    }
                }
            }
        }
        out.push(StackFrame::Native(frame.clone()));
    }
    if let Some(segment) = segments.get(seg) {
        let rest = segment.frames.get(pos..).unwrap_or_default();
        unattached += rest.len();
        out.extend(rest.iter().cloned().map(StackFrame::Python));
        for later in &segments[seg + 1..] {
            unattached += later.frames.len();
            out.extend(later.frames.iter().cloned().map(StackFrame::Python));
        }
    }
    (out, unattached)
}

/// The native frame whose stack memory holds `address`: a frame's locals lie
/// between its stack pointer and its caller's.
fn frame_holding(native: &NativeStack, address: u64) -> Option<usize> {
    let on_stack: Vec<usize> = (0..native.frames.len())
        .filter(|&i| native.frames[i].trust != crate::unwind::Trust::TailCall)
        .collect();
    on_stack.iter().enumerate().find_map(|(n, &i)| {
        let low = native.frames[i].sp;
        let high = on_stack
            .get(n + 1)
            .map_or(u64::MAX, |&j| native.frames[j].sp);
        (low <= address && address < high).then_some(i)
    })
}

/// The merged stack of the crashing thread, with its Python frames when
/// `python` has a thread state for it.
pub fn crashed_stack(
    process: &Process,
    python: Option<&PythonState>,
    sources: Option<&mut SourceCache>,
) -> Option<MergedStack> {
    let lwp = process.crashed_thread()?.lwp;
    let states = python.map(|p| p.thread_states_of(lwp)).unwrap_or_default();
    Some(merged_stack_of(process, lwp, &states, sources))
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
    let states: Vec<&PyThread> = python.into_iter().collect();
    merged_stack_of(process, lwp, &states, sources)
}

/// The merged stack of the core thread `lwp` with the Python frames of all
/// its thread states (`states`, outermost first, as
/// [`PythonState::thread_states_of`] gives them); `sources`, when given,
/// adds source lines.
pub fn merged_stack_of(
    process: &Process,
    lwp: i32,
    states: &[&PyThread],
    sources: Option<&mut SourceCache>,
) -> MergedStack {
    let rules = process.python().map(|p| p.version.rules());
    let segments: Vec<PythonSegment<'_>> = states
        .iter()
        .rev()
        .map(|t| PythonSegment {
            frames: &t.stack.frames,
            anchor: t.c_stack_anchor,
        })
        .collect();
    let thread_states = states
        .iter()
        .map(|t| StackThreadState {
            thread_state: t.tstate,
            interpreter_id: t.interpreter_id,
            python_frames: t.stack.frames.len(),
        })
        .collect();
    let Some(mut native) = unwind_thread(process, lwp) else {
        let frames: Vec<StackFrame> = segments
            .iter()
            .flat_map(|s| s.frames.iter().cloned().map(StackFrame::Python))
            .collect();
        return MergedStack {
            unattached_python_frames: frames.len(),
            frames,
            native_stop: None,
            fatal_error: None,
            thread_states,
        };
    };
    if let Some(sources) = sources {
        tail_calls::add_tail_call_frames(process, sources, &mut native.frames);
        sources.annotate(process, &mut native.frames);
    }
    let (frames, unattached_python_frames) =
        merge_thread_states(&native, &segments, rules.as_ref());
    MergedStack {
        fatal_error: fatal_error(process, &native),
        frames,
        native_stop: Some(native.stop),
        unattached_python_frames,
        thread_states,
    }
}

#[cfg(test)]
mod tests;
