//! The crash site: when the crashing thread died inside a function that
//! works on one object (a dealloc, the GC, the allocator, an object or
//! container method), the addresses that object may be at, each with how it
//! was recovered. Nothing here judges a candidate: the forensics read their
//! headers.

use serde::Serialize;

use super::fatal::{CallArguments, call_arguments_at};
use crate::arch::UnwindRegisters;
use crate::process::Process;
use crate::unwind::{FrameAddress, NativeFrame, unwind_thread_with_registers};

/// Frames looked at, innermost first: a crash site is near the top.
const MAX_FRAMES: usize = 24;
/// Crash-site frames whose caller's DWARF is asked for call-site values
/// (each lookup walks a unit of the caller's DWARF).
const MAX_CALL_SITE_LOOKUPS: usize = 4;
/// Arguments taken as the object: every crash-site function takes it first
/// (`list_dealloc(op)`, `visit_decref(op, arg)`) or second
/// (`builtin_repr(module, obj)`, `_PyObject_Free(ctx, p)`).
const MAX_ARGUMENTS: usize = 2;

/// Signals a process dies of when code goes wrong (SIGILL, SIGTRAP,
/// SIGABRT, SIGBUS, SIGFPE, SIGSEGV); a snapshot's SIGSTOP has no crash site.
const FATAL_SIGNALS: [i32; 6] = [4, 5, 6, 7, 8, 11];

/// What a crash-site function does to the object it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    /// Frees it (`*_dealloc`, `_Py_Dealloc`, `PyObject_GC_UnTrack`,
    /// `PyObject_ClearWeakRefs`): a refcount of 0 is expected there.
    Dealloc,
    /// Visits it or its items for the GC (`visit_decref`, `*_traverse`).
    Traverse,
    /// Passes over a whole generation (`gc_collect_main`,
    /// `deduce_unreachable`): its arguments are lists, not objects; an
    /// inlined visit leaves the object it crashed on in a register.
    Collection,
    /// Frees or hands out its block (`pymalloc_*`, `_PyObject_Free`, …).
    Allocator,
    /// Uses it (`PyObject_Repr`, a `list_*`/`dict_*`/`tuple*` method, …).
    Method,
    /// Called a function pointer that led to memory holding no code (a
    /// freed object's type slot, most often), passing the object.
    SlotCall,
}

impl SiteRole {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::Dealloc => "dealloc",
            SiteRole::Traverse => "traverse",
            SiteRole::Collection => "collection",
            SiteRole::Allocator => "allocator",
            SiteRole::Method => "method",
            SiteRole::SlotCall => "slot_call",
        }
    }
}

/// What role `function` (a symbol, maybe with a `.lto_priv.0`, `.cold` or
/// `.constprop.N` suffix) plays, if it is a crash-site function.
pub fn site_role(function: &str) -> Option<SiteRole> {
    let base = super::base_name(function);
    const DEALLOC: [&str; 6] = [
        "_Py_Dealloc",
        "PyObject_GC_UnTrack",
        "_PyObject_GC_UNTRACK",
        "_PyObject_GC_UnTrack",
        "PyObject_GC_Del",
        "PyObject_ClearWeakRefs",
    ];
    // The collector's passes over a generation, where an inlined visit
    // of a freed item crashes.
    const GC: [&str; 7] = [
        "collect",
        "gc_collect_main",
        "deduce_unreachable",
        "update_refs",
        "subtract_refs",
        "move_unreachable",
        "gc_collect_region",
    ];
    const ALLOCATOR: [&str; 10] = [
        "pymalloc_alloc",
        "pymalloc_free",
        "pymalloc_realloc",
        "_PyObject_Malloc",
        "_PyObject_Calloc",
        "_PyObject_Free",
        "_PyObject_Realloc",
        "PyObject_Free",
        "PyObject_Malloc",
        "PyObject_Realloc",
    ];
    const METHOD: [&str; 14] = [
        "PyObject_Repr",
        "PyObject_Str",
        "PyObject_RichCompare",
        "PyObject_RichCompareBool",
        "PyObject_Hash",
        "PyObject_GetAttr",
        "PyObject_SetAttr",
        "PyObject_GetItem",
        "PyObject_SetItem",
        "PyObject_IsTrue",
        "PyObject_GenericGetAttr",
        "builtin_repr",
        "_PyObject_AssertFailed",
        "_PyObject_Dump",
    ];
    const CONTAINER_PREFIXES: [&str; 8] = [
        "list",
        "dict",
        "tuple",
        "set_",
        "frozenset",
        "PyList_",
        "PyDict_",
        "PyTuple_",
    ];
    if base.ends_with("dealloc") || DEALLOC.contains(&base) {
        Some(SiteRole::Dealloc)
    } else if base.starts_with("visit_") || base.ends_with("_traverse") {
        Some(SiteRole::Traverse)
    } else if GC.contains(&base) {
        Some(SiteRole::Collection)
    } else if ALLOCATOR.contains(&base) {
        Some(SiteRole::Allocator)
    } else if METHOD.contains(&base) || CONTAINER_PREFIXES.iter().any(|p| base.starts_with(p)) {
        Some(SiteRole::Method)
    } else {
        None
    }
}

