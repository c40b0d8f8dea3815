//! Cheap invariants that a layout read from the on-disk cache must satisfy on
//! this core before it is trusted: a cache entry is a file anyone may have
//! edited or damaged, and a wrong offset would silently change every stack.
//!
//! Each check reads a few words the core holds for any healthy process:
//! static type objects (`type` is its own type, `object` has no base, the
//! subclass bits of `tuple`) and the interpreter list (the first thread state
//! points back at its interpreter).

use super::Layout;
use crate::corefile::CoreThread;
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;

use super::tp_flags::{HEAPTYPE, TUPLE_SUBCLASS, TYPE_SUBCLASS};
use crate::memory::ReadError;

/// The invariant a cached layout broke on this core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantError {
    /// None of the invariants applied to this core.
    #[error("no invariant could be checked against the core")]
    NothingChecked,
    /// The layout lacks a field the checks read.
    #[error("it has no {structure}.{field}")]
    MissingField {
        /// The structure.
        structure: &'static str,
        /// Its field.
        field: &'static str,
    },
    /// A word of a static type could not be read.
    #[error("{what} at {address:#x} is unreadable ({source})")]
    Unreadable {
        /// `PyType_Type.ob_type` and the like.
        what: &'static str,
        /// Its address.
        address: u64,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// `type` is not its own type.
    #[error("PyType_Type ({type_type:#x}) is not its own type: ob_type reads {meta:#x}")]
    TypeNotItsOwnType {
        /// `PyType_Type`.
        type_type: u64,
        /// Its `ob_type`.
        meta: u64,
    },
    /// `type`'s flags are not a static type's.
    #[error("PyType_Type.tp_flags reads {0:#x}, not a static type's")]
    TypeFlags(u64),
    /// `object` has a base or another metatype.
    #[error(
        "PyBaseObject_Type reads tp_base {base:#x} and ob_type {meta:#x} (expected 0 and {type_type:#x})"
    )]
    ObjectBase {
        /// Its `tp_base`.
        base: u64,
        /// Its `ob_type`.
        meta: u64,
        /// `PyType_Type`.
        type_type: u64,
    },
    /// `tuple` lacks its subclass bit.
    #[error("PyTuple_Type.tp_flags reads {0:#x}, without Py_TPFLAGS_TUPLE_SUBCLASS")]
    TupleFlags(u64),
    /// A static type's `tp_name` is another name.
    #[error("{type_symbol}.tp_name reads {found:?}, not {expected:?}")]
    TypeName {
        /// `PyType_Type` or `PyTuple_Type`.
        type_symbol: &'static str,
        /// What it reads.
        found: String,
        /// What it must read.
        expected: &'static str,
    },
    /// The first interpreter cannot be read.
    #[error("the interpreter at {interp:#x} is unreadable ({source})")]
    InterpreterUnreadable {
        /// The interpreter.
        interp: u64,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The first interpreter lists no thread state.
    #[error("the interpreter at {0:#x} lists no thread state")]
    NoThreadState(u64),
    /// Its first thread state cannot be read.
    #[error("the thread state at {tstate:#x} is unreadable ({source})")]
    ThreadStateUnreadable {
        /// The thread state.
        tstate: u64,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// Its first thread state names another interpreter.
    #[error(
        "the thread state at {tstate:#x} names interpreter {back:#x}, not {interp:#x} which lists it"
    )]
    WrongInterpreter {
        /// The thread state.
        tstate: u64,
        /// The interpreter it names.
        back: u64,
        /// The interpreter that lists it.
        interp: u64,
    },
    /// Too few of the interpreter's thread states name a thread of the core.
    #[error(
        "{matched} of the {total} thread states of the interpreter at {interp:#x} name a thread \
         of the core by native_thread_id and thread_id"
    )]
    ThreadIds {
        /// The interpreter.
        interp: u64,
        /// Thread states whose ids are those of a thread of the core.
        matched: usize,
        /// Thread states with a native thread id.
        total: usize,
    },
}

