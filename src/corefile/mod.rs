//! The ELF core file: mapping, program headers and notes.
//!
//! This layer knows nothing about processes beyond what the core itself says.
//! The file is memory-mapped, never read whole; compressed cores are first
//! decompressed into a temporary file (see [`compressed`]).

pub mod compressed;
pub mod notes;
pub mod signals;
pub mod temp_budget;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use object::elf;
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};
use serde::Serialize;

use crate::arch::{ArchId, Registers};
use crate::diagnostic::{Diagnostic, DiagnosticSource};
pub use notes::{Auxv, FileMapping, PrStatus, PsInfo, SigInfo};
pub use temp_budget::TempBudget;

/// Errors that stop pymortem from opening an input: the file, its
/// decompression, the core's format, a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF core file (or a compressed one).
    #[error("{path}: not an ELF core file: {reason}")]
    NotACore {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The core is for an architecture pymortem does not support.
    #[error("{path}: unsupported core: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// Decompressing a compressed core failed before any usable data came out.
    #[error("{path}: cannot decompress ({format}): {reason}")]
    Decompress {
        /// The compressed file.
        path: PathBuf,
        /// zstd, lz4, xz or gzip.
        format: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A live process could not be copied.
    #[error(transparent)]
    Live(#[from] crate::live::LiveError),
    /// The file is a bundle that cannot be read.
    #[error("{path}: not a usable pymortem bundle: {reason}")]
    Bundle {
        /// The bundle.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl OpenError {
    /// Whether the input was read and is not a core pymortem can open (as
    /// opposed to a failure of the disk, the temp dir or the decoder).
    pub fn is_not_a_core(&self) -> bool {
        matches!(
            self,
            OpenError::NotACore { .. } | OpenError::Unsupported { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OpenError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Notes beyond this count are ignored (a kernel core has a handful per thread).
const MAX_NOTES: usize = 1 << 20;
/// Program headers beyond this count are ignored.
const MAX_SEGMENTS: usize = 1 << 20;

/// Options for opening a core.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Where compressed cores are decompressed; the system temp dir when `None`.
    pub temp_dir: Option<PathBuf>,
    /// Upper bound on the decompressed size of a compressed core, in bytes.
    pub max_decompressed_size: u64,
    /// A bound shared with the other cores of a batch on the decompressed
    /// bytes held at once; `None` outside a batch.
    pub temp_budget: Option<Arc<TempBudget>>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            temp_dir: None,
            max_decompressed_size: 64 << 30,
            temp_budget: None,
        }
    }
}

/// The bytes of a core: a file map, or a buffer.
#[derive(Debug)]
#[non_exhaustive]
pub enum CoreBytes {
    /// A mapped core file.
    Mapped(Mmap),
    /// The decompressed copy of a compressed core.
    Decompressed(compressed::Decompressed),
    /// Bytes in memory.
    Owned(Vec<u8>),
    /// A range of a map shared with other readers (a bundle's core member).
    Shared(Arc<Mmap>, std::ops::Range<usize>),
}

impl std::ops::Deref for CoreBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            CoreBytes::Mapped(m) => m,
            CoreBytes::Decompressed(d) => &d.map,
            CoreBytes::Owned(v) => v,
            CoreBytes::Shared(map, range) => map.get(range.clone()).unwrap_or(&[]),
        }
    }
}

/// Access permissions of a segment, from `p_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

/// One `PT_LOAD` segment of the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// First virtual address.
    pub vaddr: u64,
    /// Size of the mapping in the process (`p_memsz`).
    pub memsz: u64,
    /// Offset of the dumped bytes in the core file.
    pub file_offset: u64,
    /// Bytes the core claims to hold (`p_filesz`); the rest were not dumped.
    pub filesz: u64,
    /// Bytes actually present in the file: less than `filesz` when truncated.
    pub available: u64,
    /// Access permissions.
    pub perms: Perms,
}

impl Segment {
    /// One past the last virtual address.
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
    /// Whether `addr` lies in this segment.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.vaddr && addr < self.end()
    }
}

/// Who wrote the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Producer {
    /// The Linux kernel (a crash, or systemd-coredump).
    Kernel,
    /// gdb's `gcore` / `generate-core-file`.
    Gdb,
    /// A writer that is neither: no `NT_SIGINFO` and no `NT_FILE`, which
    /// every kernel since 3.7 writes. QEMU's user-mode emulator writes such
    /// cores of its guests (`qemu_<prog>_<date>_<pid>.core`).
    Other,
    /// pymortem's copy of a live process (`pymortem snapshot`, `--pid`):
    /// no thread crashed.
    Pymortem,
}

