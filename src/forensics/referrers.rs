//! Who still points at an object: precise references from live containers
//! (tuples, lists, dicts) and frames, then a conservative scan of writable
//! memory for the suspects, each hit attributed where possible.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::dense::{AddressIndex, Bits, Counts};
use super::freelists::FreeLists;
use super::gc::GcWalk;
use super::items::{DeadHeader, HeaderCheck};
use super::owners::{FieldOwner, Owner, OwnerLayout};
use super::pymalloc::{Allocation, BlockState};
use super::read_context::{HeaderLookahead, ReadContext};
use super::statics::StaticPointers;
use super::{Finding, FindingKind, Referrer, ReferrerKind};
use crate::diagnostic::Severity;
use crate::memory::{Memory, MemoryExt};
use crate::python::PythonState;
use crate::python::types::BuiltinType;

/// Items read from one container, at most.
const MAX_ITEMS: u64 = 1 << 20;
/// Referrers kept per object, at most.
const MAX_REFERRERS: usize = 16;
/// Suspects looked for by the memory scan, at most. A snapshot taken while
/// a thread extends a list by tens of thousands of items has as many
/// suspects, and each needs its holders for the in-flight analysis to
/// explain it: the bound is for hostile cores, not for those.
const MAX_SUSPECTS: usize = 1 << 18;

/// One owned reference held by a container or a frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) at: u64,
    pub(super) target: u64,
    pub(super) container: u64,
    pub(super) index: u64,
    pub(super) kind: ContainerKind,
}

/// What holds a [`Slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerKind {
    Tuple,
    List,
    DictValue,
    Frame,
    DequeItem,
    SetEntry,
    /// A pointer field of a function, cell, method or descriptor, by its Python name.
    Field(FieldOwner, &'static str),
    /// An item of an untracked defaults tuple or kwdefaults dict, held for a function.
    FunctionDefault,
    /// A local of a suspended generator's frame; the container is the generator.
    GeneratorLocal,
    /// An instance's `__dict__` pointer.
    InstanceDict,
    /// An attribute value: inline values, or an untracked `__dict__`'s.
    InstanceAttribute,
}

/// Owned references found in live containers and frames.
pub struct References {
    /// Slots holding a reference to one of the targets asked for up front.
    slots: Vec<Slot>,
    /// References counted per target.
    counts: Counter,
    /// Owned objects whose header says freed (free-list members left out),
    /// once [`References::judge_owned_headers`] ran.
    dead: Vec<(u64, DeadHeader)>,
    /// Frame address → (function, LWP) for descriptions.
    frames: FxHashMap<u64, (String, Option<i32>)>,
    /// Thread stacks: (low, high, LWP).
    stacks: Vec<(u64, u64, i32)>,
}

/// Owned references counted per object: a byte per 8 bytes of writable
/// memory when that fits, a hash map otherwise. The dense form also marks
/// the wanted objects, so that one slot lookup serves both questions.
enum Counter {
    Dense(AddressIndex, Counts, WantedMarks),
    Sparse(FxHashMap<u64, u32>),
}

/// The wanted objects over the dense slots, with a bit per 64 slots in
/// front: a few thousand wanted objects among millions counted, so nearly
/// every lookup ends in the small map (18 KB for a 150 MB core, cached)
/// without reading the big one.
struct WantedMarks {
    coarse: Bits,
    marks: Bits,
}

/// A bit per 64 slots of `index`, set where a `wanted` object has a slot.
fn near_wanted(index: &AddressIndex, wanted: &FxHashSet<u64>) -> Bits {
    let mut near = Bits::new(index.len().div_ceil(64));
    for slot in wanted.iter().filter_map(|&a| index.slot(a)) {
        near.test_and_set(slot / 64);
    }
    near
}

impl WantedMarks {
    fn new(index: &AddressIndex, wanted: &FxHashSet<u64>) -> WantedMarks {
        let mut marks = Bits::new(index.len());
        for slot in wanted.iter().filter_map(|&a| index.slot(a)) {
            marks.test_and_set(slot);
        }
        WantedMarks {
            coarse: near_wanted(index, wanted),
            marks,
        }
    }

    #[inline(always)]
    fn get(&self, slot: usize) -> bool {
        self.coarse.get(slot / 64) && self.marks.get(slot)
    }
}

impl Counter {
    fn new(heap: &ReadContext, wanted: &FxHashSet<u64>) -> Counter {
        match AddressIndex::new(heap.memory.core(), heap.object_granule()) {
            Some(index) => {
                let counts = Counts::new(index.len());
                let marks = WantedMarks::new(&index, wanted);
                Counter::Dense(index, counts, marks)
            }
            None => Counter::Sparse(FxHashMap::default()),
        }
    }

    /// Count one reference to `addr` (an address outside the dense table
    /// is not counted); return whether `addr` is wanted.
    #[inline(always)]
    fn add(&mut self, addr: u64, wanted: &FxHashSet<u64>) -> bool {
        match self {
            Counter::Dense(index, counts, marks) => match index.slot(addr) {
                Some(slot) => {
                    counts.add(slot);
                    marks.get(slot)
                }
                None => wanted.contains(&addr),
            },
            Counter::Sparse(map) => {
                *map.entry(addr).or_default() += 1;
                wanted.contains(&addr)
            }
        }
    }

    fn get(&self, addr: u64) -> u32 {
        match self {
            Counter::Dense(index, counts, _) => {
                index.slot(addr).map_or(0, |s| u32::from(counts.get(s)))
            }
            Counter::Sparse(map) => map.get(&addr).copied().unwrap_or(0),
        }
    }

    /// What the header pass reads of the counts: a view other threads can share.
    fn owned<'c>(&'c self, alive: Option<&'c Bits>) -> Owned<'c> {
        match self {
            Counter::Dense(index, counts, WantedMarks { marks, .. }) => Owned::Dense {
                ranges: index.ranges(),
                granule: index.granule(),
                counts,
                marks,
                alive,
            },
            Counter::Sparse(map) => Owned::Sparse(map),
        }
    }

