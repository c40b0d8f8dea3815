//! In-flight state: what the running threads were changing when the core
//! was written.
//!
//! A snapshot of a live process (gcore of a stuck worker) catches the GIL
//! holder, and any thread inside a container method, the allocator or the
//! collector, half-way through its work: a list resized before its new items
//! are copied, a slice moved down before the list shrinks, an object linked
//! before its refcount is set. What such a thread is changing is in its
//! registers and in the stack words of the frames doing the change. A
//! contradiction that those objects explain is transient: it becomes a note
//! that names the thread and the function, never an error.
//!
//! A thread that is dying (in `abort`, a fatal error, or the thread a fault
//! or a self-sent signal stopped) is never in flight: its state is the crash.

use rustc_hash::{FxHashMap, FxHashSet};

use super::read_context::ReadContext;
use super::referrers::{self, Shape, Shapes};
use super::{Finding, FindingKind, ReferrerKind};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::memory::MemoryExt;
use crate::process::Process;
use crate::python::PythonState;
use crate::unwind::{NativeStack, unwind_thread};

/// Stack bytes read per thread, at most.
const MAX_WINDOW: u64 = 512 * 1024;
/// Stack bytes read past the last frame when nothing bounds the window.
const LAST_FRAME_WINDOW: u64 = 4096;
/// Containers re-read per thread, at most.
const MAX_CONTAINERS: usize = 4096;

/// A thread caught changing objects.
#[derive(Debug, Clone)]
pub struct Mutator {
    /// The thread.
    pub lwp: i32,
    /// The innermost function doing the change, or the eval loop for the GIL holder.
    pub function: String,
    /// Register values and stack words of the frames doing it, sorted.
    words: Vec<u64>,
}

impl Mutator {
    fn holds(&self, address: u64) -> bool {
        self.words.binary_search(&address).is_ok()
    }

    /// Whether a word points into `[start, end)`.
    fn points_into(&self, start: u64, end: u64) -> bool {
        let i = self.words.partition_point(|&w| w < start);
        self.words.get(i).is_some_and(|&w| w < end)
    }
}

/// Whether a C function changes containers, the allocator's or the
/// collector's state in a way a snapshot can catch half-done.
fn changes_objects(function: &str) -> bool {
    // GCC clones and LTO copies carry suffixes: `.lto_priv.0`, `.constprop.0`.
    let base = function.split('.').next().unwrap_or(function);
    const PREFIXES: [&str; 22] = [
        // `list_extend`, and 2.7's `listextend`, `listsort`.
        "list",
        "_PyList_",
        "PyList_",
        "app1",
        "ins1",
        "dict",
        "insertdict",
        "insert_to_emptydict",
        "_PyDict_",
        "PyDict_",
        "tuple",
        "_PyTuple_",
        "PyTuple_",
        "PySequence_List",
        "PySequence_Tuple",
        "gc_",
        "_PyGC_",
        "_PyObject_GC",
        "PyObject_GC",
        "_Py_Dealloc",
        "subtype_dealloc",
        "pymalloc_",
    ];
    const COLLECTOR: [&str; 12] = [
        "collect",
        "collect_with_callback",
        "collect_generations",
        "update_refs",
        "subtract_refs",
        "move_unreachable",
        "move_legacy_finalizers",
        "finalize_garbage",
        "delete_garbage",
        "handle_weakrefs",
        "_PyObject_Free",
        "_PyObject_Malloc",
    ];
    PREFIXES.iter().any(|p| base.starts_with(p))
        || COLLECTOR.contains(&base)
        || base.ends_with("_dealloc")
}

