//! pymortem's native frames against gdb's `thread apply all bt` on the same
//! cores (benches/native-vs-gdb.py): wherever both name a frame, the names
//! agree, inlined functions and rebuilt tail-call frames included.

use crate::support;

#[test]
fn function_names_agree_with_gdb() {
    if support::matrix_missing() {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("python3")
        .arg(support::repo().join("benches/native-vs-gdb.py"))
        .args(["--quiet", "--kind", "kernel", "gcore"])
        .args([
            "--scenario",
            "threads",
            "segfault_faulthandler",
            "gc_already_tracked",
        ])
        .args([
            "--interp",
            "pyenv-2.7.18",
            "pyenv-3.7.16",
            "pyenv-3.11.7",
            "pyenv-3.13.0",
        ])
        .args(["debian-3.11", "debian-3.14", "debian-3.15"])
        .arg("--pymortem")
        .arg(env!("CARGO_BIN_EXE_pymortem"))
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("run python3 benches/native-vs-gdb.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    let totals = &summary["totals"];
    assert_eq!(totals["cores"], 42, "{stdout}");
    assert_eq!(totals["disagree"], 0, "{stdout}");
    // Most frames must actually be compared, not skipped as unnamed.
    let compared = totals["compared"].as_u64().unwrap();
    assert!(compared >= 600, "{stdout}");
    assert_eq!(totals["agree"].as_u64().unwrap(), compared, "{stdout}");
    // gdb rebuilds the frames of functions that made tail calls from DWARF
    // call sites; so does pymortem: frames only gdb shows are rare (a
    // signal handler's, and misalignments where only one side rebuilt one).
    let gdb_only = totals["gdb_only"].as_u64().unwrap();
    assert!(
        gdb_only * 50 <= compared,
        "{gdb_only} frames only gdb shows: {stdout}"
    );
}
