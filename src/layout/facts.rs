//! Facts about a CPython version that DWARF cannot give: how fields are
//! encoded and which conventions the free lists follow, and the
//! [`VersionRules`] of the
//! object model, the one place that decides what each version does.

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
    /// The object's first word, over the refcount (3.14; 2.7's unicode).
    FirstWord,
    /// `ob_type` (floats, up to 3.13).
    ObType,
}

/// Where the free lists other than the tuples' live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FreeListHome {
    /// 2.7–3.9: statics of each type's C file.
    #[default]
    Statics,
    /// 3.10–3.13: fields of the interpreter state (`PyInterpreterState`'s
    /// `float_free_list` … of the layout).
    Interpreter,
    /// 3.14+: every member of `_Py_freelists` (the layout's `Freelists`,
    /// read whole) is a `_Py_freelist` {head, size} or an array of them,
    /// chained through each member's first word.
    Unified,
}

/// How a free list keeps its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeListShape {
    /// A chain from a head through one word of each member.
    Chain(FreeListLink),
    /// An array of pointers, the first `counter` of them in use; the rest
    /// are stale.
    Array,
    /// A chain through the pointer field `field`, `offset` bytes into each
    /// member (a frame's `f_back`, a bound method's `im_self`).
    ChainThrough {
        /// The field's C name.
        field: &'static str,
        /// Its offset in the member.
        offset: u64,
    },
    /// One pointer: the one member kept, or null (3.x's slice cache).
    Single,
}

/// What a free list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeListMembers {
    /// Objects of this exact type (by `tp_name`), `None` when any;
    /// `gc` when the type has a GC header, which must say untracked.
    Objects {
        /// The type's `tp_name`, when the list keeps one type.
        type_name: Option<&'static str>,
        /// The type has a GC header.
        gc: bool,
    },
    /// Blocks that are not objects (dict keys, stack chunks).
    NotObjects,
}

/// Which list of the interpreter state (3.10–3.13) or which statics
/// (2.7–3.9) a free list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeListKind {
    /// Floats.
    Float,
    /// Lists.
    List,
    /// Dicts.
    Dict,
    /// Dict keys objects (3.6+).
    DictKeys,
    /// 2.7's unicode objects.
    Unicode,
    /// The values an async generator yields, wrapped (3.6+).
    AsyncGenValue,
    /// Async generators' `asend` awaitables (3.6+).
    AsyncGenAsend,
    /// Frame objects (up to 3.10).
    Frame,
    /// Bound methods (up to 3.8).
    Method,
    /// Built-in functions and methods (up to 3.8).
    CFunction,
    /// `contextvars.Context` objects (3.7+).
    Context,
    /// 2.7's sets and frozensets.
    Set,
    /// The one slice object kept (3.6+).
    Slice,
    /// 2.7's ints, kept in blocks.
    Int,
}

/// One free list besides the tuples', as the
/// C sources of each version keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeListFact {
    /// The list, in findings: `float`, `dict`, `dictkeys`.
    pub name: &'static str,
    /// Which fields or statics hold it.
    pub kind: FreeListKind,
    /// Chain or array.
    pub shape: FreeListShape,
    /// What it keeps.
    pub members: FreeListMembers,
    /// The C file whose statics hold it (2.7–3.9): `(unit, head, counter)`;
    /// an empty counter when the list keeps none.
    pub statics: (&'static str, &'static str, &'static str),
    /// Most members kept (the array's length).
    pub max: u32,
    /// Members were never objects before their first use (2.7 allocates
    /// floats in blocks): the refcount of a member says nothing.
    pub refcount_meaningful: bool,
}

const fn objects(type_name: &'static str, gc: bool) -> FreeListMembers {
    FreeListMembers::Objects {
        type_name: Some(type_name),
        gc,
    }
}

