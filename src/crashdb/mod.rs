//! The crash database: every core that `triage --db` reads, recorded once
//! by the content of its file, so that a fleet's crashes are grouped over
//! weeks of runs rather than one folder at a time.
//!
//! A crash is identified by the SHA-256 of its file's bytes (a core copied
//! twice is one crash, reached by two paths). A path already recorded with
//! the same size and modification time is not read again, not even hashed:
//! a re-run over a thousand recorded cores and ten new ones reads the ten.
//! A core that cannot be read is recorded too, with the error.
//!
//! The store is a trait, [`CrashStore`], so that a server database can take
//! SQLite's place with the same schema; [`SqliteStore`] is the one there is.
//! The schema is versioned ([`SCHEMA_VERSION`]) and migrated forward on
//! open, one step at a time; a database written by a newer pymortem is
//! refused ([`CrashDbError::NewerSchema`]), never rewritten.
//!
//! This layer sits above [`triage`](crate::triage), whose results it
//! stores, and knows nothing of the command line.

mod columns;
mod ingest;
mod postgres;
mod sqlite;

pub use ingest::{Ingest, IngestSummary, Outcome, RECORD_BATCH, UnreadableCore};
pub use postgres::{PostgresStore, redact_url};
pub use sqlite::SqliteStore;

use std::path::{Path, PathBuf};

use crate::triage::CoreTriage;
use crate::triage::signature::{SIGNATURE_VERSION, SignatureParts};

/// The schema version this pymortem writes and reads. Older databases are
/// migrated to it on open; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 3;

/// The pymortem version recorded beside each crash.
pub const PYMORTEM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the crash database could not be used. `location` is the database's
/// file, or its server URL without the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrashDbError {
    /// The database engine failed (a locked, damaged or unwritable file, a
    /// server that cannot be reached or refuses the login).
    #[error("{location}: {source}")]
    Database {
        /// The database.
        location: String,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was written by a newer pymortem, with a schema this one
    /// does not know: it is not touched.
    #[error(
        "{location}: the crash database has schema version {found}, newer than this pymortem \
         knows ({known}): use a newer pymortem (or another database)"
    )]
    NewerSchema {
        /// The database.
        location: String,
        /// Its schema version.
        found: u32,
        /// The newest this pymortem knows, [`SCHEMA_VERSION`].
        known: u32,
    },
    /// The database is one of something else.
    #[error("{location}: not a pymortem crash database: {reason}")]
    NotACrashDatabase {
        /// The database.
        location: String,
        /// What shows it.
        reason: String,
    },
    /// There is no database at the path (only recording creates one).
    #[error("{location}: no crash database there (`pymortem triage --db` creates one)")]
    NotFound {
        /// The path.
        location: String,
    },
    /// The URL is not one pymortem can open.
    #[error("{location}: {reason}")]
    BadUrl {
        /// The URL, without its password.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A path was to be linked to a crash by content, but no crash has it.
    #[error("{path}: no recorded crash has its content {content_hash}")]
    UnknownContent {
        /// The path.
        path: PathBuf,
        /// The content hash.
        content_hash: String,
    },
}

/// A file's size and modification time: a recorded path whose stamp is
/// unchanged is taken as the same file and not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The stamp of `path` (following symlinks, as the folder walk does).
pub fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp {
        size: meta.len(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
    })
}

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

/// What is recorded of one crash: triage's facts, or why its core could
/// not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashFacts {
    /// The machine, when the caller knows it (a core does not record its
    /// host name).
    pub host: Option<String>,
    /// The boot id of a systemd-coredump file name.
    pub boot_id: Option<String>,
    /// When it crashed, Unix seconds.
    pub time: Option<u64>,
    /// CPython version.
    pub python_version: Option<String>,
    /// The signal's name.
    pub signal: Option<String>,
    /// The fatal error's message.
    pub fatal_error: Option<String>,
    /// The signature id (null for an unreadable core).
    pub signature: Option<String>,
    /// Its text.
    pub signature_text: Option<String>,
    /// The signature algorithm's version.
    pub signature_version: Option<u32>,
    /// Kinds of error and warning findings, sorted.
    pub finding_kinds: Vec<String>,
    /// The checks' verdict, as in JSON (`clean`, `suspicious`, …).
    pub verdict: Option<String>,
    /// The checks that could not run, as in JSON.
    pub unchecked: Vec<String>,
    /// Top Python frames, innermost first.
    pub python_frames: Vec<String>,
    /// Top native frames, innermost first.
    pub native_frames: Vec<String>,
    /// The crashing thread's stack, one line per frame, innermost first.
    pub stack: Vec<String>,
    /// The error and warning findings, one line each.
    pub findings: Vec<String>,
    /// Why the core could not be read; the other facts are then empty.
    pub error: Option<String>,
}

