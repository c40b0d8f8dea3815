//! Live processes: a consistent copy of a running process, written as an
//! ELF core that the rest of pymortem (and gdb, and pystack) reads.
//!
//! By default every thread is stopped (`PTRACE_SEIZE` and
//! `PTRACE_INTERRUPT`: no signal reaches the process) while its registers
//! and the memory the kernel would dump are copied with
//! `process_vm_readv`; then the threads run again, and the analysis reads
//! the copy. Without blocking, the memory is copied while the process
//! runs: the copy may then be inconsistent, and says so.
//!
//! This layer knows only the processor architecture below it.

mod maps;
mod proc_files;
mod ptrace;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

pub use maps::{Mapping, parse_maps};
pub use proc_files::{PermissionCheck, processes_named};
pub use ptrace::MAX_THREADS;

use crate::arch::ArchId;
use writer::{LoadSegment, Note, PF_R, PF_W, PF_X};

/// The owner name of the note that marks a core as a live copy.
pub const SNAPSHOT_NOTE_NAME: &str = "PYMORTEM";
/// Its `n_type`.
pub const SNAPSHOT_NOTE_TYPE: u32 = 0x5059_4d01;
/// Its descriptor's size: JSON, padded with spaces, so that it can be
/// written before the pause is known and rewritten in place after.
const SNAPSHOT_NOTE_SIZE: usize = 512;
/// Bytes copied per `process_vm_readv`.
const CHUNK: usize = 1 << 20;
const PAGE: u64 = 4096;
/// The most `PT_LOAD` segments (the ELF header's 16-bit count).
const MAX_SEGMENTS: usize = 0xfffe;

/// How to copy a process.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Stop every thread while copying (the default). Without it, nothing
    /// is stopped and no register is read but the stack and program
    /// pointers of threads blocked in a system call.
    pub block: bool,
    /// The most bytes of memory copied; mappings beyond are left out and
    /// listed as unreadable.
    pub max_bytes: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            block: true,
            max_bytes: 64 << 30,
        }
    }
}

/// What a copy holds and how it was taken; also stored in the core (its
/// `PYMORTEM` note), so a copy read later says the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The process.
    pub pid: i32,
    /// Whether its threads were stopped while it was copied.
    pub blocked: bool,
    /// How long they were stopped, microseconds.
    pub pause_us: Option<u64>,
    /// Threads copied.
    pub threads: usize,
    /// Threads that could not be (they exited meanwhile), with why.
    #[serde(default)]
    pub lost_threads: Vec<(i32, String)>,
    /// Bytes of memory copied.
    pub bytes_copied: u64,
    /// Address ranges that could not be copied, with why.
    #[serde(default)]
    pub unreadable: Vec<(u64, u64, String)>,
    /// When, Unix seconds.
    pub taken_at: u64,
}

impl SnapshotInfo {
    /// The pause as a duration.
    pub fn pause(&self) -> Option<Duration> {
        self.pause_us.map(Duration::from_micros)
    }

    /// `paused 9.0 ms`, or `not paused` for a copy taken without stopping.
    pub fn pause_text(&self) -> String {
        match self.pause_us {
            Some(us) if self.blocked => format!("paused {}", milliseconds(us)),
            _ => "not paused".into(),
        }
    }

    /// One line for a person: `12 threads stopped for 8 ms, 40.2 MiB copied`.
    pub fn summary(&self) -> String {
        let copied = format!(
            "{:.1} MiB copied",
            self.bytes_copied as f64 / (1 << 20) as f64
        );
        let mut text = match self.pause_us {
            Some(_) if self.blocked => format!(
                "{} thread{} stopped, {}, {copied}",
                self.threads,
                if self.threads == 1 { "" } else { "s" },
                self.pause_text()
            ),
            _ => format!("read without stopping it ({copied}): the copy may be inconsistent"),
        };
        if !self.lost_threads.is_empty() {
            text.push_str(&format!(
                "; {} thread(s) exited while it was stopped",
                self.lost_threads.len()
            ));
        }
        text
    }

