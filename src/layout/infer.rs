//! A layout for a CPython version that has neither member positions nor a
//! built-in table (3.16 the day it ships): the core's `_Py_DebugOffsets`
//! read with the positions of a version pymortem knows, completed from the
//! nearest older table.
//!
//! New versions insert members in the middle of `_Py_DebugOffsets`'s
//! sections (3.15 put `thread_state.base_frame` and two more after
//! `current_frame`), so reading a new core at old positions misreads every
//! member after an insertion, and taking or refusing the whole table makes
//! one insertion cost every member. Instead the known version's members,
//! in order, are aligned onto the core's sequence of words (`align`):
//! order-preserving, members mostly surviving (a removed member costs more
//! than an anchor gains), anchored on the words that equal the value a
//! member is expected to have. The expectations come from the core's own
//! static type objects where one says it (`tp_basicsize` of `tuple` is
//! where `ob_item` starts: exact for this build), else from the nearest
//! older table (most offsets do not move between versions). Among the
//! alignments with the most anchors, those are preferred in which
//! neighbouring fields of one section keep the distance the table gives
//! them (an insertion in a structure moves the fields after it together),
//! which places the fields between two anchors that all moved. A member is
//! placed only when every best alignment gives it the same value; the rest
//! are *guessed*: their values are the older table's. The placed values
//! must then agree with each other ([`read_with_positions`]) and the layout
//! with the core (`validate`), or the candidate is refused. Fields that
//! `_Py_DebugOffsets` does not describe are the table's, moved as the placed
//! field before them moved (3.15's `datastack_top` moved with
//! `datastack_chunk`).
//!
//! Measured against DWARF on the sample cores (`tests/it/layout_inferred.rs`):
//! 3.15 read with 3.14's positions and table places 66 members, all right,
//! and guesses 9 (the new `heap_type_object` section, 3.15's `gc` section
//! and `base_frame`, which 3.14 lacks); 3.14 read with 3.13's places 60,
//! all right, and guesses 15, among them `interpreter_frame.localsplus` and
//! `owner`, which nothing anchors: wrong, so are the stacks read with them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::debug_offsets::{self, Entry, HEADER, MAX_PLAUSIBLE, MEMBERS};
use super::{Layout, LayoutSource, VersionRules};
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;

/// Why a reading of `_Py_DebugOffsets` with a known version's positions
/// was refused: what the core's values contradict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How an inferred layout was made: the `inferred` of a `debug_offsets`
/// layout source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inference {
    /// The core's version, `X.Y`, which pymortem has no positions or table for.
    pub version: String,
    /// The version whose member positions were aligned onto the core's
    /// `_Py_DebugOffsets`, `X.Y`.
    pub positions: String,
    /// The members pymortem uses that were read from the core.
    pub placed: Vec<InferredMember>,
    /// The members pymortem uses that could not be placed: their values
    /// are the completing table's (absent where it lacks them), guesses.
    pub guessed: Vec<InferredMember>,
}

/// One `_Py_DebugOffsets` member pymortem uses and the layout entry it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferredMember {
    /// Its C path in `_Py_DebugOffsets` (`thread_state.native_thread_id`).
    pub member: String,
    /// The structure it describes, by canonical name (`PyThreadState`).
    pub structure: String,
    /// The field, by canonical name; `None` for the structure's size.
    pub field: Option<String>,
}

impl InferredMember {
    fn of(path: &str, entry: &Entry) -> InferredMember {
        let (structure, field) = match entry {
            Entry::Size(name) => (*name, None),
            Entry::Field(name, field) => (*name, Some(field.to_string())),
        };
        InferredMember {
            member: path.to_string(),
            structure: structure.to_string(),
            field,
        }
    }
}

/// Members pymortem does not use whose values the table still predicts:
/// anchors for the alignment only.
const HINTS: &[(&str, Entry)] = &[
    (
        "list_object.ob_size",
        Entry::Field("PyVarObject", "ob_size"),
    ),
    (
        "bytes_object.ob_size",
        Entry::Field("PyVarObject", "ob_size"),
    ),
    ("set_object.size", Entry::Size("PySetObject")),
    ("set_object.table", Entry::Field("PySetObject", "table")),
    ("set_object.mask", Entry::Field("PySetObject", "mask")),
    ("gen_object.size", Entry::Size("PyGenObject")),
    (
        "gen_object.gi_iframe",
        Entry::Field("PyGenObject", "gi_iframe"),
    ),
    (
        "gen_object.gi_frame_state",
        Entry::Field("PyGenObject", "gi_frame_state"),
    ),
];

