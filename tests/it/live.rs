//! Live processes (`--pid`, `pymortem snapshot`): every crash scenario of
//! the matrix, run so that it waits where it would have died
//! (`sample-cores/live.py`), read live, then copied by gdb's gcore at the
//! same point: the stacks, locals and findings of the live read equal the
//! core's, and the stacks equal the truth the scenario wrote. Also: the
//! process runs on unchanged after being read, and the errors say what to do.

use crate::support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The scenarios that die by `os.abort()`, which live mode turns into a
/// wait. Not the segfaults: they die by a fault, which no Python-level
/// replacement can hold back without adding a frame.
const LIVE_SCENARIOS: [&str; 11] = [
    "threads",
    "recursion",
    "generator",
    "double_free",
    "use_after_free",
    "gc_already_tracked",
    "busy_heap",
    "asyncio_tasks",
    "subinterp_threads",
    "subinterp_nested",
    "subinterp_chains",
];

/// Up to 3.7, `gc_already_tracked` dies inside the interpreter (its own
/// check aborts in C) before the scenario's `os.abort()`: there is no point
/// to wait at.
fn dies_before_its_wait(interp: &str, scenario: &str) -> bool {
    scenario == "gc_already_tracked"
        && ["pyenv-2.7.", "pyenv-3.6.", "pyenv-3.7."]
            .iter()
            .any(|p| interp.starts_with(p))
}

/// The scenarios that seed a corruption (their truth names the victim);
/// the others are healthy processes.
const SEEDED: [&str; 2] = ["double_free", "use_after_free"];

/// A scenario process waiting where it would have died; killed on drop.
struct Waiting {
    helper: Child,
    pid: i32,
    truth: Value,
    /// The chroot of a Debian chroot interpreter.
    sysroot: Option<String>,
    debug_dirs: Vec<String>,
}

impl Waiting {
    fn start(interp: &str, scenario: &str, work: &Path) -> Result<Waiting, String> {
        let mut helper = Command::new("python3")
            .arg(support::repo().join("sample-cores/live.py"))
            .args([interp, scenario])
            .arg(work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("live.py: {e}"))?;
        let mut line = String::new();
        let read = BufReader::new(helper.stdout.take().unwrap()).read_line(&mut line);
        let started: Value = match (read, serde_json::from_str(&line)) {
            (Ok(_), Ok(v)) => v,
            _ => {
                let out = helper.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!(
                    "{interp} {scenario}: live.py failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        };
        let truth_path = started["truth"].as_str().unwrap_or_default();
        let truth = std::fs::read_to_string(truth_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let sysroot = started["sysroot"].as_str().map(str::to_string);
        let debug_dirs = started["debug_dirs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        Ok(Waiting {
            pid: started["pid"].as_i64().unwrap_or(0) as i32,
            helper,
            truth,
            sysroot,
            debug_dirs,
        })
    }

    /// `--debug-dir`s, and `--sysroot` when `with_sysroot`.
    fn search_args(&self, with_sysroot: bool) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(root) = self.sysroot.as_ref().filter(|_| with_sysroot) {
            args.extend(["--sysroot".to_string(), root.clone()]);
        }
        for dir in &self.debug_dirs {
            args.extend(["--debug-dir".to_string(), dir.clone()]);
        }
        args
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Closing stdin tells live.py to kill the process and clean up.
        drop(self.helper.stdin.take());
        let _ = self.helper.wait();
    }
}

fn json_of(args: &[String]) -> Result<(i32, Value, String), String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    let report = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "pymortem {}: exit {code}, no JSON ({e}): {stderr}",
            args.join(" ")
        )
    })?;
    Ok((code, report, stderr))
}

/// Each thread's Python frames (function, file, line) and locals, by LWP.
fn stacks(report: &Value) -> Vec<(i64, Vec<support::Frame>, Vec<Value>)> {
    report["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let locals = t["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f["locals"].clone())
                .collect();
            (
                t["lwp"].as_i64().unwrap_or(0),
                support::frames(&t["frames"]),
                locals,
            )
        })
        .collect()
}

