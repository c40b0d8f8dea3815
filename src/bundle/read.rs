//! Reading a bundle: detected by content, decompressed into an unnamed temp
//! file, mapped once; the core and every file are slices of that map.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::tar::{self, Kind, Stop};
use super::{FORMAT, MANIFEST_NAME, MAX_MANIFEST_SIZE, Manifest, MemberName, VERSION};
use crate::corefile::OpenError;
use crate::corefile::compressed::{self, Format};
use crate::corefile::{CoreFile, OpenOptions};
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::elf::ElfImage;

/// Whether the file at `path` is a bundle: a zstd stream whose first tar
/// member is the manifest. Reads one block; never blocks on a FIFO.
pub fn is_bundle(path: &Path) -> bool {
    let Ok(mut file) = crate::regular_file::open_regular(path) else {
        return false;
    };
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err()
        || compressed::detect(&magic) != Some(Format::Zstd)
        || std::io::Seek::rewind(&mut file).is_err()
    {
        return false;
    }
    let Ok(mut decoder) = zstd::stream::read::Decoder::new(file) else {
        return false;
    };
    let mut header = [0u8; tar::BLOCK];
    if decoder.read_exact(&mut header).is_err() {
        return false;
    }
    let (members, _) = tar::members(&header);
    members
        .first()
        .is_some_and(|m| m.name == MANIFEST_NAME && m.kind == Kind::File)
}

/// An opened bundle.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    map: Arc<Mmap>,
    manifest: Manifest,
    core: Range<usize>,
    /// Module files and debug files by build-id: member name and bytes.
    files: HashMap<Vec<u8>, (String, Range<usize>)>,
    debug_files: HashMap<Vec<u8>, (String, Range<usize>)>,
    diagnostics: Vec<Diagnostic>,
}

