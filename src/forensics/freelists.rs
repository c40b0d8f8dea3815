//! The tuple free lists (cpython-internals.md §4).

use crate::python::types::BuiltinType;
use std::collections::HashSet;

use serde::Serialize;

use super::gc::GcWalk;
use super::read_context::{GcState, ReadContext};
use super::{Finding, FindingKind};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::layout::facts::{FreeListLink, TupleFreeListStorage, TupleIndex};
use crate::memory::MemoryExt;
use crate::memory::ReadError;

/// Members followed per slot beyond its counter, at most (a chain can be cut
/// loose from its counter by corruption).
const SLACK: usize = 64;

/// One free-list slot.
#[derive(Debug, Clone, Serialize)]
pub struct FreeListSlot {
    /// Which interpreter's lists (null for the process-wide statics of 2.7–3.9).
    pub interpreter: Option<u64>,
    /// Slot index.
    pub index: usize,
    /// Length of the tuples the slot keeps.
    pub size: u64,
    /// Address of the slot's head pointer.
    pub head_at: u64,
    /// The head.
    pub head: u64,
    /// The slot's counter (`numfree`), when readable.
    pub counter: Option<i64>,
    /// Distinct members walked.
    pub walked: usize,
    /// Every member walked, in chain order.
    pub members: Vec<u64>,
    /// Kinds of finding raised for this slot.
    pub anomalies: Vec<FindingKind>,
    /// Why the slot's head could not be read, when it could not: the slot
    /// was not checked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::read_error::serialize_message"
    )]
    pub unreadable: Option<ReadError>,
}

/// All slots of every list.
#[derive(Debug, Clone, Default)]
pub struct FreeLists {
    /// Every slot.
    pub slots: Vec<FreeListSlot>,
    /// Every member, for membership tests.
    pub members: rustc_hash::FxHashSet<u64>,
    /// Address ranges of the slot arrays themselves.
    pub arrays: Vec<(u64, u64)>,
    /// Why the lists could not be located, when they could not.
    pub unlocated: Option<String>,
}

/// Where one set of 20 slots lives.
struct SlotArrays {
    interpreter: Option<u64>,
    heads: u64,
    head_stride: u64,
    counters: u64,
    counter_size: u64,
    counter_stride: u64,
}

/// Why the tuple free lists could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unlocated {
    #[error(
        "the tuple free lists are statics of tupleobject.c (2.7–3.9) and neither \
         the interpreter's symbol table nor its DWARF was found to name them"
    )]
    StaticsNotNamed,
    #[error("the layout lacks the interpreter's tuple free lists")]
    InterpreterListsNotInLayout,
    #[error("the layout lacks the interpreter's tuple free lists (_Py_freelist)")]
    FreelistPairsNotInLayout,
    #[error("the free lists live in the interpreter state, and no interpreter was found")]
    InterpreterNotFound,
}