/// One thread of the core, from its `NT_PRSTATUS` note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreThread {
    /// Position among the PRSTATUS notes (0 is the first).
    pub index: usize,
    /// Kernel thread id.
    pub lwp: i32,
    /// Signal that stopped the thread.
    pub cursig: i16,
    /// General registers.
    pub registers: Registers,
    /// The `NT_SIGINFO` written for this thread, when the producer writes one per thread (gdb).
    pub siginfo: Option<SigInfo>,
}

impl CoreThread {
    /// The thread's `pthread_t` when the registers alone give it: on x86-64
    /// glibc it is the thread pointer. Elsewhere it takes memory: see
    /// `memory::threads`.
    pub fn pthread_id(&self) -> Option<u64> {
        match self.registers.arch() {
            ArchId::X86_64 => self.registers.thread_pointer(),
            _ => None,
        }
    }
}

/// How much of the core file is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// Size the program headers call for.
    pub expected_size: u64,
    /// Size of the file.
    pub actual_size: u64,
    /// Segments that are cut short or missing entirely.
    pub segments_affected: usize,
}

/// An opened core file.
#[derive(Debug)]
pub struct CoreFile {
    path: PathBuf,
    data: Arc<CoreBytes>,
    compression: Option<&'static str>,
    arch: ArchId,
    segments: Vec<Segment>,
    // The segments' first addresses, apart: the search for an address's
    // segment then reads one dense array.
    segment_starts: Vec<u64>,
    threads: Vec<CoreThread>,
    psinfo: Option<PsInfo>,
    siginfo: Option<SigInfo>,
    auxv: Auxv,
    files: Vec<FileMapping>,
    pac_mask: Option<u64>,
    producer: Producer,
    snapshot: Option<crate::live::SnapshotInfo>,
    truncation: Option<Truncation>,
    note_count: usize,
    unknown_notes: Vec<(String, u32)>,
    note_records: Vec<NoteRecord>,
    diagnostics: Vec<Diagnostic>,
}

impl CoreFile {
    /// Open a core file, decompressing it first if it is compressed.
    pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<CoreFile, OpenError> {
        let path = path.as_ref();
        let file = crate::regular_file::open_regular(path).map_err(|e| OpenError::io(path, e))?;
        let len = file.metadata().map_err(|e| OpenError::io(path, e))?.len();
        if len == 0 {
            return Err(OpenError::NotACore {
                path: path.into(),
                reason: "the file is empty".into(),
            });
        }
        let map =
            crate::mapped_file::map_read_only(path, &file).map_err(|e| OpenError::io(path, e))?;
        // The forensics read the heap in list order, which is random order:
        // with 4 KiB pages nearly every read misses the TLB. Pages read from
        // disk after this hint come in 2 MiB pieces where the file system
        // can cache them so (ext4 and XFS on Linux 6.x), and are mapped as
        // such: measured on a 150 MB core, `check` takes 12% less time. A
        // core already cached in small pieces stays as it is; the hint is
        // only a hint.
        let _ = map.advise(memmap2::Advice::HugePage);
        let mut diagnostics = Vec::new();
        match compressed::detect(&map) {
            None => Self::from_parts(path, CoreBytes::Mapped(map), None, diagnostics),
            Some(format) => {
                drop(map);
                let out = compressed::decompress(path, format, options, &mut diagnostics)?;
                Self::from_parts(
                    path,
                    CoreBytes::Decompressed(out),
                    Some(format.name()),
                    diagnostics,
                )
            }
        }
    }

    /// Map and parse an opened core file (a live process's copy in an
    /// unnamed temporary file); `label` names it in messages.
    pub fn from_open_file(label: &Path, file: &std::fs::File) -> Result<CoreFile, OpenError> {
        let map =
            crate::mapped_file::map_read_only(label, file).map_err(|e| OpenError::io(label, e))?;
        Self::from_parts(label, CoreBytes::Mapped(map), None, Vec::new())
    }

    /// Parse a core held in memory (tests, fuzzing, mutation). `label` names
    /// it in messages.
    pub fn from_bytes(label: &Path, bytes: Vec<u8>) -> Result<CoreFile, OpenError> {
        if bytes.is_empty() {
            return Err(OpenError::NotACore {
                path: label.into(),
                reason: "the file is empty".into(),
            });
        }
        Self::from_parts(label, CoreBytes::Owned(bytes), None, Vec::new())
    }

