//! The verdict: the likely story behind the findings, in one sentence, with
//! the victims and the threads involved.

use std::collections::BTreeSet;

use serde::Serialize;

use super::coverage::Unchecked;
use super::{Finding, FindingKind, ReferrerKind};
use crate::diagnostic::Severity;
use crate::process::Process;
use crate::python::PythonState;
use crate::stacks::FatalError;

/// What the checks concluded, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerdictStatus {
    /// Error findings.
    Corrupt,
    /// Warning findings only.
    Suspicious,
    /// No such finding, but a check could not run.
    Incomplete,
    /// Every check ran and found nothing.
    Clean,
}

impl VerdictStatus {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictStatus::Corrupt => "corrupt",
            VerdictStatus::Suspicious => "suspicious",
            VerdictStatus::Incomplete => "incomplete",
            VerdictStatus::Clean => "clean",
        }
    }
}

impl std::fmt::Display for VerdictStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What probably happened.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// What the checks concluded.
    pub status: VerdictStatus,
    /// The story in one sentence.
    pub summary: String,
    /// The objects at the centre of it.
    pub victims: Vec<u64>,
    /// LWPs of the threads involved: the crashing thread and threads whose
    /// frames or stacks point at a victim.
    pub threads: Vec<i32>,
    /// The fatal error printed before the abort, when it can be told.
    pub fatal_error: Option<String>,
    /// The checks that could not run, why, and what would let them.
    pub unchecked: Vec<Unchecked>,
}

impl Verdict {
    /// The verdict when the interpreter's structures could not be read at all.
    pub fn nothing_checked(unchecked: Unchecked) -> Verdict {
        let mut verdict = Verdict {
            status: VerdictStatus::Incomplete,
            summary: String::new(),
            victims: Vec::new(),
            threads: Vec::new(),
            fatal_error: None,
            unchecked: vec![unchecked],
        };
        verdict.summary = incomplete_summary(&verdict.unchecked);
        verdict
    }

    /// Keep only the unchecked parts `keep` accepts (a report that shows one
    /// part judges only that part), and restate the status.
    pub fn restrict(&mut self, keep: impl Fn(&Unchecked) -> bool) {
        self.unchecked.retain(keep);
        match (self.status, self.unchecked.is_empty()) {
            (VerdictStatus::Incomplete, true) => {
                self.status = VerdictStatus::Clean;
                self.summary = CLEAN.to_string();
            }
            (VerdictStatus::Clean, false) => {
                self.status = VerdictStatus::Incomplete;
                self.summary = incomplete_summary(&self.unchecked);
            }
            _ => {}
        }
    }
}

const CLEAN: &str = "no contradiction between the free lists, the GC lists and the refcounts";

fn incomplete_summary(unchecked: &[Unchecked]) -> String {
    let parts: Vec<&str> = unchecked.iter().map(|u| u.check.describe()).collect();
    format!(
        "nothing found, but not everything was checked: {} could not be read (see what was not checked)",
        parts.join(", ")
    )
}

/// The type a finding's evidence names, or "object".
fn type_name(f: &Finding) -> &str {
    f.evidence
        .get("type_name")
        .and_then(|v| v.as_str())
        .unwrap_or("object")
}

fn holders(f: &Finding) -> String {
    let live: Vec<&str> = f
        .referrers
        .iter()
        .filter(|r| matches!(r.kind, ReferrerKind::Object | ReferrerKind::Frame))
        .map(|r| r.description.as_str())
        .take(3)
        .collect();
    if live.is_empty() {
        String::new()
    } else {
        format!(" while {} still held it", live.join(" and "))
    }
}