/// Members that read 0 on every default (not free-threaded) build.
const ZERO_ON_DEFAULT_BUILDS: &[&str] = &["interpreter_state.gil_runtime_state_enabled"];

/// How a member follows from a static type's `tp_basicsize`.
#[derive(Clone, Copy)]
enum FromBasicsize {
    /// It is `tp_basicsize`.
    Basic,
    /// `tp_basicsize - 1` (bytes: `PyBytesObject_SIZE` counts the NUL).
    LessOne,
    /// `sizeof`: `tp_basicsize` plus one item (`ob_item[1]`), rounded up to 8.
    WithItem,
}

/// The members that the core's static type objects give, by their
/// exported symbols.
const BY_BASICSIZE: &[(&str, &str, FromBasicsize)] = &[
    ("PyBaseObject_Type", "pyobject.size", FromBasicsize::Basic),
    ("PyType_Type", "heap_type_object.size", FromBasicsize::Basic),
    ("PyTuple_Type", "tuple_object.ob_item", FromBasicsize::Basic),
    ("PyTuple_Type", "tuple_object.size", FromBasicsize::WithItem),
    ("PyList_Type", "list_object.size", FromBasicsize::Basic),
    ("PyDict_Type", "dict_object.size", FromBasicsize::Basic),
    ("PyFloat_Type", "float_object.size", FromBasicsize::Basic),
    ("PyLong_Type", "long_object.ob_digit", FromBasicsize::Basic),
    ("PyLong_Type", "long_object.size", FromBasicsize::WithItem),
    (
        "PyBytes_Type",
        "bytes_object.ob_sval",
        FromBasicsize::LessOne,
    ),
    ("PyBytes_Type", "bytes_object.size", FromBasicsize::WithItem),
    (
        "PyUnicode_Type",
        "unicode_object.size",
        FromBasicsize::Basic,
    ),
    (
        "PyCode_Type",
        "code_object.co_code_adaptive",
        FromBasicsize::Basic,
    ),
    ("PyCode_Type", "code_object.size", FromBasicsize::WithItem),
    ("PySet_Type", "set_object.size", FromBasicsize::Basic),
];

/// Values of `_Py_DebugOffsets` members that the core's own static type
/// objects give (`tp_basicsize` of `tuple` is where `ob_item` starts),
/// read with `base`'s offsets of `tp_basicsize` and `tp_itemsize`, which
/// have not moved since 2.x. Empty unless `object`'s size reads as `base`'s
/// `sizeof PyObject`, which confirms those offsets.
pub fn type_object_predictions(
    memory: &impl Memory,
    module: &Module,
    base: &Layout,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    let (Some(basic_at), Some(item_at)) = (
        base.offset("PyTypeObject", "tp_basicsize"),
        base.offset("PyTypeObject", "tp_itemsize"),
    ) else {
        return out;
    };
    for (symbol, member, how) in BY_BASICSIZE {
        let Some(ty) = module.symbol_address(symbol, None) else {
            continue;
        };
        let (Ok(basic), Ok(item)) = (
            memory.read_u64(ty.wrapping_add(basic_at)),
            memory.read_u64(ty.wrapping_add(item_at)),
        ) else {
            continue;
        };
        if basic == 0 || basic > MAX_PLAUSIBLE || item > 64 {
            continue;
        }
        let value = match how {
            FromBasicsize::Basic => basic,
            FromBasicsize::LessOne => basic - 1,
            FromBasicsize::WithItem => (basic + item.max(1)).next_multiple_of(8),
        };
        out.insert(*member, value);
    }
    if out.get("pyobject.size").copied() != base.size("PyObject") {
        out.clear();
    }
    out
}

/// The value the table gives a member, or `None`.
fn table_value(base: &Layout, entry: &Entry) -> Option<u64> {
    match entry {
        Entry::Size(name) => base.size(name),
        Entry::Field(name, field) => base.offset(name, field),
    }
}

/// What the alignment knows of one member of the known version.
#[derive(Debug, Clone)]
pub(crate) struct Slot<'a> {
    /// Its C path, `section.member`.
    pub path: &'a str,
    /// The value it is expected to have, when something predicts one.
    pub expected: Option<u64>,
}

impl Slot<'_> {
    fn section(&self) -> &str {
        self.path.split_once('.').map_or(self.path, |(s, _)| s)
    }
    fn is_size(&self) -> bool {
        self.path.ends_with(".size")
    }
}

