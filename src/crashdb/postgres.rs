//! The crash database on a PostgreSQL server: one database for a fleet,
//! written by many `triage --db postgresql://…` processes on many hosts.
//!
//! The tables are those of the SQLite store (see [`super::SqliteStore`]),
//! in a schema of their own, `pymortem`, so that a database shared with
//! other programs keeps its names: `pymortem.crashes`, `pymortem.paths`,
//! and `pymortem.meta` (`application` = [`APPLICATION`], `schema_version`).
//! Integers are `BIGINT`, paths `BYTEA`, lists JSON text. A server database
//! is created at schema version 3 in one step, then migrated as SQLite
//! files are.
//!
//! Writers serialize on a transaction-scoped advisory lock, the server's
//! counterpart of SQLite's write lock: the check that a path or a content
//! is recorded and the insert that follows see the same rows, and a crash
//! or a path is never recorded twice (the unique content hash and the path
//! key make sure of it even without the lock).
//!
//! TLS is not offered: connect over a private network or a local socket
//! (`postgresql:///db?host=/run/postgresql`); `sslmode=require` is refused.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::{Client, Config, NoTls, Transaction};

use super::columns::{
    CRASH_COLUMNS, CrashColumns, i64_of, list_of_json, signature_parts, sorted_strings, u64_of,
};
use super::recording::{Lookup, RecordingTx, record_in};
use super::{
    CANDIDATE_PATHS, Candidate, CrashDbError, CrashDetail, CrashId, CrashStore, FileStamp,
    Fingerprint, GroupList, GroupQuery, MAX_CANDIDATES, Record, Recorded, SCHEMA_VERSION,
    StaleCrash, StoredCrash, StoredGroup,
};

/// `pymortem.meta`'s `application` value.
pub const APPLICATION: &str = "pymortem crash database";

/// The advisory lock key writers and migrations take ("pyMm" + "crdb").
const WRITE_LOCK: i64 = 0x7079_4d6d_6372_6462;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A crash database on a PostgreSQL server.
pub struct PostgresStore {
    client: Client,
    location: String,
    statements: Statements,
}

/// The connection's prepared statements, by their text: each is parsed and
/// planned once per connection rather than once per use (a round trip
/// more per statement, a few hundred per batch of cores).
#[derive(Default)]
struct Statements(std::collections::HashMap<String, postgres::Statement>);

impl Statements {
    /// The statement of `sql`, prepared on `client` the first time.
    fn get<C: postgres::GenericClient>(
        &mut self,
        client: &mut C,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.location)
    }
}

/// The URL with its password, if any, replaced by `***`: what errors and
/// reports may show.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut redacted = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{user_info}@{host}"),
        },
        None => format!("{scheme}://{authority}"),
    };
    // A password can also be a query parameter.
    match tail.split_once('?') {
        Some((path, query)) => {
            redacted.push_str(path);
            redacted.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            redacted.push_str(&params.join("&"));
        }
        None => redacted.push_str(tail),
    }
    redacted
}