    /// The core stored at `range` of `map` (a bundle's core member);
    /// `label` names it in messages, `compression` says how it was stored.
    pub fn from_shared(
        label: &Path,
        map: Arc<Mmap>,
        range: std::ops::Range<usize>,
        compression: Option<&'static str>,
        diagnostics: Vec<Diagnostic>,
    ) -> Result<CoreFile, OpenError> {
        if range.is_empty() {
            return Err(OpenError::NotACore {
                path: label.into(),
                reason: "the core is empty".into(),
            });
        }
        Self::from_parts(
            label,
            CoreBytes::Shared(map, range),
            compression,
            diagnostics,
        )
    }

    fn from_parts(
        path: &Path,
        data: CoreBytes,
        compression: Option<&'static str>,
        diagnostics: Vec<Diagnostic>,
    ) -> Result<CoreFile, OpenError> {
        let data = Arc::new(data);
        let parsed = parse(path, &data)?;
        let mut core = CoreFile {
            path: path.to_path_buf(),
            data,
            compression,
            arch: parsed.arch,
            segment_starts: parsed.segments.iter().map(|s| s.vaddr).collect(),
            segments: parsed.segments,
            threads: parsed.threads,
            psinfo: parsed.psinfo,
            siginfo: parsed.siginfo,
            auxv: parsed.auxv,
            files: parsed.files,
            pac_mask: parsed.pac_mask,
            producer: parsed.producer,
            snapshot: parsed.snapshot,
            truncation: parsed.truncation,
            note_count: parsed.note_count,
            unknown_notes: parsed.unknown_notes,
            note_records: parsed.note_records,
            diagnostics,
        };
        core.diagnostics.extend(parsed.diagnostics);
        Ok(core)
    }

    /// The path the core was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The compression format the core was stored in, if any.
    pub fn compression(&self) -> Option<&'static str> {
        self.compression
    }
    /// The raw (decompressed) bytes of the core file.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
    /// The processor architecture (from the ELF header's `e_machine`).
    pub fn arch(&self) -> ArchId {
        self.arch
    }
    /// `PT_LOAD` segments sorted by address.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
    /// Threads in note order; the first is the one the producer wrote first.
    pub fn threads(&self) -> &[CoreThread] {
        &self.threads
    }
    /// Process identity from `NT_PRPSINFO`.
    pub fn psinfo(&self) -> Option<&PsInfo> {
        self.psinfo.as_ref()
    }
    /// The signal that caused the dump (`NT_SIGINFO` of the crashing thread).
    pub fn siginfo(&self) -> Option<&SigInfo> {
        self.siginfo.as_ref()
    }
    /// The auxiliary vector.
    pub fn auxv(&self) -> &Auxv {
        &self.auxv
    }
    /// File mappings from `NT_FILE`.
    pub fn file_mappings(&self) -> &[FileMapping] {
        &self.files
    }
    /// The pointer-authentication instruction mask (`NT_ARM_PAC_MASK`):
    /// the bits of a signed code address that are not the address.
    pub fn pac_mask(&self) -> Option<u64> {
        self.pac_mask
    }
    /// A code address read from the process (a saved return address) with
    /// any pointer-authentication code removed.
    pub fn code_address(&self, value: u64) -> u64 {
        self.arch.code_address(value, self.pac_mask)
    }
    /// Who wrote the core.
    pub fn producer(&self) -> Producer {
        self.producer
    }
    /// How the core is truncated, if it is.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }
    /// Number of notes decoded.
    pub fn note_count(&self) -> usize {
        self.note_count
    }
    /// Notes pymortem does not decode, as (name, type).
    pub fn unknown_notes(&self) -> &[(String, u32)] {
        &self.unknown_notes
    }
    /// Every note in file order (up to 65536).
    pub fn note_records(&self) -> &[NoteRecord] {
        &self.note_records
    }
    /// Problems found while parsing.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// How pymortem copied the live process this core holds, if it did.
    pub fn snapshot(&self) -> Option<&crate::live::SnapshotInfo> {
        self.snapshot.as_ref()
    }

    /// The thread that crashed or triggered the dump.
    ///
    /// The kernel writes the dumping thread's PRSTATUS first; gdb writes the
    /// signalled thread first and gives every thread its own SIGINFO. A thread
    /// whose own SIGINFO carries the signal wins over note order.
    pub fn crashed_thread(&self) -> Option<&CoreThread> {
        // A live process's copy: its threads were stopped, none crashed.
        if self.snapshot.is_some() {
            return None;
        }
        let signalled = self
            .siginfo
            .map(|s| s.signo)
            .filter(|&signo| signo != 0)
            .and_then(|signo| {
                self.threads
                    .iter()
                    .find(|t| t.siginfo.is_some_and(|s| s.signo == signo))
            });
        signalled.or_else(|| self.threads.first())
    }

    /// The dumped bytes of the writable segments that start in `[start, end)`,
    /// with their addresses, at most `budget` bytes in all: what a scan of a
    /// module's `.data` and `.bss` reads, straight from the map.
    pub fn writable_bytes_in(
        &self,
        start: u64,
        end: u64,
        budget: u64,
    ) -> impl Iterator<Item = (u64, &[u8])> {
        let mut left = budget;
        self.segments
            .iter()
            .filter(move |s| s.perms.write && s.vaddr >= start && s.vaddr < end)
            .map_while(move |s| {
                if left == 0 {
                    return None;
                }
                let len = s.available.min(left);
                left -= len;
                let from = usize::try_from(s.file_offset).ok()?;
                let bytes = self.data.get(from..from.checked_add(len as usize)?)?;
                Some((s.vaddr, bytes))
            })
    }

    /// Index of the segment that contains `addr`.
    pub fn segment_index(&self, addr: u64) -> Option<usize> {
        let index = last_at_or_below(&self.segment_starts, addr);
        self.segments.get(index)?.contains(addr).then_some(index)
    }
}

