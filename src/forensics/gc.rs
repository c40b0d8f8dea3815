//! The GC generation lists.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::dense::{AddressIndex, BitTriples, Bits};

use serde::Serialize;

use super::items::HeaderCheck;
use super::read_context::{Node, ReadContext, TPFLAGS_HAVE_GC};
use super::{Finding, FindingKind};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::layout::facts::GcListLocation;
use crate::memory::MemoryExt;
use crate::memory::ReadError;

/// Objects walked in all lists together, at most.
const MAX_OBJECTS: usize = 50_000_000;
/// Findings of one kind per generation, at most (a broken list repeats itself).
const MAX_FINDINGS_PER_KIND: usize = 100;

/// One generation.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationSummary {
    /// `generation 0`, `old 1`, `permanent`, … with the interpreter.
    pub name: String,
    /// Address of the list head.
    pub head: u64,
    /// The generation's `count` (not its length: allocations or collections).
    pub count: Option<i32>,
    /// The generation's threshold.
    pub threshold: Option<i32>,
    /// Objects walked.
    pub walked: usize,
    /// Whether the walk came back to the head.
    pub complete: bool,
    /// Findings raised for it.
    pub anomalies: usize,
    /// Why its head could not be read, when it could not: the generation was
    /// not checked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::read_error::serialize_message"
    )]
    pub unreadable: Option<ReadError>,
}

/// Every generation and every tracked object.
#[derive(Debug, Clone, Default)]
pub struct GcWalk {
    /// Per generation.
    pub generations: Vec<GenerationSummary>,
    /// Every tracked object (object address, not GC header) in walk order.
    pub objects: Vec<u64>,
    /// For each generation, where its objects end in `objects`.
    ends: Vec<usize>,
    /// Watched objects (the free-list members) found in a list, with the generation.
    pub watched: Vec<(u64, usize)>,
    /// A collection was running: links may be mid-update.
    pub collecting: bool,
    /// Why the generations could not be located, when they could not.
    pub unlocated: Option<String>,
    /// The walked objects whose header `HeaderCheck::alive` accepted, as
    /// bits over the core's dense address index (the reference counter's):
    /// the header pass need not read them again.
    pub alive_headers: Option<std::sync::Arc<Bits>>,
}

impl GcWalk {
    /// The objects walked in generation `index` (of [`GcWalk::generations`]),
    /// in list order.
    pub fn generation_objects(&self, index: usize) -> &[u64] {
        let start = index
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(0);
        let end = self.ends.get(index).copied().unwrap_or(start);
        self.objects.get(start..end).unwrap_or(&[])
    }

    /// The name of the generation an object was found in, if any. A linear
    /// search: for a few objects, not for every object of the heap.
    pub fn generation_name(&self, obj: u64) -> Option<&str> {
        let position = self.objects.iter().position(|&o| o == obj)?;
        let generation = self.ends.partition_point(|&end| end <= position);
        self.generations.get(generation).map(|g| g.name.as_str())
    }
}

/// Which objects were seen: bits per slot of writable memory (seen, watched,
/// header alive, side by side so that one object costs one cache line), or
/// a hash set when the core is too large for the bitmap.
struct Seen<'w> {
    index: Option<AddressIndex>,
    flags: Option<BitTriples>,
    watched: &'w FxHashSet<u64>,
    // Objects outside the indexed memory, and every object without an index.
    other: FxHashMap<u64, usize>,
}

/// The bits of [`Seen::flags`].
const SEEN: usize = 0;
const WATCHED: usize = 1;
const ALIVE: usize = 2;

