//! Every interpreter's thread states, matched to the core's threads, with
//! their Python frames and who held the GIL.

use std::collections::HashSet;

use serde::Serialize;

use super::frames::{self, FrameWalk};
use super::nesting::{self, Nestable, NestingOrder};
use super::objects::Objects;
use super::runtime::{self, RuntimeLocation};
use super::types::TypeAnchors;
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::layout::{Layout, LayoutChoice, LayoutOptions, select};
use crate::memory::{Memory, MemoryExt};
use crate::process::Process;

/// Thread states followed per interpreter, at most.
pub const MAX_THREADS: usize = 65_536;

/// One Python thread state.
///
/// An OS thread that runs subinterpreters holds several (see
/// [`PythonState::thread_states_of`]): `nesting` says where this one is.
#[derive(Debug, Clone, Serialize)]
pub struct PyThread {
    /// Address of the `PyThreadState`.
    pub tstate: u64,
    /// Its interpreter.
    pub interpreter: u64,
    /// Its interpreter's id (0 is the main interpreter), when the layout has it.
    pub interpreter_id: Option<i64>,
    /// `thread_id`: the `pthread_t`, which on glibc is the thread's thread pointer.
    pub thread_id: u64,
    /// `native_thread_id` (3.11+): the LWP.
    pub native_thread_id: Option<u64>,
    /// The core thread it was matched to.
    pub lwp: Option<i32>,
    /// Whether this thread held the GIL (its interpreter's, from 3.12).
    pub holds_gil: bool,
    /// Its place among the thread states of its OS thread: 0 is the
    /// outermost (entered first), the highest the one the thread runs now.
    pub nesting: usize,
    /// How that place was found.
    pub nesting_order: NestingOrder,
    /// An address in the C frame of the innermost eval loop running it, on
    /// its OS thread's stack (3.10+), which orders the thread states of one
    /// OS thread and places their frames in its native stack.
    pub c_stack_anchor: Option<u64>,
    /// Its frames.
    pub stack: FrameWalk,
}

/// One interpreter.
#[derive(Debug, Clone, Serialize)]
pub struct PyInterpreter {
    /// Address of the `PyInterpreterState`.
    pub address: u64,
    /// Its id (0 is the main interpreter), when the layout has it.
    pub id: Option<i64>,
    /// Its thread states, newest first as CPython links them.
    pub threads: Vec<u64>,
}

/// The interpreter side of a process.
#[derive(Debug, Clone)]
pub struct PythonState {
    /// The layout and how it was chosen.
    pub layout: LayoutChoice,
    /// Where the interpreters are.
    pub runtime: RuntimeLocation,
    /// Every interpreter.
    pub interpreters: Vec<PyInterpreter>,
    /// Every thread state of every interpreter, interpreter by interpreter.
    pub threads: Vec<PyThread>,
    /// The thread state that held the GIL, if known (the main
    /// interpreter's GIL from 3.12, where each interpreter can have its own).
    pub gil_holder: Option<u64>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
    /// Built-in types found by address (the main interpreter's builtins).
    pub type_anchors: TypeAnchors,
}

impl PythonState {
    /// The thread states bound to the core thread `lwp`, outermost first:
    /// one for a thread that runs only the main interpreter, one more per
    /// subinterpreter it entered from there; the last is the one it runs now.
    pub fn thread_states_of(&self, lwp: i32) -> Vec<&PyThread> {
        let mut states: Vec<&PyThread> =
            self.threads.iter().filter(|t| t.lwp == Some(lwp)).collect();
        states.sort_by_key(|t| t.nesting);
        states
    }

