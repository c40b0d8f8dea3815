//! The crash database in one SQLite file.
//!
//! Several `triage --db` processes may write one database at once: it is in
//! WAL mode (readers never wait for the writer), each writer waits up to
//! [`BUSY_TIMEOUT`] for the write lock, every write transaction takes that
//! lock when it begins (`BEGIN IMMEDIATE`, so a check and the insert that
//! follows it see the same rows), a content id is `UNIQUE` and a path is
//! the key of its row: a crash or a path is never recorded twice.
//!
//! Schema (version 4):
//!
//! - `crashes`: one row per content: `content_hash` (its content id; null
//!   until a candidate copy made it worth taking, or for a file that could
//!   not be read), `fingerprint` (since version 4; null for a file that
//!   could not be read, and for crashes recorded before), `size`,
//!   `recorded_at` (Unix seconds), `pymortem_version`, `error` (why the core
//!   could not be read; null otherwise), `crash_time`, `python_version`,
//!   `signal`, `fatal_error`, `signature`, `signature_text`,
//!   `signature_version`, `finding_kinds` (JSON array), `verdict`,
//!   `top_frames` (JSON: `{"python": [...], "native": [...]}`), and since
//!   version 2 `host`, `boot_id` and `unchecked` (JSON array).
//! - `paths`: one row per file path (bytes, as the file system has them):
//!   its `size` and `mtime_ns` when read, and its `crash_id`.
//!
//! `PRAGMA user_version` holds the schema version and `PRAGMA
//! application_id` marks the file as a pymortem crash database.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::columns::{
    CRASH_COLUMNS, CrashColumns, i64_of, list_of_json, signature_parts, sorted_strings, u64_of,
};
use super::recording::{Lookup, RecordingTx, record_in};
use super::{
    CANDIDATE_PATHS, Candidate, CrashDbError, CrashDetail, CrashId, CrashStore, FileStamp,
    Fingerprint, GroupList, GroupQuery, MAX_CANDIDATES, Record, Recorded, SCHEMA_VERSION,
    StaleCrash, StoredCrash, StoredGroup,
};

/// How long a writer waits for another's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// `PRAGMA application_id` of a pymortem crash database: "pyMm".
pub const APPLICATION_ID: i32 = 0x7079_4d6d;

/// A crash database in a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

/// One migration: the schema from version N to N+1, inside the
/// transaction that sets `user_version` to N+1.
type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// `MIGRATIONS[n]` takes the schema from version n to n+1.
const MIGRATIONS: [Migration; SCHEMA_VERSION as usize] = [to_v1, to_v2, to_v3, to_v4];

/// Version 1: crashes by content, paths to them.
fn to_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         CREATE TABLE crashes (
             id INTEGER PRIMARY KEY,
             content_hash TEXT UNIQUE,
             size INTEGER NOT NULL,
             recorded_at INTEGER NOT NULL,
             pymortem_version TEXT NOT NULL,
             error TEXT,
             crash_time INTEGER,
             python_version TEXT,
             signal TEXT,
             fatal_error TEXT,
             signature TEXT,
             signature_text TEXT,
             signature_version INTEGER,
             finding_kinds TEXT NOT NULL DEFAULT '[]',
             verdict TEXT,
             top_frames TEXT NOT NULL DEFAULT '{{\"python\":[],\"native\":[]}}'
         );
         CREATE INDEX crashes_by_signature ON crashes(signature);
         CREATE TABLE paths (
             path BLOB PRIMARY KEY,
             size INTEGER NOT NULL,
             mtime_ns INTEGER NOT NULL,
             crash_id INTEGER NOT NULL REFERENCES crashes(id)
         );
         CREATE INDEX paths_by_crash ON paths(crash_id);"
    ))
}

