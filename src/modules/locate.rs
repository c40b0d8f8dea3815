//! Finding files named by the core: the sysroot, `--exe`, and debug files.
//!
//! A path taken from the core is resolved like a chroot would resolve it:
//! `..` never climbs above the sysroot and absolute symlinks restart at the
//! sysroot, so nothing in a core can make pymortem read outside it.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use std::os::unix::fs::MetadataExt;

use super::ElfImage;
use crate::regular_file::{is_not_regular, open_regular};

/// Symlinks followed while resolving one path, as in Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Where to look for files.
#[derive(Debug, Clone, Default)]
pub struct SearchPaths {
    /// Root for every absolute path taken from the core.
    pub sysroot: Option<PathBuf>,
    /// The main executable, overriding the recorded path.
    pub exe: Option<PathBuf>,
    /// Debug-file directories given by the user, searched first.
    pub debug_dirs: Vec<PathBuf>,
    /// Skip `/usr/lib/debug` (on the host and under the sysroot).
    pub no_default_debug_dir: bool,
    /// Folder trees searched by build-id for module files and debug files
    /// not found where the core says.
    pub search_paths: Vec<PathBuf>,
    /// Servers asked by build-id for files found nowhere else; shared by
    /// every core of a batch, so each build-id is fetched once.
    pub debuginfod: Option<std::sync::Arc<crate::debuginfod::Debuginfod>>,
}

impl SearchPaths {
    /// The root that core paths are resolved under.
    pub fn root(&self) -> &Path {
        self.sysroot.as_deref().unwrap_or(Path::new("/"))
    }

    /// Debug directories in search order: the user's, then `/usr/lib/debug`
    /// under the sysroot, then the host's.
    pub fn debug_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.debug_dirs.clone();
        if !self.no_default_debug_dir {
            if let Some(root) = &self.sysroot
                && let Some(p) = resolve_in_root(root, "/usr/lib/debug")
            {
                dirs.push(p);
            }
            dirs.push(PathBuf::from("/usr/lib/debug"));
        }
        dirs.dedup();
        dirs
    }
}

/// Resolve `path` (absolute, from the core) inside `root`, following symlinks
/// without ever leaving `root`. Returns the host path if the file exists.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." | "" => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let host = join(root, &resolved).join(&part);
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return None;
                }
                let target = std::fs::read_link(&host).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut parts = components(&target);
                parts.reverse();
                pending.extend(parts);
            }
            Ok(_) => resolved.push(part),
            Err(_) => return None,
        }
    }
    Some(join(root, &resolved))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

/// How a module's debug information was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DebugVia {
    /// The module file itself holds DWARF.
    Embedded,
    /// `<debug-dir>/.build-id/xx/rest.debug`.
    BuildId,
    /// `.gnu_debuglink`, CRC checked.
    Debuglink,
    /// Fetched by build-id from a debuginfod server (or its cache).
    Debuginfod,
}

/// Look for a separate debug file by build-id, then by `.gnu_debuglink`.
pub fn find_debug_file(
    paths: &SearchPaths,
    build_id: Option<&[u8]>,
    module_file: Option<&ElfImage>,
    recorded_path: &str,
) -> Option<(ElfImage, DebugVia)> {
    find_debug_file_noting_skips(paths, build_id, module_file, recorded_path, &mut Vec::new())
}

