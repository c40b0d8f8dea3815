//! Section contents, decompressed within bounds.
//!
//! `SHF_COMPRESSED` and `.zdebug_*` sections declare their decompressed size
//! in a header the file's author controls: a few KB of zstd can claim (and
//! expand to) gigabytes. A declared size is checked before anything is
//! allocated, and the decoder never produces more than it declared.

use std::borrow::Cow;
use std::io::Read;

use object::{CompressionFormat, ObjectSection};

/// The most one section may decompress to. Real DWARF sections are far
/// smaller (Debian's LTO-built python3.13 has a 19 MB `.debug_info`).
pub const MAX_SECTION_SIZE: u64 = 256 << 20;

/// The most a section may expand relative to its compressed bytes. Real
/// debug sections compress 2-10x with zlib or zstd.
pub const MAX_EXPANSION: u64 = 32;

/// The most the sections loaded together from one file may decompress to,
/// so that several sections at their own bound cannot add up to gigabytes.
pub const MAX_SECTIONS_TOTAL: u64 = 384 << 20;

/// Slack for tiny sections, whose headers dominate their compressed size.
const SMALL_SECTION_SLACK: u64 = 64 << 10;

/// Why a section's contents cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// The declared size exceeds what a real debug section could hold.
    #[error(
        "{name}: compressed section declares {declared} bytes from {packed} compressed bytes (at most {limit} are accepted)"
    )]
    TooLarge {
        /// The section.
        name: String,
        /// The decompressed size its header declares.
        declared: u64,
        /// Its compressed bytes.
        packed: u64,
        /// The bound it exceeds.
        limit: u64,
    },
    /// The data is damaged, uses an unknown format, or does not match its declared size.
    #[error("{name}: cannot decompress: {reason}")]
    Corrupt {
        /// The section.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The most `packed` compressed bytes may declare.
pub fn size_limit(packed: u64) -> u64 {
    packed
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(SMALL_SECTION_SLACK)
        .min(MAX_SECTION_SIZE)
}

/// The contents of `section`, decompressed when it is compressed; what it
/// decompresses to is taken out of `remaining`, the room left to the
/// sections loaded together with it.
pub fn bounded_data_within<'d, S: ObjectSection<'d>>(
    name: &str,
    section: &S,
    remaining: &mut u64,
) -> Result<Cow<'d, [u8]>, SectionError> {
    let corrupt = |reason: String| SectionError::Corrupt {
        name: name.to_string(),
        reason,
    };
    let compressed = section
        .compressed_data()
        .map_err(|e| corrupt(e.to_string()))?;
    if compressed.format == CompressionFormat::None {
        return Ok(Cow::Borrowed(compressed.data));
    }
    let packed = compressed.data.len() as u64;
    let declared = compressed.uncompressed_size;
    let limit = size_limit(packed).min(*remaining);
    if declared > limit {
        return Err(SectionError::TooLarge {
            name: name.to_string(),
            declared,
            packed,
            limit,
        });
    }
    let input = compressed.data;
    let decoder: Box<dyn Read + '_> = match compressed.format {
        CompressionFormat::Zlib => Box::new(flate2::read::ZlibDecoder::new(input)),
        CompressionFormat::Zstandard => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(e.to_string()))?,
        ),
        other => return Err(corrupt(format!("unsupported compression {other:?}"))),
    };
    // `declared` is bounded above, so the buffer is too; one byte more than
    // declared tells a stream that would go on.
    let mut out = Vec::with_capacity(declared as usize);
    decoder
        .take(declared + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(e.to_string()))?;
    if out.len() as u64 != declared {
        return Err(corrupt(format!(
            "decompresses to {}{} bytes, its header declares {declared}",
            out.len(),
            if out.len() as u64 > declared {
                " or more"
            } else {
                ""
            }
        )));
    }
    *remaining -= declared;
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_scales_with_the_compressed_size_and_is_capped() {
        assert_eq!(size_limit(0), SMALL_SECTION_SLACK);
        assert_eq!(size_limit(1 << 20), (32 << 20) + SMALL_SECTION_SLACK);
        assert_eq!(size_limit(u64::MAX), MAX_SECTION_SIZE);
        // The probe of issue 15: 132 KB of zstd claiming 4 GiB.
        assert!(size_limit(132_000) < 4 << 30);
    }
}