    /// Objects counted at least `min` times. A dense count of 255 means "at
    /// least 255" and is left out: it cannot be compared with a refcount.
    fn at_least(&self, min: u32) -> Vec<(u64, u32)> {
        match self {
            Counter::Dense(index, counts, _) => counts
                .at_least(min.min(255) as u8)
                .filter(|&(_, c)| c < 255)
                .filter_map(|(slot, c)| Some((index.address(slot)?, u32::from(c))))
                .collect(),
            Counter::Sparse(map) => map
                .iter()
                .filter(|e| *e.1 >= min)
                .map(|(&a, &c)| (a, c))
                .collect(),
        }
    }
}

/// The objects something owns a reference to, in a form the threads of the
/// header pass share.
enum Owned<'c> {
    Dense {
        ranges: Vec<(u64, usize, usize)>,
        granule: u64,
        counts: &'c Counts,
        marks: &'c Bits,
        // Objects whose header the GC walk already found alive, over the
        // same index (both are built from the core by `AddressIndex::new`).
        alive: Option<&'c Bits>,
    },
    Sparse(&'c FxHashMap<u64, u32>),
}

impl Owned<'_> {
    /// The owned objects of part `part` of `parts` whose header says freed,
    /// wanted ones (free-list members, judged by their own checks) left
    /// out. The dense parts are read in address order, so the core's pages
    /// are met in sequence rather than at random.
    fn dead(
        &self,
        heap: &ReadContext,
        wanted: &FxHashSet<u64>,
        part: usize,
        parts: usize,
    ) -> Vec<(u64, DeadHeader)> {
        let mut headers = HeaderCheck::new();
        let mut dead = Vec::new();
        let mut judge = |addr: u64| {
            if let Some(why) = headers.dead(heap, addr) {
                dead.push((addr, why));
            }
        };
        match self {
            Owned::Dense {
                ranges,
                granule,
                counts,
                marks,
                alive,
            } => {
                let mut ahead = HeaderLookahead::default();
                for &(start, first, len) in ranges {
                    // Parts take turns by chunk: objects crowd in some
                    // parts of the heap, and halves would not share evenly.
                    let chunks = (first / PART_CHUNK)..(first + len).div_ceil(PART_CHUNK);
                    for chunk in chunks.filter(|c| c % parts == part) {
                        let from = (chunk * PART_CHUNK).max(first);
                        let to = ((chunk + 1) * PART_CHUNK).min(first + len);
                        for slot in counts.counted_in(from..to) {
                            if !marks.get(slot) && !alive.is_some_and(|a| a.get(slot)) {
                                let obj = start + (slot - first) as u64 * granule;
                                if let Some(due) = ahead.push(heap, obj) {
                                    judge(due);
                                }
                            }
                        }
                    }
                }
                std::mem::take(&mut ahead).drain().for_each(&mut judge);
            }
            Owned::Sparse(map) => {
                for (_, &addr) in map
                    .keys()
                    .enumerate()
                    .filter(|(i, a)| i % parts == part && !wanted.contains(a))
                {
                    judge(addr);
                }
            }
        }
        dead
    }
}

/// Slots per turn of a header-pass part: 256 KiB of heap at 16 bytes a slot.
const PART_CHUNK: usize = 1 << 14;

/// What [`Enumerator`] reads of an object: the containers whose references it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A tuple: its items.
    Tuple,
    /// A list: its items.
    List,
    /// A dict: its values.
    Dict,
    /// One of the other owners (sets, deques, functions, generators, instances…).
    Owner(Owner),
    /// Anything else: not read.
    Other,
}

/// The [`Shape`] of each type, looked up by name once per type.
#[derive(Default)]
pub struct Shapes {
    shapes: FxHashMap<u64, Shape>,
    // Neighbours in a GC list are often of one type.
    last: Option<(u64, Shape)>,
}

impl Shapes {
    /// The shape of objects of type `ty`.
    pub fn shape(&mut self, heap: &ReadContext, ty: u64) -> Shape {
        if let Some((last, shape)) = self.last
            && last == ty
        {
            return shape;
        }
        let shape = *self
            .shapes
            .entry(ty)
            .or_insert_with(|| match heap.objects.builtin_type(ty) {
                Some(BuiltinType::Tuple) => Shape::Tuple,
                Some(BuiltinType::List) => Shape::List,
                Some(BuiltinType::Dict) => Shape::Dict,
                _ => OwnerLayout::classify(heap, ty).map_or(Shape::Other, Shape::Owner),
            });
        self.last = Some((ty, shape));
        shape
    }
}

/// Enumerates the owned references a tracked object holds: tuple and list
/// items, dict values (only: a split dict's keys belong to its shared keys
/// object). Driven object by object, by the GC walk, or by a pass over the
/// walked objects.
pub struct Enumerator {
    shapes: Shapes,
    owners: OwnerLayout,
    tuple_items: Option<u64>,
    list_items: Option<u64>,
    ob_size: Option<u64>,
    buf: Vec<u8>,
}

impl Enumerator {
    /// An enumerator for `heap`'s layout.
    pub fn new(heap: &ReadContext) -> Enumerator {
        let offsets = heap.layout.offsets();
        Enumerator {
            shapes: Shapes::default(),
            owners: OwnerLayout::new(heap),
            tuple_items: offsets.tuple.ob_item.get(),
            list_items: offsets.list.ob_item.get(),
            ob_size: offsets.var_object.ob_size.get(),
            buf: Vec::new(),
        }
    }

    fn object<F: FnMut(Slot) + ?Sized>(
        &mut self,
        heap: &ReadContext,
        obj: u64,
        ty: u64,
        visit: &mut F,
    ) {
        let shape = self.shapes.shape(heap, ty);
        self.container(heap, obj, shape, visit);
    }

    /// A tuple's or list's `ob_size`.
    #[inline]
    fn var_size(&self, heap: &ReadContext, obj: u64) -> Option<i64> {
        Some(heap.word(obj.wrapping_add(self.ob_size?))? as i64)
    }

