//! Forensics: walk the tuple free lists and the GC lists, and flag every
//! object whose GC state or refcount contradicts its free-list membership,
//! with the evidence that was read.

pub mod coverage;
mod crash_site;
pub(crate) mod dense;
pub mod freelists;
pub mod gc;
pub mod gc_stats;
pub mod inflight;
mod items;
mod owners;
pub mod pymalloc;
pub(crate) mod read_context;
pub(crate) mod referrers;
pub(crate) mod statics;
mod verdict;
#[cfg(test)]
mod walker_tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use coverage::{CheckName, Unchecked};
pub use read_context::GcState;
pub use verdict::{Verdict, VerdictStatus};

use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::process::Process;
use crate::python::PythonState;

/// What kind of contradiction a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A free-list chain comes back to an address it already passed: an object pushed twice.
    FreeListCycle,
    /// The walked length of a free list differs from its counter.
    FreeListCountMismatch,
    /// A free-list member that does not look freed (refcount ≠ 0 up to 3.13; 3.14: first word not a link).
    FreeListMemberNotFreed,
    /// A free-list member whose GC header says tracked.
    FreeListMemberTracked,
    /// A free-list member that is also linked into a GC generation list.
    FreeListMemberInGcList,
    /// A free-list member of the wrong type or size, misaligned, or unreadable.
    FreeListMemberInvalid,
    /// A free-list member still referenced from live objects or frames: a use after free.
    FreeListMemberReferenced,
    /// A GC list whose prev/next links disagree, or that reaches NULL.
    GcListBrokenLink,
    /// A GC list that loops without passing through its head.
    GcListCycle,
    /// A tracked object with a refcount ≤ 0.
    GcObjectBadRefcount,
    /// A tracked object whose type lacks `Py_TPFLAGS_HAVE_GC`.
    GcObjectNotGcType,
    /// An object with a negative refcount.
    NegativeRefcount,
    /// An object referenced by more live containers and frames than its refcount counts.
    RefcountBelowReferences,
    /// An object live containers or frames still own a reference to whose
    /// header says it was freed: refcount ≤ 0, a refcount word that is an
    /// allocator's link, or an `ob_type` that is not a type.
    FreedObjectReferenced,
    /// A global of an extension module that points at an object whose
    /// header says freed: a static kept without a reference of its own.
    StaticPointsToFreed,
    /// A pymalloc pool's free-block chain comes back to a block it already
    /// passed: a block freed twice.
    PymallocChainCycle,
    /// A pymalloc pool's free-block chain links outside the blocks the pool
    /// handed out, or into the middle of one: a write into a freed block.
    PymallocChainOutsidePool,
    /// A pymalloc pool's `ref.count` differs from the blocks handed out
    /// minus those on its free chain.
    PymallocCountMismatch,
    /// An object linked into a GC generation list whose pymalloc block is free.
    FreeBlockInGcList,
    /// The object the crashing thread was working on when it died in a
    /// dealloc, the GC, the allocator or an object method, recovered from
    /// its registers or the caller's DWARF call-site values: an error when
    /// its header says freed, a note otherwise.
    CrashSiteObject,
}

/// What holds a pointer to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReferrerKind {
    /// A container object (tuple, list, dict).
    Object,
    /// A Python frame's slot.
    Frame,
    /// A thread's native stack.
    Stack,
    /// Any other memory (found by the conservative scan).
    Memory,
    /// A `collections.deque`'s item.
    DequeItem,
    /// A set's or frozenset's entry.
    SetEntry,
    /// An item of a function's `__defaults__` or `__kwdefaults__`.
    FunctionDefault,
    /// A function's own field (`__code__`, `__closure__`, `__defaults__`…).
    Function,
    /// A cell's contents (a closure variable).
    Cell,
    /// A bound method's `__self__` or `__func__`.
    BoundMethod,
    /// A local of a suspended generator's, coroutine's or async generator's frame.
    GeneratorFrame,
    /// An instance's attribute value or its `__dict__`.
    InstanceAttribute,
    /// A `classmethod`'s, `staticmethod`'s or `property`'s field.
    Descriptor,
    /// A global of an extension module (in its `.data` or `.bss`).
    Static,
}

