//! The module list of a core without an `NT_FILE` note, recovered from the
//! dynamic linker's own list in the process's memory.
//!
//! `NT_FILE` is how a core normally names the files a process had mapped,
//! but some cores lack it: gcore cores whose notes were cut, cores written
//! by other tools and emulators. Without a module list there are no
//! symbols and no stacks. Every dynamically linked process still carries
//! the list the dynamic linker keeps for debuggers: the executable's
//! `DT_DEBUG` entry points at `struct r_debug`, whose `r_map` heads the
//! `link_map` chain of every loaded object with its load bias and path.
//! The executable itself is found through the auxiliary vector
//! (`AT_PHDR`), which the kernel always writes.
//!
//! A core is hostile input: every read can fail, every walk is capped and
//! stops at an address it has seen before, strings are bounded, and what
//! cannot be read is reported (with its address) rather than guessed.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{
    CoreElfInfo, Files, LoadHeader, MAX_MODULE_EXTENT, MAX_PHDRS, Module, ModuleSet, ModuleSource,
    load_header, locate_module, mapping_state, read_core_elf,
};
use crate::corefile::{Auxv, CoreFile};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::memory::{FileRange, Memory, MemoryExt, ProcessMemory, ReadError};

/// `link_map` entries followed, at most, over every namespace.
const MAX_ENTRIES: usize = 4096;
/// Namespaces (`r_debug_extended.r_next`) followed, at most.
const MAX_NAMESPACES: usize = 64;
/// Bytes of a module's path, at most.
const MAX_NAME: usize = 4096;
/// Dynamic-section entries read, at most.
const MAX_DYNAMIC: u64 = 4096;
/// Pages probed for ELF headers below the dynamic sections, over every
/// module: bounds the search a chain of garbage entries can cause.
const MAX_HEADER_PROBES: u64 = 1 << 16;
/// How far below its dynamic section a module's ELF header is looked for.
const MAX_HEADER_DISTANCE: u64 = 64 << 20;
/// Problems with single entries (a name, a header) listed, at most; the
/// rest are counted.
const MAX_ENTRY_PROBLEMS: usize = 16;
/// Read-only ranges a module's file backs, at most.
const MAX_RANGES: usize = 16;
const PAGE: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_PHDR: u32 = 6;
const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;

