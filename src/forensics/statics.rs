//! Statics of extension modules that point at freed objects. A C binding
//! that keeps an object in a global without a reference of its own leaves
//! that global pointing into freed memory once the last real reference
//! goes; the next use hands the block out again. Only extension modules are
//! scanned (a `PyInit_<name>` or 2.7 `init<name>` symbol says so): the
//! interpreter's own statics point at freed blocks on purpose (free-list
//! heads, allocator state).

use rustc_hash::FxHashSet;

use super::freelists::FreeLists;
use super::items::{DeadHeader, HeaderCheck};
use super::read_context::ReadContext;
use super::{Finding, FindingKind};
use crate::diagnostic::Severity;
use crate::memory::Memory;
use crate::modules::{Module, ModuleKind};
use crate::process::Process;

/// Bytes of writable data scanned per module, and in all: an extension's
/// globals are a few KiB; a hostile core must not make this a heap scan.
const MAX_BYTES_PER_MODULE: u64 = 4 << 20;
const MAX_BYTES: u64 = 64 << 20;
/// Findings kept per core: one static is the story, a thousand is noise.
const MAX_FINDINGS: usize = 256;

/// Whether `module` is a Python extension module: it defines its init function.
fn is_extension(module: &Module) -> bool {
    if module.kind != ModuleKind::Library {
        return false;
    }
    // `_json.cpython-311-x86_64-linux-gnu.so` → `_json`.
    let stem = module.name().split('.').next().unwrap_or_default();
    if stem.is_empty() || stem.starts_with("lib") {
        return false;
    }
    module
        .symbol_address(&format!("PyInit_{stem}"), None)
        .or_else(|| module.symbol_address(&format!("init{stem}"), None))
        .is_some()
}

/// Flag every word in an extension module's writable data that points at
/// an object whose header says freed (and whose stale `ob_type` is still a
/// type, so the block was an object).
pub(crate) fn scan(
    process: &Process,
    heap: &ReadContext,
    free: &FreeLists,
    flagged: &FxHashSet<u64>,
    findings: &mut Vec<Finding>,
) {
    let mut headers = HeaderCheck::new();
    let mut budget = MAX_BYTES;
    let mut found = 0;
    for module in process.modules().modules() {
        if !is_extension(module) {
            continue;
        }
        let mut module_budget = MAX_BYTES_PER_MODULE;
        // The module's own data and bss, from its file's program headers:
        // the core's segment there may run on into an anonymous mapping
        // (the heap) that the kernel merged with the bss.
        // Relocated data made read-only after start-up (RELRO) is a mapping
        // of its own: read each part of the core that overlaps.
        let ranges = module.writable_data();
        let pieces = ranges.iter().flat_map(|&(start, size)| {
            let end = start.saturating_add(size);
            process.core().segments().iter().filter_map(move |seg| {
                let from = seg.vaddr.max(start);
                let to = seg.end().min(end);
                (from < to).then_some((from & !7, to))
            })
        });
        for (start, end) in pieces {
            let len = (end - start).min(module_budget).min(budget);
            module_budget -= len;
            budget -= len;
            let Some(bytes) = heap.memory.slice_at(start, len as usize) else {
                continue;
            };
            let own = start..start.saturating_add(len);
            for (i, chunk) in bytes.chunks_exact(8).enumerate() {
                let target = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                // Objects a static owns live on the heap: a pointer into
                // any module's image is its own data (static type objects,
                // tables).
                if target < 4096
                    || !target.is_multiple_of(8)
                    || own.contains(&target)
                    || process.modules().by_address(target).is_some()
                {
                    continue;
                }
                let Some(why) = headers.dead(heap, target) else {
                    continue;
                };
                // A free-list member is a freed object whatever its link
                // overwrote (a float's `ob_type`); elsewhere a pointer whose
                // `ob_type` is no type is more likely not an object at all.
                let list = free
                    .members
                    .contains(&target)
                    .then(|| free.slots.iter().find(|s| s.members.contains(&target)))
                    .flatten();
                if list.is_none()
                    && (matches!(why, DeadHeader::NotAType(_)) || !headers.was_object(heap, target))
                {
                    continue;
                }
                let at = start + 8 * i as u64;
                let mut f = static_finding(module, at, target, why, heap, flagged);
                if let Some(slot) = list {
                    f.message
                        .push_str(&format!(" (it is on the {} free list)", slot.list));
                    f.list = Some(slot.list.clone());
                }
                findings.push(f);
                found += 1;
                if found == MAX_FINDINGS {
                    return;
                }
            }
        }
    }
}

fn static_finding(
    module: &Module,
    at: u64,
    target: u64,
    why: DeadHeader,
    heap: &ReadContext,
    flagged: &FxHashSet<u64>,
) -> Finding {
    let static_name = module
        .load_bias
        .and_then(|bias| {
            let link_time = at.wrapping_sub(bias);
            module
                .symbol_at(link_time)
                .map(|(name, start)| (name, link_time.wrapping_sub(start)))
        })
        .map(|(name, offset)| {
            if offset == 0 {
                format!("static `{name}`")
            } else {
                format!("static `{name}`+{offset:#x}")
            }
        })
        .unwrap_or_else(|| format!("the static at {at:#x}"));
    let type_name = heap
        .objects
        .type_name(target)
        .unwrap_or_else(|_| "object".into());
    // Its other findings tell the story; this one names the static.
    let also = if flagged.contains(&target) {
        " (see its other findings)"
    } else {
        ""
    };
    let mut f = Finding::new(
        FindingKind::StaticPointsToFreed,
        Severity::Warning,
        target,
        None,
        format!(
            "{static_name} in {} points to {type_name} {target:#x}, but {}: a global kept without a reference of its own{also}",
            module.name(),
            why.describe()
        ),
    )
    .with("static_address", at)
    .with("type_name", type_name);
    f = why.record(f);
    f.referrers = vec![super::Referrer {
        at,
        kind: super::ReferrerKind::Memory,
        container: None,
        description: format!("{static_name} in {}", module.name()),
    }];
    f
}
