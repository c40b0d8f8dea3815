//! Modules (the executable, shared libraries, the vDSO), their files on disk,
//! their debug information and their symbols.

mod fetch;
mod link_map;
mod locate;
mod search_path;
mod supplementary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

pub use crate::elf::{
    ElfImage, ImageBytes, MAX_EXPANSION, MAX_SECTION_SIZE, MiniDebugInfoError, SectionCompression,
    SectionError,
};
pub use locate::{
    DebugVia, SearchPaths, find_debug_file, find_debug_file_noting_skips, hex, resolve_in_root,
};
pub use search_path::BuildIdIndex;
pub use supplementary::{
    SupplementaryError, SupplementaryStatus, SupplementaryVia, with_supplementary_file,
};

use crate::corefile::CoreFile;
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::elf::headers::{
    FILE_HEADER_SIZE, FileHeader, MAX_PROGRAM_HEADERS, PROGRAM_HEADER_SIZE, PT_NOTE, ProgramHeaders,
};
use crate::memory::{FileBacking, MappingState, Memory, MemoryExt, ProcessMemory};
use crate::regular_file::{is_not_regular, open_regular};
use crate::symbols::{SymbolAddressIndex, SymbolTable};

/// Build-id notes longer than this are not believed.
const MAX_BUILD_ID: u32 = 64;
/// A module spanning more than this is not believed.
const MAX_MODULE_EXTENT: u64 = 1 << 32;
/// The vDSO image copied out of the core is capped at this size.
const MAX_VDSO_SIZE: u64 = 1 << 20;

/// What kind of module this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModuleKind {
    /// The main program.
    Executable,
    /// A shared library or other mapped ELF file.
    Library,
    /// The kernel's vDSO.
    Vdso,
}

/// The state of a module's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileStatus {
    /// Found, and it is the build the process ran: its build-id equals the
    /// core's or, when the core holds none of the module's headers (they
    /// were read from this file), it fits the core's addresses and its
    /// dynamic section equals the core's copy.
    Verified {
        /// Where it was found.
        path: PathBuf,
    },
    /// Found, but the core holds no build-id to check it against (nor,
    /// when its headers came from the file, a dynamic section to compare);
    /// used for symbols only, never for memory.
    Unverified {
        /// Where it was found.
        path: PathBuf,
    },
    /// Found, but it is a different build from the one the process ran.
    Mismatch {
        /// Where it was found.
        path: PathBuf,
        /// Build-id of the file on disk.
        file_build_id: Option<String>,
    },
    /// Not found.
    Missing {
        /// The host paths that were tried.
        tried: Vec<PathBuf>,
    },
    /// The image lives in the core itself (the vDSO).
    InCore,
}

/// The state of a module's debug information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DebugStatus {
    /// DWARF was found.
    Found {
        /// The file holding it.
        path: PathBuf,
        /// How it was found.
        via: DebugVia,
        /// How `.debug_info` is compressed.
        compression: SectionCompression,
    },
    /// No DWARF was found.
    Missing {
        /// Why.
        reason: String,
    },
}

/// One module of the process.
#[derive(Debug)]
pub struct Module {
    /// Executable, library or vDSO.
    pub kind: ModuleKind,
    /// The path recorded in the core, without a ` (deleted)` suffix.
    pub recorded_path: String,
    /// The file had been deleted when the core was written.
    pub deleted: bool,
    /// Lowest mapped address.
    pub base: u64,
    /// One past the highest mapped address.
    pub end: u64,
    /// Runtime address minus link-time address.
    pub load_bias: Option<u64>,
    /// Build-id read from the module's first page in the core; when the
    /// core holds none of its headers, its verified file's.
    pub build_id: Option<Vec<u8>>,
    /// The module's file.
    pub file_status: FileStatus,
    /// Its debug information.
    pub debug_status: DebugStatus,
    /// The supplementary file (dwz) its debug file refers to; `None` when
    /// it refers to none.
    pub supplementary: Option<SupplementaryStatus>,
    file: Option<ElfImage>,
    debug_file: Option<ElfImage>,
    /// The MiniDebugInfo of the module file (`.gnu_debugdata`), read on
    /// first use when no file has a `.symtab`.
    mini_debuginfo: OnceLock<Result<Option<ElfImage>, MiniDebugInfoError>>,
    symbols: OnceLock<Arc<SymbolTable>>,
    symbol_index: OnceLock<SymbolAddressIndex>,
}

