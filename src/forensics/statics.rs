//! Statics of extension modules that point at objects, freed or alive. A C
//! binding that keeps an object in a global without a reference of its own
//! leaves that global pointing into freed memory once the last real
//! reference goes; the next use hands the block out again. Once the memory
//! holds a new object, the static is a reference its refcount does not
//! count, which the reference counter finds. Only extension modules are
//! scanned (a `PyInit_<name>` or 2.7 `init<name>` symbol says so): the
//! interpreter's own statics point at freed blocks on purpose (free-list
//! heads, allocator state).

use rustc_hash::{FxHashMap, FxHashSet};

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
/// Statics pointing at live objects kept per core, for the reference counter.
const MAX_LIVE: usize = 100_000;

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

/// The words in extension modules' writable data that point at objects.
#[derive(Default)]
pub(crate) struct StaticPointers<'p> {
    /// At blocks whose header says freed: a finding each, once the other
    /// checks have run.
    dead: Vec<Finding>,
    /// At objects whose header says alive: each with the statics pointing
    /// at it, as referrers. A static that owns a reference is counted in
    /// the refcount like any owner; one that does not is a borrowed or
    /// stale pointer, which the reference counter can tell.
    pub(crate) live: FxHashMap<u64, Vec<super::Referrer>>,
    /// The file name of the extension each live static lies in, by the
    /// static's address.
    module_file: FxHashMap<u64, &'p str>,
}

/// Entries read from a dict in search of `__file__`: a module's namespace
/// is a few thousand names at most.
const MAX_MODULE_DICT_ENTRIES: usize = 10_000;

impl StaticPointers<'_> {
    /// Whether every static pointing at `target` lies in an extension whose
    /// own module namespace holds `target` too (`referrers` are its
    /// referrers). `PyModule_AddObject` steals the reference it is given: an
    /// extension that also keeps the object in a global holds it borrowed,
    /// by design, and its module keeps the object alive.
    pub(crate) fn borrowed_from_own_module(
        &self,
        heap: &ReadContext,
        target: u64,
        referrers: &[super::Referrer],
    ) -> bool {
        let Some(own) = self.live.get(&target) else {
            return false;
        };
        let namespaces: Vec<String> = referrers
            .iter()
            .filter(|r| r.kind == super::ReferrerKind::Object)
            .filter_map(|r| r.container)
            .filter_map(|dict| module_file_name(heap, dict))
            .collect();
        own.iter().all(|s| {
            self.module_file
                .get(&s.at)
                .is_some_and(|file| namespaces.iter().any(|n| n == file))
        })
    }
}

/// The file name in a module namespace's `__file__` (`_ctypes.so` for
/// `/usr/lib/python2.7/lib-dynload/_ctypes.so`), when `dict` is a dict that
/// has one.
fn module_file_name(heap: &ReadContext, dict: u64) -> Option<String> {
    let objects = &heap.objects;
    if objects.type_name(dict).ok()? != "dict" {
        return None;
    }
    let mut file = None;
    let _ = objects.for_each_dict_entry(dict, MAX_MODULE_DICT_ENTRIES, &mut |e| {
        if file.is_none() && objects.string(e.key, 16).is_ok_and(|k| k == "__file__") {
            file = Some(e.value);
        }
    });
    let path = objects.string(file?, 4096).ok()?;
    Some(path.rsplit('/').next().unwrap_or(&path).to_string())
}

/// Every word in an extension module's writable data that points at an
/// object: alive, or freed (and whose stale `ob_type` is still a type, so
/// the block was an object).
pub(crate) fn survey<'p>(
    process: &'p Process,
    heap: &ReadContext,
    free: &FreeLists,
) -> StaticPointers<'p> {
    let mut out = StaticPointers::default();
    let mut headers = HeaderCheck::new();
    let mut budget = MAX_BYTES;
    let mut live = 0;
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
                let at = start + 8 * i as u64;
                let Some(why) = headers.dead(heap, target) else {
                    // Alive, if it is an object at all: its type a type.
                    if live < MAX_LIVE
                        && heap.object_header(target).is_some()
                        && headers.was_object(heap, target)
                    {
                        let symbol = StaticSymbol::of(module, at);
                        if symbol
                            .as_ref()
                            .is_some_and(|s| is_type_object(heap, &mut headers, s.runtime_start))
                            // Modules keep borrowed pointers to types by
                            // design: a C API capsule's struct copied into
                            // another module (`_ssl`'s `PySocketModule`),
                            // cached exception types.
                            || is_type_object(heap, &mut headers, target)
                            // A cache borrows what it points at, checked
                            // before use (`_asyncio`'s `cached_running_holder`
                            // with its thread id).
                            || symbol.as_ref().is_some_and(|s| s.name.contains("cache"))
                        {
                            // A field of a type object the module defines
                            // statically (`tp_weaklist`, `tp_subclasses`,
                            // caches) points at objects without owning them.
                            continue;
                        }
                        live += 1;
                        out.module_file.insert(at, module.name());
                        out.live.entry(target).or_default().push(static_referrer(
                            module,
                            at,
                            symbol.as_ref(),
                        ));
                    }
                    continue;
                };
                if out.dead.len() == MAX_FINDINGS || in_module_free_list(module, at) {
                    continue;
                }
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
                let mut f = static_finding(module, at, target, why, heap);
                if let Some(slot) = list {
                    f.message
                        .push_str(&format!(" (it is on the {} free list)", slot.list));
                    f.list = Some(slot.list.clone());
                }
                out.dead.push(f);
            }
        }
    }
    out
}

