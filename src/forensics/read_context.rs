//! The read context of the checks: memory, layout and the few runtime
//! addresses they compare against, with fast readers of object headers, GC
//! headers and types.

use std::cell::{Cell, RefCell};

use crate::layout::Layout;
use crate::layout::facts::{Facts, GcHeadEncoding};
use crate::memory::{MemoryExt, ProcessMemory};
use crate::modules::Module;
use crate::process::Process;
use crate::python::PythonState;
use crate::python::objects::Objects;
use crate::python::types::TypeAnchors;

/// `Py_TPFLAGS_HAVE_GC`.
pub const TPFLAGS_HAVE_GC: u64 = crate::layout::tp_flags::HAVE_GC;

/// What the checks read through: memory, layout and the addresses they
/// compare against.
pub struct ReadContext<'p> {
    /// Process memory.
    pub memory: &'p ProcessMemory,
    /// The layout.
    pub layout: &'p Layout,
    /// Facts.
    pub facts: &'p Facts,
    /// Object reader.
    pub objects: Objects<'p, ProcessMemory>,
    // `&PyTuple_Type`, looked up on first use: a symbol lookup is the
    // costliest part of a heap that reads one object.
    tuple_type: std::cell::OnceCell<Option<u64>>,
    /// `sizeof(PyGC_Head)`.
    pub gc_head_size: u64,
    /// The interpreter module.
    pub module: Option<&'p Module>,
    /// Interpreter states.
    pub interpreters: Vec<u64>,
    /// `_PyRuntime`, 3.7+.
    pub runtime: Option<u64>,
    /// pymalloc's arenas, once walked: which blocks are free.
    pub pymalloc: Option<&'p super::pymalloc::Pymalloc>,
    type_flags: RefCell<rustc_hash::FxHashMap<u64, Option<u64>>>,
    last_type_flags: Cell<(u64, Option<u64>)>,
    pub(crate) gc_next_at: Option<u64>,
    gc_prev_at: Option<u64>,
    gc_refs_at: Option<u64>,
    tp_flags_at: Option<u64>,
    // (ob_refcnt, ob_type) offsets.
    object_head: Option<(u64, u64)>,
    // The segment of the last node read: its address and dumped bytes.
    cursor: Cell<(u64, &'p [u8])>,
}

/// What the walks read of each tracked object; `None` where unreadable.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// The next GC header (flag bits masked).
    pub next: Option<u64>,
    /// The previous GC header (flag bits masked).
    pub prev: Option<u64>,
    /// The refcount word, and whether it marks an immortal object.
    pub refcount: Option<(i64, bool)>,
    /// `ob_type`.
    pub ty: Option<u64>,
    /// The raw refcount word, when read in one piece with the links (what
    /// [`ReadContext::object_header`] would read).
    pub refcount_word: Option<u64>,
}

/// The GC state of an object's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GcState {
    /// Linked into a generation list (or being collected).
    Tracked,
    /// Not linked.
    Untracked,
}