/// A serde enum's JSON name.
fn json_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl CrashFacts {
    /// The facts of a triaged core.
    pub fn triaged(core: &CoreTriage, host: Option<&str>) -> CrashFacts {
        CrashFacts {
            host: host.map(String::from),
            boot_id: crate::triage::coredump_name(&core.path).map(|n| n.boot_id),
            time: core.time,
            python_version: core.python_version.clone(),
            signal: core.signal.clone(),
            fatal_error: core.fatal_error.clone(),
            signature: Some(core.signature.clone()),
            signature_text: Some(core.signature_text.clone()),
            signature_version: Some(SIGNATURE_VERSION),
            finding_kinds: core.finding_kinds.clone(),
            verdict: core.verdict.map(|v| v.as_str().to_string()),
            unchecked: core.unchecked.iter().map(json_name).collect(),
            python_frames: core.python_frames.clone(),
            native_frames: core.native_frames.clone(),
            stack: core.stack.clone(),
            findings: core.findings.clone(),
            error: None,
        }
    }

    /// A core that could not be read, and why.
    pub fn unreadable(path: &Path, error: &str, host: Option<&str>) -> CrashFacts {
        CrashFacts {
            host: host.map(String::from),
            boot_id: crate::triage::coredump_name(path).map(|n| n.boot_id),
            time: crate::triage::crash_time(path),
            error: Some(error.to_string()),
            ..CrashFacts::default()
        }
    }
}

/// One file to record.
#[derive(Debug, Clone)]
pub struct Record {
    /// The file.
    pub path: PathBuf,
    /// Its stamp when it was read.
    pub stamp: FileStamp,
    /// Its content hash; `None` when the file could not even be read whole
    /// (the path alone then identifies it).
    pub content_hash: Option<String>,
    /// The crash's facts; `None` for a new path of a crash already recorded
    /// (by content), which is linked to it.
    pub facts: Option<CrashFacts>,
}

/// What recording one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new crash.
    NewCrash,
    /// A new path (or a changed file) of a crash recorded before: a copy.
    NewPath,
    /// Nothing: the path was recorded meanwhile with the same stamp
    /// (another process recording the same folder).
    AlreadyRecorded,
}

/// A crash's id in its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrashId(
    /// The store's own id of the row.
    pub i64,
);

/// Which groups to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupQuery {
    /// Only crashes at or after this time (Unix seconds); crashes of
    /// unknown time are then left out.
    pub since: Option<u64>,
    /// At most this many groups, largest first.
    pub limit: Option<usize>,
}

/// A group of the stored crashes.
#[derive(Debug, Clone)]
pub struct StoredGroup {
    /// The signature id.
    pub signature: String,
    /// Its text.
    pub signature_text: String,
    /// Crashes in it (distinct contents).
    pub count: u64,
    /// Earliest crash time.
    pub first_seen: Option<u64>,
    /// Latest crash time.
    pub last_seen: Option<u64>,
    /// CPython versions seen, sorted.
    pub python_versions: Vec<String>,
    /// Hosts seen, sorted.
    pub hosts: Vec<String>,
    /// Distinct boot ids seen (systemd-coredump names).
    pub boots: u64,
    /// A path of one of its crashes.
    pub example: Option<PathBuf>,
    /// That crash (the group's first recorded).
    pub example_id: CrashId,
    /// The signature's parts, from that crash.
    pub parts: SignatureParts,
}

/// The groups of a store, and what the listing covers.
#[derive(Debug, Clone)]
pub struct GroupList {
    /// Crashes read (matching the query's time bound).
    pub crashes: u64,
    /// Cores recorded as unreadable (matching it).
    pub unreadable: u64,
    /// Groups in all, before the limit.
    pub total_groups: u64,
    /// The groups, largest first (ties by signature).
    pub groups: Vec<StoredGroup>,
}

/// A crash stored under an older signature algorithm.
#[derive(Debug, Clone)]
pub struct StaleCrash {
    /// Its id.
    pub id: CrashId,
    /// What its signature is made of.
    pub parts: SignatureParts,
}

/// One recorded crash, as a listing shows it.
#[derive(Debug, Clone)]
pub struct StoredCrash {
    /// Its id.
    pub id: CrashId,
    /// Its signature id (`None` for an unreadable core).
    pub signature: Option<String>,
    /// When it crashed, Unix seconds.
    pub time: Option<u64>,
    /// The machine.
    pub host: Option<String>,
    /// CPython version.
    pub python_version: Option<String>,
    /// The checks' verdict.
    pub verdict: Option<String>,
    /// Why its core could not be read.
    pub error: Option<String>,
    /// Its first path (by byte order).
    pub path: Option<PathBuf>,
}

