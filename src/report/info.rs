//! The `info` report: the process, its signal, threads, modules and Python.

use crate::python::PythonState;
use crate::stacks::{MergedStack, crashed_stack};
use std::path::PathBuf;

use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::corefile::signals::{code_name, signal_name};
use crate::corefile::{Producer, Truncation};
use crate::error::Diagnostic;
use crate::modules::{DebugStatus, FileStatus, ModuleKind, ModuleSource};
use crate::process::Process;
use crate::python::VersionSource;

/// The whole `info` report.
#[derive(Debug, Clone, Serialize)]
pub struct InfoReport {
    /// Always `"info"`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The core file itself.
    pub core: CoreSummary,
    /// Process id.
    pub pid: Option<i32>,
    /// Parent process id.
    pub ppid: Option<i32>,
    /// Real user id.
    pub uid: Option<u32>,
    /// Command name (`comm`).
    pub command: Option<String>,
    /// Start of the command line (at most 80 bytes, as the kernel records it).
    pub args: Option<String>,
    /// Path of the main executable as recorded in the core.
    pub executable: Option<String>,
    /// The signal that killed the process.
    pub signal: Option<SignalReport>,
    /// LWP of the thread that crashed.
    pub crashed_lwp: Option<i32>,
    /// Every thread.
    pub threads: Vec<ThreadReport>,
    /// Every module.
    pub modules: Vec<ModuleReport>,
    /// Where the module list came from: the core's `NT_FILE` note, or,
    /// without one, the dynamic linker's `link_map` list (or the
    /// executable alone, through the auxiliary vector).
    pub module_source: ModuleSource,
    /// The Python interpreter.
    pub python: Option<PythonReport>,
    /// Problems that did not stop the analysis.
    pub diagnostics: Vec<Diagnostic>,
    /// The crashing thread's native and Python frames, innermost first.
    pub crashed_thread_stack: Option<MergedStack>,
}

/// Facts about the core file.
#[derive(Debug, Clone, Serialize)]
pub struct CoreSummary {
    /// The path given.
    pub path: PathBuf,
    /// Size in bytes after decompression.
    pub size: u64,
    /// `zstd`, `lz4`, `xz`, `gzip`, or null.
    pub compression: Option<&'static str>,
    /// `kernel` or `gdb`.
    pub producer: Producer,
    /// The processor architecture: `x86_64` or `aarch64`.
    pub arch: crate::arch::ArchId,
    /// Number of `PT_LOAD` segments.
    pub segments: usize,
    /// Number of notes decoded.
    pub notes: usize,
    /// Set when the file is shorter than its headers say.
    pub truncated: Option<Truncation>,
}

/// The signal.
#[derive(Debug, Clone, Serialize)]
pub struct SignalReport {
    /// Signal number.
    pub number: i32,
    /// `SIGSEGV`, `SIGABRT`, ...
    pub name: Option<&'static str>,
    /// `si_code`; null when the core has no `NT_SIGINFO` (QEMU's cores),
    /// where the number comes from the crashed thread's `NT_PRSTATUS`.
    pub code: Option<i32>,
    /// `SEGV_MAPERR`, `SI_TKILL`, ...
    pub code_name: Option<&'static str>,
    /// The faulting address, for faults.
    pub fault_address: Option<u64>,
    /// The sender, for signals sent by a process (abort() sends to itself).
    pub sender_pid: Option<i32>,
}

/// One thread.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadReport {
    /// Kernel thread id.
    pub lwp: i32,
    /// `pthread_t`, which equals Python's `threading.get_ident()`; null
    /// when the core does not give it (AArch64 cores without `NT_ARM_TLS`).
    pub pthread_id: Option<u64>,
    /// Whether this thread crashed.
    pub crashed: bool,
    /// Instruction pointer.
    pub pc: u64,
    /// Stack pointer.
    pub sp: u64,
}

/// One module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// File name.
    pub name: String,
    /// Path recorded in the core.
    pub path: String,
    /// `executable`, `library` or `vdso`.
    pub kind: ModuleKind,
    /// Lowest mapped address.
    pub base: u64,
    /// One past the highest mapped address.
    pub end: u64,
    /// Runtime minus link-time address.
    pub load_bias: Option<u64>,
    /// Build-id from the core, as hex.
    pub build_id: Option<String>,
    /// The file had been deleted.
    pub deleted: bool,
    /// Where the file is.
    pub file: FileStatus,
    /// Where its debug information is.
    pub debug: DebugStatus,
    /// The supplementary file (dwz) its debug file refers to: where it was
    /// found, or why not (the DWARF is then incomplete); null when it
    /// refers to none.
    pub supplementary: Option<crate::modules::SupplementaryStatus>,
    /// The file's MiniDebugInfo (`.gnu_debugdata`): `used` (its symbols
    /// name the frames), `not_needed` (a `.symtab` exists), or why it is
    /// unusable; null when the file has none.
    pub mini_debuginfo: Option<String>,
}

