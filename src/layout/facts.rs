//! Facts about a CPython version that DWARF cannot give: how fields are
//! encoded and which conventions the free lists follow
//! (cpython-internals.md §1–§4, §7–§9).

use serde::{Deserialize, Serialize};

/// How a `PyGC_Head` says whether an object is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GcHeadEncoding {
    /// 2.7: `gc_refs` holds −2 when untracked, −3 when reachable.
    GcRefs,
    /// 3.6–3.7: `gc_refs` shifted left by one, bit 0 the finalized flag:
    /// −4 (or −3) untracked, −6 reachable.
    GcRefsShifted,
    /// 3.8+: untracked exactly when `_gc_next` is 0; `_gc_prev` carries 2 flag bits.
    NextPointer,
}

/// How an immortal object's refcount looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Immortality {
    /// No immortal objects (up to 3.11).
    None,
    /// 3.12+: the low 32-bit word has bit 31 set.
    Low32Bit31,
}

/// Where the tuple free lists live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TupleFreeListStorage {
    /// 2.7–3.9: statics `free_list[20]` and `numfree[20]` in tupleobject.c.
    Static,
    /// 3.10–3.13: two arrays inside the interpreter state (`tuple_free_list`, `tuple_numfree`).
    Interpreter,
    /// 3.14: an array of `_Py_freelist` {head, size} pairs inside the interpreter state.
    InterpreterPairs,
}

/// How a free-list slot index relates to a tuple's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TupleIndex {
    /// Slot = size; slot 0 holds the empty tuple (up to 3.10).
    Size,
    /// Slot = size − 1 (3.11+).
    SizeMinusOne,
}

/// Which field links a freed tuple to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FreeListLink {
    /// `ob_item[0]` (up to 3.13).
    ObItem0,
    /// The object's first word, over the refcount (3.14).
    FirstWord,
}

/// Where the GC generations live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GcListLocation {
    /// 2.7, 3.6: static `generations[3]` in gcmodule.c.
    Static,
    /// 3.7, 3.8: `_PyRuntime.gc`.
    Runtime,
    /// 3.9+: `PyInterpreterState.gc`.
    Interpreter,
}

/// How Python frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FrameModel {
    /// Up to 3.10: heap `PyFrameObject`s chained by `f_back`.
    FrameObject,
    /// 3.11+: `_PyInterpreterFrame`s on the thread's data stack.
    InterpreterFrame,
}

/// How code objects map instructions to lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineTable {
    /// `co_lnotab` (2.7, 3.6–3.9).
    Lnotab,
    /// The 3.10 `co_linetable`.
    Linetable310,
    /// The 3.11+ location table.
    Locations311,
}

/// Facts about one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// GC header encoding.
    pub gc_head: GcHeadEncoding,
    /// Raw `gc_refs` of an untracked object, where the encoding has one.
    pub untracked_gc_refs: Option<i64>,
    /// Immortal refcounts.
    pub immortality: Immortality,
    /// Tuple free-list storage.
    pub tuple_free_list: TupleFreeListStorage,
    /// Slot index convention.
    pub tuple_index: TupleIndex,
    /// Link field.
    pub free_list_link: FreeListLink,
    /// Number of free-list slots.
    pub tuple_slots: u32,
    /// Most tuples kept per slot.
    pub tuple_max_per_slot: u32,
    /// Where the GC generations are.
    pub gc_lists: GcListLocation,
    /// `_gc_next` must be masked with `!3` before following it (3.14.0–3.14.4).
    pub gc_next_masked: bool,
    /// Frames.
    pub frames: FrameModel,
    /// Line numbers.
    pub line_table: LineTable,
    /// PEP 393 strings (3.3+) rather than 2.7's str and unicode.
    pub pep393: bool,
}

impl Facts {
    /// Whether a refcount word is the immortal marker rather than a count
    /// (3.12+: bit 31 of the low 32 bits).
    pub fn is_immortal(&self, refcount: i64) -> bool {
        self.immortality == Immortality::Low32Bit31 && (refcount as u64 as u32) & 0x8000_0000 != 0
    }

    /// The facts for a CPython version; `micro` matters only for 3.14's GC.
    pub fn for_version(major: u8, minor: u8, micro: Option<u8>) -> Facts {
        let v = (major, minor);
        let py2 = major == 2;
        Facts {
            gc_head: if py2 {
                GcHeadEncoding::GcRefs
            } else if v <= (3, 7) {
                GcHeadEncoding::GcRefsShifted
            } else {
                GcHeadEncoding::NextPointer
            },
            untracked_gc_refs: if py2 {
                Some(-2)
            } else if v <= (3, 7) {
                Some(-4)
            } else {
                None
            },
            immortality: if v >= (3, 12) {
                Immortality::Low32Bit31
            } else {
                Immortality::None
            },
            tuple_free_list: if v <= (3, 9) {
                TupleFreeListStorage::Static
            } else if v <= (3, 13) {
                TupleFreeListStorage::Interpreter
            } else {
                TupleFreeListStorage::InterpreterPairs
            },
            tuple_index: if v <= (3, 10) {
                TupleIndex::Size
            } else {
                TupleIndex::SizeMinusOne
            },
            free_list_link: if v <= (3, 13) {
                FreeListLink::ObItem0
            } else {
                FreeListLink::FirstWord
            },
            tuple_slots: 20,
            tuple_max_per_slot: 2000,
            gc_lists: if v <= (3, 6) {
                GcListLocation::Static
            } else if v <= (3, 8) {
                GcListLocation::Runtime
            } else {
                GcListLocation::Interpreter
            },
            gc_next_masked: v == (3, 14) && micro.is_some_and(|m| m <= 4),
            frames: if v <= (3, 10) {
                FrameModel::FrameObject
            } else {
                FrameModel::InterpreterFrame
            },
            line_table: if v <= (3, 9) {
                LineTable::Lnotab
            } else if v == (3, 10) {
                LineTable::Linetable310
            } else {
                LineTable::Locations311
            },
            pep393: !py2,
        }
    }
}
