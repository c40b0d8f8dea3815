//! Finding the interpreters: `_PyRuntime` (3.7+) or `interp_head` (2.7, 3.6),
//! by symbol, section, cookie, or a validated scan of the interpreter's data.

use serde::Serialize;

use crate::corefile::CoreThread;
use crate::interpreter::runtime_address::{self, RuntimeStrategy};
use crate::layout::Layout;
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;
use crate::process::Process;

/// Interpreters followed through `next`, at most.
pub const MAX_INTERPRETERS: usize = 256;
/// Bytes of writable data scanned for an interpreter state, at most.
const MAX_SCAN_BYTES: u64 = 64 << 20;

/// Where the interpreters are, and how that was found.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeLocation {
    /// The strategy that worked.
    pub strategy: RuntimeStrategy,
    /// `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// The word that points at the first interpreter (`interp_head` or
    /// `_PyRuntime.interpreters.head`).
    pub head_pointer: u64,
    /// Every interpreter state, main first, following `next`.
    pub interpreters: Vec<u64>,
    /// A problem met while following the list, if any.
    pub warning: Option<String>,
}

/// Field offsets the search needs.
struct Offsets {
    interpreters_head: Option<u64>,
    interpreters_main: Option<u64>,
    interp_next: u64,
    threads_head: u64,
    tstate_interp: u64,
    tstate_next: u64,
    tstate_thread_id: u64,
}

impl Offsets {
    fn from(layout: &Layout) -> Option<Offsets> {
        let offsets = layout.offsets();
        Some(Offsets {
            interpreters_head: offsets.runtime.interpreters_head.get(),
            interpreters_main: offsets.runtime.interpreters_main.get(),
            interp_next: offsets.interp.next.get()?,
            threads_head: offsets.interp.threads_head.get()?,
            tstate_interp: offsets.tstate.interp.get()?,
            tstate_next: offsets.tstate.next.get()?,
            tstate_thread_id: offsets.tstate.thread_id.get()?,
        })
    }
}

/// Why the interpreter states could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No CPython version was found.
    #[error("no CPython version")]
    NoVersion,
    /// The module that defines the interpreter is not in the core's file list.
    #[error("the interpreter module is not mapped")]
    ModuleNotMapped,
    /// The layout lacks the fields the runtime walk reads.
    #[error("the layout lacks the interpreter and thread-state fields")]
    LayoutLacksFields,
    /// No strategy found an interpreter state.
    #[error("no interpreter state found by symbol, section, cookie or scan")]
    NotFound,
    /// The list of interpreters holds none that can be read.
    #[error("the interpreter list at {head:#x} is empty or unreadable")]
    EmptyInterpreterList {
        /// Where the list's head pointer is.
        head: u64,
    },
}

/// Find the interpreters of `process` with `layout`.
pub fn locate(process: &Process, layout: &Layout) -> Result<RuntimeLocation, RuntimeError> {
    process.python().ok_or(RuntimeError::NoVersion)?;
    let module = process
        .python_module()
        .ok_or(RuntimeError::ModuleNotMapped)?;
    let offsets = Offsets::from(layout).ok_or(RuntimeError::LayoutLacksFields)?;
    let memory = process.memory();
    let (head_pointer, runtime, strategy) = by_symbols(process, module, layout, &offsets)
        .or_else(|| {
            scan(process, module, &offsets)
                .map(|(head, runtime)| (head, runtime, RuntimeStrategy::InterpreterScan))
        })
        .ok_or(RuntimeError::NotFound)?;
    let (interpreters, warning) = follow(memory, head_pointer, &offsets);
    if interpreters.is_empty() {
        return Err(RuntimeError::EmptyInterpreterList { head: head_pointer });
    }
    Ok(RuntimeLocation {
        strategy,
        runtime,
        head_pointer,
        interpreters,
        warning,
    })
}

fn by_symbols(
    process: &Process,
    module: &Module,
    layout: &Layout,
    offsets: &Offsets,
) -> Option<(u64, Option<u64>, RuntimeStrategy)> {
    if let Some(head_offset) = offsets.interpreters_head {
        let (runtime, strategy) = runtime_address::find(process.core(), process.memory(), module)?;
        return Some((runtime.wrapping_add(head_offset), Some(runtime), strategy));
    }
    // 2.7 and 3.6: the static `interp_head` in pystate.c.
    let head = layout.static_address(module, "pystate.c", "interp_head")?;
    Some((head, None, RuntimeStrategy::InterpHeadSymbol))
}

