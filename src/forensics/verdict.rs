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
    /// The objects at the centre of it: the root victims, each freed while
    /// something live still held it, the one the summary tells of first.
    pub victims: Vec<u64>,
    /// Objects found freed only because a root victim was: the stale items
    /// of a freed container, whose every live holder is a victim itself.
    pub secondary_victims: Vec<u64>,
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
            secondary_victims: Vec::new(),
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
        .filter(|r| r.kind.is_owner())
        .map(|r| r.description.as_str())
        .take(3)
        .collect();
    if live.is_empty() {
        String::new()
    } else {
        format!(" while {} still held it", live.join(" and "))
    }
}

/// The findings that say an object was freed while still held.
fn is_freed_while_held(f: &Finding) -> bool {
    f.severity == Severity::Error
        && matches!(
            f.kind,
            FindingKind::FreedObjectReferenced
                | FindingKind::FreeListMemberReferenced
                | FindingKind::RefcountBelowReferences
        )
}

/// Split the freed-while-held objects into roots and secondaries: an object
/// whose live holders are all victims themselves was only reached through
/// them (an item a freed container still lists), so its story is theirs.
fn roots_and_secondaries(findings: &[Finding]) -> (Vec<u64>, Vec<u64>) {
    let victims: BTreeSet<u64> = findings
        .iter()
        .filter(|f| is_freed_while_held(f))
        .map(|f| f.address)
        .collect();
    let mut roots = BTreeSet::new();
    let mut secondaries = BTreeSet::new();
    for f in findings.iter().filter(|f| is_freed_while_held(f)) {
        let mut live = f
            .referrers
            .iter()
            .filter(|r| matches!(r.kind, ReferrerKind::Object | ReferrerKind::Frame))
            .peekable();
        let only_through_victims = live.peek().is_some()
            && live.all(|r| {
                r.container
                    .is_some_and(|c| c != f.address && victims.contains(&c))
            });
        if only_through_victims {
            secondaries.insert(f.address);
        } else {
            roots.insert(f.address);
        }
    }
    // Two victims holding only each other: neither is secondary.
    if roots.is_empty() {
        return (secondaries.into_iter().collect(), Vec::new());
    }
    (
        roots.into_iter().collect(),
        secondaries.into_iter().collect(),
    )
}

/// " and N more …" for the victims the summary does not tell of.
fn more_victims(roots: usize, secondaries: usize) -> String {
    let mut more = String::new();
    match roots.saturating_sub(1) {
        0 => {}
        1 => more.push_str("; 1 more object was freed the same way"),
        n => more.push_str(&format!("; {n} more objects were freed the same way")),
    }
    match secondaries {
        0 => {}
        1 => more.push_str(
            "; 1 object is stale only because a victim was freed (an item it still lists)",
        ),
        n => more.push_str(&format!(
            "; {n} objects are stale only because a victim was freed (items it still lists)"
        )),
    }
    more
}