/// `Ok(n)` with the number of invariants that held, or the first that failed.
pub fn check<M: Memory>(
    layout: &Layout,
    memory: &M,
    module: &Module,
) -> Result<usize, InvariantError> {
    let mut held = 0;
    held += check_types(layout, memory, module)?;
    held += check_interpreters(layout, memory, module)?;
    if held == 0 {
        return Err(InvariantError::NothingChecked);
    }
    Ok(held)
}

fn offset(
    layout: &Layout,
    structure: &'static str,
    field: &'static str,
) -> Result<u64, InvariantError> {
    layout
        .offset(structure, field)
        .ok_or(InvariantError::MissingField { structure, field })
}

/// `type`, `object` and `tuple`, found by their exported symbols.
fn check_types<M: Memory>(
    layout: &Layout,
    memory: &M,
    module: &Module,
) -> Result<usize, InvariantError> {
    let Some(type_type) = module.symbol_address("PyType_Type", None) else {
        return Ok(0);
    };
    let ob_type = offset(layout, "PyObject", "ob_type")?;
    let tp_flags = offset(layout, "PyTypeObject", "tp_flags")?;
    let tp_name = offset(layout, "PyTypeObject", "tp_name")?;
    let tp_base = offset(layout, "PyTypeObject", "tp_base")?;
    let word = |address: u64, what: &'static str| {
        memory
            .read_u64(address)
            .map_err(|source| InvariantError::Unreadable {
                what,
                address,
                source,
            })
    };
    let mut held = 0;

    let meta = word(type_type.wrapping_add(ob_type), "PyType_Type.ob_type")?;
    if meta != type_type {
        return Err(InvariantError::TypeNotItsOwnType { type_type, meta });
    }
    held += 1;
    let flags = word(type_type.wrapping_add(tp_flags), "PyType_Type.tp_flags")?;
    if flags & TYPE_SUBCLASS == 0 || flags & HEAPTYPE != 0 {
        return Err(InvariantError::TypeFlags(flags));
    }
    held += 1;
    held += check_name(
        memory,
        type_type.wrapping_add(tp_name),
        "PyType_Type",
        "type",
    )?;

    if let Some(object) = module.symbol_address("PyBaseObject_Type", None) {
        let base = word(object.wrapping_add(tp_base), "PyBaseObject_Type.tp_base")?;
        let meta = word(object.wrapping_add(ob_type), "PyBaseObject_Type.ob_type")?;
        if base != 0 || meta != type_type {
            return Err(InvariantError::ObjectBase {
                base,
                meta,
                type_type,
            });
        }
        held += 1;
    }
    if let Some(tuple) = module.symbol_address("PyTuple_Type", None) {
        let flags = word(tuple.wrapping_add(tp_flags), "PyTuple_Type.tp_flags")?;
        if flags & TUPLE_SUBCLASS == 0 {
            return Err(InvariantError::TupleFlags(flags));
        }
        held += 1;
        held += check_name(memory, tuple.wrapping_add(tp_name), "PyTuple_Type", "tuple")?;
    }
    Ok(held)
}

/// `tp_name` at `name_at` reads `expected`, where the core (or the file
/// behind it) holds the string; an unreadable name proves nothing.
fn check_name<M: Memory>(
    memory: &M,
    name_at: u64,
    type_symbol: &'static str,
    expected: &'static str,
) -> Result<usize, InvariantError> {
    let Ok(ptr) = memory.read_ptr(name_at) else {
        return Ok(0);
    };
    match memory.read_cstr(ptr, 64) {
        Ok(name) if name == expected.as_bytes() => Ok(1),
        Ok(name) => Err(InvariantError::TypeName {
            type_symbol,
            found: String::from_utf8_lossy(&name).into_owned(),
            expected,
        }),
        Err(_) => Ok(0),
    }
}