/// 3.x up to 3.13: floats chained through `ob_type` (100 kept), lists and
/// dicts in arrays of 80, dict keys, async generators' wrapped values and
/// `asend`s in arrays of 80 from 3.6.
const FREE_LISTS_3: &[FreeListFact] = &[
    FreeListFact {
        name: "float",
        kind: FreeListKind::Float,
        shape: FreeListShape::Chain(FreeListLink::ObType),
        members: objects("float", false),
        statics: ("floatobject.c", "free_list", "numfree"),
        max: 100,
        refcount_meaningful: true,
    },
    FreeListFact {
        name: "list",
        kind: FreeListKind::List,
        shape: FreeListShape::Array,
        members: objects("list", true),
        statics: ("listobject.c", "free_list", "numfree"),
        max: 80,
        refcount_meaningful: true,
    },
    FreeListFact {
        name: "dict",
        kind: FreeListKind::Dict,
        shape: FreeListShape::Array,
        members: objects("dict", true),
        statics: ("dictobject.c", "free_list", "numfree"),
        max: 80,
        refcount_meaningful: true,
    },
    FreeListFact {
        name: "dictkeys",
        kind: FreeListKind::DictKeys,
        shape: FreeListShape::Array,
        members: FreeListMembers::NotObjects,
        statics: ("dictobject.c", "keys_free_list", "numfreekeys"),
        max: 80,
        refcount_meaningful: false,
    },
    FreeListFact {
        name: "async_gen_value",
        kind: FreeListKind::AsyncGenValue,
        shape: FreeListShape::Array,
        members: objects("async_generator_wrapped_value", false),
        statics: ("genobject.c", "ag_value_freelist", "ag_value_freelist_free"),
        max: 80,
        refcount_meaningful: true,
    },
    FreeListFact {
        name: "async_gen_asend",
        kind: FreeListKind::AsyncGenAsend,
        shape: FreeListShape::Array,
        members: objects("async_generator_asend", false),
        statics: ("genobject.c", "ag_asend_freelist", "ag_asend_freelist_free"),
        max: 80,
        refcount_meaningful: true,
    },
];

/// 2.7: lists and dicts as in 3.x; unicode chained through the first word
/// (1024 kept). Its int and float lists are in `OTHER_FREE_LISTS`.
const FREE_LISTS_2_7: &[FreeListFact] = &[
    FREE_LISTS_3[1],
    FREE_LISTS_3[2],
    FreeListFact {
        name: "unicode",
        kind: FreeListKind::Unicode,
        shape: FreeListShape::Chain(FreeListLink::FirstWord),
        members: objects("unicode", false),
        statics: ("unicodeobject.c", "free_list", "numfree"),
        max: 1024,
        refcount_meaningful: false,
    },
];

/// A pointer field of an object, after `PyObject_HEAD` (16 bytes) and
/// `n` more words.
const fn field_after_head(field: &'static str, words: u64) -> FreeListShape {
    FreeListShape::ChainThrough {
        field,
        offset: 16 + 8 * words,
    }
}

/// The free lists of objects besides numbers and containers, with the
/// versions (major, minor) that keep them (statics up to 3.9, fields of
/// the interpreter state in 3.10–3.13): frames chained through `f_back`
/// (200 kept, until 3.10), bound methods through `im_self` and built-in
/// functions through `m_self` (256 each, until 3.8), contexts through
/// `ctx_weakreflist` (255, 3.7–3.13), 2.7's sets and frozensets in an
/// array of 80, and the one slice object 3.6–3.13 keep.
/// Bound methods, chained through `im_self` (after `im_func`), 256 kept:
/// 2.7 names their type `instancemethod`.
const fn method_fact(type_name: &'static str) -> FreeListFact {
    FreeListFact {
        name: "method",
        kind: FreeListKind::Method,
        shape: field_after_head("im_self", 1),
        members: objects(type_name, true),
        statics: ("classobject.c", "free_list", "numfree"),
        max: 256,
        refcount_meaningful: true,
    }
}

/// Contexts, chained through `ctx_weakreflist` (after `ctx_prev` and
/// `ctx_vars`), 255 kept: 3.10 renamed their type `_contextvars.Context`.
const fn context_fact(type_name: &'static str) -> FreeListFact {
    FreeListFact {
        name: "context",
        kind: FreeListKind::Context,
        shape: field_after_head("ctx_weakreflist", 2),
        members: objects(type_name, true),
        statics: ("context.c", "ctx_freelist", "ctx_freelist_len"),
        max: 255,
        refcount_meaningful: true,
    }
}

/// (major, minor) of the first and the last version that keeps a list.
type Versions = ((u8, u8), (u8, u8));

/// 2.7's ints and floats: allocated in blocks whose every unused slot is
/// on the list from the start, chained through `ob_type`, with no counter
/// and no bound; the walk stops at this many.
const BLOCK_LIST_BOUND: u32 = 2_000_000;

