//! Compressed cores (systemd-coredump's `.zst`, `.lz4`, `.xz`, and `.gz`).
//!
//! The core is streamed into a temporary file that is then memory-mapped, so
//! memory use stays flat however large the core is. The file has no name from
//! the start (it is unlinked as it is created), so nothing is left behind
//! whatever ends the process, a signal included. A stream that ends early
//! keeps what was decoded: the core is then treated as truncated. The
//! decoders' memory is bounded (xz declares its dictionary size), and the
//! writing stops before the temp dir's disk is full.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use memmap2::Mmap;

use super::OpenError;
use super::OpenOptions;
use super::temp_budget::{BatchFull, TempHold};
use crate::diagnostic::{Diagnostic, DiagnosticSource};

/// A supported compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// A decompressed core.
#[derive(Debug)]
pub struct Decompressed {
    /// The decompressed bytes, mapped from an unnamed temp file that goes
    /// away with the map.
    pub map: Mmap,
    /// Its room in the batch's temp budget, given back with the map.
    pub hold: Option<TempHold>,
}

/// Memory the xz decoder may use: `xz -9` needs 65 MiB; a header that
/// declares more is refused rather than allocated.
const XZ_MEMORY_LIMIT: u64 = 512 << 20;
/// Room left free on the temp dir's disk: decompression stops before it.
const DISK_RESERVE: u64 = 256 << 20;
/// How often (in bytes written) the free room is looked at again.
const DISK_CHECK_EVERY: u64 = 64 << 20;

/// Decompress `path` into a temp file and map it. In a batch that shares a
/// [`TempBudget`](super::TempBudget), a core refused room while others hold
/// theirs starts again alone.
pub fn decompress(
    path: &Path,
    format: Format,
    options: &OpenOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Decompressed, OpenError> {
    let Some(budget) = &options.temp_budget else {
        return decompress_once(path, format, options, None, diagnostics)?
            .map_err(|_| unreachable_batch_full(path, format));
    };
    // First sharing the batch; when refused room, again alone (which is
    // never refused: only the per-core cap bounds it then).
    for alone in [false, true] {
        let mut hold = if alone {
            budget.hold_alone()
        } else {
            budget.hold()
        };
        let mut attempt_diagnostics = Vec::new();
        let attempt = decompress_once(
            path,
            format,
            options,
            Some(&mut hold),
            &mut attempt_diagnostics,
        )?;
        if let Ok(mut done) = attempt {
            hold.done_writing();
            done.hold = Some(hold);
            diagnostics.extend(attempt_diagnostics);
            return Ok(done);
        }
    }
    Err(unreachable_batch_full(path, format))
}

/// A lone decompression is never refused room; should it be, say so
/// rather than loop.
fn unreachable_batch_full(path: &Path, format: Format) -> OpenError {
    OpenError::Decompress {
        path: path.into(),
        format: format.name(),
        reason: "the batch's temp budget refused room to a core decompressed alone".into(),
    }
}

/// One attempt: `Ok(Err(BatchFull))` when the batch's budget refused room
/// (what was written is gone with the unnamed file).
fn decompress_once(
    path: &Path,
    format: Format,
    options: &OpenOptions,
    mut hold: Option<&mut TempHold>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Result<Decompressed, BatchFull>, OpenError> {
    let input = BufReader::new(
        crate::regular_file::open_regular(path).map_err(|e| OpenError::io(path, e))?,
    );
    let temp_dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let fail = |reason: String| OpenError::Decompress {
        path: path.into(),
        format: format.name(),
        reason,
    };
    // Unnamed from the start: no signal, crash or kill can leave it behind.
    let file = tempfile::tempfile_in(&temp_dir).map_err(|e| {
        fail(format!(
            "cannot create a temp file in {}: {e}; pass --temp-dir DIR on a writable disk",
            temp_dir.display()
        ))
    })?;
    let mut decoder = decoder(input, format).map_err(|e| fail(e.to_string()))?;
    let room = DiskRoom { file: &file };
    let mut writer = BufWriter::with_capacity(1 << 20, &file);
    let written = copy_bounded(
        &mut decoder,
        &mut writer,
        options.max_decompressed_size,
        &mut |_| {
            if let Some(free) = room.check() {
                return Some(Stop::DiskFull(free));
            }
            let hold = hold.as_deref_mut()?;
            hold.grow(DISK_CHECK_EVERY).err().map(Stop::BatchFull)
        },
    );
    let flushed = writer.flush();
    drop(writer);
    let written = match written {
        Ok(CopyEnd::Complete(n)) => n,
        Ok(CopyEnd::Limit(n)) => {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Core,
                format!(
                    "{}: decompression stopped at the {}-byte limit (--max-core-size); the rest of the \
                     core is treated as truncated",
                    path.display(),
                    n
                ),
            ));
            n
        }
        Ok(CopyEnd::BatchFull(full)) => return Ok(Err(full)),
        Ok(CopyEnd::DiskFull { written, free }) => {
            return Err(fail(format!(
                "the temp dir {} has only {} MiB free after {} MiB were written; pass --temp-dir DIR \
                 on a disk with room for the whole core, or a lower --max-core-size",
                temp_dir.display(),
                free >> 20,
                written >> 20
            )));
        }
        Err((n, e)) if n > 0 => {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Core,
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
    flushed.map_err(|e| {
        fail(format!(
            "cannot write the decompressed core to {}: {e}; pass --temp-dir DIR on a disk with room",
            temp_dir.display()
        ))
    })?;
    if written == 0 {
        return Err(fail("the stream holds no data".into()));
    }
    // The file has no name, so no other process can open it, and pymortem
    // writes it no more once it is mapped; a bus error would name the core.
    let map = crate::mapped_file::map_read_only(path, &file).map_err(|e| {
        fail(format!(
            "cannot map its decompressed copy in {}: {e}",
            temp_dir.display()
        ))
    })?;
    Ok(Ok(Decompressed { map, hold: None }))
}

/// The free room on the temp file's disk.
struct DiskRoom<'f> {
    file: &'f File,
}

impl DiskRoom<'_> {
    /// `Some(free bytes)` when the disk is about to fill up.
    fn check(&self) -> Option<u64> {
        let free = free_bytes(self.file)?;
        (free < DISK_RESERVE).then_some(free)
    }
}

