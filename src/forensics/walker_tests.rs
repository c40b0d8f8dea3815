//! The GC and free-list walkers on a hand-built heap: a one-segment core
//! made in memory, laid out with the built-in 3.12 table, holding exactly
//! the lists each test describes. Every expectation comes from what the
//! test wrote, never from a walk's earlier output.

use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::coverage::{CheckName, Unchecked};
use super::freelists;
use super::gc::{self, GcWalk};
use super::read_context::{ReadContext, TPFLAGS_HAVE_GC};
use super::verdict::VerdictStatus;
use super::verdict::{self, Verdict};
use super::{Finding, FindingKind};
use crate::corefile::CoreFile;
use crate::diagnostic::Diagnostic;
use crate::diagnostic::Severity;
use crate::layout::Layout;
use crate::layout::facts::TupleIndex;
use crate::layout::offsets::Field;
use crate::layout::spec::InterpFields;
use crate::memory::ProcessMemory;

const BASE: u64 = 0x10_0000;
/// Room for the 3.12 interpreter state's fields up to its tuple free lists.
const SIZE: usize = 0x48000;
/// Where the interpreter's fields that the walks read are placed (the
/// interpreter's address is chosen so that they land here).
const FIELDS: u64 = BASE + 0x100;
/// The type every GC test object has.
const TYPE: u64 = BASE + 0x1000;
/// `&PyTuple_Type`.
const TUPLE_TYPE: u64 = BASE + 0x1400;
/// The first object's GC header; objects are 0x40 apart.
const OBJECTS: u64 = BASE + 0x2000;

fn layout() -> Layout {
    crate::layout::tables::builtin(3, 12)
        .expect("the 3.12 table is built in")
        .layout_for("3.12.0")
}

/// A heap under construction: the bytes of one writable segment.
struct Heap {
    bytes: Vec<u8>,
    layout: Layout,
}

impl Heap {
    fn new() -> Heap {
        let mut heap = Heap {
            bytes: vec![0; SIZE],
            layout: layout(),
        };
        let flags = heap.layout.offsets().type_object.tp_flags.get().unwrap();
        heap.put(TYPE + flags, TPFLAGS_HAVE_GC);
        heap.put(TUPLE_TYPE + flags, TPFLAGS_HAVE_GC);
        heap
    }