/// A 2.7 list of ints or floats.
const fn block_list_fact(
    name: &'static str,
    kind: FreeListKind,
    unit: &'static str,
) -> FreeListFact {
    FreeListFact {
        name,
        kind,
        shape: FreeListShape::Chain(FreeListLink::ObType),
        members: objects(name, false),
        statics: (unit, "free_list", ""),
        max: BLOCK_LIST_BOUND,
        // A slot never handed out has never had a refcount.
        refcount_meaningful: false,
    }
}

const OTHER_FREE_LISTS: &[(Versions, FreeListFact)] = &[
    (
        ((2, 7), (2, 7)),
        block_list_fact("int", FreeListKind::Int, "intobject.c"),
    ),
    (
        ((2, 7), (2, 7)),
        block_list_fact("float", FreeListKind::Float, "floatobject.c"),
    ),
    (
        ((2, 7), (3, 10)),
        FreeListFact {
            name: "frame",
            kind: FreeListKind::Frame,
            // `PyObject_VAR_HEAD`, then `f_back`.
            shape: field_after_head("f_back", 1),
            members: objects("frame", true),
            statics: ("frameobject.c", "free_list", "numfree"),
            max: 200,
            refcount_meaningful: true,
        },
    ),
    (((2, 7), (2, 7)), method_fact("instancemethod")),
    (((3, 0), (3, 8)), method_fact("method")),
    (
        ((2, 7), (3, 8)),
        FreeListFact {
            name: "cfunction",
            kind: FreeListKind::CFunction,
            // `m_ml`, then `m_self`.
            shape: field_after_head("m_self", 1),
            members: objects("builtin_function_or_method", true),
            statics: ("methodobject.c", "free_list", "numfree"),
            max: 256,
            refcount_meaningful: true,
        },
    ),
    (((3, 7), (3, 9)), context_fact("Context")),
    (((3, 10), (3, 13)), context_fact("_contextvars.Context")),
    (
        ((2, 7), (2, 7)),
        FreeListFact {
            name: "set",
            kind: FreeListKind::Set,
            shape: FreeListShape::Array,
            members: FreeListMembers::Objects {
                type_name: None,
                gc: true,
            },
            statics: ("setobject.c", "free_list", "numfree"),
            max: 80,
            refcount_meaningful: true,
        },
    ),
    (
        ((3, 6), (3, 13)),
        FreeListFact {
            name: "slice",
            kind: FreeListKind::Slice,
            shape: FreeListShape::Single,
            // Slices have a GC header from 3.8 only: not asked.
            members: objects("slice", false),
            statics: ("sliceobject.c", "slice_cache", ""),
            max: 1,
            refcount_meaningful: true,
        },
    ),
];

impl VersionRules {
    /// The free lists besides the tuples' that `free_lists` says where to
    /// find (3.14+ names them in its layout instead).
    pub fn free_list_facts(&self) -> impl Iterator<Item = &'static FreeListFact> + use<> {
        let base: &'static [FreeListFact] = match (self.free_lists, self.separate_short_int) {
            (FreeListHome::Unified, _) => &[],
            (_, true) => FREE_LISTS_2_7,
            _ => FREE_LISTS_3,
        };
        let version = self.version;
        base.iter().chain(
            OTHER_FREE_LISTS
                .iter()
                .filter(move |((since, until), _)| (*since..=*until).contains(&version))
                .map(|(_, fact)| fact),
        )
    }

    /// What a member of 3.14+'s `_Py_freelists` keeps, by its C name: the
    /// objects whose type is known, and the lists of blocks that are not
    /// objects; any other list keeps objects of a type not checked.
    pub fn unified_free_list_members(&self, name: &str) -> FreeListMembers {
        match name {
            "floats" => objects("float", false),
            "ints" => objects("int", false),
            "tuples" => objects("tuple", true),
            "lists" => objects("list", true),
            "dicts" => objects("dict", true),
            "dictkeys" | "object_stack_chunks" | "unicode_writers" | "bytes_writers" => {
                FreeListMembers::NotObjects
            }
            _ => FreeListMembers::Objects {
                type_name: None,
                gc: false,
            },
        }
    }
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
    /// How the object model reads, which follows from the version alone.
    /// Not part of a layout file or of the layout's JSON: whoever makes a
    /// `Facts` from stored data sets it with [`VersionRules::for_version`].
    #[serde(skip)]
    pub rules: VersionRules,
}

