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
//! Some cores hold no module's ELF header at all: QEMU dumps no executable
//! mapping, and on aarch64 the headers lie in the executable one. A
//! module's headers then come from its file, found by the path the core
//! gives (`AT_EXECFN` or the command line for the executable, `l_name` for
//! a library), and the file is used only if it fits the core: its program
//! headers put the executable's headers at `AT_PHDR` (a library's dynamic
//! section at `l_ld`), and its build-id equals the one the core holds or,
//! when the core holds none, its dynamic section equals the core's copy.
//!
//! A core is hostile input: every read can fail, every walk is capped and
//! stops at an address it has seen before, strings are bounded, and what
//! cannot be read is reported (with its address) rather than guessed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::{
    ElfInfo, FileStatus, Files, Identified, MAX_MODULE_EXTENT, Module, ModuleSet, ModuleSource,
    complete_module, core_build_id, locate_module, mapping_state, module_file_by_path,
    read_core_elf,
};
use crate::corefile::{Auxv, CoreFile};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::elf::ElfImage;
use crate::elf::headers::{
    FILE_HEADER_SIZE, FileHeader, MAX_PROGRAM_HEADERS, PROGRAM_HEADER_SIZE, PT_DYNAMIC, PT_PHDR,
    ProgramHeader, ProgramHeaders,
};
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
/// Module files looked up for headers the core lacks, at most: a chain of
/// garbage entries with names must not open thousands of files.
const MAX_FILE_LOOKUPS: usize = 1024;
/// Problems with single entries (a name, a header) listed, at most; the
/// rest are counted.
const MAX_ENTRY_PROBLEMS: usize = 16;
/// Read-only ranges a module's file backs, at most.
const MAX_RANGES: usize = 16;
/// Modules named in the note that says whose headers came from files.
const MAX_NAMED: usize = 8;
const PAGE: u64 = 4096;

const ET_EXEC: u16 = 2;
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
    /// The core does not give the executable's program headers, and no
    /// file that fits it does either.
    #[error("{core}; and {file}")]
    ExecutableHeaders {
        /// Why the core's copy did not serve.
        core: Box<ChainError>,
        /// Why no file stood in for it.
        file: Box<FileProblem>,
    },
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
    /// No ELF header was found for an entry, in the core or in a file.
    #[error(
        "link_map entry {at:#x} ({name}): no ELF header in the core for load bias {l_addr:#x} \
         and dynamic section {l_ld:#x}, and {file}; the module is left out"
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
        /// Why no file stood in for the core's header.
        file: Box<FileProblem>,
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

/// Why a module's file did not stand in for the headers the core lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FileProblem {
    /// Nothing names the module.
    #[error("nothing names its file")]
    NoName,
    /// No file was found.
    #[error("its file was not found (tried {})", paths(.tried))]
    NotFound {
        /// Where it was looked for.
        tried: Vec<PathBuf>,
    },
    /// The walk has opened as many files as it may.
    #[error("no file was looked up: {MAX_FILE_LOOKUPS} were already")]
    LookupsSpent,
    /// The file has no program headers this reader understands.
    #[error("{} has no ELF64 program headers with a PT_LOAD", .path.display())]
    NoProgramHeaders {
        /// The file.
        path: PathBuf,
    },
    /// The file's program headers put something elsewhere than the core has it.
    #[error(
        "{} does not fit: {what} is {core:#x} in the core, {} by the file",
        .path.display(),
        address(*.file)
    )]
    Misfit {
        /// The file.
        path: PathBuf,
        /// What disagrees.
        what: &'static str,
        /// The core's value.
        core: u64,
        /// The file's, if it has one.
        file: Option<u64>,
    },
    /// The core holds the module's build-id, and the file has another.
    #[error("{} is another build: build-id {file}, where the core holds {core}", .path.display())]
    OtherBuild {
        /// The file.
        path: PathBuf,
        /// The core's build-id, hex.
        core: String,
        /// The file's, hex (empty when it has none).
        file: String,
    },
    /// The core's dynamic section differs from the file's.
    #[error(
        "{} is not its file: dynamic entry {index} at {at:#x} is ({:#x}, {:#x}) in the core, \
         ({:#x}, {:#x}) in the file",
        .path.display(),
        .core.0, .core.1, .file.0, .file.1
    )]
    DynamicDiffers {
        /// The file.
        path: PathBuf,
        /// Which entry.
        index: u64,
        /// Its runtime address.
        at: u64,
        /// The core's `(d_tag, d_val)`.
        core: (u64, u64),
        /// The file's.
        file: (u64, u64),
    },
    /// The file's dynamic section lies past its end.
    #[error("{}: its PT_DYNAMIC lies past the end of the file", .path.display())]
    DynamicOutsideFile {
        /// The file.
        path: PathBuf,
    },
}

fn paths(tried: &[PathBuf]) -> String {
    if tried.is_empty() {
        return "nowhere".into();
    }
    let shown: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn address(value: Option<u64>) -> String {
    value.map_or_else(|| "none".into(), |v| format!("{v:#x}"))
}

/// How a module's file was matched to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MatchedBy {
    /// The core holds the build-id note where the file puts it, and it is
    /// the file's.
    BuildId,
    /// The core holds no build-id for it, and its copy of the dynamic
    /// section is the file's, entry by entry.
    DynamicSection,
    /// Only the addresses agree: the module has no dynamic section, or the
    /// core's copy is unreadable (the error).
    Layout(Option<ReadError>),
}

/// A module's file standing in for the headers the core lacks.
#[derive(Debug, Clone)]
pub(super) struct FileMatch {
    /// The file.
    pub image: ElfImage,
    /// How it was matched to the core.
    pub matched_by: MatchedBy,
}

impl PartialEq for FileMatch {
    fn eq(&self, other: &Self) -> bool {
        self.image.path() == other.image.path() && self.matched_by == other.matched_by
    }
}

impl Eq for FileMatch {}

/// Where an object's ELF header and program headers were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HeadersFrom {
    /// From the core.
    Core,
    /// From the module's file: the core lacks them.
    File(Box<FileMatch>),
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
    /// Runtime minus link-time address.
    pub bias: u64,
    /// Its read-only `PT_LOAD`s: `(start, end, file offset)`, whole pages.
    pub ranges: Vec<(u64, u64, u64)>,
    /// Where its headers came from.
    pub headers_from: HeadersFrom,
}