/// Whether the thread is dying: its state is the crash, not work in progress.
fn is_dying(process: &Process, lwp: i32, stack: &NativeStack) -> bool {
    let fatal = stack.frames.iter().any(|f| {
        f.signal_frame
            || f.function.as_deref().is_some_and(|name| {
                let base = name.split('.').next().unwrap_or(name);
                matches!(
                    base,
                    "abort" | "raise" | "Py_FatalError" | "_Py_FatalErrorFunc" | "fatal_error"
                )
            })
    });
    if fatal {
        return true;
    }
    // The thread a fault stopped, or a signal the process sent itself.
    let pid = process.core().psinfo().map(|p| p.pid);
    process.crashed_thread().is_some_and(|t| t.lwp == lwp)
        && process.core().siginfo().is_some_and(|s| {
            (s.code > 0 && s.fault_address.is_some())
                || (s.sender_pid.is_some() && s.sender_pid == pid)
        })
}

/// Address ranges a finding could be explained by; a thread whose stack
/// and registers point into none of them is not unwound.
#[derive(Debug, Default)]
pub struct Wanted {
    // [start, end), sorted by start.
    ranges: Vec<(u64, u64)>,
    // The largest end among the ranges up to each index: a word is inside
    // some range starting at or below it when that end lies above it.
    max_end: Vec<u64>,
}

impl Wanted {
    fn add(&mut self, start: u64, end: u64) {
        self.ranges.push((start, end.max(start.saturating_add(1))));
    }

    fn seal(&mut self) {
        self.ranges.sort_unstable();
        self.max_end = self
            .ranges
            .iter()
            .scan(0, |end, r| {
                *end = r.1.max(*end);
                Some(*end)
            })
            .collect();
    }

    fn contains(&self, word: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.0 <= word);
        i > 0 && self.max_end[i - 1] > word
    }
}

/// The words a thread's registers and its stack from just below the stack
/// pointer hold, at most `MAX_WINDOW` bytes of them.
fn thread_words(
    process: &Process,
    thread: &crate::corefile::CoreThread,
    high: Option<u64>,
) -> Vec<u64> {
    let registers = &thread.registers;
    let low = registers.sp().saturating_sub(registers.arch().red_zone());
    let core = process.core();
    let segment_end = core
        .segment_index(low)
        .map_or(low, |i| core.segments()[i].end());
    let high = high
        .unwrap_or(segment_end)
        .min(low.saturating_add(MAX_WINDOW));
    let mut words: Vec<u64> = registers.dwarf_values().collect();
    if let Ok(bytes) = process
        .memory()
        .read_bytes(low, high.saturating_sub(low), MAX_WINDOW)
    {
        words.extend(
            bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))),
        );
    }
    words.retain(|&w| w >= 0x1000 && w.is_multiple_of(8));
    words.sort_unstable();
    words.dedup();
    words
}

/// The threads caught changing objects, and what their frames point at.
/// Only threads whose stack points into `wanted` are unwound.
pub fn mutators(process: &Process, state: &PythonState, wanted: &Wanted) -> Vec<Mutator> {
    let gil_holder = state
        .threads
        .iter()
        .find(|t| Some(t.tstate) == state.gil_holder)
        .and_then(|t| t.lwp);
    let mut out = Vec::new();
    for thread in process.threads() {
        if !thread_words(process, thread, None)
            .iter()
            .any(|&w| wanted.contains(w))
        {
            continue;
        }
        let Some(stack) = unwind_thread(process, thread.lwp) else {
            continue;
        };
        if is_dying(process, thread.lwp, &stack) {
            continue;
        }
        let name = |i: usize| stack.frames[i].function.as_deref().unwrap_or("");
        let changing: Vec<usize> = (0..stack.frames.len())
            .filter(|&i| changes_objects(name(i)))
            .collect();
        // The GIL holder runs bytecode that changes objects inline: its
        // innermost eval loop's frame is in flight too.
        let holds_gil = Some(thread.lwp) == gil_holder;
        let eval = holds_gil
            .then(|| (0..stack.frames.len()).find(|&i| crate::stacks::is_eval_frame(name(i))))
            .flatten();
        let (Some(&outermost), function) = (
            changing.iter().chain(eval.iter()).max(),
            changing.first().or(eval.as_ref()).map(|&i| name(i)),
        ) else {
            // The GIL holder runs Python code, so it may be changing objects
            // even when its native stack ends before any frame that tells
            // what (a memmove whose caller cannot be unwound): what its
            // registers and whole stack point at may be in flight.
            if holds_gil && !stack.frames.is_empty() {
                out.push(Mutator {
                    lwp: thread.lwp,
                    function: stack.frames[0]
                        .function
                        .clone()
                        .unwrap_or_else(|| "an unknown function".into()),
                    words: thread_words(process, thread, None),
                });
            }
            continue;
        };
        let high = stack.frames.get(outermost + 1).map_or(
            stack.frames[outermost].sp.saturating_add(LAST_FRAME_WINDOW),
            |f| f.sp,
        );
        let words = thread_words(process, thread, Some(high));
        out.push(Mutator {
            lwp: thread.lwp,
            function: function.unwrap_or("an unknown function").to_string(),
            words,
        });
    }
    out
}