    /// What a reader of the copy must know: how it was taken, and what
    /// it lacks.
    pub fn diagnostics(&self) -> Vec<crate::diagnostic::Diagnostic> {
        use crate::diagnostic::{Diagnostic, DiagnosticSource};
        let mut out = vec![Diagnostic::note(
            DiagnosticSource::Core,
            format!("a copy of live process {}: {}", self.pid, self.summary()),
        )];
        if !self.blocked {
            out.push(Diagnostic::warning(
                DiagnosticSource::Core,
                "the process ran while it was copied (--no-block): objects, lists and stacks may be \
                 inconsistent and native stacks are partial; copy it again without --no-block to be sure",
            ));
        }
        for (tid, why) in &self.lost_threads {
            out.push(Diagnostic::warning(
                DiagnosticSource::Core,
                format!("thread {tid} is unreadable: {why}"),
            ));
        }
        for (start, end, why) in &self.unreadable {
            out.push(Diagnostic::note(
                DiagnosticSource::Core,
                format!("memory {start:#x}..{end:#x} was not copied: {why}"),
            ));
        }
        out
    }

    /// Parse the descriptor of a `PYMORTEM` note (bounded JSON).
    pub fn from_note(desc: &[u8]) -> Option<SnapshotInfo> {
        let text = std::str::from_utf8(desc.get(..desc.len().min(1 << 16))?).ok()?;
        serde_json::from_str(text.trim_end_matches([' ', '\0'])).ok()
    }
}

fn milliseconds(us: u64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

/// `/proc/PID/root` when the process runs in another root than this one
/// (a container, a chroot): where its files are.
pub fn foreign_root(pid: i32) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let theirs = proc_files::path(pid, "root");
    let (a, b) = (
        std::fs::metadata(&theirs).ok()?,
        std::fs::metadata("/").ok()?,
    );
    ((a.dev(), a.ino()) != (b.dev(), b.ino())).then_some(theirs)
}

