//! Source lines and inlined functions for code addresses, with addr2line
//! over the module's DWARF (parsed lazily, unit by unit, as lookups need).

use std::sync::Arc;

use std::borrow::Cow;

use gimli::{EndianReader, LittleEndian};
use serde::Serialize;

use super::{Sections, load_sections};
use crate::elf::{ElfImage, ImageBytes};

/// Frames reported for one address, at most (inlining is rarely deeper).
const MAX_INLINE_DEPTH: usize = 64;

/// A section's bytes: a range of the mapped file when stored uncompressed,
/// else the decompressed copy. Either way cloning is an `Arc` count, and the
/// bytes never move.
#[derive(Clone)]
enum SectionBytes {
    InImage(ImageBytes, std::ops::Range<usize>),
    Decompressed(Arc<[u8]>),
}

impl std::ops::Deref for SectionBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            SectionBytes::InImage(image, range) => image.get(range.clone()).unwrap_or(&[]),
            SectionBytes::Decompressed(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for SectionBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SectionBytes({} bytes)", self.len())
    }
}

// SAFETY: the bytes live in an `Arc`ed map or buffer that is never mutated
// or moved while any clone exists, so derefs stay valid and equal across
// moves and clones, as gimli's reader requires.
unsafe impl gimli::StableDeref for SectionBytes {}
// SAFETY: as above; a clone shares the same `Arc`.
unsafe impl gimli::CloneStableDeref for SectionBytes {}

type Reader = EndianReader<LittleEndian, SectionBytes>;

/// One function at an address: the innermost inlined one first, the
/// function that holds the code last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFrame {
    /// The function's name, as DWARF gives it.
    pub function: Option<String>,
    /// The source file.
    pub file: Option<String>,
    /// The line.
    pub line: Option<u32>,
}

/// `image`'s DWARF over `sections` (loaded from it), copying no section
/// stored as is.
fn dwarf_of(image: &ElfImage, sections: &Sections<'_>) -> gimli::Dwarf<Reader> {
    let whole: &[u8] = image.bytes();
    let mut dwarf = gimli::Dwarf::load(|id| {
        let bytes = match sections.get(id.name()) {
            // A section stored as is lies inside the map: keep its range, copy nothing.
            Some(Cow::Borrowed(slice)) => {
                let start = (slice.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
                match whole.get(start..start.wrapping_add(slice.len())) {
                    Some(_) => {
                        SectionBytes::InImage(image.bytes().clone(), start..start + slice.len())
                    }
                    None => SectionBytes::Decompressed(Arc::from(*slice)),
                }
            }
            Some(Cow::Owned(data)) => SectionBytes::Decompressed(Arc::from(&data[..])),
            None => SectionBytes::Decompressed(Arc::from(&[][..])),
        };
        Ok::<_, std::convert::Infallible>(EndianReader::new(bytes, LittleEndian))
    })
    .unwrap_or_else(|never| match never {});
    // dwz's units share abbreviation tables: each is parsed once.
    dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
    dwarf
}

/// Line tables and inline trees of one image.
pub struct SourceLines {
    context: addr2line::Context<Reader>,
}

impl SourceLines {
    /// The source lines of `image`; `None` without DWARF or when it cannot be read.
    pub fn new(image: &ElfImage) -> Option<SourceLines> {
        if !image.has_dwarf() {
            return None;
        }
        let sections = load_sections(
            image,
            &[".debug_ranges", ".debug_rnglists", ".debug_aranges"],
        )
        .ok()?;
        let mut dwarf = dwarf_of(image, &sections.main);
        // References and strings into the supplementary file (dwz) resolve
        // there: addr2line names inlined functions through it.
        if let (Some(sup), Some(sup_sections)) = (image.supplementary(), &sections.sup) {
            dwarf.set_sup(dwarf_of(sup, sup_sections));
        }
        let context = addr2line::Context::from_dwarf(dwarf).ok()?;
        Some(SourceLines { context })
    }

    /// The calls recorded in the function whose code starts at `entry` (in
    /// the image, before load bias); empty when DWARF has none.
    pub fn call_sites(&self, entry: u64) -> Vec<super::CallSite> {
        let Some(unit) = self.context.find_dwarf_and_unit(entry).skip_all_loads() else {
            return Vec::new();
        };
        super::tail_calls::call_sites_in_unit(unit, entry).unwrap_or_default()
    }

    /// The functions at `address` (in the image, before load bias), the
    /// innermost inlined one first; empty when DWARF does not cover it.
    pub fn frames(&self, address: u64) -> Vec<SourceFrame> {
        let Ok(mut frames) = self.context.find_frames(address).skip_all_loads() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok(Some(frame)) = frames.next() {
            out.push(SourceFrame {
                function: frame
                    .function
                    .as_ref()
                    .and_then(|f| f.raw_name().ok().map(|n| n.into_owned())),
                file: frame
                    .location
                    .as_ref()
                    .and_then(|l| l.file.map(str::to_string)),
                line: frame.location.as_ref().and_then(|l| l.line),
            });
            if out.len() >= MAX_INLINE_DEPTH {
                break;
            }
        }
        out
    }
}
