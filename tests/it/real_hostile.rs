//! Real cores, damaged or stripped of their surroundings: truncated at several
//! points, compressed every way systemd-coredump does, and read with no files
//! at all. `info` works or fails with a clear message; it never panics.

use crate::support;

use std::process::Command;

use serde_json::Value;

fn info_json(args: &[&str]) -> Result<Value, String> {
    let (code, stdout, stderr) = support::pymortem(args);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    match code {
        0 => Ok(serde_json::from_str(&stdout).unwrap()),
        2 => Err(stderr),
        other => panic!("{args:?}: unexpected exit {other}: {stderr}"),
    }
}

fn threads_entries() -> Vec<Value> {
    support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == "threads")
        // QEMU's cores name no module without the files (see without_files).
        .filter(|e| !support::written_by_qemu(e))
        .collect()
}

#[test]
fn version_is_found_with_no_files_at_all() {
    if support::matrix_missing() {
        return;
    }
    // An empty sysroot hides every module file and debug file: the version must
    // come from the core alone (the Py_GetVersion buffer or _Py_DebugOffsets).
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap();
    let mut problems = Vec::new();
    for entry in threads_entries() {
        let core = entry["core"].as_str().unwrap();
        let report = info_json(&[
            "info",
            "--json",
            "--no-default-debug-dir",
            "--sysroot",
            root,
            core,
        ])
        .unwrap();
        if report["python"]["version"] != support::truth(&entry)["python_version"] {
            problems.push(format!(
                "{core}: {} vs truth {}",
                report["python"],
                support::truth(&entry)["python_version"]
            ));
        }
        let modules = report["modules"].as_array().unwrap();
        assert!(
            modules.iter().all(|m| m["file"]["state"] != "verified"),
            "{core}: nothing can be verified"
        );
    }
    support::assert_no_problems(&problems);
}

#[test]
fn truncated_real_cores_keep_what_they_hold() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for entry in threads_entries()
        .iter()
        .filter(|e| e["interp"] == "pyenv-3.12.1" || e["interp"] == "debian-3.14")
    {
        let core = entry["core"].as_str().unwrap();
        let bytes = std::fs::read(core).unwrap();
        let truth = support::truth(entry);
        let mut extra = Vec::new();
        if let Some(root) = entry["sysroot"].as_str() {
            extra.extend(["--sysroot".to_string(), root.to_string()]);
        }
        for percent in [1usize, 10, 50, 90, 99] {
            let cut = bytes.len() * percent / 100;
            let path = support::write_temp(dir.path(), "cut.core", &bytes[..cut]);
            let mut args = vec!["info", "--json"];
            args.extend(extra.iter().map(String::as_str));
            args.push(path.to_str().unwrap());
            match info_json(&args) {
                Err(message) => assert!(
                    message.contains("cut.core"),
                    "the error names the file: {message}"
                ),
                Ok(report) => {
                    assert!(
                        report["core"]["truncated"].is_object(),
                        "{core} at {percent}%: truncation reported"
                    );
                    // Kernel cores put their notes first: the process survives any cut past them.
                    if entry["kind"] == "kernel" && percent >= 10 {
                        let problems = support::info_disagreements(
                            &format!("{core} cut at {percent}%"),
                            &report,
                            &truth,
                        )
                        .into_iter()
                        .filter(|p| !p.contains("python version"))
                        .collect::<Vec<_>>();
                        support::assert_no_problems(&problems);
                    }
                }
            }
        }
    }
}

#[test]
fn compressed_real_cores_match_their_truth() {
    if support::matrix_missing() {
        return;
    }
    let entry = threads_entries()
        .into_iter()
        .find(|e| e["interp"] == "pyenv-3.9.18" && e["kind"] == "kernel")
        .unwrap();
    let core = entry["core"].as_str().unwrap();
    let truth = support::truth(&entry);
    let dir = tempfile::tempdir().unwrap();
    // The command-line tools, as systemd-coredump's formats are made in the wild.
    for (ext, tool, args) in [
        ("zst", "zstd", vec!["-q", "-1", "-c"]),
        ("lz4", "lz4", vec!["-q", "-1", "-c"]),
        ("xz", "xz", vec!["-0", "-T2", "-c"]),
        ("gz", "gzip", vec!["-1", "-c"]),
    ] {
        let out = Command::new(tool)
            .args(&args)
            .arg(core)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} failed");
        let path = support::write_temp(dir.path(), &format!("core.{ext}"), &out.stdout);
        let report = info_json(&[
            "info",
            "--json",
            "--temp-dir",
            dir.path().to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .unwrap();
        let problems = support::info_disagreements(&format!("{core}.{ext}"), &report, &truth);
        support::assert_no_problems(&problems);
        assert!(report["core"]["compression"].is_string());
        // Cut the compressed stream: what was decoded is still used, or a clear error.
        let half = support::write_temp(
            dir.path(),
            &format!("half.{ext}"),
            &out.stdout[..out.stdout.len() / 2],
        );
        if let Ok(report) = info_json(&["info", "--json", half.to_str().unwrap()]) {
            assert_eq!(
                report["pid"], truth["pid"],
                "{ext}: the notes at the front survive"
            );
        }
    }
}
