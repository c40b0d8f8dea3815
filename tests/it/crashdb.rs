//! The crash database: `triage --db` records every core once by content,
//! reads only what it has not recorded, records unreadable cores with
//! their error, migrates an older schema, refuses a newer one, survives
//! several writers at once; `groups` lists it as text and as JSON. Facts
//! are checked against the samples' truth files, the synthetic cores'
//! own making and SHA-256 sums computed here, never against pymortem's
//! own output.

use crate::support;
use crate::support::bundles;
use crate::support::synth::{PF_R, PF_W, PF_X, SynthCore};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

const SAMPLES: [&str; 3] = [
    "debian-3.11-threads",
    "pyenv-2.7.18-double_free",
    "pyenv-3.11.7-threads",
];

/// A signal's name, for the numbers the truth files and synthetic cores use.
fn signal_name(number: i64) -> &'static str {
    match number {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        other => panic!("no name for signal {other} in this test"),
    }
}

/// A crash's content id, computed here from the whole file: BLAKE3 of its
/// non-zero 4 KiB pages, BLAKE3 of its zero runs (offset, length), its size.
fn content_id_of(bytes: &[u8]) -> String {
    let (mut data, mut runs) = (blake3::Hasher::new(), blake3::Hasher::new());
    let mut zero_runs: Vec<(u64, u64)> = Vec::new();
    for (i, page) in bytes.chunks(4096).enumerate() {
        if page.iter().any(|&b| b != 0) {
            data.update(page);
            continue;
        }
        let offset = (i * 4096) as u64;
        match zero_runs.last_mut() {
            Some((start, len)) if *start + *len == offset => *len += page.len() as u64,
            _ => zero_runs.push((offset, page.len() as u64)),
        }
    }
    for (start, len) in zero_runs {
        runs.update(&start.to_le_bytes());
        runs.update(&len.to_le_bytes());
    }
    let mut id = blake3::Hasher::new();
    id.update(data.finalize().as_bytes());
    id.update(runs.finalize().as_bytes());
    id.update(&(bytes.len() as u64).to_le_bytes());
    format!("b3z:{}", id.finalize().to_hex())
}

pub(crate) fn content_id(path: &Path) -> String {
    content_id_of(&std::fs::read(path).unwrap())
}

/// A small core of a process killed by `signo`: its pid and a data page
/// make each `n` a different content.
pub(crate) fn synthetic(n: u32, signo: i32) -> Vec<u8> {
    let mut core = SynthCore::default();
    let pid = 5000 + n as i32;
    core.prstatus(
        pid,
        signo as i16,
        0x401000,
        0x7ffd_0000_1000,
        0x7f00_0000_1740,
    )
    .psinfo(pid, 1000, "python3", "python3 crash.py")
    .siginfo(signo, 1, 0xdead_beef)
    .auxv(&[(33, 0x7fff_f000_0000), (9, 0x401000)])
    .nt_file(&[(0x400000, 0x402000, 0, "/usr/bin/python3")]);
    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(n + 7) % 251) as u8)
        .collect();
    core.segment(0x10000, data, 4096, PF_R | PF_W).segment(
        0x400000,
        vec![0x7f; 4096],
        0x2000,
        PF_R | PF_X,
    );
    core.build()
}

const SIGNALS: [i32; 4] = [11, 6, 7, 8];

/// Run pymortem with string arguments.
fn run(args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::pymortem(&args)
}

fn s(text: impl std::fmt::Display) -> String {
    text.to_string()
}