    fn put(&mut self, addr: u64, value: u64) {
        let at = (addr - BASE) as usize;
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_i32(&mut self, addr: u64, value: i32) {
        let at = (addr - BASE) as usize;
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The interpreter state's address: its GC state lands at `FIELDS`.
    fn interpreter(&self) -> u64 {
        FIELDS - self.layout.offsets().interp.gc.get().unwrap()
    }

    /// The head of generation `i` (3.12: in the interpreter's GC state).
    fn generation(&self, i: u64) -> u64 {
        let o = self.layout.offsets();
        FIELDS + o.gc_runtime.generations.get().unwrap() + i * o.gc_generation.sizeof.get().unwrap()
    }

    /// An object's address from its GC header's.
    fn object(&self, node: u64) -> u64 {
        node + self.layout.offsets().gc_head.sizeof.get().unwrap()
    }

    /// A live object of `TYPE` with its GC header at `node`.
    fn live_object(&mut self, node: u64, refcount: u64) {
        let o = self.layout.offsets();
        let (rc, ty) = (
            o.object.ob_refcnt.get().unwrap(),
            o.object.ob_type.get().unwrap(),
        );
        let obj = self.object(node);
        self.put(obj + rc, refcount);
        self.put(obj + ty, TYPE);
    }

    /// Link `nodes` into a circular list from the generation head `head`.
    fn link(&mut self, head: u64, nodes: &[u64]) {
        let o = self.layout.offsets();
        let (next, prev) = (
            o.gc_head.gc_next.get().unwrap(),
            o.gc_head.gc_prev.get().unwrap(),
        );
        let ring: Vec<u64> = std::iter::once(head).chain(nodes.iter().copied()).collect();
        for (i, &node) in ring.iter().enumerate() {
            self.put(node + next, ring[(i + 1) % ring.len()]);
            self.put(node + prev, ring[(i + ring.len() - 1) % ring.len()]);
        }
    }

    /// Every generation (and the permanent one) an empty circular list,
    /// generation 0 holding `nodes`, its count `count`.
    fn generations(&mut self, nodes: &[u64], count: i32) {
        for i in 0..3 {
            let head = self.generation(i);
            self.link(head, if i == 0 { nodes } else { &[] });
        }
        let permanent = self.layout.offsets().gc_runtime.permanent_generation.get();
        self.link(FIELDS + permanent.unwrap(), &[]);
        let count_at = self.layout.offsets().gc_generation.count.get().unwrap();
        self.put_i32(self.generation(0) + count_at, count);
    }

    /// The bytes as an ELF core with one writable PT_LOAD segment.
    fn core(&self) -> CoreFile {
        one_segment_core(BASE, &self.bytes)
    }
}

/// The GC walk of `heap`, its findings and diagnostics.
fn walk_gc(heap: &Heap) -> (GcWalk, Vec<Finding>, Vec<Diagnostic>) {
    let memory = ProcessMemory::new(Arc::new(heap.core()));
    let context =
        ReadContext::over(&memory, &heap.layout).with_runtime(vec![heap.interpreter()], None);
    let (mut findings, mut diagnostics) = (Vec::new(), Vec::new());
    let walk = gc::walk(
        &context,
        &FxHashSet::default(),
        &mut findings,
        &mut diagnostics,
        &mut |_, _| {},
    );
    (walk, findings, diagnostics)
}

fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

fn nodes(n: u64) -> Vec<u64> {
    (0..n).map(|i| OBJECTS + i * 0x40).collect()
}

/// `n` live objects (refcount 1) linked into generation 0, whose counter
/// says `count`.
fn live_generation(n: u64, count: i32) -> (Heap, Vec<u64>) {
    let mut heap = Heap::new();
    let nodes = nodes(n);
    for &node in &nodes {
        heap.live_object(node, 1);
    }
    heap.generations(&nodes, count);
    (heap, nodes)
}

#[test]
fn a_healthy_generation_list_is_walked_whole_without_findings() {
    let (heap, nodes) = live_generation(3, 3);
    let (walk, findings, diagnostics) = walk_gc(&heap);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let young = &walk.generations[0];
    assert!(young.complete);
    assert_eq!((young.walked, young.count), (3, Some(3)));
    let objects: Vec<u64> = nodes.iter().map(|&n| heap.object(n)).collect();
    assert_eq!(walk.generation_objects(0), objects);
    assert!(
        walk.generations[1..]
            .iter()
            .all(|g| g.complete && g.walked == 0)
    );
}

/// Lists of every length, odd and even: every object taken once, in list
/// order.
#[test]
fn lists_of_every_length_are_walked_whole_in_list_order() {
    for n in [1, 2, 3, 4, 5, 50, 51] {
        let (heap, nodes) = live_generation(n, n as i32);
        let (walk, findings, _) = walk_gc(&heap);
        assert!(findings.is_empty(), "{n}: {findings:?}");
        let objects: Vec<u64> = nodes.iter().map(|&node| heap.object(node)).collect();
        assert_eq!(walk.generation_objects(0), objects, "{n} objects");
        assert!(walk.generations[0].complete, "{n} objects");
        assert_eq!(walk.generations[0].walked, n as usize);
    }
}

/// A link broken near the tail of a long list is found once, where it is:
/// a prev link that skips back (the walk goes on), a null next link (the
/// walk stops there).
#[test]
fn a_link_broken_near_the_tail_is_found_once_where_it_is() {
    let (mut heap, nodes) = live_generation(50, 50);
    let prev = heap.layout.offsets().gc_head.gc_prev.get().unwrap();
    heap.put(nodes[45] + prev, nodes[40]);
    let (walk, findings, _) = walk_gc(&heap);
    assert_eq!(kinds(&findings), [FindingKind::GcListBrokenLink]);
    assert_eq!(findings[0].address, heap.object(nodes[45]));
    assert!(walk.generations[0].complete);
    assert_eq!(walk.generations[0].walked, 50);

    let (mut heap, nodes) = live_generation(50, 50);
    let next = heap.layout.offsets().gc_head.gc_next.get().unwrap();
    heap.put(nodes[40] + next, 0);
    let (walk, findings, _) = walk_gc(&heap);
    assert_eq!(kinds(&findings), [FindingKind::GcListBrokenLink]);
    assert!(!walk.generations[0].complete);
    assert_eq!(walk.generations[0].walked, 41);
}

#[test]
fn a_broken_prev_link_is_a_finding_at_the_object_that_follows() {
    let (mut heap, nodes) = live_generation(3, 3);
    // The third header's prev skips the second.
    let prev = heap.layout.offsets().gc_head.gc_prev.get().unwrap();
    heap.put(nodes[2] + prev, nodes[0]);
    let (walk, findings, _) = walk_gc(&heap);
    assert_eq!(kinds(&findings), [FindingKind::GcListBrokenLink]);
    assert_eq!(findings[0].address, heap.object(nodes[2]));
    assert!(walk.generations[0].complete);
}

#[test]
fn a_next_link_to_null_ends_the_walk_with_a_finding() {
    let (mut heap, nodes) = live_generation(3, 3);
    let next = heap.layout.offsets().gc_head.gc_next.get().unwrap();
    heap.put(nodes[1] + next, 0);
    let (walk, findings, _) = walk_gc(&heap);
    assert_eq!(kinds(&findings), [FindingKind::GcListBrokenLink]);
    assert!(!walk.generations[0].complete);
    assert_eq!(walk.generations[0].walked, 2);
}

#[test]
fn a_cycle_that_misses_the_head_is_found_and_stops_the_walk() {
    let (mut heap, nodes) = live_generation(3, 3);
    // The last header links back to the second instead of the head.
    let next = heap.layout.offsets().gc_head.gc_next.get().unwrap();
    heap.put(nodes[2] + next, nodes[1]);
    let (walk, findings, _) = walk_gc(&heap);
    assert!(
        kinds(&findings).contains(&FindingKind::GcListCycle),
        "{findings:?}"
    );
    let cycle = findings
        .iter()
        .find(|f| f.kind == FindingKind::GcListCycle)
        .unwrap();
    assert_eq!(cycle.address, heap.object(nodes[1]));
    assert!(!walk.generations[0].complete);
    assert_eq!(walk.generations[0].walked, 3);
}

#[test]
fn a_generation_count_that_disagrees_with_the_walk_is_reported_beside_it() {
    let (heap, _) = live_generation(2, 5);
    let (walk, _, _) = walk_gc(&heap);
    let young = &walk.generations[0];
    assert_eq!((young.count, young.walked), (Some(5), 2));
}

#[test]
fn a_tracked_object_with_refcount_zero_is_a_finding() {
    let mut heap = Heap::new();
    let nodes = nodes(2);
    heap.live_object(nodes[0], 1);
    heap.live_object(nodes[1], 0);
    heap.generations(&nodes, 2);
    let (_, findings, _) = walk_gc(&heap);
    assert_eq!(kinds(&findings), [FindingKind::GcObjectBadRefcount]);
    assert_eq!(findings[0].address, heap.object(nodes[1]));
}

#[test]
fn without_an_interpreter_the_gc_walk_says_it_could_not_run() {
    let heap = Heap::new();
    let memory = ProcessMemory::new(Arc::new(heap.core()));
    let context = ReadContext::over(&memory, &heap.layout);
    let (mut findings, mut diagnostics) = (Vec::new(), Vec::new());
    let walk = gc::walk(
        &context,
        &FxHashSet::default(),
        &mut findings,
        &mut diagnostics,
        &mut |_, _| {},
    );
    assert!(walk.unlocated.is_some());
    assert!(walk.generations.is_empty());
}

impl Heap {
    /// The free-list slot that holds tuples of `size` items.
    fn slot_of(&self, size: u64) -> u64 {
        match self.layout.facts.tuple_index {
            TupleIndex::Size => size,
            TupleIndex::SizeMinusOne => size - 1,
        }
    }

    /// A freed tuple of `size` items at `obj` (refcount 0, untracked),
    /// whose first item links to `next`.
    fn freed_tuple(&mut self, obj: u64, size: u64, next: u64) {
        let o = self.layout.offsets();
        let (ty, ob_size) = (
            o.object.ob_type.get().unwrap(),
            o.var_object.ob_size.get().unwrap(),
        );
        let item = o.tuple.ob_item.get().unwrap();
        self.put(obj + ty, TUPLE_TYPE);
        self.put(obj + ob_size, size);
        self.put(obj + item, next);
    }

    /// The tuple free list of `size`: its head and its counter.
    fn free_list(&mut self, size: u64, head: u64, counter: i32) {
        let o = &self.layout.offsets().interp;
        let (heads, counters) = (
            o.tuple_free_list.get().unwrap(),
            o.tuple_numfree.get().unwrap(),
        );
        let slot = self.slot_of(size);
        let interp = self.interpreter();
        self.put(interp + heads + 8 * slot, head);
        self.put_i32(interp + counters + 4 * slot, counter);
    }

    /// `n` freed tuples of `size` chained in address order, as the list
    /// of that size.
    fn chain(&mut self, size: u64, n: u64) -> Vec<u64> {
        let members: Vec<u64> = (0..n).map(|i| self.object(OBJECTS + i * 0x40)).collect();
        for (i, &m) in members.iter().enumerate() {
            self.freed_tuple(m, size, members.get(i + 1).copied().unwrap_or(0));
        }
        self.free_list(size, members[0], n as i32);
        members
    }
}

/// The free-list walk of `heap`: every slot, findings and diagnostics.
fn walk_free_lists(heap: &Heap) -> (freelists::FreeLists, Vec<Finding>, Vec<Diagnostic>) {
    let memory = ProcessMemory::new(Arc::new(heap.core()));
    let context = ReadContext::over(&memory, &heap.layout)
        .with_runtime(vec![heap.interpreter()], None)
        .with_tuple_type(TUPLE_TYPE);
    let (mut findings, mut diagnostics) = (Vec::new(), Vec::new());
    let walk = freelists::walk(&context, &mut findings, &mut diagnostics);
    (walk, findings, diagnostics)
}

#[test]
fn a_healthy_tuple_free_list_is_walked_without_findings() {
    let mut heap = Heap::new();
    let members = heap.chain(3, 4);
    let (walk, findings, diagnostics) = walk_free_lists(&heap);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let slot = walk.slots.iter().find(|s| s.size == Some(3)).unwrap();
    assert_eq!(slot.members, members);
    assert_eq!((slot.walked, slot.counter), (4, Some(4)));
    assert!(
        walk.slots
            .iter()
            .filter(|s| s.size != Some(3))
            .all(|s| s.walked == 0)
    );
}

#[test]
fn a_free_list_that_links_back_is_a_cycle_at_the_repeated_member() {
    let mut heap = Heap::new();
    let members = heap.chain(3, 3);
    // The last member links back to the second: it was pushed twice.
    heap.freed_tuple(members[2], 3, members[1]);
    let (_, findings, _) = walk_free_lists(&heap);
    let cycle: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::FreeListCycle)
        .collect();
    assert_eq!(cycle.len(), 1, "{findings:?}");
    assert_eq!(cycle[0].address, members[1]);
}

#[test]
fn a_counter_that_disagrees_with_the_chain_is_a_mismatch() {
    let mut heap = Heap::new();
    let members = heap.chain(5, 2);
    heap.free_list(5, members[0], 3);
    let (walk, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListCountMismatch]);
    let slot = walk.slots.iter().find(|s| s.size == Some(5)).unwrap();
    assert_eq!((slot.walked, slot.counter), (2, Some(3)));
}

