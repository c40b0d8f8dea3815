//! An ELF file on disk (or an in-memory image such as the vDSO), mapped and
//! queried lazily: build-id, debug link, sections, load addresses.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use object::read::elf::ElfFile64;
use object::{Object, ObjectSection};
use serde::Serialize;

use super::headers::{FileHeader, ProgramHeaders};
use crate::regular_file::open_regular;

/// Bytes of an ELF image: a file map or an owned buffer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ImageBytes {
    /// A mapped file.
    Mapped(Arc<Mmap>),
    /// Bytes copied out of the core (the vDSO).
    Owned(Arc<[u8]>),
    /// A range of a map shared with other images (a member of a bundle).
    Shared(Arc<Mmap>, std::ops::Range<usize>),
}

impl Deref for ImageBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ImageBytes::Mapped(m) => m,
            ImageBytes::Owned(b) => b,
            ImageBytes::Shared(m, range) => m.get(range.clone()).unwrap_or(&[]),
        }
    }
}

/// How a section's contents are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SectionCompression {
    /// Stored as is.
    None,
    /// `SHF_COMPRESSED` with zlib.
    Zlib,
    /// `SHF_COMPRESSED` with zstd.
    Zstd,
    /// Old GNU `.zdebug_*` sections.
    GnuZlib,
}

/// A parsed-on-demand ELF image.
#[derive(Debug, Clone)]
pub struct ElfImage {
    path: PathBuf,
    bytes: ImageBytes,
    /// The supplementary file (dwz) its DWARF refers to, once found.
    supplementary: Option<Arc<ElfImage>>,
}

impl ElfImage {
    /// Map the file at `path`; `None` if it cannot be opened, is not a
    /// regular file or is not ELF.
    pub fn open(path: &Path) -> Option<ElfImage> {
        let file = open_regular(path).ok()?;
        Self::map(path, &file)
    }

    /// Map the already opened regular `file`, read from `path`.
    pub fn map(path: &Path, file: &std::fs::File) -> Option<ElfImage> {
        let map = crate::mapped_file::map_read_only(path, file).ok()?;
        let image = ElfImage {
            path: path.to_path_buf(),
            bytes: ImageBytes::Mapped(Arc::new(map)),
            supplementary: None,
        };
        if image.parse().is_some() {
            Some(image)
        } else {
            None
        }
    }

    /// An image held in memory, e.g. the vDSO copied from the core.
    pub fn from_bytes(label: &str, bytes: Vec<u8>) -> Option<ElfImage> {
        let image = ElfImage {
            path: PathBuf::from(label),
            bytes: ImageBytes::Owned(bytes.into()),
            supplementary: None,
        };
        if image.parse().is_some() {
            Some(image)
        } else {
            None
        }
    }

    /// The image at `range` of `map` (a member of a bundle), named `label`;
    /// `None` if it is not ELF.
    pub fn from_shared(
        label: impl Into<PathBuf>,
        map: Arc<Mmap>,
        range: std::ops::Range<usize>,
    ) -> Option<ElfImage> {
        let image = ElfImage {
            path: label.into(),
            bytes: ImageBytes::Shared(map, range),
            supplementary: None,
        };
        image.parse().is_some().then_some(image)
    }