/// Where an instance with `Py_TPFLAGS_MANAGED_DICT` keeps its attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManagedDict {
    /// No managed dicts (up to 3.10): `tp_dictoffset` says where the dict is.
    #[default]
    None,
    /// 3.11: the dict pointer 3 words before the object, the values pointer 4.
    SeparateWords,
    /// 3.12: one word 3 before the object: the dict, or the values' address
    /// minus 1 (an odd word).
    TaggedWord,
    /// 3.13+: the dict pointer 3 words before the object, else values inline
    /// after it when the type says so.
    InlineValues,
}

/// Rules of the object model that DWARF cannot show and no layout file
/// records: each is decided by the version alone, named for what it
/// decides, so that no code outside `layout` asks which version it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionRules {
    /// 2.7: the bytes type is named `str` (a `PyStringObject`) and text is
    /// `unicode`, both based on `basestring`.
    pub bytes_type_is_str: bool,
    /// 2.7: `int` is a machine word (`PyIntObject`, which `bool` extends),
    /// apart from the arbitrary-precision `long`.
    pub separate_short_int: bool,
    /// 3.x: a dict's entries live in a separate keys object; 2.7 keeps them
    /// in an open-addressed `ma_table` with `ma_mask`.
    pub dict_keys_object: bool,
    /// 3.12+: an int's sign and digit count are in `lv_tag`, not `ob_size`.
    pub int_size_in_tag: bool,
    /// 3.11+: a code object holds its bytecode inline (`co_code_adaptive`),
    /// a variable-size object of 2-byte units.
    pub code_holds_bytecode: bool,
    /// Where a managed dict or its values are.
    pub managed_dict: ManagedDict,
    /// 3.6+: `co_lnotab` line steps are signed bytes.
    pub lnotab_signed_lines: bool,
    /// 3.11+: one eval-loop C frame runs several Python frames.
    pub several_frames_per_eval: bool,
    /// 3.12+: frames owned by the interpreter (`owner` ≥ 3) are shims that
    /// hold no Python code.
    pub frame_owner_shims: bool,
    /// 3.14+: frames hold `_PyStackRef`s whose low two bits are tags.
    pub frames_tag_references: bool,
    /// The argument that holds the message of CPython's static
    /// `fatal_error`: `(fd, header, prefix, msg, status)` from 3.9, `(prefix, msg, status)` before.
    pub fatal_error_message_argument: usize,
    /// The alignment pymalloc gives every block: 16 from 3.8, else 8.
    pub allocator_alignment: u64,
    /// 3.13+: `_PyRuntime` starts with `_Py_DebugOffsets`.
    pub runtime_starts_with_debug_offsets: bool,
    /// Where pymalloc keeps its arena table.
    pub obmalloc: ObmallocLocation,
    /// pymalloc's `POOL_SIZE`: 16 KiB from 3.10 (64-bit, with the radix
    /// tree), a 4 KiB page before.
    pub pool_size: u64,
    /// pymalloc's `ARENA_SIZE`: 1 MiB from 3.10 (64-bit), 256 KiB before.
    pub arena_size: u64,
    /// Where the free lists besides the tuples' live.
    pub free_lists: FreeListHome,
    /// (major, minor): which of the free lists of statics the version keeps.
    version: (u8, u8),
    /// 3.11+: the `gi_frame_state` values (inclusive) of a generator whose
    /// frame is created or suspended, which owns its locals; `None` up to
    /// 3.10, where the frame is a separate object.
    pub generator_suspended_states: Option<(i8, i8)>,
    /// What pymortem can tell of asyncio tasks in this version.
    pub asyncio_tasks: AsyncioTasks,
    /// 3.14+: `_PyInterpreterFrame.stackpointer` points past the top of the
    /// value stack; 3.11–3.13's `stacktop` counts the slots used from
    /// `localsplus`.
    pub frame_stack_pointer: bool,
}

/// Whether a version's asyncio tasks can be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AsyncioTasks {
    /// Python 2: no asyncio.
    #[default]
    NoAsyncio,
    /// 3.0–3.7: asyncio without task names; not read.
    Unsupported,
    /// 3.8+: the C `asyncio.Task` is read.
    Readable,
}

/// Where pymalloc's arena table (`arenas`, `maxarenas`) lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ObmallocLocation {
    /// 2.7–3.11: statics of obmalloc.c.
    #[default]
    Statics,
    /// 3.12: `PyInterpreterState.obmalloc`, an `_obmalloc_state` inline.
    InterpreterInline,
    /// 3.13+: `PyInterpreterState.obmalloc`, a pointer to the state (the
    /// main interpreter's is a static; a subinterpreter with an allocator
    /// of its own has its own).
    InterpreterPointer,
}