    /// The thread state the core thread `lwp` runs now (its innermost).
    pub fn current_thread_state(&self, lwp: i32) -> Option<&PyThread> {
        self.threads
            .iter()
            .filter(|t| t.lwp == Some(lwp))
            .max_by_key(|t| t.nesting)
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ThreadOptions {
    /// Read arguments and locals of every frame.
    pub locals: bool,
    /// How to choose the layout.
    pub layout: LayoutOptions,
}

/// Why the CPython state of a core could not be read at all.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PythonError {
    /// No interpreter module or version was found.
    #[error("no CPython interpreter was found in the core")]
    NoInterpreter,
    /// No layout could be chosen for the version.
    #[error(transparent)]
    Layout(#[from] crate::layout::select::LayoutError),
    /// The interpreter states were not found.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The layout lacks a field the walk needs.
    #[error(transparent)]
    MissingField(#[from] crate::layout::MissingField),
}

/// Read every interpreter and thread state of `process`.
pub fn python_state(
    process: &Process,
    options: &ThreadOptions,
) -> Result<PythonState, PythonError> {
    process.python().ok_or(PythonError::NoInterpreter)?;
    let choice = select(
        process.python(),
        process.modules(),
        process.memory(),
        &options.layout,
    )?;
    let runtime = runtime::locate(process, &choice.layout)?;
    let layout = &choice.layout;
    let memory = process.memory();
    let objects = Objects::new(memory, layout, unicode_width(process));
    let type_anchors = TypeAnchors::from_builtins(&objects, runtime.interpreters.first().copied());
    let objects = objects.with_anchors(&type_anchors);
    let mut diagnostics = Vec::new();
    if let Some(w) = choice.dwarf_passed_over() {
        diagnostics.push(Diagnostic::warning(DiagnosticSource::Python, w));
    }
    if let Some(w) = choice.debug_offsets_damaged() {
        diagnostics.push(Diagnostic::warning(DiagnosticSource::Layout, w.to_string()));
    }
    if let Some(w) = choice.inferred() {
        diagnostics.push(Diagnostic::warning(DiagnosticSource::Layout, w));
    }
    if let Some(w) = &runtime.warning {
        diagnostics.push(Diagnostic::warning(DiagnosticSource::Python, w.clone()));
    }
    if let crate::layout::LayoutSource::Dwarf {
        cache_rejected: Some(why),
        ..
    } = &layout.source
    {
        diagnostics.push(Diagnostic::warning(
            DiagnosticSource::Layout,
            format!("the cached layout failed validation ({why}); rebuilt from DWARF and the cache entry rewritten"),
        ));
    }
    let offsets = layout.offsets();
    let threads_head = offsets.interp.threads_head.require()?;
    let next = offsets.tstate.next.require()?;
    let interp_id = offsets.interp.id.get();
    let gil_holder = gil_holder_of(
        process,
        layout,
        &runtime,
        runtime.interpreters.last().copied(),
    );
    let mut interpreters = Vec::new();
    let mut threads = Vec::new();
    let mut seen = HashSet::new();
    for &interp in &runtime.interpreters {
        let id = interp_id.and_then(|o| memory.read_i64(interp.wrapping_add(o)).ok());
        // From 3.12 each interpreter may have a GIL of its own.
        let interp_gil_holder = if offsets.interp.ceval_gil.get().is_some() {
            gil_holder_of(process, layout, &runtime, Some(interp))
        } else {
            gil_holder
        };
        let mut list = Vec::new();
        let mut tstate = match memory.read_ptr(interp.wrapping_add(threads_head)) {
            Ok(t) => t,
            Err(e) => {
                diagnostics.push(
                    Diagnostic::error(
                        DiagnosticSource::Python,
                        format!("interpreter {interp:#x}: its thread list is unreadable: {e}"),
                    )
                    .with_read_failure(Some(e.reason)),
                );
                0
            }
        };
        while tstate != 0 {
            if !seen.insert(tstate) {
                diagnostics.push(Diagnostic::error(
                    DiagnosticSource::Python,
                    format!("interpreter {interp:#x}: the thread list loops back to {tstate:#x}"),
                ));
                break;
            }
            if list.len() >= MAX_THREADS {
                diagnostics.push(Diagnostic::error(
                    DiagnosticSource::Python,
                    format!("interpreter {interp:#x}: more than {MAX_THREADS} thread states"),
                ));
                break;
            }
            list.push(tstate);
            threads.push(read_thread(
                process,
                &objects,
                layout,
                (interp, id),
                tstate,
                interp_gil_holder,
                options.locals,
            ));
            tstate = match memory.read_ptr(tstate.wrapping_add(next)) {
                Ok(t) => t,
                Err(e) => {
                    diagnostics.push(
                        Diagnostic::error(
                            DiagnosticSource::Python,
                            format!("thread state {tstate:#x}: next is unreadable: {e}"),
                        )
                        .with_read_failure(Some(e.reason)),
                    );
                    0
                }
            };
        }
        interpreters.push(PyInterpreter {
            address: interp,
            id,
            threads: list,
        });
    }
    order_nested(process, &mut threads, &mut diagnostics);
    for t in &threads {
        if t.lwp.is_none() {
            diagnostics.push(Diagnostic::note(
                DiagnosticSource::Python,
                format!(
                    "thread state {:#x} (thread id {:#x}) matches no thread of the core",
                    t.tstate, t.thread_id
                ),
            ));
        }
        if let Some(e) = &t.stack.error {
            diagnostics.push(
                Diagnostic::error(
                    DiagnosticSource::Python,
                    format!(
                        "thread state {:#x}: {e}; the frames before it are shown",
                        t.tstate
                    ),
                )
                .with_read_failure(t.stack.error_read_failure.clone()),
            );
        }
        if let Some(r) = &t.stack.recovery {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Python,
                format!("thread state {:#x}: {r}", t.tstate),
            ));
        }
    }
    Ok(PythonState {
        layout: choice,
        runtime,
        interpreters,
        threads,
        gil_holder,
        diagnostics,
        type_anchors,
    })
}

/// Give each thread state its place among those of its OS thread.
fn order_nested(process: &Process, threads: &mut [PyThread], diagnostics: &mut Vec<Diagnostic>) {
    for core_thread in process.threads() {
        let lwp = core_thread.lwp;
        let members: Vec<usize> = (0..threads.len())
            .filter(|&i| threads[i].lwp == Some(lwp))
            .collect();
        if members.len() < 2 {
            continue;
        }
        let view: Vec<Nestable> = members
            .iter()
            .map(|&i| Nestable {
                anchor: threads[i].c_stack_anchor,
                running: !threads[i].stack.frames.is_empty(),
                holds_gil: threads[i].holds_gil,
                interpreter_id: threads[i].interpreter_id,
            })
            .collect();
        let (order, how) = nesting::order(&view);
        for (place, &k) in order.iter().enumerate() {
            let t = &mut threads[members[k]];
            t.nesting = place;
            t.nesting_order = how;
        }
        if how == NestingOrder::Guess {
            diagnostics.push(Diagnostic::note(
                DiagnosticSource::Python,
                format!(
                    "LWP {lwp} holds {} thread states; the C stack does not order them, so \
                     the one holding the GIL is shown innermost and the others by interpreter id",
                    members.len()
                ),
            ));
        }
    }
}

fn read_thread<M: Memory>(
    process: &Process,
    objects: &Objects<'_, M>,
    layout: &Layout,
    (interp, interpreter_id): (u64, Option<i64>),
    tstate: u64,
    gil_holder: Option<u64>,
    locals: bool,
) -> PyThread {
    let memory = objects.memory;
    let offsets = layout.offsets();
    let thread_id = offsets
        .tstate
        .thread_id
        .get()
        .and_then(|o| memory.read_u64(tstate.wrapping_add(o)).ok())
        .unwrap_or(0);
    let native_thread_id = offsets
        .tstate
        .native_thread_id
        .get()
        .and_then(|o| memory.read_u64(tstate.wrapping_add(o)).ok());
    // The LWP is the surest match (3.11+); before that, pthread_t equals
    // the thread pointer. A thread state whose LWP is gone matches nothing: glibc hands
    // a dead thread's pthread_t (its cached stack) to the next thread.
    let core_thread = match native_thread_id.filter(|&n| n != 0) {
        Some(n) => process.threads().iter().find(|t| n == t.lwp as u64),
        None => process
            .threads()
            .iter()
            .find(|t| crate::memory::threads::is_pthread_of(memory, t, thread_id)),
    };
    let lwp = core_thread.map(|t| t.lwp);
    let c_stack_anchor = core_thread
        .and_then(|t| nesting::c_stack_anchor(process, layout, tstate, t.registers.sp()));
    let holds_gil_field = offsets.tstate.holds_gil;
    let holds_gil = if holds_gil_field.is_present() {
        // 3.13 (a bit of `_status`) and 3.14 (an int) say it per thread.
        read_field(memory, tstate, holds_gil_field).is_some_and(|v| v != 0)
    } else {
        gil_holder == Some(tstate)
    };
    PyThread {
        tstate,
        interpreter: interp,
        interpreter_id,
        thread_id,
        native_thread_id,
        lwp,
        holds_gil,
        nesting: 0,
        nesting_order: NestingOrder::Single,
        c_stack_anchor,
        stack: frames::walk(objects, tstate, locals),
    }
}

/// Read a field, honouring bitfields.
fn read_field(memory: &impl Memory, base: u64, field: crate::layout::Field) -> Option<u64> {
    let offset = field.get()?;
    match field.bits() {
        Some((bit, width)) if width < 64 => {
            let word = memory.read_u64(base.wrapping_add(bit / 64 * 8)).ok()?;
            Some((word >> (bit % 64)) & ((1u64 << width) - 1))
        }
        _ => match field.size()? {
            1 => memory
                .read_u8(base.wrapping_add(offset))
                .ok()
                .map(u64::from),
            2 => memory
                .read_u16(base.wrapping_add(offset))
                .ok()
                .map(u64::from),
            4 => memory
                .read_u32(base.wrapping_add(offset))
                .ok()
                .map(u64::from),
            _ => memory.read_u64(base.wrapping_add(offset)).ok(),
        },
    }
}

/// The thread state that held the GIL, by the means each version has; from
/// 3.12, the GIL of `interp` (each interpreter may have its own).
fn gil_holder_of(
    process: &Process,
    layout: &Layout,
    runtime: &RuntimeLocation,
    interp: Option<u64>,
) -> Option<u64> {
    let memory = process.memory();
    let offsets = layout.offsets();
    // 2.7 and 3.6: `_PyThreadState_Current` is NULL while the GIL is released.
    if let Some(module) = process.python_module()
        && runtime.runtime.is_none()
    {
        let current = module.symbol_address("_PyThreadState_Current", None)?;
        return memory.read_ptr(current).ok().filter(|&t| t != 0);
    }
    let rt = runtime.runtime?;
    // 3.7–3.11: the runtime's current thread state, else the GIL's last holder while locked.
    if let Some(off) = offsets.runtime.tstate_current.get()
        && let Some(t) = memory
            .read_ptr(rt.wrapping_add(off))
            .ok()
            .filter(|&t| t != 0)
    {
        return Some(t);
    }
    let (holder, locked) = match (
        offsets.runtime.gil_last_holder.get(),
        offsets.runtime.gil_locked.get(),
    ) {
        (Some(h), Some(l)) => (rt + h, rt + l),
        _ => {
            // 3.12+: the interpreter's GIL, through `ceval.gil`.
            let interp = interp?;
            let gil = memory
                .read_ptr(interp.wrapping_add(offsets.interp.ceval_gil.get()?))
                .ok()?;
            (
                gil + offsets.gil_runtime.last_holder.get()?,
                gil + offsets.gil_runtime.locked.get()?,
            )
        }
    };
    let is_locked = memory.read_i32(locked).ok()? != 0;
    is_locked
        .then(|| memory.read_ptr(holder).ok())
        .flatten()
        .filter(|&t| t != 0)
}

/// 2.7's `unicode` code-unit width (2 or 4): UCS2 builds export `PyUnicodeUCS2_*`.
pub fn unicode_width(process: &Process) -> u64 {
    let ucs2 = process
        .python_module()
        .is_some_and(|m| m.symbol_address("PyUnicodeUCS2_FromString", None).is_some());
    if ucs2 { 2 } else { 4 }
}