impl<'p> ReadContext<'p> {
    /// The checks' view of `process`, read with the layout in `state`.
    pub fn new(process: &'p Process, state: &'p PythonState) -> ReadContext<'p> {
        ReadContext::with_memory(process, state, process.memory())
    }

    /// The checks' view of `process`, read through `memory` (a view of its
    /// memory with its own cursor, for another thread).
    pub fn with_memory(
        process: &'p Process,
        state: &'p PythonState,
        memory: &'p ProcessMemory,
    ) -> ReadContext<'p> {
        ReadContext::over(memory, &state.layout.layout)
            .with_interpreter_module(process.python_module().map(|m| &**m))
            .with_runtime(state.runtime.interpreters.clone(), state.runtime.runtime)
            .with_type_anchors(&state.type_anchors)
    }

    /// A context over `memory` read with `layout` alone: no interpreter
    /// module (so no symbol lookups), no interpreter states, no type
    /// anchors until the `with_` methods add them. What a unit test needs.
    pub fn over(memory: &'p ProcessMemory, layout: &'p Layout) -> ReadContext<'p> {
        let offsets = layout.offsets();
        ReadContext {
            memory,
            layout,
            facts: &layout.facts,
            objects: Objects::new(memory, layout, 4),
            tuple_type: std::cell::OnceCell::new(),
            gc_head_size: offsets.gc_head.sizeof.get().unwrap_or(16),
            module: None,
            interpreters: Vec::new(),
            runtime: None,
            pymalloc: None,
            type_flags: RefCell::default(),
            last_type_flags: Cell::new((0, None)),
            gc_next_at: offsets.gc_head.gc_next.get(),
            gc_prev_at: offsets.gc_head.gc_prev.get(),
            gc_refs_at: offsets.gc_head.gc_refs.get(),
            tp_flags_at: offsets.type_object.tp_flags.get(),
            object_head: offsets
                .object
                .ob_refcnt
                .get()
                .zip(offsets.object.ob_type.get()),
            cursor: Cell::new((0, &[])),
        }
    }

    /// With pymalloc's map, so that a reference into a free block is judged
    /// a use after free.
    pub fn with_pymalloc(mut self, map: &'p super::pymalloc::Pymalloc) -> Self {
        self.pymalloc = Some(map);
        self
    }

    /// With the module that defines the interpreter (where `&PyTuple_Type`
    /// is looked up).
    pub fn with_interpreter_module(mut self, module: Option<&'p Module>) -> Self {
        self.module = module;
        self
    }

    /// With the interpreter states and `_PyRuntime` (3.7+).
    pub fn with_runtime(mut self, interpreters: Vec<u64>, runtime: Option<u64>) -> Self {
        self.interpreters = interpreters;
        self.runtime = runtime;
        self
    }

    /// With the addresses of the built-in types the runtime walk found.
    pub fn with_type_anchors(mut self, anchors: &'p TypeAnchors) -> Self {
        self.objects = self.objects.with_anchors(anchors);
        self
    }

    /// With `&PyTuple_Type` known (when no module can say it).
    pub fn with_tuple_type(self, tuple_type: u64) -> Self {
        let _ = self.tuple_type.set(Some(tuple_type));
        self
    }

    /// `&PyTuple_Type`, when found.
    pub fn tuple_type(&self) -> Option<u64> {
        *self.tuple_type.get_or_init(|| {
            self.module
                .and_then(|m| m.symbol_address("PyTuple_Type", None))
        })
    }

    fn mask(&self, word: u64) -> u64 {
        // 3.8+ keep flags in the low two bits of both GC links.
        if self.facts.gc_head == GcHeadEncoding::NextPointer {
            word & !3
        } else {
            word
        }
    }

    /// The next GC header after `node`.
    pub fn gc_next(&self, node: u64) -> Option<u64> {
        let off = self.gc_next_at?;
        self.memory
            .read_ptr(node.wrapping_add(off))
            .ok()
            .map(|w| self.mask(w))
    }

    /// The GC links, refcount and type of the object behind GC header
    /// `node`, in one look at the core when it holds them in one piece.
    pub fn node(&self, node: u64) -> Node {
        let obj = node.wrapping_add(self.gc_head_size);
        if let Some(fast) = self.node_in_one_piece(node) {
            return fast;
        }
        Node {
            next: self.gc_next(node),
            prev: self.gc_prev(node),
            refcount: self.refcount(obj),
            ty: self.objects.type_of(obj).ok(),
            refcount_word: None,
        }
    }

    fn node_in_one_piece(&self, node: u64) -> Option<Node> {
        let (next_at, prev_at) = (self.gc_next_at?, self.gc_prev_at?);
        let (rc_at, ty_at) = self.object_head?;
        let rc_at = self.gc_head_size + rc_at;
        let ty_at = self.gc_head_size + ty_at;
        let len = next_at.max(prev_at).max(rc_at).max(ty_at) + 8;
        let bytes = self.bytes_at(node, len as usize)?;
        let word = |at: u64| {
            let at = at as usize;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        let rc = word(rc_at) as i64;
        Some(Node {
            next: Some(self.mask(word(next_at))),
            prev: Some(self.mask(word(prev_at))),
            refcount: Some((rc, self.facts.is_immortal(rc))),
            ty: Some(word(ty_at)),
            refcount_word: Some(word(rc_at)),
        })
    }

    /// An object's refcount word and `ob_type`, read in one piece.
    pub fn object_header(&self, obj: u64) -> Option<(u64, u64)> {
        let (rc_at, ty_at) = self.object_head?;
        let bytes = self.bytes_at(obj, (rc_at.max(ty_at) + 8) as usize)?;
        let word = |at: u64| {
            let at = at as usize;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        Some((word(rc_at), word(ty_at)))
    }

    /// Start loading the cache line at `addr`, for a pass that will read it
    /// a few steps later ([`HeaderLookahead`]).
    #[inline]
    pub fn prefetch(&self, addr: u64) {
        if let Some(bytes) = self.bytes_at(addr, 1) {
            crate::mapped_file::prefetch(bytes);
        }
    }

    /// The 8-byte word at `addr`: through this heap's cursor, or from the
    /// process's memory (files included) when the core lacks it.
    #[inline]
    pub fn word(&self, addr: u64) -> Option<u64> {
        match self.bytes_at(addr, 8) {
            Some(bytes) => Some(u64::from_le_bytes(bytes.try_into().ok()?)),
            None => self.memory.read_u64(addr).ok(),
        }
    }

    /// The core's `len` bytes at `addr` without a copy, through this heap's
    /// cursor; `None` when they are not in one dumped segment.
    #[inline]
    pub fn slice(&self, addr: u64, len: usize) -> Option<&'p [u8]> {
        self.bytes_at(addr, len)
    }

    /// The alignment every heap object has: 16 where pymalloc aligns blocks
    /// to 16 (3.8+) and the GC header is 16 bytes, else 8. Dense tables need
    /// a slot per granule only.
    pub fn object_granule(&self) -> u64 {
        if self.facts.rules.allocator_alignment == 16 && self.gc_head_size.is_multiple_of(16) {
            16
        } else {
            8
        }
    }

    /// The core's bytes at `addr`, through this heap's own segment cursor
    /// (one per thread: no shared state on the walk's hottest path).
    #[inline]
    fn bytes_at(&self, addr: u64, len: usize) -> Option<&'p [u8]> {
        let (start, bytes) = self.cursor.get();
        let at = |start: u64, bytes: &'p [u8]| {
            let offset = usize::try_from(addr.checked_sub(start)?).ok()?;
            bytes.get(offset..offset.checked_add(len)?)
        };
        if let Some(found) = at(start, bytes) {
            return Some(found);
        }
        let (start, bytes) = self.memory.segment_bytes(addr)?;
        self.cursor.set((start, bytes));
        at(start, bytes)
    }

    /// The previous GC header before `node`.
    pub fn gc_prev(&self, node: u64) -> Option<u64> {
        let off = self.gc_prev_at?;
        self.memory
            .read_ptr(node.wrapping_add(off))
            .ok()
            .map(|w| self.mask(w))
    }

    /// What an object's GC header says.
    pub fn gc_state(&self, obj: u64) -> Option<(GcState, i64)> {
        let node = obj.checked_sub(self.gc_head_size)?;
        match self.facts.gc_head {
            GcHeadEncoding::GcRefs | GcHeadEncoding::GcRefsShifted => {
                let refs = self
                    .memory
                    .read_i64(node.wrapping_add(self.gc_refs_at?))
                    .ok()?;
                let untracked = self.facts.untracked_gc_refs.unwrap_or(-2);
                // 3.6/3.7 keep a "finalized" flag in bit 0.
                let value = if self.facts.gc_head == GcHeadEncoding::GcRefsShifted {
                    refs & !1
                } else {
                    refs
                };
                Some((
                    if value == untracked {
                        GcState::Untracked
                    } else {
                        GcState::Tracked
                    },
                    refs,
                ))
            }
            GcHeadEncoding::NextPointer => {
                let next = self
                    .memory
                    .read_u64(node.wrapping_add(self.gc_next_at?))
                    .ok()?;
                Some((
                    if next == 0 {
                        GcState::Untracked
                    } else {
                        GcState::Tracked
                    },
                    next as i64,
                ))
            }
        }
    }

    /// The refcount word, and whether it marks an immortal object.
    pub fn refcount(&self, obj: u64) -> Option<(i64, bool)> {
        let rc = self.objects.refcount(obj).ok()?;
        Some((rc, self.facts.is_immortal(rc)))
    }

    /// `tp_flags` of a type, cached.
    pub fn type_flags(&self, ty: u64) -> Option<u64> {
        // Neighbours in a GC list are often of one type.
        let (last_ty, last_flags) = self.last_type_flags.get();
        if last_ty == ty && ty != 0 {
            return last_flags;
        }
        let cached = self.type_flags.borrow().get(&ty).copied();
        let flags = cached.unwrap_or_else(|| {
            let flags = self
                .tp_flags_at
                .and_then(|o| self.memory.read_u64(ty.wrapping_add(o)).ok());
            self.type_flags.borrow_mut().insert(ty, flags);
            flags
        });
        self.last_type_flags.set((ty, flags));
        flags
    }

    /// Where an object's body ends: basic size plus items.
    pub fn object_extent(&self, obj: u64, ty: u64) -> Option<u64> {
        let basic = self
            .memory
            .read_i64(ty.wrapping_add(self.layout.offsets().type_object.tp_basicsize.get()?))
            .ok()?;
        let item = self
            .memory
            .read_i64(ty.wrapping_add(self.layout.offsets().type_object.tp_itemsize.get()?))
            .ok()?;
        let mut size = u64::try_from(basic).ok()?;
        if item != 0 {
            let n = self.objects.var_size(obj).ok()?.unsigned_abs().min(1 << 24);
            size = size.saturating_add(n.saturating_mul(item.unsigned_abs()));
        }
        (size <= 1 << 30).then_some(size)
    }
}