impl Module {
    /// The file name part of the recorded path.
    pub fn name(&self) -> &str {
        self.recorded_path
            .rsplit('/')
            .next()
            .unwrap_or(&self.recorded_path)
    }
    /// Whether `addr` lies in the module's mapped range.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end
    }
    /// The module's ELF image, if found (verified, unverified, or the vDSO).
    pub fn file(&self) -> Option<&ElfImage> {
        self.file.as_ref()
    }
    /// The separate debug file, or the module file when it embeds DWARF.
    pub fn debug_file(&self) -> Option<&ElfImage> {
        self.debug_file.as_ref()
    }
    /// The module's writable data (`.data`, `.bss`) as mapped in the
    /// process, `(start, size)`; empty without its file or load bias.
    pub fn writable_data(&self) -> Vec<(u64, u64)> {
        let (Some(file), Some(bias)) = (self.file.as_ref(), self.load_bias) else {
            return Vec::new();
        };
        file.writable_loads()
            .into_iter()
            .map(|(start, size)| (start.wrapping_add(bias), size))
            .collect()
    }
    /// Build-id as lower-case hex.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id.as_deref().map(hex)
    }
    /// Symbols from the module file and its debug file, built on first use.
    pub fn symbols(&self) -> Arc<SymbolTable> {
        if let Some(table) = self.shared_symbols() {
            return table;
        }
        self.symbols
            .get_or_init(|| {
                let images = self.images();
                let table = Arc::new(SymbolTable::from_images(&images));
                if let Some(key) = self.symbol_cache_key() {
                    symbol_cache::put(key, Arc::clone(&table));
                }
                table
            })
            .clone()
    }

    /// The table when this module or another process's module of the same
    /// build already built it.
    fn shared_symbols(&self) -> Option<Arc<SymbolTable>> {
        if let Some(table) = self.symbols.get() {
            return Some(Arc::clone(table));
        }
        let table = symbol_cache::get(&self.symbol_cache_key()?)?;
        Some(Arc::clone(self.symbols.get_or_init(|| table)))
    }

    /// The table depends only on the files: the same build-id with the same
    /// debug file gives the same table, so cores of one build (a triage
    /// batch) build it once.
    fn symbol_cache_key(&self) -> Option<symbol_cache::Key> {
        let id = self.build_id.clone()?;
        let debug = self.debug_file.as_ref().map(|d| d.path().to_path_buf());
        Some((id, self.file.is_some(), debug))
    }

    /// The module's file and its debug file, those that were found, and
    /// when neither has a `.symtab`, the file's MiniDebugInfo.
    fn images(&self) -> Vec<&ElfImage> {
        let mut images: Vec<&ElfImage> = self.file.iter().chain(self.debug_file.iter()).collect();
        if !images.iter().any(|i| i.has_symtab())
            && let Ok(Some(mini)) = self.mini_debuginfo()
        {
            images.push(mini);
        }
        images
    }

    /// The ELF image in the module file's `.gnu_debugdata` (MiniDebugInfo),
    /// decompressed once; `Ok(None)` without a file or the section.
    pub fn mini_debuginfo(&self) -> Result<Option<&ElfImage>, &MiniDebugInfoError> {
        self.mini_debuginfo
            .get_or_init(|| match &self.file {
                Some(file) => file.mini_debuginfo(),
                None => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
    }

    /// The symbol containing the link-time `address`: its name and start.
    /// Uses the symbol table when this run has built it; otherwise an index
    /// of the ELF tables' addresses, which for a stack's lookups is much
    /// cheaper to build.
    pub fn symbol_at(&self, address: u64) -> Option<(String, u64)> {
        match self.shared_symbols() {
            Some(table) => table.lookup(address).map(|s| (s.name.clone(), s.address)),
            None => {
                let images = self.images();
                self.symbol_index
                    .get_or_init(|| SymbolAddressIndex::build(&images))
                    .lookup(&images, address)
            }
        }
    }

    /// Runtime address of a symbol, optionally scoped to a source file.
    ///
    /// Uses the symbol table when it is already built, and otherwise scans the
    /// ELF tables for this one name rather than building it.
    pub fn symbol_address(&self, name: &str, file: Option<&str>) -> Option<u64> {
        let link_address = match self.shared_symbols() {
            Some(table) => table.find(name, file)?.address,
            None => {
                let images = self.images();
                crate::symbols::find_in_images(&images, name, file)?.0
            }
        };
        Some(link_address.wrapping_add(self.load_bias?))
    }
}

/// Where the list of modules came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModuleSource {
    /// The core's `NT_FILE` note: the kernel's list of mapped files.
    NtFile,
    /// No `NT_FILE` note: the dynamic linker's `r_debug`/`link_map` list
    /// in the process's memory.
    LinkMap,
    /// No `NT_FILE` note and no readable `link_map` list: the executable
    /// alone, found through the auxiliary vector (`AT_PHDR`).
    Auxv,
    /// Neither: no module but perhaps the vDSO.
    None,
}

