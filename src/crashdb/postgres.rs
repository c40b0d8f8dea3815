//! The crash database on a PostgreSQL server: one database for a fleet,
//! written by many `triage --db postgresql://…` processes on many hosts.
//!
//! The tables are those of the SQLite store (see [`super::SqliteStore`]),
//! in a schema of their own, `pymortem`, so that a database shared with
//! other programs keeps its names: `pymortem.crashes`, `pymortem.paths`,
//! and `pymortem.meta` (`application` = [`APPLICATION`], `schema_version`).
//! Integers are `BIGINT`, paths `BYTEA`, lists JSON text. A server database
//! is created at the current schema version in one step; later versions
//! migrate it as they migrate SQLite files.
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
use super::{
    CrashDbError, CrashDetail, CrashFacts, CrashId, CrashStore, FileStamp, GroupList, GroupQuery,
    Record, Recorded, SCHEMA_VERSION, StaleCrash, StoredCrash, StoredGroup,
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
        let mut store = PostgresStore { client, location };
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
        // Server databases begin at version 3; migrations from there on
        // are added here as the schema grows.
        tx.commit().map_err(err)
    }
}

/// The whole schema at the current version.
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
        &[&APPLICATION, &SCHEMA_VERSION.to_string()],
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

fn insert_crash(
    tx: &mut Transaction<'_>,
    record: &Record,
    facts: &CrashFacts,
) -> Result<Option<i64>, postgres::Error> {
    let c = CrashColumns::of(record, facts);
    let row = tx.query_opt(
        &format!(
            "INSERT INTO pymortem.crashes ({CRASH_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20)
             ON CONFLICT (content_hash) DO NOTHING RETURNING id"
        ),
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
        ],
    )?;
    Ok(row.map(|r| r.get(0)))
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

    fn path_stamp(&mut self, path: &Path) -> Result<Option<FileStamp>, CrashDbError> {
        let key = path.as_os_str().as_bytes();
        self.client
            .query_opt(
                "SELECT size, mtime_ns FROM pymortem.paths WHERE path = $1",
                &[&key],
            )
            .map_err(|e| self.error(e))
            .map(|row| {
                row.map(|r| FileStamp {
                    size: u64_of(r.get(0)),
                    mtime_ns: r.get(1),
                })
            })
    }

    fn has_content(&mut self, content_hash: &str) -> Result<bool, CrashDbError> {
        self.client
            .query_opt(
                "SELECT 1 FROM pymortem.crashes WHERE content_hash = $1",
                &[&content_hash],
            )
            .map_err(|e| self.error(e))
            .map(|row| row.is_some())
    }

    fn record(&mut self, records: &[Record]) -> Result<Vec<Recorded>, CrashDbError> {
        let location = self.location.clone();
        let err = |e| db_error(&location, e);
        let mut tx = begin_locked(&mut self.client, &location)?;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let key = record.path.as_os_str().as_bytes();
            let stamp: Option<(i64, i64)> = tx
                .query_opt(
                    "SELECT size, mtime_ns FROM pymortem.paths WHERE path = $1",
                    &[&key],
                )
                .map_err(err)?
                .map(|r| (r.get(0), r.get(1)));
            if stamp == Some((i64_of(record.stamp.size), record.stamp.mtime_ns)) {
                outcomes.push(Recorded::AlreadyRecorded);
                continue;
            }
            let known: Option<i64> = match &record.content_hash {
                Some(hash) => tx
                    .query_opt(
                        "SELECT id FROM pymortem.crashes WHERE content_hash = $1",
                        &[hash],
                    )
                    .map_err(err)?
                    .map(|r| r.get(0)),
                None => None,
            };
            let unknown = || CrashDbError::UnknownContent {
                path: record.path.clone(),
                content_hash: record.content_hash.clone().unwrap_or_default(),
            };
            let (crash_id, outcome) = match (known, &record.facts) {
                (Some(id), _) => (id, Recorded::NewPath),
                (None, Some(facts)) => match insert_crash(&mut tx, record, facts).map_err(err)? {
                    Some(id) => (id, Recorded::NewCrash),
                    // Not reachable under the write lock; said rather than hidden.
                    None => return Err(unknown()),
                },
                (None, None) => return Err(unknown()),
            };
            tx.execute(
                "INSERT INTO pymortem.paths (path, size, mtime_ns, crash_id)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                     mtime_ns = excluded.mtime_ns, crash_id = excluded.crash_id",
                &[
                    &key,
                    &i64_of(record.stamp.size),
                    &record.stamp.mtime_ns,
                    &crash_id,
                ],
            )
            .map_err(err)?;
            outcomes.push(outcome);
        }
        tx.commit().map_err(err)?;
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