impl ReferrerKind {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerKind::Object => "object",
            ReferrerKind::Frame => "frame",
            ReferrerKind::Stack => "stack",
            ReferrerKind::Memory => "memory",
            ReferrerKind::DequeItem => "deque_item",
            ReferrerKind::SetEntry => "set_entry",
            ReferrerKind::FunctionDefault => "function_default",
            ReferrerKind::Function => "function",
            ReferrerKind::Cell => "cell",
            ReferrerKind::BoundMethod => "bound_method",
            ReferrerKind::GeneratorFrame => "generator_frame",
            ReferrerKind::InstanceAttribute => "instance_attribute",
            ReferrerKind::Descriptor => "descriptor",
            ReferrerKind::Static => "static",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [ReferrerKind; 14] = [
        ReferrerKind::Object,
        ReferrerKind::Frame,
        ReferrerKind::Stack,
        ReferrerKind::Memory,
        ReferrerKind::DequeItem,
        ReferrerKind::SetEntry,
        ReferrerKind::FunctionDefault,
        ReferrerKind::Function,
        ReferrerKind::Cell,
        ReferrerKind::BoundMethod,
        ReferrerKind::GeneratorFrame,
        ReferrerKind::InstanceAttribute,
        ReferrerKind::Descriptor,
        ReferrerKind::Static,
    ];

    /// Whether it is a live owner's reference (a container's, a frame's,
    /// an object field's), not a word found on a stack or in memory.
    pub fn is_owner(self) -> bool {
        !matches!(self, ReferrerKind::Stack | ReferrerKind::Memory)
    }
}

impl std::fmt::Display for ReferrerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GcState {
    /// Its name, as in JSON: `tracked` or `untracked`.
    pub fn as_str(self) -> &'static str {
        match self {
            GcState::Tracked => "tracked",
            GcState::Untracked => "untracked",
        }
    }
}

/// Where a pointer to an object was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referrer {
    /// Address of the pointer.
    pub at: u64,
    /// What holds the pointer.
    pub kind: ReferrerKind,
    /// The containing object or frame, when known.
    pub container: Option<u64>,
    /// In words: `list 0x… item 0`, `frame of f (thread 123) local x`, `stack of thread 123`.
    pub description: String,
}

/// One contradiction, with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The kind.
    pub kind: FindingKind,
    /// `error`, `warning` or `note`.
    pub severity: Severity,
    /// The object it is about.
    pub address: u64,
    /// The free list or GC generation involved.
    pub list: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// The values that were read, by name.
    pub evidence: BTreeMap<String, serde_json::Value>,
    /// Where pointers to the object were found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

