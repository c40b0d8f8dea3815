//! The ELF file header and program headers of a 64-bit little-endian image,
//! parsed from bytes wherever they were read: a module's first page in a
//! core, the table the auxiliary vector's `AT_PHDR` points at, or a
//! module's file. One parser, so that what the core and a file say about a
//! module can be compared field by field.
//!
//! The bytes are hostile: a header that does not parse is `None`, counts
//! are capped, and arithmetic on the values saturates.

/// Bytes of an ELF64 file header.
pub const FILE_HEADER_SIZE: usize = 64;
/// Bytes of an ELF64 program header.
pub const PROGRAM_HEADER_SIZE: u64 = 56;
/// Program headers read from one table, at most: real images have a dozen.
pub const MAX_PROGRAM_HEADERS: u64 = 256;
/// The page size the load addresses are aligned to when a module's base is
/// derived from them.
const PAGE: u64 = 4096;

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_DYNAMIC`.
pub const PT_DYNAMIC: u32 = 2;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// `PT_PHDR`.
pub const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The fields of an ELF64 file header that locate its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// `e_type`: `ET_EXEC` (2), `ET_DYN` (3), ...
    pub e_type: u16,
    /// `e_entry`: the link-time entry point.
    pub entry: u64,
    /// `e_phoff`: file offset of the program headers.
    pub phoff: u64,
    /// `e_phentsize`.
    pub phentsize: u16,
    /// `e_phnum`.
    pub phnum: u16,
    /// `e_shoff`: file offset of the section headers.
    pub shoff: u64,
    /// `e_shentsize`.
    pub shentsize: u16,
    /// `e_shnum`.
    pub shnum: u16,
}

impl FileHeader {
    /// The header at the start of `bytes`; `None` unless they begin with
    /// the ELF magic of a 64-bit little-endian image.
    pub fn parse(bytes: &[u8]) -> Option<FileHeader> {
        let b = bytes.get(..FILE_HEADER_SIZE)?;
        if b[..4] != *b"\x7fELF" || b[4] != 2 || b[5] != 1 {
            return None;
        }
        Some(FileHeader {
            e_type: u16_at(b, 16),
            entry: u64_at(b, 24),
            phoff: u64_at(b, 32),
            phentsize: u16_at(b, 54),
            phnum: u16_at(b, 56),
            shoff: u64_at(b, 40),
            shentsize: u16_at(b, 58),
            shnum: u16_at(b, 60),
        })
    }

    /// The program header table: its offset from the header and its length
    /// in bytes, at most [`MAX_PROGRAM_HEADERS`] entries; `None` when the
    /// entries are not ELF64's 56 bytes.
    pub fn program_header_table(&self) -> Option<(u64, u64)> {
        (u64::from(self.phentsize) == PROGRAM_HEADER_SIZE).then(|| {
            let count = u64::from(self.phnum).min(MAX_PROGRAM_HEADERS);
            (self.phoff, count * PROGRAM_HEADER_SIZE)
        })
    }

    /// The offset one past the section header table.
    pub fn section_headers_end(&self) -> u64 {
        self.shoff
            .saturating_add(u64::from(self.shentsize).saturating_mul(u64::from(self.shnum)))
    }
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_offset`: where its bytes are in the file.
    pub offset: u64,
    /// `p_vaddr`: its link-time address.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

impl ProgramHeader {
    /// `PF_W`: the process could change its bytes.
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }

    /// `PF_X`.
    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

/// A program header table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramHeaders(Vec<ProgramHeader>);

impl ProgramHeaders {
    /// Every whole 56-byte entry of `table`, at most [`MAX_PROGRAM_HEADERS`].
    pub fn parse(table: &[u8]) -> ProgramHeaders {
        ProgramHeaders(
            table
                .chunks_exact(PROGRAM_HEADER_SIZE as usize)
                .take(MAX_PROGRAM_HEADERS as usize)
                .map(|ph| ProgramHeader {
                    p_type: u32_at(ph, 0),
                    flags: u32_at(ph, 4),
                    offset: u64_at(ph, 8),
                    vaddr: u64_at(ph, 16),
                    filesz: u64_at(ph, 32),
                    memsz: u64_at(ph, 40),
                })
                .collect(),
        )
    }

    /// Every header, in table order.
    pub fn all(&self) -> &[ProgramHeader] {
        &self.0
    }

