//! A private PostgreSQL server for one test: its own data directory under
//! the system temp dir, its own port on 127.0.0.1, trust authentication,
//! stopped and removed when dropped. Run as the `postgres` user when the
//! tests run as root (the server refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server.
pub struct PgServer {
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
}

/// The newest installed server's programs (`initdb`, `pg_ctl`).
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY-free: the effective uid from /proc, as `id -u` would print it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl PgServer {
    /// Start a server, or `None` (the test is skipped) when PostgreSQL is
    /// not installed; with PYMORTEM_REQUIRE_MATRIX=1 that fails instead.
    pub fn start() -> Option<PgServer> {
        let Some(bin) = server_bin() else {
            if super::matrix_required() {
                panic!(
                    "no PostgreSQL server under /usr/lib/postgresql and PYMORTEM_REQUIRE_MATRIX=1: \
                     apt-get install postgresql (sample-cores/setup-interpreters.sh does)"
                );
            }
            super::note_skipped_test();
            return None;
        };
        let run_as = is_root().then(|| "postgres".to_string());
        // The system temp dir, not $TMPDIR: the server's user must reach
        // it, and the tests' private temp dir is the tester's alone.
        let data = tempfile::Builder::new()
            .prefix("pymortem-pg-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        if let Some(user) = &run_as {
            let status = Command::new("chown").arg(user).arg(&data).status().unwrap();
            assert!(status.success(), "chown {user} {}", data.display());
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let server = PgServer {
            data,
            bin,
            port,
            run_as,
        };
        let db = server.data.join("db");
        server.run(
            "initdb",
            &[
                "-D",
                db.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=60 -c shared_buffers=16MB",
            server.data.display()
        );
        let log = server.data.join("log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                db.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Some(server)
    }

    /// The server's `program`, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        command.current_dir("/").env("LC_ALL", "C.UTF-8");
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        let log = std::fs::read_to_string(self.data.join("log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of a new, empty database on the server.
    pub fn new_database(&self, name: &str) -> String {
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("{}: {e}", self.url("postgres")));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let db = self.data.join("db");
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                db.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