impl Finding {
    fn new(
        kind: FindingKind,
        severity: Severity,
        address: u64,
        list: Option<String>,
        message: String,
    ) -> Finding {
        Finding {
            kind,
            severity,
            address,
            list,
            message,
            evidence: BTreeMap::new(),
            referrers: Vec::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Finding {
        self.evidence.insert(key.to_string(), value.into());
        self
    }
}

/// Everything the checks found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Every tuple free list.
    pub free_lists: Vec<freelists::FreeListSlot>,
    /// Every GC generation.
    pub generations: Vec<gc::GenerationSummary>,
    /// Tracked objects walked.
    pub gc_objects: usize,
    /// The collector's statistics, per interpreter.
    pub gc_stats: Vec<gc_stats::GcStats>,
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
    /// The likely story.
    pub verdict: Verdict,
    /// Parts that could not be checked, and why.
    pub diagnostics: Vec<Diagnostic>,
    /// The crashing thread's native and Python frames.
    pub crashed_thread_stack: Option<crate::stacks::MergedStack>,
}

/// Run every check on `process`.
pub fn check(process: &Process, state: &PythonState) -> CheckResult {
    let mut diagnostics = Vec::new();
    let mut findings = Vec::new();
    // Each part keeps its results when another fails. The free lists need
    // no allocator map; the GC walk and the counter need neither.
    let plain = read_context::ReadContext::new(process, state);
    let free = freelists::walk(&plain, &mut findings, &mut diagnostics);
    let gc_stats = gc_stats::read(&plain);
    // The allocator's arenas are walked, and the crashing thread's stack and
    // its crash site unwound, while the GC walk and the counter run.
    let meanwhile = || {
        let memory = process.memory().with_own_cursor();
        let mut walked = PymallocWalk::default();
        walked.allocator = pymalloc::walk(
            &read_context::ReadContext::with_memory(process, state, &memory),
            &mut walked.findings,
            &mut walked.diagnostics,
        );
        (
            walked,
            crate::stacks::crashed_stack(process, Some(state), None),
            crate::stacks::crash_site::candidates(process),
        )
    };
    let (gc_walk, mut refs, (walked, crashed_thread_stack, crash_site)) = walk_and_count(
        process,
        state,
        &plain,
        &free,
        &mut findings,
        &mut diagnostics,
        meanwhile,
    );
    // The allocator's diagnostics come first, as its walk did.
    diagnostics.splice(0..0, walked.diagnostics);
    findings.extend(walked.findings);
    let allocator = walked.allocator;
    let heap = read_context::ReadContext::new(process, state).with_pymalloc(&allocator);
    refs.judge_owned_headers(
        &heap,
        &free.members,
        gc_walk.alive_headers.as_deref(),
        |judge| {
            let memory = process.memory().with_own_cursor();
            judge(
                &read_context::ReadContext::with_memory(process, state, &memory)
                    .with_pymalloc(&allocator),
            );
        },
    );
    freelists::cross_check(&heap, &free, &gc_walk, &mut findings);
    pymalloc::cross_check(&heap, &allocator, &mut findings);
    let statics = statics::survey(process, &heap, &free);
    referrers::attribute(&heap, &free, &gc_walk, &mut refs, &statics, &mut findings);
    statics::report(statics, &mut findings);
    pymalloc::annotate(&allocator, &mut findings);
    inflight::explain(process, state, &heap, &mut findings, &mut diagnostics);
    findings.extend(crash_site::examine(process, &heap, &crash_site, &findings));
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(a.address.cmp(&b.address))
    });
    let fatal = crashed_thread_stack
        .as_ref()
        .and_then(|s| s.fatal_error.as_ref());
    let mut unchecked = coverage::assess(process, state, &free, &gc_walk);
    unchecked.extend(coverage::pymalloc(process, &allocator));
    let verdict = verdict::judge(process, state, &findings, fatal, unchecked);
    CheckResult {
        crashed_thread_stack,
        free_lists: free.slots,
        generations: gc_walk.generations,
        gc_objects: gc_walk.objects.len(),
        gc_stats,
        findings,
        verdict,
        diagnostics,
    }
}

/// pymalloc's map with what its walk found, from the thread that walked it.
#[derive(Default)]
struct PymallocWalk {
    allocator: pymalloc::Pymalloc,
    findings: Vec<Finding>,
    diagnostics: Vec<Diagnostic>,
}

/// The tuple free lists alone, with what their walk found.
#[derive(Debug, Clone)]
pub struct FreeListWalk {
    /// Every slot of every list.
    pub slots: Vec<freelists::FreeListSlot>,
    /// Contradictions found within the lists (cycles, wrong counters,
    /// members that do not look freed); the cross-checks against the GC
    /// lists and references need [`check`].
    pub findings: Vec<Finding>,
    /// Parts that could not be walked, and why.
    pub diagnostics: Vec<Diagnostic>,
    /// The lists, when they could not all be walked: why, and what would
    /// let them be.
    pub unchecked: Option<Unchecked>,
}

/// Walk every tuple free list of `process`.
pub fn free_lists(process: &Process, state: &PythonState) -> FreeListWalk {
    let heap = read_context::ReadContext::new(process, state);
    let mut findings = Vec::new();
    let mut diagnostics = Vec::new();
    let free = freelists::walk(&heap, &mut findings, &mut diagnostics);
    FreeListWalk {
        unchecked: coverage::free_lists(process, &free),
        slots: free.slots,
        findings,
        diagnostics,
    }
}

