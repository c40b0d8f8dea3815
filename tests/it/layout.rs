//! Layouts: the built-in tables regenerate identically from every interpreter
//! on the machine; stripped cores get a correct layout from the tables or
//! `_Py_DebugOffsets`; the runtime is found by every strategy; the cache works.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use pymortem::layout::{LayoutOptions, LayoutSource, select};
use pymortem::memory::MemoryExt;
use pymortem::python::locate;
use pymortem::{Options, Process};
use serde_json::Value;

fn entry(interp: &str, scenario: &str, kind: &str) -> Value {
    support::manifest()
        .into_iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {interp} {scenario} {kind} core"))
}

fn layout_json(args: &[&str]) -> Value {
    let mut full = vec!["layout", "--json"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = support::pymortem(&full);
    assert_eq!(code, 0, "{full:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn tables_regenerate_identically() {
    if support::matrix_missing() {
        return;
    }
    // Each architecture has its own set: AArch64's glibc types differ in size.
    for (arch, dir) in [("x86_64", "layouts"), ("aarch64", "layouts/aarch64")] {
        let out = tempfile::tempdir().unwrap();
        let status = Command::new("python3")
            .arg(support::repo().join("sample-cores/emit_layouts.py"))
            .args(["--arch", arch])
            .arg("--out")
            .arg(out.path())
            .arg("--pymortem")
            .arg(env!("CARGO_BIN_EXE_pymortem"))
            .status()
            .unwrap();
        assert!(status.success(), "emit_layouts.py --arch {arch} failed");
        let committed = support::repo().join(dir);
        let names = |dir: &Path| -> BTreeSet<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                // debug-offsets.toml has its own generator and test.
                .filter(|name| name.starts_with("cpython-"))
                .collect()
        };
        assert_eq!(
            names(out.path()),
            names(&committed),
            "the same set of {arch} tables"
        );
        let mut differ = Vec::new();
        for name in names(&committed) {
            let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
            let old = std::fs::read_to_string(committed.join(&name)).unwrap();
            if fresh != old {
                differ.push(name);
            }
        }
        assert!(
            differ.is_empty(),
            "regenerate with sample-cores/emit_layouts.py --arch {arch} --out {dir}; \
             these differ: {differ:?}"
        );
    }
}

/// Every field of `got` that `oracle` also has agrees with it.
fn assert_layout_agrees(label: &str, got: &Value, oracle: &Value) {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, st) in got["structs"].as_object().unwrap() {
        let Some(o) = oracle["structs"].get(name) else {
            continue;
        };
        if st["size"] != o["size"] {
            problems.push(format!(
                "sizeof {name}: {} vs DWARF {}",
                st["size"], o["size"]
            ));
        }
        for (field, f) in st["fields"].as_object().unwrap() {
            let Some(of) = o["fields"].get(field) else {
                continue;
            };
            checked += 1;
            if f["offset"] != of["offset"] {
                problems.push(format!(
                    "{name}.{field}: {} vs DWARF {}",
                    f["offset"], of["offset"]
                ));
            }
        }
    }
    assert!(checked > 50, "{label}: only {checked} fields compared");
    assert!(problems.is_empty(), "{label}:\n{}", problems.join("\n"));
}

