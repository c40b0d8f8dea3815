//! The on-disk layout cache: a layout read from DWARF is stored per build-id,
//! so the next run on the same build skips DWARF.

use std::path::{Path, PathBuf};

use super::facts::VersionRules;
use super::{Layout, LayoutSource};

/// Bumped whenever the cached format or the extraction changes (a change to
/// the spec changes the file name by itself).
const CACHE_FORMAT: u32 = 1;

/// The default cache folder: `$XDG_CACHE_HOME/pymortem` or `~/.cache/pymortem`,
/// or a private folder in the temp dir when neither can be used.
pub fn default_dir() -> Option<PathBuf> {
    default_location().map(|d| d.path)
}

/// The default cache folder, and why it is not the usual one when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultDir {
    /// The folder.
    pub path: PathBuf,
    /// Why the usual place could not be used (a `$HOME` that does not
    /// exist), when the folder is the temp-dir fallback.
    pub fallback_reason: Option<String>,
}

/// Where the cache goes by default. `$HOME` must exist: a cache folder is
/// never created under a home that is not there (a service account's
/// `/nonexistent`); the temp dir's `pymortem-cache-UID` is used instead.
pub fn default_location() -> Option<DefaultDir> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Some(DefaultDir {
            path: xdg.join("pymortem"),
            fallback_reason: None,
        });
    }
    let reason = match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() && home.is_dir() => {
            return Some(DefaultDir {
                path: home.join(".cache").join("pymortem"),
                fallback_reason: None,
            });
        }
        Some(home) if !home.exists() => format!("HOME ({}) does not exist", home.display()),
        Some(home) => format!("HOME ({}) is not a folder", home.display()),
        None => "HOME is not set".to_string(),
    };
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let path = std::env::temp_dir().join(format!("pymortem-cache-{uid}"));
    private_folder(&path).ok()?;
    Some(DefaultDir {
        path,
        fallback_reason: Some(reason),
    })
}

/// `path` as a folder only this user can write: created with mode 0700, or
/// already there, ours, not a symlink and not writable by others (in a
/// shared temp dir, anyone could have made it first).
fn private_folder(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(path)?;
    // SAFETY: getuid cannot fail.
    let ours = meta.uid() == unsafe { libc::getuid() };
    if meta.is_dir() && ours && meta.mode() & 0o022 == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a private folder of this user",
            path.display()
        )))
    }
}

fn path_for(dir: &Path, build_id: &str) -> Option<PathBuf> {
    // A build-id is hex; anything else must not become a path.
    if build_id.is_empty() || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let spec = super::spec::fingerprint();
    Some(
        dir.join("layouts")
            .join(format!("v{CACHE_FORMAT}-{spec:08x}-{build_id}.json")),
    )
}

/// Bytes read of a cache entry, at most.
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// The cached layout for a build-id, marked as cached; `version`
/// (major, minor) gives back the facts' rules, which the cache does not store.
pub fn load(dir: &Path, build_id: &str, version: (u8, u8)) -> Option<Layout> {
    let file = crate::regular_file::open_regular(&path_for(dir, build_id)?).ok()?;
    // A layout is a few KB; a bigger entry is not one of ours.
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_ENTRY_BYTES), &mut text)
        .ok()?;
    let mut layout: Layout = serde_json::from_str(&text).ok()?;
    match &mut layout.source {
        LayoutSource::Dwarf {
            cached,
            build_id: Some(id),
            cache_rejected,
            ..
        } if id == build_id => {
            *cached = true;
            *cache_rejected = None;
        }
        _ => return None,
    }
    layout.facts.rules = VersionRules::for_version(version.0, version.1);
    Some(layout)
}

/// Store a layout; written to a temp file and renamed, so readers never see half a file.
pub fn store(dir: &Path, build_id: &str, layout: &Layout) -> std::io::Result<()> {
    let Some(path) = path_for(dir, build_id) else {
        return Ok(());
    };
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::NamedTempFile::new_in(parent)?;
    serde_json::to_writer(&tmp, layout).map_err(std::io::Error::other)?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tables;

    #[test]
    fn a_cached_layout_gets_back_the_rules_of_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let build_id = "0123456789abcdef";
        let mut layout = tables::builtin(3, 12).unwrap().layout_for("3.12.0");
        layout.source = LayoutSource::Dwarf {
            path: "libpython3.12.so.1.0".into(),
            build_id: Some(build_id.to_string()),
            cached: false,
            cache_rejected: None,
        };
        store(dir.path(), build_id, &layout).unwrap();
        let loaded = load(dir.path(), build_id, (3, 12)).unwrap();
        assert_eq!(loaded.facts.rules, VersionRules::for_version(3, 12));
        assert_eq!(
            loaded.facts.rules.managed_dict,
            super::super::ManagedDict::TaggedWord
        );
        assert_eq!(loaded.facts, layout.facts);
    }
}