/// One GC generation with the objects linked into it.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Its head, counters and walk summary.
    pub summary: gc::GenerationSummary,
    /// Every object walked in it (object addresses, not GC headers), in list order.
    pub objects: Vec<u64>,
}

/// The GC generation lists, walked.
#[derive(Debug, Clone)]
pub struct GcGenerations {
    /// Every generation of every interpreter.
    pub generations: Vec<Generation>,
    /// Broken links, cycles and bad headers met on the way.
    pub findings: Vec<Finding>,
    /// A collection was running when the process died: links may be mid-update.
    pub collecting: bool,
    /// The collector's statistics, per interpreter (none on 2.7).
    pub stats: Vec<gc_stats::GcStats>,
    /// Parts that could not be walked, and why.
    pub diagnostics: Vec<Diagnostic>,
    /// The lists, when they could not all be walked: why, and what would
    /// let them be.
    pub unchecked: Option<Unchecked>,
}

/// The GC-tracked objects whose type `keep` accepts, in walk order.
#[derive(Debug, Clone, Default)]
pub struct TrackedObjects {
    /// Their addresses.
    pub objects: Vec<u64>,
    /// The lists, when they could not all be walked: why, and what would
    /// let them be.
    pub unchecked: Option<Unchecked>,
}

/// Walk every GC generation list of `process` and keep the objects whose
/// type (`ob_type`) `keep` accepts.
pub fn tracked_objects(
    process: &Process,
    state: &PythonState,
    keep: &mut dyn FnMut(u64) -> bool,
) -> TrackedObjects {
    let heap = read_context::ReadContext::new(process, state);
    let mut kept = Vec::new();
    let walk = gc::walk(
        &heap,
        &rustc_hash::FxHashSet::default(),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut |object, ty| {
            if keep(ty) {
                kept.push(object);
            }
        },
    );
    TrackedObjects {
        objects: kept,
        unchecked: coverage::gc_lists(process, &walk),
    }
}

/// Walk every GC generation list of `process`.
pub fn gc_generations(process: &Process, state: &PythonState) -> GcGenerations {
    let heap = read_context::ReadContext::new(process, state);
    let mut findings = Vec::new();
    let mut diagnostics = Vec::new();
    // Nothing is watched: which free-list members sit in a GC list is a
    // cross-check of `check`.
    let walk = gc::walk(
        &heap,
        &rustc_hash::FxHashSet::default(),
        &mut findings,
        &mut diagnostics,
        &mut |_, _| {},
    );
    let generations = walk
        .generations
        .iter()
        .enumerate()
        .map(|(i, summary)| Generation {
            summary: summary.clone(),
            objects: walk.generation_objects(i).to_vec(),
        })
        .collect();
    GcGenerations {
        unchecked: coverage::gc_lists(process, &walk),
        generations,
        findings,
        collecting: walk.collecting,
        stats: gc_stats::read(&heap),
        diagnostics,
    }
}

/// Objects handed from the GC walk to the reference counter at a time.
const BATCH: usize = 4096;
/// Batches the walk may run ahead of the counter before it reads some
/// itself.
const BATCHES_AHEAD: usize = 4;