fn locate(heap: &ReadContext) -> Result<Vec<SlotArrays>, Unlocated> {
    match heap.facts.tuple_free_list {
        TupleFreeListStorage::Static => {
            let statics = heap.module.and_then(|m| {
                let bias = m.load_bias?;
                let from_dwarf = |name: &str| {
                    heap.layout
                        .globals
                        .get(&format!("tupleobject.c:{name}"))
                        .map(|a| a.wrapping_add(bias))
                };
                let heads = m
                    .symbol_address("free_list", Some("tupleobject.c"))
                    .or_else(|| from_dwarf("free_list"))?;
                let counters = m
                    .symbol_address("numfree", Some("tupleobject.c"))
                    .or_else(|| from_dwarf("numfree"))?;
                Some((heads, counters))
            });
            match statics {
                Some((heads, counters)) => Ok(vec![SlotArrays {
                    interpreter: None,
                    heads,
                    head_stride: 8,
                    counters,
                    counter_size: 4,
                    counter_stride: 4,
                }]),
                None => Err(Unlocated::StaticsNotNamed),
            }
        }
        TupleFreeListStorage::Interpreter => {
            let (Some(heads), Some(counters)) = (
                heap.layout.offsets().interp.tuple_free_list.get(),
                heap.layout.offsets().interp.tuple_numfree.get(),
            ) else {
                return Err(Unlocated::InterpreterListsNotInLayout);
            };
            Ok(interpreters(heap)?
                .iter()
                .map(|&i| SlotArrays {
                    interpreter: Some(i),
                    heads: i.wrapping_add(heads),
                    head_stride: 8,
                    counters: i.wrapping_add(counters),
                    counter_size: 4,
                    counter_stride: 4,
                })
                .collect())
        }
        TupleFreeListStorage::InterpreterPairs => {
            let (Some(base), Some(head), Some(size), Some(stride)) = (
                heap.layout.offsets().interp.tuple_free_list.get(),
                heap.layout.offsets().freelist.head.get(),
                heap.layout.offsets().freelist.size.get(),
                heap.layout.offsets().freelist.sizeof.get(),
            ) else {
                return Err(Unlocated::FreelistPairsNotInLayout);
            };
            Ok(interpreters(heap)?
                .iter()
                .map(|&i| SlotArrays {
                    interpreter: Some(i),
                    heads: i.wrapping_add(base + head),
                    head_stride: stride,
                    counters: i.wrapping_add(base + size),
                    counter_size: 8,
                    counter_stride: stride,
                })
                .collect())
        }
    }
}

/// The interpreters whose lists are walked (3.10+ keeps the lists per interpreter).
fn interpreters<'h>(heap: &'h ReadContext) -> Result<&'h [u64], Unlocated> {
    if heap.interpreters.is_empty() {
        Err(Unlocated::InterpreterNotFound)
    } else {
        Ok(&heap.interpreters)
    }
}

