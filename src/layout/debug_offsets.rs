//! `_Py_DebugOffsets` (3.13+): the offsets table CPython keeps at the start
//! of `_PyRuntime`. Its own layout differs in each minor version (members
//! are added in the middle), so the `version` word picks the positions,
//! which are generated data: a new version is a regenerated file.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{FieldLayout, Layout, LayoutSource};
use crate::interpreter::version::{DEBUG_OFFSETS_COOKIE, PythonVersion};
use crate::memory::{BufferMemory, Memory, MemoryExt};
use crate::modules::Module;

/// What a table entry describes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// `sizeof` a structure.
    Size(&'static str),
    /// A field's offset.
    Field(&'static str, &'static str),
}

use Entry::{Field, Size};

/// Each `_Py_DebugOffsets` member pymortem uses, by its C path, and what it
/// gives. The names are stable across versions; where each member sits in a
/// version is data ([`positions`]).
pub(super) const MEMBERS: &[(&str, Entry)] = &[
    ("runtime_state.size", Size("_PyRuntimeState")),
    (
        "runtime_state.finalizing",
        Field("_PyRuntimeState", "finalizing"),
    ),
    (
        "runtime_state.interpreters_head",
        Field("_PyRuntimeState", "interpreters_head"),
    ),
    ("interpreter_state.size", Size("PyInterpreterState")),
    ("interpreter_state.id", Field("PyInterpreterState", "id")),
    (
        "interpreter_state.next",
        Field("PyInterpreterState", "next"),
    ),
    (
        "interpreter_state.threads_head",
        Field("PyInterpreterState", "threads_head"),
    ),
    (
        "interpreter_state.threads_main",
        Field("PyInterpreterState", "threads_main"),
    ),
    ("interpreter_state.gc", Field("PyInterpreterState", "gc")),
    (
        "interpreter_state.imports_modules",
        Field("PyInterpreterState", "modules"),
    ),
    (
        "interpreter_state.sysdict",
        Field("PyInterpreterState", "sysdict"),
    ),
    (
        "interpreter_state.builtins",
        Field("PyInterpreterState", "builtins"),
    ),
    (
        "interpreter_state.ceval_gil",
        Field("PyInterpreterState", "ceval_gil"),
    ),
    (
        "interpreter_state.gil_runtime_state_locked",
        Field("PyInterpreterState", "gil_locked"),
    ),
    (
        "interpreter_state.gil_runtime_state_holder",
        Field("PyInterpreterState", "gil_last_holder"),
    ),
    ("thread_state.size", Size("PyThreadState")),
    ("thread_state.prev", Field("PyThreadState", "prev")),
    ("thread_state.next", Field("PyThreadState", "next")),
    ("thread_state.interp", Field("PyThreadState", "interp")),
    (
        "thread_state.current_frame",
        Field("PyThreadState", "current_frame"),
    ),
    (
        "thread_state.base_frame",
        Field("PyThreadState", "base_frame"),
    ),
    (
        "thread_state.thread_id",
        Field("PyThreadState", "thread_id"),
    ),
    (
        "thread_state.native_thread_id",
        Field("PyThreadState", "native_thread_id"),
    ),
    (
        "thread_state.datastack_chunk",
        Field("PyThreadState", "datastack_chunk"),
    ),
    ("thread_state.status", Field("PyThreadState", "status")),
    ("interpreter_frame.size", Size("_PyInterpreterFrame")),
    (
        "interpreter_frame.previous",
        Field("_PyInterpreterFrame", "previous"),
    ),
    (
        "interpreter_frame.executable",
        Field("_PyInterpreterFrame", "code"),
    ),
    (
        "interpreter_frame.instr_ptr",
        Field("_PyInterpreterFrame", "instr_ptr"),
    ),
    (
        "interpreter_frame.localsplus",
        Field("_PyInterpreterFrame", "localsplus"),
    ),
    (
        "interpreter_frame.owner",
        Field("_PyInterpreterFrame", "owner"),
    ),
    (
        "interpreter_frame.stackpointer",
        Field("_PyInterpreterFrame", "stackpointer"),
    ),
    ("code_object.size", Size("PyCodeObject")),
    ("code_object.filename", Field("PyCodeObject", "co_filename")),
    ("code_object.name", Field("PyCodeObject", "co_name")),
    ("code_object.qualname", Field("PyCodeObject", "co_qualname")),
    (
        "code_object.linetable",
        Field("PyCodeObject", "co_linetable"),
    ),
    (
        "code_object.firstlineno",
        Field("PyCodeObject", "co_firstlineno"),
    ),
    ("code_object.argcount", Field("PyCodeObject", "co_argcount")),
    (
        "code_object.localsplusnames",
        Field("PyCodeObject", "co_localsplusnames"),
    ),
    (
        "code_object.localspluskinds",
        Field("PyCodeObject", "co_localspluskinds"),
    ),
    (
        "code_object.co_code_adaptive",
        Field("PyCodeObject", "co_code_adaptive"),
    ),
    ("pyobject.size", Size("PyObject")),
    ("pyobject.ob_type", Field("PyObject", "ob_type")),
    ("type_object.size", Size("PyTypeObject")),
    ("type_object.tp_name", Field("PyTypeObject", "tp_name")),
    ("type_object.tp_repr", Field("PyTypeObject", "tp_repr")),
    ("type_object.tp_flags", Field("PyTypeObject", "tp_flags")),
    (
        "type_object.tp_basicsize",
        Field("PyTypeObject", "tp_basicsize"),
    ),
    (
        "type_object.tp_dictoffset",
        Field("PyTypeObject", "tp_dictoffset"),
    ),
    ("heap_type_object.size", Size("PyHeapTypeObject")),
    (
        "heap_type_object.ht_cached_keys",
        Field("PyHeapTypeObject", "ht_cached_keys"),
    ),
    ("tuple_object.size", Size("PyTupleObject")),
    ("tuple_object.ob_item", Field("PyTupleObject", "ob_item")),
    ("tuple_object.ob_size", Field("PyVarObject", "ob_size")),
    ("list_object.size", Size("PyListObject")),
    ("list_object.ob_item", Field("PyListObject", "ob_item")),
    ("dict_object.size", Size("PyDictObject")),
    ("dict_object.ma_keys", Field("PyDictObject", "ma_keys")),
    ("dict_object.ma_values", Field("PyDictObject", "ma_values")),
    ("float_object.size", Size("PyFloatObject")),
    ("float_object.ob_fval", Field("PyFloatObject", "ob_fval")),
    ("long_object.size", Size("PyLongObject")),
    ("long_object.lv_tag", Field("PyLongObject", "lv_tag")),
    ("long_object.ob_digit", Field("PyLongObject", "ob_digit")),
    ("bytes_object.size", Size("PyBytesObject")),
    ("bytes_object.ob_sval", Field("PyBytesObject", "ob_sval")),
    ("unicode_object.size", Size("PyUnicodeObject")),
    ("unicode_object.state", Field("PyASCIIObject", "state")),
    ("unicode_object.length", Field("PyASCIIObject", "length")),
    ("unicode_object.asciiobject_size", Size("PyASCIIObject")),
    ("gc.size", Size("GCRuntimeState")),
    ("gc.collecting", Field("GCRuntimeState", "collecting")),
    // 3.15+: the pointer to the collections' rings, and their `sizeof`.
    (
        "gc.generation_stats",
        Field("GCRuntimeState", "generation_stats"),
    ),
    ("gc.generation_stats_size", Size("GCStatsRings")),
];

