//! Batch triage: many cores, one summary each, grouped by crash signature.

pub mod signature;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Severity;
use crate::layout::LayoutOptions;
use crate::process::{Options, Process};
use crate::python::{ThreadOptions, python_state};
use crate::report::signals::signal_name;
use crate::stacks::crashed_stack;

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
/// walked recursively without following links; a file is a candidate when
/// it starts like an ELF file or a compressed stream (zstd, lz4, xz, gzip)
/// or is named like a core (`core`, `core.*`, `*.core`).
pub fn collect_inputs(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        walk(p, 0, &mut files, &mut skipped);
    }
    files.sort();
    files.dedup();
    let (cores, others): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|f| looks_like_core(f));
    skipped.extend(others.into_iter().map(|path| Skipped {
        path,
        reason: "neither an ELF file nor a compressed stream, and not named like a core".into(),
    }));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    (cores, skipped)
}

fn walk(path: &Path, depth: usize, files: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            skipped.push(Skipped {
                path: path.into(),
                reason: e.to_string(),
            });
            return;
        }
    };
    if meta.is_file() || (depth == 0 && meta.file_type().is_symlink() && path.is_file()) {
        if files.len() < MAX_FILES {
            files.push(path.into());
        }
        return;
    }
    if !meta.is_dir() {
        // Symlinks inside folders are not followed; a FIFO or device is
        // never opened (a FIFO's open would block the whole batch).
        let reason = if depth > 0 && meta.file_type().is_symlink() {
            "a symlink inside a folder; not followed".to_string()
        } else {
            format!(
                "not a regular file or folder: it is {}",
                crate::regular_file::describe(meta.file_type())
            )
        };
        skipped.push(Skipped {
            path: path.into(),
            reason,
        });
        return;
    }
    if depth >= MAX_DEPTH {
        skipped.push(Skipped {
            path: path.into(),
            reason: format!("deeper than {MAX_DEPTH} folders"),
        });
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        skipped.push(Skipped {
            path: path.into(),
            reason: "the folder cannot be read".into(),
        });
        return;
    };
    let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    children.sort();
    for child in children {
        walk(&child, depth + 1, files, skipped);
    }
}

fn looks_like_core(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "core" || name.starts_with("core.") || name.ends_with(".core") {
        return true;
    }
    let mut magic = [0u8; 6];
    let n = crate::regular_file::open_regular(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
        .unwrap_or(0);
    let magic = &magic[..n];
    magic.starts_with(b"\x7fELF")
        || magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || magic.starts_with(&[0x04, 0x22, 0x4d, 0x18])
        || magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || magic.starts_with(&[0x1f, 0x8b])
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
    pub verdict: Option<&'static str>,
    /// The checks that could not run (`layout`, `thread_states`, `free_lists`, `gc_lists`).
    pub unchecked: Vec<crate::forensics::CheckName>,
    /// When the crash happened (Unix seconds): from a systemd-coredump file
    /// name, else the file's modification time.
    pub time: Option<u64>,
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
pub fn triage_core(path: &Path, options: &TriageOptions) -> Result<CoreTriage, String> {
    let process = Process::open(path, &options.open).map_err(|e| e.to_string())?;
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
        verdict = Some("incomplete");
        unchecked.push(crate::forensics::CheckName::Layout);
    }
    let (stack, findings) = match (&state, options.no_checks) {
        (Some(state), false) => {
            let result = crate::forensics::check(&process, state);
            let kinds = result
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning)
                .map(|f| {
                    serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
                .collect::<std::collections::BTreeSet<_>>();
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
    })
}

/// A systemd-coredump name's timestamp
/// (`core.<comm>.<uid>.<boot id>.<pid>.<microseconds>[.zst|.lz4|.xz]`), else the mtime.
fn crash_time(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = [".zst", ".lz4", ".xz", ".gz"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    if stem.starts_with("core.") {
        let fields: Vec<&str> = stem.rsplitn(5, '.').collect();
        if let [usec, pid, boot, _uid, _rest] = fields[..]
            && boot.len() == 32
            && pid.parse::<u32>().is_ok()
            && let Ok(usec) = usec.parse::<u64>()
        {
            return Some(usec / 1_000_000);
        }
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
