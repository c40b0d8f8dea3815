//! The `check`, `freelists`, `gc` and `object` reports.

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::error::{Diagnostic, DiagnosticSource, Severity};
use crate::forensics::coverage::interpreter_files_remedy;
use crate::forensics::freelists::FreeListSlot;
use crate::forensics::gc::GenerationSummary;
use crate::forensics::gc_stats::GcStats;
use crate::forensics::{CheckName, CheckResult, Finding, ObjectInfo, Unchecked, Verdict};
use crate::layout::LayoutSource;
use crate::process::Process;
use crate::python::{PythonError, PythonState};
use crate::stacks::MergedStack;

/// Which part of the checks a report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckPart {
    /// Everything (`check`).
    All,
    /// Free lists (`freelists`).
    FreeLists,
    /// GC generations (`gc`).
    Gc,
}

/// The `check` report; `freelists` and `gc` show parts of it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `check`, `freelists` or `gc`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Process id.
    pub pid: Option<i32>,
    /// The Python version.
    pub python_version: Option<String>,
    /// Where the layout came from.
    pub layout_source: Option<LayoutSource>,
    /// The likely story (null when the core holds no Python interpreter).
    pub verdict: Option<Verdict>,
    /// Findings, errors first.
    pub findings: Vec<Finding>,
    /// Free lists (all of them for `freelists`; the non-empty or anomalous ones for `check`).
    pub free_lists: Vec<FreeListSlot>,
    /// GC generations.
    pub generations: Vec<GenerationSummary>,
    /// Tracked objects walked.
    pub gc_objects: usize,
    /// The collector's statistics, per interpreter (empty for `freelists`).
    pub gc_stats: Vec<GcStats>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
    /// `check` only: the crashing thread's native and Python frames, innermost first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crashed_thread_stack: Option<MergedStack>,
}

impl CheckReport {
    /// Build from the check result, or from why the interpreter could not be read.
    pub fn build(
        process: &Process,
        state: Result<&PythonState, &PythonError>,
        result: Option<CheckResult>,
        part: CheckPart,
    ) -> CheckReport {
        let mut diagnostics = process.diagnostics().to_vec();
        let layout_source = state.as_ref().ok().map(|s| s.layout.layout.source.clone());
        match &state {
            Ok(s) => diagnostics.extend(s.diagnostics.iter().cloned()),
            Err(e) => diagnostics.push(Diagnostic::error(
                DiagnosticSource::Python,
                format!("no checks: {e}"),
            )),
        }
        let schema = match part {
            CheckPart::All => "check",
            CheckPart::FreeLists => "freelists",
            CheckPart::Gc => "gc",
        };
        let mut report = CheckReport {
            schema,
            schema_version: SCHEMA_VERSION,
            pid: process.pid(),
            python_version: process.python().map(|p| p.version.to_string()),
            layout_source,
            verdict: None,
            findings: Vec::new(),
            free_lists: Vec::new(),
            generations: Vec::new(),
            gc_objects: 0,
            gc_stats: Vec::new(),
            diagnostics,
            crashed_thread_stack: None,
        };
        let Some(result) = result else {
            // A Python process whose structures could not be read: nothing was
            // checked, which is not the same as nothing found.
            // A free-threaded build is refused (an error): no files would let it be read.
            if let (Err(reason), Some(python)) = (&state, process.python())
                && python.free_threaded.is_none()
            {
                report.verdict = Some(Verdict::nothing_checked(Unchecked {
                    check: CheckName::Layout,
                    reason: reason.to_string(),
                    remedy: interpreter_files_remedy(process),
                }));
            }
            return report;
        };
        report.diagnostics.extend(result.diagnostics);
        if part == CheckPart::All {
            report.crashed_thread_stack = result.crashed_thread_stack;
        }
        let keep = |f: &Finding| {
            let name = format!("{:?}", f.kind);
            match part {
                CheckPart::All => true,
                CheckPart::FreeLists => {
                    name.starts_with("FreeList")
                        || f.list.as_deref().is_some_and(|l| l.contains("free list"))
                }
                CheckPart::Gc => {
                    name.starts_with("Gc") || f.list.as_deref().is_some_and(|l| l.starts_with("GC"))
                }
            }
        };
        report.findings = result.findings.into_iter().filter(keep).collect();
        report.free_lists = match part {
            CheckPart::Gc => Vec::new(),
            CheckPart::FreeLists => result.free_lists,
            CheckPart::All => result
                .free_lists
                .into_iter()
                .filter(|s| s.head != 0 || s.counter.unwrap_or(0) != 0 || !s.anomalies.is_empty())
                .collect(),
        };
        if part != CheckPart::FreeLists {
            report.generations = result.generations;
            report.gc_objects = result.gc_objects;
            report.gc_stats = result.gc_stats;
        }
        let mut verdict = result.verdict;
        verdict.restrict(|u| match part {
            CheckPart::All => true,
            CheckPart::FreeLists => matches!(u.check, CheckName::Layout | CheckName::FreeLists),
            CheckPart::Gc => matches!(u.check, CheckName::Layout | CheckName::GcLists),
        });
        report.verdict = Some(verdict);
        report
    }

    /// 1 when there are error or warning findings; else 3 when a check
    /// could not run; else 0. A report without a verdict (no Python) is 2.
    pub fn exit_code(&self) -> i32 {
        if self
            .findings
            .iter()
            .any(|f| f.severity >= Severity::Warning)
        {
            1
        } else if let Some(verdict) = &self.verdict {
            if verdict.unchecked.is_empty() { 0 } else { 3 }
        } else {
            2
        }
    }
}

/// The `object` report.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    /// Always `"object"`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What is known about the object.
    #[serde(flatten)]
    pub object: ObjectInfo,
}

impl ObjectReport {
    /// Wrap an inspection.
    pub fn new(object: ObjectInfo) -> Self {
        ObjectReport {
            schema: "object",
            schema_version: SCHEMA_VERSION,
            object,
        }
    }
}