    /// Start loading what reading container `obj` needs besides its own
    /// header, which an earlier prefetch has brought in by now: a list's
    /// item array, a dict's keys and split values.
    #[inline]
    fn prefetch_contents(&self, heap: &ReadContext, obj: u64, shape: Shape) {
        match shape {
            Shape::List => {
                if let Some(array) = self
                    .list_items
                    .and_then(|at| heap.word(obj.wrapping_add(at)))
                {
                    heap.prefetch(array);
                }
            }
            Shape::Dict => {
                if let Ok((keys, values)) = heap.objects.dict_tables(obj) {
                    heap.prefetch(keys);
                    if values != 0 {
                        heap.prefetch(values);
                    }
                }
            }
            _ => {}
        }
    }

    // Generic so that the per-reference callback inlines: it runs millions of times.
    fn container<F: FnMut(Slot) + ?Sized>(
        &mut self,
        heap: &ReadContext,
        obj: u64,
        shape: Shape,
        visit: &mut F,
    ) {
        match shape {
            Shape::Tuple => {
                let (Some(items), Some(n)) = (self.tuple_items, self.var_size(heap, obj)) else {
                    return;
                };
                visit_array(
                    heap,
                    &mut self.buf,
                    obj,
                    obj + items,
                    n,
                    ContainerKind::Tuple,
                    visit,
                );
            }
            Shape::List => {
                let (Some(items), Some(n)) = (self.list_items, self.var_size(heap, obj)) else {
                    return;
                };
                let Some(array) = heap.word(obj.wrapping_add(items)) else {
                    return;
                };
                visit_array(
                    heap,
                    &mut self.buf,
                    obj,
                    array,
                    n,
                    ContainerKind::List,
                    visit,
                );
            }
            Shape::Dict => {
                let mut index = 0;
                // A dict that fails part-way keeps the entries read before.
                let _ = heap
                    .objects
                    .for_each_dict_entry(obj, MAX_ITEMS as usize, &mut |e| {
                        visit(Slot {
                            at: e.value_at,
                            target: e.value,
                            container: obj,
                            index,
                            kind: ContainerKind::DictValue,
                        });
                        index += 1;
                    });
            }
            Shape::Owner(owner) => self.owners.visit(heap, obj, owner, visit),
            Shape::Other => {}
        }
    }
}

/// Calls `visit` with every owned reference one container holds: tuple and
/// list items, dict values.
pub fn owned_targets(heap: &ReadContext, container: u64, shape: Shape, visit: &mut dyn FnMut(u64)) {
    Enumerator::new(heap).container(heap, container, shape, &mut |slot: Slot| visit(slot.target));
}

/// Calls `visit` for every owned reference held by the walked objects and by
/// every frame on a thread's stack.
fn enumerate(
    heap: &ReadContext,
    gc: &GcWalk,
    frames: &FxHashMap<u64, (String, Option<i32>)>,
    visit: &mut dyn FnMut(Slot),
) {
    let mut enumerator = Enumerator::new(heap);
    for &obj in &gc.objects {
        if let Ok(ty) = heap.objects.type_of(obj) {
            enumerator.object(heap, obj, ty, visit);
        }
    }
    for &frame in frames.keys() {
        if !enumerator.owners.generator_frames.contains(&frame) {
            visit_frame(heap, frame, frame, ContainerKind::Frame, visit);
        }
    }
}

/// Builds [`References`] while the GC walk visits each object.
pub struct Collector<'w> {
    enumerator: Enumerator,
    tally: Tally<'w>,
}

/// What a [`ContainerReader`] read of some containers: every target to
/// count, and the slots pointing at wanted objects with their container's
/// walk position.
#[derive(Default)]
pub struct ReadContainers {
    targets: Vec<u64>,
    kept: Vec<(u64, Slot)>,
}

/// Reads containers for a [`Collector`] on another thread, which then only
/// counts what was read ([`Collector::take_read`]): reading a container
/// waits for memory, counting its targets hardly does. It keeps no counts
/// of its own, so lending a hand costs no second table.
pub struct ContainerReader<'w> {
    enumerator: Enumerator,
    // The dense index with a bit per 64 slots with a wanted object in
    // them: the set is asked only there.
    near_wanted: Option<(AddressIndex, Bits)>,
    wanted: &'w FxHashSet<u64>,
}

impl<'w> ContainerReader<'w> {
    /// A reader for `heap` that keeps the slots pointing at `wanted`.
    pub fn new(heap: &ReadContext, wanted: &'w FxHashSet<u64>) -> ContainerReader<'w> {
        let near_wanted =
            AddressIndex::new(heap.memory.core(), heap.object_granule()).map(|index| {
                let near = near_wanted(&index, wanted);
                (index, near)
            });
        ContainerReader {
            enumerator: Enumerator::new(heap),
            near_wanted,
            wanted,
        }
    }

    /// Read the containers of `batch`, (walk position, object, shape) each.
    pub fn read(
        &mut self,
        heap: &ReadContext,
        batch: impl Iterator<Item = (u64, u64, Shape)>,
    ) -> ReadContainers {
        let mut read = ReadContainers::default();
        let (near_wanted, wanted) = (&self.near_wanted, self.wanted);
        for (position, obj, shape) in batch {
            self.enumerator
                .container(heap, obj, shape, &mut |slot: Slot| {
                    read.targets.push(slot.target);
                    let maybe_wanted = near_wanted.as_ref().is_none_or(|(index, near)| {
                        index.slot(slot.target).is_none_or(|at| near.get(at / 64))
                    });
                    if maybe_wanted && wanted.contains(&slot.target) {
                        read.kept.push((position, slot));
                    }
                });
        }
        read
    }
}

/// What the collector keeps of each slot it is shown.
struct Tally<'w> {
    counts: Counter,
    slots: Vec<Slot>,
    // For each kept slot, the walk position of its container: collectors
    // that shared the walk's containers merge their slots in walk order.
    positions: Vec<u64>,
    // The walk position of the container being read.
    position: u64,
    // Slots from a reader were added out of walk order.
    unordered: bool,
    wanted: &'w FxHashSet<u64>,
}