/// A crash database under test: a SQLite file, or a database on a private
/// PostgreSQL server.
enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    /// The `--db` argument.
    fn arg(&self) -> String {
        match self {
            TestDb::Sqlite(path) => path.display().to_string(),
            TestDb::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file.
    fn path(&self) -> &Path {
        match self {
            TestDb::Sqlite(path) => path,
            TestDb::Postgres(url) => panic!("{url} is not a SQLite file"),
        }
    }

    fn sqlite(&self) -> Connection {
        Connection::open(self.path()).unwrap()
    }

    /// Rows of text and bytes columns of a query on the crash tables
    /// (`{t}` stands for the tables' schema prefix).
    fn rows(&self, sql: &str) -> Vec<Vec<Option<Vec<u8>>>> {
        match self {
            TestDb::Sqlite(_) => {
                let conn = self.sqlite();
                let sql = sql.replace("{t}", "");
                let mut statement = conn.prepare(&sql).unwrap();
                let n = statement.column_count();
                statement
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => None,
                                    rusqlite::types::ValueRef::Text(t)
                                    | rusqlite::types::ValueRef::Blob(t) => Some(t.to_vec()),
                                    other => panic!("{sql}: column {i} is {other:?}"),
                                })
                            })
                            .collect()
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            TestDb::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let sql = sql.replace("{t}", "pymortem.");
                client
                    .query(&sql, &[])
                    .unwrap()
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| {
                                if *row.columns()[i].type_() == postgres::types::Type::BYTEA {
                                    row.get::<_, Option<Vec<u8>>>(i)
                                } else {
                                    row.get::<_, Option<String>>(i).map(String::into_bytes)
                                }
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

fn text(column: &Option<Vec<u8>>) -> Option<String> {
    column
        .as_ref()
        .map(|b| String::from_utf8(b.clone()).unwrap())
}

/// `triage --db DB --json PATHS...`: exit code, the summary line, the core lines.
fn triage_db(db: &TestDb, paths: &[&Path]) -> (Value, Vec<Value>) {
    let mut args = vec![s("triage"), s("--db"), db.arg(), s("--json")];
    args.extend(paths.iter().map(|p| s(p.display())));
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    support::assert_no_problems(&support::schema_violations(&summary));
    (summary, lines)
}

/// `groups --db DB --json` and more arguments, validated against the schema.
fn groups_json(db: &TestDb, more: &[&str]) -> Value {
    let mut args = vec![s("groups"), s("--db"), db.arg(), s("--json")];
    args.extend(more.iter().map(s));
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    support::assert_no_problems(&support::schema_violations(&doc));
    assert_eq!(doc["schema"], "groups");
    doc
}

/// A recorded crash, as the database holds it.
#[derive(Debug)]
struct Row {
    /// Its stored content id (taken only where a copy was possible).
    content_hash: Option<String>,
    error: Option<String>,
    python_version: Option<String>,
    signal: Option<String>,
    signature: Option<String>,
    paths: Vec<PathBuf>,
}

/// The crashes by their id in the database.
fn crash_rows(db: &TestDb) -> BTreeMap<i64, Row> {
    use std::os::unix::ffi::OsStringExt;
    let mut rows: BTreeMap<i64, Row> = db
        .rows(
            "SELECT CAST(id AS TEXT), content_hash, error, python_version, signal, signature
             FROM {t}crashes",
        )
        .iter()
        .map(|r| {
            (
                text(&r[0]).unwrap().parse().unwrap(),
                Row {
                    content_hash: text(&r[1]),
                    error: text(&r[2]),
                    python_version: text(&r[3]),
                    signal: text(&r[4]),
                    signature: text(&r[5]),
                    paths: Vec::new(),
                },
            )
        })
        .collect();
    for r in db.rows("SELECT path, CAST(crash_id AS TEXT) FROM {t}paths ORDER BY path") {
        let id: i64 = text(&r[1]).unwrap().parse().unwrap();
        let path = PathBuf::from(std::ffi::OsString::from_vec(r[0].clone().unwrap()));
        rows.get_mut(&id)
            .expect("a path of no crash")
            .paths
            .push(path);
    }
    rows
}

/// The crashes by content id, computed here from their paths' files: fails
/// on a crash whose paths differ in content, a content recorded as two
/// crashes, or a stored content id that is not the file's.
fn crashes(db: &TestDb) -> BTreeMap<String, Row> {
    let mut by_content = BTreeMap::new();
    for (id, row) in crash_rows(db) {
        let contents: BTreeSet<String> = row.paths.iter().map(|p| content_id(p)).collect();
        assert_eq!(contents.len(), 1, "crash {id}: {row:?}: {contents:?}");
        let content = contents.into_iter().next().unwrap();
        if let Some(stored) = &row.content_hash {
            assert_eq!(stored, &content, "crash {id}: {row:?}");
        }
        let paths = row.paths.clone();
        if let Some(twin) = by_content.insert(content, row) {
            panic!("a content recorded twice: {twin:?} and {paths:?}");
        }
    }
    by_content
}

/// Every recorded path and its crash's content id (computed here).
fn paths(db: &TestDb) -> BTreeMap<PathBuf, String> {
    crashes(db)
        .into_iter()
        .flat_map(|(content, row)| row.paths.into_iter().map(move |p| (p, content.clone())))
        .collect()
}

fn user_version(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn samples_are_recorded_once_and_a_rerun_reads_only_new_cores() {
    let dir = tempfile::tempdir().unwrap();
    samples_recorded(&TestDb::Sqlite(dir.path().join("crashes.db")));
}

#[test]
fn samples_are_recorded_once_on_a_postgresql_server() {
    let Some(server) = support::pg::PgServer::start() else {
        return;
    };
    samples_recorded(&TestDb::Postgres(server.new_database("samples")));
}

fn samples_recorded(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for name in SAMPLES {
        std::fs::copy(
            bundles::sample(name),
            input.join(format!("{name}.pymortem")),
        )
        .unwrap();
    }
    // The same crash copied: one crash, two paths.
    std::fs::copy(
        bundles::sample("pyenv-2.7.18-double_free"),
        input.join("copy-of-2.7.pymortem"),
    )
    .unwrap();
    let garbage = input.join("garbage.core");
    std::fs::write(&garbage, b"not a core at all".repeat(50)).unwrap();
    std::fs::write(input.join("notes.txt"), b"notes").unwrap();

    let (summary, lines) = triage_db(db, &[input.as_path()]);
    let database = &summary["database"];
    assert_eq!(database["new_crashes"], 4, "{summary}");
    assert_eq!(database["unreadable"], 1, "{summary}");
    assert_eq!(database["new_paths"], 1, "{summary}");
    assert_eq!(database["already_recorded"], 0, "{summary}");
    assert_eq!(database["schema_version"], 4, "{summary}");
    // The copy is linked, not read; notes.txt is skipped.
    assert_eq!(summary["cores"], 4, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(lines.len(), 5);

    let recorded = crashes(db);
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    let mut truth_versions = BTreeSet::new();
    for name in SAMPLES {
        let truth = bundles::sample_truth(name);
        let row = &recorded[&content_id(&bundles::sample(name))];
        let version = truth["python_version"].as_str().unwrap();
        truth_versions.insert(version.to_string());
        assert_eq!(row.python_version.as_deref(), Some(version), "{name}");
        assert_eq!(
            row.signal.as_deref(),
            Some(signal_name(truth["expected_signal"].as_i64().unwrap())),
            "{name}"
        );
        assert!(
            row.error.is_none() && row.signature.is_some(),
            "{name}: {row:?}"
        );
    }
    let unreadable = &recorded[&content_id(&garbage)];
    assert!(
        unreadable.error.as_deref().is_some_and(|e| !e.is_empty())
            && unreadable.signature.is_none(),
        "{unreadable:?}"
    );
    let recorded_paths = paths(db);
    assert_eq!(recorded_paths.len(), 5, "{recorded_paths:?}");
    assert_eq!(
        recorded_paths[&input.join("copy-of-2.7.pymortem")],
        content_id(&bundles::sample("pyenv-2.7.18-double_free"))
    );

    // The groups: every readable crash once, the truth's Python versions.
    let doc = groups_json(db, &[]);
    assert_eq!(doc["crashes"], 3, "{doc}");
    assert_eq!(doc["unreadable"], 1, "{doc}");
    let groups = doc["groups"].as_array().unwrap();
    let counted: u64 = groups.iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3, "{doc}");
    assert_eq!(doc["total_groups"], groups.len(), "{doc}");
    let versions: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g["python_versions"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, truth_versions);
    let counts: Vec<u64> = groups
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most first: {counts:?}"
    );

    // A re-run with one new core and a recorded file rewritten behind the
    // database's back (same size, same time): only the new core is read.
    let new_core = input.join("core.new");
    std::fs::write(&new_core, synthetic(1, 11)).unwrap();
    let before = std::fs::metadata(&garbage).unwrap().modified().unwrap();
    std::fs::write(&garbage, b"NOT A CORE AT ALL".repeat(50)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&garbage)
        .unwrap()
        .set_modified(before)
        .unwrap();
    let (summary, lines) = triage_db(db, &[input.as_path()]);
    let database = &summary["database"];
    assert_eq!(database["new_crashes"], 1, "{summary}");
    assert_eq!(database["already_recorded"], 5, "{summary}");
    assert_eq!(database["new_paths"], 0, "{summary}");
    assert_eq!(summary["cores"], 1, "only the new core is read: {summary}");
    assert_eq!(lines.len(), 2, "the new core, notes.txt: {lines:?}");
    let recorded = crashes(db);
    assert_eq!(recorded.len(), 5);
    assert_eq!(
        recorded[&content_id(&new_core)].signal.as_deref(),
        Some("SIGSEGV")
    );

    // Nothing new: the text report's first line says so.
    let (code, text, stderr) = run(&[s("triage"), s("--db"), db.arg(), s(input.display())]);
    assert_eq!(code, 0, "{stderr}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("crash database ")
            && first.contains(": 0 new (0 unreadable), 6 already recorded"),
        "{text}"
    );

    // --limit, --since, and the JSON's keys are documented.
    let doc = groups_json(db, &[]);
    let all = doc["total_groups"].as_u64().unwrap();
    assert!(all >= 2, "{doc}");
    let one = groups_json(db, &["--limit", "1"]);
    assert_eq!(one["groups"].as_array().unwrap().len(), 1);
    assert_eq!(one["total_groups"], all);
    assert_eq!(one["groups"][0], doc["groups"][0]);
    let future = groups_json(db, &["--since", "2999-01-01"]);
    assert_eq!(future["crashes"], 0);
    assert!(future["groups"].as_array().unwrap().is_empty());
    assert_eq!(future["since"], 32_472_144_000u64);
    let past = groups_json(db, &["--since", "1970-01-02"]);
    assert_eq!(past["crashes"], doc["crashes"]);
    let reference = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let mut keys = BTreeSet::new();
    collect_keys(&doc, &mut keys);
    collect_keys(&summary, &mut keys);
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/json-schema.md: {undocumented:?}"
    );

    // The text: every group's signature, lines that fit the width asked for.
    let (code, text, stderr) = support::pymortem_with_env(&["groups", "--db", &db.arg()], &[]);
    assert_eq!(code, 0, "{stderr}");
    for g in doc["groups"].as_array().unwrap() {
        assert!(text.contains(g["signature"].as_str().unwrap()), "{text}");
    }
    assert!(text.starts_with("crash database "), "{text}");
    let (code, narrow, stderr) =
        support::pymortem_with_env(&["groups", "--db", &db.arg()], &[("COLUMNS", "60")]);
    assert_eq!(code, 0, "{stderr}");
    for line in narrow.lines() {
        assert!(
            line.chars().count() <= 60,
            "wider than 60: {line:?}\n{narrow}"
        );
    }
}

fn collect_keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                collect_keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

/// The schema of version 1, as the first pymortem with a crash database
/// wrote it: no host, boot id or unchecked checks.
const SCHEMA_V1: &str = r#"
PRAGMA application_id = 1886997869;
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
    top_frames TEXT NOT NULL DEFAULT '{"python":[],"native":[]}'
);
CREATE INDEX crashes_by_signature ON crashes(signature);
CREATE TABLE paths (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    crash_id INTEGER NOT NULL REFERENCES crashes(id)
);
CREATE INDEX paths_by_crash ON paths(crash_id);
PRAGMA user_version = 1;
"#;