#[test]
fn a_member_with_a_refcount_looks_alive() {
    let mut heap = Heap::new();
    let members = heap.chain(2, 3);
    let rc = heap.layout.offsets().object.ob_refcnt.get().unwrap();
    heap.put(members[1] + rc, 1);
    let (_, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListMemberNotFreed]);
    assert_eq!(findings[0].address, members[1]);
}

#[test]
fn a_member_still_linked_in_a_gc_list_is_found_by_the_cross_check() {
    let mut heap = Heap::new();
    let members = heap.chain(2, 2);
    let node = members[1] - heap.layout.offsets().gc_head.sizeof.get().unwrap();
    heap.generations(&[node], 1);
    let memory = ProcessMemory::new(Arc::new(heap.core()));
    let context = ReadContext::over(&memory, &heap.layout)
        .with_runtime(vec![heap.interpreter()], None)
        .with_tuple_type(TUPLE_TYPE);
    let (mut findings, mut diagnostics) = (Vec::new(), Vec::new());
    let free = freelists::walk(&context, &mut findings, &mut diagnostics);
    assert!(
        kinds(&findings).contains(&FindingKind::FreeListMemberTracked),
        "{findings:?}"
    );
    let watch: FxHashSet<u64> = members.iter().copied().collect();
    let gc = gc::walk(
        &context,
        &watch,
        &mut findings,
        &mut diagnostics,
        &mut |_, _| {},
    );
    findings.clear();
    freelists::cross_check(&context, &free, &gc, &mut findings);
    assert_eq!(kinds(&findings), [FindingKind::FreeListMemberInGcList]);
    assert_eq!(findings[0].address, members[1]);
}