/// Whether `function` (a symbol, maybe suffixed as for [`site_role`]) hands
/// out blocks: it walks free blocks by design, so a free block in its
/// registers is no sign of a use after free (a block `_PyObject_Free` is
/// given is: freed twice).
pub fn hands_out_blocks(function: &str) -> bool {
    const ALLOCATING: [&str; 5] = [
        "pymalloc_alloc",
        "_PyObject_Malloc",
        "_PyObject_Calloc",
        "PyObject_Malloc",
        "PyObject_Calloc",
    ];
    ALLOCATING.contains(&super::base_name(function))
}

/// Whether `function` runs Python code: the crash site is inner to it.
fn is_eval_loop(function: &str) -> bool {
    let base = super::base_name(function);
    base.starts_with("_PyEval_EvalFrame") || base == "PyEval_EvalFrameEx"
}

/// Whether `address` is in executable memory: a segment of the core with
/// execute permission (a kernel core lists every mapping, dumped or not).
/// A core that lists no segment there (not every producer lists undumped
/// text) defers to the modules.
fn is_code(process: &Process, address: u64) -> bool {
    let core = process.core();
    match core
        .segment_index(address)
        .and_then(|i| core.segments().get(i))
    {
        Some(segment) => segment.perms.execute,
        None => process.modules().by_address(address).is_some(),
    }
}

/// How a candidate address was recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The value DWARF records the caller passed in an argument register.
    CallSite {
        /// 0 for the first argument.
        argument: usize,
        /// The caller's function.
        caller: String,
    },
    /// A register of the frame, as the unwind knows it.
    Register {
        /// Its name (`rdi`).
        name: &'static str,
        /// Whether it is an argument register of the innermost frame, so
        /// likely still the argument.
        argument: bool,
    },
}

impl std::fmt::Display for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recovered::CallSite { argument, caller } => write!(
                f,
                "the DWARF call-site value of argument {} at the call from {caller}",
                argument + 1
            ),
            Recovered::Register { name, .. } => write!(f, "register {name}"),
        }
    }
}

/// One address the crash-site object may be at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address.
    pub address: u64,
    /// The crash-site function's frame, 0 innermost.
    pub frame: usize,
    /// Its function.
    pub function: String,
    /// What it does to its object.
    pub role: SiteRole,
    /// How the address was recovered.
    pub recovered: Recovered,
}

impl Candidate {
    /// Whether it was recovered as an argument of the crash-site function
    /// (a call-site value, or an argument register at the crash) that takes
    /// an object: the object the function was given, not one it merely
    /// reached.
    pub fn is_argument(&self) -> bool {
        if matches!(self.role, SiteRole::Collection | SiteRole::Allocator) {
            return false;
        }
        match self.recovered {
            Recovered::CallSite { .. } => true,
            Recovered::Register { argument, .. } => argument,
        }
    }
}