/// Judge the findings.
pub fn judge(
    process: &Process,
    state: &PythonState,
    findings: &[Finding],
    fatal: Option<&FatalError>,
    unchecked: Vec<Unchecked>,
) -> Verdict {
    // The crash site opens the story (below); the rest is told from the
    // other findings.
    let errors: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error && f.kind != FindingKind::CrashSiteObject)
        .collect();
    let warnings = findings.iter().any(|f| f.severity == Severity::Warning);
    let by_kind = |k: FindingKind| errors.iter().filter(move |f| f.kind == k);
    let referenced = |addr: u64| {
        errors
            .iter()
            .find(|f| f.address == addr && !f.referrers.is_empty())
            .copied()
    };
    let mut victims = Vec::new();
    let mut summary = if let Some(cycle) = by_kind(FindingKind::FreeListCycle).next() {
        let v = cycle.address;
        victims.push(v);
        let list = cycle.list.as_deref().unwrap_or("a free list");
        let held = referenced(v).map(holders).unwrap_or_default();
        format!(
            "tuple {v:#x} was released twice into {list} (the chain links back to it){held}: a missing Py_INCREF \
             (or an extra Py_DECREF) in C code; the next allocations of that size would return the same object twice"
        )
    } else if let Some(uaf) = by_kind(FindingKind::FreeListMemberReferenced).next() {
        victims.push(uaf.address);
        format!(
            "tuple {:#x} was freed onto {}{}: a use after free, from a missing Py_INCREF in C code",
            uaf.address,
            uaf.list.as_deref().unwrap_or("a free list"),
            holders(uaf)
        )
    } else if let Some(freed) = by_kind(FindingKind::FreedObjectReferenced).next() {
        victims.extend(by_kind(FindingKind::FreedObjectReferenced).map(|f| f.address));
        let more = match victims.len() - 1 {
            0 => String::new(),
            1 => "; 1 more object is in the same state".to_string(),
            n => format!("; {n} more objects are in the same state"),
        };
        let why = super::items::DeadHeader::of_finding(freed)
            .map_or_else(|| "its header says freed".to_string(), |d| d.describe());
        format!(
            "{} {:#x} was freed{} ({why}): a missing Py_INCREF or an extra Py_DECREF in C code{more}",
            type_name(freed),
            freed.address,
            holders(freed)
        )
    } else if let Some(low) = by_kind(FindingKind::RefcountBelowReferences).next() {
        victims.push(low.address);
        let double = errors.iter().any(|f| {
            matches!(
                f.kind,
                FindingKind::GcListBrokenLink | FindingKind::GcListCycle
            ) && f.address == low.address
        });
        let how = if double {
            ", and it is linked into a GC list twice"
        } else {
            ""
        };
        format!(
            "{} {:#x} has fewer references counted than are held{how}{}: it was handed out twice, typically \
             after being freed twice (a missing Py_INCREF in C code)",
            type_name(low),
            low.address,
            holders(low)
        )
    } else if let Some(first) = errors.first() {
        victims.push(first.address);
        format!("the heap is corrupt: {}", first.message)
    } else if let Some(kept) = findings
        .iter()
        .find(|f| f.kind == FindingKind::StaticPointsToFreed && f.severity == Severity::Warning)
    {
        victims.push(kept.address);
        let held = kept
            .referrers
            .first()
            .map_or("a static", |r| r.description.as_str());
        format!(
            "{} {:#x} was freed while {held} still pointed at it: a C extension kept it without a \
             reference of its own (a missing Py_INCREF); its next use hands out freed memory",
            type_name(kept),
            kept.address,
        )
    } else if warnings {
        "no corruption proven; see the warnings".to_string()
    } else if !unchecked.is_empty() {
        incomplete_summary(&unchecked)
    } else {
        CLEAN.to_string()
    };
    if let Some(site) = findings
        .iter()
        .find(|f| f.kind == FindingKind::CrashSiteObject && f.severity == Severity::Error)
    {
        summary = crash_site_story(site, &summary, errors.is_empty());
        victims.retain(|&v| v != site.address);
        victims.insert(0, site.address);
    }
    let fatal_error = fatal.map(|f| match &f.message {
        Some(m) => m.clone(),
        None => format!("{} (message not recovered: {})", f.path, f.message_source),
    });
    if let Some(f) = fatal {
        let what = f
            .message
            .as_deref()
            .map_or_else(String::new, |m| format!(" \"{m}\""));
        summary.push_str(&format!(
            "; the crashing thread died in {}{what}, reached through {}",
            f.function, f.path
        ));
    }
    let mut threads: BTreeSet<i32> = process
        .crashed_thread()
        .map(|t| t.lwp)
        .into_iter()
        .collect();
    for f in findings.iter().filter(|f| victims.contains(&f.address)) {
        for r in &f.referrers {
            if let Some(lwp) = lwp_of(state, process, r) {
                threads.insert(lwp);
            }
        }
    }
    Verdict {
        status: status(findings, &unchecked),
        summary,
        victims,
        threads: threads.into_iter().collect(),
        fatal_error,
        unchecked,
    }
}

