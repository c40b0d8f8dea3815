//! What the checks could not look at, and what would let them run.
//!
//! A verdict of "clean" is a claim that every check ran. Each walk that could
//! not run (its structures not located, their memory unreadable, the layout
//! unknown) is recorded here with the reason and the remedy, and makes the
//! verdict `incomplete` unless a finding already makes it worse.

use serde::Serialize;

use super::freelists::FreeLists;
use super::gc::GcWalk;
use super::pymalloc::Pymalloc;
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::memory::ReadFailure;
use crate::modules::{DebugStatus, FileStatus};
use crate::process::Process;
use crate::python::PythonState;

/// A check that can be left undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckName {
    /// The interpreter's structure layout: without it nothing is checked.
    Layout,
    /// The thread states and their frames, whose references the refcount
    /// checks count.
    ThreadStates,
    /// The free lists.
    FreeLists,
    /// The GC generation lists.
    GcLists,
    /// pymalloc's arenas, pools and free-block chains.
    Pymalloc,
}

impl CheckName {
    /// In words, for text output.
    pub fn describe(self) -> &'static str {
        match self {
            CheckName::Layout => "the interpreter's structures",
            CheckName::ThreadStates => "the thread states and their frames",
            CheckName::FreeLists => "the free lists",
            CheckName::GcLists => "the GC lists",
            CheckName::Pymalloc => "pymalloc's arenas and free-block chains",
        }
    }
}

/// A check that did not run (or ran on part of its input), why, and what
/// would let it run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unchecked {
    /// Which check.
    pub check: CheckName,
    /// Why it could not run, with addresses and files.
    pub reason: String,
    /// What to give pymortem so that it can.
    pub remedy: String,
}

