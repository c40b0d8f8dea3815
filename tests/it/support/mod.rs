//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod bundles;
pub mod pg;
pub mod synth;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Fail with every problem listed, one per line, and how many there are.
#[track_caller]
pub fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every interpreter of the sample-core matrix (generate.py's `INTERPS`);
/// tests that iterate the matrix require each of them, kernel and gcore.
pub const INTERPRETERS: [&str; 13] = [
    "pyenv-2.7.18",
    "pyenv-3.6.15",
    "pyenv-3.7.16",
    "pyenv-3.8.18",
    "pyenv-3.9.18",
    "pyenv-3.10.13",
    "pyenv-3.11.7",
    "pyenv-3.12.1",
    "pyenv-3.13.0",
    "debian-3.11",
    "debian-3.13",
    "debian-3.14",
    "debian-3.15",
];

/// The arm64 interpreters of the matrix: Debian's arm64 builds run under
/// QEMU, which writes one core per scenario (kind `qemu`). No gcore and no
/// snapshots: gdb would dump QEMU, not its guest.
pub const ARM64_INTERPRETERS: [&str; 4] = [
    "debian-3.11-arm64",
    "debian-3.13-arm64",
    "debian-3.14-arm64",
    "debian-3.15-arm64",
];

/// Cores of one crash scenario that runs everywhere: kernel and gcore per
/// x86-64 interpreter, one QEMU core per arm64 one.
pub const CORES_PER_SCENARIO: usize = INTERPRETERS.len() * 2 + ARM64_INTERPRETERS.len();

/// Whether QEMU wrote the core: no NT_FILE note and no page of any ELF
/// file (not even its headers), so without the files no module is known.
pub fn written_by_qemu(entry: &Value) -> bool {
    entry["kind"]
        .as_str()
        .is_some_and(|k| k.starts_with("qemu"))
}

/// The folder of the generated sample-core matrix: `$PYMORTEM_CORES`, else
/// `sample-cores/generated`.
pub fn cores_dir() -> PathBuf {
    std::env::var_os("PYMORTEM_CORES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("sample-cores/generated"))
}

/// The one command that sets up the interpreters, generates the matrix and
/// runs every test with it (the README's test command).
pub const FULL_TEST_COMMAND: &str = "sample-cores/test-all.sh";

/// Whether a test that needs the generated sample-core matrix must return
/// without running: the matrix is absent (no `manifest.json`) and
/// `PYMORTEM_REQUIRE_MATRIX=1` is not set. Every test that reads the matrix
/// starts with `if support::matrix_missing() { return; }`.
///
/// The run says once, when the test binary exits, how many tests did not
/// run and how to run them. With `PYMORTEM_REQUIRE_MATRIX=1` (set by
/// [`FULL_TEST_COMMAND`]) a missing matrix fails the test instead: there a
/// skip must never count as a pass. A matrix that is present but lacks an
/// interpreter or a core fails the tests that want it either way.
pub fn matrix_missing() -> bool {
    let manifest = cores_dir().join("manifest.json");
    if manifest.is_file() {
        return false;
    }
    if matrix_required() {
        panic!(
            "{} is missing and PYMORTEM_REQUIRE_MATRIX=1: generate the sample cores \
             (python3 sample-cores/generate.py, after sample-cores/setup-interpreters.sh), \
             or run {FULL_TEST_COMMAND}, which does both",
            manifest.display()
        );
    }
    note_skipped_test();
    true
}

/// Whether a missing matrix fails the tests (`PYMORTEM_REQUIRE_MATRIX=1`).
pub fn matrix_required() -> bool {
    std::env::var_os("PYMORTEM_REQUIRE_MATRIX").is_some_and(|v| v == "1")
}

static SKIPPED_TESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Count a test that did not run for want of the matrix; the first one
/// arranges for the note at exit, so the run says it once, after the
/// results, where it is seen (libtest hides a passing test's output).
pub fn note_skipped_test() {
    use std::sync::atomic::Ordering;
    if SKIPPED_TESTS.fetch_add(1, Ordering::SeqCst) == 0 {
        // SAFETY: registers a plain function, called once by libc's exit.
        unsafe { libc::atexit(print_skipped_note) };
    }
}

extern "C" fn print_skipped_note() {
    use std::io::Write;
    let skipped = SKIPPED_TESTS.load(std::sync::atomic::Ordering::SeqCst);
    let plural = if skipped == 1 { "" } else { "s" };
    // Straight to the descriptor: libtest captures eprintln! of a test.
    let _ = writeln!(
        std::io::stderr(),
        "\nNOTE: {skipped} test{plural} that need the generated sample cores did not run \
         (counted as passed above): {} has no manifest.json. Run every test with \
         {FULL_TEST_COMMAND} (as root: it sets up the interpreters, generates the cores, \
         then runs the tests), or set PYMORTEM_CORES to a generated folder.\n",
        cores_dir().display()
    );
}

/// The sample-core manifest written by `sample-cores/generate.py`.
///
/// A test calls it after [`matrix_missing`]; without the matrix it fails,
/// and says how to make it.
pub fn manifest() -> Vec<Value> {
    let path = cores_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nGenerate the sample cores first: python3 sample-cores/generate.py \
             (or set PYMORTEM_CORES to a folder holding manifest.json); a test that reads \
             them starts with `if support::matrix_missing() {{ return; }}`",
            path.display()
        )
    });
    let value: Value = serde_json::from_str(&text).expect("manifest.json is valid JSON");
    match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("cores") {
            Some(Value::Array(items)) => items,
            _ => panic!("manifest.json has no cores list"),
        },
        _ => panic!("manifest.json is not a list"),
    }
}

