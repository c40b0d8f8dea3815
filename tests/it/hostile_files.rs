//! Files that are not regular files (FIFOs above all: opening one for
//! reading waits for a writer) wherever pymortem opens a file: as the core,
//! inside a triage folder, at a module's path in the sysroot and at its
//! `.build-id` debug path. Each run is given a generous timeout so that a
//! regression fails instead of hanging the suite.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pymortem::modules::{ElfImage, hex};
use serde_json::Value;

/// Far longer than any of these runs takes; only a blocked open reaches it.
const HANG_LIMIT: Duration = Duration::from_secs(60);

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Run pymortem; (exit code, stdout, stderr), or a panic if it is still
/// running after [`HANG_LIMIT`] (it is killed first).
fn run_with_limit(args: &[&str]) -> (i32, String, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("out");
    let err_path = out_dir.path().join("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .env("XDG_CACHE_HOME", out_dir.path().join("cache"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > HANG_LIMIT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("pymortem {args:?} still running after {HANG_LIMIT:?}: blocked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(out_path).unwrap(),
        std::fs::read_to_string(err_path).unwrap(),
    )
}

#[test]
fn a_fifo_as_core_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("core.fifo");
    mkfifo(&fifo);
    let (code, _, stderr) = run_with_limit(&["info", fifo.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(fifo.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("not a regular file: it is a FIFO"),
        "{stderr}"
    );
}

#[test]
fn a_fifo_in_a_triage_folder_is_skipped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("sub").join("core.1234");
    mkfifo(&fifo);
    let (code, stdout, stderr) =
        run_with_limit(&["triage", "--json", dir.path().to_str().unwrap()]);
    assert!(code == 0 || code == 1, "exit {code}: {stderr}");
    let line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["path"].as_str() == fifo.to_str())
        .unwrap_or_else(|| panic!("the FIFO is not listed:\n{stdout}\n{stderr}"));
    let text = line.to_string();
    assert!(text.contains("it is a FIFO"), "{text}");
}

/// A core whose modules are at host paths (no sysroot of its own).
fn host_path_core() -> Option<Value> {
    support::manifest().into_iter().find(|e| {
        e["ok"].as_bool() == Some(true)
            && e["sysroot"].is_null()
            && e["kind"].as_str() == Some("kernel")
            && e["scenario"].as_str() == Some("threads")
            && e["exe"].as_str().is_some()
    })
}

#[test]
fn fifos_in_the_sysroot_are_skipped_with_their_reason() {
    if support::matrix_missing() {
        return;
    }
    let entry = host_path_core().expect("a kernel core of the threads scenario without a sysroot");
    let exe = entry["exe"].as_str().unwrap();
    let build_id = ElfImage::open(Path::new(exe))
        .and_then(|i| i.build_id())
        .expect("the interpreter has a build-id");
    let root = tempfile::tempdir().unwrap();
    // The executable, where the core's NT_FILE note says it is, is a FIFO;
    // so is its debug file by build-id.
    let exe_fifo = root.path().join(exe.trim_start_matches('/'));
    mkfifo(&exe_fifo);
    let id = hex(&build_id);
    let debug_fifo = root
        .path()
        .join("usr/lib/debug/.build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    mkfifo(&debug_fifo);
    let core = entry["core"].as_str().unwrap();
    let (code, stdout, stderr) = run_with_limit(&[
        "info",
        "--json",
        "--sysroot",
        root.path().to_str().unwrap(),
        core,
    ]);
    assert!(code != 2 && code >= 0, "exit {code}: {stderr}");
    let all = format!("{stdout}\n{stderr}");
    for fifo in [&exe_fifo, &debug_fifo] {
        let said = format!(
            "{}: skipped: not a regular file: it is a FIFO",
            fifo.display()
        );
        assert!(all.contains(&said), "no `{said}` in:\n{all}");
    }
}