/// Scores of an alignment: anchors first, then kept distances; a member
/// the new version would have removed costs more than one anchor gains.
const ANCHOR: i64 = 1000;
const KEPT_DISTANCE: i64 = 1;
const REMOVED: i64 = 1500;
const NONE: i64 = i64::MIN / 4;

/// Align `slots` (a known version's members, in order) onto `words` (the
/// core's `_Py_DebugOffsets` past its header): each slot goes to a word
/// after the previous slot's, or is removed. The best alignments have the
/// most anchors (a word equal to the slot's expected value), then the most
/// kept distances (two neighbouring fields of a section, both expected,
/// whose words differ by what their expected values differ by), less the
/// removed slots. Returns, for each slot, its value when every best
/// alignment gives it that one value and keeps it; `None` otherwise.
pub(crate) fn align(slots: &[Slot<'_>], words: &[u64]) -> Vec<Option<u64>> {
    let (m, n) = (slots.len(), words.len());
    // A distance is kept between slot i-1 and slot i.
    let pairable: Vec<bool> = (0..m)
        .map(|i| {
            i > 0
                && slots[i].section() == slots[i - 1].section()
                && !slots[i].is_size()
                && !slots[i - 1].is_size()
                && slots[i].expected.is_some()
                && slots[i - 1].expected.is_some()
        })
        .collect();
    // What placing slot i at word j gains, after state (l, f): `l` words
    // used, and `f` whether slot i-1 sits at word l-1.
    let gain = |i: usize, j: usize, l: usize, f: usize| -> i64 {
        let mut g = 0;
        if slots[i].expected == Some(words[j]) {
            g += ANCHOR;
        }
        if f == 1
            && pairable[i]
            && let (Some(a), Some(b)) = (slots[i - 1].expected, slots[i].expected)
            && (words[j] as i128 - words[l - 1] as i128) == (b as i128 - a as i128)
        {
            g += KEPT_DISTANCE;
        }
        g
    };
    let at = |i: usize, l: usize, f: usize| (i * (n + 1) + l) * 2 + f;
    let size = (m + 1) * (n + 1) * 2;
    // Forward: the best score of slots[..i] ending in state (l, f).
    let mut fwd = vec![NONE; size];
    fwd[at(0, 0, 0)] = 0;
    for i in 0..m {
        for l in 0..=n {
            for f in 0..2 {
                let s = fwd[at(i, l, f)];
                if s == NONE {
                    continue;
                }
                let removed = &mut fwd[at(i + 1, l, 0)];
                *removed = (*removed).max(s - REMOVED);
                for j in l..n {
                    let placed = &mut fwd[at(i + 1, j + 1, 1)];
                    *placed = (*placed).max(s + gain(i, j, l, f));
                }
            }
        }
    }
    // Backward: the best score of slots[i..] from state (l, f).
    let mut bwd = vec![NONE; size];
    for l in 0..=n {
        for f in 0..2 {
            bwd[at(m, l, f)] = 0;
        }
    }
    for i in (0..m).rev() {
        for l in 0..=n {
            for f in 0..2 {
                if f == 1 && l == 0 {
                    continue;
                }
                let mut best = bwd[at(i + 1, l, 0)] - REMOVED;
                for j in l..n {
                    best = best.max(gain(i, j, l, f) + bwd[at(i + 1, j + 1, 1)]);
                }
                bwd[at(i, l, f)] = best;
            }
        }
    }
    let best = bwd[at(0, 0, 0)];
    (0..m)
        .map(|i| {
            let mut values = BTreeSet::new();
            let mut removable = false;
            for l in 0..=n {
                for f in 0..2 {
                    let s = fwd[at(i, l, f)];
                    if s == NONE {
                        continue;
                    }
                    if s - REMOVED + bwd[at(i + 1, l, 0)] == best {
                        removable = true;
                    }
                    for j in l..n {
                        if s + gain(i, j, l, f) + bwd[at(i + 1, j + 1, 1)] == best {
                            values.insert(words[j]);
                        }
                    }
                }
            }
            match (removable, values.len()) {
                (false, 1) => values.pop_first(),
                _ => None,
            }
        })
        .collect()
}

/// The most bytes of `_Py_DebugOffsets` read.
pub const MAX_EXTENT: u64 = 8192;

/// Where the `_Py_DebugOffsets` at `address` ends at the most, read with
/// `known`'s positions: `_PyRuntimeState` starts with it, so the runtime's
/// own offsets (its first section, which has not moved) bound it; else
/// twice `known`'s length.
pub fn extent(memory: &impl Memory, address: u64, known: (u8, u8)) -> Option<u64> {
    let known_members = debug_offsets::all_positions(known.0, known.1)?;
    let known_len = known_members.last().map_or(HEADER, |(p, _)| p + 8);
    let runtime_field = |path: &str| {
        let (position, _) = known_members.iter().find(|(_, p)| *p == path)?;
        memory.read_u64(address.wrapping_add(*position)).ok()
    };
    Some(
        [
            runtime_field("runtime_state.finalizing"),
            runtime_field("runtime_state.interpreters_head"),
        ]
        .into_iter()
        .flatten()
        .filter(|end| *end >= known_len)
        .min()
        // A new version adds tens of members, not hundreds: the bound keeps
        // the alignment (quadratic in the words) cheap.
        .unwrap_or(u64::MAX)
        .min(known_len * 2)
        .min(MAX_EXTENT),
    )
}

/// Read the `_Py_DebugOffsets` at `address` with the member positions of
/// `known` (another version), over `base` (the nearest older table's
/// layout). `predicted` holds values the core itself gives
/// ([`type_object_predictions`]): anchors, and checks of what is placed.
///
/// Returns the layout, whose source says what was placed and guessed; or
/// why the reading is refused: not a default build's table, too few
/// members placed, or placed values that contradict each other.
pub fn read_with_positions(
    memory: &impl Memory,
    address: u64,
    known: (u8, u8),
    mut base: Layout,
    predicted: &BTreeMap<&'static str, u64>,
) -> Result<Inferred, Refused> {
    let (version, free_threaded) = debug_offsets::header(memory, address)
        .ok_or_else(|| Refused(format!("no valid _Py_DebugOffsets at {address:#x}")))?;
    if free_threaded != 0 {
        return Err(Refused("a free-threaded build's table".into()));
    }
    let known_members = debug_offsets::all_positions(known.0, known.1)
        .ok_or_else(|| Refused(format!("no positions for {}.{}", known.0, known.1)))?;
    let end = extent(memory, address, known).unwrap_or(HEADER);
    let mut words = Vec::new();
    let mut position = HEADER;
    while position + 8 <= end {
        match memory.read_u64(address.wrapping_add(position)) {
            Ok(word) => words.push(word),
            Err(_) => break,
        }
        position += 8;
    }

    let entry_of = |path: &str| {
        MEMBERS
            .iter()
            .chain(HINTS)
            .find(|(p, _)| *p == path)
            .map(|(_, e)| e)
    };
    let slots: Vec<Slot<'_>> = known_members
        .iter()
        .map(|(_, path)| Slot {
            path,
            expected: predicted.get(path).copied().or_else(|| {
                if ZERO_ON_DEFAULT_BUILDS.contains(path) {
                    return Some(0);
                }
                table_value(&base, entry_of(path)?)
            }),
        })
        .collect();
    let values: BTreeMap<&str, u64> = slots
        .iter()
        .zip(align(&slots, &words))
        .filter_map(|(slot, value)| Some((slot.path, value?)))
        .collect();

    // A member is placed when the alignment gave it one plausible value
    // that agrees with what the core's types say.
    let mut placed = Vec::new();
    let mut guessed = Vec::new();
    for (path, entry) in MEMBERS {
        match values.get(path) {
            Some(&v) if v <= MAX_PLAUSIBLE && predicted.get(path).is_none_or(|p| *p == v) => {
                placed.push((*path, entry, v))
            }
            _ => guessed.push((*path, entry)),
        }
    }
    check_consistency(&placed, &values)?;
    let in_known = MEMBERS
        .iter()
        .filter(|(path, _)| known_members.iter().any(|(_, p)| p == path))
        .count();
    if placed.len() * 2 < in_known {
        return Err(Refused(format!(
            "only {} of the {in_known} members pymortem uses could be placed",
            placed.len()
        )));
    }

    let table_layout = base.clone();
    let mut changed = Vec::new();
    for (_, entry, value) in &placed {
        debug_offsets::set_entry(&mut base, entry, *value, &mut changed, true);
    }
    let moved = move_with_neighbours(&table_layout, &mut base, &placed);
    // The table's facts were measured on its version; the rules are code,
    // written per version with thresholds, so the core's version picks them
    // (3.14's tagged frame references hold on 3.15 and, likely, later).
    base.facts.rules = VersionRules::for_version(version.major, version.minor);
    let table = match &base.source {
        LayoutSource::Table { table, micro, .. } => format!("{table} ({micro})"),
        _ => String::new(),
    };
    base.source = LayoutSource::DebugOffsets {
        address,
        table,
        inferred: Some(Inference {
            version: format!("{}.{}", version.major, version.minor),
            positions: format!("{}.{}", known.0, known.1),
            placed: placed
                .iter()
                .map(|(path, entry, _)| InferredMember::of(path, entry))
                .collect(),
            guessed: guessed
                .iter()
                .map(|(path, entry)| InferredMember::of(path, entry))
                .collect(),
        }),
    };
    Ok(Inferred {
        layout: base,
        changed,
        moved,
    })
}

/// A layout read by [`read_with_positions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inferred {
    /// The layout; its source says what was placed and guessed.
    pub layout: Layout,
    /// The placed values that differ from the table's, as
    /// `Struct.field: table → core`.
    pub changed: Vec<String>,
    /// The fields `_Py_DebugOffsets` does not describe that were moved with
    /// the placed field before them, as `Struct.field: table → moved`.
    pub moved: Vec<String>,
}