/// Version 2: the host, the boot id and the checks that could not run; the
/// boot id of crashes recorded before is taken from their paths' names.
fn to_v2(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE crashes ADD COLUMN host TEXT;
         ALTER TABLE crashes ADD COLUMN boot_id TEXT;
         ALTER TABLE crashes ADD COLUMN unchecked TEXT NOT NULL DEFAULT '[]';
         CREATE INDEX crashes_by_time ON crashes(crash_time);",
    )?;
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut statement = tx.prepare("SELECT crash_id, path FROM paths ORDER BY path")?;
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut update =
        tx.prepare("UPDATE crashes SET boot_id = ?2 WHERE id = ?1 AND boot_id IS NULL")?;
    for (id, path) in rows {
        let path = path_of_bytes(path);
        if let Some(name) = crate::triage::coredump_name(&path) {
            update.execute(params![id, name.boot_id])?;
        }
    }
    Ok(())
}

/// Version 3: the crashing thread's stack and the findings, one line each
/// (JSON arrays), for the report's representative crash of a group.
fn to_v3(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE crashes ADD COLUMN stack TEXT NOT NULL DEFAULT '[]';
         ALTER TABLE crashes ADD COLUMN findings TEXT NOT NULL DEFAULT '[]';",
    )
}

/// Version 4: each crash's fingerprint, which selects the crashes whose
/// content ids are compared with a new core's. Crashes recorded before have
/// none; they are found by size and content id.
fn to_v4(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE crashes ADD COLUMN fingerprint TEXT;
         CREATE INDEX crashes_by_fingerprint ON crashes(fingerprint);
         CREATE INDEX crashes_by_size ON crashes(size) WHERE fingerprint IS NULL;",
    )
}

impl SqliteStore {
    /// Open the database at `path`, creating it when there is none, and
    /// migrate it to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<SqliteStore, CrashDbError> {
        Self::open_with(path, true)
    }

    /// Open an existing database (an error when there is none), migrating it.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, CrashDbError> {
        if !path.exists() {
            return Err(CrashDbError::NotFound {
                location: path.display().to_string(),
            });
        }
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<SqliteStore, CrashDbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_error(path, e))?;
        let mut store = SqliteStore {
            conn,
            path: path.into(),
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.error(e))?;
        // A newer or foreign database is refused before anything is
        // written to it, the journal mode included.
        store.precheck()?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn error(&self, e: rusqlite::Error) -> CrashDbError {
        db_error(&self.path, e)
    }

    /// Refuse a database of a newer schema, or of something else.
    fn precheck(&self) -> Result<(), CrashDbError> {
        // One read transaction: the version and the tables of one moment,
        // not a version read before another process's creation commits and
        // tables after it.
        let snapshot = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.error(e))?;
        let found = Self::user_version(&snapshot).map_err(|e| self.error(e))?;
        self.check_version(found)?;
        if found == 0 {
            self.check_empty()?;
        } else {
            self.check_application_id()?;
        }
        snapshot.commit().map_err(|e| self.error(e))
    }

    /// A database of no schema version must hold nothing: else it is
    /// something else's.
    fn check_empty(&self) -> Result<(), CrashDbError> {
        let tables: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        if tables > 0 {
            return Err(CrashDbError::NotACrashDatabase {
                location: self.location(),
                reason: format!(
                    "it holds {tables} tables or indexes but no pymortem schema version"
                ),
            });
        }
        Ok(())
    }

    /// WAL and foreign keys.
    fn configure(&mut self) -> Result<(), CrashDbError> {
        // Turning WAL on takes a lock the busy handler may not wait for:
        // retried while another process holds it. Where WAL cannot be had
        // (a file system without shared memory) the rollback journal stays:
        // slower for concurrent writers, as correct.
        for attempt in 0.. {
            let mode = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0));
            match mode {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") || attempt >= 50 => break,
                Err(e) if !is_busy(&e) => return Err(self.error(e)),
                Err(_) if attempt >= 600 => break,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.error(e))
    }

    fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    }

    /// Bring the schema to [`SCHEMA_VERSION`], one migration at a time, in
    /// one transaction that holds the write lock (a concurrent opener waits,
    /// then finds the work done); refuse a newer schema.
    fn migrate(&mut self) -> Result<(), CrashDbError> {
        let found = Self::user_version(&self.conn).map_err(|e| self.error(e))?;
        self.check_version(found)?;
        if found == i64::from(SCHEMA_VERSION) {
            return self.check_application_id();
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let found = Self::user_version(&tx).map_err(|e| db_error(&path, e))?;
        let found_u32 = u32::try_from(found).unwrap_or(u32::MAX);
        if found_u32 > SCHEMA_VERSION {
            return Err(CrashDbError::NewerSchema {
                location: path.display().to_string(),
                found: found_u32,
                known: SCHEMA_VERSION,
            });
        }
        if found == 0 {
            // A new database has no tables; a database of something else does.
            let tables: i64 = tx
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| db_error(&path, e))?;
            if tables > 0 {
                return Err(CrashDbError::NotACrashDatabase {
                    location: path.display().to_string(),
                    reason: format!(
                        "it holds {tables} tables or indexes but no pymortem schema version"
                    ),
                });
            }
        }
        for version in found_u32..SCHEMA_VERSION {
            MIGRATIONS[version as usize](&tx).map_err(|e| db_error(&path, e))?;
            tx.pragma_update(None, "user_version", version + 1)
                .map_err(|e| db_error(&path, e))?;
        }
        tx.commit().map_err(|e| db_error(&path, e))?;
        self.check_application_id()
    }

    fn check_version(&self, found: i64) -> Result<(), CrashDbError> {
        match u32::try_from(found) {
            Ok(v) if v <= SCHEMA_VERSION => Ok(()),
            _ => Err(CrashDbError::NewerSchema {
                location: self.location(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                known: SCHEMA_VERSION,
            }),
        }
    }

    fn check_application_id(&self) -> Result<(), CrashDbError> {
        let id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        if id == APPLICATION_ID {
            Ok(())
        } else {
            Err(CrashDbError::NotACrashDatabase {
                location: self.location(),
                reason: format!("its application id is {id:#x}, not pymortem's"),
            })
        }
    }
}