impl<'w> Seen<'w> {
    fn new(heap: &ReadContext, watched: &'w FxHashSet<u64>) -> Seen<'w> {
        let index = AddressIndex::new(heap.memory.core(), heap.object_granule());
        let flags = index.as_ref().map(|i| {
            let mut flags = BitTriples::new(i.len());
            for slot in watched.iter().filter_map(|&a| i.slot(a)) {
                flags.test_and_set(WATCHED, slot);
            }
            flags
        });
        Seen {
            index,
            flags,
            watched,
            other: FxHashMap::default(),
        }
    }

    /// Mark `obj` seen in generation `generation`. Returns whether it was
    /// seen before (and in which generation when that is known), whether
    /// it is watched, and its slot (for [`Seen::alive`]).
    fn mark(
        &mut self,
        obj: u64,
        generation: usize,
    ) -> (Option<Option<usize>>, bool, Option<usize>) {
        if let (Some(index), Some(flags)) = (&self.index, &mut self.flags)
            && let Some(slot) = index.slot(obj)
        {
            let before = flags.test_and_set(SEEN, slot);
            return (before.then_some(None), flags.get(WATCHED, slot), Some(slot));
        }
        (
            self.other.insert(obj, generation).map(Some),
            self.watched.contains(&obj),
            None,
        )
    }

    /// Mark the object at `slot` (from [`Seen::mark`]) as having a live
    /// header (outside the index, nothing is kept).
    fn alive(&mut self, slot: Option<usize>) {
        if let (Some(flags), Some(slot)) = (&mut self.flags, slot) {
            flags.test_and_set(ALIVE, slot);
        }
    }

    /// The objects with a live header, as bits over the index.
    fn alive_bits(&self) -> Option<Bits> {
        let (index, flags) = (self.index.as_ref()?, self.flags.as_ref()?);
        Some(flags.extract(ALIVE, index.len()))
    }
}

/// Why the GC lists could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unlocated {
    #[error(
        "the GC generations are statics of gcmodule.c, and neither the \
         interpreter's symbol table nor its DWARF was found to name them"
    )]
    StaticsNotNamed,
    #[error("the GC state lives in the interpreter state, and no interpreter was found")]
    InterpreterNotFound,
    #[error("the GC state is not in the layout")]
    NotInLayout,
}

/// The heads to walk: (name, head address, generation struct address).
fn heads(heap: &ReadContext) -> Result<(Vec<(String, u64)>, bool), Unlocated> {
    let stride = heap
        .layout
        .offsets()
        .gc_generation
        .sizeof
        .get()
        .unwrap_or(0);
    let bases: Vec<(Option<u64>, u64)> = match heap.facts.gc_lists {
        GcListLocation::Static => {
            let generation0 = heap.module.and_then(|m| {
                heap.layout
                    .static_address(m, "gcmodule.c", "generations")
                    // `_PyGC_generation0` is exported and points at generations[0].
                    .or_else(|| {
                        m.symbol_address("_PyGC_generation0", None)
                            .and_then(|p| heap.memory.read_ptr(p).ok())
                    })
            });
            match generation0 {
                Some(g) => {
                    return Ok((
                        (0..3)
                            .map(|i| (format!("generation {i}"), g + i * stride))
                            .collect(),
                        false,
                    ));
                }
                None => {
                    return Err(Unlocated::StaticsNotNamed);
                }
            }
        }
        GcListLocation::Runtime => match (heap.runtime, heap.layout.offsets().runtime.gc.get()) {
            (Some(rt), Some(off)) => vec![(None, rt + off)],
            _ => Vec::new(),
        },
        GcListLocation::Interpreter => match heap.layout.offsets().interp.gc.get() {
            Some(off) => heap
                .interpreters
                .iter()
                .map(|&i| (Some(i), i.wrapping_add(off)))
                .collect(),
            None => Vec::new(),
        },
    };
    if bases.is_empty() {
        return Err(if heap.interpreters.is_empty() {
            Unlocated::InterpreterNotFound
        } else {
            Unlocated::NotInLayout
        });
    }
    let mut out = Vec::new();
    let mut collecting = false;
    for (interp, gc) in bases {
        let suffix = interp
            .map(|i| format!(" of interpreter {i:#x}"))
            .unwrap_or_default();
        if let Some(c) = heap.layout.offsets().gc_runtime.collecting.get() {
            collecting |= heap
                .memory
                .read_i32(gc.wrapping_add(c))
                .is_ok_and(|v| v != 0);
        }
        if let Some(g) = heap.layout.offsets().gc_runtime.generations.get() {
            out.extend((0..3).map(|i| (format!("generation {i}{suffix}"), gc + g + i * stride)));
        } else if let (Some(young), Some(old)) = (
            heap.layout.offsets().gc_runtime.young.get(),
            heap.layout.offsets().gc_runtime.old.get(),
        ) {
            // 3.14.0–3.14.4: the incremental collector's young and old lists.
            out.push((format!("young{suffix}"), gc + young));
            out.extend((0..2).map(|i| (format!("old {i}{suffix}"), gc + old + i * stride)));
        }
        if let Some(p) = heap.layout.offsets().gc_runtime.permanent_generation.get() {
            out.push((format!("permanent{suffix}"), gc + p));
        }
    }
    Ok((out, collecting))
}