/// The index of the last of the ascending `starts` that is at or below
/// `value` (0 when none is, or when `starts` is empty). Branch-free: the
/// addresses searched for (heap pointers) come in random order, and a
/// branch on each comparison would mispredict half the time.
pub fn last_at_or_below(starts: &[u64], value: u64) -> usize {
    let (mut base, mut len) = (0, starts.len());
    while len > 1 {
        let half = len / 2;
        if starts[base + half] <= value {
            base += half;
        }
        len -= half;
    }
    base
}

struct Parsed {
    arch: ArchId,
    note_records: Vec<NoteRecord>,
    segments: Vec<Segment>,
    threads: Vec<CoreThread>,
    psinfo: Option<PsInfo>,
    siginfo: Option<SigInfo>,
    auxv: Auxv,
    files: Vec<FileMapping>,
    pac_mask: Option<u64>,
    producer: Producer,
    snapshot: Option<crate::live::SnapshotInfo>,
    truncation: Option<Truncation>,
    note_count: usize,
    unknown_notes: Vec<(String, u32)>,
    diagnostics: Vec<Diagnostic>,
}

/// One note as it appears in the core, decoded or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoteRecord {
    /// The owner name without its NUL (`CORE`, `LINUX`, ...).
    pub name: String,
    /// The note type.
    pub n_type: u32,
    /// Length of the descriptor in bytes.
    pub desc_len: usize,
}

/// Note records kept for inspection; the count is still tracked past this.
const MAX_NOTE_RECORDS: usize = 1 << 16;

/// `NT_GDB_TDESC`: gdb's target description, written only by gcore.
const NT_GDB_TDESC: u32 = 0xff00_0000;