impl PostgresStore {
    /// Connect to the server `url` names (`postgresql://user@host:port/db`),
    /// create the schema when the database has none, migrate it, and refuse
    /// a newer or foreign one.
    pub fn connect(url: &str) -> Result<PostgresStore, CrashDbError> {
        let location = redact_url(url);
        let mut config: Config = url.parse().map_err(|e| CrashDbError::BadUrl {
            location: location.clone(),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if config.get_ssl_mode() == postgres::config::SslMode::Require {
            return Err(CrashDbError::BadUrl {
                location,
                reason: "sslmode=require: this pymortem has no TLS; connect over a private \
                         network or a local socket (sslmode=disable or prefer)"
                    .into(),
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("pymortem");
        let client = config.connect(NoTls).map_err(|e| db_error(&location, e))?;
        let mut store = PostgresStore {
            client,
            location,
            statements: Statements::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Create or migrate the schema under the write lock, refusing a newer
    /// or foreign one.
    fn migrate(&mut self) -> Result<(), CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let mut tx = begin_locked(&mut self.client, &location)?;
        let has_schema: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pymortem')",
                &[],
            )
            .map_err(err)?
            .get(0);
        if !has_schema {
            create_schema(&mut tx).map_err(err)?;
            migrate_from(&mut tx, FIRST_SERVER_VERSION).map_err(err)?;
            return tx.commit().map_err(err);
        }
        let has_meta: bool = tx
            .query_one("SELECT to_regclass('pymortem.meta') IS NOT NULL", &[])
            .map_err(err)?
            .get(0);
        if !has_meta {
            return Err(CrashDbError::NotACrashDatabase {
                location,
                reason: "its schema `pymortem` has no `meta` table".into(),
            });
        }
        let meta = |tx: &mut Transaction<'_>, key: &str| -> Result<Option<String>, CrashDbError> {
            tx.query_opt("SELECT value FROM pymortem.meta WHERE key = $1", &[&key])
                .map(|row| row.map(|r| r.get(0)))
                .map_err(err)
        };
        let application = meta(&mut tx, "application")?;
        if application.as_deref() != Some(APPLICATION) {
            return Err(CrashDbError::NotACrashDatabase {
                location,
                reason: format!(
                    "its schema `pymortem` belongs to {}",
                    application.as_deref().unwrap_or("an unnamed application")
                ),
            });
        }
        let found = meta(&mut tx, "schema_version")?
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(u32::MAX);
        if found > SCHEMA_VERSION {
            return Err(CrashDbError::NewerSchema {
                location,
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < FIRST_SERVER_VERSION {
            return Err(CrashDbError::NotACrashDatabase {
                location,
                reason: format!("its schema version {found} predates server databases"),
            });
        }
        migrate_from(&mut tx, found).map_err(err)?;
        tx.commit().map_err(err)
    }
}

/// The most keys looked up in one query.
const LOOKUP_CHUNK: usize = 1000;

/// A 1-based `WITH ORDINALITY` number as a 0-based index.
fn ordinal(number: i64) -> usize {
    usize::try_from(number - 1).unwrap_or(usize::MAX)
}

/// The schema version server databases are created at, then migrated from.
const FIRST_SERVER_VERSION: u32 = 3;

/// `SERVER_MIGRATIONS[n]` takes the schema from version
/// `FIRST_SERVER_VERSION + n` to the next (the SQLite store's steps).
const SERVER_MIGRATIONS: [&str; (SCHEMA_VERSION - FIRST_SERVER_VERSION) as usize] = [
    // Version 4: fingerprints.
    "ALTER TABLE pymortem.crashes ADD COLUMN fingerprint TEXT;
     CREATE INDEX crashes_by_fingerprint ON pymortem.crashes(fingerprint);
     CREATE INDEX crashes_by_size ON pymortem.crashes(size) WHERE fingerprint IS NULL;",
];

/// Bring a database of schema version `found` to [`SCHEMA_VERSION`], one
/// step at a time.
fn migrate_from(tx: &mut Transaction<'_>, found: u32) -> Result<(), postgres::Error> {
    for version in found..SCHEMA_VERSION {
        let step = (version - FIRST_SERVER_VERSION) as usize;
        if let Some(migration) = SERVER_MIGRATIONS.get(step) {
            tx.batch_execute(migration)?;
        }
        tx.execute(
            "UPDATE pymortem.meta SET value = $1 WHERE key = 'schema_version'",
            &[&(version + 1).to_string()],
        )?;
    }
    Ok(())
}

/// The whole schema at [`FIRST_SERVER_VERSION`].
fn create_schema(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    tx.batch_execute(
        "CREATE SCHEMA pymortem;
         CREATE TABLE pymortem.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE pymortem.crashes (
             id BIGSERIAL PRIMARY KEY,
             content_hash TEXT UNIQUE,
             size BIGINT NOT NULL,
             recorded_at BIGINT NOT NULL,
             pymortem_version TEXT NOT NULL,
             error TEXT,
             crash_time BIGINT,
             python_version TEXT,
             signal TEXT,
             fatal_error TEXT,
             signature TEXT,
             signature_text TEXT,
             signature_version BIGINT,
             finding_kinds TEXT NOT NULL DEFAULT '[]',
             verdict TEXT,
             top_frames TEXT NOT NULL DEFAULT '{\"python\":[],\"native\":[]}',
             host TEXT,
             boot_id TEXT,
             unchecked TEXT NOT NULL DEFAULT '[]',
             stack TEXT NOT NULL DEFAULT '[]',
             findings TEXT NOT NULL DEFAULT '[]'
         );
         CREATE INDEX crashes_by_signature ON pymortem.crashes(signature);
         CREATE INDEX crashes_by_time ON pymortem.crashes(crash_time);
         CREATE TABLE pymortem.paths (
             path BYTEA PRIMARY KEY,
             size BIGINT NOT NULL,
             mtime_ns BIGINT NOT NULL,
             crash_id BIGINT NOT NULL REFERENCES pymortem.crashes(id)
         );
         CREATE INDEX paths_by_crash ON pymortem.paths(crash_id);",
    )?;
    tx.execute(
        "INSERT INTO pymortem.meta (key, value) VALUES ('application', $1), ('schema_version', $2)",
        &[&APPLICATION, &FIRST_SERVER_VERSION.to_string()],
    )?;
    Ok(())
}

/// A transaction holding the write lock (a transaction-scoped advisory
/// lock, released at commit or rollback).
fn begin_locked<'c>(
    client: &'c mut Client,
    location: &str,
) -> Result<Transaction<'c>, CrashDbError> {
    let mut tx = client.transaction().map_err(|e| db_error(location, e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .map_err(|e| db_error(location, e))?;
    Ok(tx)
}

fn db_error(location: &str, e: postgres::Error) -> CrashDbError {
    // The client's own text of a server error is only "db error": the
    // server's message, detail and hint are what says what to do.
    let text = match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    };
    CrashDbError::Database {
        location: location.to_string(),
        source: text.into(),
    }
}

/// A write transaction's statements for [`record_in`].
struct PostgresRecording<'a, 'c> {
    tx: &'a mut Transaction<'c>,
    location: &'a str,
    statements: &'a mut Statements,
}

impl PostgresRecording<'_, '_> {
    fn error(&self, e: postgres::Error) -> CrashDbError {
        db_error(self.location, e)
    }
}

impl RecordingTx for PostgresRecording<'_, '_> {
    fn look_up(
        &mut self,
        path: &Path,
        content_hash: Option<&str>,
        fingerprint: Option<&str>,
    ) -> Result<Lookup, CrashDbError> {
        // One round trip for the three questions.
        let row = self
            .statements
            .get(
                self.tx,
                "SELECT p.size, p.mtime_ns,
                     (SELECT id FROM pymortem.crashes WHERE content_hash = $2),
                     ARRAY(SELECT id FROM pymortem.crashes WHERE fingerprint = $3 ORDER BY id)
                 FROM (SELECT 1) AS one
                 LEFT JOIN pymortem.paths p ON p.path = $1",
            )
            .and_then(|statement| {
                self.tx.query_one(
                    &statement,
                    &[&path.as_os_str().as_bytes(), &content_hash, &fingerprint],
                )
            })
            .map_err(|e| self.error(e))?;
        let size: Option<i64> = row.get(0);
        let mtime_ns: Option<i64> = row.get(1);
        let with_content: Option<i64> = row.get(2);
        let with_fingerprint: Vec<i64> = row.get(3);
        Ok(Lookup {
            stamp: size.zip(mtime_ns).map(|(size, mtime_ns)| FileStamp {
                size: u64_of(size),
                mtime_ns,
            }),
            with_content: with_content.map(CrashId),
            with_fingerprint: with_fingerprint.into_iter().map(CrashId).collect(),
        })
    }

    fn insert_crash(
        &mut self,
        c: &CrashColumns,
        path: &Path,
        stamp: FileStamp,
    ) -> Result<Option<CrashId>, CrashDbError> {
        // The crash and its path in one statement (one round trip).
        let insert = self
            .statements
            .get(
                self.tx,
                &format!(
                    "WITH crash AS (
                         INSERT INTO pymortem.crashes ({CRASH_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                 $15, $16, $17, $18, $19, $20, $21)
                         ON CONFLICT (content_hash) DO NOTHING RETURNING id
                     ), path AS (
                         INSERT INTO pymortem.paths (path, size, mtime_ns, crash_id)
                         SELECT $22, $23, $24, id FROM crash
                         ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                             mtime_ns = excluded.mtime_ns, crash_id = excluded.crash_id
                     )
                     SELECT id FROM crash"
                ),
            )
            .map_err(|e| self.error(e))?;
        let row = self
            .tx
            .query_opt(
                &insert,
                &[
                    &c.content_hash,
                    &c.size,
                    &c.recorded_at,
                    &c.pymortem_version,
                    &c.error,
                    &c.crash_time,
                    &c.python_version,
                    &c.signal,
                    &c.fatal_error,
                    &c.signature,
                    &c.signature_text,
                    &c.signature_version,
                    &c.finding_kinds,
                    &c.verdict,
                    &c.top_frames,
                    &c.host,
                    &c.boot_id,
                    &c.unchecked,
                    &c.stack,
                    &c.findings,
                    &c.fingerprint,
                    &path.as_os_str().as_bytes(),
                    &i64_of(stamp.size),
                    &stamp.mtime_ns,
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(row.map(|r| CrashId(r.get(0))))
    }

    fn set_path(
        &mut self,
        path: &Path,
        stamp: FileStamp,
        crash: CrashId,
    ) -> Result<(), CrashDbError> {
        let upsert = self
            .statements
            .get(
                self.tx,
                "INSERT INTO pymortem.paths (path, size, mtime_ns, crash_id)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                     mtime_ns = excluded.mtime_ns, crash_id = excluded.crash_id",
            )
            .map_err(|e| self.error(e))?;
        self.tx
            .execute(
                &upsert,
                &[
                    &path.as_os_str().as_bytes(),
                    &i64_of(stamp.size),
                    &stamp.mtime_ns,
                    &crash.0,
                ],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }
}

fn path_of_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

impl PostgresStore {
    fn error(&self, e: postgres::Error) -> CrashDbError {
        db_error(&self.location, e)
    }
}

impl CrashStore for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn schema_version(&mut self) -> Result<u32, CrashDbError> {
        // Read at connect time and migrated to the current one: a store
        // that opened holds the current version.
        Ok(SCHEMA_VERSION)
    }

    fn path_stamps(&mut self, paths: &[PathBuf]) -> Result<Vec<Option<FileStamp>>, CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let lookup = self
            .statements
            .get(
                &mut self.client,
                "SELECT q.i, p.size, p.mtime_ns
                 FROM unnest($1::bytea[]) WITH ORDINALITY AS q(path, i)
                 JOIN pymortem.paths p ON p.path = q.path",
            )
            .map_err(err)?;
        let mut stamps = vec![None; paths.len()];
        for (chunk, start) in paths.chunks(LOOKUP_CHUNK).zip((0..).step_by(LOOKUP_CHUNK)) {
            let keys: Vec<&[u8]> = chunk.iter().map(|p| p.as_os_str().as_bytes()).collect();
            for row in self.client.query(&lookup, &[&keys]).map_err(err)? {
                let at = start + ordinal(row.get(0));
                if let Some(slot) = stamps.get_mut(at) {
                    *slot = Some(FileStamp {
                        size: u64_of(row.get(1)),
                        mtime_ns: row.get(2),
                    });
                }
            }
        }
        Ok(stamps)
    }

    fn candidates(&mut self, prints: &[Fingerprint]) -> Result<Vec<Vec<Candidate>>, CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let matching = self
            .statements
            .get(
                &mut self.client,
                "SELECT q.i, c.id, c.content_hash
                 FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(fingerprint, size, i)
                 CROSS JOIN LATERAL (
                     SELECT id, content_hash FROM pymortem.crashes
                     WHERE fingerprint = q.fingerprint
                     UNION ALL
                     SELECT id, content_hash FROM (
                         SELECT id, content_hash FROM pymortem.crashes
                         WHERE fingerprint IS NULL AND content_hash IS NOT NULL
                             AND size = q.size
                         ORDER BY id LIMIT $3
                     ) AS older
                 ) AS c
                 ORDER BY q.i, c.id",
            )
            .map_err(err)?;
        let listed = self
            .statements
            .get(
                &mut self.client,
                "SELECT crash_id, path, size, mtime_ns FROM (
                     SELECT crash_id, path, size, mtime_ns,
                         row_number() OVER (PARTITION BY crash_id ORDER BY path) AS n
                     FROM pymortem.paths WHERE crash_id = ANY($1)
                 ) AS p
                 WHERE n <= $2
                 ORDER BY crash_id, path",
            )
            .map_err(err)?;
        let mut found: Vec<Vec<Candidate>> = vec![Vec::new(); prints.len()];
        for (chunk, start) in prints.chunks(LOOKUP_CHUNK).zip((0..).step_by(LOOKUP_CHUNK)) {
            let ids: Vec<&str> = chunk.iter().map(|p| p.id.as_str()).collect();
            let sizes: Vec<i64> = chunk.iter().map(|p| i64_of(p.size)).collect();
            let rows = self
                .client
                .query(&matching, &[&ids, &sizes, &(MAX_CANDIDATES as i64)])
                .map_err(err)?;
            let mut lacking: Vec<i64> = Vec::new();
            for row in &rows {
                let candidate = Candidate {
                    id: CrashId(row.get(1)),
                    content_hash: row.get(2),
                    paths: Vec::new(),
                };
                if candidate.content_hash.is_none() {
                    lacking.push(candidate.id.0);
                }
                if let Some(list) = found.get_mut(start + ordinal(row.get(0))) {
                    list.push(candidate);
                }
            }
            if lacking.is_empty() {
                continue;
            }
            lacking.sort_unstable();
            lacking.dedup();
            let mut paths: std::collections::HashMap<i64, Vec<(PathBuf, FileStamp)>> =
                std::collections::HashMap::new();
            for row in self
                .client
                .query(&listed, &[&lacking, &(CANDIDATE_PATHS as i64)])
                .map_err(err)?
            {
                paths.entry(row.get(0)).or_default().push((
                    path_of_bytes(row.get(1)),
                    FileStamp {
                        size: u64_of(row.get(2)),
                        mtime_ns: row.get(3),
                    },
                ));
            }
            for candidate in found[start..start + chunk.len()].iter_mut().flatten() {
                if let Some(listed) = paths.get(&candidate.id.0) {
                    candidate.paths = listed.clone();
                }
            }
        }
        Ok(found)
    }

    fn set_content(&mut self, id: CrashId, content_hash: &str) -> Result<(), CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let mut tx = begin_locked(&mut self.client, &location)?;
        tx.execute(
            "UPDATE pymortem.crashes SET content_hash = $2 WHERE id = $1 AND content_hash IS NULL
                 AND NOT EXISTS (SELECT 1 FROM pymortem.crashes WHERE content_hash = $2)",
            &[&id.0, &content_hash],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn record(&mut self, records: &[Record]) -> Result<Vec<Recorded>, CrashDbError> {
        let location = self.location.clone();
        let mut tx = begin_locked(&mut self.client, &location)?;
        let outcomes = record_in(
            &mut PostgresRecording {
                tx: &mut tx,
                location: &location,
                statements: &mut self.statements,
            },
            records,
        )?;
        tx.commit().map_err(|e| db_error(&location, e))?;
        Ok(outcomes)
    }

    fn stale_signatures(&mut self, version: u32) -> Result<Vec<StaleCrash>, CrashDbError> {
        let version = i64::from(version);
        let rows = self
            .client
            .query(
                "SELECT id, fatal_error, signal, top_frames, finding_kinds FROM pymortem.crashes
                 WHERE error IS NULL AND (signature_version IS NULL OR signature_version < $1)
                 ORDER BY id",
                &[&version],
            )
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| StaleCrash {
                id: CrashId(r.get(0)),
                parts: signature_parts(r.get(1), r.get(2), r.get(3), r.get(4)),
            })
            .collect())
    }

    fn set_signatures(
        &mut self,
        version: u32,
        signatures: &[(CrashId, String, String)],
    ) -> Result<(), CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let version = i64::from(version);
        let mut tx = begin_locked(&mut self.client, &location)?;
        let update = tx
            .prepare(
                "UPDATE pymortem.crashes SET signature_text = $2, signature = $3,
                     signature_version = $4
                 WHERE id = $1 AND (signature_version IS NULL OR signature_version < $4)",
            )
            .map_err(err)?;
        for (id, text, signature) in signatures {
            tx.execute(&update, &[&id.0, text, signature, &version])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn groups(&mut self, query: &GroupQuery) -> Result<GroupList, CrashDbError> {
        let since = query.since.map(i64_of);
        let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let totals = self
            .client
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE error IS NULL),
                     COUNT(*) FILTER (WHERE error IS NOT NULL),
                     COUNT(DISTINCT signature) FILTER (WHERE error IS NULL)
                 FROM pymortem.crashes WHERE $1::BIGINT IS NULL OR crash_time >= $1",
                &[&since],
            )
            .map_err(|e| self.error(e))?;
        let rows = self
            .client
            .query(
                "SELECT signature, COUNT(*), MIN(crash_time), MAX(crash_time),
                     COALESCE(json_agg(DISTINCT python_version)::TEXT, '[]'),
                     COALESCE(json_agg(DISTINCT host)::TEXT, '[]'),
                     COUNT(DISTINCT boot_id), MIN(id)
                 FROM pymortem.crashes
                 WHERE error IS NULL AND signature IS NOT NULL
                     AND ($1::BIGINT IS NULL OR crash_time >= $1)
                 GROUP BY signature
                 ORDER BY COUNT(*) DESC, signature
                 LIMIT $2",
                &[&since, &limit],
            )
            .map_err(|e| self.error(e))?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let example_id: i64 = row.get(7);
            let example = self
                .client
                .query_one(
                    "SELECT signature_text, fatal_error, signal, top_frames, finding_kinds,
                         (SELECT path FROM pymortem.paths WHERE crash_id = $1 ORDER BY path LIMIT 1)
                     FROM pymortem.crashes WHERE id = $1",
                    &[&example_id],
                )
                .map_err(|e| self.error(e))?;
            let versions: String = row.get(4);
            let hosts: String = row.get(5);
            groups.push(StoredGroup {
                signature: row.get(0),
                signature_text: example.get::<_, Option<String>>(0).unwrap_or_default(),
                count: u64_of(row.get(1)),
                first_seen: row.get::<_, Option<i64>>(2).map(u64_of),
                last_seen: row.get::<_, Option<i64>>(3).map(u64_of),
                python_versions: sorted_strings(&versions),
                hosts: sorted_strings(&hosts),
                boots: u64_of(row.get(6)),
                example: example.get::<_, Option<Vec<u8>>>(5).map(path_of_bytes),
                example_id: CrashId(example_id),
                parts: signature_parts(
                    example.get(1),
                    example.get(2),
                    example.get(3),
                    example.get(4),
                ),
            });
        }
        Ok(GroupList {
            crashes: u64_of(totals.get(0)),
            unreadable: u64_of(totals.get(1)),
            total_groups: u64_of(totals.get(2)),
            groups,
        })
    }

    fn crashes(&mut self, query: &GroupQuery) -> Result<Vec<StoredCrash>, CrashDbError> {
        let since = query.since.map(i64_of);
        let rows = self
            .client
            .query(
                "SELECT id, signature, crash_time, host, python_version, verdict, error,
                     (SELECT path FROM pymortem.paths WHERE crash_id = c.id ORDER BY path LIMIT 1)
                 FROM pymortem.crashes c WHERE $1::BIGINT IS NULL OR crash_time >= $1
                 ORDER BY crash_time NULLS FIRST, id",
                &[&since],
            )
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| StoredCrash {
                id: CrashId(r.get(0)),
                signature: r.get(1),
                time: r.get::<_, Option<i64>>(2).map(u64_of),
                host: r.get(3),
                python_version: r.get(4),
                verdict: r.get(5),
                error: r.get(6),
                path: r.get::<_, Option<Vec<u8>>>(7).map(path_of_bytes),
            })
            .collect())
    }

    fn crash_detail(&mut self, id: CrashId) -> Result<CrashDetail, CrashDbError> {
        let row = self
            .client
            .query_one(
                "SELECT signal, fatal_error, verdict, unchecked, finding_kinds, stack, findings,
                     top_frames
                 FROM pymortem.crashes WHERE id = $1",
                &[&id.0],
            )
            .map_err(|e| self.error(e))?;
        let paths = self
            .client
            .query(
                "SELECT path FROM pymortem.paths WHERE crash_id = $1 ORDER BY path",
                &[&id.0],
            )
            .map_err(|e| self.error(e))?;
        Ok(CrashDetail {
            signal: row.get(0),
            fatal_error: row.get(1),
            verdict: row.get(2),
            unchecked: list_of_json(row.get(3)),
            finding_kinds: list_of_json(row.get(4)),
            stack: list_of_json(row.get(5)),
            findings: list_of_json(row.get(6)),
            parts: signature_parts(row.get(1), row.get(0), row.get(7), row.get(4)),
            paths: paths.into_iter().map(|r| path_of_bytes(r.get(0))).collect(),
        })
    }
}