/// A write transaction holding the write lock from its start (`BEGIN
/// IMMEDIATE`): what it reads stays true until it commits.
fn begin_write<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<rusqlite::Transaction<'c>, CrashDbError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_error(path, e))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn db_error(path: &Path, e: rusqlite::Error) -> CrashDbError {
    CrashDbError::Database {
        location: path.display().to_string(),
        source: Box::new(e),
    }
}

/// A group's aggregate row: signature, count, first and last time, Python
/// versions and hosts (JSON arrays), distinct boots, an example crash's id.
type GroupRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
    i64,
);

/// A write transaction's statements for [`record_in`].
struct SqliteRecording<'a, 'c> {
    tx: &'a rusqlite::Transaction<'c>,
    path: &'a Path,
}

impl RecordingTx for SqliteRecording<'_, '_> {
    fn look_up(
        &mut self,
        path: &Path,
        content_hash: Option<&str>,
        fingerprint: Option<&str>,
    ) -> Result<Lookup, CrashDbError> {
        // In-process statements: one per question costs nothing.
        let err = |e| db_error(self.path, e);
        let stamp = stamp_of(self.tx, path).map_err(err)?;
        let with_content = match content_hash {
            Some(hash) => self
                .tx
                .prepare_cached("SELECT id FROM crashes WHERE content_hash = ?1")
                .and_then(|mut s| s.query_row(params![hash], |r| r.get(0)).optional())
                .map_err(err)?
                .map(CrashId),
            None => None,
        };
        let with_fingerprint = match fingerprint {
            Some(fingerprint) => self
                .tx
                .prepare_cached("SELECT id FROM crashes WHERE fingerprint = ?1")
                .and_then(|mut s| {
                    s.query_map(params![fingerprint], |r| r.get(0).map(CrashId))?
                        .collect()
                })
                .map_err(err)?,
            None => Vec::new(),
        };
        Ok(Lookup {
            stamp,
            with_content,
            with_fingerprint,
        })
    }

