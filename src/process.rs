//! [`Process`]: an opened core with its memory view and modules; the entry
//! point of the library.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::corefile::OpenError;
use crate::corefile::{CoreFile, CoreThread, OpenOptions};
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::interpreter::version::{self, VersionInfo};
use crate::memory::ProcessMemory;
use crate::modules::{Module, ModuleSet, SearchPaths};

/// Everything needed to open a core.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Decompression settings.
    pub open: OpenOptions,
    /// Where files named by the core are looked up.
    pub search: SearchPaths,
}

impl Options {
    /// Look up every path the core names under `dir` (cores from another machine).
    pub fn sysroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search.sysroot = Some(dir.into());
        self
    }
    /// Use `path` as the main executable instead of the path the core records.
    pub fn exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.search.exe = Some(path.into());
        self
    }
    /// Add a debug directory (searched before `/usr/lib/debug`).
    pub fn debug_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search.debug_dirs.push(dir.into());
        self
    }
    /// Add a folder tree searched by build-id for module files and debug
    /// files that are not where the core says (`--search-path`).
    pub fn search_path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search.search_paths.push(dir.into());
        self
    }
    /// Ask `client`'s debuginfod servers for files found nowhere else
    /// (`Debuginfod::from_env()` reads `DEBUGINFOD_URLS` as the command
    /// does). Share one client between the cores of a batch: each build-id
    /// is then fetched once.
    pub fn debuginfod(mut self, client: std::sync::Arc<crate::debuginfod::Debuginfod>) -> Self {
        self.search.debuginfod = Some(client);
        self
    }
    /// Do not look in `/usr/lib/debug`, on the host or under the sysroot.
    pub fn no_default_debug_dir(mut self) -> Self {
        self.search.no_default_debug_dir = true;
        self
    }
    /// Decompress compressed cores into `dir` instead of the system temp dir.
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.open.temp_dir = Some(dir.into());
        self
    }
    /// The most a compressed core may decompress to, in bytes (default 64
    /// GiB); the rest is treated as truncated.
    pub fn max_core_size(mut self, bytes: u64) -> Self {
        self.open.max_decompressed_size = bytes;
        self
    }
}

/// A crashed process, reconstructed from its core.
///
/// A cheap handle: clones share one opened core. It is `Send + Sync`, so
/// threads (and rayon) can read one process at once.
#[derive(Debug, Clone)]
pub struct Process {
    parts: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    core: Arc<CoreFile>,
    memory: ProcessMemory,
    modules: ModuleSet,
    python: Option<VersionInfo>,
    diagnostics: Vec<Diagnostic>,
    from_bundle: bool,
    /// Values the layers above derive once per run (a thread's unwind),
    /// by their type and a key, without this layer knowing the types.
    memo: Mutex<HashMap<(TypeId, u64), Arc<dyn Any + Send + Sync>>>,
}

