//! The command line as a person reads it: text that fits the terminal, no
//! identifiers from the code, errors that say what is wrong, triage over
//! folders of links and archives, the cache dir without a home, and the
//! examples' help.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Run pymortem with `env` added (and the variables in `remove` taken
/// away), stdout and stderr piped; (exit code, stdout, stderr).
fn run_with(args: &[&str], env: &[(&str, &Path)], remove: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pymortem"));
    command.args(args).stdin(Stdio::null());
    for name in remove {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run pymortem");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A few generated cores: 2.7, 3.11 (kernel and gcore), 3.13 and Debian's
/// stripped 3.11 and 3.14 (through their sysroot and debug folders).
fn some_cores() -> Vec<Value> {
    let wanted = [
        ("pyenv-2.7.18", "double_free", "kernel"),
        ("pyenv-3.11.7", "threads", "kernel"),
        ("pyenv-3.11.7", "use_after_free", "gcore"),
        ("pyenv-3.13.0", "gc_already_tracked", "kernel"),
        ("debian-3.11", "threads", "kernel"),
        ("debian-3.14", "segfault", "gcore"),
    ];
    let manifest = support::manifest();
    wanted
        .iter()
        .map(|(interp, scenario, kind)| {
            manifest
                .iter()
                .find(|e| {
                    e["interp"] == *interp && e["scenario"] == *scenario && e["kind"] == *kind
                })
                .unwrap_or_else(|| panic!("{interp} {scenario} {kind} is not in the manifest"))
                .clone()
        })
        .collect()
}

/// `command` followed by the arguments that open a manifest entry's core.
fn args_of(command: &[&str], entry: &Value) -> Vec<String> {
    command
        .iter()
        .map(|s| s.to_string())
        .chain(support::file_args(entry))
        .collect::<Vec<_>>()
}

/// The GNU build-id of an ELF file, hex, as goblin reads it.
fn gnu_build_id(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    elf.iter_note_headers(&bytes)
        .into_iter()
        .flatten()
        .flatten()
        .find(|n| n.n_type == goblin::elf::note::NT_GNU_BUILD_ID && n.name == "GNU")
        .map(|n| n.desc.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|| panic!("{}: no build-id note", path.display()))
}

fn synthetic_core(dir: &Path) -> PathBuf {
    support::write_temp(dir, "core", &support::synth::sample().build())
}

/// Lines longer than `width` characters, quoted.
fn too_wide(text: &str, width: usize) -> Vec<String> {
    text.lines()
        .filter(|l| l.chars().count() > width)
        .map(|l| format!("{} columns: {l:?}", l.chars().count()))
        .collect()
}

fn trailing_blanks(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.ends_with(' ') || l.ends_with('\t'))
        .map(|l| format!("trailing blanks: {l:?}"))
        .collect()
}

#[test]
fn text_fits_80_columns_and_piped_text_has_no_trailing_blanks_and_whole_build_ids() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let narrow_env = [("COLUMNS", Path::new("80")), ("XDG_CACHE_HOME", &cache)];
    let columns = dir.path().join("cols");
    std::fs::create_dir(&columns).unwrap();
    let mut problems = Vec::new();
    let cores = some_cores();
    for entry in &cores {
        let core = entry["core"].as_str().unwrap();
        // Links to the cores: triage below reads this folder.
        std::os::unix::fs::symlink(
            core,
            columns.join(format!(
                "{}-{}.{}.core",
                entry["interp"].as_str().unwrap(),
                entry["scenario"].as_str().unwrap(),
                entry["kind"].as_str().unwrap()
            )),
        )
        .unwrap();
        for command in [&["info"][..], &["threads", "--native"], &["check"]] {
            let args: Vec<String> = command
                .iter()
                .map(|s| s.to_string())
                .chain(support::file_args(entry))
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (_, narrow, err) = run_with(&args, &narrow_env, &[]);
            for line in too_wide(&narrow, 80) {
                problems.push(format!("{core} {command:?} COLUMNS=80: {line}"));
            }
            let (_, piped, _) = support::pymortem(&args);
            for line in trailing_blanks(&piped) {
                problems.push(format!("{core} {command:?} piped: {line}"));
            }
            if narrow.trim().is_empty() {
                problems.push(format!("{core} {command:?}: no output: {err}"));
            }
        }
        // Piped, a module's build-id is whole (greppable): the interpreter's
        // file, read by goblin, is the independent record.
        let exe = support::truth(entry)["implementation_executable"]
            .as_str()
            .unwrap()
            .to_string();
        let on_disk = match entry["sysroot"].as_str() {
            Some(root) => Path::new(root).join(exe.trim_start_matches('/')),
            None => PathBuf::from(&exe),
        };
        let id = gnu_build_id(&on_disk);
        let info_args = args_of(&["info"], entry);
        let info_args: Vec<&str> = info_args.iter().map(String::as_str).collect();
        let (_, piped, _) = support::pymortem(&info_args);
        if !piped.contains(&id) {
            problems.push(format!(
                "{core}: piped info does not show {exe}'s build-id {id}"
            ));
        }
    }
    let folder = columns.to_str().unwrap();
    let (code, narrow, err) = run_with(&["triage", folder], &narrow_env, &[]);
    assert_eq!(code, 0, "{err}");
    for line in too_wide(&narrow, 80) {
        problems.push(format!("triage COLUMNS=80: {line}"));
    }
    let (_, piped, err) = support::pymortem(&["triage", folder]);
    problems.extend(trailing_blanks(&piped));
    // Not a terminal: no progress bar, nothing on stderr.
    if !err.is_empty() {
        problems.push(format!("triage piped wrote to stderr: {err:?}"));
    }
    // Piped, nothing is cut: the groups' examples are named in full.
    if !piped.contains(&format!("example: {folder}/")) {
        problems.push(format!("piped triage names no example under {folder}"));
    }
    support::assert_no_problems(&problems);
}