impl Tally<'_> {
    #[inline]
    fn take(&mut self, slot: Slot) {
        if self.counts.add(slot.target, self.wanted) {
            self.slots.push(slot);
            self.positions.push(self.position);
        }
    }
}

impl<'w> Collector<'w> {
    /// Count references to every object; keep the slots pointing at `wanted`.
    pub fn new(heap: &ReadContext, wanted: &'w FxHashSet<u64>) -> Collector<'w> {
        Collector {
            enumerator: Enumerator::new(heap),
            tally: Tally {
                counts: Counter::new(heap, wanted),
                slots: Vec::new(),
                positions: Vec::new(),
                position: 0,
                unordered: false,
                wanted,
            },
        }
    }

    /// One tracked object of type `ty`.
    pub fn object(&mut self, heap: &ReadContext, obj: u64, ty: u64) {
        let tally = &mut self.tally;
        self.enumerator
            .object(heap, obj, ty, &mut |slot| tally.take(slot));
    }

    /// One tracked object whose shape the caller already knows.
    pub fn container(&mut self, heap: &ReadContext, obj: u64, shape: Shape) {
        let tally = &mut self.tally;
        self.enumerator
            .container(heap, obj, shape, &mut |slot| tally.take(slot));
    }

    /// One tracked object whose shape the caller already knows, at position
    /// `position` of the walk: for collectors that share the walk's objects
    /// and are then merged ([`Collector::merge`]).
    pub fn container_at(&mut self, heap: &ReadContext, position: u64, obj: u64, shape: Shape) {
        self.tally.position = position;
        self.container(heap, obj, shape);
    }

    /// Count the containers of `batch`, (walk position, object, shape)
    /// each, reading ahead: each container's header is asked for
    /// `HEADER_AHEAD` containers before it is read, and its contents
    /// `CONTENTS_AHEAD` before.
    pub fn containers(&mut self, heap: &ReadContext, batch: &[(u64, u64, Shape)]) {
        const HEADER_AHEAD: usize = 16;
        const CONTENTS_AHEAD: usize = 8;
        for (i, &(position, obj, shape)) in batch.iter().enumerate() {
            if let Some(&(_, ahead, _)) = batch.get(i + HEADER_AHEAD) {
                heap.prefetch(ahead);
            }
            if let Some(&(_, ahead, shape)) = batch.get(i + CONTENTS_AHEAD) {
                self.enumerator.prefetch_contents(heap, ahead, shape);
            }
            self.container_at(heap, position, obj, shape);
        }
    }

    /// Count what a [`ContainerReader`] read of some containers of the
    /// same walk.
    pub fn take_read(&mut self, read: ReadContainers) {
        let tally = &mut self.tally;
        for target in read.targets {
            tally.counts.add(target, tally.wanted);
        }
        for (position, slot) in read.kept {
            tally.slots.push(slot);
            tally.positions.push(position);
            tally.unordered = true;
        }
    }

    /// Add the frames' references and finish.
    pub fn finish(mut self, heap: &ReadContext, state: &PythonState) -> References {
        if self.tally.unordered {
            // Slots a reader kept come after the counter's: back into walk
            // order (stable: a container's slots keep theirs).
            let tally = &mut self.tally;
            let mut kept: Vec<(u64, Slot)> = tally
                .positions
                .drain(..)
                .zip(tally.slots.drain(..))
                .collect();
            kept.sort_by_key(|&(position, _)| position);
            (tally.positions, tally.slots) = kept.into_iter().unzip();
        }
        let mut frames = FxHashMap::default();
        for t in &state.threads {
            for f in &t.stack.frames {
                frames.insert(f.frame, (f.function.clone(), t.lwp));
            }
        }
        let tally = &mut self.tally;
        // A generator's frame on a thread's stack was counted with the generator.
        let counted = &self.enumerator.owners.generator_frames;
        for &frame in frames.keys().filter(|f| !counted.contains(f)) {
            visit_frame(heap, frame, frame, ContainerKind::Frame, &mut |slot| {
                tally.take(slot)
            });
        }
        let stacks = state
            .threads
            .iter()
            .filter_map(|t| t.lwp)
            .filter_map(|lwp| {
                let (low, high) = heap_thread(heap, lwp)?;
                Some((low, high, lwp))
            })
            .collect();
        References {
            slots: self.tally.slots,
            counts: self.tally.counts,
            dead: Vec::new(),
            frames,
            stacks,
        }
    }
}

impl References {
    /// Judge the header of every object something owns: those that say
    /// freed are what [`attribute`] reports. Run after the counting, in
    /// address order, split between this thread and one more, to which
    /// `other` lends a context of its own (contexts are not shared between
    /// threads).
    pub fn judge_owned_headers(
        &mut self,
        heap: &ReadContext,
        wanted: &FxHashSet<u64>,
        alive: Option<&Bits>,
        other: impl FnOnce(&mut dyn FnMut(&ReadContext)) + Send,
    ) {
        let owned = self.counts.owned(alive);
        let owned = &owned;
        self.dead = std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("pymortem-headers".into())
                .spawn_scoped(scope, move || {
                    let mut found = None;
                    other(&mut |heap| found = Some(owned.dead(heap, wanted, 1, 2)));
                    found
                })
                .ok();
            let mut dead = owned.dead(heap, wanted, 0, 2);
            match helper.and_then(|h| h.join().ok()).flatten() {
                Some(second) => dead.extend(second),
                None => dead.extend(owned.dead(heap, wanted, 1, 2)),
            }
            dead.sort_unstable_by_key(|&(addr, _)| addr);
            dead
        });
    }

    /// Keep the slots pointing at `more` too (a second pass, for suspects found late).
    fn add_targets(&mut self, heap: &ReadContext, gc: &GcWalk, more: &FxHashSet<u64>) {
        let mut found = Vec::new();
        enumerate(heap, gc, &self.frames, &mut |slot| {
            if more.contains(&slot.target) {
                found.push(slot);
            }
        });
        self.slots.extend(found);
    }

    fn describe(&self, heap: &ReadContext, s: &Slot) -> Referrer {
        let type_name = |obj: u64| {
            heap.objects
                .type_name(obj)
                .unwrap_or_else(|_| "object".into())
        };
        let (kind, description) = match s.kind {
            ContainerKind::Tuple => (
                ReferrerKind::Object,
                format!("tuple {:#x} item {}", s.container, s.index),
            ),
            ContainerKind::List => (
                ReferrerKind::Object,
                format!("list {:#x} item {}", s.container, s.index),
            ),
            ContainerKind::DictValue => (
                ReferrerKind::Object,
                format!(
                    "{} {:#x} value {}",
                    type_name(s.container),
                    s.container,
                    s.index
                ),
            ),
            ContainerKind::DequeItem => (
                ReferrerKind::DequeItem,
                format!("deque {:#x} item {}", s.container, s.index),
            ),
            ContainerKind::SetEntry => (
                ReferrerKind::SetEntry,
                format!("{} {:#x} entry", type_name(s.container), s.container),
            ),
            ContainerKind::Field(owner, field) => {
                let kind = match owner {
                    FieldOwner::Function => ReferrerKind::Function,
                    FieldOwner::Cell => ReferrerKind::Cell,
                    FieldOwner::Method => ReferrerKind::BoundMethod,
                    FieldOwner::Wrapper | FieldOwner::Property => ReferrerKind::Descriptor,
                };
                let what = match owner {
                    FieldOwner::Function => {
                        format!("function {}", function_name(heap, s.container))
                    }
                    FieldOwner::Method => "bound method".to_string(),
                    _ => type_name(s.container),
                };
                (kind, format!("{what} {:#x} {field}", s.container))
            }
            ContainerKind::FunctionDefault => (
                ReferrerKind::FunctionDefault,
                format!(
                    "function {} {:#x} default {}",
                    function_name(heap, s.container),
                    s.container,
                    s.index
                ),
            ),
            ContainerKind::GeneratorLocal => (
                ReferrerKind::GeneratorFrame,
                format!(
                    "{} {:#x} frame local {}",
                    type_name(s.container),
                    s.container,
                    s.index
                ),
            ),
            ContainerKind::InstanceDict => (
                ReferrerKind::InstanceAttribute,
                format!("{} {:#x} __dict__", type_name(s.container), s.container),
            ),
            ContainerKind::InstanceAttribute => (
                ReferrerKind::InstanceAttribute,
                format!(
                    "{} {:#x} attribute {}",
                    type_name(s.container),
                    s.container,
                    s.index
                ),
            ),
            ContainerKind::Frame => {
                let (function, lwp) = self.frames.get(&s.container).cloned().unwrap_or_default();
                let thread = lwp.map(|l| format!(" (thread {l})")).unwrap_or_default();
                (
                    ReferrerKind::Frame,
                    format!("frame of {function}{thread} slot {}", s.index),
                )
            }
        };
        Referrer {
            at: s.at,
            kind,
            container: Some(s.container),
            description,
        }
    }
}