/// The first interpreter's first thread state points back at it.
fn check_interpreters<M: Memory>(
    layout: &Layout,
    memory: &M,
    module: &Module,
) -> Result<usize, InvariantError> {
    let head_word = match module.symbol_address("_PyRuntime", None) {
        Some(runtime) => match layout.offset("_PyRuntimeState", "interpreters_head") {
            Some(off) => runtime.wrapping_add(off),
            None => {
                return Err(InvariantError::MissingField {
                    structure: "_PyRuntimeState",
                    field: "interpreters_head",
                });
            }
        },
        None => match module.symbol_address("interp_head", Some("pystate.c")) {
            Some(addr) => addr,
            None => return Ok(0),
        },
    };
    let Ok(interp) = memory.read_ptr(head_word) else {
        return Ok(0);
    };
    if interp == 0 {
        // A process that had not started, or had finished, its interpreter.
        return Ok(0);
    }
    let threads_head = offset(layout, "PyInterpreterState", "threads_head")?;
    let tstate_interp = offset(layout, "PyThreadState", "interp")?;
    let tstate = memory
        .read_ptr(interp.wrapping_add(threads_head))
        .map_err(|source| InvariantError::InterpreterUnreadable { interp, source })?;
    if tstate == 0 {
        // Possible only before the first thread state or after the last;
        // rejecting costs no more than a DWARF rebuild, trusting could cost
        // every stack.
        return Err(InvariantError::NoThreadState(interp));
    }
    let back = memory
        .read_ptr(tstate.wrapping_add(tstate_interp))
        .map_err(|source| InvariantError::ThreadStateUnreadable { tstate, source })?;
    if back != interp {
        return Err(InvariantError::WrongInterpreter {
            tstate,
            back,
            interp,
        });
    }
    Ok(1)
}

/// The most thread states [`check_thread_ids`] reads.
const MAX_THREAD_STATES: usize = 256;

/// The first interpreter's thread states name the core's threads: at
/// least one, and at least half of those with a native thread id, hold the
/// LWP of a thread of the core in `native_thread_id` and its `pthread_t` in
/// `thread_id`. `runtime` is `_PyRuntime`; `threads` the core's threads.
/// For layouts whose thread-state offsets are not read from DWARF: a wrong
/// offset reads words that are no thread ids.
pub fn check_thread_ids<M: Memory>(
    layout: &Layout,
    memory: &M,
    runtime: u64,
    threads: &[CoreThread],
) -> Result<usize, InvariantError> {
    let head = offset(layout, "_PyRuntimeState", "interpreters_head")?;
    let threads_head = offset(layout, "PyInterpreterState", "threads_head")?;
    let next = offset(layout, "PyThreadState", "next")?;
    let native = offset(layout, "PyThreadState", "native_thread_id")?;
    let thread_id = offset(layout, "PyThreadState", "thread_id")?;
    let interp = memory
        .read_ptr(runtime.wrapping_add(head))
        .map_err(|source| InvariantError::InterpreterUnreadable {
            interp: runtime.wrapping_add(head),
            source,
        })?;
    if interp == 0 {
        return Err(InvariantError::NothingChecked);
    }
    let mut tstate = memory
        .read_ptr(interp.wrapping_add(threads_head))
        .map_err(|source| InvariantError::InterpreterUnreadable { interp, source })?;
    let (mut matched, mut total) = (0, 0);
    for _ in 0..MAX_THREAD_STATES {
        if tstate == 0 {
            break;
        }
        let word = |at: u64| {
            memory
                .read_u64(tstate.wrapping_add(at))
                .map_err(|source| InvariantError::ThreadStateUnreadable { tstate, source })
        };
        let lwp = word(native)?;
        if lwp != 0 {
            total += 1;
            let pthread = word(thread_id)?;
            if threads.iter().any(|t| {
                u64::try_from(t.lwp).ok() == Some(lwp)
                    && crate::memory::threads::is_pthread_of(memory, t, pthread)
            }) {
                matched += 1;
            }
        }
        tstate = word(next)?;
    }
    if matched == 0 || matched * 2 < total {
        return Err(InvariantError::ThreadIds {
            interp,
            matched,
            total,
        });
    }
    Ok(matched)
}