    /// Where the image came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &ImageBytes {
        &self.bytes
    }

    /// This (debug) file with the supplementary file its DWARF refers to
    /// (see [`ElfImage::supplementary_link`]): every DWARF reader then
    /// follows references and reads strings into it.
    pub fn with_supplementary(mut self, supplementary: ElfImage) -> ElfImage {
        self.supplementary = Some(Arc::new(supplementary));
        self
    }

    /// The supplementary file attached with [`ElfImage::with_supplementary`].
    pub fn supplementary(&self) -> Option<&ElfImage> {
        self.supplementary.as_deref()
    }

    /// Whether the image is a file's bytes (mapped, or a member of a
    /// mapped bundle), which can stand in for pages a core lacks.
    pub fn is_file(&self) -> bool {
        !matches!(self.bytes, ImageBytes::Owned(_))
    }

    /// Parse the image with `object`. Cheap: headers only.
    pub fn parse(&self) -> Option<ElfFile64<'_>> {
        ElfFile64::parse(&*self.bytes).ok()
    }

    /// The GNU build-id.
    pub fn build_id(&self) -> Option<Vec<u8>> {
        self.parse()?.build_id().ok().flatten().map(<[u8]>::to_vec)
    }

    /// The `.gnu_debuglink` file name and CRC.
    pub fn debuglink(&self) -> Option<(String, u32)> {
        let file = self.parse()?;
        let (name, crc) = file.gnu_debuglink().ok().flatten()?;
        Some((String::from_utf8_lossy(name).into_owned(), crc))
    }

    /// The file header and program headers, parsed as a core's are
    /// ([`super::headers`]), so that the two can be compared.
    pub fn headers(&self) -> Option<(FileHeader, ProgramHeaders)> {
        let header = FileHeader::parse(&self.bytes)?;
        let table = header
            .program_header_table()
            .and_then(|(offset, len)| self.file_bytes(offset, len))
            .map(ProgramHeaders::parse)
            .unwrap_or_default();
        Some((header, table))
    }

    /// The `len` bytes at file offset `offset`, when the file holds them.
    pub fn file_bytes(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }

    /// Lowest `PT_LOAD` virtual address, page-aligned down.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.headers()?.1.first_load_vaddr()
    }

    /// The writable `PT_LOAD` segments (data and bss), link-time
    /// `(start, size)`.
    pub fn writable_loads(&self) -> Vec<(u64, u64)> {
        let Some((_, phdrs)) = self.headers() else {
            return Vec::new();
        };
        phdrs
            .loads()
            .filter(|ph| ph.writable())
            .map(|ph| (ph.vaddr, ph.memsz))
            .collect()
    }

    /// Whether the image holds DWARF (`.debug_info` with real contents).
    pub fn has_dwarf(&self) -> bool {
        self.parse().is_some_and(|f| {
            f.section_by_name(".debug_info")
                .is_some_and(|s| s.kind() != object::SectionKind::UninitializedData && s.size() > 0)
        })
    }

    /// Whether this is a separate debug file: its `.text` takes no room in
    /// the file (`SHT_NOBITS`), so it cannot stand in for the module.
    pub fn is_debug_only(&self) -> bool {
        self.parse().is_some_and(|f| {
            f.section_by_name(".text")
                .is_some_and(|s| s.kind() == object::SectionKind::UninitializedData)
        })
    }

    /// Whether the image has a `.symtab`.
    pub fn has_symtab(&self) -> bool {
        self.parse()
            .is_some_and(|f| !f.elf_symbol_table().is_empty())
    }

    /// How `.debug_info` is compressed.
    pub fn debug_compression(&self) -> SectionCompression {
        let Some(file) = self.parse() else {
            return SectionCompression::None;
        };
        let Some(section) = file.section_by_name(".debug_info") else {
            return SectionCompression::None;
        };
        if section.name().is_ok_and(|n| n.starts_with(".zdebug")) {
            return SectionCompression::GnuZlib;
        }
        match section.compressed_file_range().map(|r| r.format) {
            Ok(object::CompressionFormat::Zlib) => SectionCompression::Zlib,
            Ok(object::CompressionFormat::Zstandard) => SectionCompression::Zstd,
            _ => SectionCompression::None,
        }
    }

    /// Whether the image has a section called `name`.
    pub fn has_section(&self, name: &str) -> bool {
        self.parse()
            .is_some_and(|f| f.section_by_name(name).is_some())
    }

    /// A section's contents, decompressed within bounds if needed; `Ok(None)`
    /// when the image has no such section.
    pub fn section_data(
        &self,
        name: &str,
    ) -> Result<Option<std::borrow::Cow<'_, [u8]>>, super::SectionError> {
        let mut room = super::section_data::MAX_SECTION_SIZE;
        self.section_data_within(name, &mut room)
    }

    /// As [`ElfImage::section_data`], for sections loaded together: what a
    /// compressed one decompresses to is taken out of `remaining`.
    pub fn section_data_within(
        &self,
        name: &str,
        remaining: &mut u64,
    ) -> Result<Option<std::borrow::Cow<'_, [u8]>>, super::SectionError> {
        let Some(file) = self.parse() else {
            return Ok(None);
        };
        let Some(section) = file.section_by_name(name) else {
            return Ok(None);
        };
        super::section_data::bounded_data_within(name, &section, remaining).map(Some)
    }

    /// Read `len` bytes at link-time address `address` from the file's sections.
    pub fn read_at_address(&self, address: u64, len: u64) -> Option<Vec<u8>> {
        let file = self.parse()?;
        file.sections()
            .filter(|s| s.kind() != object::SectionKind::UninitializedData)
            .find_map(|s| s.data_range(address, len).ok().flatten())
            .map(<[u8]>::to_vec)
    }

    /// The ELF type (`ET_EXEC`, `ET_DYN`, ...).
    pub fn elf_type(&self) -> Option<u16> {
        Some(FileHeader::parse(&self.bytes)?.e_type)
    }
}
