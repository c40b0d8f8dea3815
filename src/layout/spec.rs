//! Which CPython structures and fields pymortem needs, under canonical names
//! that stay the same across versions, each with the C names to try.
//!
//! A canonical field lists C member paths in the order they are tried; the
//! first one the struct has wins (`threads.head` in 3.11+, `tstate_head`
//! before). Nested members are dotted paths.

/// One structure pymortem reads.
pub struct StructSpec {
    /// Canonical name.
    pub name: &'static str,
    /// Typedef or struct-tag names to look for.
    pub c_names: &'static [&'static str],
    /// Canonical field name and the C paths to try.
    pub fields: &'static [(&'static str, &'static [&'static str])],
}

macro_rules! fields {
    ($($canon:literal => [$($c:literal),+ $(,)?]),* $(,)?) => {
        &[$(($canon, &[$($c),+])),*]
    };
}

/// Every structure, in the order tables list them.
pub const STRUCTS: &[StructSpec] = &[
    StructSpec {
        name: "PyObject",
        c_names: &["PyObject", "_object"],
        fields: fields! {
            "ob_refcnt" => ["ob_refcnt"],
            "ob_refcnt_full" => ["ob_refcnt_full"],
            "ob_overflow" => ["ob_overflow"],
            "ob_flags" => ["ob_flags"],
            "ob_type" => ["ob_type"],
            // Free-threaded builds only (3.13t+): its presence marks such a build.
            "ob_tid" => ["ob_tid"],
        },
    },
    StructSpec {
        name: "PyVarObject",
        c_names: &["PyVarObject"],
        fields: fields! { "ob_size" => ["ob_size"] },
    },
    StructSpec {
        name: "PyGC_Head",
        c_names: &["PyGC_Head"],
        fields: fields! {
            "gc_next" => ["_gc_next", "gc.gc_next"],
            "gc_prev" => ["_gc_prev", "gc.gc_prev"],
            "gc_refs" => ["gc.gc_refs"],
        },
    },
    StructSpec {
        name: "PyTupleObject",
        c_names: &["PyTupleObject"],
        fields: fields! { "ob_item" => ["ob_item"], "ob_hash" => ["ob_hash"] },
    },
    StructSpec {
        name: "PyListObject",
        c_names: &["PyListObject"],
        fields: fields! { "ob_item" => ["ob_item"], "allocated" => ["allocated"] },
    },
    StructSpec {
        name: "PyDictObject",
        c_names: &["PyDictObject"],
        fields: fields! { "ma_used" => ["ma_used"], "ma_keys" => ["ma_keys"], "ma_values" => ["ma_values"], "ma_table" => ["ma_table"], "ma_mask" => ["ma_mask"] },
    },
    StructSpec {
        name: "PyDictKeysObject",
        c_names: &["PyDictKeysObject", "_dictkeysobject"],
        fields: fields! {
            "dk_refcnt" => ["dk_refcnt"],
            "dk_size" => ["dk_size"],
            "dk_log2_size" => ["dk_log2_size"],
            "dk_log2_index_bytes" => ["dk_log2_index_bytes"],
            "dk_kind" => ["dk_kind"],
            "dk_nentries" => ["dk_nentries"],
            "dk_indices" => ["dk_indices"],
        },
    },
    StructSpec {
        name: "PyDictKeyEntry",
        c_names: &["PyDictKeyEntry", "PyDictEntry"],
        fields: fields! { "me_hash" => ["me_hash"], "me_key" => ["me_key"], "me_value" => ["me_value"] },
    },
    StructSpec {
        name: "PyDictUnicodeEntry",
        c_names: &["PyDictUnicodeEntry"],
        fields: fields! { "me_key" => ["me_key"], "me_value" => ["me_value"] },
    },
    StructSpec {
        name: "PyDictValues",
        c_names: &["PyDictValues", "_dictvalues"],
        fields: fields! { "values" => ["values"], "valid" => ["valid"] },
    },
    StructSpec {
        name: "PyTypeObject",
        c_names: &["PyTypeObject", "_typeobject"],
        fields: fields! {
            "tp_name" => ["tp_name"],
            "tp_basicsize" => ["tp_basicsize"],
            "tp_itemsize" => ["tp_itemsize"],
            "tp_dealloc" => ["tp_dealloc"],
            "tp_repr" => ["tp_repr"],
            "tp_flags" => ["tp_flags"],
            "tp_base" => ["tp_base"],
            "tp_dict" => ["tp_dict"],
            "tp_dictoffset" => ["tp_dictoffset"],
            "tp_mro" => ["tp_mro"],
            "tp_free" => ["tp_free"],
        },
    },
    StructSpec {
        name: "PyHeapTypeObject",
        c_names: &["PyHeapTypeObject", "_heaptypeobject"],
        fields: fields! { "ht_cached_keys" => ["ht_cached_keys"] },
    },
    StructSpec {
        name: "PyASCIIObject",
        c_names: &["PyASCIIObject"],
        fields: fields! {
            "length" => ["length"],
            "hash" => ["hash"],
            "state" => ["state"],
            "state.interned" => ["state.interned"],
            "state.kind" => ["state.kind"],
            "state.compact" => ["state.compact"],
            "state.ascii" => ["state.ascii"],
            "state.ready" => ["state.ready"],
            "state.statically_allocated" => ["state.statically_allocated"],
            "wstr" => ["wstr"],
        },
    },
    StructSpec {
        name: "PyCompactUnicodeObject",
        c_names: &["PyCompactUnicodeObject"],
        fields: fields! { "utf8_length" => ["utf8_length"], "utf8" => ["utf8"], "wstr_length" => ["wstr_length"] },
    },
    StructSpec {
        name: "PyUnicodeObject",
        c_names: &["PyUnicodeObject"],
        // 3.x: `data` after the compact header; 2.7: `length` and a `str` buffer.
        fields: fields! { "data" => ["data"], "length" => ["length"], "str" => ["str"], "hash" => ["hash"] },
    },
    StructSpec {
        name: "PyBytesObject",
        c_names: &["PyBytesObject"],
        fields: fields! { "ob_shash" => ["ob_shash"], "ob_sval" => ["ob_sval"] },
    },
    StructSpec {
        name: "PyStringObject",
        c_names: &["PyStringObject"],
        fields: fields! { "ob_shash" => ["ob_shash"], "ob_sstate" => ["ob_sstate"], "ob_sval" => ["ob_sval"] },
    },
    StructSpec {
        name: "PyIntObject",
        c_names: &["PyIntObject"],
        fields: fields! { "ob_ival" => ["ob_ival"] },
    },
    StructSpec {
        name: "PyLongObject",
        c_names: &["PyLongObject", "_longobject"],
        fields: fields! { "lv_tag" => ["long_value.lv_tag"], "ob_digit" => ["long_value.ob_digit", "ob_digit"] },
    },
    StructSpec {
        name: "PyFloatObject",
        c_names: &["PyFloatObject"],
        fields: fields! { "ob_fval" => ["ob_fval"] },
    },
    StructSpec {
        name: "_PyRuntimeState",
        c_names: &["_PyRuntimeState", "pyruntimestate"],
        fields: fields! {
            "debug_offsets" => ["debug_offsets"],
            "interpreters_head" => ["interpreters.head"],
            "interpreters_main" => ["interpreters.main"],
            "main_tstate" => ["main_tstate"],
            "tstate_current" => ["gilstate.tstate_current"],
            "gil_last_holder" => ["ceval.gil.last_holder"],
            "gil_locked" => ["ceval.gil.locked"],
            "gc" => ["gc"],
            "finalizing" => ["_finalizing", "finalizing"],
        },
    },
    StructSpec {
        name: "PyInterpreterState",
        c_names: &["PyInterpreterState", "_is"],
        fields: fields! {
            "next" => ["next"],
            "threads_head" => ["threads.head", "tstate_head"],
            "threads_main" => ["threads.main"],
            "id" => ["id"],
            "modules" => ["imports.modules", "modules"],
            "sysdict" => ["sysdict"],
            "builtins" => ["builtins"],
            "gc" => ["gc"],
            "ceval_gil" => ["ceval.gil"],
            "gil_last_holder" => ["_gil.last_holder"],
            "gil_locked" => ["_gil.locked"],
            "tuple_free_list" => ["tuple.free_list", "object_state.freelists.tuples.items", "object_state.freelists.tuples"],
            "tuple_numfree" => ["tuple.numfree", "object_state.freelists.tuples.numfree"],
        },
    },
    StructSpec {
        name: "PyThreadState",
        c_names: &["PyThreadState", "_ts"],
        fields: fields! {
            "prev" => ["prev"],
            "next" => ["next"],
            "interp" => ["interp"],
            "frame" => ["frame"],
            "cframe" => ["cframe"],
            "current_frame" => ["current_frame"],
            "thread_id" => ["thread_id"],
            "native_thread_id" => ["native_thread_id"],
            "id" => ["id"],
            "status" => ["_status"],
            "holds_gil" => ["holds_gil", "_status.holds_gil"],
            "datastack_chunk" => ["datastack_chunk"],
            "datastack_top" => ["datastack_top"],
            "datastack_limit" => ["datastack_limit"],
        },
    },
    StructSpec {
        name: "_PyStackChunk",
        c_names: &["_PyStackChunk", "_stack_chunk"],
        fields: fields! { "previous" => ["previous"], "size" => ["size"], "top" => ["top"], "data" => ["data"] },
    },
    StructSpec {
        name: "_PyCFrame",
        c_names: &["_PyCFrame", "CFrame"],
        fields: fields! { "current_frame" => ["current_frame"], "previous" => ["previous"], "use_tracing" => ["use_tracing"] },
    },
    StructSpec {
        name: "PyFrameObject",
        c_names: &["PyFrameObject", "_frame"],
        fields: fields! {
            "f_back" => ["f_back"],
            "f_code" => ["f_code"],
            "f_globals" => ["f_globals"],
            "f_locals" => ["f_locals"],
            "f_lasti" => ["f_lasti"],
            "f_lineno" => ["f_lineno"],
            "f_localsplus" => ["f_localsplus"],
            "f_frame" => ["f_frame"],
            "f_gen" => ["f_gen"],
        },
    },
    StructSpec {
        name: "_PyInterpreterFrame",
        c_names: &["_PyInterpreterFrame", "_PyInterpreterFrame"],
        fields: fields! {
            "code" => ["f_executable", "f_code"],
            "previous" => ["previous"],
            "funcobj" => ["f_funcobj"],
            "globals" => ["f_globals"],
            "locals" => ["f_locals"],
            "frame_obj" => ["frame_obj"],
            "instr_ptr" => ["instr_ptr", "prev_instr"],
            "stackpointer" => ["stackpointer", "stacktop"],
            "owner" => ["owner"],
            "is_entry" => ["is_entry"],
            "localsplus" => ["localsplus"],
        },
    },
    StructSpec {
        name: "PyCodeObject",
        c_names: &["PyCodeObject"],
        fields: fields! {
            "co_argcount" => ["co_argcount"],
            "co_nlocals" => ["co_nlocals"],
            "co_flags" => ["co_flags"],
            "co_firstlineno" => ["co_firstlineno"],
            "co_code" => ["co_code"],
            "co_code_adaptive" => ["co_code_adaptive"],
            "co_varnames" => ["co_varnames"],
            "co_cellvars" => ["co_cellvars"],
            "co_freevars" => ["co_freevars"],
            "co_localsplusnames" => ["co_localsplusnames"],
            "co_localspluskinds" => ["co_localspluskinds"],
            "co_nlocalsplus" => ["co_nlocalsplus"],
            "co_stacksize" => ["co_stacksize"],
            "co_framesize" => ["co_framesize"],
            "co_filename" => ["co_filename"],
            "co_name" => ["co_name"],
            "co_qualname" => ["co_qualname"],
            "co_lnotab" => ["co_lnotab"],
            "co_linetable" => ["co_linetable"],
            "co_firsttraceable" => ["_co_firsttraceable"],
        },
    },
    StructSpec {
        name: "GCRuntimeState",
        c_names: &["_gc_runtime_state", "gc_runtime_state"],
        fields: fields! {
            "enabled" => ["enabled"],
            "generations" => ["generations"],
            "young" => ["young"],
            "old" => ["old"],
            "permanent_generation" => ["permanent_generation"],
            "generation0" => ["generation0"],
            "collecting" => ["collecting"],
        },
    },
    StructSpec {
        name: "GCGeneration",
        c_names: &["gc_generation"],
        fields: fields! { "head" => ["head"], "threshold" => ["threshold"], "count" => ["count"] },
    },
    StructSpec {
        name: "GilRuntimeState",
        c_names: &["_gil_runtime_state", "gil_runtime_state"],
        fields: fields! { "last_holder" => ["last_holder"], "locked" => ["locked"], "switch_number" => ["switch_number"] },
    },
    StructSpec {
        name: "FreeList",
        c_names: &["_Py_freelist"],
        fields: fields! { "head" => ["freelist"], "size" => ["size"] },
    },
];