/// Why the dynamic linker's list could not be read, or not all of it.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChainError {
    /// No `AT_PHDR`: nothing leads to the executable.
    #[error("the auxiliary vector has no AT_PHDR: the executable cannot be found")]
    NoPhdr,
    /// Program headers of a size other than ELF64's.
    #[error("AT_PHENT is {0}, not the 56 bytes of an ELF64 program header")]
    BadPhent(u64),
    /// Neither `AT_PHNUM` nor an ELF header says how many headers there are.
    #[error("no AT_PHNUM, and no ELF header before the program headers at {0:#x}")]
    NoPhnum(u64),
    /// A read the walk needed failed.
    #[error("{what}: {error}")]
    Read {
        /// What was being read.
        what: &'static str,
        /// The failed read, with its address.
        error: ReadError,
    },
    /// The executable's load bias cannot be computed.
    #[error(
        "the executable's program headers at {0:#x} have no PT_PHDR and no ELF header \
         precedes them: its load bias is unknown"
    )]
    NoBias(u64),
    /// The executable has no `PT_LOAD`.
    #[error("the executable's program headers at {0:#x} have no PT_LOAD")]
    NoLoads(u64),
    /// A static executable: there is no list to read.
    #[error("the executable has no PT_DYNAMIC (statically linked): it is the only module")]
    Static,
    /// The dynamic section has no `DT_DEBUG`.
    #[error("the executable's dynamic section at {0:#x} has no DT_DEBUG entry")]
    NoDebug(u64),
    /// `DT_DEBUG` was never filled in.
    #[error(
        "DT_DEBUG in the dynamic section at {0:#x} is 0: the dynamic linker had not \
         filled it in"
    )]
    DebugUnset(u64),
    /// `r_debug` is not initialised.
    #[error("r_debug at {at:#x} has r_version {version}: not initialised")]
    BadVersion {
        /// Where `r_debug` is.
        at: u64,
        /// Its `r_version`.
        version: i32,
    },
    /// An entry comes back: the chain is a cycle.
    #[error("link_map entry {0:#x} comes again: the chain is a cycle; the walk stops there")]
    Cycle(u64),
    /// The entry's `l_prev` is not the entry before it.
    #[error(
        "link_map entry {at:#x} has l_prev {l_prev:#x} where {expected:#x} was expected: \
         the chain is damaged; the walk stops there"
    )]
    BrokenLink {
        /// The entry.
        at: u64,
        /// Its `l_prev`.
        l_prev: u64,
        /// The entry before it (0 for the first).
        expected: u64,
    },
    /// More entries than anyone loads.
    #[error("more than {MAX_ENTRIES} link_map entries; the rest are ignored")]
    TooLong,
    /// An entry's name is unreadable.
    #[error("link_map entry {at:#x}: its name at {name:#x} is unreadable ({error}); kept unnamed")]
    Name {
        /// The entry.
        at: u64,
        /// `l_name`.
        name: u64,
        /// Why.
        error: ReadError,
    },
    /// More entries had problems than are listed.
    #[error("{0} more link_map entries had an unreadable name or no ELF header")]
    MoreEntryProblems(usize),
    /// No ELF header was found for an entry.
    #[error(
        "link_map entry {at:#x} ({name}): no ELF header in the core for load bias {l_addr:#x} \
         and dynamic section {l_ld:#x}; the module is left out"
    )]
    NoHeader {
        /// The entry.
        at: u64,
        /// Its name.
        name: String,
        /// `l_addr`.
        l_addr: u64,
        /// `l_ld`.
        l_ld: u64,
    },
}

impl ChainError {
    /// A static executable is no failure: there is simply no list.
    fn severity(&self) -> Severity {
        match self {
            ChainError::Static => Severity::Note,
            _ => Severity::Warning,
        }
    }
}

/// One object the dynamic linker had loaded (or the executable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Object {
    /// Its path as the dynamic linker (or `AT_EXECFN`) names it.
    pub path: String,
    /// Lowest mapped address: its first `PT_LOAD`, page-aligned.
    pub base: u64,
    /// One past its last `PT_LOAD`'s memory.
    pub end: u64,
    /// The main program.
    pub is_exe: bool,
    /// Its read-only `PT_LOAD`s: `(start, end, file offset)`, whole pages.
    pub ranges: Vec<(u64, u64, u64)>,
}

/// What the walk found, and what stopped it.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The executable first, then the chain's objects in order.
    pub objects: Vec<Object>,
    /// Where `r_debug` is, when the walk reached it.
    pub r_debug: Option<u64>,
    /// Whether at least one `link_map` entry was read.
    pub chain_read: bool,
    /// What went wrong, in order.
    pub problems: Vec<ChainError>,
    /// Problems with single entries beyond [`MAX_ENTRY_PROBLEMS`].
    unlisted: usize,
}

impl Recovery {
    /// List a problem with one entry, or count it once enough are listed.
    fn entry_problem(&mut self, problem: ChainError) {
        let listed = self
            .problems
            .iter()
            .filter(|p| matches!(p, ChainError::Name { .. } | ChainError::NoHeader { .. }))
            .count();
        if listed < MAX_ENTRY_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.unlisted += 1;
        }
    }
}