#[test]
fn a_version_1_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::Sqlite(dir.path().join("old.db"));
    let boot = "0123456789abcdef0123456789abcdef";
    {
        let conn = db.sqlite();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO crashes (id, content_hash, size, recorded_at, pymortem_version,
                 crash_time, python_version, signal, signature, signature_text,
                 signature_version, top_frames)
             VALUES (1, 'aa', 10, 1, '0.1.0', 1790000000, '3.11.7', 'SIGABRT',
                 'v1:00000000000000aa', 'signal: SIGABRT', 1,
                 '{\"python\":[\"main (app.py)\"],\"native\":[]}')",
            [],
        )
        .unwrap();
        let path =
            format!("/var/lib/systemd/coredump/core.python3.0.{boot}.77.1790000000000000.zst");
        conn.execute(
            "INSERT INTO paths (path, size, mtime_ns, crash_id) VALUES (?1, 10, 0, 1)",
            [path.as_bytes()],
        )
        .unwrap();
    }
    let doc = groups_json(&db, &[]);
    assert_eq!(doc["crashes"], 1, "{doc}");
    assert_eq!(doc["database"]["schema_version"], 4);
    let group = &doc["groups"][0];
    assert_eq!(group["count"], 1);
    assert_eq!(group["python_versions"], serde_json::json!(["3.11.7"]));
    assert_eq!(group["first_seen"], 1_790_000_000u64);
    // The migration took the boot id from the systemd-coredump name.
    assert_eq!(group["boots"], 1, "{doc}");
    assert_eq!(user_version(db.path()), 4);
    let conn = db.sqlite();
    let (boot_id, host): (Option<String>, Option<String>) = conn
        .query_row("SELECT boot_id, host FROM crashes WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((boot_id.as_deref(), host), (Some(boot), None));
    // A crash recorded before fingerprints, with its content id, whose file
    // is gone: a copy of it is found by size and content id.
    let legacy = synthetic(7, 6);
    conn.execute(
        "INSERT INTO crashes (id, content_hash, size, recorded_at, pymortem_version, signal,
             signature, signature_text, signature_version)
         VALUES (2, ?1, ?2, 1, '0.1.0', 'SIGABRT', 'v1:00000000000000bb', 'signal: SIGABRT', 1)",
        rusqlite::params![content_id_of(&legacy), legacy.len() as i64],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO paths (path, size, mtime_ns, crash_id) VALUES (?1, ?2, 0, 2)",
        rusqlite::params![b"/gone/core.legacy".as_slice(), legacy.len() as i64],
    )
    .unwrap();
    drop(conn);
    // And it records on.
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("core.1"), synthetic(2, 6)).unwrap();
    std::fs::write(input.join("core.legacy-copy"), &legacy).unwrap();
    let mut args = vec![s("triage"), s("--db"), db.arg(), s("--json")];
    args.extend([s("--host"), s("web1"), s(input.display())]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["database"]["new_crashes"], 1, "{summary}");
    assert_eq!(summary["database"]["new_paths"], 1, "{summary}");
    assert_eq!(summary["cores"], 1, "the copy is not read: {summary}");
    let linked: i64 = db
        .sqlite()
        .query_row(
            "SELECT crash_id FROM paths WHERE path = ?1",
            [input
                .join("core.legacy-copy")
                .as_os_str()
                .as_encoded_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(linked, 2);
    let doc = groups_json(&db, &[]);
    assert_eq!(doc["crashes"], 3, "{doc}");
    let hosts: Vec<&Value> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["hosts"].as_array().unwrap())
        .collect();
    assert_eq!(hosts, [&Value::from("web1")], "{doc}");
}