/// Bytes available to unprivileged writers on `file`'s file system.
fn free_bytes(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the descriptor is open for the call's duration and `stat` is
    // written by fstatvfs before it is read, only when it succeeds.
    let stat = unsafe {
        if libc::fstatvfs(file.as_raw_fd(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

enum CopyEnd {
    Complete(u64),
    Limit(u64),
    DiskFull { written: u64, free: u64 },
    BatchFull(BatchFull),
}

/// Why a copy must stop before its end.
enum Stop {
    /// The disk has this many bytes free.
    DiskFull(u64),
    /// The batch's temp budget refused room.
    BatchFull(BatchFull),
}

/// Copy until the reader ends, `limit` bytes are written, or `stop` (asked
/// before every [`DISK_CHECK_EVERY`] bytes) says the disk is nearly full or
/// the batch has no room.
fn copy_bounded(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    limit: u64,
    stop: &mut dyn FnMut(u64) -> Option<Stop>,
) -> Result<CopyEnd, (u64, io::Error)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    let mut next_check = 0u64;
    loop {
        if total >= next_check {
            match stop(total) {
                Some(Stop::DiskFull(free)) => {
                    return Ok(CopyEnd::DiskFull {
                        written: total,
                        free,
                    });
                }
                Some(Stop::BatchFull(full)) => return Ok(CopyEnd::BatchFull(full)),
                None => {}
            }
            next_check = total + DISK_CHECK_EVERY;
        }
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

/// A decoder of `format` reading `input`, its memory bounded.
fn decoder<'a>(input: impl Read + 'a, format: Format) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        Format::Lz4 => Box::new(Lz4Frames::new(input)),
        Format::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY_LIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
        }
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
    })
}

