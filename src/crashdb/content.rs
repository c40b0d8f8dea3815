//! What identifies a core's content: its content id, a hash of all its
//! bytes, and its fingerprint, a hash of a few of them that is cheap enough
//! to take of every core. Two cores with one content id are copies; two
//! with one fingerprint may be, and only their content ids tell.

use std::path::Path;

/// Bytes per page of the content id's zero test.
const PAGE: usize = 4096;

/// What identifies a crash: a hash of the file's bytes, `b3z:` and 64 hex
/// digits, the same however the file is stored (sparse or not, any copy).
///
/// A core is half zero pages (unused stack and heap), and a kernel-written
/// core leaves them as holes. Hashing them costs as much as the analysis,
/// so the id hashes what determines the bytes instead of the bytes
/// themselves: BLAKE3 of the concatenated non-zero 4 KiB pages, BLAKE3 of
/// the list of zero runs (offset, length), and the size. Two files with the
/// same id have the same bytes (up to BLAKE3 collisions). Holes are skipped
/// without reading (`SEEK_DATA`); the file is read in 1 MiB blocks, never
/// whole, and only when it is a regular file (a FIFO would block). A
/// compressed core is hashed as it is on disk.
pub fn content_hash(path: &Path) -> std::io::Result<String> {
    let file = crate::regular_file::open_regular(path)?;
    let size = file.metadata()?.len();
    let mut ids = ContentHasher::default();
    if size == 0 {
        return Ok(ids.finish(0));
    }
    // Mapped, not read: the page cache's pages are hashed where they are.
    let map = crate::mapped_file::map_read_only(path, &file)?;
    let _ = map.advise(memmap2::Advice::Sequential);
    let size = size.min(map.len() as u64);
    let page = PAGE as u64;
    let mut offset = 0u64;
    while offset < size {
        // Page-aligned, so that the id's pages are the file's pages
        // whatever block size the file system reports holes in.
        let data = next_extent(&file, offset, size, libc::SEEK_DATA) / page * page;
        if data > offset {
            ids.zeros(offset, data - offset);
            offset = data;
            continue;
        }
        let hole = next_extent(&file, offset, size, libc::SEEK_HOLE)
            .div_ceil(page)
            .saturating_mul(page)
            .max(offset + page)
            .min(size);
        while offset < hole {
            let end = hole.min(offset + (1 << 20));
            let window = map
                .get(offset as usize..end as usize)
                .ok_or_else(|| std::io::Error::other("the file shrank while it was hashed"))?;
            ids.bytes(offset, window);
            offset = end;
        }
    }
    Ok(ids.finish(size))
}

/// The next offset at or after `offset` where `whence` (`SEEK_DATA` or
/// `SEEK_HOLE`) begins: `size` when there is none, and for `SEEK_DATA`
/// `offset` itself where the file system cannot say (all is then data).
fn next_extent(file: &std::fs::File, offset: u64, size: u64, whence: libc::c_int) -> u64 {
    use std::os::unix::io::AsRawFd;
    let Ok(start) = libc::off_t::try_from(offset) else {
        return offset;
    };
    // SAFETY: lseek on a descriptor this function borrows; it moves only the
    // file offset, which nothing here reads through (the file is mapped).
    let found = unsafe { libc::lseek(file.as_raw_fd(), start, whence) };
    match u64::try_from(found) {
        Ok(at) => at.clamp(offset, size),
        // ENXIO: no data at or after `offset`, the rest is a hole.
        Err(_) if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => size,
        Err(_) if whence == libc::SEEK_HOLE => size,
        Err(_) => offset,
    }
}

/// A core's size and fingerprint: what selects the recorded crashes that
/// may have the same content (see [`fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The file's size in bytes.
    pub size: u64,
    /// `fp1:` and 64 hex digits.
    pub id: String,
}

/// Bytes of a core's note segment in its fingerprint: the first thread's
/// registers, the pid, CPU times, the signal, the auxiliary vector.
const FINGERPRINT_NOTES: u64 = 16 * 1024;

