//! Writing a bundle: the core and every file whose build-id matches the
//! core's, streamed through zstd into an unnamed file in the output's
//! folder that gets its name only once complete, so an error or a signal
//! leaves nothing behind and an existing output is replaced atomically.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bundle::tar;
use crate::bundle::{
    CORE_MEMBER, CoreEntry, FORMAT, FileEntry, MANIFEST_NAME, Manifest, Omitted, Role, VERSION,
    debug_member, file_member,
};
use crate::error::Error;
use crate::modules::{DebugStatus, DebugVia, FileStatus, ModuleKind, SupplementaryStatus};
use crate::process::Process;

/// How to write a bundle.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Include separate debug files (`--no-debug` clears it).
    pub debug_files: bool,
    /// The zstd level, 1 to 22.
    pub level: i32,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            debug_files: true,
            level: 9,
        }
    }
}

/// What `create` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    /// The archive.
    pub output: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The bytes it holds before compression.
    pub stored_bytes: u64,
    /// Its manifest: the core, the files included and the ones omitted.
    pub manifest: Manifest,
}

/// One member to store: its entry and bytes.
struct Part<'a> {
    entry: FileEntry,
    bytes: &'a [u8],
}

/// Bundle `process` (opened from `core_path`) into `output`.
pub fn create(
    process: &Process,
    core_path: &Path,
    output: &Path,
    options: &BundleOptions,
) -> Result<BundleReport, Error> {
    let core_bytes = process.core().bytes();
    let (parts, omitted) = collect(process, options);
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_by: format!("pymortem {}", env!("CARGO_PKG_VERSION")),
        core: CoreEntry {
            name: core_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "core".into()),
            member: CORE_MEMBER.into(),
            size: core_bytes.len() as u64,
            sha256: sha256(core_bytes),
        },
        files: parts.iter().map(|p| p.entry.clone()).collect(),
        omitted,
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::io(output, io::Error::other(e)))?;
    let mut members: Vec<(&str, &[u8])> =
        vec![(MANIFEST_NAME, &manifest_json), (CORE_MEMBER, core_bytes)];
    members.extend(parts.iter().map(|p| (p.entry.member.as_str(), p.bytes)));
    let stored_bytes = members.iter().map(|(_, b)| b.len() as u64).sum();
    let file = write_atomically(output, |file| {
        let mut encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), options.level)?;
        // The decoder's window stays at its default (8 MiB) so any zstd reads it.
        encoder.include_checksum(true)?;
        for (name, bytes) in &members {
            tar::write_header(&mut encoder, name, bytes.len() as u64)?;
            encoder.write_all(bytes)?;
            encoder.write_all(tar::padding(bytes.len() as u64))?;
        }
        tar::write_end(&mut encoder)?;
        encoder.finish()?.flush()
    })
    .map_err(|e| Error::io(output, e))?;
    Ok(BundleReport {
        output: output.into(),
        size: file,
        stored_bytes,
        manifest,
    })
}

/// The files to store, and the ones that cannot be, with the reason.
fn collect<'p>(process: &'p Process, options: &BundleOptions) -> (Vec<Part<'p>>, Vec<Omitted>) {
    let mut parts: Vec<Part> = Vec::new();
    let mut omitted = Vec::new();
    for module in process.modules().modules() {
        let role = match module.kind {
            ModuleKind::Executable => Role::Executable,
            ModuleKind::Library => Role::Library,
            ModuleKind::Vdso => continue, // its image is in the core
        };
        let path = module.recorded_path.clone();
        let omit = |role, reason: String| Omitted {
            path: path.clone(),
            role,
            reason,
        };
        let Some(id) = module.build_id_hex() else {
            omitted.push(omit(
                role,
                "the core holds no build-id for it: a file cannot be matched to it".into(),
            ));
            continue;
        };
        if parts.iter().any(|p| p.entry.build_id == id) {
            continue; // mapped twice under two names: one copy
        }
        let entry = |member: String, role, found_at: &Path, bytes: &[u8]| FileEntry {
            member,
            role,
            path: path.clone(),
            found_at: found_at.display().to_string(),
            build_id: id.clone(),
            size: bytes.len() as u64,
            sha256: sha256(bytes),
        };
        let included = match (&module.file_status, module.file()) {
            (FileStatus::Verified { path: found }, Some(file)) => {
                parts.push(Part {
                    entry: entry(file_member(&id, &path), role, found, file.bytes()),
                    bytes: file.bytes(),
                });
                true
            }
            (status, _) => {
                omitted.push(omit(role, why_not_included(status)));
                false
            }
        };
        let separate_debug = match &module.debug_status {
            DebugStatus::Found { via, .. } => *via != DebugVia::Embedded,
            DebugStatus::Missing { .. } => module.debug_file().is_some(),
        };
        match (module.debug_file(), separate_debug) {
            (Some(debug), true) if options.debug_files => parts.push(Part {
                entry: entry(
                    debug_member(&id),
                    Role::DebugFile,
                    debug.path(),
                    debug.bytes(),
                ),
                bytes: debug.bytes(),
            }),
            (Some(_), true) => omitted.push(omit(Role::DebugFile, "left out: --no-debug".into())),
            // Said only for a module whose file is there: for the others
            // the missing file is the news.
            (None, _) if options.debug_files && included => {
                if let DebugStatus::Missing { reason } = &module.debug_status {
                    omitted.push(omit(Role::DebugFile, reason.clone()));
                }
            }
            _ => {}
        }
        // The supplementary file (dwz) its DWARF refers to, once for all
        // the debug files that share it, stored under its own build-id.
        if options.debug_files
            && let Some(sup) = module.debug_file().and_then(|d| d.supplementary())
            && let Some(SupplementaryStatus::Found { build_id, .. }) = &module.supplementary
        {
            let member = debug_member(build_id);
            if !parts.iter().any(|p| p.entry.member == member) {
                parts.push(Part {
                    entry: FileEntry {
                        member,
                        role: Role::DebugFile,
                        path: path.clone(),
                        found_at: sup.path().display().to_string(),
                        build_id: build_id.clone(),
                        size: sup.bytes().len() as u64,
                        sha256: sha256(sup.bytes()),
                    },
                    bytes: sup.bytes(),
                });
            }
        }
    }
    (parts, omitted)
}

