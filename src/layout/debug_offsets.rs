//! `_Py_DebugOffsets` (3.13+): the offsets table CPython keeps at the start
//! of `_PyRuntime`. Its own layout differs in each of 3.13, 3.14 and 3.15,
//! so the `version` word picks the reader (cpython-internals.md §11.2).

use super::version::{DEBUG_OFFSETS_COOKIE, PythonVersion};
use super::{FieldLayout, Layout, LayoutSource};
use crate::memory::{Memory, MemoryExt};

/// What a table entry describes.
enum Entry {
    /// `sizeof` a structure.
    Size(&'static str),
    /// A field's offset.
    Field(&'static str, &'static str),
}

use Entry::{Field, Size};

/// Entries of the 3.13 table, by position (each a `uint64_t`).
const TABLE_3_13: &[(u64, Entry)] = &[
    (24, Size("_PyRuntimeState")),
    (32, Field("_PyRuntimeState", "finalizing")),
    (40, Field("_PyRuntimeState", "interpreters_head")),
    (48, Size("PyInterpreterState")),
    (56, Field("PyInterpreterState", "id")),
    (64, Field("PyInterpreterState", "next")),
    (72, Field("PyInterpreterState", "threads_head")),
    (80, Field("PyInterpreterState", "gc")),
    (88, Field("PyInterpreterState", "modules")),
    (96, Field("PyInterpreterState", "sysdict")),
    (104, Field("PyInterpreterState", "builtins")),
    (112, Field("PyInterpreterState", "ceval_gil")),
    (136, Field("PyInterpreterState", "gil_locked")),
    (144, Field("PyInterpreterState", "gil_last_holder")),
    (152, Size("PyThreadState")),
    (160, Field("PyThreadState", "prev")),
    (168, Field("PyThreadState", "next")),
    (176, Field("PyThreadState", "interp")),
    (184, Field("PyThreadState", "current_frame")),
    (192, Field("PyThreadState", "thread_id")),
    (200, Field("PyThreadState", "native_thread_id")),
    (208, Field("PyThreadState", "datastack_chunk")),
    (216, Field("PyThreadState", "status")),
    (224, Size("_PyInterpreterFrame")),
    (232, Field("_PyInterpreterFrame", "previous")),
    (240, Field("_PyInterpreterFrame", "code")),
    (248, Field("_PyInterpreterFrame", "instr_ptr")),
    (256, Field("_PyInterpreterFrame", "localsplus")),
    (264, Field("_PyInterpreterFrame", "owner")),
    (272, Size("PyCodeObject")),
    (280, Field("PyCodeObject", "co_filename")),
    (288, Field("PyCodeObject", "co_name")),
    (296, Field("PyCodeObject", "co_qualname")),
    (304, Field("PyCodeObject", "co_linetable")),
    (312, Field("PyCodeObject", "co_firstlineno")),
    (320, Field("PyCodeObject", "co_argcount")),
    (328, Field("PyCodeObject", "co_localsplusnames")),
    (336, Field("PyCodeObject", "co_localspluskinds")),
    (344, Field("PyCodeObject", "co_code_adaptive")),
    (352, Size("PyObject")),
    (360, Field("PyObject", "ob_type")),
    (368, Size("PyTypeObject")),
    (376, Field("PyTypeObject", "tp_name")),
    (384, Field("PyTypeObject", "tp_repr")),
    (392, Field("PyTypeObject", "tp_flags")),
    (400, Size("PyTupleObject")),
    (408, Field("PyTupleObject", "ob_item")),
    (416, Field("PyVarObject", "ob_size")),
    (424, Size("PyListObject")),
    (432, Field("PyListObject", "ob_item")),
    (448, Size("PyDictObject")),
    (456, Field("PyDictObject", "ma_keys")),
    (464, Field("PyDictObject", "ma_values")),
    (472, Size("PyFloatObject")),
    (480, Field("PyFloatObject", "ob_fval")),
    (488, Size("PyLongObject")),
    (496, Field("PyLongObject", "lv_tag")),
    (504, Field("PyLongObject", "ob_digit")),
    (512, Size("PyBytesObject")),
    (528, Field("PyBytesObject", "ob_sval")),
    (536, Size("PyUnicodeObject")),
    (544, Field("PyASCIIObject", "state")),
    (552, Field("PyASCIIObject", "length")),
    (560, Size("PyASCIIObject")),
    (568, Size("GCRuntimeState")),
    (576, Field("GCRuntimeState", "collecting")),
];

/// Entries of the 3.14 table.
const TABLE_3_14: &[(u64, Entry)] = &[
    (24, Size("_PyRuntimeState")),
    (32, Field("_PyRuntimeState", "finalizing")),
    (40, Field("_PyRuntimeState", "interpreters_head")),
    (48, Size("PyInterpreterState")),
    (56, Field("PyInterpreterState", "id")),
    (64, Field("PyInterpreterState", "next")),
    (72, Field("PyInterpreterState", "threads_head")),
    (80, Field("PyInterpreterState", "threads_main")),
    (88, Field("PyInterpreterState", "gc")),
    (96, Field("PyInterpreterState", "modules")),
    (104, Field("PyInterpreterState", "sysdict")),
    (112, Field("PyInterpreterState", "builtins")),
    (120, Field("PyInterpreterState", "ceval_gil")),
    (144, Field("PyInterpreterState", "gil_locked")),
    (152, Field("PyInterpreterState", "gil_last_holder")),
    (176, Size("PyThreadState")),
    (184, Field("PyThreadState", "prev")),
    (192, Field("PyThreadState", "next")),
    (200, Field("PyThreadState", "interp")),
    (208, Field("PyThreadState", "current_frame")),
    (216, Field("PyThreadState", "thread_id")),
    (224, Field("PyThreadState", "native_thread_id")),
    (232, Field("PyThreadState", "datastack_chunk")),
    (240, Field("PyThreadState", "status")),
    (248, Size("_PyInterpreterFrame")),
    (256, Field("_PyInterpreterFrame", "previous")),
    (264, Field("_PyInterpreterFrame", "code")),
    (272, Field("_PyInterpreterFrame", "instr_ptr")),
    (280, Field("_PyInterpreterFrame", "localsplus")),
    (288, Field("_PyInterpreterFrame", "owner")),
    (296, Field("_PyInterpreterFrame", "stackpointer")),
    (312, Size("PyCodeObject")),
    (320, Field("PyCodeObject", "co_filename")),
    (328, Field("PyCodeObject", "co_name")),
    (336, Field("PyCodeObject", "co_qualname")),
    (344, Field("PyCodeObject", "co_linetable")),
    (352, Field("PyCodeObject", "co_firstlineno")),
    (360, Field("PyCodeObject", "co_argcount")),
    (368, Field("PyCodeObject", "co_localsplusnames")),
    (376, Field("PyCodeObject", "co_localspluskinds")),
    (384, Field("PyCodeObject", "co_code_adaptive")),
    (400, Size("PyObject")),
    (408, Field("PyObject", "ob_type")),
    (416, Size("PyTypeObject")),
    (424, Field("PyTypeObject", "tp_name")),
    (432, Field("PyTypeObject", "tp_repr")),
    (440, Field("PyTypeObject", "tp_flags")),
    (448, Size("PyTupleObject")),
    (456, Field("PyTupleObject", "ob_item")),
    (464, Field("PyVarObject", "ob_size")),
    (472, Size("PyListObject")),
    (480, Field("PyListObject", "ob_item")),
    (528, Size("PyDictObject")),
    (536, Field("PyDictObject", "ma_keys")),
    (544, Field("PyDictObject", "ma_values")),
    (552, Size("PyFloatObject")),
    (560, Field("PyFloatObject", "ob_fval")),
    (568, Size("PyLongObject")),
    (576, Field("PyLongObject", "lv_tag")),
    (584, Field("PyLongObject", "ob_digit")),
    (592, Size("PyBytesObject")),
    (608, Field("PyBytesObject", "ob_sval")),
    (616, Size("PyUnicodeObject")),
    (624, Field("PyASCIIObject", "state")),
    (632, Field("PyASCIIObject", "length")),
    (640, Size("PyASCIIObject")),
    (648, Size("GCRuntimeState")),
    (656, Field("GCRuntimeState", "collecting")),
];

/// Entries of the 3.15 table: the thread state gains `base_frame`, the
/// profiler's and the GIL's fields and the exception state; the type object
/// gains `tp_basicsize` and `tp_dictoffset`, and `heap_type_object` is new;
/// every later position moves.
const TABLE_3_15: &[(u64, Entry)] = &[
    (24, Size("_PyRuntimeState")),
    (32, Field("_PyRuntimeState", "finalizing")),
    (40, Field("_PyRuntimeState", "interpreters_head")),
    (48, Size("PyInterpreterState")),
    (56, Field("PyInterpreterState", "id")),
    (64, Field("PyInterpreterState", "next")),
    (72, Field("PyInterpreterState", "threads_head")),
    (80, Field("PyInterpreterState", "threads_main")),
    (88, Field("PyInterpreterState", "gc")),
    (96, Field("PyInterpreterState", "modules")),
    (104, Field("PyInterpreterState", "sysdict")),
    (112, Field("PyInterpreterState", "builtins")),
    (120, Field("PyInterpreterState", "ceval_gil")),
    (144, Field("PyInterpreterState", "gil_locked")),
    (152, Field("PyInterpreterState", "gil_last_holder")),
    (176, Size("PyThreadState")),
    (184, Field("PyThreadState", "prev")),
    (192, Field("PyThreadState", "next")),
    (200, Field("PyThreadState", "interp")),
    (208, Field("PyThreadState", "current_frame")),
    (240, Field("PyThreadState", "thread_id")),
    (248, Field("PyThreadState", "native_thread_id")),
    (256, Field("PyThreadState", "datastack_chunk")),
    (264, Field("PyThreadState", "status")),
    (312, Size("_PyInterpreterFrame")),
    (320, Field("_PyInterpreterFrame", "previous")),
    (328, Field("_PyInterpreterFrame", "code")),
    (336, Field("_PyInterpreterFrame", "instr_ptr")),
    (344, Field("_PyInterpreterFrame", "localsplus")),
    (352, Field("_PyInterpreterFrame", "owner")),
    (360, Field("_PyInterpreterFrame", "stackpointer")),
    (376, Size("PyCodeObject")),
    (384, Field("PyCodeObject", "co_filename")),
    (392, Field("PyCodeObject", "co_name")),
    (400, Field("PyCodeObject", "co_qualname")),
    (408, Field("PyCodeObject", "co_linetable")),
    (416, Field("PyCodeObject", "co_firstlineno")),
    (424, Field("PyCodeObject", "co_argcount")),
    (432, Field("PyCodeObject", "co_localsplusnames")),
    (440, Field("PyCodeObject", "co_localspluskinds")),
    (448, Field("PyCodeObject", "co_code_adaptive")),
    (464, Size("PyObject")),
    (472, Field("PyObject", "ob_type")),
    (480, Size("PyTypeObject")),
    (488, Field("PyTypeObject", "tp_name")),
    (496, Field("PyTypeObject", "tp_repr")),
    (504, Field("PyTypeObject", "tp_flags")),
    (512, Field("PyTypeObject", "tp_basicsize")),
    (520, Field("PyTypeObject", "tp_dictoffset")),
    (528, Size("PyHeapTypeObject")),
    (536, Field("PyHeapTypeObject", "ht_cached_keys")),
    (544, Size("PyTupleObject")),
    (552, Field("PyTupleObject", "ob_item")),
    (560, Field("PyVarObject", "ob_size")),
    (568, Size("PyListObject")),
    (576, Field("PyListObject", "ob_item")),
    (624, Size("PyDictObject")),
    (632, Field("PyDictObject", "ma_keys")),
    (640, Field("PyDictObject", "ma_values")),
    (648, Size("PyFloatObject")),
    (656, Field("PyFloatObject", "ob_fval")),
    (664, Size("PyLongObject")),
    (672, Field("PyLongObject", "lv_tag")),
    (680, Field("PyLongObject", "ob_digit")),
    (688, Size("PyBytesObject")),
    (704, Field("PyBytesObject", "ob_sval")),
    (712, Size("PyUnicodeObject")),
    (720, Field("PyASCIIObject", "state")),
    (728, Field("PyASCIIObject", "length")),
    (736, Size("PyASCIIObject")),
    (752, Size("GCRuntimeState")),
    (760, Field("GCRuntimeState", "collecting")),
];

/// A value in the table larger than this is not an offset or size.
const MAX_PLAUSIBLE: u64 = 1 << 24;

/// Read `_Py_DebugOffsets` at `address` and lay its values over `base` (the
/// table layout for the same version). Returns the layout and the fields
/// whose table value disagreed with `base`, as `Struct.field: base → core`.
pub fn apply(
    memory: &impl Memory,
    address: u64,
    mut base: Layout,
) -> Option<(Layout, PythonVersion, Vec<String>)> {
    let mut header = [0u8; 24];
    memory.read_exact_at(address, &mut header).ok()?;
    if &header[..8] != DEBUG_OFFSETS_COOKIE {
        return None;
    }
    let hex = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let version = PythonVersion::from_hex(hex)?;
    let free_threaded = u64::from_le_bytes(header[16..24].try_into().ok()?);
    if free_threaded != 0 {
        // Free-threaded builds have other object headers; the tables do not cover them.
        return None;
    }
    let entries = match (version.major, version.minor) {
        (3, 13) => TABLE_3_13,
        (3, 14) => TABLE_3_14,
        (3, 15) => TABLE_3_15,
        _ => return None,
    };
    let table_name = match &base.source {
        LayoutSource::Table { table, micro, .. } => format!("{table} ({micro})"),
        _ => String::new(),
    };
    let mut changed = Vec::new();
    for (pos, entry) in entries {
        let Ok(value) = memory.read_u64(address.wrapping_add(*pos)) else {
            continue;
        };
        if value > MAX_PLAUSIBLE {
            continue;
        }
        match entry {
            Size(name) => {
                if let Some(s) = base.structs.get_mut(*name)
                    && s.size != value
                {
                    changed.push(format!("sizeof {name}: {} → {value}", s.size));
                    s.size = value;
                }
            }
            Field(name, field) => {
                let Some(s) = base.structs.get_mut(*name) else {
                    continue;
                };
                match s.fields.get_mut(*field) {
                    Some(f) if f.offset != value => {
                        changed.push(format!("{name}.{field}: {} → {value}", f.offset));
                        f.offset = value;
                    }
                    Some(_) => {}
                    None => {
                        s.fields.insert(
                            field.to_string(),
                            FieldLayout {
                                c_path: field.to_string(),
                                offset: value,
                                size: 8,
                                bit_offset: None,
                                bit_size: None,
                            },
                        );
                    }
                }
            }
        }
    }
    base.source = LayoutSource::DebugOffsets {
        address,
        table: table_name,
    };
    Some((base, version, changed))
}