fn unchecked(check: CheckName) -> Unchecked {
    Unchecked {
        check,
        reason: "not located".into(),
        remedy: "give the interpreter's files".into(),
    }
}

fn finding(severity: Severity) -> Finding {
    Finding::new(
        FindingKind::FreeListCountMismatch,
        severity,
        OBJECTS,
        None,
        "a finding".into(),
    )
}

#[test]
fn the_verdict_is_clean_only_when_every_check_ran_and_found_nothing() {
    assert_eq!(verdict::status(&[], &[]), VerdictStatus::Clean);
    assert_eq!(
        verdict::status(&[], &[unchecked(CheckName::GcLists)]),
        VerdictStatus::Incomplete
    );
    assert_eq!(
        verdict::status(&[finding(Severity::Note)], &[]),
        VerdictStatus::Clean,
        "a note is not a problem"
    );
}

#[test]
fn an_error_finding_makes_the_verdict_corrupt_even_when_a_check_could_not_run() {
    let unchecked = [unchecked(CheckName::FreeLists)];
    assert_eq!(
        verdict::status(&[finding(Severity::Error)], &unchecked),
        VerdictStatus::Corrupt
    );
    assert_eq!(
        verdict::status(&[finding(Severity::Warning)], &unchecked),
        VerdictStatus::Suspicious
    );
}

