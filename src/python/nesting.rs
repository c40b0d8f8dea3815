//! Several thread states on one OS thread, and their order.
//!
//! A thread that runs a subinterpreter (`_interpreters.run_string`,
//! `Py_NewInterpreter` and `PyThreadState_Swap` from C) keeps the thread
//! state it came from, frames and all, and runs the new one deeper on the
//! same C stack; a chain `0 → 1 → 2` leaves three thread states bound to one
//! OS thread. Each thread state's innermost running eval loop keeps a local
//! that the thread state points at: `tstate->cframe` (3.10–3.12) or the
//! entry frame that ends its frame chain (3.12+). The C stack grows down, so
//! the thread state whose local sits at the higher address was entered first:
//! that is the order shown, outermost first. Without that evidence (before
//! 3.10, or an unreadable chain) the order is a guess, said as such: the
//! thread state holding the GIL innermost, the others by interpreter id.

use serde::Serialize;

use crate::layout::Layout;
use crate::memory::MemoryExt;
use crate::process::Process;

/// Frames followed from a thread state to its first C-stack frame, at most.
const MAX_STEPS: usize = super::frames::MAX_FRAMES;
/// `_PyInterpreterFrame.owner` values from 3.12 on that are not Python
/// frames: `FRAME_OWNED_BY_CSTACK` (3 in 3.12 and 3.13, 4 in 3.14) and
/// `FRAME_OWNED_BY_INTERPRETER` (3 in 3.14).
const OWNER_NOT_PYTHON_MIN: u8 = 3;

/// How the order of an OS thread's thread states was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NestingOrder {
    /// The only thread state of its OS thread (or of no OS thread).
    Single,
    /// From the C-stack addresses of their eval loops.
    CStack,
    /// A guess: the thread state holding the GIL innermost, the others by
    /// interpreter id (the C stack gave no order).
    Guess,
}

/// An address inside the C frame of the innermost eval loop that runs the
/// thread state at `tstate`, on the stack of the core thread whose stack
/// pointer is `sp`; `None` when the thread state runs no eval loop there or
/// the version keeps no such pointer (before 3.10).
pub fn c_stack_anchor(process: &Process, layout: &Layout, tstate: u64, sp: u64) -> Option<u64> {
    let memory = process.memory();
    let core = process.core();
    let stack = core.segment_index(sp)?;
    // Live stack of that thread: above its stack pointer, in the same mapping.
    let on_stack = |address: u64| address >= sp && core.segment_index(address) == Some(stack);
    if let Some(cframe) = layout.offsets().tstate.cframe.get() {
        // 3.10–3.12: `&cframe`, a local of the eval loop (`root_cframe`,
        // inside the thread state, when none runs).
        let anchor = memory.read_ptr(tstate.wrapping_add(cframe)).ok()?;
        return on_stack(anchor).then_some(anchor);
    }
    // 3.13+: the entry frame of the innermost eval loop, found by its
    // address alone (a gcore whose stack pages gdb could not read holds
    // zeros there, but the pointers to it survive in the heap).
    let previous = layout.offsets().interp_frame.previous.get()?;
    let owner = layout.offsets().interp_frame.owner.get()?;
    let mut frame = memory
        .read_ptr(tstate.wrapping_add(layout.offsets().tstate.current_frame.get()?))
        .ok()?;
    for _ in 0..MAX_STEPS {
        if frame == 0 {
            return None;
        }
        if on_stack(frame) {
            return Some(frame);
        }
        // 3.14's base frame, in the thread state: the chain ends off the stack.
        if memory.read_u8(frame.wrapping_add(owner)).ok()? >= OWNER_NOT_PYTHON_MIN {
            return None;
        }
        frame = memory.read_ptr(frame.wrapping_add(previous)).ok()?;
    }
    None
}

/// One thread state, as the ordering sees it.
#[derive(Debug, Clone, Copy)]
pub struct Nestable {
    /// Its C-stack anchor ([`c_stack_anchor`]).
    pub anchor: Option<u64>,
    /// Whether it has Python frames.
    pub running: bool,
    /// Whether it holds the GIL.
    pub holds_gil: bool,
    /// Its interpreter's id.
    pub interpreter_id: Option<i64>,
}

/// The order of one OS thread's thread states, outermost first, as indexes
/// into `states`, and how it was found.
pub fn order(states: &[Nestable]) -> (Vec<usize>, NestingOrder) {
    let mut indexes: Vec<usize> = (0..states.len()).collect();
    if states.len() < 2 {
        return (indexes, NestingOrder::Single);
    }
    let id = |i: usize| states[i].interpreter_id.unwrap_or(i64::MAX);
    if states.iter().all(|s| !s.running || s.anchor.is_some()) {
        // Idle thread states (no frames) nest nothing: first; then the
        // highest anchor (the outermost eval loop) first.
        indexes.sort_by_key(|&i| {
            let s = &states[i];
            (s.running, std::cmp::Reverse(s.anchor.unwrap_or(0)), id(i))
        });
        return (indexes, NestingOrder::CStack);
    }
    indexes.sort_by_key(|&i| (states[i].holds_gil, states[i].running, id(i)));
    (indexes, NestingOrder::Guess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(anchor: Option<u64>, running: bool, gil: bool, id: i64) -> Nestable {
        Nestable {
            anchor,
            running,
            holds_gil: gil,
            interpreter_id: Some(id),
        }
    }

    #[test]
    fn the_higher_c_stack_address_is_the_outer_thread_state() {
        // A chain 0 -> 2 -> 1: ids do not give the order, the stack does.
        let states = [
            state(Some(0x7000_0100), true, false, 1),
            state(Some(0x7000_9000), true, false, 0),
            state(Some(0x7000_5000), true, false, 2),
            state(None, false, false, 3),
        ];
        assert_eq!(order(&states), (vec![3, 1, 2, 0], NestingOrder::CStack));
    }

    #[test]
    fn without_c_stack_evidence_the_order_is_a_guess() {
        let states = [
            state(None, true, true, 0),
            state(Some(0x7000_0100), true, false, 2),
            state(None, true, false, 1),
        ];
        assert_eq!(order(&states), (vec![2, 1, 0], NestingOrder::Guess));
    }

    #[test]
    fn one_thread_state_needs_no_order() {
        assert_eq!(
            order(&[state(None, true, false, 0)]),
            (vec![0], NestingOrder::Single)
        );
    }
}