/// The story of an object with more owners than its refcount counts: one
/// early free explains that, so "freed twice" needs a trace of a second
/// (the object linked into a GC list twice).
fn refcount_below_story(low: &Finding, errors: &[&Finding], more: &str) -> String {
    let linked_twice = errors.iter().any(|f| {
        matches!(
            f.kind,
            FindingKind::GcListBrokenLink | FindingKind::GcListCycle
        ) && f.address == low.address
    });
    let counts = match (
        low.evidence.get("refcount").and_then(|v| v.as_i64()),
        low.evidence.get("references").and_then(|v| v.as_u64()),
    ) {
        (Some(rc), Some(n)) => format!(" (refcount {rc}, {n} owned references)"),
        _ => String::new(),
    };
    let shared = holders(low)
        .replacen(" while ", " ", 1)
        .replacen(" still held it", " hold it", 1);
    let (ty, at) = (type_name(low), low.address);
    if linked_twice {
        format!(
            "{ty} {at:#x} has more owners than its refcount counts{counts}{shared}, and it is linked into a \
             GC list twice: it was freed twice and handed out twice (a missing Py_INCREF in C code){more}"
        )
    } else {
        format!(
            "{ty} {at:#x} has more owners than its refcount counts{counts}{shared}: it was freed while still \
             referenced, then handed out again (a missing Py_INCREF or an extra Py_DECREF in C code){more}"
        )
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
    let (roots, secondaries) = roots_and_secondaries(findings);
    let mut victims = Vec::new();
    let mut summary = if let Some(cycle) = by_kind(FindingKind::FreeListCycle).next() {
        let v = cycle.address;
        victims.push(v);
        let list = cycle.list.as_deref().unwrap_or("a free list");
        let held = referenced(v).map(holders).unwrap_or_default();
        let more = more_victims(
            roots.len() + usize::from(!roots.contains(&v)),
            secondaries.len(),
        );
        format!(
            "{} {v:#x} was released twice into {list} (it is on it twice){held}: a missing Py_INCREF \
             (or an extra Py_DECREF) in C code; the next allocations from that list would return the same object twice{more}",
            type_name(cycle)
        )
    } else if let Some(uaf) = by_kind(FindingKind::FreeListMemberReferenced).next() {
        victims.push(uaf.address);
        format!(
            "{} {:#x} was freed onto {}{}: a use after free, from a missing Py_INCREF in C code{}",
            type_name(uaf),
            uaf.address,
            uaf.list.as_deref().unwrap_or("a free list"),
            holders(uaf),
            more_victims(roots.len(), secondaries.len())
        )
    } else if let Some(freed) = by_kind(FindingKind::FreedObjectReferenced)
        .find(|f| roots.contains(&f.address))
        .or_else(|| by_kind(FindingKind::FreedObjectReferenced).next())
    {
        victims.push(freed.address);
        let more = more_victims(roots.len(), secondaries.len());
        let why = super::items::DeadHeader::of_finding(freed)
            .map_or_else(|| "its header says freed".to_string(), |d| d.describe());
        format!(
            "{} {:#x} was freed{} ({why}): a missing Py_INCREF or an extra Py_DECREF in C code{more}",
            type_name(freed),
            freed.address,
            holders(freed)
        )
    } else if let Some(low) = by_kind(FindingKind::RefcountBelowReferences)
        .find(|f| roots.contains(&f.address))
        .or_else(|| by_kind(FindingKind::RefcountBelowReferences).next())
    {
        victims.push(low.address);
        refcount_below_story(low, &errors, &more_victims(roots.len(), secondaries.len()))
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
    // The victim told of first, then the other roots.
    victims.extend(
        roots
            .iter()
            .filter(|r| !victims.contains(r))
            .collect::<Vec<_>>(),
    );
    let secondary_victims = secondaries
        .into_iter()
        .filter(|s| !victims.contains(s))
        .collect();
    Verdict {
        status: status(findings, &unchecked),
        summary,
        victims,
        secondary_victims,
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
    use super::super::{Finding, FindingKind, GcState, Referrer, ReferrerKind};
    use super::VerdictStatus;
    use crate::diagnostic::DiagnosticSource;
    use crate::diagnostic::Severity;
    use crate::layout::select::AttemptSource;

    /// Text output and JSON name these values alike.
    fn same_name<T: serde::Serialize + std::fmt::Debug>(value: T, name: &str) {
        assert_eq!(serde_json::to_value(&value).unwrap(), name, "{value:?}");
    }

    fn freed(address: u64, kind: FindingKind, holders: &[u64]) -> Finding {
        let mut f = Finding::new(kind, Severity::Error, address, None, String::new());
        f.referrers = holders
            .iter()
            .map(|&c| Referrer {
                at: c + 24,
                kind: ReferrerKind::Object,
                container: Some(c),
                description: format!("list {c:#x} item 0"),
            })
            .collect();
        f
    }

    #[test]
    fn items_held_only_by_victims_are_secondary() {
        let findings = vec![
            // A list freed while list 0x100 held it; its item 0x300 is held
            // only by the freed list; 0x400 by the freed list and a live one.
            freed(0x200, FindingKind::FreedObjectReferenced, &[0x100]),
            freed(0x300, FindingKind::FreedObjectReferenced, &[0x200]),
            freed(0x400, FindingKind::RefcountBelowReferences, &[0x200, 0x500]),
        ];
        let (roots, secondaries) = super::roots_and_secondaries(&findings);
        assert_eq!(roots, vec![0x200, 0x400]);
        assert_eq!(secondaries, vec![0x300]);
        // Victims that only hold each other are all roots.
        let pair = vec![
            freed(0x600, FindingKind::FreedObjectReferenced, &[0x700]),
            freed(0x700, FindingKind::FreedObjectReferenced, &[0x600]),
        ];
        assert_eq!(
            super::roots_and_secondaries(&pair),
            (vec![0x600, 0x700], vec![])
        );
    }

    #[test]
    fn freed_twice_is_said_only_with_a_trace_of_two_frees() {
        let low = freed(0x200, FindingKind::RefcountBelowReferences, &[0x100, 0x300])
            .with("refcount", 1)
            .with("references", 2);
        let once = super::refcount_below_story(&low, &[&low], "");
        assert!(
            once.contains("freed while still referenced, then handed out again"),
            "{once}"
        );
        assert!(!once.contains("twice"), "{once}");
        assert!(once.contains("refcount 1, 2 owned references"), "{once}");
        assert!(once.contains("list 0x100 item 0"), "{once}");
        let link = Finding::new(
            FindingKind::GcListCycle,
            Severity::Error,
            0x200,
            None,
            String::new(),
        );
        let twice = super::refcount_below_story(&low, &[&low, &link], "");
        assert!(twice.contains("freed twice"), "{twice}");
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
        for k in ReferrerKind::ALL {
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
