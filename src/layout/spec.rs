//! Which CPython structures and fields pymortem needs, under canonical names
//! that stay the same across versions, each with the C names to try.
//!
//! A canonical field lists C member paths in the order they are tried; the
//! first one the struct has wins (`threads.head` in 3.11+, `tstate_head`
//! before). Nested members are dotted paths.

use super::Layout;
use super::offsets::{Field, StructSize};

/// One structure pymortem reads.
pub struct StructSpec {
    /// Canonical name.
    pub name: &'static str,
    /// Typedef or struct-tag names to look for.
    pub c_names: &'static [&'static str],
    /// Canonical field name and the C paths to try.
    pub fields: &'static [(&'static str, &'static [&'static str])],
}

/// Declares every structure once: the [`STRUCTS`] spec the extractors read,
/// and [`Offsets`], one typed field per canonical name, so that code names
/// a field as `offsets.object.ob_refcnt` and a misspelt one does not
/// compile.
macro_rules! layout_structs {
    ($(
        $(#[$doc:meta])*
        $member:ident: $fields:ident = $name:literal [$($c_name:literal),+ $(,)?] {
            $($field:ident: $canonical:literal [$($c_path:literal),+ $(,)?]),* $(,)?
        }
    )*) => {
        /// Every structure, in the order tables list them.
        pub const STRUCTS: &[StructSpec] = &[$(
            StructSpec {
                name: $name,
                c_names: &[$($c_name),+],
                fields: &[$(($canonical, &[$($c_path),+])),*],
            },
        )*];

        /// The offsets of one layout, looked up once, by name in the code.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Offsets {
            $($(#[$doc])* pub $member: $fields,)*
        }

        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $fields {
                /// `sizeof`.
                pub sizeof: StructSize,
                $(
                    #[doc = concat!("`", $canonical, "`.")]
                    pub $field: Field,
                )*
            }
        )*

        impl Offsets {
            /// Look every field of `layout` up.
            pub fn new(layout: &Layout) -> Offsets {
                Offsets {$(
                    $member: $fields {
                        sizeof: StructSize::new(layout.size($name), $name),
                        $($field: Field::new(
                            layout.field($name, $canonical),
                            concat!($name, ".", $canonical),
                        ),)*
                    },
                )*}
            }
        }
    };
}

layout_structs! {
    /// `PyObject`.
    object: ObjectFields = "PyObject" ["PyObject", "_object"] {
        ob_refcnt: "ob_refcnt" ["ob_refcnt"],
        ob_refcnt_full: "ob_refcnt_full" ["ob_refcnt_full"],
        ob_overflow: "ob_overflow" ["ob_overflow"],
        ob_flags: "ob_flags" ["ob_flags"],
        ob_type: "ob_type" ["ob_type"],
        // Free-threaded builds only (3.13t+): its presence marks such a build.
        ob_tid: "ob_tid" ["ob_tid"],
    }
    /// `PyVarObject`.
    var_object: VarObjectFields = "PyVarObject" ["PyVarObject"] {
        ob_size: "ob_size" ["ob_size"],
    }
    /// `PyGC_Head`.
    gc_head: GcHeadFields = "PyGC_Head" ["PyGC_Head"] {
        gc_next: "gc_next" ["_gc_next", "gc.gc_next"],
        gc_prev: "gc_prev" ["_gc_prev", "gc.gc_prev"],
        gc_refs: "gc_refs" ["gc.gc_refs"],
    }
    /// `PyTupleObject`.
    tuple: TupleFields = "PyTupleObject" ["PyTupleObject"] {
        ob_item: "ob_item" ["ob_item"],
        ob_hash: "ob_hash" ["ob_hash"],
    }
    /// `PyListObject`.
    list: ListFields = "PyListObject" ["PyListObject"] {
        ob_item: "ob_item" ["ob_item"],
        allocated: "allocated" ["allocated"],
    }
    /// `PyDictObject`.
    dict: DictFields = "PyDictObject" ["PyDictObject"] {
        ma_used: "ma_used" ["ma_used"],
        ma_keys: "ma_keys" ["ma_keys"],
        ma_values: "ma_values" ["ma_values"],
        ma_table: "ma_table" ["ma_table"],
        ma_mask: "ma_mask" ["ma_mask"],
    }
    /// `PyDictKeysObject`.
    dict_keys: DictKeysFields = "PyDictKeysObject" ["PyDictKeysObject", "_dictkeysobject"] {
        dk_refcnt: "dk_refcnt" ["dk_refcnt"],
        dk_size: "dk_size" ["dk_size"],
        dk_log2_size: "dk_log2_size" ["dk_log2_size"],
        dk_log2_index_bytes: "dk_log2_index_bytes" ["dk_log2_index_bytes"],
        dk_kind: "dk_kind" ["dk_kind"],
        dk_nentries: "dk_nentries" ["dk_nentries"],
        dk_indices: "dk_indices" ["dk_indices"],
    }
    /// `PyDictKeyEntry`.
    dict_key_entry: DictKeyEntryFields = "PyDictKeyEntry" ["PyDictKeyEntry", "PyDictEntry"] {
        me_hash: "me_hash" ["me_hash"],
        me_key: "me_key" ["me_key"],
        me_value: "me_value" ["me_value"],
    }
    /// `PyDictUnicodeEntry`.
    dict_unicode_entry: DictUnicodeEntryFields = "PyDictUnicodeEntry" ["PyDictUnicodeEntry"] {
        me_key: "me_key" ["me_key"],
        me_value: "me_value" ["me_value"],
    }
    /// `PyDictValues`.
    dict_values: DictValuesFields = "PyDictValues" ["PyDictValues", "_dictvalues"] {
        values: "values" ["values"],
        valid: "valid" ["valid"],
    }
    /// `PyTypeObject`.
    type_object: TypeObjectFields = "PyTypeObject" ["PyTypeObject", "_typeobject"] {
        tp_name: "tp_name" ["tp_name"],
        tp_basicsize: "tp_basicsize" ["tp_basicsize"],
        tp_itemsize: "tp_itemsize" ["tp_itemsize"],
        tp_dealloc: "tp_dealloc" ["tp_dealloc"],
        tp_repr: "tp_repr" ["tp_repr"],
        tp_flags: "tp_flags" ["tp_flags"],
        tp_base: "tp_base" ["tp_base"],
        tp_dict: "tp_dict" ["tp_dict"],
        tp_dictoffset: "tp_dictoffset" ["tp_dictoffset"],
        tp_mro: "tp_mro" ["tp_mro"],
        tp_free: "tp_free" ["tp_free"],
    }
    /// `PyHeapTypeObject`.
    heap_type: HeapTypeFields = "PyHeapTypeObject" ["PyHeapTypeObject", "_heaptypeobject"] {
        ht_cached_keys: "ht_cached_keys" ["ht_cached_keys"],
    }
    /// `PyASCIIObject`.
    ascii: AsciiFields = "PyASCIIObject" ["PyASCIIObject"] {
        length: "length" ["length"],
        hash: "hash" ["hash"],
        state: "state" ["state"],
        state_interned: "state.interned" ["state.interned"],
        state_kind: "state.kind" ["state.kind"],
        state_compact: "state.compact" ["state.compact"],
        state_ascii: "state.ascii" ["state.ascii"],
        state_ready: "state.ready" ["state.ready"],
        state_statically_allocated: "state.statically_allocated" ["state.statically_allocated"],
        wstr: "wstr" ["wstr"],
    }
    /// `PyCompactUnicodeObject`.
    compact_unicode: CompactUnicodeFields = "PyCompactUnicodeObject" ["PyCompactUnicodeObject"] {
        utf8_length: "utf8_length" ["utf8_length"],
        utf8: "utf8" ["utf8"],
        wstr_length: "wstr_length" ["wstr_length"],
    }
    /// `PyUnicodeObject`.
    // 3.x: `data` after the compact header; 2.7: `length` and a `str` buffer.
    unicode: UnicodeFields = "PyUnicodeObject" ["PyUnicodeObject"] {
        data: "data" ["data"],
        length: "length" ["length"],
        str: "str" ["str"],
        hash: "hash" ["hash"],
    }
    /// `PyBytesObject`.
    bytes: BytesFields = "PyBytesObject" ["PyBytesObject"] {
        ob_shash: "ob_shash" ["ob_shash"],
        ob_sval: "ob_sval" ["ob_sval"],
    }
    /// `PyStringObject`.
    string: StringFields = "PyStringObject" ["PyStringObject"] {
        ob_shash: "ob_shash" ["ob_shash"],
        ob_sstate: "ob_sstate" ["ob_sstate"],
        ob_sval: "ob_sval" ["ob_sval"],
    }
    /// `PyIntObject`.
    int: IntFields = "PyIntObject" ["PyIntObject"] {
        ob_ival: "ob_ival" ["ob_ival"],
    }
    /// `PyLongObject`.
    long: LongFields = "PyLongObject" ["PyLongObject", "_longobject"] {
        lv_tag: "lv_tag" ["long_value.lv_tag"],
        ob_digit: "ob_digit" ["long_value.ob_digit", "ob_digit"],
    }
    /// `PyFloatObject`.
    float: FloatFields = "PyFloatObject" ["PyFloatObject"] {
        ob_fval: "ob_fval" ["ob_fval"],
    }
    /// `_PyRuntimeState`.
    runtime: RuntimeFields = "_PyRuntimeState" ["_PyRuntimeState", "pyruntimestate"] {
        debug_offsets: "debug_offsets" ["debug_offsets"],
        interpreters_head: "interpreters_head" ["interpreters.head"],
        interpreters_main: "interpreters_main" ["interpreters.main"],
        main_tstate: "main_tstate" ["main_tstate"],
        tstate_current: "tstate_current" ["gilstate.tstate_current"],
        gil_last_holder: "gil_last_holder" ["ceval.gil.last_holder"],
        gil_locked: "gil_locked" ["ceval.gil.locked"],
        gc: "gc" ["gc"],
        finalizing: "finalizing" ["_finalizing", "finalizing"],
    }
    /// `PyInterpreterState`.
    interp: InterpFields = "PyInterpreterState" ["PyInterpreterState", "_is"] {
        next: "next" ["next"],
        threads_head: "threads_head" ["threads.head", "tstate_head"],
        threads_main: "threads_main" ["threads.main"],
        id: "id" ["id"],
        modules: "modules" ["imports.modules", "modules"],
        sysdict: "sysdict" ["sysdict"],
        builtins: "builtins" ["builtins"],
        gc: "gc" ["gc"],
        ceval_gil: "ceval_gil" ["ceval.gil"],
        gil_last_holder: "gil_last_holder" ["_gil.last_holder"],
        gil_locked: "gil_locked" ["_gil.locked"],
        tuple_free_list: "tuple_free_list" ["tuple.free_list", "object_state.freelists.tuples.items", "object_state.freelists.tuples"],
        tuple_numfree: "tuple_numfree" ["tuple.numfree", "object_state.freelists.tuples.numfree"],
        // 3.12: the allocator's state inline; 3.13+: a pointer to it.
        obmalloc: "obmalloc" ["obmalloc"],
        // The other free lists, 3.10–3.12 in per-type states, 3.13 in
        // `_Py_object_freelists`; 3.14+ keeps them all in `_Py_freelists`
        // (`Freelists`, read whole).
        float_free_list: "float_free_list" ["float_state.free_list", "object_state.freelists.floats.items"],
        float_numfree: "float_numfree" ["float_state.numfree", "object_state.freelists.floats.numfree"],
        list_free_list: "list_free_list" ["list.free_list", "object_state.freelists.lists.items"],
        list_numfree: "list_numfree" ["list.numfree", "object_state.freelists.lists.numfree"],
        dict_free_list: "dict_free_list" ["dict_state.free_list", "object_state.freelists.dicts.items"],
        dict_numfree: "dict_numfree" ["dict_state.numfree", "object_state.freelists.dicts.numfree"],
        dictkeys_free_list: "dictkeys_free_list" ["dict_state.keys_free_list", "object_state.freelists.dictkeys.items"],
        dictkeys_numfree: "dictkeys_numfree" ["dict_state.keys_numfree", "object_state.freelists.dictkeys.numfree"],
        async_gen_value_free_list: "async_gen_value_free_list" ["async_gen.value_freelist", "object_state.freelists.async_gens.items"],
        async_gen_value_numfree: "async_gen_value_numfree" ["async_gen.value_numfree", "object_state.freelists.async_gens.numfree"],
        async_gen_asend_free_list: "async_gen_asend_free_list" ["async_gen.asend_freelist", "object_state.freelists.async_gen_asends.items"],
        async_gen_asend_numfree: "async_gen_asend_numfree" ["async_gen.asend_numfree", "object_state.freelists.async_gen_asends.numfree"],
        frame_free_list: "frame_free_list" ["frame.free_list"],
        frame_numfree: "frame_numfree" ["frame.numfree"],
        context_free_list: "context_free_list" ["context.freelist", "object_state.freelists.contexts.items"],
        context_numfree: "context_numfree" ["context.numfree", "object_state.freelists.contexts.numfree"],
        slice_cache: "slice_cache" ["slice_cache", "object_state.freelists.slices.slice_cache"],
        freelists: "freelists" ["object_state.freelists"],
    }
    /// `PyThreadState`.
    tstate: TstateFields = "PyThreadState" ["PyThreadState", "_ts"] {
        prev: "prev" ["prev"],
        next: "next" ["next"],
        interp: "interp" ["interp"],
        frame: "frame" ["frame"],
        cframe: "cframe" ["cframe"],
        current_frame: "current_frame" ["current_frame"],
        base_frame: "base_frame" ["base_frame"],
        thread_id: "thread_id" ["thread_id"],
        native_thread_id: "native_thread_id" ["native_thread_id"],
        id: "id" ["id"],
        status: "status" ["_status"],
        holds_gil: "holds_gil" ["holds_gil", "_status.holds_gil"],
        datastack_chunk: "datastack_chunk" ["datastack_chunk"],
        datastack_top: "datastack_top" ["datastack_top"],
        datastack_limit: "datastack_limit" ["datastack_limit"],
    }
    /// `_PyStackChunk`.
    stack_chunk: StackChunkFields = "_PyStackChunk" ["_PyStackChunk", "_stack_chunk"] {
        previous: "previous" ["previous"],
        size: "size" ["size"],
        top: "top" ["top"],
        data: "data" ["data"],
    }
    /// `_PyCFrame`.
    cframe: CframeFields = "_PyCFrame" ["_PyCFrame", "CFrame"] {
        current_frame: "current_frame" ["current_frame"],
        previous: "previous" ["previous"],
        use_tracing: "use_tracing" ["use_tracing"],
    }
    /// `PyFrameObject`.
    frame_object: FrameObjectFields = "PyFrameObject" ["PyFrameObject", "_frame"] {
        f_back: "f_back" ["f_back"],
        f_code: "f_code" ["f_code"],
        f_globals: "f_globals" ["f_globals"],
        f_locals: "f_locals" ["f_locals"],
        f_lasti: "f_lasti" ["f_lasti"],
        f_lineno: "f_lineno" ["f_lineno"],
        f_localsplus: "f_localsplus" ["f_localsplus"],
        f_frame: "f_frame" ["f_frame"],
        f_gen: "f_gen" ["f_gen"],
        // A suspended frame's value stack: its top is what a coroutine awaits.
        f_valuestack: "f_valuestack" ["f_valuestack"],
        f_stacktop: "f_stacktop" ["f_stacktop"],
        f_stackdepth: "f_stackdepth" ["f_stackdepth"],
        f_state: "f_state" ["f_state"],
    }
    /// `_PyInterpreterFrame`.
    interp_frame: InterpFrameFields = "_PyInterpreterFrame" ["_PyInterpreterFrame", "_PyInterpreterFrame"] {
        code: "code" ["f_executable", "f_code"],
        previous: "previous" ["previous"],
        funcobj: "funcobj" ["f_funcobj"],
        globals: "globals" ["f_globals"],
        locals: "locals" ["f_locals"],
        frame_obj: "frame_obj" ["frame_obj"],
        instr_ptr: "instr_ptr" ["instr_ptr", "prev_instr"],
        stackpointer: "stackpointer" ["stackpointer", "stacktop"],
        owner: "owner" ["owner"],
        is_entry: "is_entry" ["is_entry"],
        localsplus: "localsplus" ["localsplus"],
    }
    /// `PyCodeObject`.
    code: CodeFields = "PyCodeObject" ["PyCodeObject"] {
        co_argcount: "co_argcount" ["co_argcount"],
        co_nlocals: "co_nlocals" ["co_nlocals"],
        co_flags: "co_flags" ["co_flags"],
        co_firstlineno: "co_firstlineno" ["co_firstlineno"],
        co_code: "co_code" ["co_code"],
        co_code_adaptive: "co_code_adaptive" ["co_code_adaptive"],
        co_varnames: "co_varnames" ["co_varnames"],
        co_cellvars: "co_cellvars" ["co_cellvars"],
        co_freevars: "co_freevars" ["co_freevars"],
        co_localsplusnames: "co_localsplusnames" ["co_localsplusnames"],
        co_localspluskinds: "co_localspluskinds" ["co_localspluskinds"],
        co_nlocalsplus: "co_nlocalsplus" ["co_nlocalsplus"],
        co_stacksize: "co_stacksize" ["co_stacksize"],
        co_framesize: "co_framesize" ["co_framesize"],
        co_filename: "co_filename" ["co_filename"],
        co_name: "co_name" ["co_name"],
        co_qualname: "co_qualname" ["co_qualname"],
        co_lnotab: "co_lnotab" ["co_lnotab"],
        co_linetable: "co_linetable" ["co_linetable"],
        co_firsttraceable: "co_firsttraceable" ["_co_firsttraceable"],
    }
    /// `GCRuntimeState`.
    gc_runtime: GcRuntimeFields = "GCRuntimeState" ["_gc_runtime_state", "gc_runtime_state"] {
        enabled: "enabled" ["enabled"],
        generations: "generations" ["generations"],
        young: "young" ["young"],
        old: "old" ["old"],
        permanent_generation: "permanent_generation" ["permanent_generation"],
        generation0: "generation0" ["generation0"],
        collecting: "collecting" ["collecting"],
        // 3.7–3.14: `struct gc_generation_stats generation_stats[3]`, the
        // totals per generation; 3.15+: a pointer to the `struct gc_stats`
        // rings (`GCStatsRings`).
        generation_stats: "generation_stats" ["generation_stats"],
    }
    /// `GCGeneration`.
    gc_generation: GcGenerationFields = "GCGeneration" ["gc_generation"] {
        head: "head" ["head"],
        threshold: "threshold" ["threshold"],
        count: "count" ["count"],
    }
    /// `struct gc_generation_stats`: up to 3.14 one generation's totals
    /// since the interpreter started; from 3.15 one collection's record in
    /// a ring, its totals up to and including it.
    gc_generation_stats: GcGenerationStatsFields = "GCGenerationStats" ["gc_generation_stats"] {
        ts_start: "ts_start" ["ts_start"],
        ts_stop: "ts_stop" ["ts_stop"],
        collections: "collections" ["collections"],
        collected: "collected" ["collected"],
        uncollectable: "uncollectable" ["uncollectable"],
        candidates: "candidates" ["candidates"],
        duration: "duration" ["duration"],
        heap_size: "heap_size" ["heap_size"],
    }
    /// `struct gc_stats` (3.15+): rings of the last collections' records,
    /// one for the young generation and one per old generation.
    gc_stats: GcStatsRingsFields = "GCStatsRings" ["gc_stats"] {
        young_items: "young_items" ["young.items"],
        young_index: "young_index" ["young.index"],
        old: "old" ["old"],
        update_seq: "update_seq" ["update_seq"],
    }
    /// `struct gc_old_stats_buffer` (3.15+): the ring of an old generation.
    gc_old_stats_buffer: GcOldStatsBufferFields = "GCOldStatsBuffer" ["gc_old_stats_buffer"] {
        items: "items" ["items"],
        index: "index" ["index"],
    }
    /// `GilRuntimeState`.
    gil_runtime: GilRuntimeFields = "GilRuntimeState" ["_gil_runtime_state", "gil_runtime_state"] {
        last_holder: "last_holder" ["last_holder"],
        locked: "locked" ["locked"],
        switch_number: "switch_number" ["switch_number"],
    }
    /// `_obmalloc_state` (3.12+; before, its members are statics of obmalloc.c).
    obmalloc_state: ObmallocStateFields = "_obmalloc_state" ["_obmalloc_state"] {
        arenas: "arenas" ["mgmt.arenas"],
        maxarenas: "maxarenas" ["mgmt.maxarenas"],
    }
    /// `struct arena_object`.
    arena_object: ArenaObjectFields = "arena_object" ["arena_object"] {
        address: "address" ["address"],
        pool_address: "pool_address" ["pool_address"],
        nfreepools: "nfreepools" ["nfreepools"],
        ntotalpools: "ntotalpools" ["ntotalpools"],
    }
    /// `struct pool_header`.
    pool_header: PoolHeaderFields = "pool_header" ["pool_header"] {
        count: "count" ["ref.count"],
        freeblock: "freeblock" ["freeblock"],
        arenaindex: "arenaindex" ["arenaindex"],
        szidx: "szidx" ["szidx"],
        nextoffset: "nextoffset" ["nextoffset"],
        maxnextoffset: "maxnextoffset" ["maxnextoffset"],
    }
    /// `PySetObject` (set and frozenset).
    set: SetFields = "PySetObject" ["PySetObject", "_setobject"] {
        mask: "mask" ["mask"],
        table: "table" ["table"],
    }
    /// `setentry`: a set's hash-table slot.
    set_entry: SetEntryFields = "setentry" ["setentry"] {
        key: "key" ["key"],
        hash: "hash" ["hash"],
    }
    /// `dequeobject` (collections.deque).
    deque: DequeFields = "dequeobject" ["dequeobject"] {
        leftblock: "leftblock" ["leftblock"],
        leftindex: "leftindex" ["leftindex"],
        // 2.7 keeps the length in `len`; 3.x in `ob_size`.
        len: "len" ["len"],
    }
    /// A deque's `struct BLOCK`: `data[BLOCKLEN]` and its links.
    deque_block: DequeBlockFields = "DequeBlock" ["BLOCK"] {
        data: "data" ["data"],
        rightlink: "rightlink" ["rightlink"],
    }
    /// `PyFunctionObject`: every object field it owns.
    function: FunctionFields = "PyFunctionObject" ["PyFunctionObject"] {
        code: "code" ["func_code"],
        globals: "globals" ["func_globals"],
        builtins: "builtins" ["func_builtins"],
        name: "name" ["func_name"],
        qualname: "qualname" ["func_qualname"],
        defaults: "defaults" ["func_defaults"],
        kwdefaults: "kwdefaults" ["func_kwdefaults"],
        closure: "closure" ["func_closure"],
        doc: "doc" ["func_doc"],
        dict: "dict" ["func_dict"],
        module: "module" ["func_module"],
        annotations: "annotations" ["func_annotations"],
        annotate: "annotate" ["func_annotate"],
        typeparams: "typeparams" ["func_typeparams"],
    }
    /// `PyCellObject`.
    cell: CellFields = "PyCellObject" ["PyCellObject"] {
        ob_ref: "ob_ref" ["ob_ref"],
    }
    /// `PyMethodObject`: a bound method (2.7: `instancemethod`).
    method: MethodFields = "PyMethodObject" ["PyMethodObject"] {
        im_func: "im_func" ["im_func"],
        im_self: "im_self" ["im_self"],
        im_class: "im_class" ["im_class"],
    }
    /// `PyGenObject`; coroutines and async generators share its head.
    generator: GeneratorFields = "PyGenObject" ["PyGenObject"] {
        gi_frame: "gi_frame" ["gi_frame"],
        gi_iframe: "gi_iframe" ["gi_iframe"],
        gi_frame_state: "gi_frame_state" ["gi_frame_state"],
    }
    /// `classmethod`.
    classmethod: ClassmethodFields = "classmethod" ["classmethod"] {
        callable: "callable" ["cm_callable"],
        dict: "dict" ["cm_dict"],
    }
    /// `staticmethod`.
    staticmethod: StaticmethodFields = "staticmethod" ["staticmethod"] {
        callable: "callable" ["sm_callable"],
        dict: "dict" ["sm_dict"],
    }
    /// `propertyobject`.
    property: PropertyFields = "propertyobject" ["propertyobject"] {
        get: "get" ["prop_get"],
        set: "set" ["prop_set"],
        del: "del" ["prop_del"],
        doc: "doc" ["prop_doc"],
        name: "name" ["prop_name"],
    }
    /// `FreeList`.
    freelist: FreelistFields = "FreeList" ["_Py_freelist"] {
        head: "head" ["freelist"],
        size: "size" ["size"],
    }
}

/// Static variables looked up in DWARF, as (unit basename or "", name).
pub const VARIABLES: &[(&str, &str)] = &[
    ("", "_PyRuntime"),
    ("pystate.c", "interp_head"),
    ("", "_PyThreadState_Current"),
    ("tupleobject.c", "free_list"),
    ("tupleobject.c", "numfree"),
    ("floatobject.c", "free_list"),
    ("floatobject.c", "numfree"),
    ("intobject.c", "free_list"),
    ("listobject.c", "free_list"),
    ("listobject.c", "numfree"),
    ("dictobject.c", "free_list"),
    ("dictobject.c", "numfree"),
    ("dictobject.c", "keys_free_list"),
    ("dictobject.c", "numfreekeys"),
    ("unicodeobject.c", "free_list"),
    ("unicodeobject.c", "numfree"),
    ("genobject.c", "ag_value_freelist"),
    ("genobject.c", "ag_value_freelist_free"),
    ("genobject.c", "ag_asend_freelist"),
    ("genobject.c", "ag_asend_freelist_free"),
    ("frameobject.c", "free_list"),
    ("frameobject.c", "numfree"),
    ("classobject.c", "free_list"),
    ("classobject.c", "numfree"),
    ("methodobject.c", "free_list"),
    ("methodobject.c", "numfree"),
    ("context.c", "ctx_freelist"),
    ("context.c", "ctx_freelist_len"),
    ("setobject.c", "free_list"),
    ("setobject.c", "numfree"),
    ("sliceobject.c", "slice_cache"),
    ("gcmodule.c", "generations"),
    ("gcmodule.c", "generation_stats"),
    ("", "_PyGC_generation0"),
    ("ceval.c", "gil_last_holder"),
    ("ceval.c", "gil_locked"),
    ("obmalloc.c", "arenas"),
    ("obmalloc.c", "maxarenas"),
];

/// Structures read whole: every top-level member under its C name, for
/// code that iterates members whose set changes between versions (3.14's
/// `_Py_freelists`), as (canonical name, C names).
pub const WHOLE_STRUCTS: &[(&str, &[&str])] = &[("Freelists", &["_Py_freelists"])];

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
    "obmalloc.c",
    "setobject.c",
    "_collectionsmodule.c",
    "funcobject.c",
    "cellobject.c",
    "classobject.c",
    "genobject.c",
    "descrobject.c",
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
    for (name, c_names) in WHOLE_STRUCTS {
        feed(name);
        c_names.iter().for_each(|n| feed(n));
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