/// Finding kinds a snapshot can catch half-done.
fn transient(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::RefcountBelowReferences
            | FindingKind::FreedObjectReferenced
            | FindingKind::StaticPointsToFreed
            | FindingKind::FreeListMemberReferenced
            | FindingKind::GcObjectBadRefcount
            | FindingKind::NegativeRefcount
            | FindingKind::GcListBrokenLink
            | FindingKind::GcListCycle
            | FindingKind::FreeListCountMismatch
            | FindingKind::FreeListMemberNotFreed
            | FindingKind::PymallocCountMismatch
    )
}

/// Why a finding is transient: the thread and what it was changing.
struct Explanation {
    lwp: i32,
    function: String,
    container: u64,
}

/// Turn the contradictions that running threads explain into notes. Threads
/// are unwound only when some error or warning could be in flight.
pub fn explain(
    process: &Process,
    state: &PythonState,
    heap: &ReadContext,
    findings: &mut [Finding],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let candidates: Vec<usize> = (0..findings.len())
        .filter(|&i| findings[i].severity > Severity::Note && transient(findings[i].kind))
        .collect();
    if candidates.is_empty() {
        return;
    }
    let wanted = wanted(heap, findings, &candidates);
    let mutators = mutators(process, state, &wanted);
    if mutators.is_empty() {
        return;
    }
    let held = Held::new(heap, &mutators, findings, &candidates);
    let mut explained: std::collections::BTreeMap<(i32, String), usize> = Default::default();
    for i in candidates {
        let f = &findings[i];
        // The object itself, or its GC header, is what a thread was changing:
        // for a refcount, one being raised right now (list_extend copying
        // items with Py_NewRef holds the item in a register).
        let in_words = || {
            let header = f.address.wrapping_sub(heap.gc_head_size);
            mutators
                .iter()
                .find(|m| m.holds(f.address) || m.holds(header))
                .map(|m| Explanation {
                    lwp: m.lwp,
                    function: m.function.clone(),
                    container: f.address,
                })
        };
        let why = match f.kind {
            FindingKind::RefcountBelowReferences => held.explains_count(f).or_else(in_words),
            // A freed object that only lists a thread is changing point at:
            // slots that a resize or a slice move has not yet overwritten.
            FindingKind::FreedObjectReferenced => held
                .explains_count(f)
                .or_else(|| held_only_by_changing_lists(heap, &mutators, f))
                .or_else(in_words),
            FindingKind::FreeListMemberReferenced => {
                held_only_by_changing_lists(heap, &mutators, f)
            }
            // pymalloc_alloc and pymalloc_free change a pool's count and
            // chain in separate steps: a thread pointing into the pool is
            // mid-way.
            FindingKind::PymallocCountMismatch => {
                let pool_end = f.address.saturating_add(heap.facts.rules.pool_size);
                mutators
                    .iter()
                    .find(|m| m.points_into(f.address, pool_end))
                    .map(|m| Explanation {
                        lwp: m.lwp,
                        function: m.function.clone(),
                        container: f.address,
                    })
            }
            _ => in_words(),
        };
        let Some(why) = why else {
            continue;
        };
        let f = &mut findings[i];
        f.severity = Severity::Note;
        f.message = format!(
            "{} (in flight on thread {} in {}: {:#x} was being changed)",
            f.message, why.lwp, why.function, why.container
        );
        f.evidence.insert(
            "in_flight".into(),
            serde_json::json!({
                "thread": why.lwp,
                "function": why.function,
                "object": why.container,
            }),
        );
        *explained.entry((why.lwp, why.function)).or_default() += 1;
    }
    for ((lwp, function), n) in explained {
        diagnostics.push(Diagnostic::note(
            DiagnosticSource::Forensics,
            format!(
                "{n} contradictions are in flight, not corruption: the core caught thread {lwp} in {function} mid-operation"
            ),
        ));
    }
}