    /// The headers of type `p_type`, in table order.
    pub fn of_type(&self, p_type: u32) -> impl Iterator<Item = &ProgramHeader> + '_ {
        self.0.iter().filter(move |ph| ph.p_type == p_type)
    }

    /// The `PT_LOAD`s.
    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> + '_ {
        self.of_type(PT_LOAD)
    }

    /// The first header of type `p_type`.
    pub fn first(&self, p_type: u32) -> Option<&ProgramHeader> {
        self.of_type(p_type).next()
    }

    /// The lowest `PT_LOAD` address, page-aligned down: where the image's
    /// mapping starts, less the load bias.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.loads().map(|l| l.vaddr & !(PAGE - 1)).min()
    }

    /// Bytes from [`ProgramHeaders::first_load_vaddr`] to the end of the
    /// last `PT_LOAD`'s memory (`.bss` included); 0 without a `PT_LOAD`.
    pub fn load_extent(&self) -> u64 {
        let Some(first) = self.first_load_vaddr() else {
            return 0;
        };
        self.loads()
            .map(|l| l.vaddr.saturating_add(l.memsz.max(l.filesz)))
            .max()
            .unwrap_or(first)
            .saturating_sub(first)
    }

    /// The link-time address of the byte at file `offset`, when a
    /// `PT_LOAD` maps it.
    pub fn vaddr_of_offset(&self, offset: u64) -> Option<u64> {
        self.loads().find_map(|l| {
            let within = offset.checked_sub(l.offset)?;
            (within < l.filesz).then(|| l.vaddr.wrapping_add(within))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(phentsize: u16, phnum: u16) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x1040u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[40..48].copy_from_slice(&0x9000u64.to_le_bytes());
        b[54..56].copy_from_slice(&phentsize.to_le_bytes());
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&10u16.to_le_bytes());
        b
    }

    fn entry(p_type: u32, flags: u32, offset: u64, vaddr: u64, size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 56];
        b[..4].copy_from_slice(&p_type.to_le_bytes());
        b[4..8].copy_from_slice(&flags.to_le_bytes());
        b[8..16].copy_from_slice(&offset.to_le_bytes());
        b[16..24].copy_from_slice(&vaddr.to_le_bytes());
        b[32..40].copy_from_slice(&size.to_le_bytes());
        b[40..48].copy_from_slice(&size.to_le_bytes());
        b
    }

    #[test]
    fn the_file_header_locates_the_tables() {
        let h = FileHeader::parse(&header(56, 3)).unwrap();
        assert_eq!((h.e_type, h.entry), (3, 0x1040));
        assert_eq!(h.program_header_table(), Some((64, 3 * 56)));
        assert_eq!(h.section_headers_end(), 0x9000 + 640);
        // Other entry sizes are not understood; counts are capped.
        assert_eq!(
            FileHeader::parse(&header(32, 3))
                .unwrap()
                .program_header_table(),
            None
        );
        let many = FileHeader::parse(&header(56, u16::MAX)).unwrap();
        assert_eq!(
            many.program_header_table(),
            Some((64, MAX_PROGRAM_HEADERS * 56))
        );
        // Not ELF, 32-bit, big-endian, short.
        let mut b = header(56, 3);
        b[4] = 1;
        assert_eq!(FileHeader::parse(&b), None);
        b[4] = 2;
        b[5] = 2;
        assert_eq!(FileHeader::parse(&b), None);
        assert_eq!(FileHeader::parse(&header(56, 3)[..63]), None);
        assert_eq!(FileHeader::parse(&[0u8; 64]), None);
    }

    #[test]
    fn program_headers_give_loads_extent_and_addresses() {
        let mut table = Vec::new();
        table.extend(entry(PT_PHDR, 4, 64, 0x40, 0x118));
        table.extend(entry(PT_LOAD, 5, 0, 0, 0x2345));
        table.extend(entry(PT_LOAD, 6, 0x2e10, 0x3e10, 0x400));
        table.extend(entry(PT_DYNAMIC, 6, 0x2f00, 0x3f00, 0x100));
        table.extend([0u8; 20]); // a partial entry is not read
        let phdrs = ProgramHeaders::parse(&table);
        assert_eq!(phdrs.all().len(), 4);
        assert_eq!(phdrs.loads().count(), 2);
        assert_eq!(phdrs.first(PT_DYNAMIC).map(|d| d.vaddr), Some(0x3f00));
        assert!(phdrs.first(PT_NOTE).is_none());
        assert_eq!(phdrs.first_load_vaddr(), Some(0));
        assert_eq!(phdrs.load_extent(), 0x4210);
        assert!(phdrs.loads().nth(1).unwrap().writable());
        assert!(phdrs.loads().next().unwrap().executable());
        assert_eq!(phdrs.vaddr_of_offset(64), Some(64));
        assert_eq!(phdrs.vaddr_of_offset(0x2e20), Some(0x3e20));
        assert_eq!(phdrs.vaddr_of_offset(0x2800), None);
        // Hostile sizes saturate.
        let huge = ProgramHeaders::parse(&entry(PT_LOAD, 4, 0, u64::MAX - 1, u64::MAX));
        assert_eq!(huge.load_extent(), PAGE - 1);
        assert_eq!(ProgramHeaders::default().load_extent(), 0);
    }
}
