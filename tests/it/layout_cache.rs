//! The layout cache is validated against the core: an entry that is valid
//! JSON with wrong offsets is rejected, rebuilt from DWARF and rewritten, and
//! the stacks still equal the truth the dying process wrote; a correct entry
//! is used as it is.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Interpreters from both ends of the supported range, pyenv and Debian.
const INTERPRETERS: &[&str] = &["pyenv-2.7.18", "pyenv-3.11.7", "debian-3.14"];

fn entry(interp: &str) -> Value {
    support::manifest()
        .into_iter()
        .find(|e| e["interp"] == interp && e["scenario"] == "threads" && e["kind"] == "kernel")
        .unwrap_or_else(|| panic!("no {interp} threads kernel core"))
}

fn threads_json(entry: &Value, cache: &Path) -> Value {
    let mut args = vec![
        "threads".to_string(),
        "--json".to_string(),
        "--cache-dir".to_string(),
        cache.to_str().unwrap().to_string(),
    ];
    args.extend(support::file_args(entry));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn cache_file(cache: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(cache.join("layouts"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// Every truth thread's stack, as the report shows it.
fn stack_problems(label: &str, entry: &Value, report: &Value) -> Vec<String> {
    let truth = support::truth(entry);
    let mut problems = Vec::new();
    for t in truth["threads"].as_array().unwrap() {
        let lwp = &t["native_id"];
        let got = report["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["lwp"] == lwp);
        let have = got.map(|g| support::frames(&g["frames"]));
        let want = support::frames(&t["stack"]);
        if have.as_ref() != Some(&want) {
            problems.push(format!("{label}: thread {lwp}: {have:?} vs truth {want:?}"));
        }
    }
    problems
}

/// Shift the offsets of every field of `structs` (all when empty) by 8.
fn shift_offsets(file: &Path, structs: &[&str]) {
    let mut layout: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for (name, st) in layout["structs"].as_object_mut().unwrap() {
        if !structs.is_empty() && !structs.contains(&name.as_str()) {
            continue;
        }
        for field in st["fields"].as_object_mut().unwrap().values_mut() {
            field["offset"] = (field["offset"].as_u64().unwrap() + 8).into();
        }
    }
    std::fs::write(file, serde_json::to_vec(&layout).unwrap()).unwrap();
}

#[test]
fn a_cached_layout_with_wrong_offsets_is_rejected_rebuilt_and_rewritten() {
    if support::matrix_missing() {
        return;
    }
    let mut problems = Vec::new();
    for interp in INTERPRETERS {
        let e = entry(interp);
        let cache = tempfile::tempdir().unwrap();
        let first = threads_json(&e, cache.path());
        assert_eq!(first["layout_source"]["kind"], "dwarf", "{interp}");
        assert_eq!(first["layout_source"]["cached"], false, "{interp}");
        let file = cache_file(cache.path());
        let good = std::fs::read(&file).unwrap();

        // A correct entry is used as it is, without a rebuild.
        let cached = threads_json(&e, cache.path());
        assert_eq!(cached["layout_source"]["cached"], true, "{interp}");
        assert!(cached["layout_source"].get("cache_rejected").is_none());
        problems.extend(stack_problems(&format!("{interp} cached"), &e, &cached));

        for shifted in [
            &[][..],
            &["PyThreadState", "PyInterpreterState"][..],
            &["PyObject", "PyTypeObject"][..],
        ] {
            let label = format!("{interp} with {shifted:?} shifted");
            shift_offsets(&file, shifted);
            let report = threads_json(&e, cache.path());
            let source = &report["layout_source"];
            if source["cached"] != false || !source["cache_rejected"].is_string() {
                problems.push(format!("{label}: the entry was not rejected: {source}"));
            }
            let warned = report["diagnostics"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| {
                    d["severity"] == "warning"
                        && d["source"] == "layout"
                        && d["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("cached layout failed validation"))
                });
            if !warned {
                problems.push(format!(
                    "{label}: no diagnostic says the cache was rejected"
                ));
            }
            problems.extend(stack_problems(&label, &e, &report));
            if std::fs::read(&file).unwrap() != good {
                problems.push(format!("{label}: the cache entry was not rewritten"));
            }
        }
        let text_args: Vec<String> = ["threads", "--cache-dir", cache.path().to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .chain(support::file_args(&e))
            .collect();
        shift_offsets(&file, &[]);
        let args: Vec<&str> = text_args.iter().map(String::as_str).collect();
        let (_, text, _) = support::pymortem(&args);
        if !text.lines().next().is_some_and(|l| {
            l.contains("layout from DWARF in ")
                && l.contains("; the cached layout failed validation")
        }) {
            problems.push(format!(
                "{interp}: the text header does not say the cache was rejected: {:?}",
                text.lines().next()
            ));
        }
    }
    support::assert_no_problems(&problems);
}