impl ModuleSource {
    /// Its name, as in JSON: `nt_file`, `link_map`, `auxv`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleSource::NtFile => "nt_file",
            ModuleSource::LinkMap => "link_map",
            ModuleSource::Auxv => "auxv",
            ModuleSource::None => "none",
        }
    }
}

/// All modules of a process plus the memory view they back.
#[derive(Debug)]
pub struct ModuleSet {
    modules: Vec<Arc<Module>>,
    /// Mappings that are not ELF files (locale archives, data files).
    pub data_mappings: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    source: ModuleSource,
}

impl ModuleSet {
    /// Find every module of `core`, locate its files and attach the verified
    /// ones to `memory`.
    pub fn load(core: &CoreFile, memory: &mut ProcessMemory, paths: &SearchPaths) -> ModuleSet {
        // An absolute sysroot lets recorded host paths inside it be recognised.
        let mut paths = paths.clone();
        if let Some(root) = paths
            .sysroot
            .as_ref()
            .and_then(|r| std::fs::canonicalize(r).ok())
        {
            paths.sysroot = Some(root);
        }
        let index = LazyIndex::new(&paths.search_paths);
        let mut set = Self::load_from(core, memory, &Files::Host(&paths, &index));
        if let Some(client) = &paths.debuginfod {
            fetch::fetch_missing(client, memory, &paths, &index, &mut set);
        }
        if let Some(reason) = index.get().and_then(|i| i.truncated.clone()) {
            set.diagnostics
                .push(Diagnostic::warning(DiagnosticSource::Modules, reason));
        }
        set
    }

    /// Find every module of `core` with its files taken from `bundle`, by
    /// build-id, and from nowhere else: what a bundle shows does not
    /// depend on the host's files.
    pub fn load_from_bundle(
        core: &CoreFile,
        memory: &mut ProcessMemory,
        bundle: &crate::bundle::Bundle,
    ) -> ModuleSet {
        Self::load_from(core, memory, &Files::Bundle(bundle))
    }

    fn load_from(core: &CoreFile, memory: &mut ProcessMemory, files: &Files) -> ModuleSet {
        if core.file_mappings().is_empty() {
            // No NT_FILE note: the dynamic linker's own list stands in.
            return link_map::load(core, memory, files);
        }
        let mut groups: BTreeMap<&str, Vec<&crate::corefile::FileMapping>> = BTreeMap::new();
        for m in core.file_mappings() {
            groups.entry(m.path.as_str()).or_default().push(m);
        }
        let exe_addr = core.auxv().phdr.or(core.auxv().entry);
        let mut modules = Vec::new();
        let mut data_mappings = Vec::new();
        let mut diagnostics = Vec::new();
        for (path, maps) in groups {
            let base = maps
                .iter()
                .filter(|m| m.file_offset == 0)
                .map(|m| m.start)
                .min()
                .unwrap_or_else(|| maps.iter().map(|m| m.start).min().unwrap_or(0));
            let end = maps.iter().map(|m| m.end).max().unwrap_or(base);
            let is_exe = exe_addr.is_some_and(|a| maps.iter().any(|m| a >= m.start && a < m.end));
            let module = locate_module(memory, files, path, base, end, is_exe, &mut diagnostics);
            match module {
                Some(module) => {
                    memory.set_file_state(path, &mapping_state(&module));
                    modules.push(Arc::new(module));
                }
                None => data_mappings.push(path.to_string()),
            }
        }
        ModuleSet::assemble(
            core,
            memory,
            modules,
            data_mappings,
            diagnostics,
            ModuleSource::NtFile,
        )
    }

