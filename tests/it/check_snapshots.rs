//! `pymortem check` on snapshots of a healthy, busy process (the
//! `busy_snapshot` family: gdb attached at random moments while threads
//! sort, extend, resize dicts, build tuples and collect cyclic garbage).
//! The process was healthy, as its truth file says: no error or warning
//! finding on any snapshot, and every contradiction a thread caught
//! mid-operation explains is a note naming one of the process's threads.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use support::schema_validator as validator;

fn label(e: &Value) -> String {
    format!(
        "{} {} snapshot {}",
        e["interp"].as_str().unwrap(),
        e["scenario"].as_str().unwrap(),
        e["snapshot"]
    )
}

fn check_snapshot(e: &Value) -> Vec<String> {
    let truth = support::truth(e);
    let l = label(e);
    let mut problems = Vec::new();
    if truth["expected_findings"] != "none" || truth["healthy"] != true {
        problems.push(format!(
            "{l}: the truth does not say the process is healthy"
        ));
        return problems;
    }
    let mut args = vec!["check".to_string(), "--json".to_string()];
    args.extend(support::file_args(e));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    let report: Value = match serde_json::from_str(&stdout) {
        Ok(r) => r,
        Err(err) => return vec![format!("{l}: exit {code}: {err}: {stderr}")],
    };
    // The in-flight evidence is part of the documented schema.
    problems.extend(
        validator()
            .iter_errors(&report)
            .take(3)
            .map(|err| format!("{l}: schema: at '{}': {err}", err.instance_path().as_str())),
    );
    let findings = report["findings"].as_array().unwrap();
    let loud: Vec<String> = findings
        .iter()
        .filter(|f| f["severity"] != "note")
        .take(3)
        .map(|f| format!("{} {}", f["kind"], f["message"]))
        .collect();
    if !loud.is_empty() {
        problems.push(format!("{l}: error or warning findings: {loud:?}"));
    }
    // Incomplete (a part that could not run, e.g. thread stacks gdb could
    // not copy) is honest; corrupt or suspicious is a false alarm.
    let status = report["verdict"]["status"].as_str().unwrap_or("");
    let expected_code = match status {
        "clean" => 0,
        "incomplete" => 3,
        _ => -1,
    };
    if code != expected_code {
        problems.push(format!("{l}: exit {code}, verdict {}", report["verdict"]));
    }
    if report["gc_objects"].as_u64().unwrap_or(0) < 1000 {
        problems.push(format!(
            "{l}: only {} tracked objects walked",
            report["gc_objects"]
        ));
    }
    // A thread in flight is one the process started.
    let lwps: BTreeSet<i64> = truth["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["native_id"].as_i64())
        .collect();
    for f in findings {
        let Some(thread) = f["evidence"]["in_flight"]["thread"].as_i64() else {
            continue;
        };
        if !lwps.contains(&thread) {
            problems.push(format!(
                "{l}: {} is in flight on thread {thread}, which the process did not start ({lwps:?})",
                f["message"]
            ));
        }
    }
    problems
}

#[test]
fn snapshots_of_a_healthy_process_have_no_error_or_warning() {
    if support::matrix_missing() {
        return;
    }
    let entries = support::snapshot_manifest();
    let mut per_interp: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        assert_eq!(e["scenario"], "busy_snapshot", "{}", label(e));
        *per_interp.entry(e["interp"].as_str().unwrap()).or_default() += 1;
    }
    // Every interpreter of the crash scenarios' manifest has snapshots,
    // but for arm64's: gdb would snapshot QEMU, not its guest.
    let interpreters: BTreeSet<String> = support::manifest()
        .iter()
        .filter(|e| !support::written_by_qemu(e))
        .filter_map(|e| e["interp"].as_str().map(str::to_string))
        .collect();
    let snapshotted: BTreeSet<String> = per_interp.keys().map(|i| i.to_string()).collect();
    assert_eq!(
        snapshotted, interpreters,
        "snapshots per interpreter: {per_interp:?}"
    );
    assert!(
        per_interp.values().all(|&n| n >= 4),
        "several snapshots per interpreter: {per_interp:?}"
    );
    let problems = support::parallel(&entries, check_snapshot);
    support::assert_no_problems(&problems);
}
