//! `--search-path`: folder trees searched for a module's file and debug file
//! by build-id, for interpreters that are not where the core says (a
//! relocated install, a container, a core copied to another machine).
//!
//! A name proves nothing (every `libpython3.11.so.1.0` has the same one); a
//! build-id does. The scan is bounded in depth and count, opens regular
//! files only (the type is checked before opening, so a FIFO or a device
//! never blocks or is read) and follows no symlink, so it never leaves the
//! trees it was given.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::ElfImage;

/// Folder levels below a search path that are scanned, at most.
const MAX_DEPTH: usize = 16;
/// Directory entries looked at over all search paths, at most.
const MAX_ENTRIES: usize = 200_000;
/// ELF files whose build-id is read, at most.
const MAX_ELF_FILES: usize = 20_000;
/// `O_NOFOLLOW | O_NONBLOCK` (Linux x86-64): a path swapped for a symlink
/// or a FIFO between the type check and the open is not followed or waited on.
const OPEN_FLAGS: i32 = 0o400000 | 0o4000;

/// Every ELF file under the search paths, by build-id.
#[derive(Debug, Default)]
pub struct BuildIdIndex {
    by_id: HashMap<Vec<u8>, Vec<PathBuf>>,
    /// Why the scan stopped early, if it did.
    pub truncated: Option<String>,
}

impl BuildIdIndex {
    /// Scan `dirs` (each a folder tree, or a single file).
    pub fn scan(dirs: &[PathBuf]) -> BuildIdIndex {
        let mut index = BuildIdIndex::default();
        let mut entries = 0;
        let mut elf_files = 0;
        let mut pending: Vec<(PathBuf, usize)> = dirs.iter().map(|d| (d.clone(), 0)).collect();
        pending.reverse();
        while let Some((path, depth)) = pending.pop() {
            entries += 1;
            if entries > MAX_ENTRIES || elf_files >= MAX_ELF_FILES {
                index.truncated = Some(format!(
                    "the search paths hold more than {MAX_ENTRIES} entries or {MAX_ELF_FILES} ELF files; the rest were not looked at"
                ));
                break;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                if depth >= MAX_DEPTH {
                    continue;
                }
                let Ok(list) = fs::read_dir(&path) else {
                    continue;
                };
                let mut children: Vec<PathBuf> = list.flatten().map(|e| e.path()).collect();
                // Sorted, so the first file found for a build-id does not
                // depend on the file system's order.
                children.sort();
                pending.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
            } else if kind.is_file() && is_elf(&path) {
                elf_files += 1;
                // A DWARF 5 supplementary file (dwz -5) is known by its
                // `.debug_sup` checksum: it has no build-id note.
                let ids = ElfImage::open(&path).map(|i| i.supplementary_ids());
                for id in ids.into_iter().flatten() {
                    index.by_id.entry(id).or_default().push(path.clone());
                }
            }
        }
        index
    }

    /// The files with `build_id`, in scan order.
    pub fn files(&self, build_id: &[u8]) -> &[PathBuf] {
        self.by_id.get(build_id).map_or(&[], Vec::as_slice)
    }

    /// The module file with `build_id`: one whose code is in the file (a
    /// separate debug file has the same build-id but no code).
    pub fn module_file(&self, build_id: &[u8]) -> Option<ElfImage> {
        self.files(build_id)
            .iter()
            .filter_map(|p| open_regular(p))
            .find(|image| !image.is_debug_only() && image.build_id().as_deref() == Some(build_id))
    }

    /// A file with `build_id` that holds DWARF: a debug file, or an
    /// unstripped copy of the module.
    pub fn debug_file(&self, build_id: &[u8]) -> Option<ElfImage> {
        self.files(build_id)
            .iter()
            .filter_map(|p| open_regular(p))
            .find(|image| image.has_dwarf() && image.build_id().as_deref() == Some(build_id))
    }
}

/// Open `path` as an ELF image only if it is a regular file, not a symlink.
fn open_regular(path: &Path) -> Option<ElfImage> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    ElfImage::open(path)
}

/// Whether the regular file at `path` starts with the ELF magic.
fn is_elf(path: &Path) -> bool {
    let Ok(mut file) = OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
    else {
        return false;
    };
    if !File::metadata(&file).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_symlinks_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        // Finishes (a FIFO opened for reading would block) and finds nothing.
        let index = BuildIdIndex::scan(&[dir.path().to_path_buf(), PathBuf::from("/dev/null")]);
        assert!(index.by_id.is_empty());
        assert!(index.truncated.is_none());
    }
}