/// [`find_debug_file`], adding to `skipped` each candidate that exists but
/// was not read, with the reason (not a regular file, impossible size).
pub fn find_debug_file_noting_skips(
    paths: &SearchPaths,
    build_id: Option<&[u8]>,
    module_file: Option<&ElfImage>,
    recorded_path: &str,
    skipped: &mut Vec<String>,
) -> Option<(ElfImage, DebugVia)> {
    let dirs = paths.debug_dirs();
    if let Some(id) = build_id.filter(|id| id.len() >= 2) {
        let hex = hex(id);
        let rel = format!(".build-id/{}/{}.debug", &hex[..2], &hex[2..]);
        for dir in &dirs {
            let Some(candidate) = resolve_in_root(dir, &rel) else {
                continue;
            };
            if let Some(image) = open_candidate(&candidate, None, skipped)
                && image.build_id().as_deref() == Some(id)
            {
                return Some((image, DebugVia::BuildId));
            }
        }
    }
    let file = module_file?;
    let (name, crc) = file.debuglink()?;
    if name.contains('/') || name == ".." || name == "." {
        return None;
    }
    let file_dir = file
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let recorded_dir = Path::new(recorded_path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidates: Vec<PathBuf> = ["", ".debug/"]
        .iter()
        .filter_map(|sub| beside_module(paths, &file_dir, &format!("{sub}{name}")))
        .collect();
    for dir in &dirs {
        if let Some(p) = resolve_in_root(dir, &format!("{recorded_dir}/{name}")) {
            candidates.push(p);
        }
    }
    let module_size = file.bytes().len() as u64;
    candidates
        .into_iter()
        .filter(|c| c != file.path())
        .filter_map(|c| open_candidate(&c, Some(module_size), skipped))
        .find(|image| crc32fast::hash(image.bytes()) == crc && image.has_dwarf())
        .map(|image| (image, DebugVia::Debuglink))
}

/// `rel` in the module file's folder. A module found inside the sysroot
/// has its neighbours resolved inside it too, so a symlink planted there
/// cannot pull in a file from outside; a module named by the user (`--exe`
/// outside the sysroot) has its folder taken as given.
fn beside_module(paths: &SearchPaths, file_dir: &Path, rel: &str) -> Option<PathBuf> {
    let root = paths.root();
    match file_dir.strip_prefix(root) {
        Ok(inside) => resolve_in_root(root, &format!("/{}/{rel}", inside.display())),
        Err(_) => Some(file_dir.join(rel)),
    }
}

/// A debug file is larger than its module, but not without bound: DWARF
/// runs to a few dozen times the code it describes.
const MAX_DEBUG_TO_MODULE_RATIO: u64 = 64;
/// Floor of the size bound, for small modules with large debug files.
const MIN_DEBUG_SIZE_BOUND: u64 = 1 << 30;
/// No debug file is larger than this, whatever the module.
const MAX_DEBUG_FILE_SIZE: u64 = 32 << 30;
/// Files smaller than this are never taken for sparse.
const SPARSE_CHECK_FROM: u64 = 64 << 20;
/// A file with under 1/16 of its length on disk is mostly holes: no real
/// debug file (even on a compressing file system) is.
const MIN_ALLOCATED_FRACTION: u64 = 16;

/// Open a debug-file candidate, or say in `skipped` why it was not read.
/// `module_size` bounds the size of a debuglink candidate, which is
/// checksummed whole: a huge or sparse file would take minutes and GBs.
fn open_candidate(
    path: &Path,
    module_size: Option<u64>,
    skipped: &mut Vec<String>,
) -> Option<ElfImage> {
    let file = match open_regular(path) {
        Ok(f) => f,
        Err(e) if is_not_regular(&e) => {
            skipped.push(format!("{}: skipped: {e}", path.display()));
            return None;
        }
        Err(_) => return None,
    };
    if let Some(module_size) = module_size {
        let meta = file.metadata().ok()?;
        if let Some(reason) = implausible_debug_size(meta.len(), meta.blocks(), module_size) {
            skipped.push(format!("{}: skipped: {reason}", path.display()));
            return None;
        }
    }
    ElfImage::map(path, &file)
}

/// Why a file of `size` bytes with `blocks` 512-byte blocks on disk cannot
/// be the debug file of a module of `module_size` bytes, if it cannot.
fn implausible_debug_size(size: u64, blocks: u64, module_size: u64) -> Option<String> {
    let bound = module_size
        .saturating_mul(MAX_DEBUG_TO_MODULE_RATIO)
        .clamp(MIN_DEBUG_SIZE_BOUND, MAX_DEBUG_FILE_SIZE);
    if size > bound {
        return Some(format!(
            "{size} bytes, more than a debug file of a {module_size}-byte module can be (at most {bound})"
        ));
    }
    let allocated = blocks.saturating_mul(512);
    if size >= SPARSE_CHECK_FROM && allocated < size / MIN_ALLOCATED_FRACTION {
        return Some(format!(
            "sparse: {size} bytes long but only {allocated} bytes on disk"
        ));
    }
    None
}

pub use crate::elf::hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_never_leaves_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
        std::fs::write(root.path().join("usr/lib/x.so"), b"x").unwrap();
        let got = resolve_in_root(root.path(), "/../../../../usr/lib/x.so").unwrap();
        assert_eq!(got, root.path().join("usr/lib/x.so"));
        assert!(resolve_in_root(root.path(), "/../../etc/passwd").is_none());
    }

    #[test]
    fn absolute_symlinks_restart_at_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
        std::fs::write(root.path().join("usr/lib/libc.so"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.path().join("lib")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("escape")).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), "/lib/libc.so").unwrap(),
            root.path().join("usr/lib/libc.so")
        );
        assert!(resolve_in_root(root.path(), "/escape").is_none());
    }

    #[test]
    fn debug_file_sizes_are_bounded_by_the_module_and_holes() {
        let mib = 1u64 << 20;
        // A 2 MiB library may have a 1 GiB debug file, not 2 GiB.
        assert!(implausible_debug_size(1 << 30, (1 << 30) / 512, 2 * mib).is_none());
        assert!(implausible_debug_size(2 << 30, (2 << 30) / 512, 2 * mib).is_some());
        // A 100 MiB module: up to 6.25 GiB.
        assert!(implausible_debug_size(6 << 30, (6 << 30) / 512, 100 * mib).is_none());
        assert!(implausible_debug_size(7 << 30, (7 << 30) / 512, 100 * mib).is_some());
        // Never beyond 32 GiB.
        assert!(implausible_debug_size(33 << 30, (33 << 30) / 512, 1 << 30).is_some());
        // Mostly holes.
        assert!(implausible_debug_size(512 * mib, 8, 100 * mib).is_some());
        assert!(implausible_debug_size(512 * mib, 512 * mib / 512 / 4, 100 * mib).is_none());
        // Small files are never called sparse.
        assert!(implausible_debug_size(mib, 0, mib).is_none());
    }

    #[test]
    fn symlink_loops_end() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/b", root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", root.path().join("b")).unwrap();
        assert!(resolve_in_root(root.path(), "/a").is_none());
    }
}