    /// The set of `modules` plus the vDSO, sorted by base address.
    fn assemble(
        core: &CoreFile,
        memory: &ProcessMemory,
        mut modules: Vec<Arc<Module>>,
        data_mappings: Vec<String>,
        diagnostics: Vec<Diagnostic>,
        source: ModuleSource,
    ) -> ModuleSet {
        if let Some(vdso) = core
            .auxv()
            .sysinfo_ehdr
            .and_then(|base| load_vdso(memory, base))
        {
            modules.push(Arc::new(vdso));
        }
        modules.sort_by_key(|m| m.base);
        ModuleSet {
            modules,
            data_mappings,
            diagnostics,
            source,
        }
    }

    /// Where the list of modules came from.
    pub fn source(&self) -> ModuleSource {
        self.source
    }

    /// Every module, sorted by base address.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.modules
    }
    /// The main executable.
    pub fn executable(&self) -> Option<&Arc<Module>> {
        self.modules
            .iter()
            .find(|m| m.kind == ModuleKind::Executable)
    }
    /// The module mapped from `path` as the core records it.
    pub fn by_recorded_path(&self, path: &str) -> Option<&Arc<Module>> {
        self.modules.iter().find(|m| m.recorded_path == path)
    }
    /// The module containing `addr`.
    pub fn by_address(&self, addr: u64) -> Option<&Arc<Module>> {
        let after = self.modules.partition_point(|m| m.base <= addr);
        self.modules[..after]
            .iter()
            .rev()
            .find(|m| m.contains(addr))
    }
    /// Problems found while locating files.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

/// Whether a module's file can supply its mapped pages.
fn mapping_state(module: &Module) -> MappingState {
    match &module.file_status {
        FileStatus::Verified { .. } => match module.file.as_ref().filter(|f| f.is_file()) {
            Some(file) => MappingState::Backed(FileBacking {
                path: file.path().to_path_buf(),
                map: file.bytes().clone(),
            }),
            None => MappingState::Unverified,
        },
        FileStatus::Unverified { .. } => MappingState::Unverified,
        FileStatus::Mismatch { .. } => MappingState::BuildIdMismatch,
        FileStatus::Missing { .. } => MappingState::Missing,
        FileStatus::InCore => MappingState::Unresolved,
    }
}

/// What a module's ELF header and program headers in the core (its first
/// page) say about it.
struct ElfInfo {
    build_id: Option<Vec<u8>>,
    phdrs: ProgramHeaders,
    first_load_vaddr: Option<u64>,
    // Bytes the loadable segments span.
    extent: u64,
    // Bytes to the end of the section headers too.
    image_extent: u64,
}

impl ElfInfo {
    fn new(header: &FileHeader, phdrs: ProgramHeaders, build_id: Option<Vec<u8>>) -> ElfInfo {
        let extent = phdrs.load_extent();
        // The section headers usually follow the loaded bytes (the vDSO maps
        // its whole file): without them the image has no sections, hence no CFI.
        let image_extent = extent.max(header.section_headers_end());
        ElfInfo {
            build_id,
            first_load_vaddr: phdrs.first_load_vaddr(),
            phdrs,
            extent,
            image_extent,
        }
    }
}

/// Parse the ELF header and program headers at `base` from core memory.
fn read_core_elf(mem: &impl Memory, base: u64) -> Option<ElfInfo> {
    let header = FileHeader::parse(&mem.read_array::<FILE_HEADER_SIZE>(base).ok()?)?;
    let phdrs = header
        .program_header_table()
        .map(|(offset, len)| read_program_headers(mem, base.wrapping_add(offset), len))
        .unwrap_or_default();
    let bias = base.wrapping_sub(phdrs.first_load_vaddr().unwrap_or(0));
    let build_id = core_build_id(mem, &phdrs, bias);
    Some(ElfInfo::new(&header, phdrs, build_id))
}

