//! The free lists: the tuples' slots and every
//! other list each version keeps (floats, lists, dicts, dict keys, 2.7's
//! unicode, all of 3.14+'s `_Py_freelists`). Each is one `Place`, walked
//! by one walker whatever links it: a chain through `ob_item[0]`, the first
//! word or `ob_type`, or an array of pointers with a counter.

use crate::python::types::BuiltinType;
use std::collections::HashSet;

use serde::Serialize;

use super::gc::GcWalk;
use super::items::HeaderCheck;
use super::read_context::{GcState, ReadContext};
use super::{Finding, FindingKind};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::layout::facts::{
    FreeListFact, FreeListHome, FreeListKind, FreeListLink, FreeListMembers, FreeListShape,
    TupleFreeListStorage, TupleIndex,
};
use crate::memory::MemoryExt;
use crate::memory::{ReadError, ReadFailure};

/// Members followed per slot beyond its counter, at most (a chain can be cut
/// loose from its counter by corruption).
const SLACK: usize = 64;

/// One free list, or one slot of the tuples' (one list per length).
#[derive(Debug, Clone, Serialize)]
pub struct FreeListSlot {
    /// The list: `tuple[3]` (slot 3 of the tuples'), `float`, `list`,
    /// `dict`, `dictkeys`, `unicode` (2.7), or 3.14+'s member name
    /// (`floats`, `async_gens`, `pymethodobjects`…).
    pub list: String,
    /// How the list holds its members: `ob_item0`, `first_word`, `ob_type`
    /// (chains through that word) or `array` (pointers and a counter).
    pub link: &'static str,
    /// Which interpreter's lists (null for the process-wide statics of 2.7–3.9).
    pub interpreter: Option<u64>,
    /// Slot index (tuples), else 0.
    pub index: usize,
    /// Length of the tuples the slot keeps (tuples only).
    pub size: Option<u64>,
    /// Address of the list's head pointer (of its array, for an array).
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
    /// The type of the objects the list keeps, when it keeps one type.
    #[serde(skip)]
    pub keeps: Option<&'static str>,
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
    /// Address ranges of the heads, counters and arrays themselves.
    pub arrays: Vec<(u64, u64)>,
    /// Why some lists could not be located, when they could not.
    pub unlocated: Option<String>,
}