impl VersionRules {
    /// The rules of CPython `major.minor`.
    pub fn for_version(major: u8, minor: u8) -> VersionRules {
        let v = (major, minor);
        let py2 = major == 2;
        VersionRules {
            bytes_type_is_str: py2,
            separate_short_int: py2,
            dict_keys_object: !py2,
            int_size_in_tag: v >= (3, 12),
            code_holds_bytecode: v >= (3, 11),
            managed_dict: if v <= (3, 10) {
                ManagedDict::None
            } else if v == (3, 11) {
                ManagedDict::SeparateWords
            } else if v == (3, 12) {
                ManagedDict::TaggedWord
            } else {
                ManagedDict::InlineValues
            },
            lnotab_signed_lines: !py2,
            several_frames_per_eval: v >= (3, 11),
            frame_owner_shims: v >= (3, 12),
            frames_tag_references: v >= (3, 14),
            fatal_error_message_argument: if v >= (3, 9) { 3 } else { 1 },
            allocator_alignment: if v >= (3, 8) { 16 } else { 8 },
            runtime_starts_with_debug_offsets: v >= (3, 13),
            obmalloc: if v <= (3, 11) {
                ObmallocLocation::Statics
            } else if v == (3, 12) {
                ObmallocLocation::InterpreterInline
            } else {
                ObmallocLocation::InterpreterPointer
            },
            pool_size: if v >= (3, 10) { 16 << 10 } else { 4 << 10 },
            arena_size: if v >= (3, 10) { 1 << 20 } else { 256 << 10 },
            version: v,
            free_lists: if v <= (3, 9) {
                FreeListHome::Statics
            } else if v <= (3, 13) {
                FreeListHome::Interpreter
            } else {
                FreeListHome::Unified
            },
            // FRAME_CREATED to the last suspended state: -2..-1 in
            // 3.11-3.12, -3..-1 in 3.13-3.14, 0..3 from 3.15.
            asyncio_tasks: if py2 {
                AsyncioTasks::NoAsyncio
            } else if v >= (3, 8) {
                AsyncioTasks::Readable
            } else {
                AsyncioTasks::Unsupported
            },
            frame_stack_pointer: v >= (3, 14),
            generator_suspended_states: if v >= (3, 15) {
                Some((0, 3))
            } else if v >= (3, 11) {
                Some((-3, -1))
            } else {
                None
            },
        }
    }
}

impl VersionRules {
    /// Whether a generator whose `gi_frame_state` is `state` owns its
    /// frame's locals (created or suspended, not running or finished).
    pub fn generator_frame_suspended(&self, state: i8) -> bool {
        self.generator_suspended_states
            .is_some_and(|(low, high)| (low..=high).contains(&state))
    }
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
            rules: VersionRules::for_version(major, minor),
        }
    }
}