/// A function's `__qualname__` (2.7: `__name__`), or `?`.
fn function_name(heap: &ReadContext, function: u64) -> String {
    let f = &heap.layout.offsets().function;
    f.qualname
        .get()
        .or(f.name.get())
        .and_then(|at| heap.memory.read_ptr(function.wrapping_add(at)).ok())
        .and_then(|name| heap.objects.raw_text(name, 80).ok())
        .unwrap_or_else(|| "?".to_string())
}

fn visit_array<F: FnMut(Slot) + ?Sized>(
    heap: &ReadContext,
    buf: &mut Vec<u8>,
    container: u64,
    array: u64,
    n: i64,
    kind: ContainerKind,
    visit: &mut F,
) {
    let len = u64::try_from(n).unwrap_or(0).min(MAX_ITEMS) as usize * 8;
    let words = match heap.slice(array, len) {
        Some(words) => words,
        None => {
            buf.resize(len, 0);
            if heap.memory.read_exact_at(array, buf).is_err() {
                return;
            }
            &buf[..]
        }
    };
    for (i, word) in words.as_chunks::<8>().0.iter().enumerate() {
        let target = u64::from_le_bytes(*word);
        if target != 0 {
            visit(Slot {
                at: array.wrapping_add(i as u64 * 8),
                target,
                container,
                index: i as u64,
                kind,
            });
        }
    }
}