    fn insert_crash(
        &mut self,
        c: &CrashColumns,
        path: &Path,
        stamp: FileStamp,
    ) -> Result<Option<CrashId>, CrashDbError> {
        let inserted = self
            .tx
            .execute(
                &format!(
                    "INSERT INTO crashes ({CRASH_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17, ?18, ?19, ?20, ?21)
                     ON CONFLICT(content_hash) DO NOTHING"
                ),
                params![
                    c.content_hash,
                    c.size,
                    c.recorded_at,
                    c.pymortem_version,
                    c.error,
                    c.crash_time,
                    c.python_version,
                    c.signal,
                    c.fatal_error,
                    c.signature,
                    c.signature_text,
                    c.signature_version,
                    c.finding_kinds,
                    c.verdict,
                    c.top_frames,
                    c.host,
                    c.boot_id,
                    c.unchecked,
                    c.stack,
                    c.findings,
                    c.fingerprint,
                ],
            )
            .map_err(|e| db_error(self.path, e))?;
        if inserted != 1 {
            return Ok(None);
        }
        let crash = CrashId(self.tx.last_insert_rowid());
        self.set_path(path, stamp, crash)?;
        Ok(Some(crash))
    }

    fn set_path(
        &mut self,
        path: &Path,
        stamp: FileStamp,
        crash: CrashId,
    ) -> Result<(), CrashDbError> {
        self.tx
            .execute(
                "INSERT INTO paths (path, size, mtime_ns, crash_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(path) DO UPDATE SET size = excluded.size,
                     mtime_ns = excluded.mtime_ns, crash_id = excluded.crash_id",
                params![
                    path.as_os_str().as_bytes(),
                    i64_of(stamp.size),
                    stamp.mtime_ns,
                    crash.0
                ],
            )
            .map(drop)
            .map_err(|e| db_error(self.path, e))
    }
}

/// The stamp `path` is recorded with, if it is.
fn stamp_of(conn: &Connection, path: &Path) -> rusqlite::Result<Option<FileStamp>> {
    conn.prepare_cached("SELECT size, mtime_ns FROM paths WHERE path = ?1")?
        .query_row(params![path.as_os_str().as_bytes()], |r| {
            Ok(FileStamp {
                size: u64_of(r.get(0)?),
                mtime_ns: r.get(1)?,
            })
        })
        .optional()
}

impl SqliteStore {
    /// The recorded paths of a crash (at most [`CANDIDATE_PATHS`]).
    fn candidate_paths(&self, id: i64) -> rusqlite::Result<Vec<(PathBuf, FileStamp)>> {
        self.conn
            .prepare_cached(
                "SELECT path, size, mtime_ns FROM paths WHERE crash_id = ?1
                 ORDER BY path LIMIT ?2",
            )?
            .query_map(params![id, CANDIDATE_PATHS as i64], |r| {
                Ok((
                    path_of_bytes(r.get(0)?),
                    FileStamp {
                        size: u64_of(r.get(1)?),
                        mtime_ns: r.get(2)?,
                    },
                ))
            })?
            .collect()
    }
}

impl CrashStore for SqliteStore {
    fn location(&self) -> String {
        SqliteStore::location(self)
    }