#[test]
fn stripped_debian_311_uses_the_table_and_it_is_right() {
    if support::matrix_missing() {
        return;
    }
    let e = entry("debian-3.11", "threads", "kernel");
    let core = e["core"].as_str().unwrap();
    let report = layout_json(&["--no-cache", "--no-default-debug-dir", core]);
    assert_eq!(
        report["layout"]["source"]["kind"], "table",
        "{}",
        report["attempts"]
    );
    assert_eq!(report["layout"]["source"]["exact"], true);
    assert!(
        report["attempts"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("no DWARF"),
        "says why DWARF was not used"
    );
    // The oracle: the same build's DWARF from its -dbg package.
    let dbg = e["debug_dirs"][0].as_str().unwrap();
    let oracle = layout_json(&["--no-cache", "--debug-dir", dbg, core]);
    assert_eq!(oracle["layout"]["source"]["kind"], "dwarf");
    assert_layout_agrees("debian-3.11", &report["layout"], &oracle["layout"]);
}

/// A stripped Debian interpreter read without its debug files takes its
/// layout from `_Py_DebugOffsets` (completed by the built-in table), and
/// every field agrees with the same build's DWARF.
fn assert_stripped_uses_debug_offsets(interp: &str) {
    let e = entry(interp, "threads", "kernel");
    let core = e["core"].as_str().unwrap();
    let root = e["sysroot"].as_str().unwrap();
    let report = layout_json(&[
        "--no-cache",
        "--no-default-debug-dir",
        "--sysroot",
        root,
        core,
    ]);
    assert_eq!(
        report["layout"]["source"]["kind"], "debug_offsets",
        "{interp}: {}",
        report["attempts"]
    );
    let dbg = e["debug_dirs"][0].as_str().unwrap();
    let oracle = layout_json(&["--no-cache", "--sysroot", root, "--debug-dir", dbg, core]);
    assert_eq!(oracle["layout"]["source"]["kind"], "dwarf");
    assert_layout_agrees(interp, &report["layout"], &oracle["layout"]);
}

#[test]
fn stripped_debian_314_uses_debug_offsets_and_it_is_right() {
    if support::matrix_missing() {
        return;
    }
    assert_stripped_uses_debug_offsets("debian-3.14");
}

#[test]
fn stripped_debian_315_uses_debug_offsets_and_it_is_right() {
    if support::matrix_missing() {
        return;
    }
    // 3.15's `_Py_DebugOffsets` has a layout of its own (every position after
    // the thread state moves).
    assert_stripped_uses_debug_offsets("debian-3.15");
}

/// Walk the first interpreter's thread states and collect their thread ids.
fn thread_ids(process: &Process) -> (String, BTreeSet<u64>) {
    let choice = select(
        process.python(),
        process.modules(),
        process.memory(),
        &LayoutOptions {
            no_cache: true,
            cache_dir: None,
            newest_known: None,
        },
    )
    .expect("a layout");
    let runtime = locate(process, &choice.layout).expect("the runtime");
    let l = &choice.layout;
    let (head, next, tid) = (
        l.offset("PyInterpreterState", "threads_head").unwrap(),
        l.offset("PyThreadState", "next").unwrap(),
        l.offset("PyThreadState", "thread_id").unwrap(),
    );
    let mut ids = BTreeSet::new();
    let mut t = process
        .memory()
        .read_ptr(runtime.interpreters[0] + head)
        .unwrap();
    while t != 0 && ids.len() < 100 {
        ids.insert(process.memory().read_u64(t + tid).unwrap());
        t = process.memory().read_ptr(t + next).unwrap();
    }
    (format!("{:?}", runtime.strategy), ids)
}

#[test]
fn runtime_is_found_with_and_without_files() {
    if support::matrix_missing() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "threads")
    {
        let want: BTreeSet<u64> = support::truth(e)["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["ident"].as_u64().unwrap())
            .collect();
        let (major_minor, interp) = {
            let v = e["python_version"].as_str().unwrap();
            let mut p = v.split('.').map(|x| x.parse::<u32>().unwrap());
            (
                (p.next().unwrap(), p.next().unwrap()),
                e["interp"].as_str().unwrap(),
            )
        };
        // QEMU's cores name no module without the files (see without_files).
        for no_files in [false, true] {
            if no_files && support::written_by_qemu(e) {
                continue;
            }
            let mut options = Options::default();
            if no_files {
                options = options.sysroot(empty.path());
                options.search.no_default_debug_dir = true;
            } else if let Some(root) = e["sysroot"].as_str() {
                options = options.sysroot(root);
            }
            let process = Process::open(e["core"].as_str().unwrap(), &options).unwrap();
            let (strategy, got) = thread_ids(&process);
            let expected = match (no_files, major_minor >= (3, 7), major_minor >= (3, 13)) {
                (false, true, _) => "Symbol",
                (false, false, _) => "InterpHeadSymbol",
                (true, _, true) => "DebugOffsetsScan",
                (true, _, false) => "InterpreterScan",
            };
            if strategy != expected {
                problems.push(format!(
                    "{interp} {} files={}: strategy {strategy}, expected {expected}",
                    e["kind"], !no_files
                ));
            }
            if got != want {
                problems.push(format!(
                    "{interp} {} files={}: thread ids {got:?} vs truth {want:?}",
                    e["kind"], !no_files
                ));
            }
        }
    }
    support::assert_no_problems(&problems);
}

#[test]
fn dwarf_layouts_are_cached_per_build_id() {
    if support::matrix_missing() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let e = entry("pyenv-3.13.0", "threads", "kernel");
    let core = e["core"].as_str().unwrap();
    let dir = cache.path().to_str().unwrap();
    let first = layout_json(&["--cache-dir", dir, core]);
    assert_eq!(first["layout"]["source"]["kind"], "dwarf");
    assert_eq!(first["layout"]["source"]["cached"], false);
    let second = layout_json(&["--cache-dir", dir, core]);
    assert_eq!(second["layout"]["source"]["cached"], true);
    assert_eq!(
        first["layout"]["structs"], second["layout"]["structs"],
        "the cache returns the same layout"
    );
    let files = std::fs::read_dir(cache.path().join("layouts"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
    let bypass = layout_json(&["--no-cache", "--cache-dir", dir, core]);
    assert_eq!(bypass["layout"]["source"]["cached"], false);
    // A damaged cache file is ignored and rewritten.
    let file = std::fs::read_dir(cache.path().join("layouts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"{not json").unwrap();
    let third = layout_json(&["--cache-dir", dir, core]);
    assert_eq!(third["layout"]["source"]["cached"], false);
    let fourth = layout_json(&["--cache-dir", dir, core]);
    assert_eq!(fourth["layout"]["source"]["cached"], true);
}

#[test]
fn table_layout_names_its_micro_version() {
    if support::matrix_missing() {
        return;
    }
    // pyenv 3.13.0 and Debian 3.13.5 differ; each gets its own.
    for (interp, micro) in [("pyenv-3.13.0", "3.13.0"), ("debian-3.13", "3.13.5")] {
        let e = entry(interp, "threads", "kernel");
        let mut options = Options::default();
        if let Some(root) = e["sysroot"].as_str() {
            options = options.sysroot(root);
        }
        options.search.no_default_debug_dir = true;
        let process = Process::open(e["core"].as_str().unwrap(), &options).unwrap();
        let v = process.python().unwrap().version;
        let table = pymortem::layout::tables::builtin(v.major, v.minor).unwrap();
        let layout = table.layout_for(&v.to_string());
        match &layout.source {
            LayoutSource::Table {
                micro: used, exact, ..
            } => assert_eq!((used.as_str(), *exact), (micro, true)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn runtime_is_found_by_its_section_when_the_symbol_is_gone() {
    if support::matrix_missing() {
        return;
    }
    // Rename `_PyRuntime` in libpython's string tables (the build-id stays, so
    // the copy still verifies): the symbol lookup fails and the `.PyRuntime`
    // section must be used.
    let e = entry("pyenv-3.12.1", "threads", "kernel");
    let lib = e["libpython"].as_str().unwrap();
    let mut bytes = std::fs::read(lib).unwrap();
    let needle = b"_PyRuntime\0";
    let mut renamed = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let at = i + pos;
        bytes[at + needle.len() - 2] = b'X';
        renamed += 1;
        i = at + needle.len();
    }
    assert!(renamed >= 1, "the symbol name is in the string tables");
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join(lib.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, &bytes).unwrap();
    let mut options = Options::default().sysroot(root.path());
    options.search.no_default_debug_dir = true;
    let process = Process::open(e["core"].as_str().unwrap(), &options).unwrap();
    let choice = select(
        process.python(),
        process.modules(),
        process.memory(),
        &LayoutOptions {
            no_cache: true,
            cache_dir: None,
            newest_known: None,
        },
    )
    .unwrap();
    let runtime = locate(&process, &choice.layout).unwrap();
    assert_eq!(format!("{:?}", runtime.strategy), "Section");
    let want: BTreeSet<u64> = support::truth(&e)["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ident"].as_u64().unwrap())
        .collect();
    assert_eq!(thread_ids(&process).1, want);
}
