//! `triage --watch`: a long-running recorder fed by a folder. Cores dropped
//! the ways writers drop them (renamed in as systemd-coredump does, written
//! slowly with pauses, copied twice, garbage) are each recorded once, whole,
//! with the signal the test gave them; the cores there before the watch
//! began are recorded first.

use crate::crashdb::synthetic;
use crate::support;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The watcher, killed when dropped.
struct Watcher {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watcher {
    fn start(dir: &Path, db: &Path) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymortem"))
            .args(["triage", "--watch", "--json", "--settle", "1", "--no-cache"])
            .args(["--rescan", "5", "--jobs", "1", "--db"])
            .arg(db)
            .arg(dir)
            .env_remove("DEBUGINFOD_URLS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next `n` lines, parsed; fails after a minute.
    fn next(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("line {} of {n}: {e}", i + 1));
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
            })
            .collect()
    }

    /// No line for `quiet`.
    fn assert_quiet(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("unexpected: {line}");
        }
    }
}

fn signal_of(line: &serde_json::Value) -> &str {
    line["signal"]
        .as_str()
        .unwrap_or_else(|| panic!("no signal: {line}"))
}

#[test]
fn watched_cores_are_recorded_once_when_whole() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("coredump");
    std::fs::create_dir(&watched).unwrap();
    let db = dir.path().join("crashes.db");
    // There before the watch: recorded first.
    std::fs::write(watched.join("core.before"), synthetic(300, 8)).unwrap();
    let watcher = Watcher::start(&watched, &db);
    let first = watcher.next(1);
    assert_eq!(signal_of(&first[0]), "SIGFPE");

    // As systemd-coredump: a hidden file, renamed when written.
    let hidden = watched.join(".#core.renamed");
    std::fs::write(&hidden, synthetic(301, 11)).unwrap();
    std::fs::rename(&hidden, watched.join("core.renamed")).unwrap();
    let renamed = watcher.next(1);
    assert_eq!(signal_of(&renamed[0]), "SIGSEGV");
    assert!(
        renamed[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("core.renamed")
    );

    // Written slowly: half, a pause longer than the settle time, the rest.
    let bytes = synthetic(302, 7);
    let slow = watched.join("core.slow");
    let mut file = std::fs::File::create(&slow).unwrap();
    file.write_all(&bytes[..bytes.len() / 2]).unwrap();
    file.flush().unwrap();
    watcher.assert_quiet(Duration::from_secs(3));
    file.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(file);
    let slow_line = watcher.next(1);
    assert_eq!(signal_of(&slow_line[0]), "SIGBUS", "{slow_line:?}");

    // A copy of a recorded core is linked, not read; garbage is recorded
    // with its error.
    std::fs::copy(watched.join("core.renamed"), watched.join("core.copy")).unwrap();
    std::fs::write(watched.join("core.garbage"), b"not a core".repeat(30)).unwrap();
    let garbage = watcher.next(1);
    assert!(garbage[0]["error"].is_string(), "{garbage:?}");
    watcher.assert_quiet(Duration::from_secs(3));
    drop(watcher);

    // The database: four crashes, five paths; nothing recorded twice.
    let (code, stdout, stderr) =
        support::pymortem(&["groups", "--db", db.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["crashes"], 3, "{doc}");
    assert_eq!(doc["unreadable"], 1, "{doc}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let paths: i64 = conn
        .query_row("SELECT COUNT(*) FROM paths", [], |r| r.get(0))
        .unwrap();
    assert_eq!(paths, 5);
    // The slow core was recorded whole: with the whole file's size, and read.
    use std::os::unix::ffi::OsStrExt;
    let (path_size, crash_size, error): (i64, i64, Option<String>) = conn
        .query_row(
            "SELECT p.size, c.size, c.error FROM crashes c JOIN paths p ON p.crash_id = c.id
             WHERE p.path = ?1",
            [slow.as_os_str().as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let whole = std::fs::metadata(&slow).unwrap().len() as i64;
    assert_eq!((path_size, crash_size, error), (whole, whole, None));
}
