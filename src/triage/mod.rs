//! Batch triage: many cores, one summary each, grouped by crash signature.

pub mod signature;

use crate::forensics::VerdictStatus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::corefile::signals::signal_name;
use crate::error::Severity;
use crate::layout::LayoutOptions;
use crate::process::{Options, Process};
use crate::python::{ThreadOptions, python_state};
use crate::stacks::{StackFrame, crashed_stack};

/// Files looked at below each folder, at most.
const MAX_FILES: usize = 1_000_000;
/// Folder depth followed, at most.
const MAX_DEPTH: usize = 32;

/// A file that is not looked at, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The files to triage (sorted, each once) and the ones skipped. Folders are
/// walked recursively; symlinks are followed, to files and to folders, and
/// a loop is reported rather than walked again. Each file is then
/// [`classify`]d: cores are triaged, anything else is skipped with a reason.
pub fn collect_inputs(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let (files, mut skipped) = walk_inputs(paths);
    let (cores, not_cores) = classify_inputs(files);
    skipped.extend(not_cores);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    (cores, skipped)
}

/// The first half of [`collect_inputs`]: the files found under `paths`
/// (sorted, each once), none of them opened yet, and the paths passed over
/// (loops, dangling links, devices). A caller that already knows some of
/// the files (the crash database) drops them before [`classify_inputs`].
pub fn walk_inputs(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut walk = Walk::default();
    for p in paths {
        walk.visit(p, 0, false);
    }
    let (mut files, mut skipped) = walk.linked_files_once();
    files.sort();
    files.dedup();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    (files, skipped)
}

/// The second half of [`collect_inputs`]: each file [`classify`]d (its
/// first bytes read) into the cores and the files skipped, with the reason.
pub fn classify_inputs(files: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut cores = Vec::new();
    for path in files {
        match classify(&path) {
            InputKind::Core => cores.push(path),
            InputKind::Skip(reason) => skipped.push(Skipped { path, reason }),
        }
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    (cores, skipped)
}

/// What a folder walk found, and what it passed over.
#[derive(Default)]
struct Walk {
    /// Each file with its (device, inode) and whether a symlink led to it.
    files: Vec<(PathBuf, (u64, u64), bool)>,
    skipped: Vec<Skipped>,
    /// (device, inode) of every folder walked, with the path it was walked at.
    folders: std::collections::HashMap<(u64, u64), PathBuf>,
}

/// `ELOOP`: too many symlinks to resolve a path (a link that leads back to itself).
const ELOOP: i32 = 40;

impl Walk {
    fn skip(&mut self, path: &Path, reason: String) {
        self.skipped.push(Skipped {
            path: path.into(),
            reason,
        });
    }

    /// The files found, a file that a symlink leads to counted once: a
    /// link to a core that is also found directly (or through another link)
    /// is skipped, naming it. Hard links stay separate files, as before.
    fn linked_files_once(self) -> (Vec<PathBuf>, Vec<Skipped>) {
        let mut skipped = self.skipped;
        let mut kept: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
        // Files reached directly first, so a link names one of them.
        let mut files = self.files;
        files.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        let mut out = Vec::new();
        for (path, id, via_link) in files {
            match kept.get(&id) {
                Some(first) if via_link => skipped.push(Skipped {
                    reason: format!("a link to {}, which is triaged", first.display()),
                    path,
                }),
                _ => {
                    kept.entry(id).or_insert_with(|| path.clone());
                    out.push(path);
                }
            }
        }
        (out, skipped)
    }

    fn visit(&mut self, path: &Path, depth: usize, via_link: bool) {
        use std::os::unix::fs::MetadataExt;
        let via_link =
            via_link || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        // Follows symlinks: a folder of links to cores is common.
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(ELOOP) => {
                return self.skip(path, "a symlink loop: the link leads back to itself".into());
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(path).is_ok() =>
            {
                return self.skip(path, "a dangling symlink: its target does not exist".into());
            }
            Err(e) => return self.skip(path, e.to_string()),
        };
        let id = (meta.dev(), meta.ino());
        if meta.is_file() {
            if self.files.len() < MAX_FILES {
                self.files.push((path.into(), id, via_link));
            }
            return;
        }
        if !meta.is_dir() {
            // A FIFO or device is never opened (a FIFO's open would block the batch).
            return self.skip(
                path,
                format!(
                    "not a regular file or folder: it is {}",
                    crate::regular_file::describe(meta.file_type())
                ),
            );
        }
        if let Some(first) = self.folders.get(&id) {
            return self.skip(
                path,
                format!(
                    "a folder already walked as {} (a symlink loop, or a second link to it)",
                    first.display()
                ),
            );
        }
        if depth >= MAX_DEPTH {
            return self.skip(path, format!("deeper than {MAX_DEPTH} folders"));
        }
        self.folders.insert(id, path.into());
        let Ok(entries) = std::fs::read_dir(path) else {
            return self.skip(path, "the folder cannot be read".into());
        };
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        children.sort();
        for child in children {
            self.visit(&child, depth + 1, via_link);
        }
    }
}

/// What a file given to triage is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputKind {
    /// An ELF core, plain or compressed (or a file named like one, which is
    /// then reported as an error if it cannot be read as a core).
    Core,
    /// Not a core: skipped, and why.
    Skip(String),
}