/// The `len`-byte program header table at `at`: as many whole entries as
/// the memory holds, from the first.
fn read_program_headers(mem: &impl Memory, at: u64, len: u64) -> ProgramHeaders {
    let len = len.min(MAX_PROGRAM_HEADERS * PROGRAM_HEADER_SIZE);
    if let Ok(table) = mem.read_bytes(at, len, len) {
        return ProgramHeaders::parse(&table);
    }
    let mut table = Vec::new();
    for i in 0..len / PROGRAM_HEADER_SIZE {
        match mem.read_array::<{ PROGRAM_HEADER_SIZE as usize }>(
            at.wrapping_add(i * PROGRAM_HEADER_SIZE),
        ) {
            Ok(entry) => table.extend_from_slice(&entry),
            Err(_) => break,
        }
    }
    ProgramHeaders::parse(&table)
}

/// The build-id in the `PT_NOTE`s of the module with load bias `bias`, as
/// `mem` holds them.
fn core_build_id(mem: &impl Memory, phdrs: &ProgramHeaders, bias: u64) -> Option<Vec<u8>> {
    phdrs.of_type(PT_NOTE).find_map(|note| {
        let bytes = mem
            .read_bytes(bias.wrapping_add(note.vaddr), note.memsz, 4096)
            .ok()?;
        build_id_from_notes(&bytes)
    })
}

/// Find an `NT_GNU_BUILD_ID` in raw note bytes.
fn build_id_from_notes(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0usize;
    while pos + 12 <= bytes.len() {
        let word = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let (namesz, descsz, n_type) = (word(pos), word(pos + 4), word(pos + 8));
        let name_start = pos + 12;
        let desc_start = name_start.checked_add((namesz as usize).next_multiple_of(4))?;
        let desc_end = desc_start.checked_add(descsz as usize)?;
        if desc_end > bytes.len() {
            return None;
        }
        if n_type == 3
            && bytes.get(name_start..name_start + 4) == Some(b"GNU\0")
            && descsz <= MAX_BUILD_ID
        {
            return Some(bytes[desc_start..desc_end].to_vec());
        }
        pos = desc_end.next_multiple_of(4);
    }
    None
}

/// The build-id index of the search paths, scanned when a module first needs it.
struct LazyIndex<'a> {
    dirs: &'a [PathBuf],
    index: std::cell::OnceCell<BuildIdIndex>,
}

impl<'a> LazyIndex<'a> {
    fn new(dirs: &'a [PathBuf]) -> Self {
        LazyIndex {
            dirs,
            index: std::cell::OnceCell::new(),
        }
    }

    /// The index; `None` without search paths.
    fn get(&self) -> Option<&BuildIdIndex> {
        if self.dirs.is_empty() {
            return None;
        }
        Some(self.index.get_or_init(|| BuildIdIndex::scan(self.dirs)))
    }
}