/// What could explain the candidates: the objects, their GC headers, the
/// containers that hold them and those containers' item arrays.
fn wanted(heap: &ReadContext, findings: &[Finding], candidates: &[usize]) -> Wanted {
    let mut wanted = Wanted::default();
    let mut containers = FxHashSet::default();
    for &i in candidates {
        let f = &findings[i];
        wanted.add(f.address.wrapping_sub(heap.gc_head_size), f.address + 1);
        if f.kind == FindingKind::PymallocCountMismatch {
            wanted.add(
                f.address,
                f.address.saturating_add(heap.facts.rules.pool_size),
            );
        }
        containers.extend(f.referrers.iter().filter_map(|r| r.container));
    }
    for c in containers {
        wanted.add(c, c + 1);
        if let Some((items, n)) = list_items(heap, c) {
            wanted.add(items, items.saturating_add(n.saturating_mul(8)));
        }
    }
    wanted.seal();
    wanted
}

/// A freed object that only lists a thread is resizing point at: the slots
/// past what the thread has written yet hold stale pointers (list_extend
/// sets the size first, then copies the items in).
fn held_only_by_changing_lists(
    heap: &ReadContext,
    mutators: &[Mutator],
    f: &Finding,
) -> Option<Explanation> {
    // A frame or any owner but a container may not be a list being resized.
    if f.referrers
        .iter()
        .any(|r| r.kind.is_owner() && r.kind != ReferrerKind::Object)
    {
        return None;
    }
    let lists: Vec<(u64, (u64, u64))> = f
        .referrers
        .iter()
        .filter(|r| r.kind == ReferrerKind::Object)
        .map(|r| r.container.and_then(|c| Some((c, list_items(heap, c)?))))
        .collect::<Option<_>>()?;
    let &(first, _) = lists.first()?;
    mutators.iter().find_map(|m| {
        lists
            .iter()
            .all(|&(c, (items, n))| {
                m.holds(c) || m.points_into(items, items.saturating_add(n.saturating_mul(8)))
            })
            .then(|| Explanation {
                lwp: m.lwp,
                function: m.function.clone(),
                container: first,
            })
    })
}

/// A list's item array and its allocated length, when `obj` is a readable list.
fn list_items(heap: &ReadContext, obj: u64) -> Option<(u64, u64)> {
    if heap.objects.builtin_type_of(obj).ok()? != Some(crate::python::types::BuiltinType::List) {
        return None;
    }
    let items = heap
        .memory
        .read_ptr(obj.wrapping_add(heap.layout.offsets().list.ob_item.get()?))
        .ok()?;
    let allocated = heap
        .memory
        .read_i64(obj.wrapping_add(heap.layout.offsets().list.allocated.get()?))
        .ok()?;
    Some((items, u64::try_from(allocated).ok()?.min(1 << 28)))
}

/// The references that containers in flight hold, per target and thread.
struct Held<'m> {
    mutators: &'m [Mutator],
    // Per mutator: target -> (references, the container holding the most).
    by_mutator: Vec<FxHashMap<u64, (u32, u64)>>,
}

