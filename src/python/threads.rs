//! Every interpreter's thread states, matched to the core's threads, with
//! their Python frames and who held the GIL (cpython-internals.md §6).

use std::collections::HashSet;

use serde::Serialize;

use super::frames::{self, FrameWalk};
use super::objects::Objects;
use super::runtime::{self, RuntimeLocation};
use super::types::TypeAnchors;
use crate::error::Diagnostic;
use crate::layout::{Layout, LayoutChoice, LayoutOptions, select};
use crate::memory::{Memory, MemoryExt};
use crate::process::Process;

/// Thread states followed per interpreter, at most.
pub const MAX_THREADS: usize = 65_536;

/// One Python thread state.
#[derive(Debug, Clone, Serialize)]
pub struct PyThread {
    /// Address of the `PyThreadState`.
    pub tstate: u64,
    /// Its interpreter.
    pub interpreter: u64,
    /// `thread_id`: the `pthread_t`, which on x86-64 is the thread's `fs_base`.
    pub thread_id: u64,
    /// `native_thread_id` (3.11+): the LWP.
    pub native_thread_id: Option<u64>,
    /// The core thread it was matched to.
    pub lwp: Option<i32>,
    /// Whether this thread held the GIL.
    pub holds_gil: bool,
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
    /// Every thread state.
    pub threads: Vec<PyThread>,
    /// The thread state that held the GIL, if known.
    pub gil_holder: Option<u64>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
    /// Built-in types found by address (the main interpreter's builtins).
    pub type_anchors: TypeAnchors,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ThreadOptions {
    /// Read arguments and locals of every frame.
    pub locals: bool,
    /// How to choose the layout.
    pub layout: LayoutOptions,
}

/// Read every interpreter and thread state of `process`.
pub fn python_state(process: &Process, options: &ThreadOptions) -> Result<PythonState, String> {
    let version = process
        .python()
        .ok_or("no CPython interpreter was found in the core")?
        .version;
    let choice = select(process, &options.layout).map_err(|e| e.to_string())?;
    let runtime = runtime::locate(process, &choice.layout)?;
    let layout = &choice.layout;
    let memory = process.memory();
    let objects = Objects::new(memory, layout, version, unicode_width(process));
    let type_anchors = TypeAnchors::from_builtins(&objects, runtime.interpreters.first().copied());
    let objects = objects.with_anchors(&type_anchors);
    let mut diagnostics = Vec::new();
    if let Some(w) = &runtime.warning {
        diagnostics.push(Diagnostic::warning("python", w.clone()));
    }
    let off = |st: &str, f: &str| {
        layout
            .offset(st, f)
            .ok_or_else(|| format!("the layout has no {st}.{f}"))
    };
    let threads_head = off("PyInterpreterState", "threads_head")?;
    let next = off("PyThreadState", "next")?;
    let interp_id = layout.offset("PyInterpreterState", "id");
    let gil_holder = gil_holder(process, layout, &runtime);
    let mut interpreters = Vec::new();
    let mut threads = Vec::new();
    let mut seen = HashSet::new();
    for &interp in &runtime.interpreters {
        let id = interp_id.and_then(|o| memory.read_i64(interp.wrapping_add(o)).ok());
        let mut list = Vec::new();
        let mut tstate = match memory.read_ptr(interp.wrapping_add(threads_head)) {
            Ok(t) => t,
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    "python",
                    format!("interpreter {interp:#x}: its thread list is unreadable: {e}"),
                ));
                0
            }
        };
        while tstate != 0 {
            if !seen.insert(tstate) {
                diagnostics.push(Diagnostic::error(
                    "python",
                    format!("interpreter {interp:#x}: the thread list loops back to {tstate:#x}"),
                ));
                break;
            }
            if list.len() >= MAX_THREADS {
                diagnostics.push(Diagnostic::error(
                    "python",
                    format!("interpreter {interp:#x}: more than {MAX_THREADS} thread states"),
                ));
                break;
            }
            list.push(tstate);
            threads.push(read_thread(
                process,
                &objects,
                layout,
                interp,
                tstate,
                gil_holder,
                options.locals,
            ));
            tstate = match memory.read_ptr(tstate.wrapping_add(next)) {
                Ok(t) => t,
                Err(e) => {
                    diagnostics.push(Diagnostic::error(
                        "python",
                        format!("thread state {tstate:#x}: next is unreadable: {e}"),
                    ));
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
    for t in &threads {
        if t.lwp.is_none() {
            diagnostics.push(Diagnostic::note(
                "python",
                format!(
                    "thread state {:#x} (thread id {:#x}) matches no thread of the core",
                    t.tstate, t.thread_id
                ),
            ));
        }
        if let Some(e) = &t.stack.error {
            diagnostics.push(Diagnostic::error(
                "python",
                format!(
                    "thread state {:#x}: {e}; the frames before it are shown",
                    t.tstate
                ),
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

fn read_thread<M: Memory>(
    process: &Process,
    objects: &Objects<'_, M>,
    layout: &Layout,
    interp: u64,
    tstate: u64,
    gil_holder: Option<u64>,
    locals: bool,
) -> PyThread {
    let memory = objects.memory;
    let thread_id = layout
        .offset("PyThreadState", "thread_id")
        .and_then(|o| memory.read_u64(tstate.wrapping_add(o)).ok())
        .unwrap_or(0);
    let native_thread_id = layout
        .offset("PyThreadState", "native_thread_id")
        .and_then(|o| memory.read_u64(tstate.wrapping_add(o)).ok());
    // The LWP is the surest match (3.11+); before that, pthread_t equals fs_base.
    let lwp = process
        .threads()
        .iter()
        .find(|t| native_thread_id.is_some_and(|n| n == t.lwp as u64))
        .or_else(|| {
            process
                .threads()
                .iter()
                .find(|t| t.pthread_id() == thread_id)
        })
        .map(|t| t.lwp);
    let holds_gil = match layout.field("PyThreadState", "holds_gil") {
        // 3.13 (a bit of `_status`) and 3.14 (an int) say it per thread.
        Some(f) => read_field(memory, tstate, f).is_some_and(|v| v != 0),
        None => gil_holder == Some(tstate),
    };
    PyThread {
        tstate,
        interpreter: interp,
        thread_id,
        native_thread_id,
        lwp,
        holds_gil,
        stack: frames::walk(objects, tstate, locals),
    }
}

/// Read a field, honouring bitfields.
fn read_field(memory: &impl Memory, base: u64, field: &crate::layout::FieldLayout) -> Option<u64> {
    match (field.bit_offset, field.bit_size) {
        (Some(bit), Some(width)) if width < 64 => {
            let word = memory.read_u64(base.wrapping_add(bit / 64 * 8)).ok()?;
            Some((word >> (bit % 64)) & ((1u64 << width) - 1))
        }
        _ => match field.size {
            1 => memory
                .read_u8(base.wrapping_add(field.offset))
                .ok()
                .map(u64::from),
            2 => memory
                .read_u16(base.wrapping_add(field.offset))
                .ok()
                .map(u64::from),
            4 => memory
                .read_u32(base.wrapping_add(field.offset))
                .ok()
                .map(u64::from),
            _ => memory.read_u64(base.wrapping_add(field.offset)).ok(),
        },
    }
}

/// The thread state that held the GIL, by the means each version has.
fn gil_holder(process: &Process, layout: &Layout, runtime: &RuntimeLocation) -> Option<u64> {
    let memory = process.memory();
    // 2.7 and 3.6: `_PyThreadState_Current` is NULL while the GIL is released.
    if let Some(module) = process.python().and_then(|p| {
        process
            .modules()
            .modules()
            .iter()
            .find(|m| m.recorded_path == p.module)
    }) && runtime.runtime.is_none()
    {
        let current = module.symbol_address("_PyThreadState_Current", None)?;
        return memory.read_ptr(current).ok().filter(|&t| t != 0);
    }
    let rt = runtime.runtime?;
    // 3.7–3.11: the runtime's current thread state, else the GIL's last holder while locked.
    if let Some(off) = layout.offset("_PyRuntimeState", "tstate_current")
        && let Some(t) = memory
            .read_ptr(rt.wrapping_add(off))
            .ok()
            .filter(|&t| t != 0)
    {
        return Some(t);
    }
    let (holder, locked) = match (
        layout.offset("_PyRuntimeState", "gil_last_holder"),
        layout.offset("_PyRuntimeState", "gil_locked"),
    ) {
        (Some(h), Some(l)) => (rt + h, rt + l),
        _ => {
            // 3.12+: the interpreter's GIL, through `ceval.gil`.
            let interp = *runtime.interpreters.last()?;
            let gil = memory
                .read_ptr(interp.wrapping_add(layout.offset("PyInterpreterState", "ceval_gil")?))
                .ok()?;
            (
                gil + layout.offset("GilRuntimeState", "last_holder")?,
                gil + layout.offset("GilRuntimeState", "locked")?,
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
        .python()
        .and_then(|p| {
            process
                .modules()
                .modules()
                .iter()
                .find(|m| m.recorded_path == p.module)
        })
        .is_some_and(|m| m.symbol_address("PyUnicodeUCS2_FromString", None).is_some());
    if ucs2 { 2 } else { 4 }
}
