//! The paths a person gives, checked before anything is opened, so that a
//! mistake is an error that names it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::SearchArgs;
use super::escape::terminal_text;

/// The folders to search must exist: a mistyped `--sysroot` would
/// otherwise read the host's files, or none, and say nothing. (A bad
/// `--temp-dir` is reported when a compressed core needs it.)
pub fn check_search_paths(search: &SearchArgs) -> Result<(), String> {
    let folders = search
        .sysroot
        .iter()
        .map(|p| ("--sysroot", p))
        .chain(search.debug_dirs.iter().map(|p| ("--debug-dir", p)))
        .chain(search.search_paths.iter().map(|p| ("--search-path", p)));
    for (option, path) in folders {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{option} {}: not a directory", path.display())),
            Err(e) => return Err(format!("{option} {}: {}", path.display(), io_reason(&e))),
        }
    }
    Ok(())
}

/// The core given must be a file: a folder would be refused as "not a
/// regular file", and a missing file needs no hint about ELF cores.
pub fn check_core_path(core: &Path) -> Result<(), String> {
    match std::fs::metadata(core) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "{}: is a directory, not a core file (`pymortem triage` takes folders)",
            core.display()
        )),
        Err(e) => Err(format!("{}: {}", core.display(), io_reason(&e))),
        Ok(_) => Ok(()),
    }
}

/// An I/O error as a person says it: "does not exist", not "No such file
/// or directory (os error 2)".
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The layout cache folder when none is given; the library falls back the
/// same way when `$HOME` does not exist, silently, so the note is said here,
/// once per run.
pub fn default_cache_dir() -> Option<PathBuf> {
    let dir = pymortem::layout::cache::default_location()?;
    if let Some(reason) = &dir.fallback_reason {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                io::stderr(),
                "pymortem: note: {}",
                terminal_text(&format!(
                    "{reason}: the layout cache is in {} (--cache-dir DIR or XDG_CACHE_HOME to choose)",
                    dir.path.display()
                ))
            );
        });
    }
    Some(dir.path)
}