/// The story told from the object the crashing thread was working on:
/// "the process died in list_repr on list 0x…, …", then `rest` (the story
/// the other findings tell) unless they told none.
fn crash_site_story(site: &Finding, rest: &str, alone: bool) -> String {
    let text = |key: &str| site.evidence.get(key).and_then(|v| v.as_str());
    let function = text("function").unwrap_or("a crash-site function");
    let what = match (
        site.evidence.get("bad_item").and_then(|v| v.as_u64()),
        site.evidence.get("container").and_then(|v| v.as_u64()),
    ) {
        (Some(item), _) => format!(
            "{} {:#x}, which held {item:#x} where an item belongs: freed earlier and its memory \
             handed out again",
            type_name(site),
            site.address
        ),
        (None, Some(container)) => format!(
            "{} {:#x} held by {container:#x}, freed earlier ({})",
            type_name(site),
            site.address,
            super::items::DeadHeader::of_finding(site)
                .map_or_else(|| "its header says freed".to_string(), |d| d.describe())
        ),
        (None, None) => format!(
            "{} {:#x}, freed earlier ({})",
            type_name(site),
            site.address,
            super::items::DeadHeader::of_finding(site)
                .map_or_else(|| "its header says freed".to_string(), |d| d.describe())
        ),
    };
    let held = holders(site);
    if alone {
        format!(
            "the process died in {function} on {what}{held}: a use after free, from a missing \
             Py_INCREF or an extra Py_DECREF in C code"
        )
    } else {
        format!("the process died in {function} on {what}{held}; {rest}")
    }
}

/// `corrupt` for any error finding, else `suspicious` for a warning, else
/// `incomplete` when a check could not run, else `clean`.
pub(super) fn status(findings: &[Finding], unchecked: &[Unchecked]) -> VerdictStatus {
    if findings.iter().any(|f| f.severity == Severity::Error) {
        VerdictStatus::Corrupt
    } else if findings.iter().any(|f| f.severity == Severity::Warning) {
        VerdictStatus::Suspicious
    } else if !unchecked.is_empty() {
        VerdictStatus::Incomplete
    } else {
        VerdictStatus::Clean
    }
}

/// The thread a referrer belongs to: a frame's thread, or the stack it is on.
fn lwp_of(state: &PythonState, process: &Process, r: &super::Referrer) -> Option<i32> {
    if r.kind == ReferrerKind::Frame {
        let frame = r.container?;
        return state
            .threads
            .iter()
            .find(|t| t.stack.frames.iter().any(|f| f.frame == frame))
            .and_then(|t| t.lwp);
    }
    if r.kind == ReferrerKind::Stack {
        let core = process.core();
        let seg = core.segment_index(r.at)?;
        return core
            .threads()
            .iter()
            .find(|t| core.segment_index(t.registers.sp()) == Some(seg))
            .map(|t| t.lwp);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{GcState, ReferrerKind};
    use super::VerdictStatus;
    use crate::diagnostic::DiagnosticSource;
    use crate::layout::select::AttemptSource;

    /// Text output and JSON name these values alike.
    fn same_name<T: serde::Serialize + std::fmt::Debug>(value: T, name: &str) {
        assert_eq!(serde_json::to_value(&value).unwrap(), name, "{value:?}");
    }

    #[test]
    fn the_enums_serialise_to_the_names_their_text_uses() {
        for v in [
            VerdictStatus::Corrupt,
            VerdictStatus::Suspicious,
            VerdictStatus::Incomplete,
            VerdictStatus::Clean,
        ] {
            same_name(v, v.as_str());
        }
        for k in [
            ReferrerKind::Object,
            ReferrerKind::Frame,
            ReferrerKind::Stack,
            ReferrerKind::Memory,
        ] {
            same_name(k, k.as_str());
        }
        for g in [GcState::Tracked, GcState::Untracked] {
            same_name(g, g.as_str());
        }
        for d in [
            DiagnosticSource::Bundle,
            DiagnosticSource::Core,
            DiagnosticSource::Modules,
            DiagnosticSource::Layout,
            DiagnosticSource::Python,
            DiagnosticSource::Forensics,
        ] {
            same_name(d, d.as_str());
        }
        for a in [
            AttemptSource::Version,
            AttemptSource::Dwarf,
            AttemptSource::Cache,
            AttemptSource::DebugOffsets,
            AttemptSource::Table,
        ] {
            same_name(a, a.as_str());
        }
    }
}
