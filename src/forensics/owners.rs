//! The owners of references beyond tuples, lists and dicts: deque blocks,
//! set tables, the object fields of functions, cells, bound methods and
//! descriptors, suspended generators' frames, and instance attributes.
//!
//! Each must be exact: a reference counted that the object does not own,
//! or counted twice, is a false `refcount_below_references`. So a
//! container reached through an owner (a function's defaults, an instance's
//! `__dict__`) is read only when the GC walk does not reach it (untracked),
//! and only once; a generator's frame only while it is suspended (a running
//! one is on a thread's stack, counted there).

use rustc_hash::FxHashSet;

use super::read_context::{GcState, ReadContext};
use super::referrers::{ContainerKind, Slot, visit_frame};
use crate::layout::Field;
use crate::layout::tp_flags::HEAPTYPE;
use crate::memory::MemoryExt;
use crate::python::attributes::AttributeStore;

/// Slots read from one owner's table (a deque's blocks, a set's table), at most.
const MAX_SLOTS: u64 = 1 << 20;
/// Values of one instance, at most (a class's shared keys stop growing at 30).
const MAX_VALUES: u64 = 1 << 10;
/// Untracked containers read through their owners, at most.
const MAX_DESCENDED: usize = 1 << 20;

/// Which owner an object is, by its type (see [`OwnerLayout::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `set` or `frozenset`: its table's keys.
    Set,
    /// `collections.deque`: its blocks' items.
    Deque,
    /// An object whose owned references are fixed fields.
    Fields(FieldOwner),
    /// A generator, coroutine or async generator: its suspended frame's locals.
    Generator,
    /// An instance of a class: its `__dict__`, or the values standing in for one.
    Instance,
}

/// Objects whose owned references are fixed pointer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOwner {
    /// `function`.
    Function,
    /// `cell`.
    Cell,
    /// A bound method.
    Method,
    /// `classmethod` or `staticmethod`.
    Wrapper,
    /// `property`.
    Property,
}