/// The variant names of every enum in `src/`, as `{:?}` prints them: read
/// from the source, so a new enum is covered without touching this test.
/// Names of one word (`Kernel`, `Error`) read as English; the ones of two
/// or more words (`PyVersionSymbol`, `FreeListCycle`) never should.
fn enum_variant_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![support::repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                variants_in(&std::fs::read_to_string(&path).unwrap(), &mut names);
            }
        }
    }
    names
        .into_iter()
        .filter(|n| n.chars().filter(|c| c.is_ascii_uppercase()).count() >= 2)
        .collect()
}

/// The variants of each `enum Name { ... }` in `source`: the identifiers
/// that start a line at the body's top nesting level.
fn variants_in(source: &str, names: &mut BTreeSet<String>) {
    let mut rest = source;
    while let Some(at) = rest.find("enum ") {
        let after = &rest[at + 5..];
        let is_keyword = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let Some(open) = after.find('{') else { break };
        rest = &after[open + 1..];
        if !is_keyword || after[..open].contains(';') {
            continue;
        }
        let mut depth = 0i32;
        for line in rest.lines() {
            let t = line.trim();
            if depth == 0 && !t.starts_with("//") && !t.starts_with('#') {
                let ident: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if ident.starts_with(|c: char| c.is_ascii_uppercase()) {
                    names.insert(ident);
                }
            }
            for c in t.chars() {
                match c {
                    '{' | '(' => depth += 1,
                    '}' | ')' => depth -= 1,
                    _ => {}
                }
            }
            if depth < 0 {
                break;
            }
        }
    }
}

/// Whether `word` appears in `text` as a whole identifier.
fn has_identifier(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// A lone `?` standing for a value (`line ?`, `Python ?`); `??` (an unknown
/// native function, as debuggers print it) and a question's `?` are not.
fn has_placeholder(line: &str) -> bool {
    let chars: Vec<char> = line.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        c == '?'
            && before != Some('?')
            && after != Some('?')
            && !before.is_some_and(|b| b.is_alphanumeric() || b == ')' || b == '"')
    })
}