/// Where module files and debug files come from.
enum Files<'a> {
    /// The host (or a sysroot), `--exe`, debug dirs and search paths.
    Host(&'a SearchPaths, &'a LazyIndex<'a>),
    /// A bundle, by build-id only.
    Bundle(&'a crate::bundle::Bundle),
}

fn locate_module(
    memory: &ProcessMemory,
    files: &Files,
    recorded: &str,
    base: u64,
    end: u64,
    is_exe: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Module> {
    let (clean, deleted) = match recorded.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (recorded, false),
    };
    let core_info = read_core_elf(&memory.core_only(), base);
    // .bss lies past the file-backed mappings, in anonymous memory: take the
    // extent from the program headers, bounded against hostile values.
    let end = core_info
        .as_ref()
        .map(|i| base.saturating_add(i.extent.min(MAX_MODULE_EXTENT)))
        .map_or(end, |e| e.max(end));
    let core_build_id = core_info.as_ref().and_then(|i| i.build_id.clone());
    let (image, tried) = match files {
        Files::Host(paths, index) => host_file(
            paths,
            index,
            clean,
            is_exe,
            core_build_id.as_deref(),
            diagnostics,
        ),
        Files::Bundle(bundle) => {
            let image = core_build_id
                .as_deref()
                .and_then(|id| bundle.module_file(id));
            (image, vec![bundle.label("files/")])
        }
    };
    // Not ELF in the core and not ELF on disk: a data file such as locale-archive.
    if core_info.is_none() && image.is_none() {
        return None;
    }
    let file_status = match &image {
        None => FileStatus::Missing { tried },
        Some(img) => {
            let path = img.path().to_path_buf();
            match (&core_build_id, img.build_id()) {
                (Some(core_id), Some(file_id)) if *core_id == file_id => {
                    FileStatus::Verified { path }
                }
                (Some(_), file_id) => FileStatus::Mismatch {
                    path,
                    file_build_id: file_id.as_deref().map(hex),
                },
                (None, _) => FileStatus::Unverified { path },
            }
        }
    };
    if let FileStatus::Mismatch { path, .. } = &file_status {
        diagnostics.push(Diagnostic::warning(
            DiagnosticSource::Modules,
            format!(
                "{}: build-id differs from the one in the core; the file is ignored. \
                     Pass the right build with --sysroot or --exe",
                path.display()
            ),
        ));
    }
    let usable = matches!(
        file_status,
        FileStatus::Verified { .. } | FileStatus::Unverified { .. }
    );
    let file = if usable { image } else { None };
    let first_vaddr = core_info
        .as_ref()
        .and_then(|i| i.first_load_vaddr)
        .or_else(|| file.as_ref()?.first_load_vaddr());
    let load_bias = first_vaddr.map(|v| base.wrapping_sub(v));
    Some(complete_module(
        files,
        Identified {
            recorded: clean.to_string(),
            deleted,
            is_exe,
            base,
            end,
            load_bias,
            build_id: core_build_id,
            file_status,
            file,
        },
        diagnostics,
    ))
}

/// A module as far as its place and file are known, before its debug
/// information is looked for.
struct Identified {
    /// The recorded path, without a ` (deleted)` suffix.
    recorded: String,
    deleted: bool,
    is_exe: bool,
    base: u64,
    end: u64,
    load_bias: Option<u64>,
    build_id: Option<Vec<u8>>,
    file_status: FileStatus,
    /// The file, when it may be used.
    file: Option<ElfImage>,
}

/// The module with its debug file (and that file's supplementary file).
fn complete_module(files: &Files, module: Identified, diagnostics: &mut Vec<Diagnostic>) -> Module {
    let Identified {
        recorded,
        deleted,
        is_exe,
        base,
        end,
        load_bias,
        build_id,
        file_status,
        file,
    } = module;
    let mut skipped = Vec::new();
    let (debug_file, debug_status) = match files {
        Files::Host(paths, index) => locate_debug(
            paths,
            index,
            build_id.as_deref(),
            file.as_ref(),
            &recorded,
            &mut skipped,
        ),
        Files::Bundle(bundle) => bundled_debug(bundle, build_id.as_deref(), file.as_ref()),
    };
    diagnostics.extend(
        skipped
            .into_iter()
            .map(|reason| Diagnostic::warning(DiagnosticSource::Modules, reason)),
    );
    let (debug_file, supplementary) = supplementary::attach(files, debug_file, diagnostics);
    Module {
        kind: if is_exe {
            ModuleKind::Executable
        } else {
            ModuleKind::Library
        },
        recorded_path: recorded,
        deleted,
        base,
        end,
        load_bias,
        build_id,
        file_status,
        debug_status,
        supplementary,
        file,
        debug_file,
        mini_debuginfo: OnceLock::new(),
        symbols: OnceLock::new(),
        symbol_index: OnceLock::new(),
    }
}

/// The file of the module recorded as `recorded`, found by its path alone:
/// for a module whose build-id the core does not hold (its headers are not
/// in the core), which the caller must match to the core some other way.
/// Returns it (if any) and where it was looked for.
fn module_file_by_path(
    files: &Files,
    recorded: &str,
    is_exe: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<ElfImage>, Vec<PathBuf>) {
    match files {
        Files::Host(paths, index) => host_file(paths, index, recorded, is_exe, None, diagnostics),
        // The manifest names the recorded path each stored file was
        // bundled for.
        Files::Bundle(bundle) => {
            let image = bundle
                .manifest()
                .files
                .iter()
                .filter(|f| f.path == recorded && f.role != crate::bundle::Role::DebugFile)
                .find_map(|f| match crate::bundle::parse_member_name(&f.member)? {
                    crate::bundle::MemberName::File(id) => bundle.module_file(&id),
                    _ => None,
                });
            (image, vec![bundle.label("files/")])
        }
    }
}

/// The module's file on the host: `--exe`, the recorded path under the
/// sysroot, else a file with its build-id under the search paths. Returns
/// it (if any) and the paths tried.
fn host_file(
    paths: &SearchPaths,
    index: &LazyIndex,
    clean: &str,
    is_exe: bool,
    core_build_id: Option<&[u8]>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<ElfImage>, Vec<PathBuf>) {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if is_exe && let Some(exe) = &paths.exe {
        candidates.push(exe.clone());
    }
    // gdb run outside a chroot records host paths that already start with the
    // sysroot; they are still inside it.
    let in_root = paths
        .sysroot
        .as_deref()
        .and_then(|root| std::path::Path::new(clean).strip_prefix(root).ok())
        .map(|rest| format!("/{}", rest.display()));
    match resolve_in_root(paths.root(), in_root.as_deref().unwrap_or(clean)) {
        Some(p) => candidates.push(p),
        None => tried.push(paths.root().join(clean.trim_start_matches('/'))),
    }
    let mut image = candidates.iter().find_map(|c| {
        tried.push(c.clone());
        match open_regular(c) {
            Ok(file) => ElfImage::map(c, &file),
            Err(e) if is_not_regular(&e) => {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticSource::Modules,
                    format!("{}: skipped: {e}", c.display()),
                ));
                None
            }
            Err(_) => None,
        }
    });
    // Not where the core says, or another build: look for the build-id.
    let found_here = image
        .as_ref()
        .is_some_and(|i| core_build_id.is_none() || i.build_id().as_deref() == core_build_id);
    if !found_here
        && let Some(id) = core_build_id
        && let Some(found) = index.get().and_then(|i| i.module_file(id)).or_else(|| {
            let client = paths.debuginfod.as_ref()?;
            client.cached(id, crate::debuginfod::ArtifactKind::Executable)
        })
    {
        image = Some(found);
    }
    (image, tried)
}