impl Object {
    /// The object with load bias `bias` whose program headers are `phdrs`;
    /// `None` without a `PT_LOAD`.
    fn new(
        path: String,
        phdrs: &ProgramHeaders,
        bias: u64,
        is_exe: bool,
        headers_from: HeadersFrom,
    ) -> Option<Object> {
        let base = bias.wrapping_add(phdrs.first_load_vaddr()?);
        let memory_end = base.saturating_add(phdrs.load_extent().min(MAX_MODULE_EXTENT));
        Some(Object {
            path,
            base,
            end: module_end(phdrs, bias, base, memory_end),
            is_exe,
            bias,
            ranges: read_only_ranges(phdrs, bias),
            headers_from,
        })
    }
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
    let mut lookup_diagnostics = Vec::new();
    let recovery = recover(
        &memory.core_only(),
        core.auxv(),
        core.psinfo().map(|p| p.psargs.as_str()),
        |path: &str, is_exe: bool| {
            module_file_by_path(files, path, is_exe, &mut lookup_diagnostics)
        },
    );
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
    diagnostics.extend(lookup_diagnostics);
    let mut modules: Vec<Arc<Module>> = Vec::new();
    let mut ranges = Vec::new();
    for object in &recovery.objects {
        let module = match &object.headers_from {
            HeadersFrom::Core => locate_module(
                memory,
                files,
                &object.path,
                object.base,
                object.end,
                object.is_exe,
                &mut diagnostics,
            ),
            HeadersFrom::File(matched) => {
                Some(module_from_file(files, object, matched, &mut diagnostics))
            }
        };
        let Some(module) = module else {
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
    if let Some(note) = headers_from_files_note(&recovery.objects) {
        diagnostics.insert(1, note);
    }
    ModuleSet::assemble(core, memory, modules, Vec::new(), diagnostics, source)
}

/// The module of `object`, whose headers came from `matched`'s file.
fn module_from_file(
    files: &Files,
    object: &Object,
    matched: &FileMatch,
    diagnostics: &mut Vec<Diagnostic>,
) -> Module {
    let path = matched.image.path().to_path_buf();
    // A file matched by its dynamic section is the module's as surely as
    // one matched by build-id: its build-id is the module's.
    let (build_id, file_status) = match matched.matched_by {
        MatchedBy::BuildId | MatchedBy::DynamicSection => {
            (matched.image.build_id(), FileStatus::Verified { path })
        }
        MatchedBy::Layout(_) => (None, FileStatus::Unverified { path }),
    };
    complete_module(
        files,
        Identified {
            recorded: object.path.clone(),
            deleted: false,
            is_exe: object.is_exe,
            base: object.base,
            end: object.end,
            load_bias: Some(object.bias),
            build_id,
            file_status,
            file: Some(matched.image.clone()),
        },
        diagnostics,
    )
}

/// A note saying which modules' headers came from their files and how
/// those files were matched to the core; `None` when none did.
fn headers_from_files_note(objects: &[Object]) -> Option<Diagnostic> {
    let matched: Vec<(&Object, &FileMatch)> = objects
        .iter()
        .filter_map(|o| match &o.headers_from {
            HeadersFrom::File(m) => Some((o, m.as_ref())),
            HeadersFrom::Core => None,
        })
        .collect();
    if matched.is_empty() {
        return None;
    }
    let count =
        |f: fn(&MatchedBy) -> bool| matched.iter().filter(|(_, m)| f(&m.matched_by)).count();
    let by_build_id = count(|m| *m == MatchedBy::BuildId);
    let by_dynamic = count(|m| *m == MatchedBy::DynamicSection);
    let unverified = count(|m| matches!(m, MatchedBy::Layout(_)));
    let mut names: Vec<&str> = matched
        .iter()
        .take(MAX_NAMED)
        .map(|(o, _)| o.path.rsplit('/').next().unwrap_or(&o.path))
        .collect();
    if matched.len() > MAX_NAMED {
        names.push("...");
    }
    let mut message = format!(
        "the core holds no ELF header for {} module{} ({}): their program headers were read \
         from their files, found by the paths the core records",
        matched.len(),
        if matched.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    let mut ways = Vec::new();
    if by_build_id > 0 {
        ways.push(format!("{by_build_id} by the build-id the core holds"));
    }
    if by_dynamic > 0 {
        ways.push(format!(
            "{by_dynamic} by the core's copy of their dynamic section"
        ));
    }
    if !ways.is_empty() {
        message.push_str(&format!(
            "; matched to the core by their load addresses and {}",
            ways.join(", ")
        ));
    }
    if unverified > 0 {
        message.push_str(&format!(
            "; {unverified} matched by load addresses alone (the core's copy of the dynamic \
             section is unreadable) are unverified: used for symbols, never for memory"
        ));
    }
    Some(match unverified {
        0 => Diagnostic::note(DiagnosticSource::Modules, message),
        _ => Diagnostic::warning(DiagnosticSource::Modules, message),
    })
}

/// Walk from the auxiliary vector to the executable, its dynamic section,
/// `r_debug` and the `link_map` chain. Everything found before a problem is
/// kept; the problem is listed. `psargs` is the command line the core
/// records; `find_file` finds a module's file by its recorded path (and
/// whether it is the executable), for the headers the core lacks.
pub(super) fn recover<M, F>(mem: &M, auxv: &Auxv, psargs: Option<&str>, find_file: F) -> Recovery
where
    M: Memory,
    F: FnMut(&str, bool) -> (Option<ElfImage>, Vec<PathBuf>),
{
    let mut walk = Walk {
        mem,
        auxv,
        find_file,
        probes: 0,
        lookups: 0,
        file_ranges: Vec::new(),
        recovery: Recovery::default(),
    };
    walk.run(psargs);
    let mut recovery = walk.recovery;
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
    /// Runtime address of its dynamic section.
    dynamic: Option<u64>,
}

/// One walk over a core's memory, with what bounds it.
struct Walk<'a, M, F> {
    mem: &'a M,
    auxv: &'a Auxv,
    find_file: F,
    /// Pages probed for ELF headers so far.
    probes: u64,
    /// Module files looked up so far.
    lookups: usize,
    /// The read-only ranges of the files matched to the core so far:
    /// `(start, end, file offset, file)`. A name the core lacks is read
    /// there (ld.so's `l_name` points into the executable's `.interp`, in
    /// the header pages the core may lack).
    file_ranges: Vec<(u64, u64, u64, ElfImage)>,
    recovery: Recovery,
}

impl<M, F> Walk<'_, M, F>
where
    M: Memory,
    F: FnMut(&str, bool) -> (Option<ElfImage>, Vec<PathBuf>),
{
    fn run(&mut self, psargs: Option<&str>) {
        let exe = match self.executable(psargs) {
            Ok(exe) => exe,
            Err(e) => {
                self.recovery.problems.push(e);
                return;
            }
        };
        let bias = exe.object.bias;
        let dynamic = exe.dynamic;
        self.add_object(exe.object);
        let r_debug = match dynamic
            .ok_or(ChainError::Static)
            .and_then(|at| r_debug(self.mem, at))
        {
            Ok(at) => at,
            Err(e) => {
                self.recovery.problems.push(e);
                return;
            }
        };
        self.recovery.r_debug = Some(r_debug);
        self.walk(bias, r_debug);
    }

    /// Keep `object`, and the read-only ranges of its file when the file
    /// was matched to the core.
    fn add_object(&mut self, object: Object) {
        if let HeadersFrom::File(matched) = &object.headers_from
            && matches!(
                matched.matched_by,
                MatchedBy::BuildId | MatchedBy::DynamicSection
            )
        {
            self.file_ranges.extend(
                object
                    .ranges
                    .iter()
                    .map(|&(start, end, offset)| (start, end, offset, matched.image.clone())),
            );
        }
        self.recovery.objects.push(object);
    }

    /// The NUL-terminated name at `at`: from the core, else from a
    /// matched file's read-only pages.
    fn read_name(&self, at: u64) -> Result<Vec<u8>, ReadError> {
        let error = match self.mem.read_cstr(at, MAX_NAME) {
            Ok(name) => return Ok(name),
            Err(e) => e,
        };
        let in_file = self
            .file_ranges
            .iter()
            .find_map(|(start, end, offset, image)| {
                let within = at.checked_sub(*start).filter(|_| at < *end)?;
                let from = offset.checked_add(within)?;
                // The range's last page may run past the file's end.
                let in_file = (image.bytes().len() as u64).checked_sub(from)?;
                let len = (end - at).min(MAX_NAME as u64).min(in_file);
                let bytes = image.file_bytes(from, len)?;
                let nul = bytes.iter().position(|&b| b == 0)?;
                Some(bytes[..nul].to_vec())
            });
        in_file.ok_or(error)
    }

    /// The executable, from the program headers at `AT_PHDR` in the core,
    /// else from its file.
    fn executable(&mut self, psargs: Option<&str>) -> Result<Executable, ChainError> {
        let phdr = self.auxv.phdr.ok_or(ChainError::NoPhdr)?;
        if let Some(phent) = self.auxv.phent.filter(|&n| n != PROGRAM_HEADER_SIZE) {
            return Err(ChainError::BadPhent(phent));
        }
        let execfn = self
            .auxv
            .execfn
            .and_then(|at| self.mem.read_cstr(at, MAX_NAME).ok())
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .filter(|name| !name.is_empty());
        let core_error = match self.executable_in_core(phdr, execfn.clone()) {
            Ok(exe) => return Ok(exe),
            Err(e) => e,
        };
        // The command line's first word, when it is a path: the kernel's
        // AT_EXECFN string may be unreadable, or relative.
        let argv0 = psargs
            .and_then(|args| args.split_whitespace().next())
            .filter(|word| word.starts_with('/'))
            .map(str::to_string);
        let mut names: Vec<String> = execfn.into_iter().collect();
        names.extend(argv0.filter(|a| !names.contains(a)));
        self.executable_from_file(phdr, &names)
            .map_err(|file| ChainError::ExecutableHeaders {
                core: Box::new(core_error),
                file: Box::new(file),
            })
    }

    /// The executable from its program headers at `AT_PHDR` in the core,
    /// named `path`.
    fn executable_in_core(
        &self,
        phdr: u64,
        path: Option<String>,
    ) -> Result<Executable, ChainError> {
        // The ELF header, when the program headers follow it on their page
        // (they always do as the kernel maps an executable).
        let page = phdr & !(PAGE - 1);
        let ehdr = self
            .mem
            .read_array::<FILE_HEADER_SIZE>(page)
            .ok()
            .and_then(|bytes| FileHeader::parse(&bytes))
            .filter(|h| page.checked_add(h.phoff) == Some(phdr));
        let phnum = self
            .auxv
            .phnum
            .or_else(|| ehdr.map(|h| u64::from(h.phnum)))
            .ok_or(ChainError::NoPhnum(phdr))?
            .min(MAX_PROGRAM_HEADERS);
        let table = self
            .mem
            .read_bytes(
                phdr,
                phnum * PROGRAM_HEADER_SIZE,
                MAX_PROGRAM_HEADERS * PROGRAM_HEADER_SIZE,
            )
            .map_err(|error| ChainError::Read {
                what: "the executable's program headers (AT_PHDR)",
                error,
            })?;
        let phdrs = ProgramHeaders::parse(&table);
        let first_vaddr = phdrs.first_load_vaddr().ok_or(ChainError::NoLoads(phdr))?;
        // PT_PHDR says where the headers are at link time; without it, the
        // ELF header on their page starts the first PT_LOAD.
        let bias = match phdrs.first(PT_PHDR) {
            Some(ph) => phdr.wrapping_sub(ph.vaddr),
            None if ehdr.is_some() => page.wrapping_sub(first_vaddr),
            None => return Err(ChainError::NoBias(phdr)),
        };
        let path = path.unwrap_or_else(|| "[executable]".to_string());
        executable(path, &phdrs, bias, HeadersFrom::Core).ok_or(ChainError::NoLoads(phdr))
    }

    /// The executable from the first of the files `names` name that fits
    /// the auxiliary vector.
    fn executable_from_file(
        &mut self,
        phdr: u64,
        names: &[String],
    ) -> Result<Executable, FileProblem> {
        let mut tried = Vec::new();
        let mut misfit = None;
        for name in names {
            let image = match self.find(name, true) {
                Ok(image) => image,
                Err(FileProblem::NotFound { tried: paths }) => {
                    tried.extend(paths);
                    continue;
                }
                Err(problem) => return Err(problem),
            };
            match self.executable_in_file(phdr, &image) {
                Ok((phdrs, bias, matched_by)) => {
                    let headers_from = HeadersFrom::File(Box::new(FileMatch { image, matched_by }));
                    let path = PathBuf::from(name);
                    return executable(name.clone(), &phdrs, bias, headers_from)
                        .ok_or(FileProblem::NoProgramHeaders { path });
                }
                Err(problem) => {
                    misfit.get_or_insert(problem);
                }
            }
        }
        match (misfit, names.is_empty()) {
            (Some(problem), _) => Err(problem),
            (None, true) => Err(FileProblem::NoName),
            (None, false) => Err(FileProblem::NotFound { tried }),
        }
    }

    /// The program headers and load bias of the executable `image`, if it
    /// fits the auxiliary vector, and how it was matched to the core.
    fn executable_in_file(
        &self,
        phdr: u64,
        image: &ElfImage,
    ) -> Result<(ProgramHeaders, u64, MatchedBy), FileProblem> {
        let path = image.path().to_path_buf();
        let (header, phdrs) = image
            .headers()
            .filter(|(_, phdrs)| phdrs.loads().next().is_some())
            .ok_or_else(|| FileProblem::NoProgramHeaders { path: path.clone() })?;
        let misfit = |what, core, file| FileProblem::Misfit {
            path: path.clone(),
            what,
            core,
            file,
        };
        // Where the file's program headers are at link time: PT_PHDR, else
        // where a PT_LOAD maps their file offset.
        let phdr_vaddr = phdrs
            .first(PT_PHDR)
            .map(|ph| ph.vaddr)
            .or_else(|| phdrs.vaddr_of_offset(header.phoff));
        let Some(phdr_vaddr) = phdr_vaddr else {
            return Err(misfit("the program headers' address (AT_PHDR)", phdr, None));
        };
        let bias = phdr.wrapping_sub(phdr_vaddr);
        // A fixed-address executable is never moved.
        if header.e_type == ET_EXEC && bias != 0 {
            return Err(misfit(
                "the program headers' address (AT_PHDR)",
                phdr,
                Some(phdr_vaddr),
            ));
        }
        if let Some(phnum) = self.auxv.phnum
            && phnum != u64::from(header.phnum)
        {
            return Err(misfit(
                "the program header count (AT_PHNUM)",
                phnum,
                Some(u64::from(header.phnum)),
            ));
        }
        let entry = bias.wrapping_add(header.entry);
        if let Some(at_entry) = self.auxv.entry
            && at_entry != entry
        {
            return Err(misfit("the entry point (AT_ENTRY)", at_entry, Some(entry)));
        }
        let matched_by = match_contents(self.mem, image, &phdrs, bias)?;
        Ok((phdrs, bias, matched_by))
    }

    /// The file of the module recorded as `name`, within the bound on lookups.
    fn find(&mut self, name: &str, is_exe: bool) -> Result<ElfImage, FileProblem> {
        if name.is_empty() {
            return Err(FileProblem::NoName);
        }
        if self.lookups >= MAX_FILE_LOOKUPS {
            return Err(FileProblem::LookupsSpent);
        }
        self.lookups += 1;
        match (self.find_file)(name, is_exe) {
            (Some(image), _) => Ok(image),
            (None, tried) => Err(FileProblem::NotFound { tried }),
        }
    }

    /// The program headers of the library with load bias `l_addr` and
    /// dynamic section `l_ld` from its file `name`, and how the file was
    /// matched to the core.
    fn library_in_file(
        &mut self,
        name: &str,
        l_addr: u64,
        l_ld: u64,
    ) -> Result<(ProgramHeaders, FileMatch), FileProblem> {
        let image = self.find(name, false)?;
        let path = image.path().to_path_buf();
        let Some((_, phdrs)) = image
            .headers()
            .filter(|(_, phdrs)| phdrs.loads().next().is_some())
        else {
            return Err(FileProblem::NoProgramHeaders { path });
        };
        let dynamic = phdrs
            .first(PT_DYNAMIC)
            .map(|d| l_addr.wrapping_add(d.vaddr));
        if dynamic != Some(l_ld) {
            return Err(FileProblem::Misfit {
                path,
                what: "the dynamic section's address (l_ld)",
                core: l_ld,
                file: dynamic,
            });
        }
        let matched_by = match_contents(self.mem, &image, &phdrs, l_addr)?;
        Ok((phdrs, FileMatch { image, matched_by }))
    }

    /// Follow `r_map` (and, from `r_version` 2, `r_next` to the other
    /// namespaces), adding each object found.
    fn walk(&mut self, exe_bias: u64, r_debug: u64) {
        let mut seen_entries = BTreeSet::new();
        let mut seen_namespaces = BTreeSet::new();
        let mut namespace = r_debug;
        for _ in 0..MAX_NAMESPACES {
            if namespace == 0 || !seen_namespaces.insert(namespace) {
                return;
            }
            // struct r_debug { int r_version; link_map *r_map; r_brk; r_state;
            // r_ldbase; }, and from version 2 `r_debug_extended *r_next` after it.
            let header = match self.mem.read_array::<16>(namespace) {
                Ok(h) => h,
                Err(error) => {
                    let what = if namespace == r_debug {
                        "r_debug"
                    } else {
                        "r_debug_extended.r_next (a linker namespace)"
                    };
                    self.recovery
                        .problems
                        .push(ChainError::Read { what, error });
                    return;
                }
            };
            let version = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let r_map = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
            if version < 1 {
                self.recovery.problems.push(ChainError::BadVersion {
                    at: namespace,
                    version,
                });
                return;
            }
            let stopped = self.walk_namespace(exe_bias, r_map, &mut seen_entries);
            if stopped || version < 2 {
                return;
            }
            namespace = match self.mem.read_u64(namespace.wrapping_add(40)) {
                Ok(next) => next,
                Err(error) => {
                    self.recovery.problems.push(ChainError::Read {
                        what: "r_debug_extended.r_next",
                        error,
                    });
                    return;
                }
            };
        }
    }

    /// Follow one `link_map` chain from `head`; true when a problem stopped it.
    fn walk_namespace(&mut self, exe_bias: u64, head: u64, seen: &mut BTreeSet<u64>) -> bool {
        let mut previous = 0u64;
        let mut next = head;
        while next != 0 {
            let at = next;
            if seen.len() >= MAX_ENTRIES {
                self.recovery.problems.push(ChainError::TooLong);
                return true;
            }
            if !seen.insert(at) {
                self.recovery.problems.push(ChainError::Cycle(at));
                return true;
            }
            // struct link_map { l_addr; char *l_name; l_ld; l_next; l_prev; }
            let entry = match self.mem.read_array::<40>(at) {
                Ok(e) => e,
                Err(error) => {
                    self.recovery.problems.push(ChainError::Read {
                        what: "a link_map entry",
                        error,
                    });
                    return true;
                }
            };
            let word = |i: usize| {
                u64::from_le_bytes(entry[i * 8..i * 8 + 8].try_into().unwrap_or_default())
            };
            let (l_addr, l_name, l_ld, l_next, l_prev) =
                (word(0), word(1), word(2), word(3), word(4));
            if l_prev != previous {
                self.recovery.problems.push(ChainError::BrokenLink {
                    at,
                    l_prev,
                    expected: previous,
                });
                return true;
            }
            self.recovery.chain_read = true;
            previous = at;
            next = l_next;
            // The vDSO is loaded apart, from the core. Its entry is known by
            // its address before its name, which lies in the vDSO's own
            // pages that a core may lack (QEMU's): its load bias is its
            // base, or (linked at its address) its dynamic section lies in
            // its first page, where no library's can.
            let vdso_at = |ehdr: u64| l_addr == ehdr || l_ld.wrapping_sub(ehdr) < PAGE;
            if self.auxv.sysinfo_ehdr.is_some_and(vdso_at) {
                continue;
            }
            let name = match l_name {
                0 => String::new(),
                _ => match self.read_name(l_name) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(error) => {
                        self.recovery.entry_problem(ChainError::Name {
                            at,
                            name: l_name,
                            error,
                        });
                        String::new()
                    }
                },
            };
            // The executable (its entry has no name) came from the auxiliary
            // vector, with its path.
            let is_vdso = name.starts_with("linux-vdso") || name.starts_with("linux-gate");
            if is_vdso || (name.is_empty() && l_addr == exe_bias) {
                continue;
            }
            if let Some(object) = self.library(at, name, l_addr, l_ld)
                && !self.recovery.objects.iter().any(|o| o.base == object.base)
            {
                self.add_object(object);
            }
        }
        false
    }

    /// The library of the entry at `at`: its headers from the core, else
    /// from its file; `None` (the problem listed) when neither has them.
    fn library(&mut self, at: u64, name: String, l_addr: u64, l_ld: u64) -> Option<Object> {
        let path = |base: u64| {
            if name.is_empty() {
                format!("[unnamed at {base:#x}]")
            } else {
                name.clone()
            }
        };
        // The header where a library's usually is (at l_addr) is the cheap
        // check; then its file, verified against the core; the page-by-page
        // search of the core last: a core without headers (QEMU's) would
        // pay it for every library.
        if let Some(info) = header_at_load_address(self.mem, l_addr, l_ld) {
            return Object::new(path(l_addr), &info.phdrs, l_addr, false, HeadersFrom::Core);
        }
        let in_file = self.library_in_file(&name, l_addr, l_ld);
        if in_file.is_err()
            && let Some((base, info)) = module_header(self.mem, l_addr, l_ld, &mut self.probes)
        {
            return Object::new(path(base), &info.phdrs, l_addr, false, HeadersFrom::Core);
        }
        let (phdrs, matched) = match in_file {
            Ok(found) => found,
            Err(file) => {
                let name = if name.is_empty() {
                    "unnamed".to_string()
                } else {
                    name
                };
                self.recovery.entry_problem(ChainError::NoHeader {
                    at,
                    name,
                    l_addr,
                    l_ld,
                    file: Box::new(file),
                });
                return None;
            }
        };
        let base = l_addr.wrapping_add(phdrs.first_load_vaddr()?);
        let headers_from = HeadersFrom::File(Box::new(matched));
        Object::new(path(base), &phdrs, l_addr, false, headers_from)
    }
}

/// The executable's object and the runtime address of its dynamic section.
fn executable(
    path: String,
    phdrs: &ProgramHeaders,
    bias: u64,
    headers_from: HeadersFrom,
) -> Option<Executable> {
    let dynamic = phdrs.first(PT_DYNAMIC).map(|d| bias.wrapping_add(d.vaddr));
    let object = Object::new(path, phdrs, bias, true, headers_from)?;
    Some(Executable { object, dynamic })
}

/// How the file `image` of the module with load bias `bias` (which its
/// program headers `phdrs` already place where the core has it) is
/// matched to the core's contents: the build-id the core holds, else its
/// copy of the dynamic section. `Err` when the core shows another file.
fn match_contents(
    mem: &impl Memory,
    image: &ElfImage,
    phdrs: &ProgramHeaders,
    bias: u64,
) -> Result<MatchedBy, FileProblem> {
    let path = image.path().to_path_buf();
    if let Some(core_id) = core_build_id(mem, phdrs, bias) {
        let file_id = image.build_id();
        if file_id.as_deref() == Some(core_id.as_slice()) {
            return Ok(MatchedBy::BuildId);
        }
        return Err(FileProblem::OtherBuild {
            path,
            core: super::hex(&core_id),
            file: file_id.as_deref().map(super::hex).unwrap_or_default(),
        });
    }
    match phdrs.first(PT_DYNAMIC) {
        Some(dynamic) => compare_dynamic(mem, image, dynamic, bias),
        None => Ok(MatchedBy::Layout(None)),
    }
}

/// Compare the core's copy of the dynamic section `dynamic` (of a module
/// with load bias `bias`) with the file's, up to the file's `DT_NULL`.
/// The dynamic linker changes two things: `DT_DEBUG`'s value, and on most
/// systems the address entries, which it moves by the load bias.
fn compare_dynamic(
    mem: &impl Memory,
    image: &ElfImage,
    dynamic: &ProgramHeader,
    bias: u64,
) -> Result<MatchedBy, FileProblem> {
    let path = image.path();
    let Some(file) = image.file_bytes(dynamic.offset, dynamic.filesz.min(MAX_DYNAMIC * 16)) else {
        return Err(FileProblem::DynamicOutsideFile {
            path: path.to_path_buf(),
        });
    };
    let start = bias.wrapping_add(dynamic.vaddr);
    let mut compared = 0;
    for (index, entry) in (0u64..).zip(file.chunks_exact(16)) {
        let pair = |b: &[u8]| {
            let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
            (word(0), word(8))
        };
        let (tag, value) = pair(entry);
        let at = start.wrapping_add(index * 16);
        let core = match mem.read_array::<16>(at) {
            Ok(bytes) => pair(&bytes),
            Err(error) => return Ok(MatchedBy::Layout(Some(error))),
        };
        let same = core.0 == tag
            && (tag == DT_DEBUG || core.1 == value || core.1 == value.wrapping_add(bias));
        if !same {
            return Err(FileProblem::DynamicDiffers {
                path: path.to_path_buf(),
                index,
                at,
                core,
                file: (tag, value),
            });
        }
        compared += 1;
        if tag == DT_NULL {
            break;
        }
    }
    Ok(if compared > 1 {
        MatchedBy::DynamicSection
    } else {
        MatchedBy::Layout(None)
    })
}

/// One past a module's last mapped byte, as `NT_FILE` would give it: the
/// loader maps each segment's file bytes as whole pages, and `.bss` past
/// them (`memory_end`, from the memory sizes) in anonymous memory.
fn module_end(phdrs: &ProgramHeaders, bias: u64, base: u64, memory_end: u64) -> u64 {
    let file_end = phdrs
        .loads()
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
fn read_only_ranges(phdrs: &ProgramHeaders, bias: u64) -> Vec<(u64, u64, u64)> {
    phdrs
        .loads()
        .filter(|l| !l.writable() && l.filesz > 0)
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

/// Whether the headers read at `base` are those of the object loaded with
/// bias `l_addr` whose dynamic section is at `l_ld`.
fn fits(base: u64, info: &ElfInfo, l_addr: u64, l_ld: u64) -> bool {
    info.first_load_vaddr
        .is_some_and(|v| base.wrapping_sub(v) == l_addr)
        && l_ld >= base
        && l_ld - base < info.extent.max(PAGE)
}

/// The headers at the load address itself, where a shared library's are.
fn header_at_load_address(mem: &impl Memory, l_addr: u64, l_ld: u64) -> Option<ElfInfo> {
    if !l_addr.is_multiple_of(PAGE) {
        return None;
    }
    read_core_elf(mem, l_addr).filter(|info| fits(l_addr, info, l_addr, l_ld))
}

/// The ELF header of the object with load bias `l_addr` and dynamic
/// section `l_ld`, searched for in the core when it is not at the bias
/// itself ([`header_at_load_address`], which the caller tries first): the
/// nearest header below the dynamic section, if its first `PT_LOAD` gives
/// that bias. `probes` bounds the pages looked at.
fn module_header(
    mem: &impl Memory,
    l_addr: u64,
    l_ld: u64,
    probes: &mut u64,
) -> Option<(u64, ElfInfo)> {
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
        return fits(base, &info, l_addr, l_ld).then_some((base, info));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;

    const BASE: u64 = 0x40_0000;

    /// Where the image's build-id note is, from [`BASE`].
    const NOTE: usize = 0x4000;
    /// Where the image's dynamic section is, from [`BASE`].
    const DYNAMIC: usize = 0x1000;

    /// A process image in one buffer at [`BASE`]: an executable whose
    /// program headers are at +0x40, its dynamic section at +0x1000 with
    /// `DT_STRSZ`, `DT_STRTAB` and DT_DEBUG, `r_debug` at +0x2000,
    /// `link_map` entries from +0x3000 (0x100 apart, with names at +0x80 in
    /// each), one per `(l_addr, l_ld, name)` in `libs`, after the
    /// executable's own, and a build-id note at +0x4000. The image is also
    /// the executable's file (file offset = address - BASE).
    fn image(libs: &[(u64, u64, &str)]) -> BufferMemory {
        let mut b = vec![0u8; 0x8000];
        let put = |b: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut b, 0, b"\x7fELF\x02\x01\x01");
        put(&mut b, 16, &ET_EXEC.to_le_bytes());
        put(&mut b, 32, &0x40u64.to_le_bytes());
        put(&mut b, 54, &56u16.to_le_bytes());
        put(&mut b, 56, &4u16.to_le_bytes());
        // PT_PHDR, PT_LOAD (r-x, the whole image), PT_DYNAMIC, PT_NOTE.
        let phdrs = [
            (6u32, 0x40u64, 4u32, 0xe0u64),
            (1, 0, 5, 0x8000),
            (2, DYNAMIC as u64, 6, 0x40),
            (4, NOTE as u64, 4, 0x18),
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
        // DT_STRSZ, DT_STRTAB, DT_DEBUG, DT_NULL.
        let dynamic = [(10, 0x123), (5, BASE + 0x500), (DT_DEBUG, BASE + 0x2000)];
        for (i, (tag, value)) in dynamic.into_iter().enumerate() {
            put(&mut b, DYNAMIC + 16 * i, &tag.to_le_bytes());
            put(&mut b, DYNAMIC + 16 * i + 8, &value.to_le_bytes());
        }
        // NT_GNU_BUILD_ID "GNU", 8 bytes.
        put(&mut b, NOTE, &4u32.to_le_bytes());
        put(&mut b, NOTE + 4, &8u32.to_le_bytes());
        put(&mut b, NOTE + 8, &3u32.to_le_bytes());
        put(&mut b, NOTE + 12, b"GNU\0\x01\x02\x03\x04\x05\x06\x07\x08");
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
            phnum: Some(4),
            phent: Some(56),
            execfn: Some(BASE + 0x3080 + 0x20),
            ..Auxv::default()
        }
    }

    /// [`recover`] with no file to read: every header comes from the core.
    fn recover_from_core(mem: &impl Memory, auxv: &Auxv) -> Recovery {
        recover(mem, auxv, None, |_: &str, _: bool| (None, Vec::new()))
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
        let found = recover_from_core(&mem, &auxv());
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
                bias: 0,
                ranges: vec![(BASE, BASE + 0x8000, 0)],
                headers_from: HeadersFrom::Core,
            }]
        );
    }

    #[test]
    fn entries_without_a_header_are_reported_and_skipped() {
        let mem = image(&[(0x7f00_0000_0000, 0x7f00_0000_1000, "/lib/libc.so.6")]);
        let found = recover_from_core(&mem, &auxv());
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
        let found = recover_from_core(&mem, &auxv);
        // Same base as the executable: one module, not two.
        assert_eq!(found.objects.len(), 1, "{:?}", found.objects);
        assert_eq!(found.objects[0].path, "[executable]");
    }

    #[test]
    fn a_cycle_stops_the_walk() {
        let mut mem = image(&[(1 << 40, 0, "a"), (2 << 40, 0, "b")]);
        // b's l_next back to the executable's entry.
        poke(&mut mem, BASE + 0x3200 + 24, BASE + 0x3000);
        let found = recover_from_core(&mem, &auxv());
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
        let found = recover_from_core(&mem, &auxv());
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
        let found = recover_from_core(&mem, &auxv());
        match found.problems.as_slice() {
            [ChainError::Read { error, .. }] => assert_eq!(error.addr, 0xdead_0000),
            other => panic!("{other:?}"),
        }
        assert!(!found.chain_read);
        // DT_DEBUG never filled in.
        let mut mem = image(&[]);
        poke(&mut mem, BASE + 0x1028, 0);
        let found = recover_from_core(&mem, &auxv());
        assert!(matches!(
            found.problems.as_slice(),
            [ChainError::DebugUnset(_)]
        ));
        // No auxiliary vector at all.
        let found = recover_from_core(&mem, &Auxv::default());
        assert!(matches!(found.problems.as_slice(), [ChainError::NoPhdr]));
        assert!(found.objects.is_empty());
    }

    #[test]
    fn a_back_link_that_does_not_match_stops_the_walk() {
        let mut mem = image(&[(1 << 40, 0, "a")]);
        poke(&mut mem, BASE + 0x3100 + 32, 0x1234);
        let found = recover_from_core(&mem, &auxv());
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
        let found = recover_from_core(&mem, &auxv());
        assert!(
            found
                .problems
                .iter()
                .any(|p| matches!(p, ChainError::Name { .. })),
            "{:?}",
            found.problems
        );
    }

    /// Where the library of the file tests is loaded (its load bias).
    const LIB: u64 = 0x7f00_0000_0000;

    /// Memory of a few buffers with holes between them, as a core that
    /// dumped some mappings and not others.
    struct Pieces(Vec<BufferMemory>);

    impl Memory for Pieces {
        fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.0
                .iter()
                .find_map(|piece| piece.read_exact_at(addr, buf).ok())
                .ok_or_else(|| {
                    ReadError::new(
                        addr,
                        buf.len() as u64,
                        crate::memory::ReadFailure::NotDumped,
                    )
                })
        }
    }

    /// The process of [`image`] with the library `/lib/libx.so` (the same
    /// image, loaded at [`LIB`]) as QEMU dumps it: neither one's first page
    /// (ELF header and program headers) nor the build-id notes, which lie
    /// in executable mappings; the library's address entries moved by its
    /// load bias, as glibc moves them. Returns the memory and the file.
    fn without_headers() -> (Pieces, BufferMemory) {
        let mut mem = image(&[(LIB, LIB + BASE + DYNAMIC as u64, "/lib/libx.so")]);
        mem.bytes[0x30a0..0x30a8].copy_from_slice(b"/bin/py\0");
        let file = mem.clone();
        mem.bytes[NOTE..NOTE + 0x18].fill(0);
        let exe = BufferMemory {
            base: BASE + 0x1000,
            bytes: mem.bytes[0x1000..].to_vec(),
        };
        let mut lib = BufferMemory {
            base: LIB + BASE + 0x1000,
            bytes: mem.bytes[0x1000..].to_vec(),
        };
        poke_at(
            &mut lib,
            LIB + BASE + DYNAMIC as u64 + 0x18,
            LIB + BASE + 0x500,
        );
        (Pieces(vec![exe, lib]), file)
    }

    /// Write `value` at `addr` of `mem`.
    fn poke_at(mem: &mut BufferMemory, addr: u64, value: u64) {
        let at = (addr - mem.base) as usize;
        mem.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// A file finder that finds `file` under every name, noting the names
    /// it was asked for.
    fn finder<'a>(
        file: &'a BufferMemory,
        asked: &'a mut Vec<(String, bool)>,
    ) -> impl FnMut(&str, bool) -> (Option<ElfImage>, Vec<PathBuf>) + 'a {
        move |path: &str, is_exe: bool| {
            asked.push((path.to_string(), is_exe));
            (ElfImage::from_bytes(path, file.bytes.clone()), Vec::new())
        }
    }

    /// The one problem in `problems` and why no file stood in, which it
    /// must say.
    fn only_file_problem(problems: &[ChainError]) -> (&ChainError, &FileProblem) {
        match problems {
            [e @ ChainError::NoHeader { file, .. }]
            | [e @ ChainError::ExecutableHeaders { file, .. }] => (e, file),
            other => panic!("{other:?}"),
        }
    }

    fn from_file(path: &str, file: &BufferMemory, matched_by: MatchedBy) -> HeadersFrom {
        let image = ElfImage::from_bytes(path, file.bytes.clone()).unwrap();
        HeadersFrom::File(Box::new(FileMatch { image, matched_by }))
    }

    #[test]
    fn headers_the_core_lacks_come_from_the_files() {
        let (core, file) = without_headers();
        let mut asked = Vec::new();
        let found = recover(&core, &auxv(), None, finder(&file, &mut asked));
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert_eq!(
            asked,
            [
                ("/bin/py".to_string(), true),
                ("/lib/libx.so".into(), false)
            ]
        );
        assert_eq!(found.r_debug, Some(BASE + 0x2000));
        assert_eq!(
            found.objects,
            [
                Object {
                    path: "/bin/py".into(),
                    base: BASE,
                    end: BASE + 0x8000,
                    is_exe: true,
                    bias: 0,
                    ranges: vec![(BASE, BASE + 0x8000, 0)],
                    headers_from: from_file("/bin/py", &file, MatchedBy::DynamicSection),
                },
                Object {
                    path: "/lib/libx.so".into(),
                    base: LIB + BASE,
                    end: LIB + BASE + 0x8000,
                    is_exe: false,
                    bias: LIB,
                    ranges: vec![(LIB + BASE, LIB + BASE + 0x8000, 0)],
                    headers_from: from_file("/lib/libx.so", &file, MatchedBy::DynamicSection),
                }
            ]
        );
        // Without AT_EXECFN, the command line names the executable.
        let mut auxv = auxv();
        auxv.execfn = None;
        let mut asked = Vec::new();
        let found = recover(
            &core,
            &auxv,
            Some("/usr/bin/py x.py"),
            finder(&file, &mut asked),
        );
        assert_eq!(found.objects[0].path, "/usr/bin/py");
        assert_eq!(asked[0], ("/usr/bin/py".to_string(), true));
    }

    #[test]
    fn a_name_the_core_lacks_is_read_from_a_matched_file() {
        // ld.so's l_name points into the executable's .interp, in the
        // first page the core lacks: the executable's file has it.
        let (mut core, mut file) = without_headers();
        file.bytes[0x200..0x20d].copy_from_slice(b"/lib/libx.so\0");
        let name = BASE + 0x3100 + 8;
        poke_at(&mut core.0[0], name, BASE + 0x200);
        let found = recover(&core, &auxv(), None, finder(&file, &mut Vec::new()));
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert_eq!(found.objects[1].path, "/lib/libx.so");
    }

    #[test]
    fn the_vdso_entry_is_known_by_its_address_not_its_name() {
        // QEMU's vDSO is linked at its address (l_addr 0) and not dumped:
        // its name and its dynamic section, in its first page, are unreadable.
        let vdso = 0x7f00_1000_0000;
        let mut mem = image(&[(0, vdso + 0x1a0, "")]);
        mem.bytes[0x30a0..0x30a8].copy_from_slice(b"/bin/py\0");
        poke(&mut mem, BASE + 0x3100 + 8, vdso + 0x412);
        let mut auxv = auxv();
        auxv.sysinfo_ehdr = Some(vdso);
        let found = recover_from_core(&mem, &auxv);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert_eq!(found.objects.len(), 1);
        // Without AT_SYSINFO_EHDR, it is an entry like any other.
        auxv.sysinfo_ehdr = None;
        let found = recover_from_core(&mem, &auxv);
        assert!(
            matches!(found.problems.first(), Some(ChainError::Name { .. })),
            "{:?}",
            found.problems
        );
    }

    #[test]
    fn a_build_id_the_core_holds_decides() {
        let (mut core, file) = without_headers();
        // The notes are dumped after all: they are the files'.
        for piece in &mut core.0 {
            let at = NOTE - 0x1000;
            piece.bytes[at..at + 0x18].copy_from_slice(&file.bytes[NOTE..NOTE + 0x18]);
        }
        let found = recover(&core, &auxv(), None, finder(&file, &mut Vec::new()));
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        let matched: Vec<&HeadersFrom> = found.objects.iter().map(|o| &o.headers_from).collect();
        assert_eq!(
            matched,
            [
                &from_file("/bin/py", &file, MatchedBy::BuildId),
                &from_file("/lib/libx.so", &file, MatchedBy::BuildId)
            ]
        );
        // The library's note says another build: its file is not used.
        let last = NOTE - 0x1000 + 0x17;
        core.0[1].bytes[last] ^= 0xff;
        let found = recover(&core, &auxv(), None, finder(&file, &mut Vec::new()));
        assert_eq!(found.objects.len(), 1);
        match only_file_problem(&found.problems) {
            (ChainError::NoHeader { name, .. }, FileProblem::OtherBuild { core, file, .. }) => {
                assert_eq!(name, "/lib/libx.so");
                assert_eq!(
                    (core.as_str(), file.as_str()),
                    ("01020304050607f7", "0102030405060708")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_that_does_not_fit_the_core_is_not_used() {
        // The library's dynamic section says another file.
        let (mut core, file) = without_headers();
        poke_at(&mut core.0[1], LIB + BASE + DYNAMIC as u64 + 8, 0x124);
        let found = recover(&core, &auxv(), None, finder(&file, &mut Vec::new()));
        assert_eq!(found.objects.len(), 1);
        match only_file_problem(&found.problems) {
            (
                ChainError::NoHeader { .. },
                FileProblem::DynamicDiffers {
                    index: 0,
                    core,
                    file,
                    ..
                },
            ) => {
                assert_eq!((*core, *file), ((10, 0x124), (10, 0x123)));
            }
            other => panic!("{other:?}"),
        }
        // The executable's entry point is not the file's.
        let (core, file) = without_headers();
        let mut moved = auxv();
        moved.entry = Some(BASE + 0x999);
        let found = recover(&core, &moved, None, finder(&file, &mut Vec::new()));
        assert!(found.objects.is_empty());
        match only_file_problem(&found.problems) {
            (e @ ChainError::ExecutableHeaders { core, .. }, FileProblem::Misfit { what, .. }) => {
                assert!(matches!(**core, ChainError::Read { .. }), "{core:?}");
                assert!(what.contains("AT_ENTRY"), "{what}");
                let message = e.to_string();
                assert!(
                    message.contains("0x400040") && message.contains("0x400999"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The library's l_ld is not where its file puts the dynamic section.
        let mut mem = image(&[(LIB, LIB + BASE + 0x2000, "/lib/libx.so")]);
        mem.bytes[0x30a0..0x30a8].copy_from_slice(b"/bin/py\0");
        let found = recover(&mem, &auxv(), None, finder(&mem, &mut Vec::new()));
        match only_file_problem(&found.problems) {
            (e @ ChainError::NoHeader { .. }, FileProblem::Misfit { file, .. }) => {
                assert_eq!(*file, Some(LIB + BASE + DYNAMIC as u64));
                assert!(e.to_string().contains("no ELF header"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_file_the_core_lacks_the_headers_says_where_it_looked() {
        let (core, _) = without_headers();
        let found = recover(&core, &auxv(), None, |_: &str, _: bool| {
            (None, vec![PathBuf::from("/root/bin/py")])
        });
        assert!(found.objects.is_empty());
        match only_file_problem(&found.problems) {
            (e @ ChainError::ExecutableHeaders { .. }, FileProblem::NotFound { tried }) => {
                assert_eq!(tried, &[PathBuf::from("/root/bin/py")]);
                assert!(e.to_string().contains("tried /root/bin/py"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // No AT_EXECFN and no command line: nothing to look up.
        let mut auxv = auxv();
        auxv.execfn = None;
        let found = recover(&core, &auxv, Some("python3 x.py"), |_: &str, _: bool| {
            panic!("looked up a file without a name")
        });
        assert!(matches!(
            only_file_problem(&found.problems),
            (_, FileProblem::NoName)
        ));
    }

    #[test]
    fn file_lookups_are_bounded() {
        // 2000 entries that name files, none with a header in the core.
        let mut libs = Vec::new();
        for i in 1..2000u64 {
            libs.push((i << 32, i << 32, "/lib/libgone.so"));
        }
        let mem = image(&[]);
        let mut calls = 0usize;
        // Built by hand: `image` holds at most 0x50 entries.
        let found = {
            let mut b = mem.bytes.clone();
            b.resize(0x3000 + 0x100 * (libs.len() + 1), 0);
            let mut mem = BufferMemory {
                base: BASE,
                bytes: b,
            };
            let entries: Vec<(u64, u64)> = std::iter::once((0, BASE + DYNAMIC as u64))
                .chain(libs.iter().map(|&(a, l, _)| (a, l)))
                .collect();
            for (i, (l_addr, l_ld)) in entries.iter().enumerate() {
                let at = BASE + 0x3000 + 0x100 * i as u64;
                poke(&mut mem, at, *l_addr);
                poke(&mut mem, at + 8, at + 0x80);
                poke(&mut mem, at + 16, *l_ld);
                let next = if i + 1 < entries.len() { at + 0x100 } else { 0 };
                poke(&mut mem, at + 24, next);
                poke(&mut mem, at + 32, if i == 0 { 0 } else { at - 0x100 });
                let name = if i == 0 {
                    &b"\0"[..]
                } else {
                    b"/lib/libgone.so\0"
                };
                let offset = (at + 0x80 - BASE) as usize;
                mem.bytes[offset..offset + name.len()].copy_from_slice(name);
            }
            recover(&mem, &auxv(), None, |_: &str, _: bool| {
                calls += 1;
                (None, Vec::new())
            })
        };
        assert_eq!(calls, MAX_FILE_LOOKUPS);
        assert!(
            found
                .problems
                .iter()
                .any(|p| matches!(p, ChainError::MoreEntryProblems(n) if *n > 1000)),
            "{:?}",
            found.problems
        );
    }
}