/// The owned references in a frame's locals, cells and free variables,
/// each a slot of `container` of `kind`.
pub(super) fn visit_frame<F: FnMut(Slot) + ?Sized>(
    heap: &ReadContext,
    frame: u64,
    container: u64,
    kind: ContainerKind,
    visit: &mut F,
) {
    let offsets = heap.layout.offsets();
    let (base, count, tagged) = if let Some(plus) = offsets.interp_frame.localsplus.get() {
        let Some(code) = offsets
            .interp_frame
            .code
            .get()
            .and_then(|o| heap.memory.read_ptr(frame.wrapping_add(o)).ok())
        else {
            return;
        };
        let code = code & !3;
        let Some(n) = offsets
            .code
            .co_nlocalsplus
            .get()
            .and_then(|o| heap.memory.read_i32(code.wrapping_add(o)).ok())
        else {
            return;
        };
        (
            frame.wrapping_add(plus),
            u64::try_from(n).unwrap_or(0),
            heap.facts.rules.frames_tag_references,
        )
    } else {
        // Up to 3.10 frames are GC objects; their locals are counted from
        // the thread's frames here, not from the GC list.
        let Some(plus) = offsets.frame_object.f_localsplus.get() else {
            return;
        };
        let Some(code) = offsets
            .frame_object
            .f_code
            .get()
            .and_then(|o| heap.memory.read_ptr(frame.wrapping_add(o)).ok())
        else {
            return;
        };
        let field = |field: crate::layout::Field| {
            field
                .get()
                .and_then(|o| heap.memory.read_ptr(code.wrapping_add(o)).ok())
        };
        let tuple_len = |t: Option<u64>| {
            t.and_then(|t| heap.objects.var_size(t).ok())
                .map_or(0, |n| n.max(0) as u64)
        };
        let nlocals = offsets
            .code
            .co_nlocals
            .get()
            .and_then(|o| heap.memory.read_i32(code.wrapping_add(o)).ok())
            .map_or(0, |n| n.max(0) as u64);
        (
            frame.wrapping_add(plus),
            nlocals
                + tuple_len(field(offsets.code.co_cellvars))
                + tuple_len(field(offsets.code.co_freevars)),
            false,
        )
    };
    let Ok(bytes) = heap.memory.read_bytes(base, count.min(4096) * 8, 4096 * 8) else {
        return;
    };
    for (i, word) in bytes.chunks_exact(8).enumerate() {
        let raw = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        // 3.14: a tagged stackref does not own a reference.
        if raw == 0 || (tagged && raw & 3 != 0) {
            continue;
        }
        visit(Slot {
            at: base.wrapping_add(i as u64 * 8),
            target: raw,
            container,
            index: i as u64,
            kind,
        });
    }
}

/// The live part of a thread's stack: from just below its stack pointer to
/// the end of the segment that holds it.
fn heap_thread(heap: &ReadContext, lwp: i32) -> Option<(u64, u64)> {
    let core = heap.memory.core();
    let thread = core.threads().iter().find(|t| t.lwp == lwp)?;
    let sp = thread.registers.sp();
    let seg = &core.segments()[core.segment_index(sp)?];
    // The red zone below the stack pointer may hold live data.
    Some((sp.saturating_sub(core.arch().red_zone()), seg.end()))
}

/// Attach referrers to free-list members and raise the reference findings.
pub fn attribute(
    heap: &ReadContext,
    free: &FreeLists,
    gc: &GcWalk,
    refs: &mut References,
    statics: &StaticPointers<'_>,
    findings: &mut Vec<Finding>,
) {
    let owners = &statics.live;
    // Suspects: free-list members, and objects with more owned references
    // from live containers, frames and extension statics than their
    // refcount.
    let mut suspects: Vec<u64> = free.members.iter().copied().collect();
    let mut below: Vec<Below> = Vec::new();
    // Objects owned by something but whose header says freed: free-list
    // members are judged by the free-list checks, objects other findings
    // are about (a tracked object's refcount) keep those findings.
    let flagged: FxHashSet<u64> = findings.iter().map(|f| f.address).collect();
    let mut dead: Vec<(u64, DeadHeader, u32)> = Vec::new();
    for &(target, why) in &refs.dead {
        if free.members.contains(&target) || target % 8 != 0 {
            continue;
        }
        suspects.push(target);
        if !flagged.contains(&target) {
            dead.push((target, why, refs.counts.get(target)));
        }
    }
    let dead_set: FxHashSet<u64> = refs.dead.iter().map(|d| d.0).collect();
    // An object with one owner is "below" only when its header says freed,
    // judged above: start at two. Statics add to what their objects'
    // containers and frames hold (an object only a static points at has an
    // owner nothing counted).
    let counted = refs.counts.at_least(2);
    // Those counted fewer than two times are not in `counted` yet (255 is
    // "at least 255", never compared with a refcount).
    let static_only = owners.keys().filter_map(|&t| {
        let count = refs.counts.get(t);
        (count < 2).then_some((t, count))
    });
    for (target, count) in counted.iter().copied().chain(static_only) {
        if free.members.contains(&target) || target % 8 != 0 || dead_set.contains(&target) {
            continue;
        }
        let from_statics = owners.get(&target).map_or(0, |s| s.len() as u32);
        let total = count + from_statics;
        if let Some((rc, immortal)) = heap.refcount(target)
            && !immortal
            && rc >= 0
            && i64::from(total) > rc
            && let allowed = rc + interned_slack(heap, target)
            && i64::from(total) > allowed
        {
            below.push(Below {
                target,
                refcount: rc,
                references: total,
                statics_only: i64::from(count) <= allowed,
            });
            suspects.push(target);
        }
    }
    // Objects other findings are about (GC link damage) are suspects too.
    suspects.extend(
        findings
            .iter()
            .filter(|f| f.list.as_deref().is_some_and(|l| l.starts_with("GC ")))
            .map(|f| f.address),
    );
    suspects.sort_unstable();
    suspects.dedup();
    suspects.truncate(MAX_SUSPECTS);
    if suspects.is_empty() {
        return;
    }
    let suspect_set: FxHashSet<u64> = suspects.iter().copied().collect();
    // The free-list members' slots were kept on the first pass; the others
    // need a second one, which only corruption makes happen.
    let late: FxHashSet<u64> = suspects
        .iter()
        .copied()
        .filter(|s| !free.members.contains(s))
        .collect();
    if !late.is_empty() {
        refs.add_targets(heap, gc, &late);
    }
    // Scanned whatever: objects other checks already flagged, and those
    // below their refcount or freed.
    let must_scan: FxHashSet<u64> = findings
        .iter()
        .map(|f| f.address)
        .chain(below.iter().map(|b| b.target))
        .chain(dead.iter().map(|d| d.0))
        .collect();
    let referrers = referrers_of(heap, free, refs, &suspect_set, &must_scan);

    for slot in &free.slots {
        for &m in &slot.members {
            let Some(list) = referrers.get(&m) else {
                continue;
            };
            // Stale copies on stacks and in freed memory are normal; only live
            // owners make a use after free.
            if !list.iter().any(|r| r.kind.is_owner()) {
                continue;
            }
            let what = "still referenced by live objects or frames: a use after free";
            let mut f = Finding::new(
                FindingKind::FreeListMemberReferenced,
                Severity::Error,
                m,
                Some(slot.name()),
                format!(
                    "{m:#x} is on the free list but is {what}: {}",
                    summary(list)
                ),
            )
            .with("referrers", list.len());
            if let Some(type_name) = slot.keeps {
                f = f.with("type_name", type_name);
            }
            f.referrers = list.clone();
            findings.push(f);
        }
    }
    for b in below {
        let target = b.target;
        let mut list = referrers.get(&target).cloned().unwrap_or_default();
        if let Some(own) = owners.get(&target) {
            // The memory scan met the statics' words too: name them once.
            list.retain(|r| !own.iter().any(|s| s.at == r.at));
            list.extend(own.iter().cloned());
        }
        if b.statics_only && statics.borrowed_from_own_module(heap, target, &list) {
            continue;
        }
        let type_name = heap
            .objects
            .type_name(target)
            .unwrap_or_else(|_| "object".into());
        let (rc, count) = (b.refcount, b.references);
        let mut message = format!(
            "{type_name} {target:#x} has refcount {rc} but {count} owned references were found: {}",
            summary(&list)
        );
        // The other owners account for the whole refcount: the static holds
        // none. A pointer kept after the last reference (the object it meant
        // was freed and this one took its memory), or a borrowed one: not
        // yet a corruption, a warning.
        let severity = if b.statics_only {
            message.push_str(
                ": the static holds no reference of its own (kept after the object it pointed at was freed, and this one now lives there; or borrowed)",
            );
            Severity::Warning
        } else {
            Severity::Error
        };
        let mut f = Finding::new(
            FindingKind::RefcountBelowReferences,
            severity,
            target,
            gc.generation_name(target).map(|g| format!("GC {g}")),
            message,
        )
        .with("refcount", rc)
        .with("references", count)
        .with("type_name", type_name);
        if b.statics_only {
            f = f.with("statics_only", true);
        }
        f.referrers = list;
        findings.push(f);
    }
    for (target, why, count) in dead {
        let list = referrers.get(&target).cloned().unwrap_or_default();
        // A freed block's stale ob_type names what it was, when it is
        // still a type; otherwise it is garbage and names nothing.
        let type_name = if HeaderCheck::new().was_object(heap, target) {
            heap.objects
                .type_name(target)
                .unwrap_or_else(|_| "object".into())
        } else {
            "object".to_string()
        };
        let mut f = Finding::new(
            FindingKind::FreedObjectReferenced,
            Severity::Error,
            target,
            None,
            format!(
                "{type_name} {target:#x} is still owned by {} but {}: freed while still referenced",
                summary(&list),
                why.describe()
            ),
        )
        .with("references", count)
        .with("type_name", type_name);
        f = why.record(f);
        if let Some(owner) = reused_by(heap, target) {
            let owner_type = heap
                .objects
                .type_name(owner)
                .unwrap_or_else(|_| "object".into());
            f.message.push_str(&format!(
                "; its block now holds {owner_type} {owner:#x}, {} bytes before it: the memory was reused",
                target - owner
            ));
            f = f.with("reused_by", owner);
        }
        f.referrers = list;
        findings.push(f);
    }
    // Give every other finding about a suspect its referrers too.
    for f in findings.iter_mut().filter(|f| f.referrers.is_empty()) {
        if let Some(list) = referrers.get(&f.address) {
            f.referrers = list.clone();
        }
    }
}