/// `layouts/debug-offsets.toml`: the byte position of every member of
/// `_Py_DebugOffsets`, per minor version, generated from DWARF by
/// `sample-cores/emit_debug_offsets.py`.
const POSITIONS_TOML: &str = include_str!("../../layouts/debug-offsets.toml");

/// What the reader of one version's table needs: (position, entry), in
/// position order, with their C paths.
type Positions = Vec<(u64, &'static str, &'static Entry)>;

/// The entries of `major.minor`'s table, parsed once per process; `None`
/// when the data has no such version.
fn positions(major: u8, minor: u8) -> Option<&'static Positions> {
    static PARSED: OnceLock<BTreeMap<String, Positions>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse_positions(POSITIONS_TOML))
        .get(&format!("{major}.{minor}"))
}

/// Every member of a version's `_Py_DebugOffsets`, used or not, by C path.
type AllMembers = BTreeMap<String, BTreeMap<String, u64>>;

fn all_members() -> &'static AllMembers {
    static PARSED: OnceLock<AllMembers> = OnceLock::new();
    PARSED.get_or_init(|| toml::from_str(POSITIONS_TOML).unwrap_or_default())
}

/// Every member of `major.minor`'s `_Py_DebugOffsets` past the header, used
/// by pymortem or not, as (position, C path) in position order: what an
/// alignment onto another version's table needs.
pub(super) fn all_positions(major: u8, minor: u8) -> Option<Vec<(u64, &'static str)>> {
    let members = all_members().get(&format!("{major}.{minor}"))?;
    let mut all: Vec<(u64, &'static str)> = members
        .iter()
        .filter(|(_, position)| **position >= HEADER)
        .map(|(path, position)| (*position, path.as_str()))
        .collect();
    all.sort();
    Some(all)
}

/// The versions whose member positions the data holds, newest first.
pub(super) fn versions_with_positions() -> Vec<(u8, u8)> {
    let mut versions: Vec<(u8, u8)> = all_members()
        .keys()
        .filter_map(|v| {
            let (major, minor) = v.split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .collect();
    versions.sort_by(|a, b| b.cmp(a));
    versions
}

/// The version and free-threaded flag of the `_Py_DebugOffsets` at `address`.
pub(super) fn header(memory: &impl Memory, address: u64) -> Option<(PythonVersion, u64)> {
    let mut header = [0u8; HEADER as usize];
    memory.read_exact_at(address, &mut header).ok()?;
    if &header[..8] != DEBUG_OFFSETS_COOKIE {
        return None;
    }
    let version = PythonVersion::from_hex(u64::from_le_bytes(header[8..16].try_into().ok()?))?;
    Some((version, u64::from_le_bytes(header[16..24].try_into().ok()?)))
}

fn parse_positions(text: &str) -> BTreeMap<String, Positions> {
    // The file is part of the source tree, checked by a test; a damaged one
    // leaves no version to read rather than failing.
    let Ok(versions) = toml::from_str::<BTreeMap<String, BTreeMap<String, u64>>>(text) else {
        return BTreeMap::new();
    };
    versions
        .into_iter()
        .map(|(version, members)| {
            let mut entries: Positions = MEMBERS
                .iter()
                .filter_map(|(path, entry)| Some((*members.get(*path)?, *path, entry)))
                .collect();
            entries.sort_by_key(|(position, ..)| *position);
            (version, entries)
        })
        .collect()
}

/// A value in the table larger than this is not an offset or size.
pub(super) const MAX_PLAUSIBLE: u64 = 1 << 24;

/// Read `_Py_DebugOffsets` at `address` and lay its values over `base` (the
/// table layout for the same version). Returns the layout and the fields
/// whose table value disagreed with `base`, as `Struct.field: base → core`.
pub fn apply(
    memory: &impl Memory,
    address: u64,
    mut base: Layout,
) -> Option<(Layout, PythonVersion, Vec<String>)> {
    let (version, free_threaded) = header(memory, address)?;
    if free_threaded != 0 {
        // Free-threaded builds have other object headers; the tables do not cover them.
        return None;
    }
    let entries = positions(version.major, version.minor)?;
    let table_name = match &base.source {
        LayoutSource::Table { table, micro, .. } => format!("{table} ({micro})"),
        _ => String::new(),
    };
    let mut changed = Vec::new();
    for (pos, _, entry) in entries {
        let Ok(value) = memory.read_u64(address.wrapping_add(*pos)) else {
            continue;
        };
        if value > MAX_PLAUSIBLE {
            continue;
        }
        set_entry(&mut base, entry, value, &mut changed, false);
    }
    base.source = LayoutSource::DebugOffsets {
        address,
        table: table_name,
        inferred: None,
    };
    Some((base, version, changed))
}

/// Lay `value` over `layout`'s `entry`, noting in `changed` a value that
/// differs from the layout's and, with `note_added`, a field it lacked.
pub(super) fn set_entry(
    layout: &mut Layout,
    entry: &Entry,
    value: u64,
    changed: &mut Vec<String>,
    note_added: bool,
) {
    match entry {
        Size(name) => {
            if let Some(s) = layout.structs.get_mut(*name)
                && s.size != value
            {
                changed.push(format!("sizeof {name}: {} → {value}", s.size));
                s.size = value;
            }
        }
        Field(name, field) => {
            let Some(s) = layout.structs.get_mut(*name) else {
                return;
            };
            match s.fields.get_mut(*field) {
                Some(f) if f.offset != value => {
                    changed.push(format!("{name}.{field}: {} → {value}", f.offset));
                    f.offset = value;
                }
                Some(_) => {}
                None => {
                    if note_added {
                        changed.push(format!("{name}.{field}: none → {value}"));
                    }
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

/// Bytes of the `_Py_DebugOffsets` header: cookie, version, free-threaded flag.
pub(super) const HEADER: u64 = 24;

/// `_Py_DebugOffsets` as compiled into `module`'s file, whose `_PyRuntime`
/// is at `runtime` in the process: its initial value in the `.PyRuntime`
/// data, which the process never changes. Served at `runtime`, so that
/// [`apply`] reads it as it reads the process's copy.
pub fn file_copy(module: &Module, runtime: u64) -> Option<BufferMemory> {
    let (version, _) = header(&file_bytes(module, runtime, HEADER)?, runtime)?;
    let len = positions(version.major, version.minor)?
        .last()
        .map_or(HEADER, |(position, ..)| position + 8);
    file_bytes(module, runtime, len)
}

/// The first `len` bytes of `_PyRuntime` as compiled into `module`'s file
/// (see [`file_copy`]), for a version whose positions are not known.
pub(super) fn file_bytes(module: &Module, runtime: u64, len: u64) -> Option<BufferMemory> {
    let image = module.file()?;
    let at = runtime.checked_sub(module.load_bias?)?;
    let bytes = image.read_at_address(at, len)?;
    (bytes.get(..8) == Some(DEBUG_OFFSETS_COOKIE.as_slice())).then_some(BufferMemory {
        base: runtime,
        bytes,
    })
}

/// Where two copies of `_Py_DebugOffsets` at `address` differ, among its
/// header and the members pymortem uses (placed as in `reference`'s
/// version): C paths, `header` for the cookie, version or build flag.
pub fn differences(
    reference: &impl Memory,
    other: &impl Memory,
    address: u64,
) -> Vec<&'static str> {
    let mut header = ([0u8; HEADER as usize], [0u8; HEADER as usize]);
    if reference.read_exact_at(address, &mut header.0).is_err() {
        return Vec::new();
    }
    let mut differ = Vec::new();
    if other.read_exact_at(address, &mut header.1).is_err() || header.0 != header.1 {
        differ.push("header");
    }
    let Some((version, _)) = self::header(reference, address) else {
        return differ;
    };
    for (position, path, _) in positions(version.major, version.minor)
        .into_iter()
        .flatten()
    {
        let at = address.wrapping_add(*position);
        if reference.read_u64(at).ok() != other.read_u64(at).ok() {
            differ.push(path);
        }
    }
    differ
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::spec::STRUCTS;

    #[test]
    fn every_member_names_a_structure_and_field_of_the_spec() {
        for (path, entry) in MEMBERS {
            let (name, field) = match entry {
                Size(name) => (*name, None),
                Field(name, field) => (*name, Some(*field)),
            };
            let spec = STRUCTS
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{path}: no structure {name} in the spec"));
            if let Some(field) = field {
                assert!(
                    spec.fields.iter().any(|(canonical, _)| *canonical == field),
                    "{path}: {name} has no field {field} in the spec"
                );
            }
        }
    }

    #[test]
    fn the_data_places_every_used_member_of_each_version() {
        for minor in [13, 14, 15] {
            let entries = positions(3, minor).unwrap_or_else(|| panic!("no 3.{minor} table"));
            // The members every version has: the runtime, interpreter,
            // thread and frame walks need them.
            for needed in [
                "runtime_state.interpreters_head",
                "interpreter_state.threads_head",
                "thread_state.current_frame",
                "interpreter_frame.previous",
                "code_object.filename",
            ] {
                let entry = &MEMBERS.iter().find(|(p, _)| *p == needed).unwrap().1;
                assert!(
                    entries.iter().any(|(_, _, e)| *e == entry),
                    "3.{minor}: {needed} is not placed"
                );
            }
            let positions: Vec<u64> = entries.iter().map(|(p, ..)| *p).collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "3.{minor}: positions are distinct and in order"
            );
        }
    }
}
