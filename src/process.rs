//! [`Process`]: an opened core with its memory view and modules; the entry
//! point of the library.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::core::{CoreFile, CoreThread, OpenOptions};
use crate::error::{Diagnostic, Error};
use crate::layout::version::{self, VersionInfo};
use crate::memory::ProcessMemory;
use crate::modules::{ModuleSet, SearchPaths};

/// Everything needed to open a core.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Decompression settings.
    pub open: OpenOptions,
    /// Where files named by the core are looked up.
    pub search: SearchPaths,
}

impl Options {
    /// Set the sysroot.
    pub fn sysroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search.sysroot = Some(dir.into());
        self
    }
    /// Set the executable.
    pub fn exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.search.exe = Some(path.into());
        self
    }
    /// Add a debug directory.
    pub fn debug_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search.debug_dirs.push(dir.into());
        self
    }
}

/// A crashed process, reconstructed from its core.
#[derive(Debug)]
pub struct Process {
    core: Arc<CoreFile>,
    memory: ProcessMemory,
    modules: ModuleSet,
    python: Option<VersionInfo>,
    diagnostics: Vec<Diagnostic>,
}

impl Process {
    /// Open the core at `path`.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Process, Error> {
        let core = Arc::new(CoreFile::open(path, &options.open)?);
        Ok(Process::from_core(core, options))
    }

    /// Build the process view over an opened core.
    pub fn from_core(core: Arc<CoreFile>, options: &Options) -> Process {
        let mut memory = ProcessMemory::new(core.clone());
        let modules = ModuleSet::load(&core, &mut memory, &options.search);
        let mut diagnostics: Vec<Diagnostic> = core.diagnostics().to_vec();
        diagnostics.extend_from_slice(modules.diagnostics());
        let python = version::detect(&core, &memory, &modules, &mut diagnostics);
        if python.is_none() {
            diagnostics.push(Diagnostic::warning(
                "python",
                "no CPython interpreter found: no libpython mapping and no version in the executable; \
                 if this is a Python process, pass --exe or --sysroot so its binary can be found",
            ));
        }
        Process {
            core,
            memory,
            modules,
            python,
            diagnostics,
        }
    }

    /// The core file.
    pub fn core(&self) -> &Arc<CoreFile> {
        &self.core
    }
    /// The process's memory.
    pub fn memory(&self) -> &ProcessMemory {
        &self.memory
    }
    /// The modules.
    pub fn modules(&self) -> &ModuleSet {
        &self.modules
    }
    /// The CPython version, if this is a CPython process.
    pub fn python(&self) -> Option<&VersionInfo> {
        self.python.as_ref()
    }
    /// Threads from the core.
    pub fn threads(&self) -> &[CoreThread] {
        self.core.threads()
    }
    /// The thread that crashed.
    pub fn crashed_thread(&self) -> Option<&CoreThread> {
        self.core.crashed_thread()
    }
    /// Everything that went wrong without stopping the analysis.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}
