//! [`ProcessMemory`]: the core's `PT_LOAD` bytes first, then read-only pages of
//! mapped files whose build-id was checked against the core.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::Memory;
use crate::corefile::CoreFile;
use crate::memory::{ReadError, ReadFailure};

/// A verified on-disk file that can supply a mapping's pages.
#[derive(Debug, Clone)]
pub struct FileBacking {
    /// Where the file was found.
    pub path: PathBuf,
    /// Its bytes.
    pub map: crate::elf::ImageBytes,
}

/// Whether a file mapping's pages can come from disk.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum MappingState {
    /// Nobody looked for the file yet.
    #[default]
    Unresolved,
    /// The file was found and its build-id equals the core's.
    Backed(FileBacking),
    /// The file was not found.
    Missing,
    /// The file was found but is a different build.
    BuildIdMismatch,
    /// The file was found but the core holds no build-id to check it against.
    Unverified,
}

/// Where the byte at an address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Provenance {
    /// The core file's segment with this index.
    Core {
        /// Index into [`CoreFile::segments`].
        segment: usize,
    },
    /// A mapped file on disk.
    File {
        /// The file that supplies the byte.
        path: PathBuf,
    },
    /// Nowhere: the reason.
    Unavailable(ReadFailure),
}

/// A file's bytes at an address range: see [`ProcessMemory::add_file_ranges`].
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The module's path as recorded (the name reads report).
    pub recorded_path: String,
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset in the file of the byte at `start`.
    pub file_offset: u64,
    /// Whether the file can supply the bytes.
    pub state: MappingState,
}

#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    file_offset: u64,
    path: String,
    state: MappingState,
}

/// The memory of the process that dumped the core.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    core: Arc<CoreFile>,
    mappings: Vec<Mapping>,
    // The segment of the last read: heap walks read the same segment over
    // and over, and skipping the binary search halves their cost.
    last_segment: Arc<AtomicUsize>,
}