/// Decompressed bytes looked at to tell a compressed core from an archive:
/// a tar header's `ustar` magic is at 257.
const PEEK_BYTES: usize = 512;

/// Whether a file is a core to triage, or why it is skipped. Only the first
/// bytes are read (decompressed, for a compressed file).
// `pymortem bundle` archives (`.pymortem`: tar + zstd) are another case
// here, next to Core: until then they read as a compressed tar archive.
pub fn classify(path: &Path) -> InputKind {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let named_like_core = name == "core" || name.starts_with("core.") || name.ends_with(".core");
    // A bundle is a zstd tar archive too, but one that holds a core.
    if crate::bundle::is_bundle(path) {
        return InputKind::Core;
    }
    if is_tar_name(&name) {
        return InputKind::Skip("a tar archive, not a core".into());
    }
    let mut head = [0u8; 64];
    let n = match crate::regular_file::open_regular(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
    {
        Ok(n) => n,
        // Opening it again reports the error on the core's row.
        Err(_) if named_like_core => return InputKind::Core,
        Err(e) => return InputKind::Skip(format!("cannot be read: {e}")),
    };
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        return elf_kind(head, "");
    }
    if let Some(format) = crate::corefile::compressed::detect(head) {
        let what = format!("{}-compressed", format.name());
        return match crate::corefile::compressed::peek(path, format, PEEK_BYTES) {
            Ok(inner) if inner.starts_with(b"\x7fELF") => elf_kind(&inner, &what),
            Ok(inner) if inner.get(257..262) == Some(b"ustar") => {
                InputKind::Skip(format!("a {what} tar archive, not a core"))
            }
            _ if named_like_core => InputKind::Core,
            Ok(inner) if inner.is_empty() => {
                InputKind::Skip(format!("a {what} file that decompresses to nothing"))
            }
            Ok(_) => InputKind::Skip(format!("a {what} file that does not hold an ELF core")),
            Err(e) => InputKind::Skip(format!("a {what} file that cannot be decompressed: {e}")),
        };
    }
    if named_like_core {
        return InputKind::Core;
    }
    InputKind::Skip("neither an ELF file nor a compressed stream, and not named like a core".into())
}

/// `x.tar`, `x.tar.zst`, `x.tgz`, ...
fn is_tar_name(name: &str) -> bool {
    name.ends_with(".tar") || name.contains(".tar.") || name.ends_with(".tgz")
}

/// A core by its ELF type (`ET_CORE`), else skipped as the kind of ELF file
/// it is. Too short to tell: a core (a truncated one is reported as such).
fn elf_kind(head: &[u8], compressed: &str) -> InputKind {
    let Some(e_type) = head.get(16..18).and_then(|b| <[u8; 2]>::try_from(b).ok()) else {
        return InputKind::Core;
    };
    let what = match u16::from_le_bytes(e_type) {
        1 => "a relocatable object",
        2 => "an executable",
        3 => "a shared library or executable",
        // ET_CORE, or a damaged header: reading it as a core says what is wrong.
        _ => return InputKind::Core,
    };
    let compressed = if compressed.is_empty() {
        String::new()
    } else {
        format!(" ({compressed})")
    };
    InputKind::Skip(format!("{what}{compressed}, not a core"))
}

