//! Compressed cores (systemd-coredump's `.zst`, `.lz4`, `.xz`, and `.gz`).
//!
//! The core is streamed into a temporary file that is then memory-mapped, so
//! memory use stays flat however large the core is. A stream that ends early
//! keeps what was decoded: the core is then treated as truncated.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use memmap2::Mmap;

use super::OpenOptions;
use crate::error::{Diagnostic, Error};

/// A supported compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Zstandard frames.
    Zstd,
    /// LZ4 frame format.
    Lz4,
    /// xz (LZMA2) streams.
    Xz,
    /// gzip.
    Gzip,
}

impl Format {
    /// Short name used in messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Zstd => "zstd",
            Format::Lz4 => "lz4",
            Format::Xz => "xz",
            Format::Gzip => "gzip",
        }
    }
}

/// Recognise a compressed file by its magic bytes.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Format::Zstd)
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Some(Format::Lz4)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Format::Xz)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::Gzip)
    } else {
        None
    }
}

/// A decompressed core: its map and the temp file that backs it.
pub struct Decompressed {
    /// The decompressed bytes.
    pub map: Mmap,
    /// Deleted when dropped.
    pub temp: tempfile::TempPath,
}

/// Decompress `path` into a temp file and map it.
pub fn decompress(
    path: &Path,
    format: Format,
    options: &OpenOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Decompressed, Error> {
    let input = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    let temp_dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("pymortem-core-")
        .tempfile_in(&temp_dir)
        .map_err(|e| Error::io(&temp_dir, e))?;
    let (file, temp_path) = temp.into_parts();
    let fail = |reason: String| Error::Decompress {
        path: path.into(),
        format: format.name(),
        reason,
    };
    let mut decoder: Box<dyn Read> = match format {
        Format::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(input).map_err(|e| fail(e.to_string()))?)
        }
        Format::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        Format::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
    };
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let written = copy_bounded(&mut decoder, &mut writer, options.max_decompressed_size);
    let file = writer
        .into_inner()
        .map_err(|e| Error::io(&temp_path, e.into_error()))?;
    let written = match written {
        Ok(CopyEnd::Complete(n)) => n,
        Ok(CopyEnd::Limit(n)) => {
            diagnostics.push(Diagnostic::warning(
                "core",
                format!(
                    "{}: decompression stopped at the {}-byte limit; the rest of the core is treated as truncated",
                    path.display(),
                    n
                ),
            ));
            n
        }
        Err((n, e)) if n > 0 => {
            diagnostics.push(Diagnostic::warning(
                "core",
                format!(
                    "{}: the {} stream ends early after {} bytes ({e}); what was decoded is used",
                    path.display(),
                    format.name(),
                    n
                ),
            ));
            n
        }
        Err((_, e)) => return Err(fail(e.to_string())),
    };
    if written == 0 {
        return Err(fail("the stream holds no data".into()));
    }
    // SAFETY: pymortem owns the temp file and nobody else writes it.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&temp_path, e))?;
    Ok(Decompressed {
        map,
        temp: temp_path,
    })
}

enum CopyEnd {
    Complete(u64),
    Limit(u64),
}

fn copy_bounded(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    limit: u64,
) -> Result<CopyEnd, (u64, io::Error)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(CopyEnd::Complete(total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((total, e)),
        };
        let room = limit.saturating_sub(total);
        let take = (n as u64).min(room) as usize;
        writer.write_all(&buf[..take]).map_err(|e| (total, e))?;
        total += take as u64;
        if take < n {
            return Ok(CopyEnd::Limit(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_detection() {
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Format::Zstd));
        assert_eq!(detect(b"\x7fELF"), None);
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Some(Format::Gzip));
    }
}