#[test]
fn a_newer_or_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("core.1"), synthetic(3, 11)).unwrap();
    let db = TestDb::Sqlite(dir.path().join("crashes.db"));
    let (summary, _) = triage_db(&db, &[input.as_path()]);
    assert_eq!(summary["database"]["new_crashes"], 1);
    db.sqlite()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    std::fs::write(input.join("core.2"), synthetic(4, 11)).unwrap();
    for command in ["triage", "groups"] {
        let mut args = vec![s(command), s("--db"), db.arg()];
        if command == "triage" {
            args.push(s(input.display()));
        }
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{command}: {stdout}{stderr}");
        assert!(
            stderr.contains("schema version 99") && stderr.contains("newer than this pymortem"),
            "{command}: {stderr}"
        );
    }
    // Untouched: no migration, no row.
    assert_eq!(user_version(db.path()), 99);
    assert_eq!(crashes(&db).len(), 1);

    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE accounts (name TEXT)")
        .unwrap();
    let (code, _, stderr) = run(&[s("groups"), s("--db"), s(foreign.display())]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a pymortem crash database"), "{stderr}");
    let missing = dir.path().join("missing.db");
    let (code, _, stderr) = run(&[s("groups"), s("--db"), s(missing.display())]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no crash database there"), "{stderr}");
    assert!(!missing.exists(), "groups created a database");
}

#[test]
fn an_older_signature_is_regrouped_from_the_stored_frames() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for n in 0..4 {
        std::fs::write(
            input.join(format!("core.{n}")),
            synthetic(10 + n, SIGNALS[n as usize % 2]),
        )
        .unwrap();
    }
    let db = TestDb::Sqlite(dir.path().join("crashes.db"));
    triage_db(&db, &[input.as_path()]);
    let before: BTreeMap<i64, Option<String>> = crash_rows(&db)
        .into_iter()
        .map(|(id, r)| (id, r.signature))
        .collect();
    assert_eq!(before.len(), 4);
    db.sqlite()
        .execute_batch(
            "UPDATE crashes SET signature = 'v0:' || id,
                 signature_text = 'old', signature_version = 0",
        )
        .unwrap();
    // Cores away (a note stays, so the folder is not empty): the
    // regrouping reads none.
    std::fs::remove_dir_all(&input).unwrap();
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("notes.txt"), b"notes").unwrap();
    let (summary, _) = triage_db(&db, &[input.as_path()]);
    assert_eq!(summary["database"]["regrouped"], 4, "{summary}");
    let after: BTreeMap<i64, Option<String>> = crash_rows(&db)
        .into_iter()
        .map(|(id, r)| (id, r.signature))
        .collect();
    assert_eq!(after, before);
    // Two signals, two groups of two.
    let doc = groups_json(&db, &[]);
    let counts: Vec<u64> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [2, 2], "{doc}");
}

