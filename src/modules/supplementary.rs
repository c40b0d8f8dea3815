//! Supplementary files: dwz (run by Fedora, RHEL, Debian and Ubuntu) moves
//! the DWARF that several debug files share into one file they all refer
//! to, through `.gnu_debugaltlink` or DWARF 5's `.debug_sup`. Without it a
//! debug file's types, many function names and strings are missing.
//!
//! [`find_supplementary_file`] is the one place that looks for it; the file
//! found is attached to the debug file's image
//! ([`ElfImage::with_supplementary`]), so every DWARF reader sees it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::locate::{SearchPaths, hex, resolve_in_root};
use super::{ElfImage, Files, LazyIndex};
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::elf::{SupplementaryLink, SupplementaryLinkKind};
use crate::regular_file::{is_not_regular, open_regular};

/// How a supplementary file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SupplementaryVia {
    /// At the name the link gives (inside the sysroot).
    Name,
    /// `<debug-dir>/.build-id/xx/rest.debug`.
    BuildId,
    /// In the `.dwz/` folder of a debug directory.
    DwzDir,
    /// In a `--search-path` tree, by build-id.
    SearchPath,
    /// In the bundle, by build-id.
    Bundle,
    /// Fetched by build-id from a debuginfod server (or its cache).
    Debuginfod,
}

/// A debug file's supplementary file, when its DWARF refers to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SupplementaryStatus {
    /// Found, with the build-id the link names; its DWARF is read with the
    /// debug file's.
    Found {
        /// Where.
        path: PathBuf,
        /// Its build-id (the link's), hex.
        build_id: String,
        /// The section that links to it.
        link: SupplementaryLinkKind,
        /// How it was found.
        via: SupplementaryVia,
    },
    /// Not found, or its link is unreadable: the debug file's DWARF is incomplete.
    Missing {
        /// The name the link gives; null when the link is unreadable.
        name: Option<String>,
        /// The build-id the link names, hex; null when the link is unreadable.
        build_id: Option<String>,
        /// Why, what was tried, and where to get it.
        reason: String,
    },
}

/// Why no supplementary file is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupplementaryError {
    /// No file with the build-id the link names was found.
    #[error(
        "the supplementary file {name} (build-id {build_id}) was not found (tried {}){}",
        join(tried),
        rejected_text(rejected)
    )]
    NotFound {
        /// The name in the link.
        name: String,
        /// The build-id in the link, hex.
        build_id: String,
        /// The paths looked at.
        tried: Vec<PathBuf>,
        /// Files that were there but are not it, each with the reason.
        rejected: Vec<String>,
    },
}

fn join(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn rejected_text(rejected: &[String]) -> String {
    if rejected.is_empty() {
        String::new()
    } else {
        format!("; rejected: {}", rejected.join("; "))
    }
}

/// Find the supplementary file `link` names for the debug file at
/// `debug_file`, in this order: at the link's name (absolute names inside
/// the sysroot; relative ones from the debug file's folder, inside the tree
/// that holds it), by build-id in each debug directory
/// (`.build-id/xx/rest.debug`), in each debug directory's `.dwz/` folder,
/// then by build-id in the `--search-path` trees. A file is taken only when
/// its build-id (or, for a DWARF 5 supplementary file, its own `.debug_sup`
/// checksum) equals the link's; any other is rejected and named in the error.
pub(super) fn find_supplementary_file(
    paths: &SearchPaths,
    index: Option<&LazyIndex>,
    link: &SupplementaryLink,
    debug_file: &Path,
) -> Result<(ElfImage, SupplementaryVia), SupplementaryError> {
    let mut search = Search {
        want: &link.build_id,
        tried: Vec::new(),
        rejected: Vec::new(),
    };
    let name = String::from_utf8_lossy(&link.name).into_owned();
    let by_name = if name.starts_with('/') {
        Some((paths.root().to_path_buf(), name.clone()))
    } else {
        beside(paths, debug_file, &name)
    };
    if let Some((root, path)) = by_name
        && let Some(found) = search.try_in(&root, &path)
    {
        return Ok((found, SupplementaryVia::Name));
    }
    let id = hex(&link.build_id);
    let dirs = paths.debug_dirs();
    if id.len() > 2 {
        let rel = format!(".build-id/{}/{}.debug", &id[..2], &id[2..]);
        for dir in &dirs {
            if let Some(found) = search.try_in(dir, &rel) {
                return Ok((found, SupplementaryVia::BuildId));
            }
        }
    }
    // Debian's names run `../../.dwz/<triplet>/<package>.debug`, Fedora's
    // `/usr/lib/debug/.dwz/<package>-<version>.<arch>`: what follows `.dwz/`,
    // then the bare file name.
    let mut tails: Vec<&str> = Vec::new();
    if let Some((_, tail)) = name
        .rsplit_once("/.dwz/")
        .or_else(|| name.split_once(".dwz/"))
    {
        tails.push(tail);
    }
    if let Some(base) = name.rsplit('/').next().filter(|b| !b.is_empty()) {
        tails.push(base);
    }
    for dir in &dirs {
        for tail in &tails {
            if let Some(found) = search.try_in(dir, &format!(".dwz/{tail}")) {
                return Ok((found, SupplementaryVia::DwzDir));
            }
        }
    }
    if let Some(index) = index.and_then(LazyIndex::get) {
        for path in index.files(&link.build_id) {
            if let Some(found) = search.try_path(path.clone()) {
                return Ok((found, SupplementaryVia::SearchPath));
            }
        }
    }
    if let Some(client) = &paths.debuginfod {
        let request = crate::debuginfod::Request {
            build_id: link.build_id.clone(),
            kind: crate::debuginfod::ArtifactKind::Debuginfo,
            label: format!("supplementary file {}", tails.last().copied().unwrap_or("")),
        };
        match client.fetch(&request) {
            Ok(fetched) => {
                if let Some(found) = search.try_path(fetched.path) {
                    return Ok((found, SupplementaryVia::Debuginfod));
                }
            }
            Err(e) => {
                search
                    .tried
                    .push(PathBuf::from(format!("debuginfod ({e})")));
            }
        }
    }
    Err(SupplementaryError::NotFound {
        name,
        build_id: id,
        tried: search.tried,
        rejected: search.rejected,
    })
}

/// Candidates looked at, and the build-id they must carry.
struct Search<'a> {
    want: &'a [u8],
    tried: Vec<PathBuf>,
    rejected: Vec<String>,
}