/// The live object whose in-use pymalloc block `target` points inside,
/// below `target`: a pointer kept after its object was freed, into memory
/// another object took since.
fn reused_by(heap: &ReadContext, target: u64) -> Option<u64> {
    let Allocation::Block(block) = heap.pymalloc?.classify(target) else {
        return None;
    };
    if block.state != BlockState::InUse || target <= block.start {
        return None;
    }
    let mut headers = HeaderCheck::new();
    // An object starts at its block, after its GC header, or after a
    // pre-header too; all on 8-byte boundaries.
    (block.start..target)
        .step_by(8)
        .take(REUSE_OFFSETS)
        .find(|&start| {
            heap.object_header(start)
                .is_some_and(|(word, ty)| headers.alive(heap, word, ty))
        })
}

/// Offsets from a block's start where [`reused_by`] looks for an object.
const REUSE_OFFSETS: usize = 8;

/// An object with more owned references than its refcount.
struct Below {
    target: u64,
    refcount: i64,
    references: u32,
    /// Only the extension statics pointing at it make the difference.
    statics_only: bool,
}

/// Every referrer of each target: precise slots first, then memory hits.
///
/// The memory scan, which only adds evidence (stacks, stale copies), covers
/// the targets in `must_scan` and those with a live referrer: on a healthy
/// heap nothing is scanned.
pub fn referrers_of(
    heap: &ReadContext,
    free: &FreeLists,
    refs: &References,
    targets: &FxHashSet<u64>,
    must_scan: &FxHashSet<u64>,
) -> HashMap<u64, Vec<Referrer>> {
    let mut referrers: HashMap<u64, Vec<Referrer>> = HashMap::new();
    let mut precise_at: FxHashSet<u64> = FxHashSet::default();
    for s in refs.slots.iter().filter(|s| targets.contains(&s.target)) {
        precise_at.insert(s.at);
        let list = referrers.entry(s.target).or_default();
        if list.len() < MAX_REFERRERS {
            list.push(refs.describe(heap, s));
        }
    }
    let scan: FxHashSet<u64> = targets
        .iter()
        .copied()
        .filter(|t| must_scan.contains(t) || referrers.contains_key(t))
        .collect();
    if !scan.is_empty() {
        scan_memory(heap, free, refs, &scan, &precise_at, &mut referrers);
    }
    referrers
}

/// How many owned references to `target` live containers and frames hold.
pub fn owned_references(refs: &References, target: u64) -> u32 {
    refs.counts.get(target)
}