impl<'m> Held<'m> {
    fn new(
        heap: &ReadContext,
        mutators: &'m [Mutator],
        findings: &[Finding],
        candidates: &[usize],
    ) -> Held<'m> {
        // Containers the findings name: a thread may hold only a pointer
        // into one's item array (a memmove's source and destination).
        let named: FxHashSet<u64> = candidates
            .iter()
            .filter(|&&i| findings[i].kind == FindingKind::RefcountBelowReferences)
            .flat_map(|&i| findings[i].referrers.iter().filter_map(|r| r.container))
            .collect();
        let mut shapes = Shapes::default();
        let mut shape_of = |obj: u64| {
            heap.objects
                .type_of(obj)
                .ok()
                .map_or(Shape::Other, |ty| shapes.shape(heap, ty))
        };
        let mut by_mutator = Vec::new();
        for m in mutators {
            let mut containers: Vec<(u64, Shape)> = Vec::new();
            for &c in &named {
                let shape = shape_of(c);
                if shape == Shape::Other {
                    continue;
                }
                let inside = shape == Shape::List
                    && list_items(heap, c).is_some_and(|(items, n)| {
                        m.points_into(items, items.saturating_add(n.saturating_mul(8)))
                    });
                if m.holds(c) || inside {
                    containers.push((c, shape));
                }
            }
            let mut held: FxHashMap<u64, (u32, u64)> = FxHashMap::default();
            for (c, shape) in containers.into_iter().take(MAX_CONTAINERS) {
                referrers::owned_targets(heap, c, shape, &mut |target| {
                    let entry = held.entry(target).or_insert((0, c));
                    entry.0 += 1;
                });
            }
            by_mutator.push(held);
        }
        Held {
            mutators,
            by_mutator,
        }
    }

    /// A refcount below the references counted, explained when the
    /// references that one thread's containers in flight hold make up the
    /// difference.
    fn explains_count(&self, f: &Finding) -> Option<Explanation> {
        let value = |k: &str| f.evidence.get(k).and_then(serde_json::Value::as_i64);
        let (refcount, references) = (value("refcount")?, value("references")?);
        self.mutators
            .iter()
            .zip(&self.by_mutator)
            .find_map(|(m, held)| {
                let &(n, container) = held.get(&f.address)?;
                (references - i64::from(n) <= refcount).then(|| Explanation {
                    lwp: m.lwp,
                    function: m.function.clone(),
                    container,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_methods_allocator_and_collector_change_objects() {
        for name in [
            "list_extend",
            "listextend",
            "list_ass_slice_lock_held.lto_priv.0",
            "dictresize",
            "insertdict",
            "PyTuple_New",
            "_PyTuple_Resize",
            "tupledealloc",
            "subtype_dealloc",
            "gc_collect_main",
            "collect.constprop.0",
            "delete_garbage",
        ] {
            assert!(changes_objects(name), "{name}");
        }
        for name in [
            "take_gil",
            "_PyEval_EvalFrameDefault",
            "PyThread_acquire_lock",
            "pthread_cond_timedwait",
            "PyObject_Call",
            "abort",
        ] {
            assert!(!changes_objects(name), "{name}");
        }
    }

    #[test]
    fn words_point_into_a_range_or_hold_an_address() {
        let m = Mutator {
            lwp: 1,
            function: "list_ass_slice".into(),
            words: vec![0x1000, 0x2008, 0x5000],
        };
        assert!(m.holds(0x2008));
        assert!(!m.holds(0x2000));
        assert!(m.points_into(0x2000, 0x2010));
        assert!(!m.points_into(0x2010, 0x5000));
        assert!(m.points_into(0x4ff8, 0x5008));
    }

    #[test]
    fn wanted_finds_words_inside_nested_and_far_ranges() {
        let mut wanted = Wanted::default();
        // A long item array, then many single addresses inside and after it.
        wanted.add(0x10_000, 0x90_000);
        for a in (0x20_000..0x100_000).step_by(0x100) {
            wanted.add(a, a + 1);
        }
        wanted.seal();
        assert!(wanted.contains(0x8f_ff8), "inside the array, far behind");
        assert!(wanted.contains(0xa0_000));
        assert!(!wanted.contains(0xa0_008));
        assert!(!wanted.contains(0xfff8));
    }
}