impl Search<'_> {
    /// The file at `path` inside `root` if it is the one wanted. A path
    /// that leads nowhere is noted as it would be inside `root`.
    fn try_in(&mut self, root: &Path, path: &str) -> Option<ElfImage> {
        match resolve_in_root(root, path) {
            Some(found) => self.try_path(found),
            None => {
                let shown = lexical_in_root(root, path);
                if !self.tried.contains(&shown) {
                    self.tried.push(shown);
                }
                None
            }
        }
    }

    /// The file at `path` if it is the one wanted; otherwise notes why not.
    fn try_path(&mut self, path: PathBuf) -> Option<ElfImage> {
        if self.tried.contains(&path) {
            return None;
        }
        self.tried.push(path.clone());
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(e) if is_not_regular(&e) => {
                self.rejected.push(format!("{}: {e}", path.display()));
                return None;
            }
            Err(_) => return None,
        };
        let Some(image) = ElfImage::map(&path, &file) else {
            self.rejected
                .push(format!("{}: not an ELF file", path.display()));
            return None;
        };
        let ids = image.supplementary_ids();
        if ids.iter().any(|id| id == self.want) {
            return Some(image);
        }
        let has = match ids.first() {
            Some(id) => format!("build-id {}", hex(id)),
            None => "no build-id".into(),
        };
        self.rejected.push(format!(
            "{}: {has}, not {} as the link says",
            path.display(),
            hex(self.want)
        ));
        None
    }
}