impl ProcessMemory {
    /// A view over `core` with no files attached yet.
    pub fn new(core: Arc<CoreFile>) -> Self {
        let mut mappings: Vec<Mapping> = core
            .file_mappings()
            .iter()
            .map(|m| Mapping {
                start: m.start,
                end: m.end,
                file_offset: m.file_offset,
                path: m.path.clone(),
                state: MappingState::Unresolved,
            })
            .collect();
        mappings.sort_by_key(|m| m.start);
        ProcessMemory {
            core,
            mappings,
            last_segment: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same view with its own last-segment cursor, for another thread:
    /// two threads sharing one cursor would keep evicting each other's.
    pub fn with_own_cursor(&self) -> ProcessMemory {
        ProcessMemory {
            core: Arc::clone(&self.core),
            mappings: self.mappings.clone(),
            last_segment: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The core under this view.
    pub fn core(&self) -> &Arc<CoreFile> {
        &self.core
    }

    /// Set the state of every mapping of the file recorded as `recorded_path`.
    pub fn set_file_state(&mut self, recorded_path: &str, state: &MappingState) {
        for m in self.mappings.iter_mut().filter(|m| m.path == recorded_path) {
            m.state = state.clone();
        }
    }

    /// Attach files to the address ranges they back, for modules known
    /// without an `NT_FILE` note (recovered from the dynamic linker's list),
    /// whose ranges come from their read-only program headers instead: a
    /// kernel core leaves those pages out, and only the file can supply them.
    ///
    /// Empty ranges, and ranges that overlap one already known or one given
    /// before them, are left out: the first word on an address stands. One
    /// sort, however many ranges a (hostile) core yields.
    pub fn add_file_ranges(&mut self, ranges: impl IntoIterator<Item = FileRange>) {
        let mut new: Vec<FileRange> = ranges.into_iter().filter(|r| r.start < r.end).collect();
        new.sort_by_key(|r| r.start);
        let known = &self.mappings;
        // The known mappings are sorted by start and, from a sane NT_FILE,
        // disjoint: the last that starts before a range ends is the one
        // that can reach into it.
        let overlaps_known = |r: &FileRange| {
            let after = known.partition_point(|m| m.start < r.end);
            known[..after].last().is_some_and(|m| m.end > r.start)
        };
        let mut accepted: Vec<Mapping> = Vec::new();
        for r in new {
            let after_last = accepted.last().is_none_or(|m| m.end <= r.start);
            if after_last && !overlaps_known(&r) {
                accepted.push(Mapping {
                    start: r.start,
                    end: r.end,
                    file_offset: r.file_offset,
                    path: r.recorded_path,
                    state: r.state,
                });
            }
        }
        self.mappings.extend(accepted);
        self.mappings.sort_by_key(|m| m.start);
    }

    /// A view of only the bytes stored in the core, with no file fallback.
    pub fn core_only(&self) -> CoreOnly<'_> {
        CoreOnly(self)
    }

    /// Where the byte at `addr` would be read from.
    pub fn provenance(&self, addr: u64) -> Provenance {
        let mut probe = [0u8; 1];
        match self.read_piece(addr, &mut probe, true) {
            Ok((_, Source::Core(segment))) => Provenance::Core { segment },
            Ok((_, Source::File(i))) => match &self.mappings[i].state {
                MappingState::Backed(b) => Provenance::File {
                    path: b.path.clone(),
                },
                _ => Provenance::Unavailable(ReadFailure::NotDumped),
            },
            Err(e) => Provenance::Unavailable(e.reason),
        }
    }

    fn mapping_index(&self, addr: u64) -> Option<usize> {
        let after = self.mappings.partition_point(|m| m.start <= addr);
        let i = after.checked_sub(1)?;
        (addr < self.mappings[i].end).then_some(i)
    }

    /// Read as much of `buf` as one source can supply; return the count.
    fn read_piece(
        &self,
        addr: u64,
        buf: &mut [u8],
        use_files: bool,
    ) -> Result<(usize, Source), ReadError> {
        let fail = |reason| ReadError::new(addr, buf.len() as u64, reason);
        let core_reason = match self.core.segment_index(addr) {
            Some(index) => {
                let seg = &self.core.segments()[index];
                let offset_in_seg = addr - seg.vaddr;
                if offset_in_seg < seg.available {
                    let n = (buf.len() as u64).min(seg.available - offset_in_seg) as usize;
                    let start = (seg.file_offset + offset_in_seg) as usize;
                    let src = self
                        .core
                        .bytes()
                        .get(start..start + n)
                        .ok_or_else(|| fail(ReadFailure::Truncated))?;
                    buf[..n].copy_from_slice(src);
                    return Ok((n, Source::Core(index)));
                }
                let reason = if offset_in_seg < seg.filesz {
                    ReadFailure::Truncated
                } else {
                    ReadFailure::NotDumped
                };
                // Writable pages may differ from the file: never fill them from disk.
                if seg.perms.write || !use_files {
                    return Err(fail(reason));
                }
                let limit = seg.end() - addr;
                return self.read_file(addr, buf, limit, reason);
            }
            None => ReadFailure::NotMapped,
        };
        if !use_files {
            return Err(fail(core_reason));
        }
        self.read_file(addr, buf, u64::MAX, core_reason)
    }

    fn read_file(
        &self,
        addr: u64,
        buf: &mut [u8],
        limit: u64,
        fallback: ReadFailure,
    ) -> Result<(usize, Source), ReadError> {
        let fail = |reason| ReadError::new(addr, buf.len() as u64, reason);
        let Some(i) = self.mapping_index(addr) else {
            return Err(fail(fallback));
        };
        let m = &self.mappings[i];
        match &m.state {
            MappingState::Backed(backing) => {
                let pos = m.file_offset.saturating_add(addr - m.start);
                let in_file = (backing.map.len() as u64).saturating_sub(pos);
                let n = (buf.len() as u64).min(m.end - addr).min(limit).min(in_file) as usize;
                if n == 0 {
                    return Err(fail(ReadFailure::NotDumped));
                }
                let pos = pos as usize;
                buf[..n].copy_from_slice(&backing.map[pos..pos + n]);
                Ok((n, Source::File(i)))
            }
            MappingState::Missing => Err(fail(ReadFailure::FileMissing {
                path: m.path.clone(),
            })),
            MappingState::BuildIdMismatch => Err(fail(ReadFailure::BuildIdMismatch {
                path: m.path.clone(),
            })),
            MappingState::Unverified | MappingState::Unresolved => Err(fail(fallback)),
        }
    }

    /// The bytes at `addr` if they lie in the dumped part of segment `index`.
    fn segment_slice(&self, index: usize, addr: u64, len: usize) -> Option<&[u8]> {
        let seg = self.core.segments().get(index)?;
        let offset = addr.checked_sub(seg.vaddr)?;
        let end = offset.checked_add(len as u64)?;
        if end > seg.available {
            return None;
        }
        let start = usize::try_from(seg.file_offset.checked_add(offset)?).ok()?;
        self.core.bytes().get(start..start.checked_add(len)?)
    }

    /// The dumped bytes of the core segment holding `addr`, with the
    /// segment's address: for walks that keep their own cursor.
    pub fn segment_bytes(&self, addr: u64) -> Option<(u64, &[u8])> {
        let index = self.core.segment_index(addr)?;
        let seg = &self.core.segments()[index];
        let start = usize::try_from(seg.file_offset).ok()?;
        let len = usize::try_from(seg.available).ok()?;
        Some((
            seg.vaddr,
            self.core.bytes().get(start..start.checked_add(len)?)?,
        ))
    }

    /// The core's own bytes at `addr`, without a copy: the last segment used
    /// first, then a search.
    fn core_slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let last = self.last_segment.load(Ordering::Relaxed);
        if let Some(bytes) = self.segment_slice(last, addr, len) {
            return Some(bytes);
        }
        let index = self.core.segment_index(addr)?;
        let bytes = self.segment_slice(index, addr, len)?;
        self.last_segment.store(index, Ordering::Relaxed);
        Some(bytes)
    }

    fn read_all(&self, addr: u64, buf: &mut [u8], use_files: bool) -> Result<(), ReadError> {
        // Fast path: wholly inside the dumped part of the last segment used.
        let last = self.last_segment.load(Ordering::Relaxed);
        if let Some(src) = self.segment_slice(last, addr, buf.len()) {
            buf.copy_from_slice(src);
            return Ok(());
        }
        let mut done = 0;
        while done < buf.len() {
            let cur = addr
                .checked_add(done as u64)
                .ok_or_else(|| ReadError::new(addr, buf.len() as u64, ReadFailure::NotMapped))?;
            let (n, source) = self.read_piece(cur, &mut buf[done..], use_files)?;
            if let Source::Core(index) = source {
                self.last_segment.store(index, Ordering::Relaxed);
            }
            done += n;
        }
        Ok(())
    }
}

enum Source {
    Core(usize),
    File(usize),
}

impl Memory for ProcessMemory {
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read_all(addr, buf, true)
    }

    fn slice_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.core_slice(addr, len)
    }
}

/// [`ProcessMemory`] restricted to the bytes stored in the core itself.
#[derive(Debug, Clone, Copy)]
pub struct CoreOnly<'a>(&'a ProcessMemory);

impl Memory for CoreOnly<'_> {
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.0.read_all(addr, buf, false)
    }

    fn slice_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.0.core_slice(addr, len)
    }
}