#[test]
fn a_verdict_restricted_to_the_parts_that_ran_is_clean_again() {
    let mut verdict = Verdict::nothing_checked(unchecked(CheckName::GcLists));
    assert_eq!(verdict.status, VerdictStatus::Incomplete);
    verdict.restrict(|u| u.check != CheckName::GcLists);
    assert_eq!(verdict.status, VerdictStatus::Clean);
    assert!(verdict.unchecked.is_empty());
}

/// `&PyFloat_Type` and `&PyList_Type`, with their `tp_name`s.
const FLOAT_TYPE: u64 = BASE + 0x1800;
const LIST_TYPE: u64 = BASE + 0x1a00;
const NAMES: u64 = BASE + 0x1c00;

impl Heap {
    /// Type objects named `float` and `list` (the list's with a GC header).
    fn named_types(&mut self) {
        let o = self.layout.offsets().type_object;
        let (name, flags) = (o.tp_name.get().unwrap(), o.tp_flags.get().unwrap());
        for (i, (ty, text)) in [(FLOAT_TYPE, b"float\0\0\0"), (LIST_TYPE, b"list\0\0\0\0")]
            .into_iter()
            .enumerate()
        {
            let at = NAMES + 16 * i as u64;
            self.put(at, u64::from_le_bytes(*text));
            self.put(ty + name, at);
        }
        self.put(LIST_TYPE + flags, TPFLAGS_HAVE_GC);
    }