/// Walk every generation list.
///
/// `visit` sees every object with its type, while its header is in the cache.
pub fn walk(
    heap: &ReadContext,
    watch: &FxHashSet<u64>,
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
    visit: &mut dyn FnMut(u64, u64),
) -> GcWalk {
    let mut out = GcWalk::default();
    // A tracked object takes at least 32 bytes of writable memory: reserving
    // for that many (address space, until used; capped) saves the copies of
    // growing a list of millions.
    let writable: u64 = heap
        .memory
        .core()
        .segments()
        .iter()
        .filter(|s| s.perms.write)
        .map(|s| s.available)
        .sum();
    // Only a hint: without the memory the list grows as it goes.
    let _ = out
        .objects
        .try_reserve((writable / 32).min(MAX_OBJECTS as u64) as usize);
    crate::mapped_file::advise_huge_pages(&mut out.objects);
    let mut seen = Seen::new(heap, watch);
    let mut headers = HeaderCheck::new();
    let (heads, collecting) = match heads(heap) {
        Ok(found) => found,
        Err(reason) => {
            let reason = reason.to_string();
            diagnostics.push(Diagnostic::error(
                DiagnosticSource::Forensics,
                reason.clone(),
            ));
            out.unlocated = Some(reason);
            return out;
        }
    };
    out.collecting = collecting;
    if collecting {
        diagnostics.push(Diagnostic::note(
            DiagnosticSource::Forensics,
            "a GC collection was running: link findings are notes, not errors",
        ));
    }
    let head_off = heap.layout.offsets().gc_generation.head.get().unwrap_or(0);
    let link_severity = if collecting {
        Severity::Note
    } else {
        Severity::Error
    };
    for (name, generation) in heads {
        let head = generation + head_off;
        let count = heap
            .layout
            .offsets()
            .gc_generation
            .count
            .get()
            .and_then(|o| heap.memory.read_i32(generation.wrapping_add(o)).ok());
        let threshold = heap
            .layout
            .offsets()
            .gc_generation
            .threshold
            .get()
            .and_then(|o| heap.memory.read_i32(generation.wrapping_add(o)).ok());
        let mut summary = GenerationSummary {
            name: name.clone(),
            head,
            count,
            threshold,
            walked: 0,
            complete: false,
            anomalies: 0,
            unreadable: None,
        };
        let mut per_kind: HashMap<FindingKind, usize> = HashMap::new();
        let mut raise = |summary: &mut GenerationSummary, f: Finding| {
            let n = per_kind.entry(f.kind).or_default();
            *n += 1;
            summary.anomalies += 1;
            if *n <= MAX_FINDINGS_PER_KIND {
                findings.push(f);
            }
        };
        let mut prev = head;
        let head_link = heap
            .gc_next_at
            .map(|o| heap.memory.read_ptr(head.wrapping_add(o)));
        let mut node = match head_link {
            // An unreadable head is memory the core lacks, not a broken link.
            Some(Err(e)) => {
                summary.unreadable = Some(e);
                out.generations.push(summary);
                out.ends.push(out.objects.len());
                continue;
            }
            _ => heap.gc_next(head).unwrap_or(0),
        };
        loop {
            if node == head {
                summary.complete = true;
                break;
            }
            if node == 0 || !node.is_multiple_of(8) {
                let f = Finding::new(
                    FindingKind::GcListBrokenLink,
                    link_severity,
                    prev.wrapping_add(heap.gc_head_size),
                    Some(format!("GC {name}")),
                    format!("GC {name}: the header at {prev:#x} links to {node:#x}, which is not a GC header"),
                )
                .with("node", prev)
                .with("next", node);
                raise(&mut summary, f);
                break;
            }
            let obj = node.wrapping_add(heap.gc_head_size);
            let (seen_before, watched, slot) = seen.mark(obj, out.generations.len());
            if let Some(first) = seen_before {
                let first = match first {
                    Some(g) => out
                        .generations
                        .get(g)
                        .map_or(name.clone(), |g| g.name.clone()),
                    None => out.generation_name(obj).unwrap_or(&name).to_string(),
                };
                let f = Finding::new(
                    FindingKind::GcListCycle,
                    link_severity,
                    obj,
                    Some(format!("GC {name}")),
                    format!("GC {name} reaches {obj:#x} a second time (first seen in {first}) without passing its head"),
                )
                .with("first_seen_in", first);
                raise(&mut summary, f);
                break;
            }
            if out.objects.len() >= MAX_OBJECTS {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticSource::Forensics,
                    format!("more than {MAX_OBJECTS} tracked objects; the GC walk stopped"),
                ));
                break;
            }
            out.objects.push(obj);
            if watched {
                out.watched.push((obj, out.generations.len()));
            }
            summary.walked += 1;
            let words = heap.node(node);
            match words.prev {
                Some(p) if p == prev => {}
                p => {
                    let f = Finding::new(
                        FindingKind::GcListBrokenLink,
                        link_severity,
                        obj,
                        Some(format!("GC {name}")),
                        format!(
                            "GC {name}: {obj:#x} follows {:#x} but its prev link points to {}",
                            prev.wrapping_add(heap.gc_head_size),
                            p.map_or("an unreadable address".to_string(), |p| format!(
                                "{:#x}",
                                p.wrapping_add(heap.gc_head_size)
                            ))
                        ),
                    )
                    .with("node", node)
                    .with("expected_prev", prev)
                    .with("actual_prev", p);
                    raise(&mut summary, f);
                }
            }
            if let Some(ty) =
                check_object(heap, obj, &words, &name, &mut |f| raise(&mut summary, f))
            {
                if let Some(word) = words.refcount_word
                    && headers.alive(heap, word, ty)
                {
                    seen.alive(slot);
                }
                visit(obj, ty);
            }
            prev = node;
            node = words.next.unwrap_or(0);
        }
        if summary.complete && heap.gc_prev(head) != Some(prev) {
            let f = Finding::new(
                FindingKind::GcListBrokenLink,
                link_severity,
                prev.wrapping_add(heap.gc_head_size),
                Some(format!("GC {name}")),
                format!(
                    "GC {name}: the head's prev link does not point at the last object {:#x}",
                    prev.wrapping_add(heap.gc_head_size)
                ),
            )
            .with("head", head)
            .with("head_prev", heap.gc_prev(head));
            raise(&mut summary, f);
        }
        out.generations.push(summary);
        out.ends.push(out.objects.len());
    }
    out.alive_headers = seen.alive_bits().map(std::sync::Arc::new);
    out
}