/// What is stored of one crash beyond its listing: its stack and findings.
#[derive(Debug, Clone, Default)]
pub struct CrashDetail {
    /// The signal's name.
    pub signal: Option<String>,
    /// The fatal error's message.
    pub fatal_error: Option<String>,
    /// The checks' verdict.
    pub verdict: Option<String>,
    /// The checks that could not run.
    pub unchecked: Vec<String>,
    /// Kinds of error and warning findings.
    pub finding_kinds: Vec<String>,
    /// The crashing thread's stack, one line per frame (empty for crashes
    /// recorded before schema version 3: their top frames are in `parts`).
    pub stack: Vec<String>,
    /// The error and warning findings, one line each.
    pub findings: Vec<String>,
    /// The signature's parts.
    pub parts: SignatureParts,
    /// Its paths, by byte order.
    pub paths: Vec<PathBuf>,
}

/// Where crashes are recorded: a SQLite file ([`SqliteStore`]) or a
/// PostgreSQL server ([`PostgresStore`]), with the same schema.
pub trait CrashStore: Send {
    /// The database's file, or its URL without the password.
    fn location(&self) -> String;
    /// The schema version of the open database.
    fn schema_version(&mut self) -> Result<u32, CrashDbError>;
    /// The stamp a path was recorded with, if it was.
    fn path_stamp(&mut self, path: &Path) -> Result<Option<FileStamp>, CrashDbError>;
    /// Whether a crash with this content is recorded.
    fn has_content(&mut self, content_hash: &str) -> Result<bool, CrashDbError>;
    /// Record files, in one transaction; each says what it did. Safe
    /// against other writers: a content or a path is never recorded twice.
    fn record(&mut self, records: &[Record]) -> Result<Vec<Recorded>, CrashDbError>;
    /// The read crashes whose signature is of an older algorithm version
    /// than `version`.
    fn stale_signatures(&mut self, version: u32) -> Result<Vec<StaleCrash>, CrashDbError>;
    /// Set crashes' signatures (text, id) of algorithm `version`.
    fn set_signatures(
        &mut self,
        version: u32,
        signatures: &[(CrashId, String, String)],
    ) -> Result<(), CrashDbError>;
    /// The groups of the recorded crashes.
    fn groups(&mut self, query: &GroupQuery) -> Result<GroupList, CrashDbError>;
    /// Every recorded crash matching the query's time bound (its limit is
    /// not used), oldest first.
    fn crashes(&mut self, query: &GroupQuery) -> Result<Vec<StoredCrash>, CrashDbError>;
    /// A crash's stack, findings and paths.
    fn crash_detail(&mut self, id: CrashId) -> Result<CrashDetail, CrashDbError>;
}

/// Whether `url` names a PostgreSQL server rather than a SQLite file.
pub fn is_server_url(url: &str) -> bool {
    url.starts_with("postgresql://") || url.starts_with("postgres://")
}

/// Open the crash database `url` names: a `postgresql://` URL, or the path
/// of a SQLite file. With `create`, a missing SQLite file is created (and
/// a server database given its tables); else it must exist.
pub fn open_store(url: &str, create: bool) -> Result<Box<dyn CrashStore>, CrashDbError> {
    if is_server_url(url) {
        return Ok(Box::new(PostgresStore::connect(url)?));
    }
    let path = Path::new(url);
    Ok(Box::new(if create {
        SqliteStore::open(path)?
    } else {
        SqliteStore::open_existing(path)?
    }))
}

/// What [`regroup`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regrouped {
    /// Crashes given the current algorithm's signature from their stored parts.
    pub regrouped: usize,
    /// Crashes whose stored parts do not suffice: they keep their old
    /// signature until their cores are read again.
    pub kept: usize,
}

/// Give every crash recorded under an older signature algorithm the
/// current one, from its stored parts, without reading its core.
pub fn regroup(store: &mut dyn CrashStore) -> Result<Regrouped, CrashDbError> {
    let stale = store.stale_signatures(SIGNATURE_VERSION)?;
    let mut updates = Vec::new();
    let mut kept = 0;
    for crash in &stale {
        match crate::triage::signature::from_parts(&crash.parts) {
            Some((text, id)) => updates.push((crash.id, text, id)),
            None => kept += 1,
        }
    }
    if !updates.is_empty() {
        store.set_signatures(SIGNATURE_VERSION, &updates)?;
    }
    Ok(Regrouped {
        regrouped: updates.len(),
        kept,
    })
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