#[test]
fn text_output_shows_no_code_identifiers_and_no_placeholders() {
    if support::matrix_missing() {
        return;
    }
    let identifiers = enum_variant_names();
    // The list is read from the source: it must hold the ones seen before.
    for known in [
        "PyVersionSymbol",
        "InterpHeadSymbol",
        "FreeListCycle",
        "InterpreterScan",
    ] {
        assert!(identifiers.contains(known), "{known} not found in src/");
    }
    let dir = tempfile::tempdir().unwrap();
    let synthetic = synthetic_core(dir.path()).to_string_lossy().into_owned();
    let mut runs: Vec<Vec<String>> = Vec::new();
    let commands: [&[&str]; 7] = [
        &["info"],
        &["threads", "--native", "--locals"],
        &["check"],
        &["freelists"],
        &["gc"],
        &["layout"],
        &["triage"],
    ];
    for command in commands {
        runs.push(
            command
                .iter()
                .map(|s| s.to_string())
                .chain([synthetic.clone()])
                .collect(),
        );
        for entry in some_cores() {
            runs.push(
                command
                    .iter()
                    .map(|s| s.to_string())
                    .chain(support::file_args(&entry))
                    .collect(),
            );
        }
    }
    let problems = support::parallel(&runs, |args| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, out, err) = support::pymortem(&args);
        let mut problems = Vec::new();
        for (stream, text) in [("stdout", &out), ("stderr", &err)] {
            for line in text.lines() {
                for name in &identifiers {
                    if has_identifier(line, name) {
                        problems.push(format!("{args:?} {stream}: {name} in {line:?}"));
                    }
                }
                if has_placeholder(line) {
                    problems.push(format!("{args:?} {stream}: a ? placeholder in {line:?}"));
                }
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
}

#[test]
fn a_core_without_python_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let (_, threads, _) = support::pymortem(&["threads", core.to_str().unwrap()]);
    assert!(
        threads.starts_with("Not a Python process"),
        "threads: {threads}"
    );
    let (_, check, _) = support::pymortem(&["check", core.to_str().unwrap()]);
    assert!(check.starts_with("Not a Python process"), "check: {check}");
    let (_, info, _) = support::pymortem(&["info", core.to_str().unwrap()]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Python:") && l.contains("not a Python process")),
        "info: {info}"
    );
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let core = core.to_str().unwrap();

    // A folder as CORE.
    let folder = dir.path().to_str().unwrap();
    let (code, _, err) = support::pymortem(&["info", folder]);
    assert_eq!(code, 2);
    assert!(err.contains("is a directory"), "{err}");
    assert!(!err.contains("No such device"), "{err}");

    // A missing file: no hint about ELF cores, whose content was never read.
    let missing = dir.path().join("no-such.core");
    let (code, _, err) = support::pymortem(&["threads", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("ELF core"), "{err}");

    // A --sysroot that does not exist is an error naming it, for every command.
    let nowhere = dir.path().join("no-such-root");
    let nowhere = nowhere.to_str().unwrap();
    for command in ["info", "threads", "check", "layout", "triage"] {
        let (code, out, err) = support::pymortem(&[command, "--sysroot", nowhere, core]);
        assert_eq!(code, 2, "{command}: {out}{err}");
        assert!(
            err.contains("--sysroot") && err.contains(nowhere),
            "{command}: {err}"
        );
    }
    // A --sysroot that is a file, a --debug-dir that does not exist.
    let (code, _, err) = support::pymortem(&["info", "--sysroot", core, core]);
    assert_eq!(code, 2);
    assert!(err.contains("not a directory"), "{err}");
    let (code, _, err) = support::pymortem(&["check", "--debug-dir", nowhere, core]);
    assert_eq!(code, 2);
    assert!(err.contains("--debug-dir"), "{err}");
}

#[test]
fn counts_agree_with_their_nouns() {
    let dir = tempfile::tempdir().unwrap();
    let one = synthetic_core(dir.path());
    let (code, out, err) = support::pymortem(&["triage", one.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let summary = out.lines().next().unwrap_or_default();
    assert!(summary.starts_with("1 core: 1 group, 0 errors"), "{out}");

    let two = support::write_temp(dir.path(), "core.2", &support::synth::sample().build());
    let (_, out, _) = support::pymortem(&["triage", one.to_str().unwrap(), two.to_str().unwrap()]);
    assert!(out.starts_with("2 cores: 1 group, 0 errors"), "{out}");
    // 2 cores in one group: the group says so.
    assert!(out.contains("(2 cores, v1:"), "{out}");

    let (_, info, _) = support::pymortem(&["info", one.to_str().unwrap()]);
    // The synthetic core: 3 segments, its notes counted.
    assert!(info.contains(", 3 segments, "), "{info}");
}

/// A zstd stream of `bytes`.
fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A tar header block (ustar magic at 257) and a block of content.
fn tar_bytes() -> Vec<u8> {
    let mut tar = vec![0u8; 1024];
    tar[..8].copy_from_slice(b"file.txt");
    tar[257..263].copy_from_slice(b"ustar\0");
    tar
}

#[test]
fn triage_follows_links_reports_loops_and_skips_archives() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let links = dir.path().join("links");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&links).unwrap();
    // Three cores in a store; the folder triaged holds only links to them.
    let bytes = support::synth::sample().build();
    let mut targets = Vec::new();
    for name in ["a.core", "b.core", "core.123"] {
        let path = support::write_temp(&store, name, &bytes);
        std::os::unix::fs::symlink(&path, links.join(name)).unwrap();
        targets.push(path);
    }
    // A link to a folder of the tree (a loop), a link to itself, a dangling link.
    std::os::unix::fs::symlink(&links, links.join("again")).unwrap();
    std::os::unix::fs::symlink(links.join("self"), links.join("self")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), links.join("dangling")).unwrap();
    // Archives and other non-cores, compressed or not.
    support::write_temp(&links, "x.sysroot.tar.zst", &zstd(&tar_bytes()));
    support::write_temp(&links, "content-is-tar.zst", &zstd(&tar_bytes()));
    support::write_temp(&links, "plain.tar", &tar_bytes());
    let exe = std::fs::read(env!("CARGO_BIN_EXE_pymortem")).unwrap();
    support::write_temp(&links, "program.zst", &zstd(&exe[..64 << 10]));
    support::write_temp(&links, "text.zst", &zstd(b"just some text, no core\n"));

    let folder = links.to_str().unwrap();
    let (code, out, err) = support::pymortem(&["triage", "--json", folder]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.is_empty(),
        "stderr is not a terminal: no progress: {err:?}"
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, rows) = lines.split_last().unwrap();
    let name_of = |row: &Value| {
        Path::new(row["path"].as_str().unwrap())
            .strip_prefix(&links)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let triaged: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["signature"].is_string())
        .map(name_of)
        .collect();
    assert_eq!(
        triaged,
        ["a.core", "b.core", "core.123"].map(String::from).into(),
        "{out}"
    );
    assert_eq!(summary["cores"], 3, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let skipped: std::collections::BTreeMap<String, String> = rows
        .iter()
        .filter_map(|r| Some((name_of(r), r["skipped"].as_str()?.to_string())))
        .collect();
    let expect = [
        ("again", "already walked"),
        ("self", "symlink loop"),
        ("dangling", "dangling symlink"),
        ("x.sysroot.tar.zst", "tar archive"),
        ("content-is-tar.zst", "tar archive"),
        ("plain.tar", "tar archive"),
        ("program.zst", "not a core"),
        ("text.zst", "does not hold an ELF core"),
    ];
    for (name, reason) in expect {
        let got = skipped.get(name).map(String::as_str).unwrap_or("");
        assert!(
            got.contains(reason),
            "{name}: skipped {got:?}, want {reason:?}\n{out}"
        );
    }
    assert_eq!(summary["skipped"], expect.len(), "{summary}");

    // The same cores found directly and through links are read once.
    let (_, out, _) = support::pymortem(&["triage", "--json", store.to_str().unwrap(), folder]);
    let summary: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["cores"], 3, "{out}");
}

#[test]
fn the_cache_dir_is_not_made_under_a_home_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let temp = dir.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    let home = dir.path().join("nonexistent");
    // Every command that may read a layout chooses the cache folder first.
    for command in ["threads", "check", "info"] {
        let (_, _, err) = run_with(
            &[command, core.to_str().unwrap()],
            &[("HOME", &home), ("TMPDIR", &temp)],
            &["XDG_CACHE_HOME"],
        );
        assert!(!home.exists(), "{command} created {}", home.display());
        let fallback = std::fs::read_dir(&temp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("pymortem-cache-"));
        let Some(fallback) = fallback else {
            panic!("{command}: no cache folder in TMPDIR; stderr: {err}")
        };
        assert!(
            err.contains("does not exist") && err.contains(&fallback),
            "{command}: the fallback is not said: {err}"
        );
    }
}

