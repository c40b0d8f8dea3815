//! elfutils' client cache: `<root>/<build-id>/debuginfo` and
//! `…/executable`, with an empty file recording a recent "not found".
//!
//! Sharing the layout means files gdb fetched are used here and the other
//! way round. What is read back is checked: a file in the cache is only
//! used when it is an ELF file with the build-id it is filed under.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{ArtifactKind, Failure};
use crate::elf::{ElfImage, hex};
use crate::regular_file::open_regular;

/// How long a recorded "not found" holds when the cache does not say
/// (`<root>/cache_miss_s`), as in elfutils.
const DEFAULT_MISS_SECS: u64 = 600;

/// What the cache holds for one build-id and kind.
#[derive(Debug)]
pub enum Lookup {
    /// A valid file.
    Hit(ElfImage),
    /// Servers said "not found" recently: do not ask again yet.
    RecentMiss,
    /// Nothing usable; the reason when a file was there but unusable.
    Absent(Option<String>),
}

/// The cache entry's path.
pub fn entry_path(root: &Path, build_id_hex: &str, kind: ArtifactKind) -> PathBuf {
    root.join(build_id_hex).join(kind.as_str())
}

/// Look up one entry without asking any server.
pub fn lookup(root: &Path, build_id: &[u8], kind: ArtifactKind) -> Lookup {
    let path = entry_path(root, &hex(build_id), kind);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Lookup::Absent(None);
    };
    if meta.is_file() && meta.len() == 0 {
        let age = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::MAX);
        return if age < miss_lifetime(root) {
            Lookup::RecentMiss
        } else {
            Lookup::Absent(None)
        };
    }
    match validated(&path, build_id) {
        Ok(image) => Lookup::Hit(image),
        Err(failure) => Lookup::Absent(Some(format!("{}: {failure}", path.display()))),
    }
}

/// The file at `path` as an ELF image carrying `build_id`, or why not.
pub fn validated(path: &Path, build_id: &[u8]) -> Result<ElfImage, Failure> {
    let file =
        open_regular(path).map_err(|e| Failure::Cache(format!("{}: {e}", path.display())))?;
    let image = ElfImage::map(path, &file).ok_or(Failure::NotElf)?;
    match image.build_id() {
        Some(id) if id == build_id => Ok(image),
        Some(id) => Err(Failure::WrongBuildId { got: hex(&id) }),
        None => Err(Failure::NoBuildId),
    }
}

/// How long an empty entry means "not found", from `<root>/cache_miss_s`.
fn miss_lifetime(root: &Path) -> Duration {
    let secs = std::fs::read(root.join("cache_miss_s"))
        .ok()
        .filter(|b| b.len() < 32)
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MISS_SECS);
    Duration::from_secs(secs)
}

/// A file being downloaded into the entry's folder, moved into place by
/// [`Pending::commit`] and removed if dropped before.
pub struct Pending {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl Pending {
    /// Start an entry.
    pub fn create(root: &Path, build_id_hex: &str, kind: ArtifactKind) -> io::Result<Pending> {
        let target = entry_path(root, build_id_hex, kind);
        let dir = target.parent().unwrap_or(root);
        std::fs::create_dir_all(dir)?;
        // In the entry's folder so that the final rename cannot cross file systems.
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", kind.as_str()))
            .tempfile_in(dir)?;
        Ok(Pending { temp, target })
    }

    /// The file to write into.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Move the finished file into place.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(&self.target).map_err(|e| e.error)?;
        Ok(self.target)
    }
}

/// Record that no server has the file, as elfutils does: an empty file
/// nobody can read, whose age says when to ask again.
pub fn record_miss(root: &Path, build_id_hex: &str, kind: ArtifactKind) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = entry_path(root, build_id_hex, kind);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::create(&target)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_empty_entry_is_a_miss_and_an_old_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        let id = [0xab, 0xcd];
        assert!(matches!(
            lookup(root.path(), &id, ArtifactKind::Debuginfo),
            Lookup::Absent(None)
        ));
        record_miss(root.path(), "abcd", ArtifactKind::Debuginfo).unwrap();
        assert!(matches!(
            lookup(root.path(), &id, ArtifactKind::Debuginfo),
            Lookup::RecentMiss
        ));
        std::fs::write(root.path().join("cache_miss_s"), "0\n").unwrap();
        assert!(matches!(
            lookup(root.path(), &id, ArtifactKind::Debuginfo),
            Lookup::Absent(None)
        ));
    }

    #[test]
    fn a_cached_file_that_is_not_elf_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("abcd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("executable"), b"not an elf file").unwrap();
        match lookup(root.path(), &[0xab, 0xcd], ArtifactKind::Executable) {
            Lookup::Absent(Some(reason)) => assert!(reason.contains("not an ELF file"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dropped_entry_leaves_no_file() {
        let root = tempfile::tempdir().unwrap();
        let mut p = Pending::create(root.path(), "abcd", ArtifactKind::Debuginfo).unwrap();
        std::io::Write::write_all(p.file(), b"partial").unwrap();
        let temp = p.path().to_path_buf();
        drop(p);
        assert!(!temp.exists());
        assert_eq!(
            std::fs::read_dir(root.path().join("abcd")).unwrap().count(),
            0
        );
    }
}