/// The module file itself, when it carries DWARF.
fn embedded_debug(file: Option<&ElfImage>) -> Option<(Option<ElfImage>, DebugStatus)> {
    let f = file.filter(|f| f.has_dwarf())?;
    let status = DebugStatus::Found {
        path: f.path().to_path_buf(),
        via: DebugVia::Embedded,
        compression: f.debug_compression(),
    };
    Some((Some(f.clone()), status))
}

/// The module's debug information in a bundle: its own DWARF, else the
/// debug file stored under its build-id.
fn bundled_debug(
    bundle: &crate::bundle::Bundle,
    build_id: Option<&[u8]>,
    file: Option<&ElfImage>,
) -> (Option<ElfImage>, DebugStatus) {
    if let Some(found) = embedded_debug(file) {
        return found;
    }
    let found = build_id.and_then(|id| {
        let image = bundle.debug_file(id)?;
        // Stored under the module's build-id: it must carry that build-id.
        (image.build_id().as_deref() == Some(id)).then_some(image)
    });
    match found {
        Some(image) if image.has_dwarf() => {
            let status = DebugStatus::Found {
                path: image.path().to_path_buf(),
                via: DebugVia::BuildId,
                compression: image.debug_compression(),
            };
            (Some(image), status)
        }
        Some(image) => {
            let reason = format!("{} has no DWARF", image.path().display());
            (Some(image), DebugStatus::Missing { reason })
        }
        None => (
            None,
            DebugStatus::Missing {
                reason: format!(
                    "no DWARF in the file and no debug file in the bundle {}",
                    bundle.path().display()
                ),
            },
        ),
    }
}