/// Refcount and type checks on one tracked object.
/// Returns the object's type, when readable.
fn check_object(
    heap: &ReadContext,
    obj: u64,
    words: &Node,
    generation: &str,
    raise: &mut dyn FnMut(Finding),
) -> Option<u64> {
    if let Some((rc, immortal)) = words.refcount
        && !immortal
        && rc <= 0
    {
        let kind = if rc < 0 {
            FindingKind::NegativeRefcount
        } else {
            FindingKind::GcObjectBadRefcount
        };
        raise(
            Finding::new(
                kind,
                Severity::Error,
                obj,
                Some(format!("GC {generation}")),
                format!("tracked object {obj:#x} has refcount {rc}"),
            )
            .with("refcount", rc),
        );
    }
    let Some(ty) = words.ty else {
        raise(Finding::new(
            FindingKind::GcObjectNotGcType,
            Severity::Error,
            obj,
            Some(format!("GC {generation}")),
            format!("tracked object {obj:#x} has an unreadable type"),
        ));
        return None;
    };
    if let Some(flags) = heap.type_flags(ty)
        && flags & TPFLAGS_HAVE_GC == 0
    {
        let name = heap
            .objects
            .type_name_of_type(ty)
            .unwrap_or_else(|_| format!("<type at {ty:#x}>"));
        raise(
            Finding::new(
                FindingKind::GcObjectNotGcType,
                Severity::Error,
                obj,
                Some(format!("GC {generation}")),
                format!("tracked object {obj:#x} is a {name}, whose type lacks Py_TPFLAGS_HAVE_GC"),
            )
            .with("type", ty)
            .with("type_name", name)
            .with("tp_flags", flags),
        );
    }
    Some(ty)
}
