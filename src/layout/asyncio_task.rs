//! Where the C `asyncio.Task` (`TaskObj` of `_asynciomodule.c`) keeps what
//! pymortem reads: from the DWARF of the module that holds `_asyncio` (an
//! extension module, or the interpreter itself where it is built in), else
//! from the per-version table in `layouts/asyncio-task.toml`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::dwarf::{self, Query};
use crate::interpreter::version::PythonVersion;
use crate::modules::Module;

/// A one-bit field: its byte and the bit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Bit {
    /// Byte offset from the start of the task.
    pub byte: u64,
    /// Bit within that byte, 0 the lowest.
    pub bit: u8,
}

/// `task_must_cancel`: an `int` up to 3.12, a one-bit field from 3.13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    /// An `int` at this offset.
    Int(u64),
    /// A one-bit field.
    Bit(Bit),
}

/// The offsets of the members of `TaskObj` that pymortem reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskLayout {
    /// `sizeof(TaskObj)`.
    pub size: u64,
    /// The event loop.
    pub task_loop: u64,
    /// `fut_state`: pending, cancelled, finished.
    pub task_state: u64,
    /// The future the task waits for, or NULL.
    pub task_fut_waiter: u64,
    /// Its coroutine.
    pub task_coro: u64,
    /// Its name (a str, or from 3.12 an int numbering a `Task-N` name not made yet).
    pub task_name: u64,
    /// Whether a cancellation was asked for and not yet delivered.
    pub task_must_cancel: Flag,
    /// 3.14+: the tasks and futures awaiting it.
    #[serde(default)]
    pub task_awaited_by: Option<u64>,
}

/// Where a [`TaskLayout`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskLayoutSource {
    /// The DWARF of this module.
    Dwarf(String),
    /// The table for this version.
    Table(String),
}

impl std::fmt::Display for TaskLayoutSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskLayoutSource::Dwarf(module) => write!(f, "DWARF of {module}"),
            TaskLayoutSource::Table(version) => write!(f, "built-in table {version}"),
        }
    }
}

const TABLE_TOML: &str = include_str!("../../layouts/asyncio-task.toml");

/// The table's layout for `major.minor`, if it has one.
pub fn table(major: u8, minor: u8) -> Option<&'static TaskLayout> {
    static PARSED: OnceLock<BTreeMap<String, TaskLayout>> = OnceLock::new();
    PARSED
        // The file is part of the source tree, checked by a test.
        .get_or_init(|| toml::from_str(TABLE_TOML).unwrap_or_default())
        .get(&format!("{major}.{minor}"))
}

/// The layout `module`'s DWARF gives `TaskObj`, if it has DWARF and the type.
pub fn from_dwarf(module: &Module) -> Option<TaskLayout> {
    let debug = module.debug_file().filter(|d| d.has_dwarf())?;
    let query = Query {
        types: vec!["TaskObj".into()],
        preferred_units: vec!["_asynciomodule.c".into()],
        required: vec![vec!["TaskObj".into()]],
        ..Query::default()
    };
    let found = dwarf::query(debug, &query).ok()?;
    let ty = found.types.get("TaskObj")?;
    let offset = |name: &str| ty.fields.get(name).map(|f| f.offset);
    let must_cancel = ty.fields.get("task_must_cancel")?;
    let task_must_cancel = match (must_cancel.bit_offset, must_cancel.bit_size) {
        (Some(bits), Some(1)) => Flag::Bit(Bit {
            byte: bits / 8,
            bit: (bits % 8) as u8,
        }),
        _ => Flag::Int(must_cancel.offset),
    };
    Some(TaskLayout {
        size: ty.size,
        task_loop: offset("task_loop")?,
        task_state: offset("task_state")?,
        task_fut_waiter: offset("task_fut_waiter")?,
        task_coro: offset("task_coro")?,
        task_name: offset("task_name")?,
        task_must_cancel,
        task_awaited_by: offset("task_awaited_by"),
    })
}

/// The modules that may define `TaskObj`: `_asyncio` extension modules
/// first, then the interpreter's own module (where `_asyncio` is built in).
pub fn candidate_modules<'m>(
    modules: &'m [std::sync::Arc<Module>],
    python_module: Option<&'m std::sync::Arc<Module>>,
) -> Vec<&'m Module> {
    let mut out: Vec<&Module> = modules
        .iter()
        .filter(|m| m.name().starts_with("_asyncio"))
        .map(|m| m.as_ref())
        .collect();
    out.extend(python_module.map(|m| m.as_ref()));
    out
}

/// The `TaskObj` layout for CPython `version`: the first candidate
/// module's DWARF that has it, else the table.
pub fn find(
    modules: &[std::sync::Arc<Module>],
    python_module: Option<&std::sync::Arc<Module>>,
    version: PythonVersion,
) -> Option<(TaskLayout, TaskLayoutSource)> {
    for module in candidate_modules(modules, python_module) {
        if let Some(layout) = from_dwarf(module) {
            return Some((layout, TaskLayoutSource::Dwarf(module.name().to_string())));
        }
    }
    let (major, minor) = (version.major, version.minor);
    table(major, minor).map(|t| {
        (
            t.clone(),
            TaskLayoutSource::Table(format!("{major}.{minor}")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_version_from_3_8_and_its_offsets_fit() {
        for minor in 8..=15 {
            let t = table(3, minor).unwrap_or_else(|| panic!("no 3.{minor} task layout"));
            let must_cancel = match t.task_must_cancel {
                Flag::Int(at) => at,
                Flag::Bit(b) => b.byte,
            };
            for at in [
                t.task_loop,
                t.task_state,
                t.task_fut_waiter,
                t.task_coro,
                t.task_name,
                must_cancel,
            ] {
                assert!(at >= 16 && at < t.size, "3.{minor}: {at} outside the task");
            }
        }
    }
}