impl Bundle {
    /// Decompress the bundle at `path` into `options.temp_dir` (an unnamed
    /// file, gone with the process) and index its members.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<Bundle, OpenError> {
        let mut diagnostics = Vec::new();
        let map = compressed::decompress(path, Format::Zstd, options, &mut diagnostics)?.map;
        Self::from_map(path, Arc::new(map), diagnostics)
    }

    fn from_map(
        path: &Path,
        map: Arc<Mmap>,
        mut diagnostics: Vec<Diagnostic>,
    ) -> Result<Bundle, OpenError> {
        let invalid = |reason: String| OpenError::Bundle {
            path: path.into(),
            reason,
        };
        let (members, stop) = tar::members(&map);
        let first = members
            .first()
            .ok_or_else(|| invalid("the archive holds no member".into()))?;
        if first.name != MANIFEST_NAME || first.kind != Kind::File {
            return Err(invalid(format!(
                "its first member is {:?}, not {MANIFEST_NAME}",
                first.name
            )));
        }
        if first.len > MAX_MANIFEST_SIZE || first.len as u64 != first.declared {
            return Err(invalid(format!(
                "the manifest is cut short or larger than {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&map[first.offset..][..first.len])
            .map_err(|e| invalid(format!("the manifest is not valid: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(invalid(format!(
                "format {:?} version {}: this pymortem reads {FORMAT} version {VERSION}",
                manifest.format, manifest.version
            )));
        }
        let note = |diagnostics: &mut Vec<Diagnostic>, message: String| {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Bundle,
                format!("{}: {message}", path.display()),
            ));
        };
        match &stop {
            Stop::End => {}
            Stop::Truncated => note(
                &mut diagnostics,
                "the archive ends early: what it holds is used, the rest is missing".into(),
            ),
            Stop::BadHeader { at, reason } => note(
                &mut diagnostics,
                format!(
                    "the archive is damaged (at byte {at}: {reason}): the members before it are used"
                ),
            ),
            Stop::TooMany => note(
                &mut diagnostics,
                format!(
                    "more than {} members: the rest are ignored",
                    tar::MAX_MEMBERS
                ),
            ),
        }
        let mut core = None;
        let mut files = HashMap::new();
        let mut debug_files = HashMap::new();
        for member in &members[1..] {
            let shown = shown(&member.name);
            if member.kind != Kind::File {
                note(
                    &mut diagnostics,
                    format!(
                        "member {shown} is {}: ignored, a bundle holds regular files only",
                        kind_name(member.kind)
                    ),
                );
                continue;
            }
            let range = member.offset..member.offset + member.len;
            if member.len as u64 != member.declared {
                note(
                    &mut diagnostics,
                    format!(
                        "member {shown} is cut short: {} of its {} bytes are in the archive",
                        member.len, member.declared
                    ),
                );
            }
            let slot = match super::parse_member_name(&member.name) {
                Some(MemberName::Core) => {
                    core.get_or_insert(range.clone());
                    continue;
                }
                Some(MemberName::File(id)) => files.entry(id),
                Some(MemberName::Debug(id)) => debug_files.entry(id),
                Some(MemberName::Manifest) | None => {
                    note(
                        &mut diagnostics,
                        format!("member {shown} is not part of the bundle layout: ignored"),
                    );
                    continue;
                }
            };
            match slot {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((member.name.clone(), range));
                }
                std::collections::hash_map::Entry::Occupied(_) => note(
                    &mut diagnostics,
                    format!("member {shown} repeats a build-id: ignored"),
                ),
            }
        }
        let core = core.ok_or_else(|| invalid("the archive holds no core member".into()))?;
        for entry in &manifest.files {
            let present = match super::parse_member_name(&entry.member) {
                Some(MemberName::File(id)) => files.contains_key(&id),
                Some(MemberName::Debug(id)) => debug_files.contains_key(&id),
                _ => false,
            };
            if !present {
                note(
                    &mut diagnostics,
                    format!(
                        "{} ({}) is listed in the manifest but not in the archive",
                        shown(&entry.member),
                        entry.path
                    ),
                );
            }
        }
        Ok(Bundle {
            path: path.into(),
            map,
            manifest,
            core,
            files,
            debug_files,
            diagnostics,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What was wrong with the archive without stopping its use.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The core it holds, named after the bundle.
    pub fn core_file(&self) -> Result<CoreFile, OpenError> {
        CoreFile::from_shared(
            &self.path,
            Arc::clone(&self.map),
            self.core.clone(),
            Some(Format::Zstd.name()),
            self.diagnostics.clone(),
        )
    }

    /// The module file stored for `build_id`, if it is ELF.
    pub fn module_file(&self, build_id: &[u8]) -> Option<ElfImage> {
        let (name, range) = self.files.get(build_id)?;
        self.image(name, range)
    }

    /// The debug file stored for `build_id`, if it is ELF.
    pub fn debug_file(&self, build_id: &[u8]) -> Option<ElfImage> {
        let (name, range) = self.debug_files.get(build_id)?;
        self.image(name, range)
    }

    /// The bundle file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a member is said to come from: `BUNDLE:MEMBER`.
    pub fn label(&self, member: &str) -> PathBuf {
        PathBuf::from(format!("{}:{member}", self.path.display()))
    }

    fn image(&self, member: &str, range: &Range<usize>) -> Option<ElfImage> {
        ElfImage::from_shared(self.label(member), Arc::clone(&self.map), range.clone())
    }
}

/// A member name as a message shows it: quoted, so `../x` reads as a name.
fn shown(name: &str) -> String {
    format!("{name:?}")
}

fn kind_name(kind: Kind) -> String {
    match kind {
        Kind::File => "a file".into(),
        Kind::HardLink => "a hard link".into(),
        Kind::SymLink => "a symlink".into(),
        Kind::Folder => "a folder".into(),
        Kind::Other(flag) => format!("of tar type {:?}", flag as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
        tar::write_header(out, name, bytes.len() as u64).unwrap();
        out.extend_from_slice(bytes);
        out.extend_from_slice(tar::padding(bytes.len() as u64));
    }

    fn small_bundle() -> Vec<u8> {
        let manifest = serde_json::json!({
            "format": FORMAT, "version": VERSION, "created_by": "test",
            "core": {"name": "c", "member": "core", "size": 4, "sha256": ""},
            "files": [{"member": "files/abcd/x", "role": "library", "path": "/x",
                       "found_at": "/x", "build_id": "abcd", "size": 3, "sha256": ""}],
            "omitted": [],
        });
        let mut out = Vec::new();
        member(
            &mut out,
            MANIFEST_NAME,
            &serde_json::to_vec(&manifest).unwrap(),
        );
        member(&mut out, "core", b"\x7fELF");
        member(&mut out, "files/abcd/x", b"lib");
        member(&mut out, "debug/abcd.debug", b"dbg");
        tar::write_end(&mut out).unwrap();
        out
    }

    fn open(bytes: &[u8]) -> Result<Bundle, OpenError> {
        let mut map = memmap2::MmapMut::map_anon(bytes.len().max(1)).unwrap();
        map[..bytes.len()].copy_from_slice(bytes);
        let map = map.make_read_only().unwrap();
        Bundle::from_map(Path::new("test.pymortem"), Arc::new(map), Vec::new())
    }

    #[test]
    fn members_are_indexed_by_build_id() {
        let bundle = open(&small_bundle()).unwrap();
        assert_eq!(&bundle.map[bundle.core.clone()], b"\x7fELF");
        assert!(bundle.files.contains_key(&vec![0xab, 0xcd]));
        assert!(bundle.debug_files.contains_key(&vec![0xab, 0xcd]));
        assert!(bundle.diagnostics.is_empty(), "{:?}", bundle.diagnostics);
    }

    #[test]
    fn damaged_bundles_never_panic() {
        let good = small_bundle();
        // Every cut, and a byte flipped at every position.
        for cut in 0..good.len() {
            let _ = open(&good[..cut]);
        }
        for at in 0..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                let _ = open(&bad);
            }
        }
    }
}