/// Findings as (kind, severity, address).
fn findings(report: &Value) -> BTreeSet<(String, String, u64)> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_string(),
                f["severity"].as_str().unwrap_or("").to_string(),
                f["address"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn compare_live_with_gcore(interp: &str, scenario: &str) -> Vec<String> {
    let label = format!("{interp} {scenario}");
    let work = tempfile::tempdir().unwrap();
    let waiting = match Waiting::start(interp, scenario, work.path()) {
        Ok(w) => w,
        Err(e) => return vec![e],
    };
    let pid = waiting.pid.to_string();
    let mut problems = Vec::new();
    let command = |name: &str, input: &[String]| -> Vec<String> {
        let mut args = vec![
            name.to_string(),
            "--json".to_string(),
            "--no-cache".to_string(),
        ];
        if name == "threads" {
            args.push("--locals".into());
        }
        // A live process in a chroot is read through /proc/PID/root, with
        // no --sysroot; its core needs one.
        let live = input.first().is_some_and(|a| a == "--pid");
        args.extend(waiting.search_args(!live));
        args.extend(input.iter().cloned());
        args
    };
    let live_input = ["--pid".to_string(), pid.clone()];
    let live_threads = json_of(&command("threads", &live_input));
    let live_check = json_of(&command("check", &live_input));
    // gdb's copy of the same moment: the process has not moved since.
    let core = work.path().join("gcore");
    let gcore = Command::new("gcore")
        .arg("-o")
        .arg(&core)
        .arg(&pid)
        .output()
        .map_err(|e| e.to_string());
    let core = PathBuf::from(format!("{}.{pid}", core.display()));
    if !core.exists() {
        return vec![format!("{label}: gcore wrote nothing: {gcore:?}")];
    }
    let core_input = [core.display().to_string()];
    let core_threads = json_of(&command("threads", &core_input));
    let core_check = json_of(&command("check", &core_input));
    let (Ok(live_threads), Ok(live_check), Ok(core_threads), Ok(core_check)) =
        (live_threads, live_check, core_threads, core_check)
    else {
        return vec![format!("{label}: a command failed")];
    };
    if !live_check.2.contains("paused") {
        problems.push(format!("{label}: no pause on stderr: {}", live_check.2));
    }
    let (live_stacks, core_stacks) = (stacks(&live_threads.1), stacks(&core_threads.1));
    if live_stacks != core_stacks {
        let mut out = Vec::new();
        support::json_differences(
            "threads",
            &serde_json::to_value(&core_stacks).unwrap(),
            &serde_json::to_value(&live_stacks).unwrap(),
            &mut out,
        );
        problems.push(format!(
            "{label}: stacks differ from gcore's (gcore, then live): {out:?}"
        ));
    }
    // The truth's stacks, where the scenario recorded them by thread.
    for t in waiting.truth["threads"].as_array().into_iter().flatten() {
        let (Some(lwp), Some(stack)) = (t["native_id"].as_i64(), t.get("stack")) else {
            continue;
        };
        let want = support::frames(stack);
        match live_stacks.iter().find(|(l, _, _)| *l == lwp) {
            Some((_, have, _)) if *have == want => {}
            Some((_, have, _)) => problems.push(format!(
                "{label}: thread {lwp}: live stack {have:?}, the truth recorded {want:?}"
            )),
            None => problems.push(format!("{label}: no thread {lwp} live")),
        }
    }
    let (live_findings, core_findings) = (findings(&live_check.1), findings(&core_check.1));
    if live_findings != core_findings {
        problems.push(format!(
            "{label}: findings differ: live {live_findings:?}, gcore {core_findings:?}"
        ));
    }
    // gdb's gcore stops copying a mapping at an unreadable page (glibc
    // 2.41's guard pages in thread stacks), so its core may be incomplete
    // (3) where the live copy, read page by page, is not.
    if live_check.0 != core_check.0 && (live_check.0, core_check.0) != (0, 3) {
        problems.push(format!(
            "{label}: check exits {} live, {} on the gcore core",
            live_check.0, core_check.0
        ));
    }
    // The seeded corruption is flagged live; a healthy scenario gets no
    // error or warning.
    let victim = waiting.truth["objects"]["victim_tuple"]
        .as_u64()
        .filter(|_| SEEDED.contains(&scenario));
    let flagged = |address: u64| {
        live_findings
            .iter()
            .any(|(_, severity, at)| *at == address && severity == "error")
    };
    if let Some(address) = victim {
        // `object --pid PID ADDRESS`: the victim, read live.
        let mut args = vec![
            "object".to_string(),
            "--json".to_string(),
            "--no-cache".to_string(),
        ];
        args.extend(waiting.search_args(false));
        args.extend(["--pid".to_string(), pid.clone(), format!("{address:#x}")]);
        match json_of(&args) {
            Ok((_, report, _)) if report["address"].as_u64() == Some(address) => {}
            other => problems.push(format!("{label}: object --pid: {other:?}")),
        }
    }
    match victim {
        Some(address) if !flagged(address) => problems.push(format!(
            "{label}: the victim {address:#x} is not flagged live: {live_findings:?}"
        )),
        // Both allocations returned the victim: the lists contradict.
        None if scenario == "gc_already_tracked"
            && !live_findings.iter().any(|(_, s, _)| s == "error") =>
        {
            problems.push(format!(
                "{label}: the corruption is not flagged live: {live_findings:?}"
            ))
        }
        None if !SEEDED.contains(&scenario)
            && scenario != "gc_already_tracked"
            && live_findings
                .iter()
                .any(|(_, s, _)| s == "error" || s == "warning") =>
        {
            problems.push(format!(
                "{label}: a healthy process has error or warning findings live: {live_findings:?}"
            ))
        }
        _ => {}
    }
    problems
}

/// The (interpreter, scenario) pairs the matrix ran on x86-64.
fn live_jobs() -> Vec<(String, String)> {
    let mut jobs: Vec<(String, String)> = support::manifest()
        .iter()
        .filter(|e| e["kind"] == "gcore")
        .filter(|e| LIVE_SCENARIOS.contains(&e["scenario"].as_str().unwrap_or("")))
        .map(|e| {
            (
                e["interp"].as_str().unwrap().to_string(),
                e["scenario"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    jobs.retain(|(interp, scenario)| !dies_before_its_wait(interp, scenario));
    jobs.sort();
    jobs.dedup();
    jobs
}

#[test]
fn every_scenario_live_equals_a_core_of_the_same_moment() {
    if support::matrix_missing() {
        return;
    }
    let mut jobs = live_jobs();
    let interpreters: BTreeSet<&str> = jobs.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(
        interpreters.len(),
        support::INTERPRETERS.len(),
        "every x86-64 interpreter of the matrix runs live: {interpreters:?}"
    );
    if !support::matrix_required() {
        // A plain `cargo test` reads two scenarios on every interpreter.
        jobs.retain(|(_, s)| s == "double_free" || s == "threads");
    }
    let problems = support::parallel(&jobs, |(interp, scenario)| {
        compare_live_with_gcore(interp, scenario)
    });
    support::assert_no_problems(&problems);
}

/// A program whose output depends on every step it takes, and on time
/// passing normally in each thread.
const COUNTER: &str = r#"
import sys, threading, time
out = []
def work(name, n):
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1000003
        time.sleep(0.002)
    out.append("%s %d" % (name, total))
ts = [threading.Thread(target=work, args=("t%d" % k, 300 + k)) for k in range(3)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(sorted(out)))
"#;

fn host_python() -> &'static str {
    "/usr/bin/python3"
}

#[test]
fn a_process_read_live_runs_on_unchanged() {
    let undisturbed = Command::new(host_python())
        .args(["-c", COUNTER])
        .output()
        .unwrap();
    assert!(undisturbed.status.success());
    let child = Command::new(host_python())
        .args(["-c", COUNTER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let work = tempfile::tempdir().unwrap();
    let mut reads = 0;
    for i in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let out = work.path().join(format!("copy{i}.core"));
        let started = std::time::Instant::now();
        let (code, stdout, stderr) =
            support::pymortem(&["snapshot", &pid, "-o", out.to_str().unwrap(), "--json"]);
        let wall = started.elapsed();
        if code != 0 {
            // The program may have finished: then it says so.
            assert!(stderr.contains("exited"), "{stderr}");
            break;
        }
        reads += 1;
        let info: Value = serde_json::from_str(&stdout).unwrap();
        let pause = info["pause_us"].as_u64().expect("a pause");
        assert!(
            info["blocked"] == true && info["threads"].as_u64() >= Some(1),
            "{info}"
        );
        // The threads run again before the command ends: its pause is a
        // part of its own run time.
        assert!(
            pause > 0 && u128::from(pause) < wall.as_micros(),
            "{pause} us of {wall:?}"
        );
        assert!(stderr.contains("paused"), "{stderr}");
        // Not stopped now: traced-stopped threads would show `t`.
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            assert_ne!(state, Some("t"), "a thread is still stopped: {stat}");
        }
    }
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success());
    assert!(reads >= 1, "the program ended before it could be read");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&undisturbed.stdout)
    );
}

/// A sleeping Python process, killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        let child = Command::new(host_python())
            .args(["-c", "import threading, time\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\ntime.sleep(600)"])
            .spawn()
            .unwrap();
        // Until both threads exist.
        for _ in 0..500 {
            let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id()))
                .map(|d| d.count())
                .unwrap_or(0);
            if tasks >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Sleeper(child)
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_snapshot_is_a_core_gdb_reads_and_compressed_ones_open() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let work = tempfile::tempdir().unwrap();
    let plain = work.path().join("plain.core");
    let packed = work.path().join("packed.core.zst");
    for (out, extra) in [(&plain, None), (&packed, Some("--compress=zstd"))] {
        let mut args = vec!["snapshot", &pid, "-o", out.to_str().unwrap()];
        args.extend(extra);
        let (code, _, stderr) = support::pymortem(&args);
        assert_eq!(code, 0, "{stderr}");
    }
    let tasks: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let gdb = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "info threads"])
        .arg(host_python())
        .arg(&plain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&gdb.stdout);
    for tid in &tasks {
        assert!(
            text.contains(&format!("LWP {tid}")),
            "gdb does not list LWP {tid}:\n{text}"
        );
    }
    // Nothing beside the output is left behind.
    let names: BTreeSet<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["plain.core".into(), "packed.core.zst".into()])
    );
    for core in [&plain, &packed] {
        let (_, stdout, stderr) = support::pymortem(&["info", "--json", core.to_str().unwrap()]);
        let info: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
        assert_eq!(
            info["pid"].as_i64().map(|p| p.to_string()),
            Some(pid.clone())
        );
        assert_eq!(info["core"]["producer"], "pymortem");
        let lwps: BTreeSet<String> = info["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["lwp"].to_string())
            .collect();
        assert_eq!(lwps, tasks);
        assert!(
            info["crashed_lwp"].is_null(),
            "no thread of a live process crashed"
        );
    }
}