    /// Where the interpreter's field `pick` is (3.12).
    fn interp_field(&self, pick: impl Fn(&InterpFields) -> Field) -> u64 {
        self.interpreter() + pick(&self.layout.offsets().interp).get().unwrap()
    }

    /// `n` freed floats chained through `ob_type` (refcount 0), as the
    /// float free list with counter `counter`.
    fn float_chain(&mut self, n: u64, counter: i32) -> Vec<u64> {
        let ty = self.layout.offsets().object.ob_type.get().unwrap();
        let members: Vec<u64> = (0..n).map(|i| OBJECTS + 0x1000 + i * 0x20).collect();
        for (i, &m) in members.iter().enumerate() {
            self.put(m + ty, members.get(i + 1).copied().unwrap_or(0));
        }
        let (head, numfree) = (
            self.interp_field(|o| o.float_free_list),
            self.interp_field(|o| o.float_numfree),
        );
        self.put(head, members[0]);
        self.put_i32(numfree, counter);
        members
    }

    /// `n` freed lists (refcount 0, untracked) in the list free list's
    /// array, its counter `counter`.
    fn list_array(&mut self, n: u64, counter: i32) -> Vec<u64> {
        let ty = self.layout.offsets().object.ob_type.get().unwrap();
        let members: Vec<u64> = (0..n)
            .map(|i| self.object(OBJECTS + 0x2000 + i * 0x40))
            .collect();
        let array = self.interp_field(|o| o.list_free_list);
        for (i, &m) in members.iter().enumerate() {
            self.put(m + ty, LIST_TYPE);
            self.put(array + 8 * i as u64, m);
        }
        self.put_i32(self.interp_field(|o| o.list_numfree), counter);
        members
    }
}

fn slot<'w>(walk: &'w freelists::FreeLists, list: &str) -> &'w freelists::FreeListSlot {
    walk.slots.iter().find(|s| s.list == list).unwrap()
}

#[test]
fn a_healthy_float_free_list_is_walked_through_ob_type() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.float_chain(3, 3);
    let (walk, findings, diagnostics) = walk_free_lists(&heap);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let float = slot(&walk, "float");
    assert_eq!(
        (float.link, float.walked, float.counter),
        ("ob_type", 3, Some(3))
    );
    assert_eq!(float.members, members);
    // Its members are what the GC walk and the reference count look for.
    assert!(members.iter().all(|m| walk.members.contains(m)));
}

#[test]
fn a_float_chain_that_links_back_is_a_cycle() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.float_chain(3, 3);
    let ty = heap.layout.offsets().object.ob_type.get().unwrap();
    heap.put(members[2] + ty, members[0]);
    let (walk, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListCycle]);
    assert_eq!(findings[0].address, members[0]);
    let list = format!("float free list of interpreter {:#x}", heap.interpreter());
    assert_eq!(findings[0].list.as_deref(), Some(list.as_str()));
    assert_eq!(slot(&walk, "float").walked, 3);
}

#[test]
fn a_float_counter_that_disagrees_is_a_mismatch() {
    let mut heap = Heap::new();
    heap.named_types();
    heap.float_chain(2, 5);
    let (_, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListCountMismatch]);
}

#[test]
fn a_float_handed_out_again_looks_alive() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.float_chain(3, 3);
    let o = heap.layout.offsets();
    let (rc, ty) = (
        o.object.ob_refcnt.get().unwrap(),
        o.object.ob_type.get().unwrap(),
    );
    // The middle member was initialised again: a refcount and its type.
    heap.put(members[1] + rc, 1);
    heap.put(members[1] + ty, FLOAT_TYPE);
    let (walk, findings, _) = walk_free_lists(&heap);
    assert_eq!(
        kinds(&findings),
        [
            FindingKind::FreeListMemberNotFreed,
            FindingKind::FreeListCountMismatch
        ]
    );
    assert_eq!(findings[0].address, members[1]);
    assert_eq!(slot(&walk, "float").members, [members[0]]);
}