/// Move each field of `layout` that `_Py_DebugOffsets` does not describe
/// as the nearest placed field at or before it (in `table`'s order) moved
/// from `table`: a member inserted into a structure moves every field after
/// it, and 3.15's thread state moved `datastack_top` with
/// `datastack_chunk`. Fields before the first placed one stay. Still a
/// guess: what was inserted between two placed fields cannot be seen.
fn move_with_neighbours(
    table: &Layout,
    layout: &mut Layout,
    placed: &[(&str, &Entry, u64)],
) -> Vec<String> {
    let mut moved = Vec::new();
    for (name, s) in &mut layout.structs {
        let Some(before) = table.structs.get(name) else {
            continue;
        };
        // (table offset, displacement) of every placed field of `name`.
        let mut anchors: Vec<(u64, i128)> = placed
            .iter()
            .filter_map(|(_, entry, value)| match entry {
                Entry::Field(n, field) if n == name => {
                    let was = before.fields.get(*field)?.offset;
                    Some((was, *value as i128 - was as i128))
                }
                _ => None,
            })
            .collect();
        anchors.sort();
        let is_placed = |field: &str| {
            placed
                .iter()
                .any(|(_, e, _)| matches!(e, Entry::Field(n, f) if n == name && *f == field))
        };
        for (field, f) in &mut s.fields {
            if is_placed(field) {
                continue;
            }
            let Some(was) = before.fields.get(field).map(|f| f.offset) else {
                continue;
            };
            let Some(&(_, by)) = anchors.iter().rev().find(|(at, _)| *at <= was) else {
                continue;
            };
            let Ok(offset) = u64::try_from(was as i128 + by) else {
                continue;
            };
            if by == 0 || f.offset != was {
                continue;
            }
            moved.push(format!("{name}.{field}: {was} → {offset}"));
            f.offset = offset;
            if let Some(bit) = &mut f.bit_offset {
                *bit = bit.wrapping_add_signed((by * 8) as i64);
            }
        }
    }
    moved
}