/// The candidates of the crashing thread, innermost crash-site frame first
/// and, within a frame, arguments first; empty when the process did not die
/// of a fatal signal or no crash-site function is near the top of its stack.
pub fn candidates(process: &Process) -> Vec<Candidate> {
    let Some(thread) = process.crashed_thread() else {
        return Vec::new();
    };
    let signal = thread
        .siginfo
        .or_else(|| process.core().siginfo().copied())
        .map(|s| s.signo)
        .filter(|&s| s != 0)
        .unwrap_or(i32::from(thread.cursig));
    if !FATAL_SIGNALS.contains(&signal) {
        return Vec::new();
    }
    let Some((stack, registers)) = unwind_thread_with_registers(process, thread.lwp) else {
        return Vec::new();
    };
    frame_candidates(process, &stack.frames, &registers)
}

fn frame_candidates(
    process: &Process,
    frames: &[NativeFrame],
    registers: &[UnwindRegisters],
) -> Vec<Candidate> {
    // A call through a corrupt function pointer (a freed object's type's
    // slot) dies at once at an address that is not code (in no mapping, or
    // in data such as `_PyRuntime`): the frame that made the call has not
    // run since, so its argument registers still hold what it passed, as
    // at an interruption.
    let called_into_nothing = frames
        .first()
        .is_some_and(|f| !is_code(process, f.address.address()));
    let mut sites = Vec::new();
    for (index, frame) in frames.iter().enumerate().take(MAX_FRAMES) {
        let Some(function) = frame.function.as_deref() else {
            continue;
        };
        let role = site_role(function);
        // Whatever called into nothing (the eval loop calling a type's
        // slot, most often) called it on the object it was using.
        // What it was passed is not asked of DWARF: the eval loop's own
        // arguments are a thread state and a frame, not objects.
        if index == 1 && called_into_nothing && role.is_none() {
            sites.push((index, frame, function, SiteRole::SlotCall));
            continue;
        }
        if is_eval_loop(function) {
            break;
        }
        if let Some(role) = role {
            sites.push((index, frame, function, role));
        }
    }
    // The callers' records of what they passed hold even after the callee
    // overwrote its argument registers; one DWARF read per module for all.
    let asked: Vec<usize> = sites
        .iter()
        .filter(|s| s.3 != SiteRole::SlotCall)
        .map(|s| s.0 + 1)
        .filter(|&caller| {
            frames
                .get(caller)
                .is_some_and(|c| matches!(c.address, FrameAddress::ReturnAddress(_)))
        })
        .take(MAX_CALL_SITE_LOOKUPS)
        .collect();
    let addresses: Vec<FrameAddress> = asked.iter().map(|&c| frames[c].address).collect();
    let mut passed: Vec<(usize, CallArguments)> = asked
        .iter()
        .zip(call_arguments_at(process, &addresses))
        .filter_map(|(&caller, arguments)| Some((caller, arguments.ok()?)))
        .collect();
    let mut out = Vec::new();
    for (index, frame, function, role) in sites {
        let candidate = |address: u64, recovered: Recovered| Candidate {
            address,
            frame: index,
            function: function.to_string(),
            role,
            recovered,
        };
        if let Some(caller) = frames.get(index + 1)
            && let Some(at) = passed.iter().position(|(c, _)| *c == index + 1)
        {
            let (_, arguments) = passed.swap_remove(at);
            {
                let caller_registers = registers.get(index + 1);
                let caller_name = caller
                    .function
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", caller.address.address()));
                for (argument, &register) in process
                    .core()
                    .arch()
                    .argument_registers()
                    .iter()
                    .enumerate()
                    .take(MAX_ARGUMENTS)
                {
                    if let Some(value) = arguments.value(register, caller_registers) {
                        out.push(candidate(
                            value,
                            Recovered::CallSite {
                                argument,
                                caller: caller_name.clone(),
                            },
                        ));
                    }
                }
            }
        }
        // After a call into nothing, the frame that made the call holds
        // every register the innermost frame does (its unwound set keeps
        // only the callee-saved ones).
        let made_the_call = index == 1 && called_into_nothing;
        let own_index = if made_the_call { 0 } else { index };
        let Some(own) = registers.get(own_index) else {
            continue;
        };
        let arch = own.arch();
        // At the innermost frame (or one a signal interrupted) every
        // register is known. An outer frame's callee-saved registers are
        // its values at the call, but which of them still hold a live
        // variable only its DWARF locations say: a stale pointer to an
        // object freed since is common in a healthy process (AArch64 keeps
        // ten such registers), so they are no evidence.
        let interrupted =
            matches!(frame.address, FrameAddress::InstructionPointer(_)) || made_the_call;
        if !interrupted {
            continue;
        }
        let arguments = arch.argument_registers();
        let ordered = arguments.iter().take(MAX_ARGUMENTS).chain(
            arch.general_registers()
                .iter()
                .filter(|r| !arguments.iter().take(MAX_ARGUMENTS).any(|a| a == *r)),
        );
        for &register in ordered {
            let Some(value) = own.get(register) else {
                continue;
            };
            let name = arch.register_name(register).unwrap_or("?");
            let argument =
                interrupted && arguments.iter().take(MAX_ARGUMENTS).any(|&a| a == register);
            out.push(candidate(value, Recovered::Register { name, argument }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{SiteRole, hands_out_blocks, site_role};

    #[test]
    fn crash_site_functions_are_told_by_name_with_compiler_suffixes() {
        assert_eq!(site_role("list_dealloc"), Some(SiteRole::Dealloc));
        assert_eq!(site_role("tupledealloc"), Some(SiteRole::Dealloc));
        assert_eq!(
            site_role("subtype_dealloc.lto_priv.0"),
            Some(SiteRole::Dealloc)
        );
        assert_eq!(site_role("_Py_Dealloc"), Some(SiteRole::Dealloc));
        assert_eq!(site_role("PyObject_GC_UnTrack"), Some(SiteRole::Dealloc));
        assert_eq!(site_role("visit_decref"), Some(SiteRole::Traverse));
        assert_eq!(
            site_role("deduce_unreachable.cold"),
            Some(SiteRole::Collection)
        );
        assert_eq!(
            site_role("list_traverse.lto_priv.0"),
            Some(SiteRole::Traverse)
        );
        assert_eq!(
            site_role("pymalloc_alloc.isra.0"),
            Some(SiteRole::Allocator)
        );
        assert_eq!(site_role("_PyObject_Free"), Some(SiteRole::Allocator));
        assert!(hands_out_blocks("pymalloc_alloc.constprop.0"));
        assert!(!hands_out_blocks("_PyObject_Free"));
        assert_eq!(site_role("PyObject_Repr"), Some(SiteRole::Method));
        assert_eq!(site_role("list_repr.lto_priv.0"), Some(SiteRole::Method));
        assert_eq!(site_role("dict_subscript"), Some(SiteRole::Method));
        // Calls and the eval loop work on no one object.
        assert_eq!(site_role("PyObject_Vectorcall"), None);
        assert_eq!(site_role("_PyEval_EvalFrameDefault"), None);
        assert_eq!(site_role("abort"), None);
        assert_eq!(site_role("os_abort"), None);
    }
}

#[cfg(test)]
mod candidate_tests {
    use super::{Candidate, Recovered, SiteRole};

    fn candidate(role: SiteRole, recovered: Recovered) -> Candidate {
        Candidate {
            address: 0x1000,
            frame: 0,
            function: "f".into(),
            role,
            recovered,
        }
    }

    #[test]
    fn only_what_an_object_function_was_given_counts_as_its_argument() {
        let call_site = Recovered::CallSite {
            argument: 0,
            caller: "g".into(),
        };
        let rdi = Recovered::Register {
            name: "rdi",
            argument: true,
        };
        let rbx = Recovered::Register {
            name: "rbx",
            argument: false,
        };
        assert!(candidate(SiteRole::Dealloc, call_site.clone()).is_argument());
        assert!(candidate(SiteRole::Method, rdi.clone()).is_argument());
        assert!(!candidate(SiteRole::Method, rbx).is_argument());
        // The collector's passes take lists and the allocator takes sizes
        // and contexts: their arguments are no objects.
        assert!(!candidate(SiteRole::Collection, call_site).is_argument());
        assert!(!candidate(SiteRole::Allocator, rdi).is_argument());
    }
}
