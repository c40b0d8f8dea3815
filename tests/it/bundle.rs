//! `pymortem bundle` and reading bundles: a bundle of a scenario core reads
//! the same as the core with its files, on a machine without them; the
//! README's sample commands work from anywhere with an empty `$HOME`; a
//! hostile bundle is refused or read in part, never followed out of the
//! temp dir.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use pymortem::bundle::tar;

/// Run pymortem with `args` (strings).
fn run(args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::pymortem(&args)
}

fn s(text: impl std::fmt::Display) -> String {
    text.to_string()
}

/// Bundle a manifest entry's core (with the search options it needs) into `out`.
fn bundle_entry(entry: &Value, out: &Path, extra: &[&str]) -> Result<Value, String> {
    let mut args = vec![
        s("bundle"),
        s("--json"),
        s("--level"),
        s("1"),
        s("-o"),
        s(out.display()),
    ];
    args.extend(extra.iter().map(s));
    args.extend(support::file_args(entry));
    let (code, stdout, stderr) = run(&args);
    if code != 0 {
        return Err(format!("bundle exits {code}: {stderr}"));
    }
    serde_json::from_str(&stdout).map_err(|e| format!("bundle --json: {e}: {stdout}"))
}

/// The JSON of `command --json` on the original core (with its files) and
/// on its bundle, each with its exit code. Normalised, and only there: the
/// strings that name a file, which differ by construction (the core's path
/// and the bundle's; each module or debug file's host path, `found_at` in
/// the bundle's manifest, and its `BUNDLE:member` label), in the layout's
/// source and in diagnostics. The layout cache is off, so that both read
/// their layout from the files rather than one from the other's cache entry.
fn both(entry: &Value, bundle: &Path, report: &Value, command: &str) -> [(i32, String); 2] {
    let core = entry["core"].as_str().unwrap();
    let mut names: Vec<(String, &str)> = vec![(s(bundle.display()), "CORE"), (s(core), "CORE")];
    for file in report["manifest"]["files"].as_array().unwrap() {
        let member = file["member"].as_str().unwrap();
        names.push((format!("{}:{member}", bundle.display()), "FILE"));
        names.push((s(file["found_at"].as_str().unwrap()), "FILE"));
    }
    // Longest first: a bundle's member label starts with the bundle's path.
    names.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut original = vec![s(command), s("--json"), s("--no-cache")];
    original.extend(support::file_args(entry));
    let read_bundle = vec![
        s(command),
        s("--json"),
        s("--no-cache"),
        s(bundle.display()),
    ];
    [original, read_bundle].map(|args| {
        let (code, stdout, _) = run(&args);
        let text = names
            .iter()
            .fold(stdout, |text, (name, as_)| text.replace(name.as_str(), as_));
        (code, text)
    })
}

/// Cores of the matrix this test bundles: every interpreter, kernel and
/// gcore, three scenarios each (threads, double_free and one more that
/// rotates over the rest), or all of them with PYMORTEM_BUNDLE_ALL=1.
/// Measured on two shared cores: all 264 in 504 s, these 78 in 84 s.
fn selection(manifest: &[Value]) -> Vec<&Value> {
    let all = std::env::var_os("PYMORTEM_BUNDLE_ALL").is_some();
    let rotating = [
        "use_after_free",
        "gc_already_tracked",
        "generator",
        "recursion",
        "segfault",
        "segfault_faulthandler",
        "busy_heap",
    ];
    manifest
        .iter()
        .filter(|e| e["ok"] == true)
        .filter(|e| {
            let scenario = e["scenario"].as_str().unwrap();
            let interp = e["interp"].as_str().unwrap();
            let index = support::INTERPRETERS
                .iter()
                .position(|i| *i == interp)
                .unwrap_or(0);
            all || scenario == "threads"
                || scenario == "double_free"
                || scenario == rotating[index % rotating.len()]
        })
        .collect()
}