/// Walk the GC lists and count every owned reference the walked objects and
/// the frames hold. The walk chases pointers and the counting reads
/// containers: on two threads they overlap, the walk feeding the counter in
/// batches, and `meanwhile` runs on a third. The counting is the longer
/// part: when the counter falls behind, the walk's thread reads the tuples,
/// lists and dicts of a batch itself and hands the counter their targets,
/// which it counts with hardly a wait for memory. Without threads
/// everything runs on this one.
fn walk_and_count<T>(
    process: &Process,
    state: &PythonState,
    heap: &read_context::ReadContext,
    free: &freelists::FreeLists,
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
    meanwhile: impl FnOnce() -> T + Send,
) -> (gc::GcWalk, referrers::References, T)
where
    T: Default + Send,
{
    let wanted = &free.members;
    // `meanwhile` gets a thread of its own, short beside the other two;
    // without one it runs here after the walk.
    let pending = std::sync::Mutex::new(Some(meanwhile));
    let take = || pending.lock().ok().and_then(|mut p| p.take());
    std::thread::scope(|scope| {
        let meanwhile_thread = std::thread::Builder::new()
            .name("pymortem-stack".into())
            .spawn_scoped(scope, || take().map(|f| f()))
            .ok();
        type Batch = Vec<(u64, u64, referrers::Shape)>;
        let (batches, received) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
        // Containers the walk's thread read itself, for the counter to count.
        let (read_here, read_there) = std::sync::mpsc::channel::<referrers::ReadContainers>();
        let counter = std::thread::Builder::new()
            .name("pymortem-count".into())
            .spawn_scoped(scope, move || {
                let memory = process.memory().with_own_cursor();
                let heap = read_context::ReadContext::with_memory(process, state, &memory);
                let mut collector = referrers::Collector::new(&heap, wanted);
                for batch in received {
                    while let Ok(read) = read_there.try_recv() {
                        collector.take_read(read);
                    }
                    collector.containers(&heap, &batch);
                }
                // The walk is over: its thread sends nothing more.
                for read in read_there {
                    collector.take_read(read);
                }
                collector
            });
        let Ok(counter) = counter else {
            let mut collector = referrers::Collector::new(heap, wanted);
            let gc_walk = gc::walk(heap, wanted, findings, diagnostics, &mut |obj, ty| {
                collector.object(heap, obj, ty)
            });
            let refs = collector.finish(heap, state);
            let during = finish_meanwhile(meanwhile_thread, take());
            return (gc_walk, refs, during);
        };
        // Only containers go to the counter, with their shape found here.
        let mut shapes = referrers::Shapes::default();
        let mut batch: Batch = Vec::with_capacity(BATCH);
        let mut position = 0u64;
        let mut reader: Option<referrers::ContainerReader> = None;
        let gc_walk = gc::walk(heap, wanted, findings, diagnostics, &mut |obj, ty| {
            let shape = shapes.shape(heap, ty);
            if shape == referrers::Shape::Other {
                return;
            }
            batch.push((position, obj, shape));
            position += 1;
            if batch.len() < BATCH {
                return;
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            // A counter that is gone has panicked; join reports it below.
            if let Err(std::sync::mpsc::TrySendError::Full(full)) = batches.try_send(full) {
                let reader =
                    reader.get_or_insert_with(|| referrers::ContainerReader::new(heap, wanted));
                // Owners stay with the counter: their reads keep state.
                let (plain, owners): (Batch, Batch) = full.into_iter().partition(|c| {
                    matches!(
                        c.2,
                        referrers::Shape::Tuple | referrers::Shape::List | referrers::Shape::Dict
                    )
                });
                batch.extend(owners);
                let _ = read_here.send(reader.read(heap, plain.into_iter()));
            }
        });
        let _ = batches.send(batch);
        drop(batches);
        drop(read_here);
        let refs = match counter.join() {
            Ok(collector) => collector.finish(heap, state),
            Err(_) => {
                diagnostics.push(Diagnostic::error(
                    DiagnosticSource::Forensics,
                    "the reference counter failed; counting again on one thread",
                ));
                let mut collector = referrers::Collector::new(heap, wanted);
                for &obj in &gc_walk.objects {
                    if let Ok(ty) = heap.objects.type_of(obj) {
                        collector.object(heap, obj, ty);
                    }
                }
                collector.finish(heap, state)
            }
        };
        let during = finish_meanwhile(meanwhile_thread, take());
        (gc_walk, refs, during)
    })
}

/// The result of `meanwhile`: from its thread, or run here when it has none.
fn finish_meanwhile<T: Default>(
    thread: Option<std::thread::ScopedJoinHandle<'_, Option<T>>>,
    not_started: Option<impl FnOnce() -> T>,
) -> T {
    if let Some(value) = thread.and_then(|t| t.join().ok()).flatten() {
        return value;
    }
    not_started.map(|f| f()).unwrap_or_default()
}

/// Everything pymortem can tell about one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    /// The address asked about.
    pub address: u64,
    /// Its type's name, if readable.
    pub type_name: Option<String>,
    /// Its type object.
    pub type_address: Option<u64>,
    /// The refcount word.
    pub refcount: Option<i64>,
    /// Whether the refcount marks it immortal (3.12+).
    pub immortal: bool,
    /// Whether it is in a GC list; null when its type has no GC header or
    /// its block is free (see `gc_header_stale`).
    pub gc_state: Option<GcState>,
    /// Its block is free: what its GC header holds is left from before the
    /// free and says nothing.
    pub gc_header_stale: bool,
    /// The raw GC header word that decided it.
    pub gc_header_word: Option<i64>,
    /// The GC generation whose list holds it.
    pub gc_generation: Option<String>,
    /// The tuple free list holding it.
    pub free_list: Option<String>,
    /// What the allocator says of its address: pymalloc block, free or in use.
    pub allocator: pymalloc::AllocatorState,
    /// Owned references held by live containers and frames.
    pub owned_references: u32,
    /// Where pointers to it were found.
    pub referrers: Vec<Referrer>,
    /// A bounded repr.
    pub repr: String,
    /// Findings about it.
    pub findings: Vec<Finding>,
    /// Checks that could not run, so that what is said of the object's
    /// free-list membership, GC list and referrers may be short.
    pub unchecked: Vec<Unchecked>,
}