/// The modules of a core without `NT_FILE`: the executable and the
/// dynamic linker's list, each located and attached to `memory` like an
/// `NT_FILE` module, plus the vDSO.
pub(super) fn load(core: &CoreFile, memory: &mut ProcessMemory, files: &Files) -> ModuleSet {
    let recovery = recover(&memory.core_only(), core.auxv());
    let mut diagnostics: Vec<Diagnostic> = recovery
        .problems
        .iter()
        .map(|p| {
            let message = format!("module list from the dynamic linker: {p}");
            match p.severity() {
                Severity::Note => Diagnostic::note(DiagnosticSource::Modules, message),
                _ => Diagnostic::warning(DiagnosticSource::Modules, message),
            }
        })
        .collect();
    let mut modules: Vec<Arc<Module>> = Vec::new();
    let mut ranges = Vec::new();
    for object in &recovery.objects {
        let Some(module) = locate_module(
            memory,
            files,
            &object.path,
            object.base,
            object.end,
            object.is_exe,
            &mut diagnostics,
        ) else {
            continue;
        };
        let state = mapping_state(&module);
        ranges.extend(
            object
                .ranges
                .iter()
                .map(|&(start, end, file_offset)| FileRange {
                    recorded_path: object.path.clone(),
                    start,
                    end,
                    file_offset,
                    state: state.clone(),
                }),
        );
        modules.push(Arc::new(module));
    }
    memory.add_file_ranges(ranges);
    let source = if recovery.chain_read {
        ModuleSource::LinkMap
    } else if !modules.is_empty() {
        ModuleSource::Auxv
    } else {
        ModuleSource::None
    };
    let found = modules.len();
    let plural = if found == 1 { "" } else { "s" };
    let summary = match (source, recovery.r_debug) {
        (ModuleSource::LinkMap, Some(at)) => format!(
            "the core has no NT_FILE note: {found} module{plural} recovered from the dynamic \
             linker's link_map list (r_debug at {at:#x}) and the auxiliary vector"
        ),
        (ModuleSource::Auxv, _) => format!(
            "the core has no NT_FILE note and the dynamic linker's list was not read: \
             {found} module{plural} (the executable) found through the auxiliary vector"
        ),
        _ => "the core has no NT_FILE note and no module could be recovered from the \
              dynamic linker's list: no symbols and no native stacks"
            .to_string(),
    };
    let summary = match source {
        ModuleSource::None => Diagnostic::warning(DiagnosticSource::Modules, summary),
        _ => Diagnostic::note(DiagnosticSource::Modules, summary),
    };
    diagnostics.insert(0, summary);
    ModuleSet::assemble(core, memory, modules, Vec::new(), diagnostics, source)
}

/// Walk from the auxiliary vector to the executable, its dynamic section,
/// `r_debug` and the `link_map` chain. Everything found before a problem is
/// kept; the problem is listed.
pub(super) fn recover(mem: &impl Memory, auxv: &Auxv) -> Recovery {
    let mut recovery = Recovery::default();
    let exe = match executable(mem, auxv) {
        Ok(exe) => exe,
        Err(e) => {
            recovery.problems.push(e);
            return recovery;
        }
    };
    let bias = exe.bias;
    let dynamic = exe.dynamic;
    recovery.objects.push(exe.object);
    let r_debug = match dynamic
        .ok_or(ChainError::Static)
        .and_then(|at| r_debug(mem, at))
    {
        Ok(at) => at,
        Err(e) => {
            recovery.problems.push(e);
            return recovery;
        }
    };
    recovery.r_debug = Some(r_debug);
    walk(mem, auxv, bias, r_debug, &mut recovery);
    if recovery.unlisted > 0 {
        let unlisted = recovery.unlisted;
        recovery
            .problems
            .push(ChainError::MoreEntryProblems(unlisted));
    }
    recovery
}

/// The executable as the auxiliary vector shows it.
struct Executable {
    object: Object,
    /// Runtime minus link-time address.
    bias: u64,
    /// Runtime address of its dynamic section.
    dynamic: Option<u64>,
}