/// Why a module's file is not in the bundle.
fn why_not_included(status: &FileStatus) -> String {
    match status {
        FileStatus::Mismatch {
            path,
            file_build_id,
        } => format!(
            "{} is another build (build-id {}), not the one the process ran",
            path.display(),
            file_build_id.as_deref().unwrap_or("none")
        ),
        FileStatus::Missing { tried } => format!(
            "not found (tried {}); pass --sysroot, --exe or --search-path",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "its file could not be verified against the core's build-id".into(),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    crate::modules::hex(&Sha256::digest(bytes))
}

/// Write `output` through `fill` so that it appears whole or not at all.
/// The file has no name while it is written (`O_TMPFILE`), so an error, a
/// crash or a signal leaves nothing; once complete it is linked in under a
/// temporary name and renamed over `output`. Returns the size written.
fn write_atomically(output: &Path, fill: impl FnOnce(&File) -> io::Result<()>) -> io::Result<u64> {
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if output.is_dir() {
        return Err(io::Error::other("is a folder; name the archive to write"));
    }
    let Some(file) = unnamed_file(&folder)? else {
        // A file system without O_TMPFILE: a named temp file, removed on error.
        let temp = tempfile::Builder::new()
            .prefix(".pymortem-bundle-")
            .tempfile_in(&folder)?;
        fill(temp.as_file())?;
        temp.as_file().sync_all()?;
        let size = temp.as_file().metadata()?.len();
        temp.persist(output).map_err(|e| e.error)?;
        return Ok(size);
    };
    fill(&file)?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    for attempt in 0..16 {
        let temp = folder.join(format!(
            ".pymortem-bundle-{}-{attempt}.tmp",
            std::process::id()
        ));
        match link(&proc_path, &temp) {
            Ok(()) => {
                let renamed = std::fs::rename(&temp, output);
                if renamed.is_err() {
                    let _ = std::fs::remove_file(&temp);
                }
                return renamed.map(|()| size);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "cannot name the archive in {}",
        folder.display()
    )))
}

/// An unnamed file in `folder`, or `None` when its file system has no `O_TMPFILE`.
fn unnamed_file(folder: &Path) -> io::Result<Option<File>> {
    use std::os::unix::ffi::OsStrExt;
    let c_folder = std::ffi::CString::new(folder.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))?;
    // SAFETY: a plain open(2) of a NUL-terminated path; the descriptor is
    // owned by the File below.
    let fd = unsafe {
        libc::open(
            c_folder.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(Some(unsafe { File::from_raw_fd(fd) }))
}

/// Give the unnamed file behind `proc_path` the name `to`.
fn link(proc_path: &str, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(proc_path).map_err(io::Error::other)?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))?;
    // SAFETY: linkat(2) on two NUL-terminated paths.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.pymortem");
        std::fs::write(&out, b"old").unwrap();
        let err = write_atomically(&out, |f| {
            (&*f).write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let size = write_atomically(&out, |f| (&*f).write_all(b"new")).unwrap();
        assert_eq!(size, 3);
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