/// What became of a module file's MiniDebugInfo, as [`ModuleReport::mini_debuginfo`] says.
fn mini_debuginfo_state(m: &crate::modules::Module) -> Option<String> {
    let file = m.file()?;
    if !file.has_section(".gnu_debugdata") {
        return None;
    }
    if file.has_symtab() || m.debug_file().is_some_and(|d| d.has_symtab()) {
        return Some("not_needed".into());
    }
    Some(match m.mini_debuginfo() {
        Ok(_) => "used".into(),
        Err(e) => format!("unusable: {e}"),
    })
}

/// The Python interpreter.
#[derive(Debug, Clone, Serialize)]
pub struct PythonReport {
    /// `X.Y.Z`, formatted like `platform.python_version()`; `X.Y` when only that is known.
    pub version: String,
    /// `PY_VERSION_HEX`, when the micro version is known.
    pub version_hex: Option<u32>,
    /// How it was found.
    pub source: VersionSource,
    /// The module holding the interpreter.
    pub module: String,
    /// Where it was read.
    pub address: Option<u64>,
    /// `sys.version`, when read.
    pub build_string: Option<String>,
    /// What shows a free-threaded build (not supported yet); null for a default build.
    pub free_threaded: Option<String>,
}

impl InfoReport {
    /// Build the report for a process.
    pub fn build(process: &Process) -> InfoReport {
        let core = process.core();
        let psinfo = core.psinfo();
        let crashed = process.crashed_thread().map(|t| t.lwp);
        let signal = core
            .siginfo()
            .filter(|s| s.signo != 0)
            .map(|s| SignalReport {
                number: s.signo,
                name: signal_name(s.signo),
                code: Some(s.code),
                code_name: code_name(s.signo, s.code),
                fault_address: s.fault_address,
                sender_pid: s.sender_pid,
            })
            .or_else(|| {
                let cursig = i32::from(process.crashed_thread()?.cursig);
                (cursig != 0).then(|| SignalReport {
                    number: cursig,
                    name: signal_name(cursig),
                    code: None,
                    code_name: None,
                    fault_address: None,
                    sender_pid: None,
                })
            });
        let threads = process
            .threads()
            .iter()
            .map(|t| ThreadReport {
                lwp: t.lwp,
                pthread_id: crate::memory::threads::pthread_id(process.memory(), t),
                crashed: Some(t.lwp) == crashed,
                pc: t.registers.pc(),
                sp: t.registers.sp(),
            })
            .collect();
        let modules = process
            .modules()
            .modules()
            .iter()
            .map(|m| ModuleReport {
                name: m.name().to_string(),
                path: m.recorded_path.clone(),
                kind: m.kind,
                base: m.base,
                end: m.end,
                load_bias: m.load_bias,
                build_id: m.build_id_hex(),
                deleted: m.deleted,
                file: m.file_status.clone(),
                debug: m.debug_status.clone(),
                supplementary: m.supplementary.clone(),
                mini_debuginfo: mini_debuginfo_state(m),
            })
            .collect();
        let python = process.python().map(|p| PythonReport {
            version: p.version.to_string(),
            version_hex: p.version.micro.map(|micro| {
                u32::from(p.version.major) << 24
                    | u32::from(p.version.minor) << 16
                    | u32::from(micro) << 8
                    | u32::from(p.version.level) << 4
                    | u32::from(p.version.serial)
            }),
            source: p.source,
            module: p.module.clone(),
            address: p.address,
            build_string: p.build_string.clone(),
            free_threaded: p.free_threaded.clone(),
        });
        InfoReport {
            schema: "info",
            schema_version: SCHEMA_VERSION,
            core: CoreSummary {
                path: core.path().to_path_buf(),
                size: core.bytes().len() as u64,
                compression: core.compression(),
                producer: core.producer(),
                arch: core.arch(),
                segments: core.segments().len(),
                notes: core.note_count(),
                truncated: core.truncation().cloned(),
            },
            pid: process.pid(),
            ppid: psinfo.map(|p| p.ppid),
            uid: psinfo.map(|p| p.uid),
            command: psinfo.map(|p| p.fname.clone()),
            args: psinfo.map(|p| p.psargs.clone()),
            executable: process
                .modules()
                .executable()
                .map(|m| m.recorded_path.clone()),
            signal,
            crashed_lwp: crashed,
            threads,
            modules,
            module_source: process.modules().source(),
            python,
            diagnostics: process.diagnostics().to_vec(),
            crashed_thread_stack: None,
        }
    }

    /// Add the crashing thread's merged stack; `python` adds its Python
    /// frames, and the `pthread_t` of threads the core does not give it for
    /// (from their thread states' `thread_id`).
    pub fn add_crashed_stack(&mut self, process: &Process, python: Option<&PythonState>) {
        if let Some(python) = python {
            for thread in self.threads.iter_mut().filter(|t| t.pthread_id.is_none()) {
                thread.pthread_id = python
                    .thread_states_of(thread.lwp)
                    .first()
                    .map(|s| s.thread_id);
            }
        }
        self.crashed_thread_stack = crashed_stack(process, python, None);
    }
}