/// The first `max` decompressed bytes of a compressed file (fewer when it
/// holds fewer): enough to tell a compressed core from a compressed archive
/// without decompressing the whole file.
pub fn peek(path: &Path, format: Format, max: usize) -> io::Result<Vec<u8>> {
    let input = BufReader::new(crate::regular_file::open_regular(path)?);
    let mut head = vec![0u8; max];
    let mut decoder = decoder(input, format)?;
    let mut filled = 0;
    while filled < max {
        match decoder.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A stream damaged past its start still shows what it holds.
            Err(_) if filled > 0 => break,
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Every frame of an LZ4 stream: systemd-coredump and `lz4` may write
/// several, and lz4_flex's decoder ends each read at a frame's end mark.
struct Lz4Frames<R: Read> {
    decoder: lz4_flex::frame::FrameDecoder<Counting<R>>,
}

impl<R: Read> Lz4Frames<R> {
    fn new(input: R) -> Self {
        Lz4Frames {
            decoder: lz4_flex::frame::FrameDecoder::new(Counting {
                inner: input,
                read: 0,
            }),
        }
    }
}

impl<R: Read> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let before = self.decoder.get_ref().read;
            let n = self.decoder.read(buf)?;
            // A frame ended if input was consumed; the stream ends when none was.
            if n > 0 || buf.is_empty() || self.decoder.get_ref().read == before {
                return Ok(n);
            }
        }
    }
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
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

    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Decompress `bytes` (written to a file) into a private temp dir.
    fn decompress_bytes(
        bytes: &[u8],
        format: Format,
    ) -> (tempfile::TempDir, Result<Decompressed, OpenError>) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::write(&input, bytes).unwrap();
        let temp = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            temp_dir: Some(temp.path().into()),
            ..OpenOptions::default()
        };
        let out = decompress(&input, format, &options, &mut Vec::new());
        (temp, out)
    }

    #[test]
    fn every_lz4_frame_is_decoded_and_no_temp_file_has_a_name() {
        let mut stream = lz4_frame(b"first frame ");
        stream.extend(lz4_frame(b""));
        stream.extend(lz4_frame(b"third frame"));
        let (temp, out) = decompress_bytes(&stream, Format::Lz4);
        let out = out.unwrap();
        assert_eq!(&out.map[..], b"first frame third frame");
        // The mapped copy is alive, yet the temp dir holds nothing to leave behind.
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
    }

    /// An xz stream whose block header declares a dictionary of 3 GiB: the
    /// decoder would allocate it.
    fn xz_with_huge_dictionary() -> Vec<u8> {
        let stream =
            liblzma::stream::Stream::new_easy_encoder(0, liblzma::stream::Check::Crc32).unwrap();
        let mut encoder = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        encoder.write_all(b"a small core").unwrap();
        let mut bytes = encoder.finish().unwrap();
        // Stream header (12 bytes), then the block header: its size, flags,
        // optional sizes, then the LZMA2 filter (id 0x21, 1 property byte).
        let start = 12;
        let size = (usize::from(bytes[start]) + 1) * 4;
        let flags = bytes[start + 1];
        let mut at = start + 2;
        for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
            if present {
                while bytes[at] & 0x80 != 0 {
                    at += 1;
                }
                at += 1;
            }
        }
        assert_eq!(&bytes[at..at + 2], &[0x21, 0x01], "an LZMA2 filter");
        bytes[at + 2] = 39; // 3 GiB
        let crc = crc32fast::hash(&bytes[start..start + size - 4]);
        bytes[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn an_xz_dictionary_beyond_the_memory_limit_is_refused() {
        let (_temp, out) = decompress_bytes(&xz_with_huge_dictionary(), Format::Xz);
        let err = out.expect_err("refused").to_string();
        assert!(err.contains("xz"), "{err}");
    }

    #[test]
    fn a_nearly_full_disk_stops_the_copy() {
        let mut reader: &[u8] = &[7u8; 1000];
        let mut sink = Vec::new();
        let end = copy_bounded(&mut reader, &mut sink, 1 << 20, &mut |_| {
            Some(Stop::DiskFull(5))
        })
        .unwrap();
        assert!(matches!(
            end,
            CopyEnd::DiskFull {
                written: 0,
                free: 5
            }
        ));
        assert!(sink.is_empty());
    }
}