/// A core of `synthetic(n, SIGSEGV)` with 1 MiB of data more: large enough
/// that a byte in its middle is outside the few pages a fingerprint takes.
fn large_synthetic(n: u32) -> Vec<u8> {
    let mut core = synthetic(n, 11);
    core.extend(
        (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n) >> 13) as u8),
    );
    core
}

/// The fingerprints recorded, by crash id.
fn fingerprints(db: &TestDb) -> BTreeMap<i64, Option<String>> {
    db.rows("SELECT CAST(id AS TEXT), fingerprint FROM {t}crashes")
        .iter()
        .map(|r| (text(&r[0]).unwrap().parse().unwrap(), text(&r[1])))
        .collect()
}

#[test]
fn copies_are_found_by_fingerprint_then_content() {
    let dir = tempfile::tempdir().unwrap();
    copies_by_fingerprint(&TestDb::Sqlite(dir.path().join("crashes.db")));
}

#[test]
fn copies_are_found_by_fingerprint_then_content_on_a_postgresql_server() {
    let Some(server) = support::pg::PgServer::start() else {
        return;
    };
    copies_by_fingerprint(&TestDb::Postgres(server.new_database("copies")));
}

/// A crash without a copy is recorded without its content id; a copy that
/// turns up later is linked to it unread (the content id then taken from
/// the recorded path), a core of the same fingerprint and other bytes is a
/// crash of its own, and a copy of a crash whose files are gone cannot be
/// compared, so it is recorded as a crash of its own rather than merged.
fn copies_by_fingerprint(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        path
    };
    let (first, second, third) = (folder("first"), folder("second"), folder("third"));
    let original = large_synthetic(1);
    let a = support::write_temp(&first, "core.a", &original);
    let gone = support::write_temp(&first, "core.gone", &large_synthetic(2));
    let (summary, _) = triage_db(db, &[first.as_path()]);
    assert_eq!(summary["database"]["new_crashes"], 2, "{summary}");
    let rows = crash_rows(db);
    assert!(
        rows.values().all(|r| r.content_hash.is_none()),
        "no copy, no content id taken: {rows:?}"
    );

    // A copy of a, and a core that differs from a in one byte of its middle.
    let b = support::write_temp(&second, "core.b", &original);
    let mut altered = original.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    let c = support::write_temp(&second, "core.c", &altered);
    let (summary, lines) = triage_db(db, &[second.as_path()]);
    assert_eq!(summary["database"]["new_crashes"], 1, "{summary}");
    assert_eq!(summary["database"]["new_paths"], 1, "{summary}");
    assert_eq!(summary["cores"], 1, "only core.c is read: {summary}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let recorded = crashes(db);
    assert_eq!(recorded.len(), 3);
    let crash_of_a = &recorded[&content_id(&a)];
    assert_eq!(crash_of_a.paths, [a.clone(), b.clone()]);
    assert_eq!(crash_of_a.content_hash, Some(content_id(&a)));
    assert_eq!(recorded[&content_id(&c)].paths, std::slice::from_ref(&c));
    // The premise: a and c share a fingerprint, and only content ids told
    // them apart.
    let ids: BTreeMap<PathBuf, i64> = crash_rows(db)
        .into_iter()
        .flat_map(|(id, r)| r.paths.into_iter().map(move |p| (p, id)))
        .collect();
    let prints = fingerprints(db);
    assert!(prints[&ids[&a]].is_some());
    assert_eq!(prints[&ids[&a]], prints[&ids[&c]]);

    // core.gone's only file is deleted: its copy cannot be compared.
    std::fs::remove_file(&gone).unwrap();
    let copy_of_gone = support::write_temp(&third, "core.copy", &large_synthetic(2));
    let (summary, _) = triage_db(db, &[third.as_path()]);
    assert_eq!(summary["database"]["new_crashes"], 1, "{summary}");
    assert_eq!(summary["database"]["new_paths"], 0, "{summary}");
    let rows = crash_rows(db);
    let copy_id = rows
        .iter()
        .find(|(_, r)| r.paths == [copy_of_gone.clone()])
        .map(|(id, _)| *id)
        .unwrap();
    let gone_id = rows
        .iter()
        .find(|(_, r)| r.paths == [gone.clone()])
        .map(|(id, _)| *id)
        .unwrap();
    let prints = fingerprints(db);
    assert_eq!(prints[&copy_id], prints[&gone_id]);
    assert_eq!(rows[&gone_id].content_hash, None);
}

