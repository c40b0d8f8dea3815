//! The on-disk layout cache: a layout read from DWARF is stored per build-id,
//! so the next run on the same build skips DWARF.

use std::path::{Path, PathBuf};

use super::{Layout, LayoutSource};

/// Bumped whenever the cached format or the extraction changes (a change to
/// the spec changes the file name by itself).
const CACHE_FORMAT: u32 = 1;

/// The default cache folder: `$XDG_CACHE_HOME/pymortem` or `~/.cache/pymortem`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pymortem"))
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

/// The cached layout for a build-id, marked as cached.
pub fn load(dir: &Path, build_id: &str) -> Option<Layout> {
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