/// What every default build's `_Py_DebugOffsets` says, checked on the
/// placed members (and, for `ob_size`, every aligned one): `PyObject` is a
/// refcount word then the type, `ob_size` follows it, sizes are whole words
/// and every field lies inside its section's structure.
fn check_consistency(
    placed: &[(&str, &Entry, u64)],
    values: &BTreeMap<&str, u64>,
) -> Result<(), Refused> {
    let placed_value = |path: &str| placed.iter().find(|(p, ..)| *p == path).map(|t| t.2);
    for (path, want) in [("pyobject.ob_type", 8), ("pyobject.size", 16)] {
        if let Some(v) = placed_value(path)
            && v != want
        {
            return Err(Refused(format!(
                "{path} reads {v}, not {want} as on every default build"
            )));
        }
    }
    for (path, v) in values {
        if path.ends_with(".ob_size") && *v != 16 {
            return Err(Refused(format!(
                "{path} reads {v}, not 16 (after the PyObject header)"
            )));
        }
    }
    for (path, entry, v) in placed {
        match entry {
            Entry::Size(_) if *v < 8 || v % 8 != 0 => {
                return Err(Refused(format!("{path} reads {v}, not a structure's size")));
            }
            Entry::Field(..) => {
                let section = path.split_once('.').map_or(*path, |(s, _)| s);
                if let Some(size) = placed_value(&format!("{section}.size"))
                    && *v >= size
                {
                    return Err(Refused(format!(
                        "{path} reads {v}, past the end of its structure ({section}.size {size})"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::FieldLayout;

    fn slots<'a>(members: &[(&'a str, Option<u64>)]) -> Vec<Slot<'a>> {
        members
            .iter()
            .map(|(path, expected)| Slot {
                path,
                expected: *expected,
            })
            .collect()
    }

    #[test]
    fn fields_after_a_placed_field_move_with_it() {
        let field = |offset| FieldLayout {
            c_path: String::new(),
            offset,
            size: 8,
            bit_offset: None,
            bit_size: None,
        };
        let tstate = super::super::StructLayout {
            c_name: "PyThreadState".into(),
            size: 832,
            fields: [
                ("status", 32),
                ("holds_gil", 36),
                ("datastack_chunk", 232),
                ("datastack_top", 240),
            ]
            .into_iter()
            .map(|(name, offset)| (name.to_string(), field(offset)))
            .collect(),
        };
        let table = Layout {
            source: LayoutSource::Table {
                table: "3.14".into(),
                micro: "3.14.0".into(),
                exact: true,
            },
            structs: [("PyThreadState".to_string(), tstate)].into(),
            globals: BTreeMap::new(),
            facts: super::super::Facts::for_version(3, 14, None),
            warnings: Vec::new(),
            typed: Default::default(),
        };
        let mut layout = table.clone();
        let status = Entry::Field("PyThreadState", "status");
        let chunk = Entry::Field("PyThreadState", "datastack_chunk");
        let placed = [("s", &status, 32), ("c", &chunk, 256)];
        for (_, entry, value) in &placed {
            debug_offsets::set_entry(&mut layout, entry, *value, &mut Vec::new(), true);
        }
        let moved = move_with_neighbours(&table, &mut layout, &placed);
        assert_eq!(moved, vec!["PyThreadState.datastack_top: 240 → 264"]);
        assert_eq!(layout.offset("PyThreadState", "holds_gil"), Some(36));
        assert_eq!(layout.offset("PyThreadState", "datastack_chunk"), Some(256));
    }

    #[test]
    fn unchanged_positions_place_every_member() {
        let s = slots(&[
            ("a.size", Some(100)),
            ("a.x", Some(8)),
            ("a.y", None),
            ("b.size", Some(40)),
        ]);
        assert_eq!(
            align(&s, &[104, 8, 24, 40]),
            vec![Some(104), Some(8), Some(24), Some(40)]
        );
    }

    #[test]
    fn fields_that_moved_together_are_placed_past_an_insertion() {
        // 3.15's thread state: three members inserted after current_frame,
        // and the fields after them moved by 24.
        let s = slots(&[
            ("t.size", Some(832)),
            ("t.current_frame", Some(72)),
            ("t.thread_id", Some(152)),
            ("t.native_thread_id", Some(160)),
            ("t.datastack_chunk", Some(232)),
            ("t.status", Some(32)),
        ]);
        let words = [888, 72, 80, 88, 96, 176, 184, 256, 32, 36];
        assert_eq!(
            align(&s, &words),
            vec![
                Some(888),
                Some(72),
                Some(176),
                Some(184),
                Some(256),
                Some(32)
            ]
        );
    }

    #[test]
    fn a_member_with_several_possible_words_is_not_placed() {
        let s = slots(&[
            ("g.size", Some(264)),
            ("g.collecting", Some(192)),
            ("h.size", Some(160)),
        ]);
        // Two members, four words, nothing anchors them.
        assert_eq!(
            align(&s, &[176, 112, 120, 104, 160]),
            vec![None, None, Some(160)]
        );
    }

    #[test]
    fn a_removed_member_is_not_placed_and_the_rest_still_are() {
        let s = slots(&[
            ("a.size", Some(64)),
            ("a.x", Some(8)),
            ("a.gone", Some(12)),
            ("a.y", Some(16)),
            ("a.z", Some(24)),
            ("a.w", Some(32)),
        ]);
        let v = align(&s, &[64, 8, 16, 24, 32]);
        assert_eq!(
            v,
            vec![Some(64), Some(8), None, Some(16), Some(24), Some(32)]
        );
    }
}