/// Four `triage --db` processes at once on overlapping folders (the same
/// paths, and copies of the same contents under other paths): every path
/// and every content is recorded exactly once, and each new crash is
/// counted by exactly one process.
#[test]
fn concurrent_writers_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers(&TestDb::Sqlite(dir.path().join("crashes.db")));
}

#[test]
fn concurrent_writers_on_a_postgresql_server() {
    let Some(server) = support::pg::PgServer::start() else {
        return;
    };
    concurrent_writers(&TestDb::Postgres(server.new_database("writers")));
}

fn concurrent_writers(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let mut signal_of: BTreeMap<String, &str> = BTreeMap::new();
    let mut files = Vec::new();
    for n in 0..12u32 {
        let signo = SIGNALS[n as usize % SIGNALS.len()];
        let bytes = synthetic(100 + n, signo);
        // a: cores 0..8; b: cores 4..12, so 4..8 are in both (copies).
        if n < 8 {
            files.push(support::write_temp(&a, &format!("core.{n}"), &bytes));
        }
        if n >= 4 {
            files.push(support::write_temp(&b, &format!("core.{n}"), &bytes));
        }
        let hash = content_id_of(&bytes);
        signal_of.insert(hash, signal_name(i64::from(signo)));
    }
    std::fs::write(a.join("garbage.core"), b"garbage").unwrap();
    files.push(a.join("garbage.core"));
    let exe = env!("CARGO_BIN_EXE_pymortem");
    let runs: [&[&Path]; 4] = [
        &[a.as_path()],
        &[b.as_path()],
        &[a.as_path(), b.as_path()],
        &[dir.path()],
    ];
    let children: Vec<_> = runs
        .iter()
        .map(|paths| {
            let mut command = std::process::Command::new(exe);
            command
                .args(["triage", "--json", "--jobs", "1", "--no-cache", "--db"])
                .arg(db.arg())
                .args(paths.iter())
                .env_remove("DEBUGINFOD_URLS")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let mut new_crashes = 0;
    let mut new_records = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        new_crashes += summary["database"]["new_crashes"].as_u64().unwrap();
        new_records += summary["database"]["new_crashes"].as_u64().unwrap()
            + summary["database"]["new_paths"].as_u64().unwrap();
    }
    // 12 contents and the garbage; 16 core paths and the garbage's.
    assert_eq!(new_crashes, 13, "each crash counted by one process");
    assert_eq!(new_records, 17, "each path recorded by one process");
    let recorded = crashes(db);
    assert_eq!(recorded.len(), 13);
    for (hash, signal) in &signal_of {
        assert_eq!(recorded[hash].signal.as_deref(), Some(*signal), "{hash}");
    }
    let recorded_paths = paths(db);
    let expected: BTreeMap<PathBuf, String> =
        files.iter().map(|f| (f.clone(), content_id(f))).collect();
    assert_eq!(recorded_paths, expected);
}

/// Cores of the generated matrix (pyenv builds, read without a sysroot):
/// each recorded with its truth's Python version and signal; a hard link
/// to one of them is a second path of the same crash.
#[test]
fn matrix_cores_are_recorded_as_their_truth_says() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let chosen: Vec<&Value> = manifest
        .iter()
        .filter(|e| {
            e["kind"] == "kernel"
                && e["sysroot"].is_null()
                && e["debug_dirs"].as_array().is_none_or(Vec::is_empty)
                && ["double_free", "threads", "segfault"].contains(&e["scenario"].as_str().unwrap())
                && [
                    "pyenv-2.7.18",
                    "pyenv-3.7.16",
                    "pyenv-3.11.7",
                    "pyenv-3.13.0",
                ]
                .contains(&e["interp"].as_str().unwrap())
                && e["ok"] != false
        })
        .collect();
    assert!(chosen.len() >= 6, "{} cores", chosen.len());
    let dir = tempfile::tempdir_in(support::repo().join("target")).unwrap();
    let first = PathBuf::from(chosen[0]["core"].as_str().unwrap());
    let link = dir.path().join("core.linked");
    if std::fs::hard_link(&first, &link).is_err() {
        std::fs::copy(&first, &link).unwrap();
    }
    let db = TestDb::Sqlite(dir.path().join("crashes.db"));
    let cores: Vec<PathBuf> = chosen
        .iter()
        .map(|e| PathBuf::from(e["core"].as_str().unwrap()))
        .collect();
    let mut paths_given: Vec<&Path> = cores.iter().map(PathBuf::as_path).collect();
    paths_given.push(&link);
    let (summary, _) = triage_db(&db, &paths_given);
    assert_eq!(
        summary["database"]["new_crashes"],
        chosen.len(),
        "{summary}"
    );
    assert_eq!(summary["database"]["new_paths"], 1, "{summary}");
    let recorded = crashes(&db);
    let mut problems = Vec::new();
    for e in &chosen {
        let truth = support::truth(e);
        let row = &recorded[&content_id(Path::new(e["core"].as_str().unwrap()))];
        let want_version = truth["python_version"].as_str();
        let want_signal = signal_name(truth["expected_signal"].as_i64().unwrap());
        if row.python_version.as_deref() != want_version
            || row.signal.as_deref() != Some(want_signal)
        {
            problems.push(format!(
                "{}: recorded {:?} {:?}, truth {want_version:?} {want_signal}",
                support::label(e),
                row.python_version,
                row.signal
            ));
        }
    }
    support::assert_no_problems(&problems);
}