/// One owned pointer field: where, and its Python name.
type OwnedField = (u64, &'static str);

/// The offsets each owner needs, looked up once.
pub struct OwnerLayout {
    set: Option<(u64, u64, u64, u64)>,
    deque: Option<DequeLayout>,
    function: Vec<OwnedField>,
    /// `__defaults__` and `__kwdefaults__` (3.x).
    function_defaults: Vec<u64>,
    cell: Vec<OwnedField>,
    method: Vec<OwnedField>,
    /// `classmethod` and `staticmethod`: the same two fields at the same offsets.
    wrapper: Vec<OwnedField>,
    property: Vec<OwnedField>,
    generator: Option<GeneratorLayout>,
    /// Untracked containers already read (a defaults tuple shared by
    /// several functions is counted once).
    descended: FxHashSet<u64>,
    /// `dk_nentries` of the shared keys met last: a class's instances share them.
    last_keys: Option<(u64, u64)>,
    /// Generator frames read, so that the thread stacks skip them.
    pub(super) generator_frames: FxHashSet<u64>,
}

#[derive(Clone, Copy)]
struct DequeLayout {
    leftblock: u64,
    leftindex: u64,
    len: Option<u64>,
    data: u64,
    block_len: u64,
    rightlink: u64,
}

#[derive(Clone, Copy)]
enum GeneratorLayout {
    /// Up to 3.10: `gi_frame`, a frame object (NULL once finished).
    FrameObject(u64),
    /// 3.11+: the frame inside the generator, and its state byte.
    Embedded { frame: u64, state: u64 },
}

fn fields(named: &[(Field, &'static str)]) -> Vec<OwnedField> {
    named
        .iter()
        .filter_map(|&(f, name)| Some((f.get()?, name)))
        .collect()
}

impl OwnerLayout {
    /// The offsets of `heap`'s layout.
    pub fn new(heap: &ReadContext) -> OwnerLayout {
        let o = heap.layout.offsets();
        let f = &o.function;
        let deque = (|| {
            let data = o.deque_block.data;
            Some(DequeLayout {
                leftblock: o.deque.leftblock.get()?,
                leftindex: o.deque.leftindex.get()?,
                len: o.deque.len.get(),
                data: data.get()?,
                block_len: data.size()? / 8,
                rightlink: o.deque_block.rightlink.get()?,
            })
        })()
        .filter(|d| d.block_len > 0);
        let generator = match (
            o.generator.gi_iframe.get(),
            o.generator.gi_frame_state.get(),
            o.generator.gi_frame.get(),
        ) {
            (Some(frame), Some(state), _) => Some(GeneratorLayout::Embedded { frame, state }),
            (None, _, Some(frame)) => Some(GeneratorLayout::FrameObject(frame)),
            _ => None,
        };
        OwnerLayout {
            set: (|| {
                Some((
                    o.set.mask.get()?,
                    o.set.table.get()?,
                    o.set_entry.key.get()?,
                    o.set_entry.hash.get()?,
                ))
            })(),
            deque,
            function: fields(&[
                (f.code, "__code__"),
                (f.globals, "__globals__"),
                (f.builtins, "__builtins__"),
                (f.name, "__name__"),
                (f.qualname, "__qualname__"),
                (f.defaults, "__defaults__"),
                (f.kwdefaults, "__kwdefaults__"),
                (f.closure, "__closure__"),
                (f.doc, "__doc__"),
                (f.dict, "__dict__"),
                (f.module, "__module__"),
                (f.annotations, "__annotations__"),
                (f.annotate, "__annotate__"),
                (f.typeparams, "__type_params__"),
            ]),
            function_defaults: [f.defaults.get(), f.kwdefaults.get()]
                .into_iter()
                .flatten()
                .collect(),
            cell: fields(&[(o.cell.ob_ref, "cell_contents")]),
            method: fields(&[
                (o.method.im_func, "__func__"),
                (o.method.im_self, "__self__"),
                (o.method.im_class, "im_class"),
            ]),
            wrapper: {
                let classmethod = fields(&[
                    (o.classmethod.callable, "__func__"),
                    (o.classmethod.dict, "__dict__"),
                ]);
                if classmethod.is_empty() {
                    fields(&[
                        (o.staticmethod.callable, "__func__"),
                        (o.staticmethod.dict, "__dict__"),
                    ])
                } else {
                    classmethod
                }
            },
            property: fields(&[
                (o.property.get, "fget"),
                (o.property.set, "fset"),
                (o.property.del, "fdel"),
                (o.property.doc, "__doc__"),
                (o.property.name, "__name__"),
            ]),
            generator,
            descended: FxHashSet::default(),
            last_keys: None,
            generator_frames: FxHashSet::default(),
        }
    }

    /// Which owner objects of type `ty` are, if any. Built-in owners are
    /// told by the name of a static type (a heap type of that name is not
    /// one); instances by their type's attribute storage.
    pub fn classify(heap: &ReadContext, ty: u64) -> Option<Owner> {
        let flags = heap.type_flags(ty)?;
        let o = heap.layout.offsets();
        if flags & HEAPTYPE != 0 {
            // 3.12+: `_collections` makes deque a heap type; a class can
            // take its name, not its size.
            let deque_sized = o.deque.leftblock.is_present()
                && o.deque.sizeof.get().is_some_and(|size| {
                    o.type_object.tp_basicsize.get().is_some_and(|at| {
                        heap.memory.read_u64(ty.wrapping_add(at)).ok() == Some(size)
                    })
                });
            if deque_sized
                && heap.objects.type_name_of_type(ty).ok().as_deref() == Some("collections.deque")
            {
                return Some(Owner::Deque);
            }
            return heap
                .objects
                .keeps_attributes(ty, flags)
                .then_some(Owner::Instance);
        }
        let py2 = heap.facts.rules.bytes_type_is_str;
        let owner = match heap.objects.static_type_name(ty)?.as_str() {
            "set" | "frozenset" => Owner::Set,
            "collections.deque" => Owner::Deque,
            "function" => Owner::Fields(FieldOwner::Function),
            "cell" => Owner::Fields(FieldOwner::Cell),
            // 3.x's `instancemethod` is another struct.
            "method" if !py2 => Owner::Fields(FieldOwner::Method),
            "instancemethod" if py2 => Owner::Fields(FieldOwner::Method),
            "classmethod" | "staticmethod" => Owner::Fields(FieldOwner::Wrapper),
            "property" => Owner::Fields(FieldOwner::Property),
            "generator" | "coroutine" | "async_generator" => Owner::Generator,
            _ => return None,
        };
        let known = match owner {
            Owner::Set => o.set.table.is_present(),
            Owner::Deque => o.deque.leftblock.is_present(),
            Owner::Generator => {
                o.generator.gi_frame.is_present() || o.generator.gi_iframe.is_present()
            }
            _ => true,
        };
        known.then_some(owner)
    }

    /// Calls `visit` with every owned reference `obj`, an `owner`, holds.
    pub fn visit<F: FnMut(Slot) + ?Sized>(
        &mut self,
        heap: &ReadContext,
        obj: u64,
        owner: Owner,
        visit: &mut F,
    ) {
        match owner {
            Owner::Set => self.set(heap, obj, visit),
            Owner::Deque => self.deque(heap, obj, visit),
            Owner::Fields(kind) => self.fields(heap, obj, kind, visit),
            Owner::Generator => self.generator(heap, obj, visit),
            Owner::Instance => self.instance(heap, obj, visit),
        }
    }

    fn set<F: FnMut(Slot) + ?Sized>(&self, heap: &ReadContext, obj: u64, visit: &mut F) {
        let Some((mask_at, table_at, key_at, hash_at)) = self.set else {
            return;
        };
        let (Ok(mask), Ok(table)) = (
            heap.memory.read_u64(obj.wrapping_add(mask_at)),
            heap.memory.read_ptr(obj.wrapping_add(table_at)),
        ) else {
            return;
        };
        let n = mask.saturating_add(1).min(MAX_SLOTS);
        let Ok(bytes) = heap.memory.read_bytes(table, n * 16, MAX_SLOTS * 16) else {
            return;
        };
        for (i, entry) in bytes.chunks_exact(16).enumerate() {
            let word = |at: u64| {
                let at = at as usize;
                entry
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes)
            };
            let (key, hash) = (word(key_at), word(hash_at) as i64);
            // A removed key leaves the shared dummy, hash -1 (3.x), which
            // is not a reference; 2.7's dummy is, and is counted.
            if key == 0 || hash == -1 {
                continue;
            }
            visit(Slot {
                at: table.wrapping_add(i as u64 * 16 + key_at),
                target: key,
                container: obj,
                index: i as u64,
                kind: ContainerKind::SetEntry,
            });
        }
    }

    fn deque<F: FnMut(Slot) + ?Sized>(&self, heap: &ReadContext, obj: u64, visit: &mut F) {
        let Some(d) = self.deque else { return };
        let len = match d.len {
            Some(at) => heap.memory.read_i64(obj.wrapping_add(at)),
            None => heap.objects.var_size(obj),
        };
        let (Ok(len), Ok(mut block), Ok(index)) = (
            len,
            heap.memory.read_ptr(obj.wrapping_add(d.leftblock)),
            heap.memory.read_i64(obj.wrapping_add(d.leftindex)),
        ) else {
            return;
        };
        let Ok(mut index) = u64::try_from(index) else {
            return;
        };
        // The length bounds the walk: no block chain can make it longer.
        let mut left = u64::try_from(len).unwrap_or(0).min(MAX_SLOTS);
        let mut item = 0u64;
        while left > 0 && index < d.block_len && block != 0 {
            let take = left.min(d.block_len - index);
            let at = block.wrapping_add(d.data).wrapping_add(index * 8);
            let Ok(words) = heap.memory.read_bytes(at, take * 8, take * 8) else {
                return;
            };
            for (i, word) in words.chunks_exact(8).enumerate() {
                let target = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                if target != 0 {
                    visit(Slot {
                        at: at.wrapping_add(i as u64 * 8),
                        target,
                        container: obj,
                        index: item + i as u64,
                        kind: ContainerKind::DequeItem,
                    });
                }
            }
            item += take;
            left -= take;
            index = 0;
            if left > 0 {
                let Ok(next) = heap.memory.read_ptr(block.wrapping_add(d.rightlink)) else {
                    return;
                };
                block = next;
            }
        }
    }

    fn fields<F: FnMut(Slot) + ?Sized>(
        &mut self,
        heap: &ReadContext,
        obj: u64,
        kind: FieldOwner,
        visit: &mut F,
    ) {
        let list = match kind {
            FieldOwner::Function => &self.function,
            FieldOwner::Cell => &self.cell,
            FieldOwner::Method => &self.method,
            FieldOwner::Wrapper => &self.wrapper,
            FieldOwner::Property => &self.property,
        };
        let Some(end) = list.iter().map(|f| f.0 + 8).max() else {
            return;
        };
        let Ok(bytes) = heap.memory.read_bytes(obj, end, end) else {
            return;
        };
        let mut defaults = Vec::new();
        for (i, &(at, name)) in list.iter().enumerate() {
            let target = bytes
                .get(at as usize..at as usize + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            if target == 0 {
                continue;
            }
            visit(Slot {
                at: obj.wrapping_add(at),
                target,
                container: obj,
                index: i as u64,
                kind: ContainerKind::Field(kind, name),
            });
            if kind == FieldOwner::Function && self.function_defaults.contains(&at) {
                defaults.push(target);
            }
        }
        // Defaults of atomic values are untracked: read them here.
        for container in defaults {
            self.untracked_container(heap, obj, container, ContainerKind::FunctionDefault, visit);
        }
    }

    /// The items or values of `container`, owned by it, counted once, when
    /// the GC walk does not count them (it is untracked).
    fn untracked_container<F: FnMut(Slot) + ?Sized>(
        &mut self,
        heap: &ReadContext,
        owner: u64,
        container: u64,
        kind: ContainerKind,
        visit: &mut F,
    ) {
        if self.descended.len() >= MAX_DESCENDED
            || !matches!(heap.gc_state(container), Some((GcState::Untracked, _)))
            || !self.descended.insert(container)
        {
            return;
        }
        let mut index = 0;
        let mut emit = |at: u64, target: u64| {
            if target != 0 {
                visit(Slot {
                    at,
                    target,
                    container: owner,
                    index,
                    kind,
                });
            }
            index += 1;
        };
        match heap.objects.builtin_type_of(container) {
            Ok(Some(crate::python::types::BuiltinType::Tuple)) => {
                let Some(items) = heap.layout.offsets().tuple.ob_item.get() else {
                    return;
                };
                let n = heap
                    .objects
                    .var_size(container)
                    .unwrap_or(0)
                    .clamp(0, 1 << 16) as u64;
                let at = container.wrapping_add(items);
                if let Ok(words) = heap.memory.read_bytes(at, n * 8, n * 8) {
                    for (i, w) in words.chunks_exact(8).enumerate() {
                        emit(
                            at.wrapping_add(i as u64 * 8),
                            u64::from_le_bytes(w.try_into().unwrap_or([0; 8])),
                        );
                    }
                }
            }
            Ok(Some(crate::python::types::BuiltinType::Dict)) => {
                // A dict that fails part-way keeps the entries read before.
                let _ = heap
                    .objects
                    .for_each_dict_entry(container, MAX_SLOTS as usize, &mut |e| {
                        emit(e.value_at, e.value)
                    });
            }
            _ => {}
        }
    }

    fn generator<F: FnMut(Slot) + ?Sized>(&mut self, heap: &ReadContext, obj: u64, visit: &mut F) {
        let frame = match self.generator {
            Some(GeneratorLayout::FrameObject(at)) => match heap.memory.read_ptr(obj + at) {
                Ok(frame) if frame != 0 => frame,
                _ => return,
            },
            Some(GeneratorLayout::Embedded { frame, state }) => {
                let Ok(state) = heap.memory.read_u8(obj.wrapping_add(state)) else {
                    return;
                };
                // Running, finished or cleared: the locals are not the
                // generator's (a running frame is counted on its thread).
                if !heap.facts.rules.generator_frame_suspended(state as i8) {
                    return;
                }
                obj.wrapping_add(frame)
            }
            None => return,
        };
        if self.generator_frames.len() >= MAX_DESCENDED || !self.generator_frames.insert(frame) {
            return;
        }
        visit_frame(heap, frame, obj, ContainerKind::GeneratorLocal, visit);
    }

    /// How many entries the shared keys at `keys` have, cached for the last one.
    fn shared_entries(&mut self, heap: &ReadContext, keys: u64) -> Option<u64> {
        if let Some((last, n)) = self.last_keys
            && last == keys
        {
            return Some(n);
        }
        let at = heap.layout.offsets().dict_keys.dk_nentries.get()?;
        let n = heap.memory.read_i64(keys.wrapping_add(at)).ok()?;
        let n = u64::try_from(n).ok()?.min(MAX_VALUES);
        self.last_keys = Some((keys, n));
        Some(n)
    }

    fn instance<F: FnMut(Slot) + ?Sized>(&mut self, heap: &ReadContext, obj: u64, visit: &mut F) {
        match heap.objects.attribute_store(obj) {
            Ok(AttributeStore::Dict(dict)) => {
                visit(Slot {
                    at: heap.objects.dict_slot(obj).unwrap_or(0),
                    target: dict,
                    container: obj,
                    index: 0,
                    kind: ContainerKind::InstanceDict,
                });
                self.untracked_container(heap, obj, dict, ContainerKind::InstanceAttribute, visit);
            }
            // Shared keys only grow: each of their entries has a value
            // slot, owned when not NULL; the keys themselves are not read.
            Ok(AttributeStore::Values { keys, values }) => {
                let Some(n) = self.shared_entries(heap, keys) else {
                    return;
                };
                let Ok(words) = heap.memory.read_bytes(values, n * 8, MAX_VALUES * 8) else {
                    return;
                };
                for (i, word) in words.chunks_exact(8).enumerate() {
                    let target = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
                    if target != 0 {
                        visit(Slot {
                            at: values.wrapping_add(i as u64 * 8),
                            target,
                            container: obj,
                            index: i as u64,
                            kind: ContainerKind::InstanceAttribute,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}