fn locate_debug(
    paths: &SearchPaths,
    index: &LazyIndex,
    build_id: Option<&[u8]>,
    file: Option<&ElfImage>,
    recorded: &str,
    skipped: &mut Vec<String>,
) -> (Option<ElfImage>, DebugStatus) {
    if let Some(found) = embedded_debug(file) {
        return found;
    }
    let id = build_id
        .map(<[u8]>::to_vec)
        .or_else(|| file.and_then(ElfImage::build_id));
    let found = find_debug_file_noting_skips(paths, id.as_deref(), file, recorded, skipped)
        .or_else(|| {
            let id = id.as_deref()?;
            let image = index.get()?.debug_file(id)?;
            Some((image, DebugVia::BuildId))
        })
        .or_else(|| {
            let id = id.as_deref()?;
            let client = paths.debuginfod.as_ref()?;
            let image = client.cached(id, crate::debuginfod::ArtifactKind::Debuginfo)?;
            Some((image, DebugVia::Debuginfod))
        });
    match found {
        Some((image, via)) if image.has_dwarf() => {
            let status = DebugStatus::Found {
                path: image.path().to_path_buf(),
                via,
                compression: image.debug_compression(),
            };
            (Some(image), status)
        }
        Some((image, _)) => {
            // A debug file with symbols but no DWARF still helps symbolization.
            let reason = format!("{} has no DWARF", image.path().display());
            (Some(image), DebugStatus::Missing { reason })
        }
        None => {
            let reason = match (&id, file) {
                (None, None) => "no build-id and no file to read a debug link from".to_string(),
                _ => format!(
                    "no DWARF in the file, no build-id match and no debug link match under {}",
                    paths
                        .debug_dirs()
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            (None, DebugStatus::Missing { reason })
        }
    }
}

fn load_vdso(memory: &ProcessMemory, base: u64) -> Option<Module> {
    let info = read_core_elf(&memory.core_only(), base)?;
    let size = info.image_extent.clamp(4096, MAX_VDSO_SIZE);
    let bytes = memory
        .core_only()
        .read_bytes(base, size, MAX_VDSO_SIZE)
        .ok()?;
    let size = bytes.len() as u64;
    let image = ElfImage::from_bytes("[vdso]", bytes);
    let load_bias = info.first_load_vaddr.map(|v| base.wrapping_sub(v));
    Some(Module {
        kind: ModuleKind::Vdso,
        recorded_path: "[vdso]".to_string(),
        deleted: false,
        base,
        end: base.saturating_add(size),
        load_bias,
        build_id: info.build_id,
        file_status: FileStatus::InCore,
        debug_status: DebugStatus::Missing {
            reason: "the vDSO carries no DWARF".into(),
        },
        supplementary: None,
        file: image,
        debug_file: None,
        mini_debuginfo: OnceLock::new(),
        symbols: OnceLock::new(),
        symbol_index: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_note_is_found_among_others() {
        let mut notes = Vec::new();
        // An ABI tag note, then the build-id.
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&16u32.to_le_bytes());
        notes.extend_from_slice(&1u32.to_le_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0u8; 16]);
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            build_id_from_notes(&notes),
            Some(vec![0xde, 0xad, 0xbe, 0xef])
        );
        // A descsz that runs past the end is not believed.
        notes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(build_id_from_notes(&notes), None);
    }
}

/// Symbol tables shared by every process of this program, by build-id.
mod symbol_cache {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use crate::symbols::SymbolTable;

    /// (build-id, whether the file itself was used, the debug file used).
    pub type Key = (Vec<u8>, bool, Option<PathBuf>);

    /// Tables kept, at most: a few per build (python, libpython, libc, …).
    const CAPACITY: usize = 64;

    static TABLES: Mutex<Vec<(Key, Arc<SymbolTable>)>> = Mutex::new(Vec::new());

    pub fn get(key: &Key) -> Option<Arc<SymbolTable>> {
        let tables = TABLES.lock().ok()?;
        tables
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| Arc::clone(t))
    }

    pub fn put(key: Key, table: Arc<SymbolTable>) {
        let Ok(mut tables) = TABLES.lock() else {
            return;
        };
        if tables.iter().any(|(k, _)| *k == key) {
            return;
        }
        if tables.len() >= CAPACITY {
            tables.remove(0);
        }
        tables.push((key, table));
    }
}