/// Why a process could not be copied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// No such process.
    #[error("process {pid} does not exist (check the PID: `ps -p {pid}`)")]
    NoProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// Tracing it is not permitted; `reason` says why and what would allow it.
    #[error("process {pid}: not permitted to read it: {reason}")]
    NotPermitted {
        /// The process.
        pid: i32,
        /// Why, and what to do.
        reason: String,
    },
    /// It exited while it was read.
    #[error("process {pid} has exited (or exited while it was read): nothing to copy")]
    Exited {
        /// The process.
        pid: i32,
    },
    /// This machine's processes cannot be copied.
    #[error("live processes are read on x86-64 only (this machine is {0})")]
    Unsupported(&'static str),
    /// A file of `/proc`, or the output, failed.
    #[error("process {pid}: {what}: {source}")]
    Io {
        /// The process.
        pid: i32,
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Copy process `pid` into `out` as an ELF core (the file is overwritten
/// from offset 0 and sized to fit; zero pages are holes).
pub fn write_snapshot(
    pid: i32,
    options: &SnapshotOptions,
    out: &File,
) -> Result<SnapshotInfo, LiveError> {
    let arch = ArchId::host().ok_or(LiveError::Unsupported(std::env::consts::ARCH))?;
    let (regs_size, fpregs_size) = arch
        .live_register_sizes()
        .ok_or(LiveError::Unsupported(std::env::consts::ARCH))?;
    let io = |what: &str| {
        let what = what.to_string();
        move |source: std::io::Error| LiveError::Io { pid, what, source }
    };
    let identity =
        proc_files::Identity::read(pid).map_err(|e| gone_or(pid, e, "/proc/PID/stat"))?;
    if identity.has_exited() {
        return Err(LiveError::Exited { pid });
    }
    let started = Instant::now();
    let stopped = if options.block {
        match ptrace::StoppedThreads::stop(pid, regs_size, fpregs_size) {
            Ok(stopped) => Some(stopped),
            Err(ptrace::StopError::Seize(e)) => return Err(refused(pid, e)),
            Err(ptrace::StopError::Tasks(e)) => return Err(gone_or(pid, e, "/proc/PID/task")),
        }
    } else {
        None
    };
    let mappings =
        maps::read_maps(&proc_files::path(pid, "maps")).map_err(|e| gone_or(pid, e, "maps"))?;
    let auxv = std::fs::read(proc_files::path(pid, "auxv")).unwrap_or_default();
    let (threads, lost_threads) = match &stopped {
        Some(s) => (
            s.threads
                .iter()
                .map(|t| (t.tid, t.regs.clone(), t.fpregs.clone()))
                .collect::<Vec<_>>(),
            s.lost.clone(),
        ),
        None => unblocked_threads(pid, arch)?,
    };
    if threads.is_empty() {
        return Err(LiveError::Exited { pid });
    }
    let mut notes = vec![Note {
        name: SNAPSHOT_NOTE_NAME,
        kind: SNAPSHOT_NOTE_TYPE,
        desc: vec![b' '; SNAPSHOT_NOTE_SIZE],
    }];
    for (index, (tid, regs, fpregs)) in threads.iter().enumerate() {
        let desc = arch
            .prstatus_descriptor(*tid, identity.ppid, regs)
            .ok_or(LiveError::Unsupported(std::env::consts::ARCH))?;
        notes.push(Note {
            name: "CORE",
            kind: 1,
            desc,
        });
        if index == 0 {
            notes.push(Note {
                name: "CORE",
                kind: 3,
                desc: writer::prpsinfo(
                    pid,
                    identity.ppid,
                    identity.uid,
                    identity.gid,
                    &identity.comm,
                    &identity.args,
                ),
            });
            notes.push(Note {
                name: "CORE",
                kind: 6,
                desc: auxv.clone(),
            });
            let files: Vec<(u64, u64, u64, &str)> = mappings
                .iter()
                .filter(|m| m.is_file())
                .map(|m| (m.start, m.end, m.offset, m.path.as_str()))
                .collect();
            notes.push(Note {
                name: "CORE",
                kind: 0x4649_4c45,
                desc: writer::nt_file(&files),
            });
        }
        let fpregs = fpregs.clone().unwrap_or_else(|| vec![0; fpregs_size]);
        notes.push(Note {
            name: "CORE",
            kind: 2,
            desc: fpregs,
        });
    }
    let memory = proc_files::Memory::new(pid);
    let mut unreadable = Vec::new();
    let mut budget = options.max_bytes;
    let segments: Vec<LoadSegment> = mappings
        .iter()
        .filter(|m| !m.path.starts_with("[vvar") && m.path != "[vsyscall]")
        .take(MAX_SEGMENTS)
        .map(|m| {
            let size = m.end - m.start;
            let mut filesz = if m.dumped() {
                size
            } else if m.is_file() && m.read && m.offset == 0 && memory.is_elf_header(m.start) {
                PAGE.min(size)
            } else {
                0
            };
            if filesz > budget {
                unreadable.push((m.start, m.end, "over the size limit".to_string()));
                filesz = 0;
            }
            budget -= filesz;
            LoadSegment {
                vaddr: m.start,
                memsz: size,
                filesz,
                flags: (if m.read { PF_R } else { 0 })
                    | (if m.write { PF_W } else { 0 })
                    | (if m.execute { PF_X } else { 0 }),
            }
        })
        .collect();
    let layout =
        writer::write_headers(out, arch.elf_machine(), &notes, &segments).map_err(io("write"))?;
    let mut bytes_copied = 0u64;
    let mut buffer = vec![0u8; CHUNK];
    for (segment, &offset) in segments.iter().zip(&layout.offsets) {
        let mut done = 0u64;
        while done < segment.filesz {
            let len = (segment.filesz - done).min(CHUNK as u64) as usize;
            let window = &mut buffer[..len];
            let address = segment.vaddr + done;
            match memory.read_into(address, window, &mut unreadable) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    return Err(LiveError::Exited { pid });
                }
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(refused(pid, e)),
                Err(e) => {
                    return Err(LiveError::Io {
                        pid,
                        what: format!("reading {address:#x}"),
                        source: e,
                    });
                }
            }
            writer::write_sparse(out, offset + done, window).map_err(io("write"))?;
            bytes_copied += len as u64;
            done += len as u64;
        }
    }
    drop(stopped);
    let pause_us = options
        .block
        .then(|| started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
    let info = SnapshotInfo {
        pid,
        blocked: options.block,
        pause_us,
        threads: threads.len(),
        lost_threads,
        bytes_copied,
        unreadable,
        taken_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let mut desc = serde_json::to_vec(&info).unwrap_or_default();
    if desc.len() > SNAPSHOT_NOTE_SIZE {
        // Too many unreadable ranges to record: keep the count.
        let mut short = info.clone();
        short.unreadable.truncate(2);
        short.lost_threads.truncate(2);
        desc = serde_json::to_vec(&short).unwrap_or_default();
    }
    desc.resize(SNAPSHOT_NOTE_SIZE, b' ');
    if let Some(&at) = layout.desc_offsets.first() {
        out.write_all_at(&desc, at).map_err(io("write"))?;
    }
    Ok(info)
}

/// The threads of a process that is not stopped: their ids, and the stack
/// and program pointers of those blocked in a system call.
#[allow(clippy::type_complexity)] // (tid, registers, fp registers), as the stopped ones
fn unblocked_threads(
    pid: i32,
    arch: ArchId,
) -> Result<(Vec<(i32, Vec<u8>, Option<Vec<u8>>)>, Vec<(i32, String)>), LiveError> {
    let tids = ptrace::list_tasks(pid).map_err(|e| gone_or(pid, e, "/proc/PID/task"))?;
    let mut threads = Vec::new();
    let mut tids: Vec<i32> = tids.into_iter().collect();
    tids.sort_by_key(|&tid| (tid != pid, tid));
    for tid in tids {
        let (sp, pc) = proc_files::syscall_pointers(pid, tid).unwrap_or((0, 0));
        let regs = arch
            .user_regs_from_pc_sp(pc, sp)
            .ok_or(LiveError::Unsupported(std::env::consts::ARCH))?;
        threads.push((tid, regs, None));
    }
    Ok((threads, Vec::new()))
}

/// A `/proc` read failed: the process is gone, or it is another error.
fn gone_or(pid: i32, e: std::io::Error, what: &str) -> LiveError {
    if !proc_files::path(pid, "").exists() {
        return if e.kind() == std::io::ErrorKind::NotFound {
            LiveError::NoProcess { pid }
        } else {
            LiveError::Exited { pid }
        };
    }
    match e.raw_os_error() {
        Some(libc::ESRCH) => LiveError::Exited { pid },
        Some(libc::EPERM) | Some(libc::EACCES) => refused(pid, e),
        _ => LiveError::Io {
            pid,
            what: what.replace("PID", &pid.to_string()),
            source: e,
        },
    }
}

/// `PTRACE_SEIZE` or `process_vm_readv` failed: say why and what to do.
fn refused(pid: i32, e: std::io::Error) -> LiveError {
    if proc_files::has_exited(pid) {
        return LiveError::Exited { pid };
    }
    match e.raw_os_error() {
        Some(libc::ESRCH) if !proc_files::path(pid, "").exists() => LiveError::NoProcess { pid },
        Some(libc::ESRCH) => LiveError::Exited { pid },
        Some(libc::EPERM) | Some(libc::EACCES) => LiveError::NotPermitted {
            pid,
            reason: PermissionCheck::of(pid).explain(),
        },
        _ => LiveError::Io {
            pid,
            what: "ptrace".into(),
            source: e,
        },
    }
}