fn parse(path: &Path, data: &[u8]) -> Result<Parsed, OpenError> {
    let not_core = |reason: &str| OpenError::NotACore {
        path: path.into(),
        reason: reason.into(),
    };
    let header = elf::FileHeader64::<object::Endianness>::parse(data)
        .map_err(|e| not_core(&format!("bad ELF header ({e})")))?;
    let endian = header.endian().map_err(|e| not_core(&e.to_string()))?;
    if header.e_type(endian) != elf::ET_CORE {
        return Err(not_core(&format!(
            "ELF type {} is not ET_CORE",
            header.e_type(endian).0
        )));
    }
    let arch = ArchId::from_elf_machine(header.e_machine(endian).0);
    let Some(arch) = arch.filter(|_| object::Endian::is_little_endian(endian)) else {
        return Err(OpenError::Unsupported {
            path: path.into(),
            reason: format!(
                "machine {} (pymortem reads x86-64 and AArch64 little-endian cores)",
                header.e_machine(endian).0
            ),
        });
    };
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| not_core(&format!("bad program headers ({e})")))?;
    let mut diagnostics = Vec::new();
    let file_len = data.len() as u64;
    let mut segments = Vec::new();
    let mut expected_size = file_len;
    let mut segments_affected = 0;
    let mut notes = NoteState {
        arch: Some(arch),
        ..NoteState::default()
    };
    for ph in phdrs.iter().take(MAX_SEGMENTS) {
        let offset = ph.p_offset(endian);
        let filesz = ph.p_filesz(endian);
        let end = offset.saturating_add(filesz);
        let available = file_len.saturating_sub(offset).min(filesz);
        if end > file_len {
            expected_size = expected_size.max(end);
            segments_affected += 1;
        }
        match ph.p_type(endian) {
            elf::PT_LOAD => {
                let flags = ph.p_flags(endian).0;
                segments.push(Segment {
                    vaddr: ph.p_vaddr(endian),
                    memsz: ph.p_memsz(endian).max(filesz),
                    file_offset: offset,
                    filesz,
                    available,
                    perms: Perms {
                        read: flags & elf::PF_R.0 != 0,
                        write: flags & elf::PF_W.0 != 0,
                        execute: flags & elf::PF_X.0 != 0,
                    },
                });
            }
            elf::PT_NOTE => {
                let start = offset.min(file_len) as usize;
                let bytes = &data[start..start + available as usize];
                if available < filesz {
                    diagnostics.push(Diagnostic::warning(
                        DiagnosticSource::Core,
                        format!(
                            "the note segment at file offset {offset:#x} is cut short by truncation; \
                             notes after byte {available} are lost"
                        ),
                    ));
                }
                notes.walk(endian, ph.p_align(endian), bytes, &mut diagnostics);
            }
            _ => {}
        }
    }
    segments.sort_by_key(|s| s.vaddr);
    let truncation = (segments_affected > 0).then_some(Truncation {
        expected_size,
        actual_size: file_len,
        segments_affected,
    });
    if let Some(t) = &truncation {
        diagnostics.push(Diagnostic::warning(
            DiagnosticSource::Core,
            format!(
                "the core is truncated: {} of {} bytes present, {} segment{} cut short; \
                 everything still in the file stays readable",
                t.actual_size,
                t.expected_size,
                t.segments_affected,
                if t.segments_affected == 1 { "" } else { "s" }
            ),
        ));
    }
    if notes.threads.is_empty() {
        diagnostics.push(Diagnostic::warning(
            DiagnosticSource::Core,
            "the core has no NT_PRSTATUS notes, so no threads",
        ));
    }
    let producer = if notes.snapshot.is_some() {
        Producer::Pymortem
    } else if notes.saw_gdb_tdesc || notes.siginfo_count > 1 {
        Producer::Gdb
    } else if notes.siginfo_count == 0 && notes.files.is_empty() && !notes.threads.is_empty() {
        Producer::Other
    } else {
        Producer::Kernel
    };
    Ok(Parsed {
        arch,
        segments,
        threads: notes.threads,
        psinfo: notes.psinfo,
        siginfo: notes.siginfo,
        auxv: notes.auxv,
        files: notes.files,
        pac_mask: notes.pac_mask,
        producer,
        snapshot: notes.snapshot,
        truncation,
        note_count: notes.count,
        unknown_notes: notes.unknown,
        note_records: notes.records,
        diagnostics,
    })
}

#[derive(Default)]
struct NoteState {
    /// The core's architecture, which decodes the registers (always set).
    arch: Option<ArchId>,
    threads: Vec<CoreThread>,
    psinfo: Option<PsInfo>,
    siginfo: Option<SigInfo>,
    auxv: Auxv,
    files: Vec<FileMapping>,
    siginfo_count: usize,
    saw_gdb_tdesc: bool,
    snapshot: Option<crate::live::SnapshotInfo>,
    pac_mask: Option<u64>,
    count: usize,
    /// The note cap was reported: once per core, not once per note segment.
    cap_reported: bool,
    unknown: Vec<(String, u32)>,
    records: Vec<NoteRecord>,
}