/// What triage says about one core.
#[derive(Debug, Clone, Serialize)]
pub struct CoreTriage {
    /// The file.
    pub path: PathBuf,
    /// The signature id, `v1:<16 hex digits>`.
    pub signature: String,
    /// What the signature is made of, one part per line.
    pub signature_text: String,
    /// CPython version.
    pub python_version: Option<String>,
    /// The signal's name.
    pub signal: Option<String>,
    /// The fatal error's message, or its path when the message is unknown.
    pub fatal_error: Option<String>,
    /// Top Python frames of the crashing thread, innermost first.
    pub python_frames: Vec<String>,
    /// Top native frames, normalized as in the signature.
    pub native_frames: Vec<String>,
    /// Kinds of error and warning findings, sorted.
    pub finding_kinds: Vec<String>,
    /// The checks' verdict: `clean`, `suspicious`, `corrupt` or `incomplete`
    /// (a check could not run, or the interpreter's structures could not be
    /// read); null for a core without Python or with `--no-checks`.
    pub verdict: Option<VerdictStatus>,
    /// The checks that could not run (`layout`, `thread_states`, `free_lists`, `gc_lists`).
    pub unchecked: Vec<crate::forensics::CheckName>,
    /// When the crash happened (Unix seconds): from a systemd-coredump file
    /// name, else the file's modification time.
    pub time: Option<u64>,
    /// The crashing thread's merged stack, innermost first, one line per
    /// frame (at most [`STACK_LINES`]): what a crash database shows as the
    /// group's representative stack.
    #[serde(skip)]
    pub stack: Vec<String>,
    /// The error and warning findings, one line each (at most
    /// [`FINDING_LINES`]).
    #[serde(skip)]
    pub findings: Vec<String>,
}

/// The most stack lines kept of a core for the crash database.
pub const STACK_LINES: usize = 64;
/// The most finding lines kept of a core for the crash database.
pub const FINDING_LINES: usize = 32;

/// One frame of a merged stack as one line: `function (file:line)` for
/// Python, `function (module+offset)` for native code.
pub fn stack_line(frame: &StackFrame) -> String {
    match frame {
        StackFrame::Python(p) => match p.line {
            Some(line) => format!("py  {} ({}:{line})", p.function, p.file),
            None => format!("py  {} ({})", p.function, p.file),
        },
        StackFrame::Native(n) => {
            let name = n.function.as_deref().unwrap_or("??");
            let module = n
                .module
                .as_deref()
                .map(|m| m.rsplit('/').next().unwrap_or(m));
            match (module, n.module_offset) {
                (Some(m), Some(o)) => format!("    {name} ({m}+{o:#x})"),
                (Some(m), None) => format!("    {name} ({m})"),
                _ => format!("    {name} ({:#x})", n.address.address()),
            }
        }
    }
}

/// Triage options shared by the batch.
#[derive(Debug, Clone, Default)]
pub struct TriageOptions {
    /// How cores are opened (sysroot, debug folders, temp folder).
    pub open: Options,
    /// The layout cache.
    pub layout: LayoutOptions,
    /// Skip the free-list and GC checks (signatures then carry no finding kinds).
    pub no_checks: bool,
}