#[test]
fn a_read_without_blocking_says_it_may_be_inconsistent() {
    let sleeper = Sleeper::start();
    let (code, stdout, stderr) =
        support::pymortem(&["info", "--json", "--no-block", "--pid", &sleeper.pid()]);
    assert_eq!(code, 0, "{stderr}");
    let info: Value = serde_json::from_str(&stdout).unwrap();
    let messages = support::diagnostic_messages(&info);
    assert!(
        messages.iter().any(|m| m.contains("may be inconsistent")),
        "{messages:?}"
    );
    assert!(stderr.contains("may be inconsistent"), "{stderr}");
}

#[test]
fn check_reads_several_processes_one_line_each() {
    let (a, b) = (Sleeper::start(), Sleeper::start());
    let (code, stdout, stderr) = support::pymortem(&[
        "check",
        "--pid",
        &a.pid(),
        "--pid",
        &b.pid(),
        "--pid",
        "2147483646",
    ]);
    // The third does not exist: an error, which outranks the others' results.
    assert_eq!(code, 2, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].trim_start().starts_with(&a.pid()) && lines[0].contains("paused"),
        "{stdout}"
    );
    assert!(lines[1].trim_start().starts_with(&b.pid()), "{stdout}");
    assert!(lines[2].contains("does not exist"), "{stdout}");
}