/// Walk every slot of every tuple free list.
pub fn walk(
    heap: &ReadContext,
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
) -> FreeLists {
    let mut out = FreeLists::default();
    let slots = heap.facts.tuple_slots as usize;
    let located = match locate(heap) {
        Ok(located) => located,
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
    for arrays in located {
        out.arrays.push((
            arrays.heads,
            arrays.heads + arrays.head_stride * slots as u64,
        ));
        out.arrays.push((
            arrays.counters,
            arrays.counters + arrays.counter_stride * slots as u64,
        ));
        for index in 0..slots {
            let slot = walk_slot(heap, &arrays, index, findings);
            out.members.extend(slot.members.iter().copied());
            out.slots.push(slot);
        }
    }
    out
}

fn list_name(slot_interp: Option<u64>, index: usize, size: u64) -> String {
    match slot_interp {
        Some(i) => format!("tuple free list {index} (size {size}) of interpreter {i:#x}"),
        None => format!("tuple free list {index} (size {size})"),
    }
}

impl FreeListSlot {
    /// The slot's name in findings and reports, e.g. `tuple free list 6
    /// (size 7) of interpreter 0x…`.
    pub fn name(&self) -> String {
        list_name(self.interpreter, self.index, self.size)
    }
}

fn walk_slot(
    heap: &ReadContext,
    arrays: &SlotArrays,
    index: usize,
    findings: &mut Vec<Finding>,
) -> FreeListSlot {
    let size = match heap.facts.tuple_index {
        TupleIndex::Size => index as u64,
        TupleIndex::SizeMinusOne => index as u64 + 1,
    };
    let head_at = arrays.heads + arrays.head_stride * index as u64;
    let counter_at = arrays.counters + arrays.counter_stride * index as u64;
    let (head, unreadable) = match heap.memory.read_ptr(head_at) {
        Ok(head) => (head, None),
        Err(e) => (0, Some(e)),
    };
    let counter = match arrays.counter_size {
        4 => heap.memory.read_i32(counter_at).ok().map(i64::from),
        _ => heap.memory.read_i64(counter_at).ok(),
    };
    let list = list_name(arrays.interpreter, index, size);
    let mut slot = FreeListSlot {
        interpreter: arrays.interpreter,
        index,
        size,
        head_at,
        head,
        counter,
        walked: 0,
        members: Vec::new(),
        anomalies: Vec::new(),
        unreadable,
    };
    if slot.unreadable.is_some() {
        return slot;
    }
    // Slot 0 keeps the live empty tuple up to 3.10; it is not a freed tuple.
    if heap.facts.tuple_index == TupleIndex::Size && index == 0 {
        return slot;
    }
    // 3.13+: a counter of −1 means the list is disabled (finalization).
    if counter == Some(-1) {
        return slot;
    }
    let cap = counter
        .unwrap_or(0)
        .clamp(0, i64::from(heap.facts.tuple_max_per_slot)) as usize
        + SLACK;
    let mut seen = HashSet::new();
    let mut node = head;
    let mut raise = |slot: &mut FreeListSlot, f: Finding| {
        if !slot.anomalies.contains(&f.kind) {
            slot.anomalies.push(f.kind);
        }
        findings.push(f);
    };
    while node != 0 {
        if !seen.insert(node) {
            let f = Finding::new(
                FindingKind::FreeListCycle,
                Severity::Error,
                node,
                Some(list.clone()),
                format!(
                    "the chain of {list} comes back to {node:#x} after {} member{}: it was pushed twice",
                    slot.walked,
                    if slot.walked == 1 { "" } else { "s" }
                ),
            )
            .with("repeated_address", node)
            .with("position", slot.members.iter().position(|&m| m == node).unwrap_or(0))
            .with("walked_before_repeat", slot.walked)
            .with("counter", counter);
            raise(&mut slot, f);
            break;
        }
        if slot.walked >= cap {
            let f = Finding::new(
                FindingKind::FreeListCountMismatch,
                Severity::Error,
                node,
                Some(list.clone()),
                format!(
                    "{list} goes on past {} member{} although its counter says {}",
                    slot.walked,
                    if slot.walked == 1 { "" } else { "s" },
                    counter.unwrap_or(0)
                ),
            )
            .with("counter", counter)
            .with("walked", slot.walked);
            raise(&mut slot, f);
            break;
        }
        slot.walked += 1;
        let member_findings = check_member(heap, node, size, &list);
        // Something that is not a tuple at all (misaligned, unreadable, of
        // another type) is a damaged link, not a member: keep it out of the
        // member set and do not follow it.
        let not_a_tuple = member_findings.iter().any(|f| {
            f.kind == FindingKind::FreeListMemberInvalid && !f.evidence.contains_key("ob_size")
        });
        for f in member_findings {
            raise(&mut slot, f);
        }
        if not_a_tuple {
            break;
        }
        slot.members.push(node);
        let next = match heap.facts.free_list_link {
            FreeListLink::ObItem0 => heap
                .layout
                .offsets()
                .tuple
                .ob_item
                .get()
                .and_then(|o| heap.memory.read_ptr(node.wrapping_add(o)).ok()),
            FreeListLink::FirstWord => heap.memory.read_u64(node).ok(),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    let cycle = slot.anomalies.contains(&FindingKind::FreeListCycle);
    if let Some(c) = counter
        && c != slot.walked as i64
        && !slot.anomalies.contains(&FindingKind::FreeListCountMismatch)
    {
        let how = if cycle {
            "distinct members before the chain loops"
        } else {
            "members"
        };
        let f = Finding::new(
            FindingKind::FreeListCountMismatch,
            Severity::Error,
            head,
            Some(list.clone()),
            format!("{list} counts {c} but holds {} {how}", slot.walked),
        )
        .with("counter", c)
        .with("walked", slot.walked)
        .with("head", head);
        raise(&mut slot, f);
    }
    slot
}

/// Checks on one member: alignment, type, size, refcount and GC state.
fn check_member(heap: &ReadContext, node: u64, size: u64, list: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let invalid = |why: String| {
        Finding::new(
            FindingKind::FreeListMemberInvalid,
            Severity::Error,
            node,
            Some(list.to_string()),
            why,
        )
    };
    if !node.is_multiple_of(8) {
        out.push(
            invalid(format!("{node:#x} on {list} is not aligned: not an object"))
                .with("alignment", node % 16),
        );
        return out;
    }
    let ty = match heap.objects.type_of(node) {
        Ok(t) => t,
        Err(e) => {
            out.push(invalid(format!(
                "{node:#x} on {list} is unreadable: {}",
                e.reason
            )));
            return out;
        }
    };
    // Without a symbol for PyTuple_Type, the type object's own fields tell.
    let not_a_tuple = match heap.tuple_type() {
        Some(tuple) => tuple != ty,
        None => heap.objects.builtin_type(ty) != Some(BuiltinType::Tuple),
    };
    if not_a_tuple {
        let name = heap
            .objects
            .type_name_of_type(ty)
            .unwrap_or_else(|_| format!("<type at {ty:#x}>"));
        out.push(
            invalid(format!("{node:#x} on {list} is a {name}, not a tuple"))
                .with("type", ty)
                .with("type_name", name),
        );
        return out;
    }
    let ob_size = heap.objects.var_size(node).unwrap_or(-1);
    if ob_size != size as i64 {
        out.push(
            invalid(format!(
                "{node:#x} on {list} has {ob_size} item{}, not {size}",
                if ob_size == 1 { "" } else { "s" }
            ))
            .with("ob_size", ob_size),
        );
    }
    match heap.facts.free_list_link {
        FreeListLink::ObItem0 => {
            if let Some((rc, _)) = heap.refcount(node) {
                if rc < 0 {
                    out.push(
                        Finding::new(
                            FindingKind::NegativeRefcount,
                            Severity::Error,
                            node,
                            Some(list.to_string()),
                            format!("{node:#x} on {list} has refcount {rc}"),
                        )
                        .with("refcount", rc),
                    );
                } else if rc != 0 {
                    out.push(
                        Finding::new(
                            FindingKind::FreeListMemberNotFreed,
                            Severity::Error,
                            node,
                            Some(list.to_string()),
                            format!("{node:#x} is on {list} but its refcount is {rc}, not 0: it is in use"),
                        )
                        .with("refcount", rc),
                    );
                }
            }
        }
        FreeListLink::FirstWord => {
            // 3.14: the first word is the link; a refcount change shows as a
            // link that is not an object pointer.
            if let Ok(word) = heap.memory.read_u64(node)
                && (word >> 48 != 0 || word % 8 != 0)
            {
                out.push(
                        Finding::new(
                            FindingKind::FreeListMemberNotFreed,
                            Severity::Error,
                            node,
                            Some(list.to_string()),
                            format!("{node:#x} is on {list} but its first word {word:#x} is not a link: its refcount was changed after it was freed"),
                        )
                        .with("first_word", word),
                    );
            }
        }
    }
    if let Some((GcState::Tracked, raw)) = heap.gc_state(node) {
        out.push(
            Finding::new(
                FindingKind::FreeListMemberTracked,
                Severity::Error,
                node,
                Some(list.to_string()),
                format!("{node:#x} is on {list} but its GC header says tracked"),
            )
            .with("gc_header_word", raw),
        );
    }
    out
}

/// Free-list members that are also in a GC generation list.
pub fn cross_check(
    _heap: &ReadContext,
    free: &FreeLists,
    gc: &GcWalk,
    findings: &mut Vec<Finding>,
) {
    for slot in &free.slots {
        for &m in &slot.members {
            if let Some(generation) = gc
                .watched
                .iter()
                .find(|w| w.0 == m)
                .and_then(|w| gc.generations.get(w.1))
                .map(|g| g.name.as_str())
            {
                let list = slot.name();
                findings.push(
                    Finding::new(
                        FindingKind::FreeListMemberInGcList,
                        Severity::Error,
                        m,
                        Some(list.clone()),
                        format!("{m:#x} is on {list} and also linked into GC {generation}"),
                    )
                    .with("generation", generation),
                );
            }
        }
    }
}