/// Bytes from the start of a file that is no ELF core (a compressed one).
const FINGERPRINT_HEAD: u64 = 64 * 1024;

/// Pages taken from between the ends.
const FINGERPRINT_SAMPLES: u64 = 8;

/// The offsets of the pages sampled between the ends of a file of `size`
/// bytes: evenly spread, page-aligned.
fn sampled_pages(size: u64) -> impl Iterator<Item = u64> {
    let page = PAGE as u64;
    (1..=FINGERPRINT_SAMPLES).map(move |i| size / (FINGERPRINT_SAMPLES + 1) * i / page * page)
}

/// A hash of a few of the file's bytes, to select the crashes whose
/// content id is worth comparing: BLAKE3 of its size, its first page, the
/// first 16 KiB of its note segment (of an ELF core; else its first
/// 64 KiB), 8 pages spread over it and its last page, about 60 KiB however
/// large the core. The notes hold the threads' registers, the pid, CPU
/// times and the auxiliary vector, which differ between any two crashes,
/// so distinct crashes have distinct fingerprints unless made to collide;
/// copies always share one.
pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    use crate::elf::headers::PT_NOTE;
    use crate::elf::{FileHeader, ProgramHeaders};
    use std::os::unix::fs::FileExt;
    let file = crate::regular_file::open_regular(path)?;
    let size = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&size.to_le_bytes());
    let mut buffer = vec![0u8; FINGERPRINT_HEAD as usize];
    // Read `len` bytes at `offset` (fewer at the end of the file), hash
    // them with their offset if `hash`, and return them.
    let mut take = |offset: u64, len: u64, hash: bool| -> std::io::Result<Vec<u8>> {
        let len = len.min(size.saturating_sub(offset)).min(FINGERPRINT_HEAD);
        let bytes = &mut buffer[..len as usize];
        file.read_exact_at(bytes, offset)?;
        if hash {
            hasher.update(&offset.to_le_bytes());
            hasher.update(bytes);
        }
        Ok(bytes.to_vec())
    };
    let head = take(0, PAGE as u64, true)?;
    // The note segment: kernel cores and gdb's list it first.
    let notes = FileHeader::parse(&head)
        .and_then(|header| header.program_header_table())
        .and_then(|(offset, len)| {
            let table = take(offset, len, false).ok()?;
            ProgramHeaders::parse(&table).first(PT_NOTE).copied()
        });
    match notes {
        Some(notes) => take(notes.offset, notes.filesz.min(FINGERPRINT_NOTES), true)?,
        None => take(0, FINGERPRINT_HEAD, true)?,
    };
    for offset in sampled_pages(size) {
        take(offset, PAGE as u64, true)?;
    }
    take(size.saturating_sub(PAGE as u64), PAGE as u64, true)?;
    Ok(Fingerprint {
        size,
        id: format!("fp1:{}", hasher.finalize().to_hex()),
    })
}

/// The state of a content id: data pages and zero runs, each hashed as it
/// comes.
#[derive(Default)]
struct ContentHasher {
    data: blake3::Hasher,
    runs: blake3::Hasher,
    /// The zero run in progress: its offset and length.
    run: Option<(u64, u64)>,
}

impl ContentHasher {
    /// `length` zero bytes at `offset`.
    fn zeros(&mut self, offset: u64, length: u64) {
        match &mut self.run {
            Some((start, len)) if *start + *len == offset => *len += length,
            _ => {
                self.end_run();
                self.run = Some((offset, length));
            }
        }
    }

    fn end_run(&mut self) {
        if let Some((start, len)) = self.run.take() {
            self.runs.update(&start.to_le_bytes());
            self.runs.update(&len.to_le_bytes());
        }
    }

