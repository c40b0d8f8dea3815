//! pymortem's native frames against gdb's `thread apply all bt` on the same
//! cores (benches/native-vs-gdb.py): wherever both name a frame, the names
//! agree, inlined functions and rebuilt tail-call frames included; on the
//! x86-64 cores with gdb, on the AArch64 cores QEMU writes with gdb-multiarch.

use crate::support;

/// Run benches/native-vs-gdb.py with `args` (which cores); its output and
/// its summary.json. A failed run fails the test.
fn compare(args: &[&str]) -> (String, serde_json::Value) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("python3")
        .arg(support::repo().join("benches/native-vs-gdb.py"))
        .arg("--quiet")
        .args(args)
        .arg("--pymortem")
        .arg(env!("CARGO_BIN_EXE_pymortem"))
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("run python3 benches/native-vs-gdb.py");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    (stdout, summary)
}

#[test]
fn function_names_agree_with_gdb() {
    if support::matrix_missing() {
        return;
    }
    let (stdout, summary) = compare(&[
        "--kind",
        "kernel",
        "gcore",
        "--scenario",
        "threads",
        "segfault_faulthandler",
        "gc_already_tracked",
        "--interp",
        "pyenv-2.7.18",
        "pyenv-3.7.16",
        "pyenv-3.11.7",
        "pyenv-3.13.0",
        "debian-3.11",
        "debian-3.14",
        "debian-3.15",
    ]);
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

/// The AArch64 cores QEMU writes (kind `qemu`, `QEMU_CPU=cortex-a72`: no
/// pointer authentication, which gdb cannot unwind without NT_ARM_PAC_MASK)
/// of the four arm64 Debian interpreters, read by gdb-multiarch.
#[test]
fn function_names_agree_with_gdb_multiarch_on_arm64() {
    if support::matrix_missing() {
        return;
    }
    let (stdout, summary) = compare(&[
        "--kind",
        "qemu",
        "--scenario",
        "threads",
        "segfault_faulthandler",
        "gc_already_tracked",
        "segfault",
        "--interp",
        "debian-3.11-arm64",
        "debian-3.13-arm64",
        "debian-3.14-arm64",
        "debian-3.15-arm64",
    ]);
    let totals = &summary["totals"];
    let count = |key: &str| totals[key].as_u64().unwrap();
    assert_eq!(count("cores"), 16, "{stdout}");
    assert_eq!(count("errors"), 0, "{stdout}");
    assert_eq!(count("disagree"), 0, "{stdout}");
    // Every core is compared: gdb-multiarch read it (the sysroot and debug
    // folder given with -iex) and the two stacks met.
    for core in summary["cores"].as_array().unwrap() {
        assert!(
            core["compared"].as_u64().unwrap() >= 10,
            "{}: {stdout}",
            core["core"]
        );
    }
    let compared = count("compared");
    assert_eq!(count("agree"), compared, "{stdout}");
    // Most frames are compared by name. Measured on these 16 cores: 507
    // compared; 152 matched by address but not named by gdb (libc's
    // internal functions: there is no libc6-dbg); 44 only pymortem shows,
    // every one a tail-call frame (below); none only gdb shows. So 72% of
    // the frames are compared. The floors leave a margin of about a fifth
    // for regenerated cores, whose threads may stop a frame or two apart.
    let frames = compared + count("unnamed") + count("pymortem_only") + count("gdb_only");
    assert!(compared >= 400, "{stdout}");
    assert!(
        compared * 5 >= frames * 3,
        "{compared} of {frames}: {stdout}"
    );
    // The frames one side alone shows, listed per core in summary.json.
    let listed = |key: &str| -> Vec<String> {
        summary["cores"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|core| {
                core[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |f| format!("{}: {}", core["core"], f))
            })
            .collect()
    };
    // Frames only pymortem shows are rebuilt tail-call frames that gdb 13
    // does not rebuild on these cores (their call sites' DW_AT_call_origin is
    // an LTO stub DIE without a pc): each is checked against the code, a `b`
    // to the function of the frame inside it, just before its address.
    assert_eq!(
        count("pymortem_only"),
        count("tail_calls_checked"),
        "{:#?}",
        listed("pymortem_only_frames")
    );
    // Frames only gdb shows: none measured (the signal frame of
    // segfault_faulthandler and the frame it interrupted are matched in place).
    let gdb_only = count("gdb_only");
    assert!(
        gdb_only * 50 <= compared,
        "{gdb_only} frames only gdb shows: {:#?}",
        listed("gdb_only_frames")
    );
}