impl NoteState {
    fn walk(
        &mut self,
        endian: object::Endianness,
        align: u64,
        bytes: &[u8],
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let mut iter = match NoteIterator::<elf::FileHeader64<object::Endianness>>::new(
            endian, align, bytes,
        ) {
            Ok(iter) => iter,
            Err(e) => {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticSource::Core,
                    format!("note segment skipped: {e}"),
                ));
                return;
            }
        };
        loop {
            if self.count >= MAX_NOTES {
                if !self.cap_reported {
                    self.cap_reported = true;
                    diagnostics.push(Diagnostic::warning(
                        DiagnosticSource::Core,
                        format!("more than {MAX_NOTES} notes; the rest are ignored"),
                    ));
                }
                return;
            }
            let note = match iter.next() {
                Ok(Some(note)) => note,
                Ok(None) => return,
                Err(e) => {
                    diagnostics.push(Diagnostic::warning(
                        DiagnosticSource::Core,
                        format!(
                            "note {} is damaged ({e}); the notes after it are lost",
                            self.count
                        ),
                    ));
                    return;
                }
            };
            self.count += 1;
            if self.records.len() < MAX_NOTE_RECORDS {
                self.records.push(NoteRecord {
                    name: String::from_utf8_lossy(note.name()).into_owned(),
                    n_type: note.n_type(endian).0,
                    desc_len: note.desc().len(),
                });
            }
            self.decode(note.name(), note.n_type(endian).0, note.desc(), diagnostics);
        }
    }

    fn decode(&mut self, name: &[u8], n_type: u32, desc: &[u8], diagnostics: &mut Vec<Diagnostic>) {
        let is_core = name == b"CORE" || name == b"LINUX";
        let bad = |what: &str, diagnostics: &mut Vec<Diagnostic>| {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Core,
                format!("{what} note is too short ({} bytes); ignored", desc.len()),
            ));
        };
        match (is_core, n_type) {
            (true, 1) => match self.arch.and_then(|arch| notes::parse_prstatus(arch, desc)) {
                Some(status) => self.threads.push(CoreThread {
                    index: self.threads.len(),
                    lwp: status.lwp,
                    cursig: status.cursig,
                    registers: status.registers,
                    siginfo: None,
                }),
                None => bad("NT_PRSTATUS", diagnostics),
            },
            (true, 3) => match notes::parse_prpsinfo(desc) {
                Some(info) => self.psinfo = Some(info),
                None => bad("NT_PRPSINFO", diagnostics),
            },
            (true, 6) => self.auxv = notes::parse_auxv(desc),
            (true, 0x5349_4749) => match notes::parse_siginfo(desc) {
                Some(info) => {
                    self.siginfo_count += 1;
                    // gdb writes one SIGINFO after each thread's PRSTATUS.
                    if let Some(thread) = self.threads.last_mut()
                        && thread.siginfo.is_none()
                    {
                        thread.siginfo = Some(info);
                    }
                    if self.siginfo.is_none_or(|s| s.signo == 0) {
                        self.siginfo = Some(info);
                    }
                }
                None => bad("NT_SIGINFO", diagnostics),
            },
            (true, 0x4649_4c45) => match notes::parse_nt_file(desc) {
                Some(files) => self.files = files,
                None => bad("NT_FILE", diagnostics),
            },
            // NT_ARM_TLS, after its thread's NT_PRSTATUS.
            (true, 0x401) => match crate::arch::aarch64::thread_pointer_note(desc) {
                Some(tp) => {
                    if let Some(thread) = self.threads.last_mut() {
                        thread.registers.set_thread_pointer(tp);
                    }
                }
                None => bad("NT_ARM_TLS", diagnostics),
            },
            // NT_ARM_PAC_MASK: the same for every thread.
            (true, 0x406) => match crate::arch::aarch64::pac_mask_note(desc) {
                Some(mask) => self.pac_mask = Some(mask),
                None => bad("NT_ARM_PAC_MASK", diagnostics),
            },
            (_, NT_GDB_TDESC) => self.saw_gdb_tdesc = true,
            _ if name == crate::live::SNAPSHOT_NOTE_NAME.as_bytes()
                && n_type == crate::live::SNAPSHOT_NOTE_TYPE =>
            {
                match crate::live::SnapshotInfo::from_note(desc) {
                    Some(info) => self.snapshot = Some(info),
                    None => bad("pymortem's snapshot", diagnostics),
                }
            }
            // FPREGSET, XSTATE, AArch64's SVE, debug registers, tagged-address
            // control and enabled PAC keys: known, not needed.
            (true, 2)
            | (true, 0x202)
            | (true, 0x205)
            | (true, 0x402..=0x405)
            | (true, 0x409)
            | (true, 0x40a) => {}
            _ => {
                let name = String::from_utf8_lossy(name).into_owned();
                if self.unknown.len() < 64
                    && !self.unknown.iter().any(|(n, t)| *n == name && *t == n_type)
                {
                    self.unknown.push((name, n_type));
                }
            }
        }
    }
}
