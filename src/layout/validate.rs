//! Cheap invariants that a layout read from the on-disk cache must satisfy on
//! this core before it is trusted: a cache entry is a file anyone may have
//! edited or damaged, and a wrong offset would silently change every stack.
//!
//! Each check reads a few words the core holds for any healthy process:
//! static type objects (`type` is its own type, `object` has no base, the
//! subclass bits of `tuple`) and the interpreter list (the first thread state
//! points back at its interpreter).

use super::Layout;
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;

use super::tp_flags::{HEAPTYPE, TUPLE_SUBCLASS, TYPE_SUBCLASS};

/// `Ok(n)` with the number of invariants that held, or the first that failed.
pub fn check<M: Memory>(layout: &Layout, memory: &M, module: &Module) -> Result<usize, String> {
    let mut held = 0;
    held += check_types(layout, memory, module)?;
    held += check_interpreters(layout, memory, module)?;
    if held == 0 {
        return Err("no invariant could be checked against the core".into());
    }
    Ok(held)
}

fn offset(layout: &Layout, st: &str, field: &str) -> Result<u64, String> {
    layout
        .offset(st, field)
        .ok_or_else(|| format!("it has no {st}.{field}"))
}

/// `type`, `object` and `tuple`, found by their exported symbols.
fn check_types<M: Memory>(layout: &Layout, memory: &M, module: &Module) -> Result<usize, String> {
    let Some(type_type) = module.symbol_address("PyType_Type", None) else {
        return Ok(0);
    };
    let ob_type = offset(layout, "PyObject", "ob_type")?;
    let tp_flags = offset(layout, "PyTypeObject", "tp_flags")?;
    let tp_name = offset(layout, "PyTypeObject", "tp_name")?;
    let tp_base = offset(layout, "PyTypeObject", "tp_base")?;
    let word = |addr: u64, what: &str| {
        memory
            .read_u64(addr)
            .map_err(|e| format!("{what} at {addr:#x} is unreadable ({e})"))
    };
    let mut held = 0;

    let meta = word(type_type.wrapping_add(ob_type), "PyType_Type.ob_type")?;
    if meta != type_type {
        return Err(format!(
            "PyType_Type ({type_type:#x}) is not its own type: ob_type reads {meta:#x}"
        ));
    }
    held += 1;
    let flags = word(type_type.wrapping_add(tp_flags), "PyType_Type.tp_flags")?;
    if flags & TYPE_SUBCLASS == 0 || flags & HEAPTYPE != 0 {
        return Err(format!(
            "PyType_Type.tp_flags reads {flags:#x}, not a static type's"
        ));
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
            return Err(format!(
                "PyBaseObject_Type reads tp_base {base:#x} and ob_type {meta:#x} (expected 0 and {type_type:#x})"
            ));
        }
        held += 1;
    }
    if let Some(tuple) = module.symbol_address("PyTuple_Type", None) {
        let flags = word(tuple.wrapping_add(tp_flags), "PyTuple_Type.tp_flags")?;
        if flags & TUPLE_SUBCLASS == 0 {
            return Err(format!(
                "PyTuple_Type.tp_flags reads {flags:#x}, without Py_TPFLAGS_TUPLE_SUBCLASS"
            ));
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
    type_symbol: &str,
    expected: &str,
) -> Result<usize, String> {
    let Ok(ptr) = memory.read_ptr(name_at) else {
        return Ok(0);
    };
    match memory.read_cstr(ptr, 64) {
        Ok(name) if name == expected.as_bytes() => Ok(1),
        Ok(name) => Err(format!(
            "{type_symbol}.tp_name reads {:?}, not {expected:?}",
            String::from_utf8_lossy(&name)
        )),
        Err(_) => Ok(0),
    }
}

/// The first interpreter's first thread state points back at it.
fn check_interpreters<M: Memory>(
    layout: &Layout,
    memory: &M,
    module: &Module,
) -> Result<usize, String> {
    let head_word = match module.symbol_address("_PyRuntime", None) {
        Some(runtime) => match layout.offset("_PyRuntimeState", "interpreters_head") {
            Some(off) => runtime.wrapping_add(off),
            None => return Err("it has no _PyRuntimeState.interpreters_head".into()),
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
        .map_err(|e| format!("the interpreter at {interp:#x} is unreadable ({e})"))?;
    if tstate == 0 {
        // Possible only before the first thread state or after the last;
        // rejecting costs no more than a DWARF rebuild, trusting could cost
        // every stack.
        return Err(format!(
            "the interpreter at {interp:#x} lists no thread state"
        ));
    }
    let back = memory
        .read_ptr(tstate.wrapping_add(tstate_interp))
        .map_err(|e| format!("the thread state at {tstate:#x} is unreadable ({e})"))?;
    if back != interp {
        return Err(format!(
            "the thread state at {tstate:#x} names interpreter {back:#x}, not {interp:#x} which lists it"
        ));
    }
    Ok(1)
}