/// `interp scenario kind`: how a test names a matrix core in its messages.
pub fn label(entry: &Value) -> String {
    format!(
        "{} {} {}",
        entry["interp"].as_str().unwrap(),
        entry["scenario"].as_str().unwrap(),
        entry["kind"].as_str().unwrap()
    )
}

/// A `threads --json` report's threads by LWP.
pub fn threads_by_lwp(report: &Value) -> BTreeMap<i64, &Value> {
    report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t["lwp"].as_i64()?, t)))
        .collect()
}

/// A kernel core of the threads scenario from an interpreter on the host
/// (no sysroot needed): a plain, mid-sized core.
pub fn host_threads_kernel_entry() -> Value {
    manifest()
        .into_iter()
        .find(|e| e["scenario"] == "threads" && e["kind"] == "kernel" && e["sysroot"].is_null())
        .expect("a kernel core of the threads scenario")
}

/// The snapshots of live processes that `sample-cores/generate.py` lists in
/// `snapshots.json` beside the manifest (the `busy_snapshot` family): their
/// truth files hold no stacks and no signal, so they are kept apart from
/// the crash scenarios' manifest. Part of the matrix: a manifest without
/// it fails.
pub fn snapshot_manifest() -> Vec<Value> {
    side_manifest("snapshots.json", "python3 sample-cores/generate.py")
}

/// The cores of a C extension's reference-counting bugs that
/// `sample-cores/generate.py --victims` lists in `victims.json` beside the
/// manifest (the `spool_<bug>_<phase>` family): their truth lists victims
/// and holders, not stacks. Part of the matrix the README's test command
/// makes: a manifest without it fails.
pub fn victim_manifest() -> Vec<Value> {
    side_manifest("victims.json", "python3 sample-cores/generate.py --victims")
}

/// A list of cores `generate.py` writes beside the manifest; `make` is the
/// command that writes it.
fn side_manifest(name: &str, make: &str) -> Vec<Value> {
    let path = cores_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nGenerate the sample cores first: {make}",
            path.display()
        )
    });
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => panic!("{name} is not a list"),
        Err(e) => panic!("{name} is not valid JSON: {e}"),
    }
}

/// `docs/schema/pymortem-v1.schema.json`, read once.
pub fn schema() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = repo().join("docs/schema/pymortem-v1.schema.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The schema compiled once, as draft 2020-12.
pub fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema())
            .unwrap_or_else(|e| panic!("the schema does not compile: {e}"))
    })
}

/// Where `doc` breaks the schema, each as `schema: at 'PATH': MESSAGE`.
pub fn schema_violations(doc: &Value) -> Vec<String> {
    schema_validator()
        .iter_errors(doc)
        .map(|e| format!("schema: at '{}': {e}", e.instance_path().as_str()))
        .collect()
}

static TEST_CACHE_HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// A layout cache private to this test binary: layouts cached by an older
/// build must never stand in for what this build extracts. It is removed
/// when the binary exits (a static's destructor never runs, and a
/// `TempDir` kept in one left a folder behind on every run).
fn test_cache_home() -> &'static Path {
    TEST_CACHE_HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("pymortem-tests-cache-")
            .tempdir()
            .expect("a temp dir")
            .keep();
        // SAFETY: registers a plain function, called once by libc's exit.
        unsafe { libc::atexit(remove_test_cache_home) };
        dir
    })
}