/// References a refcount leaves out on purpose: a mortal interned string's
/// refcount does not count the two held by the interned-strings dict.
fn interned_slack(heap: &ReadContext, target: u64) -> i64 {
    let Ok(Some(kind)) = heap.objects.builtin_type_of(target) else {
        return 0;
    };
    let bytes_type_is_str = heap.facts.rules.bytes_type_is_str;
    let offsets = heap.layout.offsets();
    let interned = match kind {
        BuiltinType::Bytes if bytes_type_is_str => offsets
            .string
            .ob_sstate
            .get()
            .and_then(|o| heap.memory.read_i32(target.wrapping_add(o)).ok())
            .map_or(0, i64::from),
        BuiltinType::Str if !bytes_type_is_str => offsets
            .ascii
            .state_interned
            .bits()
            .and_then(|(bit, width)| {
                let word = heap
                    .memory
                    .read_u32(target.wrapping_add(bit / 32 * 4))
                    .ok()?;
                Some(i64::from((word >> (bit % 32)) & ((1 << width) - 1)))
            })
            .unwrap_or(0),
        _ => 0,
    };
    if interned != 0 { 2 } else { 0 }
}

fn summary(list: &[Referrer]) -> String {
    let mut parts: Vec<&str> = list
        .iter()
        .take(3)
        .map(|r| r.description.as_str())
        .collect();
    let more = list.len().saturating_sub(3);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    if parts.is_empty() {
        parts.push("none attributed");
    }
    format!("{}{tail}", parts.join(", "))
}

/// Scan writable memory for pointers to the suspects; skip the precise
/// slots already known, free-list links and the free-list arrays.
fn scan_memory(
    heap: &ReadContext,
    free: &FreeLists,
    refs: &References,
    suspects: &FxHashSet<u64>,
    precise_at: &FxHashSet<u64>,
    referrers: &mut HashMap<u64, Vec<Referrer>>,
) {
    let core = heap.memory.core();
    // A sorted list answers "is this word a suspect" in a few compares.
    let mut sorted: Vec<u64> = suspects.iter().copied().collect();
    sorted.sort_unstable();
    let (lo, hi) = (
        sorted.first().copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
    );
    // A one-bit-per-slot filter rejects nearly every word with one load.
    const FILTER_BITS: u64 = 1 << 20;
    let slot = |v: u64| ((v >> 3) ^ (v >> 23)) & (FILTER_BITS - 1);
    let mut filter = vec![0u64; (FILTER_BITS / 64) as usize];
    for &s in &sorted {
        let b = slot(s);
        filter[(b / 64) as usize] |= 1 << (b % 64);
    }
    let tuple_extent = |m: u64| {
        heap.objects
            .type_of(m)
            .ok()
            .and_then(|t| heap.object_extent(m, t))
            .unwrap_or(64)
    };
    let member_ranges: Vec<(u64, u64)> = {
        let mut v: Vec<(u64, u64)> = free
            .members
            .iter()
            .map(|&m| (m.saturating_sub(heap.gc_head_size), m + tuple_extent(m)))
            .collect();
        v.sort_unstable();
        v
    };
    let in_ranges = |ranges: &[(u64, u64)], a: u64| {
        let i = ranges.partition_point(|r| r.0 <= a);
        i > 0 && a < ranges[i - 1].1
    };
    let span = hi.wrapping_sub(lo);
    let in_span = |v: u64| v.wrapping_sub(lo) <= span;
    let mut note = |v: u64, at: u64| {
        let b = slot(v);
        if filter[(b / 64) as usize] & (1 << (b % 64)) == 0
            || sorted.binary_search(&v).is_err()
            || precise_at.contains(&at)
            || in_ranges(&member_ranges, at)
            || free.arrays.iter().any(|&(a, b)| at >= a && at < b)
        {
            return;
        }
        let (kind, description) = match refs.stacks.iter().find(|&&(a, b, _)| at >= a && at < b) {
            Some(&(_, _, lwp)) => (
                ReferrerKind::Stack,
                format!("stack of thread {lwp} at {at:#x}"),
            ),
            None => (ReferrerKind::Memory, format!("memory at {at:#x}")),
        };
        let list = referrers.entry(v).or_default();
        if list.len() < MAX_REFERRERS {
            list.push(Referrer {
                at,
                kind,
                container: None,
                description,
            });
        }
    };
    for (vaddr, bytes) in core.writable_bytes_in(0, u64::MAX, u64::MAX) {
        // Below a thread's stack pointer its stack holds nothing in use:
        // often megabytes of untouched stack, which QEMU's cores dump whole.
        let end = vaddr + bytes.len() as u64;
        let live_from = refs
            .stacks
            .iter()
            .map(|&(low, _, _)| low & !7)
            .filter(|low| (vaddr..end).contains(low))
            .min()
            .unwrap_or(vaddr);
        let (vaddr, bytes) = (live_from, &bytes[(live_from - vaddr) as usize..]);
        let mut blocks = bytes.chunks_exact(SCAN_BLOCK);
        for (n, block) in blocks.by_ref().enumerate() {
            let words: [u64; SCAN_BLOCK / 8] = std::array::from_fn(|k| word(&block[k * 8..]));
            // A block with no word in the suspects' range (zeroed stacks,
            // small integers, code pointers) costs a few vector compares.
            if !words.iter().fold(false, |any, &v| any | in_span(v)) {
                continue;
            }
            let block_at = vaddr + (n * SCAN_BLOCK) as u64;
            for (k, &v) in words.iter().enumerate() {
                if in_span(v) {
                    note(v, block_at + (k * 8) as u64);
                }
            }
        }
        let rest_at = vaddr + (bytes.len() / SCAN_BLOCK * SCAN_BLOCK) as u64;
        for (k, w) in blocks.remainder().chunks_exact(8).enumerate() {
            let v = word(w);
            if in_span(v) {
                note(v, rest_at + (k * 8) as u64);
            }
        }
    }
}

/// Bytes per block of the memory scan's range pre-check: a cache line.
const SCAN_BLOCK: usize = 64;

/// The little-endian word at the start of `bytes` (8 bytes or more).
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
}