/// The bundle is read on this machine, but as a machine without the files
/// would read it: a bundle never looks at the host's files (proved by
/// `a_bundle_is_a_closed_world_without_debug_files_it_has_none`).
#[test]
fn a_bundle_reads_like_its_core_with_the_files_on_a_machine_without_them() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let chosen = selection(&manifest);
    // Every interpreter, kernel and gcore, pyenv and chroot, is covered.
    for interp in support::INTERPRETERS {
        for kind in ["kernel", "gcore"] {
            let n = chosen
                .iter()
                .filter(|e| e["interp"] == interp && e["kind"] == kind)
                .count();
            assert!(n >= 3, "{interp} {kind}: {n} cores bundled, 3 wanted");
        }
    }
    let target = support::repo().join("target");
    let problems = support::parallel(&chosen, |entry| {
        let name = format!(
            "{} {} {}",
            entry["interp"].as_str().unwrap(),
            entry["scenario"].as_str().unwrap(),
            entry["kind"].as_str().unwrap()
        );
        // On the cores' disk rather than /tmp, which may be a small tmpfs.
        let dir = tempfile::tempdir_in(&target).unwrap();
        let bundle = dir.path().join("crash.pymortem");
        let report = match bundle_entry(entry, &bundle, &[]) {
            Ok(r) => r,
            Err(e) => return vec![format!("{name}: {e}")],
        };
        let mut problems = Vec::new();
        // The interpreter's files are inside: its executable at least.
        let files = report["manifest"]["files"].as_array().unwrap();
        if !files.iter().any(|f| f["role"] == "executable") {
            problems.push(format!("{name}: no executable in the bundle: {report}"));
        }
        for command in ["threads", "check"] {
            let [(code_a, a), (code_b, b)] = both(entry, &bundle, &report, command);
            if code_a != code_b || a != b {
                problems.push(format!(
                    "{name}: {command} differs: exit {code_a} vs {code_b}\n{}",
                    first_difference(&a, &b)
                ));
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
}

/// The first line where two texts differ, with its neighbours.
fn first_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(0);
    let from = at.saturating_sub(3);
    format!(
        "original: {:?}\nbundle:   {:?}",
        &a[from.min(a.len())..(at + 3).min(a.len())],
        &b[from.min(b.len())..(at + 3).min(b.len())]
    )
}

/// The stripped Debian 3.11 `threads` kernel core.
fn debian_entry(manifest: &[Value]) -> Value {
    manifest
        .iter()
        .find(|e| {
            e["interp"] == "debian-3.11" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("debian-3.11 threads kernel core in the manifest")
        .clone()
}

#[test]
fn a_bundle_is_a_closed_world_without_debug_files_it_has_none() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entry = debian_entry(&manifest);
    let debug_dir = entry["debug_dirs"][0]
        .as_str()
        .expect("a debug dir")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("nodebug.pymortem");
    let report = bundle_entry(&entry, &bundle, &["--no-debug"]).unwrap();
    let manifest_files = report["manifest"]["files"].as_array().unwrap();
    assert!(
        manifest_files.iter().all(|f| f["role"] != "debug_file"),
        "{report}"
    );
    let exe = entry["exe"].as_str().unwrap();
    let omitted = report["manifest"]["omitted"].to_string();
    assert!(omitted.contains("--no-debug"), "{omitted}");
    // The host has the debug file (the core read with its files finds it) ...
    let mut args = vec![s("info"), s("--json")];
    args.extend(support::file_args(&entry));
    let (_, stdout, _) = run(&args);
    let with_files: Value = serde_json::from_str(&stdout).unwrap();
    let module = |report: &Value| {
        report["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["kind"] == "executable")
            .cloned()
            .unwrap()
    };
    assert_eq!(module(&with_files)["debug"]["state"], "found");
    // ... the bundle does not look for it, even when told where it is.
    let (code, stdout, stderr) = run(&[
        s("info"),
        s("--json"),
        s("--debug-dir"),
        s(&debug_dir),
        s(bundle.display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let from_bundle: Value = serde_json::from_str(&stdout).unwrap();
    let m = module(&from_bundle);
    assert_eq!(m["debug"]["state"], "missing", "{m}");
    assert_eq!(m["file"]["state"], "verified", "{m}");
    assert!(
        m["file"]["path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:files/", bundle.display())),
        "{m}"
    );
    assert!(from_bundle["diagnostics"].to_string().contains("not used"));
    assert!(!exe.is_empty());
    // The stacks need no debug file: the same threads, from the tables.
    let (code, stdout, stderr) = run(&[s("threads"), s("--json"), s(bundle.display())]);
    assert_eq!(code, 0, "{stderr}");
    let threads: Value = serde_json::from_str(&stdout).unwrap();
    let truth = support::truth(&entry);
    assert_eq!(
        threads["threads"].as_array().unwrap().len(),
        truth["threads"].as_array().unwrap().len()
    );
}

#[test]
fn a_bundle_without_the_interpreter_is_incomplete_and_says_to_bundle_again() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let sample = support::bundles::sample("pyenv-2.7.18-double_free");
    let core = support::bundles::extract_core(&sample, dir.path(), "bare.core");
    let bundle = dir.path().join("bare.pymortem");
    // Bundled where none of its files are: nothing but the core goes in.
    let (code, stdout, stderr) = run(&[
        s("bundle"),
        s("--json"),
        s("--no-default-debug-dir"),
        s("--sysroot"),
        s(empty.path().display()),
        s("-o"),
        s(bundle.display()),
        s(core.display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["manifest"]["files"], Value::Array(Vec::new()));
    let omitted = report["manifest"]["omitted"].as_array().unwrap();
    assert!(
        omitted.iter().any(|o| o["role"] == "executable"),
        "{omitted:?}"
    );
    assert!(stderr.contains("not included"), "{stderr}");
    // On this machine the files are where the core says, yet the bundle does not look.
    let (code, stdout, stderr) = run(&[s("check"), s("--json"), s(bundle.display())]);
    assert_eq!(code, 3, "{stderr}");
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    let said = verdict["verdict"].to_string();
    assert!(said.contains("bundle the core again"), "{said}");
}

#[test]
fn bundling_writes_one_file_and_leaves_nothing_on_error() {
    let sample = support::bundles::sample("pyenv-2.7.18-double_free");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("again.pymortem");
    // A bundle of a bundle holds the same files.
    let (code, stdout, stderr) = run(&[
        s("bundle"),
        s("--json"),
        s("-o"),
        s(out.display()),
        s(sample.display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(stderr.contains("bytes"), "the size is reported: {stderr}");
    assert_eq!(report["size"], std::fs::metadata(&out).unwrap().len());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the bundle: {names:?}");
    let inner = support::bundles::member(&sample, "pymortem-bundle.json");
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    let ids = |files: &Value| {
        let mut ids: Vec<String> = files
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["build_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&report["manifest"]["files"]), ids(&inner["files"]));
    // The archive is a plain tar in zstd: the manifest first, then the core.
    let tar_bytes = support::bundles::archive(&out);
    let (members, stop) = tar::members(&tar_bytes);
    assert_eq!(stop, tar::Stop::End);
    assert_eq!(members[0].name, "pymortem-bundle.json");
    assert_eq!(members[1].name, "core");
    // A folder that does not exist: an error, and nothing anywhere.
    let missing = dir.path().join("no/such/folder/x.pymortem");
    let (code, _, stderr) = run(&[
        s("bundle"),
        s("-o"),
        s(missing.display()),
        s(sample.display()),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot write the bundle"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn triage_reads_bundles_in_a_folder() {
    let folder = tempfile::tempdir().unwrap();
    let name = "pyenv-2.7.18-double_free";
    std::fs::copy(
        support::bundles::sample(name),
        folder.path().join(format!("{name}.pymortem")),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[s("triage"), s("--json"), s(folder.path().display())]);
    assert_eq!(code, 0, "{stderr}");
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["python_version"], "2.7.18", "{first}");
    assert_eq!(first["verdict"], "corrupt", "{first}");
}

// ---- The README's sample commands ----

/// The `cargo run --release -- …` lines of the README's "Try it on a
/// shipped sample" section, as argument lists.
fn readme_sample_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let section = readme
        .split("## Try it on a shipped sample")
        .nth(1)
        .expect("the README has a \"Try it on a shipped sample\" section");
    let section = section.split("\n## ").next().unwrap();
    let commands: Vec<Vec<String>> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cargo run --release -- "))
        .map(|rest| rest.split_whitespace().map(String::from).collect())
        .collect();
    assert!(
        commands.len() >= 3,
        "sample commands in the README: {commands:?}"
    );
    commands
}

/// A frame as the text shows it: function, file, line.
type ShownFrame = (String, String, i64);

/// A thread's Python frames as (function, file, line), innermost first,
/// from `threads` text (a traceback, outermost first) or `threads
/// --native` text (`(Python) f at file:line`, innermost first).
fn text_stacks(text: &str) -> std::collections::BTreeMap<i64, Vec<ShownFrame>> {
    let mut stacks = std::collections::BTreeMap::new();
    // (LWP, frames, whether they are listed outermost first)
    let mut current: Option<(i64, Vec<ShownFrame>, bool)> = None;
    let mut finish = |c: Option<(i64, Vec<ShownFrame>, bool)>| {
        if let Some((lwp, mut frames, traceback)) = c {
            if traceback {
                frames.reverse();
            }
            stacks.insert(lwp, frames);
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Thread LWP ") {
            finish(current.take());
            let lwp = rest.split_whitespace().next().unwrap().parse().unwrap();
            current = Some((lwp, Vec::new(), false));
            continue;
        }
        let Some((_, frames, traceback)) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("File \"") {
            // File "F", line N, in NAME
            let (file, rest) = rest.split_once("\", line ").unwrap();
            let (number, function) = rest.split_once(", in ").unwrap();
            frames.push((function.into(), file.into(), number.parse().unwrap()));
            *traceback = true;
        } else if let Some(at) = line.find("(Python) ") {
            // #4   (Python) NAME at FILE:LINE
            let rest = &line[at + "(Python) ".len()..];
            let (function, place) = rest.split_once(" at ").unwrap();
            let (file, number) = place.rsplit_once(':').unwrap();
            let number = number.split_whitespace().next().unwrap();
            frames.push((function.into(), file.into(), number.parse().unwrap()));
        }
    }
    finish(current);
    stacks
}

/// Every way the stacks in `text` differ from the truth's: every thread
/// (by LWP), every frame's function (a qualified name ends with it), file
/// and line, none missing, none extra.
fn stack_problems(sample: &str, text: &str, truth: &Value) -> Vec<String> {
    let stacks = text_stacks(text);
    let mut problems = Vec::new();
    for thread in truth["threads"].as_array().unwrap() {
        let (lwp, name) = (thread["native_id"].as_i64().unwrap(), &thread["name"]);
        let Some(got) = stacks.get(&lwp) else {
            problems.push(format!("{sample}: thread {name} (LWP {lwp}) is not shown"));
            continue;
        };
        let want = support::frames(&thread["stack"]);
        let same = got.len() == want.len()
            && got.iter().zip(&want).all(|(g, w)| {
                let function_matches = g.0 == w.0 || g.0.ends_with(&format!(".{}", w.0));
                function_matches && g.1 == w.1 && Some(g.2) == w.2
            });
        if !same {
            problems.push(format!(
                "{sample}: thread {name} (LWP {lwp}): shown {got:?}, truth {want:?}"
            ));
        }
    }
    problems
}

#[test]
fn the_readme_sample_commands_work_anywhere_with_an_empty_home() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|p| !p.to_string_lossy().contains("pyenv"))
        .collect();
    let path = std::env::join_paths(path).unwrap();
    let samples_manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo().join("sample-cores/samples/manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let mut commands = readme_sample_commands();
    // Every sample shows its stacks: those the README shows no `threads` for get one.
    for sample in samples_manifest.as_array().unwrap() {
        let bundle = format!(
            "sample-cores/samples/{}",
            sample["bundle"].as_str().unwrap()
        );
        if !commands
            .iter()
            .any(|c| c[0] == "threads" && c.contains(&bundle))
        {
            commands.push(vec![s("threads"), bundle]);
        }
    }
    let mut checked_double_free = false;
    let mut problems = Vec::new();
    for command in &commands {
        // Paths in the README are relative to the repository; the command
        // runs in another folder.
        let args: Vec<String> = command
            .iter()
            .map(|a| {
                if a.starts_with("sample-cores/") {
                    s(support::repo().join(a).display())
                } else {
                    a.clone()
                }
            })
            .collect();
        let sample_name = command
            .iter()
            .find_map(|a| {
                a.strip_prefix("sample-cores/samples/")?
                    .strip_suffix(".pymortem")
            })
            .unwrap_or_else(|| panic!("{command:?} names no sample bundle"))
            .to_string();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pymortem"))
            .args(&args)
            .current_dir(elsewhere.path())
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", &path)
            .env("TMPDIR", scratch.path())
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let truth = support::bundles::sample_truth(&sample_name);
        let shown = command.join(" ");
        match command[0].as_str() {
            "threads" => {
                if code != 0 {
                    problems.push(format!("{shown}: exit {code}: {stderr}"));
                }
                problems.extend(stack_problems(&shown, &stdout, &truth));
            }
            "check" => {
                if truth["scenario"] == "double_free" {
                    checked_double_free = true;
                    let victim = truth["objects"]["victim_tuple"].as_u64().unwrap();
                    let verdict = stdout
                        .lines()
                        .find(|l| l.starts_with("Verdict"))
                        .unwrap_or("");
                    if code != 1
                        || !verdict.contains(&format!("tuple {victim:#x} was released twice"))
                    {
                        problems.push(format!(
                            "{shown}: exit {code}, verdict {verdict:?}; the truth's victim is {victim:#x}"
                        ));
                    }
                }
            }
            "info" => {
                let pid = truth["pid"].as_i64().unwrap();
                if code != 0 || !stdout.contains(&format!("pid {pid} ")) {
                    problems.push(format!("{shown}: exit {code}, no pid {pid}: {stderr}"));
                }
            }
            other => problems.push(format!("{shown}: the test knows no command {other}")),
        }
        if stdout.contains("(no Python frames)") {
            problems.push(format!("{shown}: a thread without Python frames"));
        }
    }
    assert!(
        checked_double_free,
        "the README checks the double_free sample"
    );
    support::assert_no_problems(&problems);
    // Nothing outside the temp dir, nothing left in it.
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

// ---- Hostile bundles ----

/// A regular member's header, or a link's when `flag` is `1` or `2`.
fn header(out: &mut Vec<u8>, name: &str, len: u64, flag: u8) {
    let start = out.len();
    tar::write_header(out, name, len).unwrap();
    if flag != b'0' {
        let h = &mut out[start..start + tar::BLOCK];
        h[156] = flag;
        h[157..157 + 11].copy_from_slice(b"/etc/passwd");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
}

fn member(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    header(out, name, bytes.len() as u64, b'0');
    out.extend_from_slice(bytes);
    out.extend_from_slice(tar::padding(bytes.len() as u64));
}

/// A manifest for a bundle that holds `core` under the usual name.
fn manifest_json(core_size: u64, files: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "pymortem-bundle",
        "version": 1,
        "created_by": "a test",
        "core": {"name": "core", "member": "core", "size": core_size, "sha256": "00"},
        "files": files,
        "omitted": [],
    }))
    .unwrap()
}

fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 1).unwrap()
}

/// Run `command --json` on `file` with a private temp dir; returns (code,
/// stdout, stderr) after checking that it did not panic and left nothing there.
fn read_hostile(command: &str, file: &Path) -> (i32, String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&[
        s(command),
        s("--json"),
        s("--temp-dir"),
        s(scratch.path().display()),
        s(file.display()),
    ]);
    assert!(!stderr.contains("panicked"), "{}: {stderr}", file.display());
    assert!(
        (0..=3).contains(&code),
        "{}: exit {code}: {stderr}",
        file.display()
    );
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    (code, stdout, stderr)
}

/// The messages of a JSON report's diagnostics, one per line.
fn diagnostics(report: &str) -> String {
    let report: Value = serde_json::from_str(report).unwrap();
    report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hostile_bundles_are_refused_or_read_in_part_and_never_escape() {
    let sample = support::bundles::sample("pyenv-2.7.18-double_free");
    let core = support::bundles::member(&sample, "core");
    let exe_member = {
        let inner: Value =
            serde_json::from_slice(&support::bundles::member(&sample, "pymortem-bundle.json"))
                .unwrap();
        inner["files"][0]["member"].as_str().unwrap().to_string()
    };
    let exe = support::bundles::member(&sample, &exe_member);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    };

    // Traversal names and links: ignored, each with a diagnostic; the core is read.
    let mut t = Vec::new();
    member(
        &mut t,
        "pymortem-bundle.json",
        &manifest_json(core.len() as u64, Value::Array(vec![])),
    );
    member(&mut t, "core", &core);
    member(&mut t, "../../escaped", b"x");
    member(&mut t, "/tmp/absolute", b"x");
    member(
        &mut t,
        &format!("files/{}/../../../escaped", "ab".repeat(20)),
        &exe,
    );
    header(
        &mut t,
        &format!("files/{}/python", "cd".repeat(20)),
        0,
        b'2',
    );
    header(&mut t, &format!("debug/{}.debug", "ef".repeat(20)), 0, b'1');
    tar::write_end(&mut t).unwrap();
    let path = write("traversal.pymortem", &zstd(&t));
    let (code, stdout, stderr) = read_hostile("info", &path);
    assert_eq!(code, 0, "{stderr}");
    let said = diagnostics(&stdout);
    for expected in [
        "\"../../escaped\" is not part of the bundle layout",
        "\"/tmp/absolute\" is not part of the bundle layout",
        "/../../../escaped\" is not part of the bundle layout",
        "is a symlink: ignored",
        "is a hard link: ignored",
    ] {
        assert!(said.contains(expected), "{expected} in {said}");
    }
    assert!(!dir.path().join("escaped").exists());
    assert!(!Path::new("/tmp/absolute").exists());

    // A manifest that claims huge sizes: sizes come from the archive, not from it.
    let files = serde_json::json!([{
        "member": format!("files/{}/python", "ab".repeat(20)), "role": "executable",
        "path": "/x", "found_at": "/x", "build_id": "ab".repeat(20),
        "size": u64::MAX, "sha256": "00"
    }]);
    let mut t = Vec::new();
    member(
        &mut t,
        "pymortem-bundle.json",
        &manifest_json(u64::MAX, files),
    );
    member(&mut t, "core", &core);
    tar::write_end(&mut t).unwrap();
    let path = write("huge.pymortem", &zstd(&t));
    let (code, _, stderr) = read_hostile("threads", &path);
    assert_eq!(code, 0, "{stderr}");

    // A truncated bundle: what it holds is read, with a warning.
    let whole = std::fs::read(&sample).unwrap();
    let path = write("cut.pymortem", &whole[..whole.len() / 2]);
    let (_, stdout, _) = read_hostile("info", &path);
    let said = diagnostics(&stdout);
    assert!(said.contains("ends early"), "{said}");

    // Not a bundle: a sysroot archive as the samples used to ship.
    let mut t = Vec::new();
    member(&mut t, "./usr/bin/python2.7", &exe);
    tar::write_end(&mut t).unwrap();
    let path = write("old.sysroot.tar.zst", &zstd(&t));
    let (code, _, stderr) = read_hostile("info", &path);
    assert_eq!(code, 2);
    assert!(stderr.contains("not an ELF core"), "{stderr}");

    // A manifest that is not one, and a newer format: refused with the reason.
    for (name, manifest, said) in [
        (
            "garbage.pymortem",
            b"{not json".to_vec(),
            "the manifest is not valid",
        ),
        (
            "newer.pymortem",
            serde_json::to_vec(
                &serde_json::json!({"format": "pymortem-bundle", "version": 99,
                "created_by": "x", "core": {"name": "c", "member": "core", "size": 1, "sha256": ""},
                "files": [], "omitted": []}),
            )
            .unwrap(),
            "version 99",
        ),
    ] {
        let mut t = Vec::new();
        member(&mut t, "pymortem-bundle.json", &manifest);
        member(&mut t, "core", &core);
        tar::write_end(&mut t).unwrap();
        let path = write(name, &zstd(&t));
        let (code, _, stderr) = read_hostile("threads", &path);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("not a usable pymortem bundle") && stderr.contains(said),
            "{stderr}"
        );
        assert!(!stderr.contains("hint:"), "{stderr}");
    }

    // No core member.
    let mut t = Vec::new();
    member(
        &mut t,
        "pymortem-bundle.json",
        &manifest_json(1, Value::Array(vec![])),
    );
    tar::write_end(&mut t).unwrap();
    let path = write("empty.pymortem", &zstd(&t));
    let (code, _, stderr) = read_hostile("check", &path);
    assert_eq!(code, 2);
    assert!(stderr.contains("no core member"), "{stderr}");
}