/// Static variables looked up in DWARF, as (unit basename or "", name).
pub const VARIABLES: &[(&str, &str)] = &[
    ("", "_PyRuntime"),
    ("pystate.c", "interp_head"),
    ("", "_PyThreadState_Current"),
    ("tupleobject.c", "free_list"),
    ("tupleobject.c", "numfree"),
    ("gcmodule.c", "generations"),
    ("", "_PyGC_generation0"),
    ("ceval.c", "gil_last_holder"),
    ("ceval.c", "gil_locked"),
];

/// Units that define what is asked for (each type is complete in one of
/// them, in every version); scanned first, and usually alone.
pub const PREFERRED_UNITS: &[&str] = &[
    "pystate.c",
    "pylifecycle.c",
    "tupleobject.c",
    "gcmodule.c",
    "gc.c",
    "frameobject.c",
    "ceval.c",
    "ceval_gil.c",
    "codeobject.c",
    "unicodeobject.c",
    "stringobject.c",
    "intobject.c",
    "longobject.c",
    "floatobject.c",
    "listobject.c",
    "dictobject.c",
    "object.c",
];

/// Structures without which the layout is useless; their absence from the
/// preferred units makes the scan go on through every unit.
pub const REQUIRED: &[&str] = &[
    "PyObject",
    "PyVarObject",
    "PyGC_Head",
    "PyTupleObject",
    "PyTypeObject",
    "PyThreadState",
    "PyInterpreterState",
    "PyCodeObject",
];

/// A fingerprint of everything above: cached layouts made with another spec are not used.
pub fn fingerprint() -> u32 {
    // FNV-1a over every name, so any change to the spec changes it.
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |text: &str| {
        for b in text.bytes().chain([0]) {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    for s in STRUCTS {
        feed(s.name);
        s.c_names.iter().for_each(|n| feed(n));
        for (canonical, paths) in s.fields {
            feed(canonical);
            paths.iter().for_each(|p| feed(p));
        }
    }
    for (unit, name) in VARIABLES {
        feed(unit);
        feed(name);
    }
    // The code that extracts layouts: a change to it must not be hidden by
    // layouts cached by the previous build.
    for source in EXTRACTOR_SOURCES {
        feed(source);
    }
    hash
}

/// The sources of the layout extraction, hashed into [`fingerprint`].
const EXTRACTOR_SOURCES: &[&str] = &[
    include_str!("../dwarf/mod.rs"),
    include_str!("mod.rs"),
    include_str!("spec.rs"),
    include_str!("facts.rs"),
];