/// The findings about statics that point at freed objects, each saying
/// whether other findings are about the same object.
pub(crate) fn report(statics: StaticPointers<'_>, findings: &mut Vec<Finding>) {
    let flagged: FxHashSet<u64> = findings.iter().map(|f| f.address).collect();
    for mut f in statics.dead {
        // Its other findings tell the story; this one names the static.
        if flagged.contains(&f.address) {
            f.message.push_str(" (see its other findings)");
        }
        findings.push(f);
    }
}

/// Whether the static word at `at` heads a module's own free list
/// (`_asyncio`'s `fi_freelist`, 2.7's `free_list`s): its objects are freed
/// by design, waiting to be reused.
fn in_module_free_list(module: &Module, at: u64) -> bool {
    StaticSymbol::of(module, at).is_some_and(|s| {
        let name = s.name.to_ascii_lowercase();
        name.contains("freelist") || name.contains("free_list")
    })
}

/// Whether `at` starts a type object: its type is a type, and so is its
/// type's type. One level is not enough for an array of object pointers,
/// whose second word, read as `ob_type`, points at an object whose
/// `tp_flags` word is whatever follows it (a heap pointer has the
/// type-subclass bit).
fn is_type_object(heap: &ReadContext, headers: &mut HeaderCheck, at: u64) -> bool {
    headers.is_type(heap, at)
        && heap
            .objects
            .type_of(at)
            .is_ok_and(|meta| headers.is_type(heap, meta))
}

/// The symbol a static word lies in.
struct StaticSymbol {
    name: String,
    /// The word's offset in it.
    offset: u64,
    /// Where the symbol starts in the process.
    runtime_start: u64,
}

impl StaticSymbol {
    fn of(module: &Module, at: u64) -> Option<StaticSymbol> {
        let bias = module.load_bias?;
        let link_time = at.wrapping_sub(bias);
        let (name, start) = module.symbol_at(link_time)?;
        Some(StaticSymbol {
            name: name.to_string(),
            offset: link_time.wrapping_sub(start),
            runtime_start: start.wrapping_add(bias),
        })
    }

    /// "static `name`+0x8", or the address when no symbol covers it.
    fn describe(symbol: Option<&StaticSymbol>, at: u64) -> String {
        match symbol {
            Some(s) if s.offset == 0 => format!("static `{}`", s.name),
            Some(s) => format!("static `{}`+{:#x}", s.name, s.offset),
            None => format!("the static at {at:#x}"),
        }
    }
}

fn static_referrer(module: &Module, at: u64, symbol: Option<&StaticSymbol>) -> super::Referrer {
    super::Referrer {
        at,
        kind: super::ReferrerKind::Static,
        container: None,
        description: format!(
            "{} in {}",
            StaticSymbol::describe(symbol, at),
            module.name()
        ),
    }
}

fn static_finding(
    module: &Module,
    at: u64,
    target: u64,
    why: DeadHeader,
    heap: &ReadContext,
) -> Finding {
    let symbol = StaticSymbol::of(module, at);
    let type_name = heap
        .objects
        .type_name(target)
        .unwrap_or_else(|_| "object".into());
    let mut f = Finding::new(
        FindingKind::StaticPointsToFreed,
        Severity::Warning,
        target,
        None,
        format!(
            "{} in {} points to {type_name} {target:#x}, but {}: a global kept without a reference of its own",
            StaticSymbol::describe(symbol.as_ref(), at),
            module.name(),
            why.describe()
        ),
    )
    .with("static_address", at)
    .with("type_name", type_name);
    f = why.record(f);
    f.referrers = vec![static_referrer(module, at, symbol.as_ref())];
    f
}