extern "C" fn remove_test_cache_home() {
    if let Some(dir) = TEST_CACHE_HOME.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The manifest entry of `interp`'s `scenario` core of `kind` (`kernel`, `gcore`).
pub fn entry<'a>(manifest: &'a [Value], interp: &str, scenario: &str, kind: &str) -> &'a Value {
    manifest
        .iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {interp} {scenario} {kind} core in the manifest"))
}

/// The messages of a report's diagnostics.
pub fn diagnostic_messages(report: &Value) -> Vec<String> {
    report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["message"].as_str().map(str::to_string))
        .collect()
}

/// Run the pymortem binary and return (exit code, stdout, stderr).
pub fn pymortem(args: &[&str]) -> (i32, String, String) {
    run_program(Path::new(env!("CARGO_BIN_EXE_pymortem")), args)
}

/// Run the pymortem binary and return (exit code, stdout, stderr, its own
/// peak resident set in KiB), measured for that child alone: other tests'
/// children run in the same test binary at the same time.
// The child is reaped by wait4, which std's `Child` cannot do with rusage.
#[allow(clippy::zombie_processes)]
pub fn pymortem_with_peak_rss(args: &[&str]) -> (i32, String, String, i64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .env("XDG_CACHE_HOME", test_cache_home())
        .env_remove("DEBUGINFOD_URLS")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pymortem");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 on pymortem");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        code,
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        usage.ru_maxrss,
    )
}

/// Run `program` with the tests' private layout cache and return (exit
/// code, stdout, stderr).
fn run_program(program: &Path, args: &[&str]) -> (i32, String, String) {
    run_program_with_env(program, args, &[])
}

/// Run the pymortem binary with extra environment variables.
pub fn pymortem_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_program_with_env(Path::new(env!("CARGO_BIN_EXE_pymortem")), args, env)
}

/// [`run_program`] with extra environment variables. The host's
/// debuginfod servers are never asked: a test names its own.
fn run_program_with_env(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = std::process::Command::new(program)
        .env("XDG_CACHE_HOME", test_cache_home())
        .env_remove("DEBUGINFOD_URLS")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the example program `name` (built by `cargo test` beside the test
/// binaries) and return (exit code, stdout, stderr).
pub fn example(name: &str, args: &[&str]) -> (i32, String, String) {
    // target/<profile>/deps/<test binary> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples (cargo build --examples)",
        path.display()
    );
    run_program(&path, args)
}

/// The library's options for a manifest entry's core: its sysroot and
/// debug directories.
pub fn options(entry: &Value) -> pymortem::Options {
    let mut options = pymortem::Options::default();
    if let Some(root) = entry["sysroot"].as_str() {
        options = options.sysroot(root);
    }
    for dir in entry["debug_dirs"].as_array().into_iter().flatten() {
        options = options.debug_dir(dir.as_str().unwrap());
    }
    options
}

/// A manifest entry's core, opened with [`options`].
pub fn open(entry: &Value) -> pymortem::Process {
    pymortem::Process::open(entry["core"].as_str().unwrap(), &options(entry)).unwrap()
}

/// The `--sysroot` and `--debug-dir` options a manifest entry's core needs.
pub fn search_args(entry: &Value) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(root) = entry["sysroot"].as_str() {
        args.extend(["--sysroot".to_string(), root.to_string()]);
    }
    for dir in entry["debug_dirs"].as_array().into_iter().flatten() {
        args.extend(["--debug-dir".to_string(), dir.as_str().unwrap().to_string()]);
    }
    args
}

/// The command-line arguments that open a manifest entry's core: its
/// search options, then the core.
pub fn file_args(entry: &Value) -> Vec<String> {
    let mut args = search_args(entry);
    args.push(entry["core"].as_str().unwrap().to_string());
    args
}