/// Triage one core.
pub fn triage_core(path: &Path, options: &TriageOptions) -> Result<CoreTriage, crate::Error> {
    let process = Process::open(path, &options.open)?;
    let thread_options = ThreadOptions {
        locals: false,
        layout: options.layout.clone(),
    };
    let state = python_state(&process, &thread_options);
    let layout_failed = state.is_err() && process.python().is_some();
    let state = state.ok();
    let signal = process
        .core()
        .siginfo()
        .map(|s| s.signo)
        .or_else(|| process.crashed_thread().map(|t| i32::from(t.cursig)))
        .filter(|&s| s != 0)
        .map(|s| signal_name(s).map_or_else(|| format!("signal {s}"), str::to_string));
    let mut verdict = None;
    let mut unchecked = Vec::new();
    if layout_failed && !options.no_checks {
        verdict = Some(VerdictStatus::Incomplete);
        unchecked.push(crate::forensics::CheckName::Layout);
    }
    let mut finding_lines = Vec::new();
    let (stack, findings) = match (&state, options.no_checks) {
        (Some(state), false) => {
            let result = crate::forensics::check(&process, state);
            let kinds = result
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning)
                // Only a core written by the fatal signal has a crash site:
                // a gcore of the same crash must group with it.
                .filter(|f| f.kind != crate::forensics::FindingKind::CrashSiteObject)
                .map(|f| {
                    serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
                .collect::<std::collections::BTreeSet<_>>();
            finding_lines = result
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning)
                .take(FINDING_LINES)
                .map(|f| {
                    let severity = if f.severity >= Severity::Error {
                        "error"
                    } else {
                        "warning"
                    };
                    format!("{severity} at {:#x}: {}", f.address, f.message)
                })
                .collect();
            verdict = Some(result.verdict.status);
            unchecked = result.verdict.unchecked.iter().map(|u| u.check).collect();
            (result.crashed_thread_stack, kinds.into_iter().collect())
        }
        _ => (crashed_stack(&process, state.as_ref(), None), Vec::new()),
    };
    let fatal_error = stack
        .as_ref()
        .and_then(|s| s.fatal_error.as_ref())
        .map(|f| {
            f.message
                .clone()
                .unwrap_or_else(|| format!("{} (message unknown)", f.path))
        });
    let (python_frames, native_frames) = stack
        .as_ref()
        .map(|s| signature::top_frames(&s.frames))
        .unwrap_or_default();
    let stack_lines = stack
        .as_ref()
        .map(|s| s.frames.iter().take(STACK_LINES).map(stack_line).collect())
        .unwrap_or_default();
    let kind = signature::crash_kind(fatal_error.as_deref(), signal.as_deref());
    let (signature_text, signature) =
        signature::signature(&kind, &python_frames, &native_frames, &findings);
    Ok(CoreTriage {
        path: path.into(),
        signature,
        signature_text,
        python_version: process.python().map(|p| p.version.to_string()),
        signal,
        fatal_error,
        python_frames,
        native_frames,
        finding_kinds: findings,
        verdict,
        unchecked,
        time: crash_time(path),
        stack: stack_lines,
        findings: finding_lines,
    })
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
pub fn utc_text(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (h, m) = ((seconds % 86_400) / 3600, (seconds % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02}")
}

/// What a systemd-coredump file name tells:
/// `core.<comm>.<uid>.<boot id>.<pid>.<microseconds>[.zst|.lz4|.xz]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoredumpName {
    /// The boot id (32 hex digits): which boot of which machine wrote it.
    pub boot_id: String,
    /// The crashed process's pid.
    pub pid: u32,
    /// When it crashed, Unix seconds.
    pub time: u64,
}

/// The fields of a systemd-coredump file name, or `None` for another name.
pub fn coredump_name(path: &Path) -> Option<CoredumpName> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = [".zst", ".lz4", ".xz", ".gz"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    if !stem.starts_with("core.") {
        return None;
    }
    let fields: Vec<&str> = stem.rsplitn(5, '.').collect();
    if let [usec, pid, boot, _uid, _rest] = fields[..]
        && boot.len() == 32
        && let Ok(pid) = pid.parse::<u32>()
        && let Ok(usec) = usec.parse::<u64>()
    {
        return Some(CoredumpName {
            boot_id: boot.to_string(),
            pid,
            time: usec / 1_000_000,
        });
    }
    None
}

/// When a core's crash happened (Unix seconds): a systemd-coredump name's
/// timestamp (see [`coredump_name`]), else the file's modification time.
pub fn crash_time(path: &Path) -> Option<u64> {
    if let Some(name) = coredump_name(path) {
        return Some(name.time);
    }
    std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// One group of cores with the same signature.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The signature id.
    pub signature: String,
    /// Its text.
    pub signature_text: String,
    /// Cores in it.
    pub count: usize,
    /// CPython versions seen.
    pub python_versions: Vec<String>,
    /// Earliest and latest crash time.
    pub first_seen: Option<u64>,
    /// Latest crash time.
    pub last_seen: Option<u64>,
    /// One core of the group.
    pub example: PathBuf,
}

/// Group triaged cores by signature, largest group first.
pub fn group(cores: &[CoreTriage]) -> Vec<Group> {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for c in cores {
        let g = groups.entry(&c.signature).or_insert_with(|| Group {
            signature: c.signature.clone(),
            signature_text: c.signature_text.clone(),
            count: 0,
            python_versions: Vec::new(),
            first_seen: None,
            last_seen: None,
            example: c.path.clone(),
        });
        g.count += 1;
        if let Some(v) = &c.python_version
            && !g.python_versions.contains(v)
        {
            g.python_versions.push(v.clone());
        }
        g.first_seen = match (g.first_seen, c.time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        g.last_seen = g.last_seen.max(c.time);
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    for g in &mut out {
        g.python_versions.sort();
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.signature.cmp(&b.signature)));
    out
}
