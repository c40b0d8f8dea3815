//! Command-line conventions: documented JSON, exit codes, closed pipes.

use crate::support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use serde_json::Value;

fn keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// Every key appears in `docs/json-schema.md` as `key`.
fn assert_documented(doc: &str, keys: &BTreeSet<String>) {
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/json-schema.md: {undocumented:?}"
    );
}

fn synthetic_core(dir: &std::path::Path) -> std::path::PathBuf {
    support::write_temp(dir, "core", &support::synth::sample().build())
}

#[test]
fn every_json_key_is_documented() {
    if support::matrix_missing() {
        return;
    }
    let doc = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cores = vec![synthetic_core(dir.path()).to_string_lossy().into_owned()];
    // Real cores with modules, debug info and Python, and truncated copies:
    // a kernel core keeps its notes (they come first), a gcore core loses them.
    let manifest = support::manifest();
    for kind in ["kernel", "gcore"] {
        let real = manifest
            .iter()
            .find(|e| {
                e["interp"] == "pyenv-3.11.7" && e["scenario"] == "threads" && e["kind"] == kind
            })
            .unwrap();
        let real_path = real["core"].as_str().unwrap().to_string();
        let bytes = std::fs::read(&real_path).unwrap();
        let cut = support::write_temp(
            dir.path(),
            &format!("cut-{kind}.core"),
            &bytes[..bytes.len() * 2 / 3],
        );
        cores.push(real_path);
        cores.push(cut.to_string_lossy().into_owned());
    }
    let mut all = BTreeSet::new();
    for core in &cores {
        let (code, stdout, stderr) = support::pymortem(&["info", "--json", core]);
        assert_eq!(code, 0, "{core}: {stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["schema"], "info");
        assert_eq!(v["schema_version"], 1);
        if !core.ends_with("cut-gcore.core") {
            assert!(
                v["threads"][0]["pthread_id"].is_u64(),
                "{core}: threads survive, addresses are integers"
            );
        }
        keys(&v, &mut all);
    }
    assert!(
        all.contains("truncated") && all.contains("expected_size"),
        "the truncated core reports truncation"
    );
    assert_documented(&doc, &all);
}

/// Schema keys of a layout report. Structure, field and variable names are
/// data (maps keyed by name), so only the keys inside their values count.
fn layout_keys(v: &Value, out: &mut BTreeSet<String>) {
    for (k, val) in v.as_object().unwrap() {
        out.insert(k.clone());
        if k != "layout" {
            keys(val, out);
            continue;
        }
        for (lk, lv) in val.as_object().unwrap() {
            out.insert(lk.clone());
            match lk.as_str() {
                "structs" => {
                    for st in lv.as_object().unwrap().values() {
                        for (sk, sv) in st.as_object().unwrap() {
                            out.insert(sk.clone());
                            if sk == "fields" {
                                sv.as_object().unwrap().values().for_each(|f| keys(f, out));
                            }
                        }
                    }
                }
                "globals" => {}
                _ => keys(lv, out),
            }
        }
    }
}

#[test]
fn layout_json_keys_are_documented() {
    if support::matrix_missing() {
        return;
    }
    let doc = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let manifest = support::manifest();
    let e = manifest
        .iter()
        .find(|e| {
            e["interp"] == "pyenv-3.11.7" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .unwrap();
    let core = e["core"].as_str().unwrap();
    let lib = e["libpython"].as_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let mut all = BTreeSet::new();
    for args in [
        vec!["layout", "--json", "--no-cache", core],
        vec![
            "layout",
            "--json",
            "--no-cache",
            "--sysroot",
            root,
            "--no-default-debug-dir",
            core,
        ],
        vec![
            "layout",
            "--json",
            "--no-cache",
            "--python-version",
            "3.11.7",
            lib,
        ],
    ] {
        let (code, stdout, stderr) = support::pymortem(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            (v["schema"].as_str(), v["schema_version"].as_u64()),
            (Some("layout"), Some(1))
        );
        layout_keys(&v, &mut all);
    }
    assert!(all.contains("bit_offset") && all.contains("strategy") && all.contains("exact"));
    assert_documented(&doc, &all);
}

#[test]
fn threads_json_keys_are_documented() {
    if support::matrix_missing() {
        return;
    }
    let doc = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let manifest = support::manifest();
    let mut all = BTreeSet::new();
    let cases = [
        ("pyenv-2.7.18", "threads"),
        ("pyenv-3.11.7", "threads"),
        ("pyenv-2.7.18", "gc_already_tracked"),
    ];
    for (interp, scenario) in cases {
        let e = manifest
            .iter()
            .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == "kernel")
            .unwrap();
        let core = e["core"].as_str().unwrap();
        let (code, stdout, stderr) =
            support::pymortem(&["threads", "--json", "--locals", "--native", core]);
        assert_eq!(code, 0, "{stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            (v["schema"].as_str(), v["schema_version"].as_u64()),
            (Some("threads"), Some(1))
        );
        keys(&v, &mut all);
    }
    assert!(all.contains("locals") && all.contains("argument") && all.contains("qualname"));
    assert!(
        all.contains("native_stop") && all.contains("source") && all.contains("message_source")
    );
    assert_documented(&doc, &all);
}

#[test]
fn check_and_object_json_keys_are_documented() {
    if support::matrix_missing() {
        return;
    }
    let doc = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let manifest = support::manifest();
    let mut all = BTreeSet::new();
    for scenario in ["double_free", "gc_already_tracked"] {
        let e = manifest
            .iter()
            .find(|e| {
                e["interp"] == "pyenv-3.12.1" && e["scenario"] == scenario && e["kind"] == "kernel"
            })
            .unwrap();
        let core = e["core"].as_str().unwrap();
        for command in ["check", "freelists", "gc"] {
            let (code, stdout, stderr) = support::pymortem(&[command, "--json", core]);
            // A double free leaves the GC lists intact; everything else shows findings.
            let expected = if command == "gc" && scenario == "double_free" {
                0
            } else {
                1
            };
            assert_eq!(code, expected, "{command} {scenario}: {stderr}");
            let v: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["schema"], command);
            keys(&v, &mut all);
        }
        let t: Value =
            serde_json::from_str(&std::fs::read_to_string(e["truth"].as_str().unwrap()).unwrap())
                .unwrap();
        let victim = format!("{:#x}", t["objects"]["victim_tuple"].as_u64().unwrap());
        let (code, stdout, _) = support::pymortem(&["object", "--json", core, &victim]);
        assert_eq!(code, 0);
        keys(&serde_json::from_str(&stdout).unwrap(), &mut all);
    }
    assert!(
        all.contains("referrers")
            && all.contains("repeated_address")
            && all.contains("owned_references")
    );
    assert_documented(&doc, &all);
}

#[test]
fn text_output_names_threads_and_signal() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let (code, stdout, _) = support::pymortem(&["info", core.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("SIGSEGV (11)"), "{stdout}");
    assert!(stdout.contains("SEGV_MAPERR"), "{stdout}");
    assert!(stdout.contains("0xdeadbeef"), "{stdout}");
    assert!(stdout.contains("4243"), "{stdout}");
}

#[test]
fn closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let core = synthetic_core(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .args(["info", core.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = support::pymortem(&["info"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = support::pymortem(&["info", "/nonexistent/core"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/core"), "{stderr}");
}

#[test]
fn triage_json_keys_are_documented_and_csv_has_a_row_per_file() {
    if support::matrix_missing() {
        return;
    }
    let doc = std::fs::read_to_string(support::repo().join("docs/json-schema.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = support::manifest();
    for scenario in ["double_free", "gc_already_tracked"] {
        let e = manifest
            .iter()
            .find(|e| {
                e["interp"] == "pyenv-3.7.16" && e["scenario"] == scenario && e["kind"] == "kernel"
            })
            .unwrap();
        std::fs::copy(
            e["core"].as_str().unwrap(),
            dir.path().join(format!("{scenario}.core")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("garbage.core"), b"garbage").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"notes").unwrap();
    let folder = dir.path().to_string_lossy().into_owned();
    let (code, stdout, stderr) = support::pymortem(&["triage", "--json", &folder]);
    assert_eq!(code, 0, "{stderr}");
    let mut all = BTreeSet::new();
    for line in stdout.lines() {
        keys(&serde_json::from_str(line).unwrap(), &mut all);
    }
    assert!(all.contains("signature_text") && all.contains("groups") && all.contains("skipped"));
    assert_documented(&doc, &all);
    // CI can fail on findings.
    let (code, _, _) = support::pymortem(&["triage", "--fail-on", "findings", &folder]);
    assert_eq!(code, 1);
    let (code, csv, stderr) = support::pymortem(&["triage", "--csv", &folder]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 4, "{csv}");
    assert!(rows[0].starts_with("path,status,group,signature"));
    assert_eq!(
        rows.iter().filter(|r| r.contains(",error,")).count(),
        1,
        "{csv}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains(",skipped,")).count(),
        1,
        "{csv}"
    );
}
