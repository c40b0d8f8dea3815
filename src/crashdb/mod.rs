//! The crash database: every core that `triage --db` reads, recorded once
//! by the content of its file, so that a fleet's crashes are grouped over
//! weeks of runs rather than one folder at a time.
//!
//! A crash is identified by its content id ([`content_hash`]): a core
//! copied twice is one crash, reached by two paths. Content ids cost as
//! much as the analysis, so they are taken only where a copy is possible:
//! each new core's [`fingerprint`] (a few of its pages) selects the
//! recorded crashes of the same size and fingerprint, and only then are
//! the content ids of both compared. A crash with no such candidate is
//! recorded with its fingerprint alone; its content id is taken from its
//! recorded path when a candidate copy turns up. Nothing is merged without
//! equal content ids.
//!
//! A path already recorded with the same size and modification time is not
//! read again, not even fingerprinted: a re-run over a thousand recorded
//! cores and ten new ones reads the ten. A core that cannot be read is
//! recorded too, with the error.
//!
//! The store is a trait, [`CrashStore`], with a SQLite file
//! ([`SqliteStore`]) and a PostgreSQL server ([`PostgresStore`]) behind it,
//! which record with one algorithm (`recording`). The schema is versioned
//! ([`SCHEMA_VERSION`]) and migrated forward on open, one step at a time;
//! a database written by a newer pymortem is refused
//! ([`CrashDbError::NewerSchema`]), never rewritten.
//!
//! This layer sits above [`triage`](crate::triage), whose results it
//! stores, and knows nothing of the command line.

mod columns;
mod content;
mod ingest;
mod postgres;
mod recording;
mod sqlite;

pub use content::{Fingerprint, content_hash, fingerprint};
pub use ingest::{Ingest, IngestSummary, Outcome, RECORD_BATCH, UnreadableCore};
pub use postgres::{PostgresStore, redact_url};
pub use sqlite::SqliteStore;

use std::path::{Path, PathBuf};

use crate::triage::CoreTriage;
use crate::triage::signature::{SIGNATURE_VERSION, SignatureParts};

/// The schema version this pymortem writes and reads. Older databases are
/// migrated to it on open; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 4;

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
    /// Other writers kept recording crashes of a core's fingerprint while
    /// this one compared content ids: nothing was recorded for it.
    #[error(
        "{path}: other writers kept recording crashes of its fingerprint meanwhile; \
         run again to record it"
    )]
    Contended {
        /// The core.
        path: PathBuf,
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
    /// Its fingerprint; `None` when the file could not be read (the path
    /// alone then identifies it).
    pub fingerprint: Option<String>,
    /// Its content id, when it was taken (a candidate copy was recorded).
    pub content_hash: Option<String>,
    /// The recorded crashes of its size and fingerprint whose content ids
    /// were compared with this file's (and differ): a crash of its
    /// fingerprint recorded meanwhile by another writer, not among these,
    /// makes the record [`Recorded::Unresolved`].
    pub compared: Vec<CrashId>,
    /// The crash's facts; `None` for a new path of a crash already recorded
    /// (by content), which is linked to it.
    pub facts: Option<CrashFacts>,
}

/// A recorded crash that may have a file's content: the same size and
/// fingerprint, or recorded before fingerprints were (schema 3 and older)
/// with the same size and a content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The crash.
    pub id: CrashId,
    /// Its content id, when taken.
    pub content_hash: Option<String>,
    /// Some of its paths with their recorded stamps: where its content id
    /// can be taken (from a file whose stamp is unchanged).
    pub paths: Vec<(PathBuf, FileStamp)>,
}

/// The most paths of a [`Candidate`] listed.
pub const CANDIDATE_PATHS: usize = 8;

/// The most candidates recorded before fingerprints (schema 3 and older)
/// listed for one size. A copy of a crash beyond them is still linked by
/// its content id when recorded, only after it was read. Every crash of
/// the fingerprint is listed: the content id of each is taken at most
/// once, so crafted cores sharing one cost no more than content ids of all.
pub const MAX_CANDIDATES: usize = 64;

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
    /// Nothing yet: another writer recorded a crash of the same size and
    /// fingerprint meanwhile, whose content id must be compared first.
    Unresolved,
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
    /// The stamps the paths were recorded with (`None`: not recorded), in
    /// their order.
    fn path_stamps(&mut self, paths: &[PathBuf]) -> Result<Vec<Option<FileStamp>>, CrashDbError>;
    /// For each fingerprint, the crashes that may have the content of its
    /// file: all of its fingerprint, and up to [`MAX_CANDIDATES`] of its
    /// size recorded without one. Paths are listed only for crashes without
    /// a content id.
    fn candidates(&mut self, prints: &[Fingerprint]) -> Result<Vec<Vec<Candidate>>, CrashDbError>;
    /// Store a crash's content id, taken from one of its paths. Nothing is
    /// stored when the crash has one, or another crash has this one.
    fn set_content(&mut self, id: CrashId, content_hash: &str) -> Result<(), CrashDbError>;
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
