//! Bundles: a core and the files it needs, in one archive that travels
//! (`pymortem bundle`, layout in `docs/bundle.md`). This module reads them;
//! [`bundler`](crate::bundler), above the process, writes them.
//!
//! A bundle is a zstd-compressed tar whose first member is the manifest
//! ([`MANIFEST_NAME`]), then the core, then every module file and debug file
//! stored under its build-id. Reading one decompresses it into an unnamed
//! temp file, as a compressed core is, maps it, and serves the core and each
//! file as a slice of that one map: nothing is extracted, and a name inside
//! the archive is never used as a host path. A bundle is a closed world:
//! the modules are looked up in it by build-id and nowhere else, so what it
//! shows does not depend on the machine it is read on.
//!
//! ```no_run
//! # fn main() -> Result<(), pymortem::Error> {
//! use std::path::Path;
//! use pymortem::{Options, Process};
//!
//! // Bundle a core from another machine whose files are under /srv/root ...
//! let core = Path::new("core.1234");
//! let process = Process::open(core, &Options::default().sysroot("/srv/root"))?;
//! let options = pymortem::bundler::BundleOptions::default();
//! let written = pymortem::bundler::create(&process, core, Path::new("crash.pymortem"), &options)?;
//! for omitted in &written.manifest.omitted {
//!     eprintln!("not included: {} ({})", omitted.path, omitted.reason);
//! }
//! // ... and open the bundle anywhere, with no sysroot.
//! let process = Process::open("crash.pymortem", &Options::default())?;
//! # Ok(()) }
//! ```

mod read;
pub mod tar;

use serde::{Deserialize, Serialize};

pub use read::{Bundle, is_bundle};

/// The first member's name.
pub const MANIFEST_NAME: &str = "pymortem-bundle.json";
/// The core's member name.
pub const CORE_MEMBER: &str = "core";
/// [`Manifest::format`].
pub const FORMAT: &str = "pymortem-bundle";
/// The layout version this build writes and reads.
pub const VERSION: u32 = 1;
/// A manifest larger than this is not read.
pub const MAX_MANIFEST_SIZE: usize = 16 << 20;

/// What a bundled file is to the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// The main program.
    Executable,
    /// A shared library (libpython, libc, an extension module).
    Library,
    /// A separate debug file for the module with the same build-id.
    DebugFile,
}

/// `pymortem-bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version, [`VERSION`].
    pub version: u32,
    /// The program that wrote it, `pymortem 0.1.0`.
    pub created_by: String,
    /// The core.
    pub core: CoreEntry,
    /// Every module file and debug file, in archive order.
    pub files: Vec<FileEntry>,
    /// What could not be included, and why.
    pub omitted: Vec<Omitted>,
}

/// The core in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreEntry {
    /// The core's file name where it was bundled (compressed cores are
    /// stored decompressed).
    pub name: String,
    /// Its member name, [`CORE_MEMBER`].
    pub member: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes, lower-case hex.
    pub sha256: String,
}

/// A module file or debug file in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its member name: `files/<build-id>/<file name>` or `debug/<build-id>.debug`.
    pub member: String,
    /// What it is.
    pub role: Role,
    /// The module's path as the core records it.
    pub path: String,
    /// Where it was found when the bundle was made.
    pub found_at: String,
    /// The module's build-id (the core's), lower-case hex.
    pub build_id: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// A file the bundle lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    /// The module's path as the core records it.
    pub path: String,
    /// What was left out.
    pub role: Role,
    /// Why.
    pub reason: String,
}

/// The member name of a module file.
pub fn file_member(build_id: &str, recorded_path: &str) -> String {
    let name = recorded_path.rsplit('/').next().unwrap_or("file");
    let name = if name.is_empty() || name == "." || name == ".." {
        "file"
    } else {
        name
    };
    // ustar's name field holds 100 bytes: a long name is cut on a char boundary.
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("files/{build_id}/{}", &name[..end])
}

/// The member name of a debug file.
pub fn debug_member(build_id: &str) -> String {
    format!("debug/{build_id}.debug")
}

/// What a member name means: the manifest, the core, a module file or a
/// debug file by build-id; `None` for any other name, which is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberName {
    Manifest,
    Core,
    File(Vec<u8>),
    Debug(Vec<u8>),
}

pub(crate) fn parse_member_name(name: &str) -> Option<MemberName> {
    match name {
        MANIFEST_NAME => return Some(MemberName::Manifest),
        CORE_MEMBER => return Some(MemberName::Core),
        _ => {}
    }
    if let Some(rest) = name.strip_prefix("files/") {
        let (id, file) = rest.split_once('/')?;
        let plain = !file.is_empty() && !file.contains('/') && file != "." && file != "..";
        return plain.then(|| parse_hex(id)).flatten().map(MemberName::File);
    }
    let id = name.strip_prefix("debug/")?.strip_suffix(".debug")?;
    parse_hex(id).map(MemberName::Debug)
}

/// A build-id in lower-case hex: 2 to 128 digits.
fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let ok = (2..=128).contains(&text.len())
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !ok {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_only_the_documented_forms() {
        assert_eq!(
            parse_member_name("files/c561/python3.11"),
            Some(MemberName::File(vec![0xc5, 0x61]))
        );
        assert_eq!(
            parse_member_name("debug/c561.debug"),
            Some(MemberName::Debug(vec![0xc5, 0x61]))
        );
        for hostile in [
            "../etc/passwd",
            "/etc/passwd",
            "files/c561/../../x",
            "files/c561/..",
            "files/../c561/x",
            "files/C561/x",
            "files/c56/x",
            "files/c561/a/b",
            "debug/../c561.debug",
            "core/x",
            "./core",
        ] {
            assert_eq!(parse_member_name(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn file_members_keep_the_name_short() {
        assert_eq!(
            file_member("ab", "/usr/lib/libc.so.6"),
            "files/ab/libc.so.6"
        );
        assert_eq!(file_member("ab", "/x/.."), "files/ab/file");
        let long = format!("/{}", "é".repeat(80));
        let member = file_member("ab", &long);
        assert!(member.len() <= "files/ab/".len() + 100);
        assert_eq!(
            parse_member_name(&member),
            Some(MemberName::File(vec![0xab]))
        );
    }
}