impl Process {
    /// The value `derive` gives for `key`, derived once per process: every
    /// later call with the same type and key shares it. What one command
    /// needs several times (a thread's native stack: the findings, the
    /// crash site and the in-flight objects each ask) is computed once.
    pub fn memoized<T: Any + Send + Sync>(&self, key: u64, derive: impl FnOnce() -> T) -> Arc<T> {
        let id = (TypeId::of::<T>(), key);
        let known = self
            .parts
            .memo
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned());
        if let Some(value) = known.and_then(|v| v.downcast::<T>().ok()) {
            return value;
        }
        // Derived outside the lock: a derivation may ask for another value.
        let value = Arc::new(derive());
        if let Ok(mut memo) = self.parts.memo.lock() {
            memo.insert(id, Arc::clone(&value) as Arc<dyn Any + Send + Sync>);
        }
        value
    }

    /// The symbol containing the runtime `address`, with the symbol's
    /// runtime start, from whichever module maps it.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
    /// let process = pymortem::Process::open(&sample.core, &sample.options)?;
    /// let start = process.symbol_address("PyTuple_New").unwrap();
    /// assert_eq!(process.symbol_at(start + 4), Some(("PyTuple_New".to_string(), start)));
    /// # Ok(()) }
    /// ```
    pub fn symbol_at(&self, address: u64) -> Option<(String, u64)> {
        let module = self.modules().by_address(address)?;
        let bias = module.load_bias?;
        let (name, start) = module.symbol_at(address.wrapping_sub(bias))?;
        Some((name, start.wrapping_add(bias)))
    }

    /// The runtime address of the symbol `name` in the first module that defines it.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.modules()
            .modules()
            .iter()
            .find_map(|m| m.symbol_address(name, None))
    }

    /// Open the core at `path`: an ELF core from the kernel or gdb, or one
    /// compressed by systemd-coredump (zstd, lz4, xz) or gzip. The file is
    /// mapped, not read; compressed ones are unpacked to a temporary file.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
    /// let process = pymortem::Process::open(&sample.core, &sample.options)?;
    /// let crashed = process.crashed_thread().unwrap();
    /// println!("LWP {} died", crashed.lwp);
    /// for module in process.modules().modules() {
    ///     println!("{:#x} {}", module.base, module.name());
    /// }
    /// for diagnostic in process.diagnostics() {
    ///     eprintln!("{:?}: {}", diagnostic.severity, diagnostic.message);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A bundle (`pymortem bundle`) is opened as the core it holds, with
    /// its files taken from it by build-id and from nowhere else: the
    /// options' sysroot, debug dirs and search paths are not consulted.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Process, OpenError> {
        let path = path.as_ref();
        if crate::bundle::is_bundle(path) {
            let bundle = crate::bundle::Bundle::open(path, &options.open)?;
            return Process::from_bundle(&bundle, options);
        }
        let core = Arc::new(CoreFile::open(path, &options.open)?);
        Ok(Process::from_core(core, options))
    }

    /// Copy the running process `pid` (its threads stopped for the
    /// shortest time, unless `live.block` is off: see [`crate::live`]) and
    /// open the copy. The copy is an unnamed temporary file in the options'
    /// temp dir: nothing is left behind. The process's files are read
    /// through `/proc/PID/root` when it runs in another root (a container,
    /// a chroot) and no sysroot is given.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let live = pymortem::live::SnapshotOptions::default();
    /// let process = pymortem::Process::attach(1234, &pymortem::Options::default(), &live)?;
    /// let copy = process.core().snapshot().unwrap();
    /// println!("{}", copy.summary());
    /// # Ok(()) }
    /// ```
    pub fn attach(
        pid: i32,
        options: &Options,
        live: &crate::live::SnapshotOptions,
    ) -> Result<Process, OpenError> {
        let dir = options
            .open
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let file = tempfile::tempfile_in(&dir).map_err(|e| OpenError::Io {
            path: dir.clone(),
            source: e,
        })?;
        crate::live::write_snapshot(pid, live, &file)?;
        let label = PathBuf::from(format!("process {pid}"));
        let core = Arc::new(CoreFile::from_open_file(&label, &file)?);
        let mut options = options.clone();
        if options.search.sysroot.is_none() {
            options.search.sysroot = crate::live::foreign_root(pid);
        }
        Ok(Process::from_core(core, &options))
    }

    /// Build the process view over an opened core.
    pub fn from_core(core: Arc<CoreFile>, options: &Options) -> Process {
        let mut memory = ProcessMemory::new(core.clone());
        let modules = ModuleSet::load(&core, &mut memory, &options.search);
        Self::from_parts(core, memory, modules, Vec::new(), false)
    }

    /// Build the process view over an opened bundle: its core, and its
    /// files only. Host search options in `options` are ignored, with a note.
    pub fn from_bundle(
        bundle: &crate::bundle::Bundle,
        options: &Options,
    ) -> Result<Process, OpenError> {
        let core = Arc::new(bundle.core_file()?);
        let mut memory = ProcessMemory::new(core.clone());
        let modules = ModuleSet::load_from_bundle(&core, &mut memory, bundle);
        let search = &options.search;
        let mut notes = Vec::new();
        if search.sysroot.is_some()
            || search.exe.is_some()
            || !search.debug_dirs.is_empty()
            || !search.search_paths.is_empty()
        {
            notes.push(Diagnostic::note(
                DiagnosticSource::Bundle,
                "a bundle carries its own files: --sysroot, --exe, --debug-dir and --search-path are not used",
            ));
        }
        Ok(Self::from_parts(core, memory, modules, notes, true))
    }

    fn from_parts(
        core: Arc<CoreFile>,
        memory: ProcessMemory,
        modules: ModuleSet,
        notes: Vec<Diagnostic>,
        from_bundle: bool,
    ) -> Process {
        let mut diagnostics: Vec<Diagnostic> = core.diagnostics().to_vec();
        if let Some(copy) = core.snapshot() {
            diagnostics.extend(copy.diagnostics());
        }
        diagnostics.extend(notes);
        diagnostics.extend_from_slice(modules.diagnostics());
        let python = version::detect(&core, &memory, &modules, &mut diagnostics);
        if python.is_none() {
            let remedy = if from_bundle {
                "bundle the core again where its executable is"
            } else {
                "pass --exe or --sysroot so its binary can be found"
            };
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Python,
                format!(
                    "no CPython interpreter found: no libpython mapping and no version in the \
                     executable; if this is a Python process, {remedy}"
                ),
            ));
        }
        Process {
            parts: Arc::new(Parts {
                core,
                memory,
                modules,
                python,
                diagnostics,
                from_bundle,
                memo: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether the core came from a bundle, whose files are the only ones used.
    pub fn is_bundle(&self) -> bool {
        self.parts.from_bundle
    }
    /// The core file.
    pub fn core(&self) -> &Arc<CoreFile> {
        &self.parts.core
    }
    /// The process's memory.
    pub fn memory(&self) -> &ProcessMemory {
        &self.parts.memory
    }
    /// The modules.
    pub fn modules(&self) -> &ModuleSet {
        &self.parts.modules
    }
    /// The CPython version, if this is a CPython process.
    pub fn python(&self) -> Option<&VersionInfo> {
        self.parts.python.as_ref()
    }
    /// The module that holds the interpreter (libpython or the executable).
    pub fn python_module(&self) -> Option<&Arc<Module>> {
        self.modules().by_recorded_path(&self.python()?.module)
    }
    /// The process id: `NT_PRPSINFO`'s, else the first thread's LWP (the
    /// kernel writes the thread-group leader first).
    pub fn pid(&self) -> Option<i32> {
        self.core()
            .psinfo()
            .map(|p| p.pid)
            .or_else(|| self.threads().first().map(|t| t.lwp))
    }
    /// Threads from the core.
    pub fn threads(&self) -> &[CoreThread] {
        self.parts.core.threads()
    }
    /// The thread that crashed.
    pub fn crashed_thread(&self) -> Option<&CoreThread> {
        self.parts.core.crashed_thread()
    }
    /// Everything that went wrong without stopping the analysis.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.parts.diagnostics
    }
}
