//! MiniDebugInfo (Fedora, RHEL): a stripped binary's `.gnu_debugdata`
//! section holds an xz-compressed ELF whose `.symtab` lists the function
//! symbols `.dynsym` lacks, so that stacks have names without the debug
//! package. Decompressed within bounds: a hostile file may claim anything.

use std::io::Read;

use super::ElfImage;

/// The most a MiniDebugInfo ELF may decompress to (real ones are well under
/// a megabyte: a symbol table and little else).
pub const MAX_MINI_DEBUGINFO: u64 = 64 << 20;
/// The most memory the xz decoder may use (its dictionary).
const XZ_MEMORY_LIMIT: u64 = 64 << 20;

/// Why a `.gnu_debugdata` section gave no image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MiniDebugInfoError {
    /// The section could not be read from the file.
    #[error("its .gnu_debugdata section cannot be read: {0}")]
    Section(String),
    /// The section is not xz, or its stream is damaged.
    #[error("its .gnu_debugdata section does not decompress: {0}")]
    Decompress(String),
    /// It decompresses to more than [`MAX_MINI_DEBUGINFO`].
    #[error("its .gnu_debugdata section decompresses to more than {MAX_MINI_DEBUGINFO} bytes")]
    TooLarge,
    /// What it decompresses to is not an ELF file.
    #[error("its .gnu_debugdata section does not hold an ELF file")]
    NotElf,
}

impl ElfImage {
    /// The ELF image in this image's `.gnu_debugdata` section; `Ok(None)`
    /// when it has none.
    pub fn mini_debuginfo(&self) -> Result<Option<ElfImage>, MiniDebugInfoError> {
        let data = match self.section_data(".gnu_debugdata") {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(e) => return Err(MiniDebugInfoError::Section(e.to_string())),
        };
        let stream = liblzma::stream::Stream::new_stream_decoder(
            XZ_MEMORY_LIMIT,
            liblzma::stream::CONCATENATED,
        )
        .map_err(|e| MiniDebugInfoError::Decompress(e.to_string()))?;
        let decoder = liblzma::read::XzDecoder::new_stream(&data[..], stream);
        let mut bytes = Vec::new();
        decoder
            .take(MAX_MINI_DEBUGINFO + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| MiniDebugInfoError::Decompress(e.to_string()))?;
        if bytes.len() as u64 > MAX_MINI_DEBUGINFO {
            return Err(MiniDebugInfoError::TooLarge);
        }
        let label = format!("{} (.gnu_debugdata)", self.path().display());
        ElfImage::from_bytes(&label, bytes)
            .map(Some)
            .ok_or(MiniDebugInfoError::NotElf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let stream =
            liblzma::stream::Stream::new_easy_encoder(0, liblzma::stream::Check::Crc64).unwrap();
        let mut out = Vec::new();
        let mut encoder = liblzma::read::XzEncoder::new_stream(bytes, stream);
        encoder.read_to_end(&mut out).unwrap();
        out
    }

    /// A minimal ELF64 relocatable file (x86-64) with one section, `name`,
    /// holding `data`: header, the names, the data, three section headers.
    fn elf_with_section(name: &str, data: &[u8]) -> Vec<u8> {
        let mut names = vec![0u8];
        names.extend_from_slice(b".shstrtab\0");
        let name_at = names.len() as u32;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        let names_at = 64u64;
        let data_at = names_at + names.len() as u64;
        let headers_at = (data_at + data.len() as u64).next_multiple_of(8);
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01");
        out.resize(16, 0);
        out.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&[0; 16]); // entry, phoff
        out.extend_from_slice(&headers_at.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for half in [64u16, 0, 0, 64, 3, 1] {
            out.extend_from_slice(&half.to_le_bytes());
        }
        out.extend_from_slice(&names);
        out.extend_from_slice(data);
        out.resize(headers_at as usize, 0);
        let header = |out: &mut Vec<u8>, name: u32, kind: u32, at: u64, size: u64| {
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&[0; 16]); // flags, addr
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // link, info
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        };
        out.extend_from_slice(&[0; 64]);
        header(&mut out, 1, 3, names_at, names.len() as u64); // SHT_STRTAB
        header(&mut out, name_at, 1, data_at, data.len() as u64); // SHT_PROGBITS
        out
    }

    #[test]
    fn an_image_without_the_section_has_none() {
        let image = ElfImage::from_bytes("plain", elf_with_section(".other", b"x")).unwrap();
        assert!(matches!(image.mini_debuginfo(), Ok(None)));
    }

    #[test]
    fn the_section_decompresses_to_the_embedded_image() {
        let inner = elf_with_section(".symtab_stand_in", b"symbols");
        let outer = elf_with_section(".gnu_debugdata", &xz(&inner));
        let image = ElfImage::from_bytes("outer", outer).unwrap();
        let mini = image.mini_debuginfo().unwrap().unwrap();
        assert_eq!(&mini.bytes()[..], &inner[..]);
    }

    #[test]
    fn damaged_oversized_or_non_elf_contents_are_errors() {
        let garbage = elf_with_section(".gnu_debugdata", b"not xz at all");
        let image = ElfImage::from_bytes("garbage", garbage).unwrap();
        assert!(matches!(
            image.mini_debuginfo(),
            Err(MiniDebugInfoError::Decompress(_))
        ));
        let text = elf_with_section(".gnu_debugdata", &xz(b"plain text, not ELF"));
        let image = ElfImage::from_bytes("text", text).unwrap();
        assert!(matches!(
            image.mini_debuginfo(),
            Err(MiniDebugInfoError::NotElf)
        ));
        // Zeros compress a thousandfold: a bomb of 65 MiB in a few kilobytes.
        let bomb = elf_with_section(
            ".gnu_debugdata",
            &xz(&vec![0; (MAX_MINI_DEBUGINFO + 1) as usize]),
        );
        let image = ElfImage::from_bytes("bomb", bomb).unwrap();
        assert!(matches!(
            image.mini_debuginfo(),
            Err(MiniDebugInfoError::TooLarge)
        ));
    }
}