#[test]
fn the_examples_help_describes_the_example() {
    for (name, words) in [
        ("distinct_stacks", "distinct Python stacks"),
        ("freed_tuples", "free list"),
        ("largest_containers", "largest lists"),
    ] {
        let (code, out, err) = support::example(name, &["--help"]);
        assert_eq!(code, 0, "{name}: {err}");
        let first = out.lines().next().unwrap_or_default();
        assert!(first.contains(words), "{name} --help begins {first:?}");
        assert!(out.contains(&format!("Usage: {name}")), "{name}: {out}");
    }
}

#[test]
fn distinct_stacks_prints_no_heading_without_frames() {
    if support::matrix_missing() {
        return;
    }
    // 3.12's subinterpreter scenario holds a thread state with no frame
    // beside threads with stacks.
    let dir = tempfile::tempdir().unwrap();
    let entry = support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "pyenv-3.12.1"
                && e["scenario"] == "subinterp_threads"
                && e["kind"] == "kernel"
        })
        .expect("pyenv-3.12.1 subinterp_threads kernel in the manifest");
    std::os::unix::fs::symlink(
        entry["core"].as_str().unwrap(),
        dir.path().join("real.core"),
    )
    .unwrap();
    let (code, out, err) = support::example("distinct_stacks", &[dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" in ") && !line.starts_with(' ') {
            assert!(
                lines.get(i + 1).is_some_and(|next| next.starts_with("  ")),
                "a heading without frames: {line:?}\n{out}"
            );
        }
    }
    assert!(out.contains("with no Python frame"), "{out}");
}

