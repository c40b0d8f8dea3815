//! ELF files as the layers above read them: a mapped image (executable,
//! shared library, debug file, the vDSO copied out of the core) and bounded
//! reads of its sections. Below both the module set and the symbol tables.

pub mod headers;
mod image;
mod mini_debuginfo;
pub(crate) mod section_data;
mod supplementary;

pub use headers::{FileHeader, ProgramHeader, ProgramHeaders};
pub use image::{ElfImage, ImageBytes, SectionCompression};
pub use mini_debuginfo::{MAX_MINI_DEBUGINFO, MiniDebugInfoError};
pub use section_data::{MAX_EXPANSION, MAX_SECTION_SIZE, SectionError};
pub use supplementary::{
    MAX_SUPPLEMENTARY_ID, MAX_SUPPLEMENTARY_NAME, SupplementaryLink, SupplementaryLinkError,
    SupplementaryLinkKind,
};

/// Lower-case hex of a byte string (build-ids in paths, URLs and messages).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