/// `path` inside `root` as [`resolve_in_root`] takes it, without looking
/// at the file system (`..` stops at the root): how a candidate that does
/// not exist is named.
fn lexical_in_root(root: &Path, path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

/// The tree that holds `debug_file`, and the relative `name` from the
/// file's folder as a path inside it: the sysroot when the file is inside
/// it (the host root without one), else the debug directory or search path
/// it was found under, else its own folder. Resolved with
/// [`resolve_in_root`], `..` never climbs out of that tree.
fn beside(paths: &SearchPaths, debug_file: &Path, name: &str) -> Option<(PathBuf, String)> {
    let file = std::path::absolute(debug_file).ok()?;
    let folder = file.parent()?;
    let absolute = |p: &Path| std::path::absolute(p).ok();
    let root = absolute(paths.root())
        .filter(|r| folder.starts_with(r))
        .or_else(|| {
            paths
                .debug_dirs
                .iter()
                .chain(&paths.search_paths)
                .filter_map(|d| absolute(d))
                .filter(|d| folder.starts_with(d))
                .max_by_key(|d| d.components().count())
        })
        .unwrap_or_else(|| folder.to_path_buf());
    let inside = folder.strip_prefix(&root).ok()?;
    let path = format!("/{}/{name}", inside.display());
    Some((root, path))
}

/// Find and attach the supplementary file of a module's debug file (from
/// the host's search paths or the bundle), saying in `diagnostics` when
/// its DWARF is incomplete. `None` status when the file needs none.
pub(super) fn attach(
    files: &Files,
    debug: Option<ElfImage>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<ElfImage>, Option<SupplementaryStatus>) {
    let Some(debug) = debug else {
        return (None, None);
    };
    if !debug.has_dwarf() {
        return (Some(debug), None);
    }
    let link = match debug.supplementary_link() {
        Ok(Some(link)) => link,
        Ok(None) => return (Some(debug), None),
        Err(e) => {
            let reason = format!(
                "{}: its link to a supplementary file is unreadable ({e}): {INCOMPLETE}",
                debug.path().display()
            );
            diagnostics.push(Diagnostic::warning(DiagnosticSource::Modules, &reason));
            let status = SupplementaryStatus::Missing {
                name: None,
                build_id: None,
                reason,
            };
            return (Some(debug), Some(status));
        }
    };
    let found = match files {
        Files::Host(paths, index) => {
            find_supplementary_file(paths, Some(index), &link, debug.path())
        }
        Files::Bundle(bundle) => bundle
            .debug_file(&link.build_id)
            .filter(|image| image.supplementary_ids().contains(&link.build_id))
            .map(|image| (image, SupplementaryVia::Bundle))
            .ok_or_else(|| SupplementaryError::NotFound {
                name: link.name_lossy(),
                build_id: hex(&link.build_id),
                tried: vec![bundle.label("debug/")],
                rejected: Vec::new(),
            }),
    };
    finish(debug, &link, found, diagnostics)
}

/// The supplementary file of a debug file found outside a module set (the
/// `layout` command's binary), looked for on the host's search paths only.
pub fn with_supplementary_file(
    paths: &SearchPaths,
    debug: ElfImage,
) -> (ElfImage, Option<SupplementaryStatus>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let index = LazyIndex::new(&paths.search_paths);
    let (image, status) = attach(
        &Files::Host(paths, &index),
        Some(debug.clone()),
        &mut diagnostics,
    );
    (image.unwrap_or(debug), status, diagnostics)
}

/// What a missing supplementary file means, and where to get it.
const INCOMPLETE: &str = "the DWARF is incomplete: the types, function names and strings \
    dwz moved into the supplementary file cannot be read, so layouts are not taken from it \
    and inlined frames may go unnamed. Install the debug package that ships it (its .dwz file, \
    e.g. under /usr/lib/debug/.dwz/), or put it under a --debug-dir as .build-id/xx/<rest>.debug \
    or .dwz/<name>";

fn finish(
    debug: ElfImage,
    link: &SupplementaryLink,
    found: Result<(ElfImage, SupplementaryVia), SupplementaryError>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<ElfImage>, Option<SupplementaryStatus>) {
    match found {
        Ok((sup, via)) => {
            let status = SupplementaryStatus::Found {
                path: sup.path().to_path_buf(),
                build_id: hex(&link.build_id),
                link: link.kind,
                via,
            };
            (Some(debug.with_supplementary(sup)), Some(status))
        }
        Err(e) => {
            let SupplementaryError::NotFound { rejected, .. } = &e;
            for why in rejected {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticSource::Modules,
                    format!(
                        "{}: supplementary file candidate rejected: {why}",
                        debug.path().display()
                    ),
                ));
            }
            let reason = format!("{}: {e}: {INCOMPLETE}", debug.path().display());
            diagnostics.push(Diagnostic::warning(DiagnosticSource::Modules, &reason));
            let status = SupplementaryStatus::Missing {
                name: Some(link.name_lossy()),
                build_id: Some(hex(&link.build_id)),
                reason,
            };
            (Some(debug), Some(status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_stay_inside_the_sysroot() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let debug_dir = root_path.join("usr/lib/debug");
        std::fs::create_dir_all(debug_dir.join(".build-id/ab")).unwrap();
        std::fs::create_dir_all(debug_dir.join(".dwz")).unwrap();
        std::fs::write(debug_dir.join(".dwz/common.debug"), b"x").unwrap();
        let paths = SearchPaths {
            sysroot: Some(root_path.clone()),
            ..SearchPaths::default()
        };
        let debug_file = debug_dir.join(".build-id/ab/cdef.debug");
        let resolve = |name: &str| {
            let (root, path) = beside(&paths, &debug_file, name).unwrap();
            assert_eq!(root, root_path);
            (resolve_in_root(&root, &path), lexical_in_root(&root, &path))
        };
        assert_eq!(
            resolve("../../.dwz/common.debug").0,
            Some(debug_dir.join(".dwz/common.debug"))
        );
        // Climbing past the root stops at the root: /etc/passwd of the host is never reached.
        let (found, shown) = resolve("../../../../../../../../../../etc/passwd");
        assert_eq!(found, None);
        assert_eq!(shown, root_path.join("etc/passwd"));
    }
}