fn executable(mem: &impl Memory, auxv: &Auxv) -> Result<Executable, ChainError> {
    let phdr = auxv.phdr.ok_or(ChainError::NoPhdr)?;
    if let Some(phent) = auxv.phent.filter(|&n| n != 56) {
        return Err(ChainError::BadPhent(phent));
    }
    // The ELF header, when the program headers follow it on their page
    // (they always do as the kernel maps an executable).
    let page = phdr & !(PAGE - 1);
    let ehdr_phnum = || {
        let ehdr = mem.read_array::<64>(page).ok()?;
        let phoff = u64::from_le_bytes(ehdr[32..40].try_into().ok()?);
        (&ehdr[..4] == b"\x7fELF" && page.checked_add(phoff) == Some(phdr))
            .then(|| u64::from(u16::from_le_bytes([ehdr[56], ehdr[57]])))
    };
    let phnum = auxv
        .phnum
        .or_else(ehdr_phnum)
        .ok_or(ChainError::NoPhnum(phdr))?
        .min(MAX_PHDRS);
    let table = mem
        .read_bytes(phdr, phnum * 56, MAX_PHDRS * 56)
        .map_err(|error| ChainError::Read {
            what: "the executable's program headers (AT_PHDR)",
            error,
        })?;
    let mut pt_phdr = None;
    let mut pt_dynamic = None;
    let mut loads: Vec<LoadHeader> = Vec::new();
    for chunk in table.chunks_exact(56) {
        let mut ph = [0u8; 56];
        ph.copy_from_slice(chunk);
        let header = load_header(&ph);
        match u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) {
            PT_LOAD => loads.push(header),
            PT_PHDR => pt_phdr = Some(header.vaddr),
            PT_DYNAMIC => pt_dynamic = Some(header.vaddr),
            _ => {}
        }
    }
    let first_vaddr = loads
        .iter()
        .map(|l| l.vaddr & !(PAGE - 1))
        .min()
        .ok_or(ChainError::NoLoads(phdr))?;
    // PT_PHDR says where the headers are at link time; without it, the
    // ELF header on their page starts the first PT_LOAD.
    let bias = match pt_phdr {
        Some(vaddr) => phdr.wrapping_sub(vaddr),
        None if ehdr_phnum().is_some() => page.wrapping_sub(first_vaddr),
        None => return Err(ChainError::NoBias(phdr)),
    };
    let path = auxv
        .execfn
        .and_then(|at| mem.read_cstr(at, MAX_NAME).ok())
        .map(|name| String::from_utf8_lossy(&name).into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "[executable]".to_string());
    let base = bias.wrapping_add(first_vaddr);
    Ok(Executable {
        object: Object {
            path,
            base,
            end: module_end(
                &loads,
                bias,
                base,
                base.saturating_add(span(&loads, first_vaddr)),
            ),
            is_exe: true,
            ranges: read_only_ranges(&loads, bias),
        },
        bias,
        dynamic: pt_dynamic.map(|v| bias.wrapping_add(v)),
    })
}

/// Bytes from `first_vaddr` to the end of the last `PT_LOAD`'s memory
/// (`.bss` included), bounded.
fn span(loads: &[LoadHeader], first_vaddr: u64) -> u64 {
    loads
        .iter()
        .map(|l| l.vaddr.saturating_add(l.memsz.max(l.filesz)))
        .max()
        .unwrap_or(first_vaddr)
        .saturating_sub(first_vaddr)
        .min(MAX_MODULE_EXTENT)
}

/// One past a module's last mapped byte, as `NT_FILE` would give it: the
/// loader maps each segment's file bytes as whole pages, and `.bss` past
/// them (`memory_end`, from the memory sizes) in anonymous memory.
fn module_end(loads: &[LoadHeader], bias: u64, base: u64, memory_end: u64) -> u64 {
    let file_end = loads
        .iter()
        .filter_map(|l| {
            bias.wrapping_add(l.vaddr)
                .checked_add(l.filesz)?
                .checked_next_multiple_of(PAGE)
        })
        .max()
        .unwrap_or(0);
    // A hostile header cannot stretch a module past the bounded extent.
    let bound = base.saturating_add(MAX_MODULE_EXTENT);
    file_end.min(bound).max(memory_end)
}