#[test]
fn csv_and_json_are_never_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let cache = dir.path().join("cache");
    let env = [("COLUMNS", Path::new("20")), ("XDG_CACHE_HOME", &cache)];
    let (code, csv, err) = run_with(&["triage", "--csv", core.to_str().unwrap()], &env, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(csv.lines().count(), 2, "a header and one row:\n{csv}");
    let (_, json, _) = run_with(&["info", "--json", core.to_str().unwrap()], &env, &[]);
    serde_json::from_str::<Value>(&json).expect("info --json is JSON");
}

/// `threads` shows each frame's source line under it, as Python's tracebacks
/// do, with the executing part marked from the 3.11+ position; `--no-source`
/// leaves the lines out. The line and columns come from the scenario's
/// truth (`co_positions()`), the text from the scenario's own file.
#[test]
fn tracebacks_show_the_source_line_and_mark_the_position() {
    if support::matrix_missing() {
        return;
    }
    let entry = support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "pyenv-3.12.1" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("the pyenv-3.12.1 threads core");
    let truth = support::truth(&entry);
    // A parked worker's frame in the scenario file, with its position.
    let (file, position) = truth["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["stack"].as_array().unwrap())
        .find_map(|f| {
            let file = f["file"].as_str()?;
            (file.ends_with("/threads.py") && f["position"].is_array())
                .then(|| (file.to_string(), f["position"].clone()))
        })
        .expect("a recorded position in threads.py");
    let at = |i: usize| position[i].as_u64().unwrap() as usize;
    let (line, column, end_column) = (at(0), at(2), at(3));
    let source = std::fs::read_to_string(&file).unwrap();
    let text = source.lines().nth(line - 1).unwrap();
    let indent = text.len() - text.trim_start().len();
    let marker = format!(
        "{}{}",
        " ".repeat(column - indent),
        "^".repeat(end_column - column)
    );

    let core = entry["core"].as_str().unwrap();
    let (code, stdout, stderr) = support::pymortem(&["threads", core]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let shown = lines
        .iter()
        .position(|l| l.trim() == text.trim() && l.starts_with("      "))
        .unwrap_or_else(|| panic!("no source line {:?} in\n{stdout}", text.trim()));
    assert_eq!(lines[shown + 1], format!("      {marker}"), "{stdout}");

    let (code, stdout, _) = support::pymortem(&["threads", "--no-source", core]);
    assert_eq!(code, 0);
    assert!(!stdout.contains(text.trim()), "{stdout}");
}