impl crate::interpreter::PythonVersion {
    /// The object model's rules for this version, for code that knows the
    /// version but has no layout.
    pub fn rules(&self) -> VersionRules {
        VersionRules::for_version(self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions pymortem reads, oldest first.
    const VERSIONS: [(u8, u8); 11] = [
        (2, 7),
        (3, 6),
        (3, 7),
        (3, 8),
        (3, 9),
        (3, 10),
        (3, 11),
        (3, 12),
        (3, 13),
        (3, 14),
        (3, 15),
    ];

    /// The versions for which `decide` holds.
    fn where_true(decide: impl Fn(&VersionRules) -> bool) -> Vec<(u8, u8)> {
        VERSIONS
            .into_iter()
            .filter(|&(major, minor)| decide(&VersionRules::for_version(major, minor)))
            .collect()
    }

    #[test]
    fn only_2_7_names_bytes_str_and_keeps_a_short_int() {
        assert_eq!(where_true(|r| r.bytes_type_is_str), [(2, 7)]);
        assert_eq!(where_true(|r| r.separate_short_int), [(2, 7)]);
        assert_eq!(where_true(|r| !r.dict_keys_object), [(2, 7)]);
        // 2.7's line steps are unsigned; 3.6 made them signed.
        assert_eq!(where_true(|r| !r.lnotab_signed_lines), [(2, 7)]);
    }

    #[test]
    fn ints_keep_their_size_in_lv_tag_from_3_12() {
        assert_eq!(
            where_true(|r| r.int_size_in_tag),
            [(3, 12), (3, 13), (3, 14), (3, 15)]
        );
    }

    #[test]
    fn code_objects_hold_their_bytecode_from_3_11() {
        let from_3_11 = [(3, 11), (3, 12), (3, 13), (3, 14), (3, 15)];
        assert_eq!(where_true(|r| r.code_holds_bytecode), from_3_11);
        assert_eq!(where_true(|r| r.several_frames_per_eval), from_3_11);
    }

    #[test]
    fn managed_dicts_change_in_3_11_3_12_and_3_13() {
        let of = |minor| VersionRules::for_version(3, minor).managed_dict;
        assert_eq!(
            VersionRules::for_version(2, 7).managed_dict,
            ManagedDict::None
        );
        assert_eq!(of(6), ManagedDict::None);
        assert_eq!(of(10), ManagedDict::None);
        assert_eq!(of(11), ManagedDict::SeparateWords);
        assert_eq!(of(12), ManagedDict::TaggedWord);
        assert_eq!(of(13), ManagedDict::InlineValues);
        assert_eq!(of(14), ManagedDict::InlineValues);
        assert_eq!(of(15), ManagedDict::InlineValues);
    }

    #[test]
    fn shim_frames_from_3_12_and_tagged_references_from_3_14() {
        assert_eq!(
            where_true(|r| r.frame_owner_shims),
            [(3, 12), (3, 13), (3, 14), (3, 15)]
        );
        assert_eq!(where_true(|r| r.frames_tag_references), [(3, 14), (3, 15)]);
    }

    #[test]
    fn fatal_error_took_fd_and_header_first_from_3_9() {
        let argument =
            |major, minor| VersionRules::for_version(major, minor).fatal_error_message_argument;
        assert_eq!(argument(2, 7), 1);
        assert_eq!(argument(3, 8), 1);
        assert_eq!(argument(3, 9), 3);
        assert_eq!(argument(3, 14), 3);
    }

    #[test]
    fn pymalloc_aligns_to_16_from_3_8() {
        let alignment = |major, minor| VersionRules::for_version(major, minor).allocator_alignment;
        assert_eq!(alignment(2, 7), 8);
        assert_eq!(alignment(3, 7), 8);
        assert_eq!(alignment(3, 8), 16);
        assert_eq!(alignment(3, 15), 16);
    }

    #[test]
    fn pymalloc_pools_and_arenas_grow_in_3_10_and_its_state_moves_in_3_12() {
        let rules = |minor| VersionRules::for_version(3, minor);
        assert_eq!(VersionRules::for_version(2, 7).pool_size, 4096);
        assert_eq!(rules(9).pool_size, 4096);
        assert_eq!(rules(9).arena_size, 256 << 10);
        assert_eq!(rules(10).pool_size, 16384);
        assert_eq!(rules(10).arena_size, 1 << 20);
        assert_eq!(rules(11).obmalloc, ObmallocLocation::Statics);
        assert_eq!(rules(12).obmalloc, ObmallocLocation::InterpreterInline);
        assert_eq!(rules(13).obmalloc, ObmallocLocation::InterpreterPointer);
    }

    #[test]
    fn the_runtime_starts_with_debug_offsets_from_3_13() {
        assert_eq!(
            where_true(|r| r.runtime_starts_with_debug_offsets),
            [(3, 13), (3, 14), (3, 15)]
        );
    }

    #[test]
    fn the_rules_are_not_serialised() {
        // Layout files, the cache and the layout's JSON keep the measured
        // facts only; the rules are derived again on reading.
        let json = serde_json::to_value(Facts::for_version(3, 12, Some(4))).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(!keys.iter().any(|k| k.contains("rules")), "{keys:?}");
        assert_eq!(keys.len(), 13, "{keys:?}");
    }

    #[test]
    fn built_in_tables_give_each_layout_the_rules_of_its_version() {
        for (name, _) in super::super::tables::TABLES {
            let (major, minor) = name.split_once('.').unwrap();
            let (major, minor): (u8, u8) = (major.parse().unwrap(), minor.parse().unwrap());
            let table = super::super::tables::builtin(major, minor).unwrap();
            let micros = table.sources.keys().chain(std::iter::once(&table.base));
            for micro in micros {
                let layout = table.layout_for(micro);
                assert_eq!(
                    layout.facts.rules,
                    VersionRules::for_version(major, minor),
                    "{micro}"
                );
            }
        }
    }
}