    /// Bytes read at `offset`: zero pages join the run, consecutive data
    /// pages are hashed in one call (BLAKE3 is fastest on long inputs).
    fn bytes(&mut self, offset: u64, bytes: &[u8]) {
        let mut data_start: Option<usize> = None;
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let at = i * PAGE;
            if is_zero(page) {
                if let Some(start) = data_start.take() {
                    self.data.update(&bytes[start..at]);
                }
                self.zeros(offset + at as u64, page.len() as u64);
            } else {
                if data_start.is_none() {
                    self.end_run();
                    data_start = Some(at);
                }
            }
        }
        if let Some(start) = data_start {
            self.data.update(&bytes[start..]);
        }
    }

    fn finish(mut self, size: u64) -> String {
        self.end_run();
        let mut id = blake3::Hasher::new();
        id.update(self.data.finalize().as_bytes());
        id.update(self.runs.finalize().as_bytes());
        id.update(&size.to_le_bytes());
        format!("b3z:{}", id.finalize().to_hex())
    }
}

fn is_zero(page: &[u8]) -> bool {
    // Word-wise OR: vectorized, several times faster than hashing the page.
    let (words, tail) = page.split_at(page.len() / 8 * 8);
    words.chunks_exact(8).fold(0u64, |acc, w| {
        acc | u64::from_ne_bytes(w.try_into().unwrap_or_default())
    }) == 0
        && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of `bytes` computed the long way: every page looked at.
    fn reference_id(bytes: &[u8]) -> String {
        let (mut data, mut runs) = (blake3::Hasher::new(), blake3::Hasher::new());
        let mut run: Option<(u64, u64)> = None;
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if page.iter().all(|&b| b == 0) {
                let start = run.map_or((i * PAGE) as u64, |r| r.0);
                run = Some((start, run.map_or(0, |r| r.1) + page.len() as u64));
            } else {
                if let Some((s, l)) = run.take() {
                    runs.update(&s.to_le_bytes());
                    runs.update(&l.to_le_bytes());
                }
                data.update(page);
            }
        }
        if let Some((s, l)) = run {
            runs.update(&s.to_le_bytes());
            runs.update(&l.to_le_bytes());
        }
        let mut id = blake3::Hasher::new();
        id.update(data.finalize().as_bytes());
        id.update(runs.finalize().as_bytes());
        id.update(&(bytes.len() as u64).to_le_bytes());
        format!("b3z:{}", id.finalize().to_hex())
    }

    #[test]
    fn content_ids_do_not_depend_on_holes() {
        use std::io::{Seek, Write};
        let dir = tempfile::tempdir().unwrap();
        // 3 MiB and a bit: data, a hole, data across a block boundary, zeros
        // written out, a partial last page.
        let mut bytes = vec![0u8; 3 * (1 << 20) + 1234];
        bytes[..5000].fill(7);
        bytes[(1 << 20) - 100..(1 << 20) + 9000].fill(9);
        let end = bytes.len();
        bytes[end - 10..].fill(1);
        let dense = dir.path().join("dense");
        std::fs::write(&dense, &bytes).unwrap();
        let sparse = dir.path().join("sparse");
        let mut f = std::fs::File::create(&sparse).unwrap();
        f.write_all(&bytes[..8192]).unwrap();
        f.seek(std::io::SeekFrom::Start((1 << 20) - 4096)).unwrap();
        f.write_all(&bytes[(1 << 20) - 4096..(1 << 20) + 12288])
            .unwrap();
        f.seek(std::io::SeekFrom::Start(end as u64 - 4096)).unwrap();
        f.write_all(&bytes[end - 4096..]).unwrap();
        drop(f);
        let want = reference_id(&bytes);
        assert_eq!(content_hash(&dense).unwrap(), want);
        assert_eq!(content_hash(&sparse).unwrap(), want);
        // One byte more in a zero page: another id.
        bytes[2 << 20] = 1;
        std::fs::write(&dense, &bytes).unwrap();
        assert_ne!(content_hash(&dense).unwrap(), want);
        // All zeros, and empty.
        std::fs::write(&dense, vec![0u8; 10_000]).unwrap();
        assert_eq!(content_hash(&dense).unwrap(), reference_id(&[0u8; 10_000]));
        std::fs::write(&dense, b"").unwrap();
        assert_eq!(content_hash(&dense).unwrap(), reference_id(b""));
    }
}