/// The truth file of a manifest entry.
pub fn truth(entry: &Value) -> Value {
    let path = entry["truth"].as_str().unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Run `check` on every job on four threads and gather the problems it reports.
pub fn parallel<T: Sync>(jobs: &[T], check: impl Fn(&T) -> Vec<String> + Sync) -> Vec<String> {
    let chunks: Vec<&[T]> = jobs.chunks(jobs.len().div_ceil(4).max(1)).collect();
    let check = &check;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| s.spawn(move || c.iter().flat_map(check).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Write `bytes` to a new temp file and return its path (kept alive by the dir).
pub fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every way an `info --json` report disagrees with a scenario's truth file.
pub fn info_disagreements(core: &str, report: &Value, truth: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &Value, want: &Value| {
        if got != want {
            problems.push(format!(
                "{core}: {what}: pymortem says {got}, truth says {want}"
            ));
        }
    };
    expect("pid", &report["pid"], &truth["pid"]);
    expect(
        "signal",
        &report["signal"]["number"],
        &truth["expected_signal"],
    );
    expect(
        "python version",
        &report["python"]["version"],
        &truth["python_version"],
    );
    expect("schema", &report["schema_version"], &Value::from(1));
    let by_lwp: BTreeMap<i64, &Value> = report["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["lwp"].as_i64()?, t)))
        .collect();
    let truth_threads = truth["threads"].as_array().expect("truth has threads");
    for t in truth_threads {
        let lwp = t["native_id"].as_i64().expect("truth thread has native_id");
        match by_lwp.get(&lwp) {
            None => expect("thread LWP present", &Value::Null, &Value::from(lwp)),
            Some(r) => expect(
                &format!("pthread id of LWP {lwp}"),
                &r["pthread_id"],
                &t["ident"],
            ),
        }
    }
    let truth_lwps: BTreeSet<i64> = truth_threads
        .iter()
        .filter_map(|t| t["native_id"].as_i64())
        .collect();
    let report_lwps: BTreeSet<i64> = by_lwp.keys().copied().collect();
    expect(
        "thread LWPs",
        &Value::from(report_lwps.into_iter().collect::<Vec<_>>()),
        &Value::from(truth_lwps.into_iter().collect::<Vec<_>>()),
    );
    let crash_ident = &truth["crash_thread_ident"];
    if let Some(crash) = truth_threads.iter().find(|t| &t["ident"] == crash_ident) {
        expect("crashed LWP", &report["crashed_lwp"], &crash["native_id"]);
    }
    problems
}

/// A Python frame as truth files record it: function, file, line.
pub type Frame = (String, String, Option<i64>);

/// The frames of a JSON list of frames (a report's or a truth's), in order.
pub fn frames(list: &Value) -> Vec<Frame> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["file"].as_str().unwrap_or("").to_string(),
                f["line"].as_i64(),
            )
        })
        .collect()
}

/// gdb's gcore stops copying a mapping at the first page it cannot read
/// (glibc 2.41+ thread-stack guard regions) and leaves the rest zero: from
/// 3.11 frame chains break there. The vsyscall page, never readable, does
/// not count.
pub fn gdb_lost_memory(entry: &Value) -> bool {
    let stderr =
        std::fs::read_to_string(entry["stderr"].as_str().unwrap_or("")).unwrap_or_default();
    entry["kind"] == "gcore"
        && stderr.lines().any(|l| {
            l.contains("Memory read failed for corefile section")
                && !l.contains("0xffffffffff600000")
        })
}

/// `pymortem threads --json --no-cache` on `core` (a damaged copy of
/// `entry`'s, say) with `entry`'s search arguments: exit code, report (null
/// when stdout is no JSON) and stderr.
pub fn threads_report(entry: &Value, core: &Path) -> (i32, Value, String) {
    let mut args = ["threads", "--json", "--no-cache"]
        .map(String::from)
        .to_vec();
    args.extend(search_args(entry));
    args.push(core.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = pymortem(&args);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

/// The thread of a `threads` report whose thread state is `tstate`.
pub fn thread_of(report: &Value, tstate: u64) -> &Value {
    report["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["thread_state"] == tstate)
        .unwrap_or_else(|| panic!("no thread state {tstate:#x} in the report"))
}

/// The differences of two JSON values, each as its path and both values
/// (the first's, then the second's); at most a few, so that a failure
/// stays readable.
pub fn json_differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 8 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let va = x.get(key).unwrap_or(&Value::Null);
                let vb = y.get(key).unwrap_or(&Value::Null);
                json_differences(&format!("{path}.{key}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}

/// A report without what names the core file and says how it was read
/// (its diagnostics): what two shapes of one core must agree on.
pub fn without_core(report: &Value) -> Value {
    let mut report = report.clone();
    if let Some(object) = report.as_object_mut() {
        object.remove("core");
        object.remove("diagnostics");
    }
    report
}

/// `pymortem COMMAND --json --no-cache` on `core` with `entry`'s search
/// arguments: the exit code and the report (a run without JSON fails).
pub fn json_report(command: &[&str], entry: &Value, core: &Path) -> (i32, Value) {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(["--json".into(), "--no-cache".into()]);
    args.extend(search_args(entry));
    args.push(core.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = pymortem(&args);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{} {command:?} on {}: exit {code}, no JSON ({e}): {stderr}",
            label(entry),
            core.display()
        )
    });
    (code, report)
}