/// Everything the checks left undone, given what the walks could locate and
/// read.
pub(crate) fn assess(
    process: &Process,
    state: &PythonState,
    free: &FreeLists,
    gc: &GcWalk,
) -> Vec<Unchecked> {
    [
        thread_states(process, state),
        free_lists(process, free),
        gc_lists(process, gc),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The free lists, unless every slot was located and read.
pub(crate) fn free_lists(process: &Process, free: &FreeLists) -> Option<Unchecked> {
    let unreadable: Vec<(String, &ReadFailure)> = free
        .slots
        .iter()
        .filter_map(|s| {
            let r = s.unreadable.as_ref()?;
            Some((format!("{}: {r}", s.name()), &r.reason))
        })
        .collect();
    walk_gap(
        process,
        CheckName::FreeLists,
        free.unlocated.as_deref(),
        &unreadable,
    )
}

/// The GC lists, unless every generation was located and its head read.
pub(crate) fn gc_lists(process: &Process, gc: &GcWalk) -> Option<Unchecked> {
    let unreadable: Vec<(String, &ReadFailure)> = gc
        .generations
        .iter()
        .filter_map(|g| {
            let r = g.unreadable.as_ref()?;
            Some((format!("GC {}: {r}", g.name), &r.reason))
        })
        .collect();
    walk_gap(
        process,
        CheckName::GcLists,
        gc.unlocated.as_deref(),
        &unreadable,
    )
}

/// pymalloc, unless its arena table was located.
pub(crate) fn pymalloc(process: &Process, map: &Pymalloc) -> Option<Unchecked> {
    walk_gap(process, CheckName::Pymalloc, map.unlocated.as_deref(), &[])
}

/// A walk that was not located at all, or whose parts were unreadable.
fn walk_gap(
    process: &Process,
    check: CheckName,
    unlocated: Option<&str>,
    unreadable: &[(String, &ReadFailure)],
) -> Option<Unchecked> {
    if let Some(reason) = unlocated {
        return Some(Unchecked {
            check,
            reason: reason.to_string(),
            remedy: interpreter_files_remedy(process),
        });
    }
    let (_, first) = unreadable.first()?;
    let reasons: Vec<&str> = unreadable.iter().map(|(r, _)| r.as_str()).collect();
    Some(Unchecked {
        check,
        reason: summarise(&reasons),
        remedy: read_remedy(process, Some(first)),
    })
}

/// Thread states or frames that could not be read: the references they hold
/// are not counted, so a freed object still held by a frame can be missed.
fn thread_states(process: &Process, state: &PythonState) -> Option<Unchecked> {
    let errors: Vec<&Diagnostic> = state
        .diagnostics
        .iter()
        .filter(|d| d.source == DiagnosticSource::Python && d.severity == Severity::Error)
        .collect();
    let problems: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
    // The reason names the first problem in full: its remedy is the one given.
    let failure = errors.first().and_then(|d| d.read_failure.as_ref());
    let reason = if state.threads.is_empty() {
        let mut why = "no thread state could be read".to_string();
        if let Some(first) = problems.first() {
            why.push_str(": ");
            why.push_str(first);
        }
        why
    } else if problems.is_empty() {
        return None;
    } else {
        summarise(&problems)
    };
    Some(Unchecked {
        check: CheckName::ThreadStates,
        remedy: read_remedy(process, failure),
        reason,
    })
}

/// One reason, or the first with a count of the others.
fn summarise<S: AsRef<str>>(reasons: &[S]) -> String {
    match reasons {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [first, rest @ ..] => format!("{} (and {} more like it)", first.as_ref(), rest.len()),
    }
}

/// The remedy for a failed read, from why it failed (`None`: not a read).
fn read_remedy(process: &Process, failure: Option<&ReadFailure>) -> String {
    match failure {
        Some(ReadFailure::NotDumped) => {
            "the core does not contain this memory: take the core with the kernel (gdb's gcore \
             skips unreadable stack pages) and with the process's /proc/PID/coredump_filter set \
             to 0x3f"
                .to_string()
        }
        Some(ReadFailure::Truncated) => {
            "the core file is truncated: copy it again in full".to_string()
        }
        Some(ReadFailure::FileMissing { .. } | ReadFailure::BuildIdMismatch { .. }) => {
            interpreter_files_remedy(process)
        }
        _ => "the memory that holds them is damaged or missing in the core; nothing more can be \
              read from this core"
            .to_string(),
    }
}

/// What would let pymortem read the interpreter's structures: its file, or
/// its debug file, whichever is missing.
pub fn interpreter_files_remedy(process: &Process) -> String {
    let Some(module) = process.python_module() else {
        return "pass --exe or --sysroot so that the interpreter's binary can be found".to_string();
    };
    let path = &module.recorded_path;
    let build_id = module
        .build_id_hex()
        .map(|b| format!(" (build-id {b})"))
        .unwrap_or_default();
    match &module.file_status {
        // A bundle is read from nothing else: the remedy is a new bundle.
        FileStatus::Missing { .. } if process.is_bundle() => format!(
            "the bundle does not hold the interpreter's file {path}{build_id}: bundle the core again \
             where that file is (pymortem bundle with --sysroot DIR or --search-path DIR)"
        ),
        FileStatus::Missing { .. } => format!(
            "the interpreter's file {path}{build_id} is not on this machine where the core says: pass \
             --sysroot DIR, a folder holding the files of the machine the core came from, or \
             --search-path DIR, a folder where a copy of it is (found by build-id); or read a \
             bundle of the core made where the files are (pymortem bundle)"
        ),
        FileStatus::Mismatch {
            path: found,
            file_build_id,
        } => format!(
            "{} is another build ({}) than the one the process ran{build_id}: pass --sysroot DIR \
             with the files of the machine the core came from",
            found.display(),
            file_build_id.as_deref().unwrap_or("no build-id")
        ),
        _ => match &module.debug_status {
            DebugStatus::Missing { .. } => format!(
                "{path} is stripped: pass --debug-dir DIR holding its debug file{build_id} (Debian \
                 and Ubuntu: the python3.X-dbg package; Fedora: python3-debuginfo)"
            ),
            DebugStatus::Found { path: debug, .. } => format!(
                "the debug information in {} does not describe them; report this with the core's \
                 Python version",
                debug.display()
            ),
        },
    }
}