/// On a server: a database of a newer schema or of another program is
/// refused untouched, an unreachable server's error names it without its
/// password.
#[test]
fn a_newer_or_foreign_server_database_is_refused() {
    let Some(server) = support::pg::PgServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("core.1"), synthetic(3, 11)).unwrap();
    let db = TestDb::Postgres(server.new_database("newer"));
    let (summary, _) = triage_db(&db, &[input.as_path()]);
    assert_eq!(summary["database"]["new_crashes"], 1);
    let mut client = postgres::Client::connect(&db.arg(), postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE pymortem.meta SET value = '99' WHERE key = 'schema_version'")
        .unwrap();
    std::fs::write(input.join("core.2"), synthetic(4, 11)).unwrap();
    for command in ["triage", "groups"] {
        let mut args = vec![s(command), s("--db"), db.arg()];
        if command == "triage" {
            args.push(s(input.display()));
        }
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{command}: {stdout}{stderr}");
        assert!(
            stderr.contains("schema version 99") && stderr.contains("newer than this pymortem"),
            "{command}: {stderr}"
        );
    }
    assert_eq!(crashes(&db).len(), 1);

    let foreign = server.new_database("other_app");
    postgres::Client::connect(&foreign, postgres::NoTls)
        .unwrap()
        .batch_execute("CREATE SCHEMA pymortem; CREATE TABLE pymortem.accounts (name TEXT)")
        .unwrap();
    let (code, _, stderr) = run(&[s("groups"), s("--db"), s(&foreign)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a pymortem crash database"), "{stderr}");

    // Nothing listens on port 1.
    let (code, _, stderr) = run(&[
        s("groups"),
        s("--db"),
        s("postgresql://crash:s3cret@127.0.0.1:1/crashes"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("postgresql://crash:***@127.0.0.1:1/crashes") && !stderr.contains("s3cret"),
        "{stderr}"
    );
}
