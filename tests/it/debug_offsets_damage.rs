//! A core whose `_Py_DebugOffsets` was damaged (a stray write, a bad dump)
//! still gives every thread's stack: the interpreter's file holds the table
//! as it was built (the process never writes it), pymortem compares the two
//! copies, says the core's is damaged and uses the file's. Debian 3.14,
//! stripped and read without its debug files, so that the layout comes from
//! `_Py_DebugOffsets`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support;

/// Where `member` sits in 3.14's `_Py_DebugOffsets`, from the generated data.
fn position(member: &str) -> u64 {
    let text = std::fs::read_to_string(support::repo().join("layouts/debug-offsets.toml")).unwrap();
    let versions: BTreeMap<String, BTreeMap<String, u64>> = toml::from_str(&text).unwrap();
    versions["3.14"][member]
}

/// Damage the copy of `entry`'s core at `_PyRuntime` + `at` with `bytes`,
/// read it without debug files, and return the report and every way its
/// stacks differ from the truth.
fn read_damaged(entry: &Value, at: u64, bytes: &[u8]) -> (Value, Vec<String>) {
    let core = entry["core"].as_str().unwrap();
    let root = entry["sysroot"].as_str().unwrap();
    let (code, stdout, stderr) = support::pymortem(&[
        "layout",
        "--json",
        "--no-cache",
        "--no-default-debug-dir",
        "--sysroot",
        root,
        core,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let layout: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(layout["layout"]["source"]["kind"], "debug_offsets");
    let runtime = layout["layout"]["source"]["address"].as_u64().unwrap();

    let process = support::open(entry);
    let target = runtime + at;
    let segment = process
        .core()
        .segments()
        .iter()
        .find(|s| s.vaddr <= target && target + bytes.len() as u64 <= s.vaddr + s.available)
        .expect("the core holds _PyRuntime");
    let offset = (segment.file_offset + (target - segment.vaddr)) as usize;
    let mut damaged = std::fs::read(core).unwrap();
    damaged[offset..offset + bytes.len()].copy_from_slice(bytes);
    let dir = tempfile::tempdir().unwrap();
    let copy = support::write_temp(dir.path(), "damaged.core", &damaged);

    let (code, stdout, stderr) = support::pymortem(&[
        "threads",
        "--json",
        "--locals",
        "--no-cache",
        "--no-default-debug-dir",
        "--sysroot",
        root,
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let problems = crate::without_files::disagreements(entry, &report, "damaged debug offsets");
    (report, problems)
}

/// Debian 3.14's threads core (kernel).
fn debian_314_threads() -> Value {
    support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "debian-3.14" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("the debian-3.14 threads core")
}

/// The warning that names the damage, if any.
fn damage_warning(report: &Value) -> Option<String> {
    report["diagnostics"]
        .as_array()?
        .iter()
        .filter(|d| d["severity"] == "warning")
        .filter_map(|d| d["message"].as_str())
        .find(|m| m.contains("_Py_DebugOffsets") && m.contains("damaged"))
        .map(str::to_string)
}

#[test]
fn a_damaged_member_is_read_from_the_file() {
    if support::matrix_missing() {
        return;
    }
    let entry = debian_314_threads();
    // A plausible but wrong offset for each interpreter's thread list: read
    // from the core's copy, no thread would be found.
    let at = position("interpreter_state.threads_head");
    let (report, problems) = read_damaged(&entry, at, &0x7770u64.to_le_bytes());
    let warning = damage_warning(&report).expect("a warning names the damage");
    assert!(
        warning.contains("interpreter_state.threads_head") && warning.contains(".PyRuntime"),
        "{warning}"
    );
    support::assert_no_problems(&problems);
}

#[test]
fn a_damaged_cookie_is_read_from_the_file() {
    if support::matrix_missing() {
        return;
    }
    let entry = debian_314_threads();
    // The cookie and the version word: the core's copy is no table at all.
    let (report, problems) = read_damaged(&entry, 0, &[0xa5; 16]);
    let warning = damage_warning(&report).expect("a warning names the damage");
    assert!(warning.contains("is not a valid table"), "{warning}");
    support::assert_no_problems(&problems);
}