/// The read-only `PT_LOAD`s at runtime: what the file can supply when the
/// core lacks the pages (writable ones were changed by the process). Whole
/// pages, as the kernel maps them.
fn read_only_ranges(loads: &[LoadHeader], bias: u64) -> Vec<(u64, u64, u64)> {
    loads
        .iter()
        .filter(|l| !l.writable && l.filesz > 0)
        .take(MAX_RANGES)
        .filter_map(|l| {
            let start = bias.wrapping_add(l.vaddr) & !(PAGE - 1);
            let end = bias
                .wrapping_add(l.vaddr)
                .checked_add(l.filesz)?
                .checked_next_multiple_of(PAGE)?;
            let in_page = l.vaddr % PAGE;
            let offset = l.offset.checked_sub(in_page)?;
            (start < end && end - start <= MAX_MODULE_EXTENT).then_some((start, end, offset))
        })
        .collect()
}

/// `r_debug`'s address: the executable's `DT_DEBUG`, checked.
fn r_debug(mem: &impl Memory, dynamic: u64) -> Result<u64, ChainError> {
    let mut value = None;
    for i in 0..MAX_DYNAMIC {
        let at = dynamic.wrapping_add(i * 16);
        let entry = mem.read_array::<16>(at).map_err(|error| ChainError::Read {
            what: "the executable's dynamic section",
            error,
        })?;
        let tag = u64::from_le_bytes(entry[..8].try_into().unwrap_or_default());
        let val = u64::from_le_bytes(entry[8..].try_into().unwrap_or_default());
        match tag {
            DT_NULL => break,
            DT_DEBUG => {
                value = Some(val);
                break;
            }
            _ => {}
        }
    }
    match value {
        None => Err(ChainError::NoDebug(dynamic)),
        Some(0) => Err(ChainError::DebugUnset(dynamic)),
        Some(at) => Ok(at),
    }
}

/// Follow `r_map` (and, from `r_version` 2, `r_next` to the other
/// namespaces), adding each object found to `recovery`.
fn walk(mem: &impl Memory, auxv: &Auxv, exe_bias: u64, r_debug: u64, recovery: &mut Recovery) {
    let mut seen_entries = BTreeSet::new();
    let mut seen_namespaces = BTreeSet::new();
    let mut probes = 0u64;
    let mut namespace = r_debug;
    for _ in 0..MAX_NAMESPACES {
        if namespace == 0 || !seen_namespaces.insert(namespace) {
            return;
        }
        // struct r_debug { int r_version; link_map *r_map; r_brk; r_state;
        // r_ldbase; }, and from version 2 `r_debug_extended *r_next` after it.
        let header = match mem.read_array::<16>(namespace) {
            Ok(h) => h,
            Err(error) => {
                let what = if namespace == r_debug {
                    "r_debug"
                } else {
                    "r_debug_extended.r_next (a linker namespace)"
                };
                recovery.problems.push(ChainError::Read { what, error });
                return;
            }
        };
        let version = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let r_map = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
        if version < 1 {
            recovery.problems.push(ChainError::BadVersion {
                at: namespace,
                version,
            });
            return;
        }
        let stopped = walk_namespace(
            mem,
            auxv,
            exe_bias,
            r_map,
            &mut seen_entries,
            &mut probes,
            recovery,
        );
        if stopped || version < 2 {
            return;
        }
        namespace = match mem.read_u64(namespace.wrapping_add(40)) {
            Ok(next) => next,
            Err(error) => {
                recovery.problems.push(ChainError::Read {
                    what: "r_debug_extended.r_next",
                    error,
                });
                return;
            }
        };
    }
}