    fn schema_version(&mut self) -> Result<u32, CrashDbError> {
        let v = Self::user_version(&self.conn).map_err(|e| self.error(e))?;
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn path_stamps(&mut self, paths: &[PathBuf]) -> Result<Vec<Option<FileStamp>>, CrashDbError> {
        paths
            .iter()
            .map(|path| stamp_of(&self.conn, path).map_err(|e| self.error(e)))
            .collect()
    }

    fn candidates(&mut self, prints: &[Fingerprint]) -> Result<Vec<Vec<Candidate>>, CrashDbError> {
        let err = |e| db_error(&self.path, e);
        // One statement for the whole list (a JSON array of [fingerprint,
        // size]): a statement per core costs more than the lookups.
        let list = serde_json::Value::from(
            prints
                .iter()
                .map(|p| serde_json::json!([p.id, i64_of(p.size)]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let rows: Vec<(usize, i64, Option<String>)> = self
            .conn
            .prepare_cached(
                "WITH q(i, fingerprint, size) AS (
                     SELECT key, value ->> 0, value ->> 1 FROM json_each(?1)
                 )
                 SELECT q.i, c.id, c.content_hash
                 FROM q JOIN crashes c ON c.fingerprint = q.fingerprint
                 UNION ALL
                 SELECT i, id, content_hash FROM (
                     SELECT q.i AS i, c.id AS id, c.content_hash AS content_hash,
                         row_number() OVER (PARTITION BY q.i ORDER BY c.id) AS n
                     FROM q JOIN crashes c ON c.size = q.size AND c.fingerprint IS NULL
                         AND c.content_hash IS NOT NULL
                 ) WHERE n <= ?2
                 ORDER BY 1, 2",
            )
            .and_then(|mut s| {
                s.query_map(params![list, MAX_CANDIDATES as i64], |r| {
                    Ok((
                        usize::try_from(r.get::<_, i64>(0)?).unwrap_or(usize::MAX),
                        r.get(1)?,
                        r.get(2)?,
                    ))
                })?
                .collect()
            })
            .map_err(err)?;
        let mut found: Vec<Vec<Candidate>> = vec![Vec::new(); prints.len()];
        for (i, id, content_hash) in rows {
            // A crash with a content id needs no path to take it from.
            let paths = match content_hash {
                Some(_) => Vec::new(),
                None => self.candidate_paths(id).map_err(err)?,
            };
            if let Some(list) = found.get_mut(i) {
                list.push(Candidate {
                    id: CrashId(id),
                    content_hash,
                    paths,
                });
            }
        }
        Ok(found)
    }

    fn set_content(&mut self, id: CrashId, content_hash: &str) -> Result<(), CrashDbError> {
        let path = self.path.clone();
        let err = |e| db_error(&path, e);
        let tx = begin_write(&mut self.conn, &path)?;
        tx.execute(
            "UPDATE crashes SET content_hash = ?2 WHERE id = ?1 AND content_hash IS NULL
                 AND NOT EXISTS (SELECT 1 FROM crashes WHERE content_hash = ?2)",
            params![id.0, content_hash],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn record(&mut self, records: &[Record]) -> Result<Vec<Recorded>, CrashDbError> {
        let path = self.path.clone();
        let tx = begin_write(&mut self.conn, &path)?;
        let outcomes = record_in(
            &mut SqliteRecording {
                tx: &tx,
                path: &path,
            },
            records,
        )?;
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(outcomes)
    }

    fn stale_signatures(&mut self, version: u32) -> Result<Vec<StaleCrash>, CrashDbError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, fatal_error, signal, top_frames, finding_kinds FROM crashes
                 WHERE error IS NULL AND (signature_version IS NULL OR signature_version < ?1)
                 ORDER BY id",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(params![version], |r| {
                Ok(StaleCrash {
                    id: CrashId(r.get(0)?),
                    parts: signature_parts(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.error(e))
    }

    fn set_signatures(
        &mut self,
        version: u32,
        signatures: &[(CrashId, String, String)],
    ) -> Result<(), CrashDbError> {
        let path = self.path.clone();
        let err = |e| db_error(&path, e);
        let tx = begin_write(&mut self.conn, &path)?;
        {
            let mut update = tx
                .prepare(
                    "UPDATE crashes SET signature_text = ?2, signature = ?3, signature_version = ?4
                     WHERE id = ?1 AND (signature_version IS NULL OR signature_version < ?4)",
                )
                .map_err(err)?;
            for (id, text, signature) in signatures {
                update
                    .execute(params![id.0, text, signature, version])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn groups(&mut self, query: &GroupQuery) -> Result<GroupList, CrashDbError> {
        let err = |e| self.error(e);
        let since = query.since.map(i64_of);
        let (crashes, unreadable): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(error IS NULL), 0), COALESCE(SUM(error IS NOT NULL), 0)
                 FROM crashes WHERE ?1 IS NULL OR crash_time >= ?1",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let total_groups: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(DISTINCT signature) FROM crashes
                 WHERE error IS NULL AND (?1 IS NULL OR crash_time >= ?1)",
                params![since],
                |r| r.get(0),
            )
            .map_err(err)?;
        let limit = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(-1));
        let mut statement = self
            .conn
            .prepare(
                "SELECT signature, COUNT(*), MIN(crash_time), MAX(crash_time),
                     json_group_array(DISTINCT python_version), json_group_array(DISTINCT host),
                     COUNT(DISTINCT boot_id), MIN(id)
                 FROM crashes
                 WHERE error IS NULL AND signature IS NOT NULL AND (?1 IS NULL OR crash_time >= ?1)
                 GROUP BY signature
                 ORDER BY COUNT(*) DESC, signature
                 LIMIT ?2",
            )
            .map_err(err)?;
        let rows: Vec<GroupRow> = statement
            .query_map(params![since, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
        let mut groups = Vec::with_capacity(rows.len());
        for (signature, count, first, last, versions, hosts, boots, example_id) in rows {
            let (signature_text, parts) = self
                .conn
                .query_row(
                    "SELECT signature_text, fatal_error, signal, top_frames, finding_kinds
                     FROM crashes WHERE id = ?1",
                    params![example_id],
                    |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                            signature_parts(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                        ))
                    },
                )
                .map_err(err)?;
            let example: Option<Vec<u8>> = self
                .conn
                .query_row(
                    "SELECT path FROM paths WHERE crash_id = ?1 ORDER BY path LIMIT 1",
                    params![example_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            groups.push(StoredGroup {
                signature,
                signature_text,
                count: u64_of(count),
                first_seen: first.map(u64_of),
                last_seen: last.map(u64_of),
                python_versions: sorted_strings(&versions),
                hosts: sorted_strings(&hosts),
                boots: u64_of(boots),
                example: example.map(path_of_bytes),
                example_id: CrashId(example_id),
                parts,
            });
        }
        Ok(GroupList {
            crashes: u64_of(crashes),
            unreadable: u64_of(unreadable),
            total_groups: u64_of(total_groups),
            groups,
        })
    }

    fn crashes(&mut self, query: &GroupQuery) -> Result<Vec<StoredCrash>, CrashDbError> {
        let err = |e| self.error(e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, signature, crash_time, host, python_version, verdict, error,
                     (SELECT MIN(path) FROM paths WHERE crash_id = crashes.id)
                 FROM crashes WHERE ?1 IS NULL OR crash_time >= ?1
                 ORDER BY crash_time, id",
            )
            .map_err(err)?;
        statement
            .query_map(params![query.since.map(i64_of)], |r| {
                Ok(StoredCrash {
                    id: CrashId(r.get(0)?),
                    signature: r.get(1)?,
                    time: r.get::<_, Option<i64>>(2)?.map(u64_of),
                    host: r.get(3)?,
                    python_version: r.get(4)?,
                    verdict: r.get(5)?,
                    error: r.get(6)?,
                    path: r.get::<_, Option<Vec<u8>>>(7)?.map(path_of_bytes),
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)
    }

    fn crash_detail(&mut self, id: CrashId) -> Result<CrashDetail, CrashDbError> {
        let err = |e| self.error(e);
        let mut detail = self
            .conn
            .query_row(
                "SELECT signal, fatal_error, verdict, unchecked, finding_kinds, stack, findings,
                     top_frames
                 FROM crashes WHERE id = ?1",
                params![id.0],
                |r| {
                    Ok(CrashDetail {
                        signal: r.get(0)?,
                        fatal_error: r.get(1)?,
                        verdict: r.get(2)?,
                        unchecked: list_of_json(r.get(3)?),
                        finding_kinds: list_of_json(r.get(4)?),
                        stack: list_of_json(r.get(5)?),
                        findings: list_of_json(r.get(6)?),
                        parts: signature_parts(r.get(1)?, r.get(0)?, r.get(7)?, r.get(4)?),
                        paths: Vec::new(),
                    })
                },
            )
            .map_err(err)?;
        let mut statement = self
            .conn
            .prepare("SELECT path FROM paths WHERE crash_id = ?1 ORDER BY path")
            .map_err(err)?;
        detail.paths = statement
            .query_map(params![id.0], |r| r.get::<_, Vec<u8>>(0))
            .map_err(err)?
            .map(|p| p.map(path_of_bytes))
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
        Ok(detail)
    }
}

fn path_of_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crashdb::CrashFacts;

    fn facts(signal: &str) -> CrashFacts {
        CrashFacts {
            signal: Some(signal.into()),
            signature: Some(format!("v1:{signal}")),
            signature_text: Some(format!("signal: {signal}")),
            signature_version: Some(1),
            time: Some(100),
            python_version: Some("3.11.7".into()),
            ..CrashFacts::default()
        }
    }

    /// The fingerprint `id` of a 10-byte file, as `record` gives them.
    fn print(id: &str) -> Fingerprint {
        Fingerprint {
            size: 10,
            id: id.into(),
        }
    }

    fn record(path: &str, hash: &str, facts: Option<CrashFacts>) -> Record {
        Record {
            path: path.into(),
            stamp: FileStamp {
                size: 10,
                mtime_ns: 5,
            },
            fingerprint: Some(format!("fp-{hash}")),
            content_hash: Some(hash.into()),
            compared: Vec::new(),
            facts,
        }
    }

    #[test]
    fn contents_and_paths_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("crashes.db");
        let mut store = SqliteStore::open(&db).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let outcomes = store
            .record(&[
                record("/a", "h1", Some(facts("SIGSEGV"))),
                record("/b", "h1", Some(facts("SIGSEGV"))),
                record("/c", "h2", Some(facts("SIGABRT"))),
                record("/a", "h1", Some(facts("SIGSEGV"))),
            ])
            .unwrap();
        assert_eq!(
            outcomes,
            [
                Recorded::NewCrash,
                Recorded::NewPath,
                Recorded::NewCrash,
                Recorded::AlreadyRecorded
            ]
        );
        let candidates = store.candidates(&[print("fp-h1")]).unwrap().remove(0);
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        assert_eq!(candidates[0].content_hash.as_deref(), Some("h1"));
        assert!(candidates[0].paths.is_empty(), "it has a content id");
        // Several at once, each with its own, in their order.
        let both = store
            .candidates(&[print("fp-h3"), print("fp-h2"), print("fp-h1")])
            .unwrap();
        let counts: Vec<usize> = both.iter().map(Vec::len).collect();
        assert_eq!(counts, [0, 1, 1]);
        assert_eq!(both[2], candidates);
        // A crash of a recorded fingerprint, not compared with it: left for
        // the caller to compare; once compared, recorded.
        let mut other = record("/d", "h4", Some(facts("SIGBUS")));
        other.content_hash = None;
        other.fingerprint = Some("fp-h1".into());
        assert_eq!(
            store.record(&[other.clone()]).unwrap(),
            [Recorded::Unresolved]
        );
        other.compared = vec![candidates[0].id];
        assert_eq!(store.record(&[other]).unwrap(), [Recorded::NewCrash]);
        // A content id is stored once, and only where none is.
        let late = store.candidates(&[print("fp-h1")]).unwrap().remove(0);
        let new_id = late.iter().find(|c| c.content_hash.is_none()).unwrap().id;
        store.set_content(new_id, "h1").unwrap();
        store.set_content(new_id, "h4").unwrap();
        store.set_content(new_id, "h5").unwrap();
        let contents: Vec<Option<String>> = store
            .candidates(&[print("fp-h1")])
            .unwrap()
            .remove(0)
            .into_iter()
            .map(|c| c.content_hash)
            .collect();
        assert_eq!(contents, [Some("h1".to_string()), Some("h4".to_string())]);
        assert_eq!(
            store.path_stamps(&["/b".into(), "/e".into()]).unwrap(),
            [
                Some(FileStamp {
                    size: 10,
                    mtime_ns: 5
                }),
                None
            ]
        );
        let list = store.groups(&GroupQuery::default()).unwrap();
        assert_eq!((list.crashes, list.total_groups), (3, 3));
        assert!(
            store
                .groups(&GroupQuery {
                    since: Some(101),
                    limit: None
                })
                .unwrap()
                .groups
                .is_empty()
        );
        drop(store);
        // Opened again: nothing to migrate, nothing lost.
        let mut store = SqliteStore::open_existing(&db).unwrap();
        assert_eq!(store.groups(&GroupQuery::default()).unwrap().crashes, 3);
    }

    #[test]
    fn another_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("other.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = SqliteStore::open(&db).unwrap_err();
        assert!(matches!(e, CrashDbError::NotACrashDatabase { .. }), "{e}");
        let missing = dir.path().join("none.db");
        assert!(matches!(
            SqliteStore::open_existing(&missing).unwrap_err(),
            CrashDbError::NotFound { .. }
        ));
    }
}