/// Inspect one object.
pub fn inspect(process: &Process, state: &PythonState, address: u64) -> ObjectInfo {
    let mut scratch = Vec::new();
    let mut findings = Vec::new();
    let pymalloc_map = pymalloc::walk(
        &read_context::ReadContext::new(process, state),
        &mut findings,
        &mut scratch,
    );
    let heap = read_context::ReadContext::new(process, state).with_pymalloc(&pymalloc_map);
    let allocator = pymalloc::AllocatorState::of(&pymalloc_map, address);
    let free = freelists::walk(&heap, &mut findings, &mut scratch);
    let targets: rustc_hash::FxHashSet<u64> = std::iter::once(address).collect();
    let mut collector = referrers::Collector::new(&heap, &targets);
    let gc_walk = gc::walk(
        &heap,
        &free.members,
        &mut findings,
        &mut scratch,
        &mut |obj, ty| collector.object(&heap, obj, ty),
    );
    freelists::cross_check(&heap, &free, &gc_walk, &mut findings);
    pymalloc::cross_check(&heap, &pymalloc_map, &mut findings);
    let mut unchecked = coverage::assess(process, state, &free, &gc_walk);
    unchecked.extend(coverage::pymalloc(process, &pymalloc_map));
    let refs = collector.finish(&heap, state);
    let referrers = referrers::referrers_of(&heap, &free, &refs, &targets, &targets)
        .remove(&address)
        .unwrap_or_default();
    let type_address = heap.objects.type_of(address).ok();
    // A free-list link or garbage in `ob_type` has no flags to read.
    let has_gc_header = items::HeaderCheck::new().was_object(&heap, address)
        && type_address
            .and_then(|t| heap.type_flags(t))
            .is_some_and(|f| f & read_context::TPFLAGS_HAVE_GC != 0);
    // A free block's GC header is whatever the block last held.
    let gc_header_stale = has_gc_header && allocator.is_free();
    let gc = (has_gc_header && !gc_header_stale)
        .then(|| heap.gc_state(address))
        .flatten();
    let refcount = heap.refcount(address);
    let free_list = free
        .slots
        .iter()
        .find(|s| s.members.contains(&address))
        .map(|s| s.name());
    ObjectInfo {
        address,
        type_name: heap.objects.type_name(address).ok(),
        type_address,
        refcount: refcount.map(|r| r.0),
        immortal: refcount.is_some_and(|r| r.1),
        gc_state: gc.map(|(s, _)| s),
        gc_header_stale,
        gc_header_word: gc.map(|(_, w)| w),
        gc_generation: gc_walk.generation_name(address).map(str::to_string),
        free_list,
        allocator,
        owned_references: referrers::owned_references(&refs, address),
        referrers,
        repr: heap.objects.repr(address),
        findings: findings
            .into_iter()
            .filter(|f| f.address == address)
            .collect(),
        unchecked,
    }
}