/// Follow one `link_map` chain from `head`; true when a problem stopped it.
fn walk_namespace(
    mem: &impl Memory,
    auxv: &Auxv,
    exe_bias: u64,
    head: u64,
    seen: &mut BTreeSet<u64>,
    probes: &mut u64,
    recovery: &mut Recovery,
) -> bool {
    let mut previous = 0u64;
    let mut next = head;
    while next != 0 {
        let at = next;
        if seen.len() >= MAX_ENTRIES {
            recovery.problems.push(ChainError::TooLong);
            return true;
        }
        if !seen.insert(at) {
            recovery.problems.push(ChainError::Cycle(at));
            return true;
        }
        // struct link_map { l_addr; char *l_name; l_ld; l_next; l_prev; }
        let entry = match mem.read_array::<40>(at) {
            Ok(e) => e,
            Err(error) => {
                recovery.problems.push(ChainError::Read {
                    what: "a link_map entry",
                    error,
                });
                return true;
            }
        };
        let word =
            |i: usize| u64::from_le_bytes(entry[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let (l_addr, l_name, l_ld, l_next, l_prev) = (word(0), word(1), word(2), word(3), word(4));
        if l_prev != previous {
            recovery.problems.push(ChainError::BrokenLink {
                at,
                l_prev,
                expected: previous,
            });
            return true;
        }
        recovery.chain_read = true;
        let name = match l_name {
            0 => String::new(),
            _ => match mem.read_cstr(l_name, MAX_NAME) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) => {
                    recovery.entry_problem(ChainError::Name {
                        at,
                        name: l_name,
                        error,
                    });
                    String::new()
                }
            },
        };
        previous = at;
        next = l_next;
        // The executable (its entry has no name) came from the auxiliary
        // vector, with its path; the vDSO is loaded apart, from the core.
        let is_vdso = auxv.sysinfo_ehdr == Some(l_addr)
            || name.starts_with("linux-vdso")
            || name.starts_with("linux-gate");
        if is_vdso || (name.is_empty() && l_addr == exe_bias) {
            continue;
        }
        let Some((base, info)) = module_header(mem, l_addr, l_ld, probes) else {
            recovery.entry_problem(ChainError::NoHeader {
                at,
                name: if name.is_empty() {
                    "unnamed".into()
                } else {
                    name
                },
                l_addr,
                l_ld,
            });
            continue;
        };
        if recovery.objects.iter().any(|o| o.base == base) {
            continue;
        }
        let path = if name.is_empty() {
            format!("[unnamed at {base:#x}]")
        } else {
            name
        };
        let memory_end = base.saturating_add(info.extent.min(MAX_MODULE_EXTENT));
        recovery.objects.push(Object {
            path,
            base,
            end: module_end(&info.loads, l_addr, base, memory_end),
            is_exe: false,
            ranges: read_only_ranges(&info.loads, l_addr),
        });
    }
    false
}