#[test]
fn a_healthy_list_free_list_array_is_walked_up_to_its_counter() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.list_array(4, 3);
    let (walk, findings, diagnostics) = walk_free_lists(&heap);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let list = slot(&walk, "list");
    assert_eq!(
        (list.link, list.walked, list.counter),
        ("array", 3, Some(3))
    );
    // The entry past the counter is stale: it was handed out again.
    assert_eq!(list.members, members[..3]);
    assert!(!walk.members.contains(&members[3]));
    assert!(members[..3].iter().all(|m| walk.members.contains(m)));
}

#[test]
fn a_list_array_holding_one_list_twice_is_a_cycle() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.list_array(3, 3);
    heap.put(heap.interp_field(|o| o.list_free_list) + 16, members[0]);
    let (_, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListCycle]);
    assert_eq!(findings[0].address, members[0]);
}

#[test]
fn a_list_counter_beyond_its_array_is_a_mismatch() {
    let mut heap = Heap::new();
    heap.named_types();
    heap.list_array(2, 81);
    let (_, findings, _) = walk_free_lists(&heap);
    assert!(
        kinds(&findings).contains(&FindingKind::FreeListCountMismatch),
        "{findings:?}"
    );
}

#[test]
fn a_list_on_its_free_list_with_a_refcount_or_tracked_looks_alive() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.list_array(2, 2);
    let rc = heap.layout.offsets().object.ob_refcnt.get().unwrap();
    heap.put(members[0] + rc, 2);
    let node = members[1] - heap.layout.offsets().gc_head.sizeof.get().unwrap();
    heap.put(
        node + heap.layout.offsets().gc_head.gc_next.get().unwrap(),
        node,
    );
    let (_, findings, _) = walk_free_lists(&heap);
    assert_eq!(
        kinds(&findings),
        [
            FindingKind::FreeListMemberNotFreed,
            FindingKind::FreeListMemberTracked
        ]
    );
    assert_eq!(
        (findings[0].address, findings[1].address),
        (members[0], members[1])
    );
}

#[test]
fn a_list_array_entry_of_another_type_is_not_a_member() {
    let mut heap = Heap::new();
    heap.named_types();
    let members = heap.list_array(2, 2);
    let ty = heap.layout.offsets().object.ob_type.get().unwrap();
    heap.put(members[1] + ty, FLOAT_TYPE);
    let (walk, findings, _) = walk_free_lists(&heap);
    assert_eq!(kinds(&findings), [FindingKind::FreeListMemberInvalid]);
    assert!(!walk.members.contains(&members[1]));
}

/// The slots an owner of kind `owner` at `obj` holds, as the counter reads them.
fn owned_slots(heap: &Heap, obj: u64, owner: super::owners::Owner) -> Vec<super::referrers::Slot> {
    let memory = ProcessMemory::new(Arc::new(heap.core()));
    let context = ReadContext::over(&memory, &heap.layout);
    let mut slots = Vec::new();
    super::owners::OwnerLayout::new(&context).visit(&context, obj, owner, &mut |s| slots.push(s));
    slots
}