/// Thread states followed per interpreter while validating a scan hit.
const MAX_VALIDATE_THREADS: usize = 1024;

/// Whether `interp` looks like an interpreter state: every thread state on
/// its list points back at it, and one of them belongs to a thread of the
/// core (its `thread_id` is that thread's `pthread_t`). Pointer symmetry
/// alone is not enough: in 2.7 a thread state passes it too.
fn plausible_interpreter(
    memory: &impl Memory,
    interp: u64,
    offsets: &Offsets,
    threads: &[CoreThread],
) -> bool {
    if interp == 0 || !interp.is_multiple_of(8) {
        return false;
    }
    let Ok(mut tstate) = memory.read_ptr(interp.wrapping_add(offsets.threads_head)) else {
        return false;
    };
    let mut owns_core_thread = false;
    let mut seen = 0;
    while tstate != 0 {
        seen += 1;
        if seen > MAX_VALIDATE_THREADS || tstate % 8 != 0 {
            return false;
        }
        if memory
            .read_ptr(tstate.wrapping_add(offsets.tstate_interp))
            .ok()
            != Some(interp)
        {
            return false;
        }
        owns_core_thread |= memory
            .read_u64(tstate.wrapping_add(offsets.tstate_thread_id))
            .is_ok_and(|id| {
                threads
                    .iter()
                    .any(|t| crate::memory::threads::is_pthread_of(memory, t, id))
            });
        let Ok(next) = memory.read_ptr(tstate.wrapping_add(offsets.tstate_next)) else {
            return false;
        };
        tstate = next;
    }
    owns_core_thread
}

/// Scan the module's writable data for a word pointing at a plausible
/// interpreter state; return that word's address and the implied runtime.
fn scan(process: &Process, module: &Module, offsets: &Offsets) -> Option<(u64, Option<u64>)> {
    let core = process.core();
    let memory = process.memory();
    for (vaddr, bytes) in core.writable_bytes_in(module.base, module.end, MAX_SCAN_BYTES) {
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let value = u64::from_le_bytes(word.try_into().ok()?);
            // Cheap filter first: the value must point into dumped memory.
            if value < 0x1000 || value % 8 != 0 || core.segment_index(value).is_none() {
                continue;
            }
            if plausible_interpreter(memory, value, offsets, core.threads()) {
                let head = vaddr + (i * 8) as u64;
                let runtime = offsets.interpreters_head.map(|o| head.wrapping_sub(o));
                // Other statics point at the interpreter too (faulthandler's
                // does); in the runtime, `interpreters.main` is on the list.
                if let (Some(rt), Some(main_at)) = (runtime, offsets.interpreters_main)
                    && !main_is_listed(memory, rt.wrapping_add(main_at), value, offsets)
                {
                    continue;
                }
                return Some((head, runtime));
            }
        }
    }
    None
}

/// Whether the word at `main_at` points at an interpreter on the list that
/// starts at `head` (the main interpreter is the oldest, so the last).
fn main_is_listed(memory: &impl Memory, main_at: u64, head: u64, offsets: &Offsets) -> bool {
    let Ok(main) = memory.read_ptr(main_at) else {
        return false;
    };
    let mut interp = head;
    for _ in 0..MAX_INTERPRETERS {
        if interp == 0 {
            return false;
        }
        if interp == main {
            return true;
        }
        match memory.read_ptr(interp.wrapping_add(offsets.interp_next)) {
            Ok(next) => interp = next,
            Err(_) => return false,
        }
    }
    false
}

/// Follow `next` from the head pointer, with a cap and a cycle check.
fn follow(
    memory: &impl Memory,
    head_pointer: u64,
    offsets: &Offsets,
) -> (Vec<u64>, Option<String>) {
    let mut out = Vec::new();
    let mut cur = match memory.read_ptr(head_pointer) {
        Ok(p) => p,
        Err(e) => return (out, Some(e.to_string())),
    };
    while cur != 0 {
        if out.contains(&cur) {
            return (
                out,
                Some(format!("the interpreter list loops back to {cur:#x}")),
            );
        }
        if out.len() >= MAX_INTERPRETERS {
            return (
                out,
                Some(format!(
                    "more than {MAX_INTERPRETERS} interpreters; the rest are ignored"
                )),
            );
        }
        out.push(cur);
        cur = match memory.read_ptr(cur.wrapping_add(offsets.interp_next)) {
            Ok(p) => p,
            Err(e) => return (out, Some(e.to_string())),
        };
    }
    (out, None)
}