#[test]
fn errors_say_what_to_do() {
    // No such process.
    let (code, _, stderr) = support::pymortem(&["threads", "--pid", "2147483646"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");

    // A process that has exited (a zombie its parent has not reaped).
    let mut zombie = Command::new("true").spawn().unwrap();
    let zpid = zombie.id().to_string();
    for _ in 0..500 {
        let stat = std::fs::read_to_string(format!("/proc/{zpid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (code, _, stderr) = support::pymortem(&["check", "--pid", &zpid]);
    let _ = zombie.wait();
    assert_eq!(code, 2);
    assert!(stderr.contains("has exited"), "{stderr}");

    // Another tracer: this test seizes the process first.
    let sleeper = Sleeper::start();
    let target: i32 = sleeper.pid().parse().unwrap();
    // SAFETY: PTRACE_SEIZE with no options on a child of this test; it is
    // detached (by the test thread's exit, or the child's kill) afterwards.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, target, 0usize, 0usize) };
    assert_eq!(seized, 0, "{}", std::io::Error::last_os_error());
    let (code, _, stderr) = support::pymortem(&["threads", "--pid", &sleeper.pid()]);
    // SAFETY: ptrace requests on the tracee seized above, and waitpid
    // writing its status word: PTRACE_DETACH needs the tracee stopped.
    unsafe {
        libc::ptrace(libc::PTRACE_INTERRUPT, target, 0usize, 0usize);
        let mut status = 0;
        libc::waitpid(target, &mut status, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, target, 0usize, 0usize);
    }
    assert_eq!(code, 2);
    assert!(
        stderr.contains("another tracer holds it")
            && stderr.contains(&format!("process {}", unsafe { libc::gettid() })),
        "{stderr}"
    );

    // Another user: pymortem run as nobody on this root-owned process.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let bin = tempfile::Builder::new()
            .prefix("pymortem-bin-")
            // Outside the tests' TMPDIR, which is private to root.
            .tempdir_in("/tmp")
            .unwrap();
        let copy = bin.path().join("pymortem");
        std::fs::copy(env!("CARGO_BIN_EXE_pymortem"), &copy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        // Its temp dir too, for the copy it would make.
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(&copy)
            .args(["threads", "--pid", &sleeper.pid()])
            .env("HOME", "/nonexistent")
            .env("TMPDIR", bin.path())
            .current_dir("/")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("runs as uid 0 and pymortem as uid 65534"),
            "{stderr}"
        );
    }
    let _ = std::io::stdout().flush();
}