/// The ELF header of the object with load bias `l_addr` and dynamic
/// section `l_ld`: at the bias itself for an object linked at 0 (nearly
/// all), else the nearest header below the dynamic section whose first
/// `PT_LOAD` gives that bias. `probes` bounds the pages looked at.
fn module_header(
    mem: &impl Memory,
    l_addr: u64,
    l_ld: u64,
    probes: &mut u64,
) -> Option<(u64, CoreElfInfo)> {
    let fits = |base: u64, info: &CoreElfInfo| {
        info.first_load_vaddr
            .is_some_and(|v| base.wrapping_sub(v) == l_addr)
            && l_ld >= base
            && l_ld - base < info.extent.max(PAGE)
    };
    if l_addr.is_multiple_of(PAGE)
        && let Some(info) = read_core_elf(mem, l_addr)
        && fits(l_addr, &info)
    {
        return Some((l_addr, info));
    }
    let top = l_ld & !(PAGE - 1);
    for k in 0..MAX_HEADER_DISTANCE / PAGE {
        if *probes >= MAX_HEADER_PROBES {
            return None;
        }
        *probes += 1;
        let base = top.checked_sub(k * PAGE)?;
        if mem.read_array::<4>(base).ok() != Some(*b"\x7fELF") {
            continue;
        }
        // The nearest header below is the object's, or the object has none.
        let info = read_core_elf(mem, base)?;
        return fits(base, &info).then_some((base, info));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;

    const BASE: u64 = 0x40_0000;

    /// A process image in one buffer at [`BASE`]: an executable whose
    /// program headers are at +0x40, its dynamic section at +0x1000 with
    /// DT_DEBUG, `r_debug` at +0x2000, and `link_map` entries from +0x3000
    /// (0x100 apart, with names at +0x80 in each), one per `(l_addr, l_ld,
    /// name)` in `libs`, after the executable's own.
    fn image(libs: &[(u64, u64, &str)]) -> BufferMemory {
        let mut b = vec![0u8; 0x8000];
        let put = |b: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut b, 0, b"\x7fELF\x02\x01\x01");
        put(&mut b, 32, &0x40u64.to_le_bytes());
        put(&mut b, 54, &56u16.to_le_bytes());
        put(&mut b, 56, &3u16.to_le_bytes());
        // PT_PHDR, PT_LOAD (r-x, the whole image), PT_DYNAMIC.
        let phdrs = [
            (6u32, 0x40u64, 4u32, 0xa8u64),
            (1, 0, 5, 0x8000),
            (2, 0x1000, 6, 0x10),
        ];
        for (i, (p_type, vaddr, flags, size)) in phdrs.into_iter().enumerate() {
            let at = 0x40 + 56 * i;
            put(&mut b, at, &p_type.to_le_bytes());
            put(&mut b, at + 4, &flags.to_le_bytes());
            put(&mut b, at + 8, &vaddr.to_le_bytes());
            put(&mut b, at + 16, &(BASE + vaddr).to_le_bytes());
            put(&mut b, at + 32, &size.to_le_bytes());
            put(&mut b, at + 40, &size.to_le_bytes());
        }
        put(&mut b, 0x1000, &DT_DEBUG.to_le_bytes());
        put(&mut b, 0x1008, &(BASE + 0x2000).to_le_bytes());
        put(&mut b, 0x2000, &1i32.to_le_bytes());
        put(&mut b, 0x2008, &(BASE + 0x3000).to_le_bytes());
        // The executable's entry, then the libraries'.
        let entries: Vec<(u64, u64, &str)> = std::iter::once((0, BASE + 0x1000, ""))
            .chain(libs.iter().copied())
            .collect();
        for (i, (l_addr, l_ld, name)) in entries.iter().enumerate() {
            let at = 0x3000 + 0x100 * i;
            let addr = BASE + at as u64;
            put(&mut b, at, &l_addr.to_le_bytes());
            put(&mut b, at + 8, &(addr + 0x80).to_le_bytes());
            put(&mut b, at + 16, &l_ld.to_le_bytes());
            let next = if i + 1 < entries.len() {
                addr + 0x100
            } else {
                0
            };
            put(&mut b, at + 24, &next.to_le_bytes());
            let prev = if i == 0 { 0 } else { addr - 0x100 };
            put(&mut b, at + 32, &prev.to_le_bytes());
            put(&mut b, at + 0x80, name.as_bytes());
        }
        BufferMemory {
            base: BASE,
            bytes: b,
        }
    }

    fn auxv() -> Auxv {
        Auxv {
            phdr: Some(BASE + 0x40),
            phnum: Some(3),
            phent: Some(56),
            execfn: Some(BASE + 0x3080 + 0x20),
            ..Auxv::default()
        }
    }

    /// Write `value` at `addr` of the image.
    fn poke(mem: &mut BufferMemory, addr: u64, value: u64) {
        let at = (addr - BASE) as usize;
        mem.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn the_executable_comes_from_the_auxiliary_vector() {
        let mut mem = image(&[]);
        mem.bytes[0x30a0..0x30a8].copy_from_slice(b"/bin/py\0");
        let found = recover(&mem, &auxv());
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert!(found.chain_read);
        assert_eq!(found.r_debug, Some(BASE + 0x2000));
        assert_eq!(
            found.objects,
            [Object {
                path: "/bin/py".into(),
                base: BASE,
                end: BASE + 0x8000,
                is_exe: true,
                ranges: vec![(BASE, BASE + 0x8000, 0)],
            }]
        );
    }

    #[test]
    fn entries_without_a_header_are_reported_and_skipped() {
        let mem = image(&[(0x7f00_0000_0000, 0x7f00_0000_1000, "/lib/libc.so.6")]);
        let found = recover(&mem, &auxv());
        assert_eq!(found.objects.len(), 1);
        assert!(matches!(
            found.problems.as_slice(),
            [ChainError::NoHeader { name, .. }] if name == "/lib/libc.so.6"
        ));
    }

    #[test]
    fn a_library_whose_header_is_in_memory_is_found() {
        // The executable's own image stands in for a library linked at
        // 0x400000 and loaded there (load bias 0): found below its l_ld.
        let mem = image(&[(0, BASE + 0x1000, "/lib/libself.so")]);
        let mut auxv = auxv();
        auxv.execfn = None;
        let found = recover(&mem, &auxv);
        // Same base as the executable: one module, not two.
        assert_eq!(found.objects.len(), 1, "{:?}", found.objects);
        assert_eq!(found.objects[0].path, "[executable]");
    }

    #[test]
    fn a_cycle_stops_the_walk() {
        let mut mem = image(&[(1 << 40, 0, "a"), (2 << 40, 0, "b")]);
        // b's l_next back to the executable's entry.
        poke(&mut mem, BASE + 0x3200 + 24, BASE + 0x3000);
        let found = recover(&mem, &auxv());
        assert!(
            found
                .problems
                .iter()
                .any(|p| matches!(p, ChainError::Cycle(at) if *at == BASE + 0x3000)),
            "{:?}",
            found.problems
        );
    }

    #[test]
    fn an_entry_that_links_to_itself_is_a_cycle() {
        let mut mem = image(&[(1 << 40, 0, "a")]);
        poke(&mut mem, BASE + 0x3100 + 24, BASE + 0x3100);
        let found = recover(&mem, &auxv());
        // The second visit is caught as a repeat before its back link is read.
        assert!(
            found
                .problems
                .iter()
                .any(|p| matches!(p, ChainError::Cycle(_))),
            "{:?}",
            found.problems
        );
    }

    #[test]
    fn garbage_pointers_are_reported_with_their_address() {
        let mut mem = image(&[]);
        poke(&mut mem, BASE + 0x2008, 0xdead_0000);
        let found = recover(&mem, &auxv());
        match found.problems.as_slice() {
            [ChainError::Read { error, .. }] => assert_eq!(error.addr, 0xdead_0000),
            other => panic!("{other:?}"),
        }
        assert!(!found.chain_read);
        // DT_DEBUG never filled in.
        let mut mem = image(&[]);
        poke(&mut mem, BASE + 0x1008, 0);
        let found = recover(&mem, &auxv());
        assert!(matches!(
            found.problems.as_slice(),
            [ChainError::DebugUnset(_)]
        ));
        // No auxiliary vector at all.
        let found = recover(&mem, &Auxv::default());
        assert!(matches!(found.problems.as_slice(), [ChainError::NoPhdr]));
        assert!(found.objects.is_empty());
    }

    #[test]
    fn a_back_link_that_does_not_match_stops_the_walk() {
        let mut mem = image(&[(1 << 40, 0, "a")]);
        poke(&mut mem, BASE + 0x3100 + 32, 0x1234);
        let found = recover(&mem, &auxv());
        assert!(matches!(
            found.problems.as_slice(),
            [ChainError::BrokenLink { l_prev: 0x1234, .. }]
        ));
    }

    #[test]
    fn names_are_bounded() {
        let mut mem = image(&[(1 << 40, 0, "a")]);
        // A name with no NUL in the rest of the buffer.
        let at = 0x3180;
        let len = mem.bytes.len();
        mem.bytes[at..len].fill(b'x');
        let found = recover(&mem, &auxv());
        assert!(
            found
                .problems
                .iter()
                .any(|p| matches!(p, ChainError::Name { .. })),
            "{:?}",
            found.problems
        );
    }
}