/// Objects to read in address order, handed out a fixed distance behind
/// the one last pushed, whose header was asked for meanwhile: a pass over a
/// million scattered headers then overlaps its cache misses.
pub struct HeaderLookahead {
    ring: [u64; HeaderLookahead::DISTANCE],
    pushed: usize,
}

impl Default for HeaderLookahead {
    fn default() -> HeaderLookahead {
        HeaderLookahead {
            ring: [0; HeaderLookahead::DISTANCE],
            pushed: 0,
        }
    }
}

impl HeaderLookahead {
    const DISTANCE: usize = 16;

    /// Queue `obj` (its header is prefetched); return the object queued
    /// `DISTANCE` pushes ago, if any.
    #[inline]
    pub fn push(&mut self, heap: &ReadContext, obj: u64) -> Option<u64> {
        heap.prefetch(obj);
        let at = self.pushed % Self::DISTANCE;
        let behind = std::mem::replace(&mut self.ring[at], obj);
        self.pushed += 1;
        (self.pushed > Self::DISTANCE).then_some(behind)
    }

    /// The objects still queued, oldest first.
    pub fn drain(self) -> impl Iterator<Item = u64> {
        let queued = self.pushed.min(Self::DISTANCE);
        let first = self.pushed - queued;
        (first..self.pushed).map(move |i| self.ring[i % Self::DISTANCE])
    }
}