impl FreeLists {
    fn unlocated(&mut self, reason: String, diagnostics: &mut Vec<Diagnostic>) {
        diagnostics.push(Diagnostic::error(
            DiagnosticSource::Forensics,
            reason.clone(),
        ));
        self.unlocated = Some(match self.unlocated.take() {
            Some(before) => format!("{before}; {reason}"),
            None => reason,
        });
    }
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

fn locate_tuples(heap: &ReadContext) -> Result<Vec<SlotArrays>, Unlocated> {
    match heap.facts.tuple_free_list {
        TupleFreeListStorage::Static => {
            let statics = heap.module.and_then(|m| {
                let heads = heap
                    .layout
                    .static_address(m, "tupleobject.c", "free_list")?;
                let counters = heap.layout.static_address(m, "tupleobject.c", "numfree")?;
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

/// One list as found in memory, ready to walk.
struct Place {
    list: String,
    interpreter: Option<u64>,
    index: usize,
    /// Tuples: the length every member has.
    tuple_size: Option<u64>,
    /// The head pointer, or the array's first entry.
    head_at: u64,
    /// The counter and its width in bytes, when the list keeps one.
    counter_at: Option<(u64, u64)>,
    shape: FreeListShape,
    /// Arrays: their length.
    array_len: u64,
    members: FreeListMembers,
    refcount_meaningful: bool,
    /// Most members the version keeps.
    max: i64,
    /// The slot holds no freed objects (the tuples' slot 0 up to 3.10
    /// keeps the live empty tuple): read, not walked.
    not_walked: bool,
}

/// Most members followed in a list whose version sets no bound here (3.14+
/// members the facts do not name).
const UNNAMED_MAX: i64 = 10_000;

/// Walk every free list.
pub fn walk(
    heap: &ReadContext,
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
) -> FreeLists {
    let mut out = FreeLists::default();
    let mut places = Vec::new();
    match locate_tuples(heap) {
        Ok(located) => {
            for arrays in located {
                tuple_places(heap, &arrays, &mut places, &mut out.arrays);
            }
        }
        Err(reason) => out.unlocated(reason.to_string(), diagnostics),
    }
    match heap.facts.rules.free_lists {
        FreeListHome::Statics => locate_statics(heap, &mut places, &mut out, diagnostics),
        FreeListHome::Interpreter => {
            locate_interpreter_fields(heap, &mut places, &mut out, diagnostics)
        }
        FreeListHome::Unified => locate_unified(heap, &mut places, &mut out, diagnostics),
    }
    for place in places {
        let slot = walk_place(heap, &place, findings);
        if !matches!(place.members, FreeListMembers::NotObjects) {
            out.members.extend(slot.members.iter().copied());
        }
        out.slots.push(slot);
    }
    out
}

fn tuple_places(
    heap: &ReadContext,
    arrays: &SlotArrays,
    places: &mut Vec<Place>,
    ranges: &mut Vec<(u64, u64)>,
) {
    let slots = u64::from(heap.facts.tuple_slots);
    ranges.push((arrays.heads, arrays.heads + arrays.head_stride * slots));
    ranges.push((
        arrays.counters,
        arrays.counters + arrays.counter_stride * slots,
    ));
    for index in 0..slots as usize {
        let size = match heap.facts.tuple_index {
            TupleIndex::Size => index as u64,
            TupleIndex::SizeMinusOne => index as u64 + 1,
        };
        places.push(Place {
            list: format!("tuple[{index}]"),
            interpreter: arrays.interpreter,
            index,
            tuple_size: Some(size),
            head_at: arrays.heads + arrays.head_stride * index as u64,
            counter_at: Some((
                arrays.counters + arrays.counter_stride * index as u64,
                arrays.counter_size,
            )),
            shape: FreeListShape::Chain(heap.facts.free_list_link),
            array_len: 0,
            members: FreeListMembers::Objects {
                type_name: Some("tuple"),
                gc: true,
            },
            refcount_meaningful: true,
            max: i64::from(heap.facts.tuple_max_per_slot),
            not_walked: heap.facts.tuple_index == TupleIndex::Size && index == 0,
        });
    }
}

fn fact_place(
    fact: &FreeListFact,
    interpreter: Option<u64>,
    head_at: u64,
    counter_at: Option<(u64, u64)>,
    array_len: u64,
) -> Place {
    Place {
        list: fact.name.to_string(),
        interpreter,
        index: 0,
        tuple_size: None,
        head_at,
        counter_at,
        shape: fact.shape,
        array_len,
        members: fact.members,
        refcount_meaningful: fact.refcount_meaningful,
        max: i64::from(fact.max),
        not_walked: false,
    }
}

/// 2.7–3.9: the statics of each type's C file, by symbol or DWARF.
fn locate_statics(
    heap: &ReadContext,
    places: &mut Vec<Place>,
    out: &mut FreeLists,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for fact in heap.facts.rules.free_list_facts() {
        let (unit, head, counter) = fact.statics;
        let find = |name: &str| heap.layout.static_address(heap.module?, unit, name);
        // A list without a counter (the slice cache) needs none found.
        let counter_at = (!counter.is_empty()).then(|| find(counter));
        let (Some(head_at), Some(counter_at)) =
            (find(head), counter_at.map_or(Some(None), |c| c.map(Some)))
        else {
            out.unlocated(
                format!(
                    "the {} free list is a static of {unit} and neither the interpreter's \
                     symbol table nor its DWARF was found to name it",
                    fact.name
                ),
                diagnostics,
            );
            continue;
        };
        let array_len = u64::from(fact.max);
        let head_bytes = match fact.shape {
            FreeListShape::Array => array_len * 8,
            _ => 8,
        };
        out.arrays.push((head_at, head_at + head_bytes));
        if let Some(at) = counter_at {
            out.arrays.push((at, at + 4));
        }
        places.push(fact_place(
            fact,
            None,
            head_at,
            counter_at.map(|at| (at, 4)),
            array_len,
        ));
    }
}

/// 3.10–3.13: fields of each interpreter state.
fn locate_interpreter_fields(
    heap: &ReadContext,
    places: &mut Vec<Place>,
    out: &mut FreeLists,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let interps = match interpreters(heap) {
        Ok(i) => i,
        Err(reason) => {
            out.unlocated(format!("the other free lists: {reason}"), diagnostics);
            return;
        }
    };
    for fact in heap.facts.rules.free_list_facts() {
        let o = &heap.layout.offsets().interp;
        let (head, counter) = match fact.kind {
            FreeListKind::Float => (o.float_free_list, Some(o.float_numfree)),
            FreeListKind::List => (o.list_free_list, Some(o.list_numfree)),
            FreeListKind::Dict => (o.dict_free_list, Some(o.dict_numfree)),
            FreeListKind::DictKeys => (o.dictkeys_free_list, Some(o.dictkeys_numfree)),
            FreeListKind::AsyncGenValue => {
                (o.async_gen_value_free_list, Some(o.async_gen_value_numfree))
            }
            FreeListKind::AsyncGenAsend => {
                (o.async_gen_asend_free_list, Some(o.async_gen_asend_numfree))
            }
            FreeListKind::Frame => (o.frame_free_list, Some(o.frame_numfree)),
            FreeListKind::Context => (o.context_free_list, Some(o.context_numfree)),
            FreeListKind::Slice => (o.slice_cache, None),
            // Lists no version with these fields keeps.
            FreeListKind::Unicode
            | FreeListKind::Method
            | FreeListKind::CFunction
            | FreeListKind::Set
            | FreeListKind::Int => continue,
        };
        let counter = match counter {
            Some(c) => c.get().zip(c.size()).map(Some),
            None => Some(None),
        };
        let (Some(head_offset), Some(head_size), Some(counter)) =
            (head.get(), head.size(), counter)
        else {
            out.unlocated(
                format!("the layout lacks the interpreter's {} free list", fact.name),
                diagnostics,
            );
            continue;
        };
        let array_len = match fact.shape {
            FreeListShape::Array => head_size / 8,
            _ => 0,
        };
        for &i in interps {
            let head_at = i.wrapping_add(head_offset);
            out.arrays.push((head_at, head_at + head_size.max(8)));
            let counter_at = counter.map(|(offset, size)| (i.wrapping_add(offset), size));
            if let Some((at, size)) = counter_at {
                out.arrays.push((at, at + size));
            }
            places.push(fact_place(fact, Some(i), head_at, counter_at, array_len));
        }
    }
}

/// 3.14+: every member of `_Py_freelists` but the tuples (walked as slots),
/// as the DWARF names them.
fn locate_unified(
    heap: &ReadContext,
    places: &mut Vec<Place>,
    out: &mut FreeLists,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let offsets = heap.layout.offsets();
    let (Some(base), Some(whole), Some(head), Some(size), Some(stride)) = (
        offsets.interp.freelists.get(),
        heap.layout.get("Freelists"),
        offsets.freelist.head.get(),
        offsets.freelist.size.get(),
        offsets.freelist.sizeof.get(),
    ) else {
        out.unlocated(
            "the layout lacks the interpreter's free lists (_Py_freelists)".to_string(),
            diagnostics,
        );
        return;
    };
    let interps = match interpreters(heap) {
        Ok(i) => i,
        Err(reason) => {
            out.unlocated(format!("the other free lists: {reason}"), diagnostics);
            return;
        }
    };
    let tuples = offsets
        .interp
        .tuple_free_list
        .get()
        .map(|t| t.wrapping_sub(base));
    for &i in interps {
        let at = i.wrapping_add(base);
        out.arrays.push((at, at + whole.size));
        for (name, field) in &whole.fields {
            if Some(field.offset) == tuples || stride == 0 {
                continue;
            }
            let count = field.size / stride;
            for k in 0..count {
                let pair = at + field.offset + k * stride;
                let members = heap.facts.rules.unified_free_list_members(name);
                places.push(Place {
                    list: if count > 1 {
                        format!("{name}[{k}]")
                    } else {
                        name.clone()
                    },
                    interpreter: Some(i),
                    index: 0,
                    tuple_size: None,
                    head_at: pair + head,
                    counter_at: Some((pair + size, 8)),
                    shape: FreeListShape::Chain(FreeListLink::FirstWord),
                    array_len: 0,
                    members,
                    refcount_meaningful: false,
                    max: UNNAMED_MAX,
                    not_walked: false,
                });
            }
        }
    }
}

fn link_name(shape: FreeListShape) -> &'static str {
    match shape {
        FreeListShape::Chain(FreeListLink::ObItem0) => "ob_item0",
        FreeListShape::Chain(FreeListLink::FirstWord) => "first_word",
        FreeListShape::Chain(FreeListLink::ObType) => "ob_type",
        FreeListShape::Array => "array",
        FreeListShape::ChainThrough { field, .. } => field,
        FreeListShape::Single => "single",
    }
}

fn list_name(list: &str, slot_interp: Option<u64>, index: usize, size: Option<u64>) -> String {
    let what = match size {
        Some(size) => format!("tuple free list {index} (size {size})"),
        None => format!("{list} free list"),
    };
    match slot_interp {
        Some(i) => format!("{what} of interpreter {i:#x}"),
        None => what,
    }
}

impl FreeListSlot {
    /// The list's name in findings and reports, e.g. `tuple free list 6
    /// (size 7) of interpreter 0x…`, `dict free list`.
    pub fn name(&self) -> String {
        list_name(&self.list, self.interpreter, self.index, self.size)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn walk_place(heap: &ReadContext, place: &Place, findings: &mut Vec<Finding>) -> FreeListSlot {
    let (head, unreadable) = match heap.memory.read_ptr(place.head_at) {
        Ok(head) => (head, None),
        Err(e) => (0, Some(e)),
    };
    let counter = place.counter_at.and_then(|(at, width)| match width {
        4 => heap.memory.read_i32(at).ok().map(i64::from),
        _ => heap.memory.read_i64(at).ok(),
    });
    let list = list_name(
        &place.list,
        place.interpreter,
        place.index,
        place.tuple_size,
    );
    let mut slot = FreeListSlot {
        list: place.list.clone(),
        link: link_name(place.shape),
        interpreter: place.interpreter,
        index: place.index,
        size: place.tuple_size,
        head_at: place.head_at,
        head,
        counter,
        walked: 0,
        members: Vec::new(),
        anomalies: Vec::new(),
        keeps: match place.members {
            FreeListMembers::Objects { type_name, .. } => type_name,
            FreeListMembers::NotObjects => None,
        },
        unreadable,
    };
    // 3.13+: a counter of −1 means the list is disabled (finalization).
    if slot.unreadable.is_some() || place.not_walked || counter == Some(-1) {
        return slot;
    }
    let mut raise = |slot: &mut FreeListSlot, f: Finding| {
        if !slot.anomalies.contains(&f.kind) {
            slot.anomalies.push(f.kind);
        }
        findings.push(f);
    };
    match place.shape {
        FreeListShape::Chain(_) | FreeListShape::ChainThrough { .. } | FreeListShape::Single => {
            walk_chain(heap, place, &list, &mut slot, &mut raise)
        }
        FreeListShape::Array => walk_array(heap, place, &list, &mut slot, &mut raise),
    }
    let cycle = slot.anomalies.contains(&FindingKind::FreeListCycle);
    if let Some(c) = counter
        && c != slot.walked as i64
        && !slot.anomalies.contains(&FindingKind::FreeListCountMismatch)
        && !(place.shape == FreeListShape::Array && cycle)
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

fn cycle_finding(list: &str, node: u64, slot: &FreeListSlot, counter: Option<i64>) -> Finding {
    let f = Finding::new(
        FindingKind::FreeListCycle,
        Severity::Error,
        node,
        Some(list.to_string()),
        format!(
            "{list} holds {node:#x} twice, after {} member{}: it was pushed twice",
            slot.walked,
            plural(slot.walked)
        ),
    )
    .with("repeated_address", node)
    .with(
        "position",
        slot.members.iter().position(|&m| m == node).unwrap_or(0),
    )
    .with("walked_before_repeat", slot.walked)
    .with("counter", counter);
    match slot.keeps {
        Some(type_name) => f.with("type_name", type_name),
        None => f,
    }
}

fn walk_chain(
    heap: &ReadContext,
    place: &Place,
    list: &str,
    slot: &mut FreeListSlot,
    raise: &mut impl FnMut(&mut FreeListSlot, Finding),
) {
    let counter = slot.counter;
    let cap = match counter {
        Some(c) => c.clamp(0, place.max) as usize + SLACK,
        None => place.max.max(0) as usize,
    };
    let mut seen = HashSet::new();
    let mut node = slot.head;
    while node != 0 {
        if !seen.insert(node) {
            let f = cycle_finding(list, node, slot, counter);
            raise(slot, f);
            break;
        }
        if slot.walked >= cap {
            if counter.is_none() {
                // Nothing to hold a list without a counter to: one longer
                // than its bound is left part-walked, and says so.
                slot.unreadable = Some(ReadError::new(
                    node,
                    8,
                    ReadFailure::TooLarge {
                        len: 8 * (slot.walked as u64 + 1),
                        limit: 8 * cap as u64,
                    },
                ));
                break;
            }
            let f = Finding::new(
                FindingKind::FreeListCountMismatch,
                Severity::Error,
                node,
                Some(list.to_string()),
                format!(
                    "{list} goes on past {} member{} although its counter says {}",
                    slot.walked,
                    plural(slot.walked),
                    counter.unwrap_or(0)
                ),
            )
            .with("counter", counter)
            .with("walked", slot.walked);
            raise(slot, f);
            break;
        }
        slot.walked += 1;
        let (member_findings, is_member) = check_member(heap, node, place, link_of(place), list);
        for f in member_findings {
            raise(slot, f);
        }
        // Something that is not a member at all (misaligned, unreadable, of
        // another type) is a damaged link: keep it out of the member set
        // and do not follow it.
        if !is_member {
            break;
        }
        slot.members.push(node);
        let next = match place.shape {
            FreeListShape::Chain(FreeListLink::ObItem0) => heap
                .layout
                .offsets()
                .tuple
                .ob_item
                .get()
                .and_then(|o| heap.memory.read_ptr(node.wrapping_add(o)).ok()),
            FreeListShape::Chain(FreeListLink::FirstWord) => heap.memory.read_u64(node).ok(),
            FreeListShape::Chain(FreeListLink::ObType) => heap.objects.type_of(node).ok(),
            FreeListShape::ChainThrough { offset, .. } => {
                heap.memory.read_ptr(node.wrapping_add(offset)).ok()
            }
            FreeListShape::Single | FreeListShape::Array => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
}

fn link_of(place: &Place) -> Option<FreeListLink> {
    match place.shape {
        FreeListShape::Chain(link) => Some(link),
        _ => None,
    }
}

fn walk_array(
    heap: &ReadContext,
    place: &Place,
    list: &str,
    slot: &mut FreeListSlot,
    raise: &mut impl FnMut(&mut FreeListSlot, Finding),
) {
    let counter = slot.counter.unwrap_or(0);
    if counter < 0 || counter as u64 > place.array_len {
        let f = Finding::new(
            FindingKind::FreeListCountMismatch,
            Severity::Error,
            place.head_at,
            Some(list.to_string()),
            format!(
                "{list} counts {counter} but its array holds {} entries",
                place.array_len
            ),
        )
        .with("counter", counter)
        .with("array_length", place.array_len);
        raise(slot, f);
    }
    let used = counter.clamp(0, place.array_len as i64) as u64;
    let mut seen = HashSet::new();
    for i in 0..used {
        let entry_at = place.head_at + 8 * i;
        let Ok(node) = heap.memory.read_ptr(entry_at) else {
            break;
        };
        if node == 0 {
            let f = Finding::new(
                FindingKind::FreeListMemberInvalid,
                Severity::Error,
                entry_at,
                Some(list.to_string()),
                format!("entry {i} of {list} is null although its counter says {counter}"),
            )
            .with("entry", i)
            .with("counter", counter);
            raise(slot, f);
            continue;
        }
        if !seen.insert(node) {
            let f = cycle_finding(list, node, slot, Some(counter)).with("entry", i);
            raise(slot, f);
            continue;
        }
        slot.walked += 1;
        let (member_findings, is_member) = check_member(heap, node, place, None, list);
        for f in member_findings {
            raise(slot, f);
        }
        if is_member {
            slot.members.push(node);
        }
    }
}

/// Checks on one member: alignment, type, size, refcount and GC state.
/// Also says whether `node` is a member at all (an object of the list's
/// type), or a damaged link.
fn check_member(
    heap: &ReadContext,
    node: u64,
    place: &Place,
    link: Option<FreeListLink>,
    list: &str,
) -> (Vec<Finding>, bool) {
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
    let not_freed = |why: String| {
        Finding::new(
            FindingKind::FreeListMemberNotFreed,
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
        return (out, false);
    }
    let FreeListMembers::Objects { type_name, gc } = place.members else {
        // Blocks that are not objects: readable is all that can be asked.
        if let Err(e) = heap.memory.read_u64(node) {
            out.push(invalid(format!(
                "{node:#x} on {list} is unreadable: {}",
                e.reason
            )));
            return (out, false);
        }
        return (out, true);
    };
    let ty = match heap.objects.type_of(node) {
        Ok(t) => t,
        Err(e) => {
            out.push(invalid(format!(
                "{node:#x} on {list} is unreadable: {}",
                e.reason
            )));
            return (out, false);
        }
    };
    // Floats up to 3.13 keep the link in `ob_type`: a member whose
    // `ob_type` is its type again was handed out without leaving the list.
    if link == Some(FreeListLink::ObType) {
        if let Some(expected) = type_name
            && ty != 0
            && heap.objects.type_name_of_type(ty).ok().as_deref() == Some(expected)
        {
            out.push(
                not_freed(format!("{node:#x} is on {list} but its ob_type is {expected} again, not a link: it is in use"))
                .with("type", ty),
            );
            return (out, false);
        }
    } else if let Some(expected) = type_name {
        // Tuples: without a symbol for PyTuple_Type, the type object's own fields tell.
        let wrong = match (place.tuple_size, heap.tuple_type()) {
            (Some(_), Some(tuple)) => tuple != ty,
            (Some(_), None) => heap.objects.builtin_type(ty) != Some(BuiltinType::Tuple),
            // A type whose name is in a file the core lacks (the
            // interpreter's read-only data) cannot be told apart by name:
            // a type object is all that can be asked of it.
            (None, _) => match heap.objects.type_name_of_type(ty) {
                Ok(name) => name != expected,
                Err(_) => !HeaderCheck::new().is_type(heap, ty),
            },
        };
        if wrong {
            let name = heap
                .objects
                .type_name_of_type(ty)
                .unwrap_or_else(|_| format!("<type at {ty:#x}>"));
            out.push(
                invalid(format!("{node:#x} on {list} is a {name}, not a {expected}"))
                    .with("type", ty)
                    .with("type_name", name),
            );
            return (out, false);
        }
    }
    if let Some(size) = place.tuple_size {
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
    }
    if link == Some(FreeListLink::FirstWord) {
        // The first word is the link; a refcount change shows as a link
        // that is not an object pointer.
        if let Ok(word) = heap.memory.read_u64(node)
            && (word >> 48 != 0 || word % 8 != 0)
        {
            out.push(
                not_freed(format!("{node:#x} is on {list} but its first word {word:#x} is not a link: its refcount was changed after it was freed"))
                .with("first_word", word),
            );
        }
    } else if place.refcount_meaningful
        && let Some((rc, _)) = heap.refcount(node)
    {
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
                not_freed(format!(
                    "{node:#x} is on {list} but its refcount is {rc}, not 0: it is in use"
                ))
                .with("refcount", rc),
            );
        }
    }
    if gc && let Some((GcState::Tracked, raw)) = heap.gc_state(node) {
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
    (out, true)
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
