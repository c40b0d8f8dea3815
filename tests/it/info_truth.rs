//! `pymortem info --json` on every generated sample core reports what the
//! scenario recorded in its truth file before it died.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;

fn info_args(entry: &Value) -> Vec<String> {
    let mut args = vec!["info".to_string(), "--json".to_string()];
    args.extend(support::file_args(entry));
    args
}

/// Compare one core's report with its truth; return every disagreement.
fn check(entry: &Value) -> Vec<String> {
    let core = entry["core"].as_str().unwrap();
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(entry["truth"].as_str().unwrap()).unwrap())
            .unwrap();
    let args = info_args(entry);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    if code != 0 {
        return vec![format!("{core}: exit {code}: {stderr}")];
    }
    let report: Value = serde_json::from_str(&stdout).unwrap();
    support::info_disagreements(core, &report, &truth)
}

#[test]
fn info_matches_truth_on_every_sample_core() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let covered: BTreeSet<(String, String)> = manifest
        .iter()
        .map(|e| {
            (
                e["interp"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Every interpreter the factory must cover; a missing one fails.
    for interp in support::INTERPRETERS {
        for kind in ["kernel", "gcore"] {
            assert!(
                covered.contains(&(interp.to_string(), kind.to_string())),
                "no {kind} core for {interp}: the factory must cover every interpreter"
            );
        }
    }
    let problems = support::parallel(&manifest, check);
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("checked {} cores", manifest.len());
}