#[test]
fn a_deques_items_are_read_across_its_blocks_and_its_length_bounds_the_walk() {
    let mut heap = Heap::new();
    let o = heap.layout.offsets().clone();
    let (data, rightlink) = (
        o.deque_block.data.get().unwrap(),
        o.deque_block.rightlink.get().unwrap(),
    );
    let block_len = o.deque_block.data.size().unwrap() / 8;
    let deque = BASE + 0x10000;
    let (first, second) = (BASE + 0x11000, BASE + 0x12000);
    heap.put(
        deque + o.var_object.ob_size.get().unwrap(),
        4 + block_len + 2,
    );
    heap.put(deque + o.deque.leftblock.get().unwrap(), first);
    heap.put(deque + o.deque.leftindex.get().unwrap(), block_len - 4);
    // The blocks link to each other both ways: only the length stops the walk.
    heap.put(first + rightlink, second);
    heap.put(second + rightlink, first);
    let mut written = Vec::new();
    for i in 0..4 {
        let at = first + data + (block_len - 4 + i) * 8;
        heap.put(at, 0x7000 + i);
        written.push((at, 0x7000 + i));
    }
    for i in 0..block_len {
        let at = second + data + i * 8;
        heap.put(at, 0x8000 + i);
        written.push((at, 0x8000 + i));
    }
    // The link leads back to the first block: its first two slots are
    // items 68 and 69, the third is past the length.
    for i in 0..2 {
        let at = first + data + i * 8;
        heap.put(at, 0x7100 + i);
        written.push((at, 0x7100 + i));
    }
    heap.put(first + data + 2 * 8, 0x9999);
    let slots = owned_slots(&heap, deque, super::owners::Owner::Deque);
    let read: Vec<(u64, u64)> = slots.iter().map(|s| (s.at, s.target)).collect();
    assert_eq!(read, written);
    assert!(
        slots
            .iter()
            .enumerate()
            .all(|(i, s)| s.index == i as u64 && s.container == deque)
    );
}

#[test]
fn a_sets_entries_skip_empty_and_dummy_slots() {
    let mut heap = Heap::new();
    let o = heap.layout.offsets().clone();
    let (key, hash) = (
        o.set_entry.key.get().unwrap(),
        o.set_entry.hash.get().unwrap(),
    );
    let set = BASE + 0x10000;
    let table = BASE + 0x11000;
    heap.put(set + o.set.mask.get().unwrap(), 7);
    heap.put(set + o.set.table.get().unwrap(), table);
    // Entry 0 a key, 1 empty, 2 a removed key (the dummy, hash -1), 3 a key.
    heap.put(table + key, 0x7100);
    heap.put(table + hash, 5);
    heap.put(table + 2 * 16 + key, 0x7200);
    heap.put(table + 2 * 16 + hash, u64::MAX);
    heap.put(table + 3 * 16 + key, 0x7300);
    heap.put(table + 3 * 16 + hash, 7);
    let slots = owned_slots(&heap, set, super::owners::Owner::Set);
    let read: Vec<(u64, u64)> = slots.iter().map(|s| (s.at, s.target)).collect();
    assert_eq!(
        read,
        vec![(table + key, 0x7100), (table + 3 * 16 + key, 0x7300)]
    );
}

/// `bytes` at `base` as an ELF core with one writable PT_LOAD segment: the
/// smallest core the walkers' read context accepts.
pub(super) fn one_segment_core(base: u64, bytes: &[u8]) -> CoreFile {
    const DATA: usize = 0x1000;
    let mut elf = vec![0u8; DATA];
    elf[..16].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let header: [(usize, &[u8]); 7] = [
        (16, &4u16.to_le_bytes()),  // ET_CORE
        (18, &62u16.to_le_bytes()), // EM_X86_64
        (20, &1u32.to_le_bytes()),
        (32, &64u64.to_le_bytes()), // e_phoff
        (52, &64u16.to_le_bytes()),
        (54, &56u16.to_le_bytes()),
        (56, &1u16.to_le_bytes()),
    ];
    for (at, field) in header {
        elf[at..at + field.len()].copy_from_slice(field);
    }
    let size = bytes.len() as u64;
    let phdr: [(usize, u64, usize); 8] = [
        (0, 1, 4), // PT_LOAD
        (4, 6, 4), // PF_R | PF_W
        (8, DATA as u64, 8),
        (16, base, 8),
        (24, 0, 8),
        (32, size, 8),
        (40, size, 8),
        (48, 0x1000, 8),
    ];
    for (at, value, len) in phdr {
        elf[64 + at..64 + at + len].copy_from_slice(&value.to_le_bytes()[..len]);
    }
    elf.extend_from_slice(bytes);
    CoreFile::from_bytes(std::path::Path::new("hand-built"), elf).expect("a valid core")
}
