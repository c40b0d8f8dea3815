//! `pymortem info --json` on every generated sample core reports what the
//! scenario recorded in its truth file before it died.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Every interpreter the factory must cover; a missing one fails.
const INTERPRETERS: [&str; 12] = [
    "pyenv-2.7.18",
    "pyenv-3.6.15",
    "pyenv-3.7.16",
    "pyenv-3.8.18",
    "pyenv-3.9.18",
    "pyenv-3.10.13",
    "pyenv-3.11.7",
    "pyenv-3.12.1",
    "pyenv-3.13.0",
    "debian-3.11",
    "debian-3.13",
    "debian-3.14",
];

fn info_args(entry: &Value) -> Vec<String> {
    let mut args = vec!["info".to_string(), "--json".to_string()];
    if let Some(sysroot) = entry["sysroot"].as_str() {
        args.extend(["--sysroot".to_string(), sysroot.to_string()]);
    }
    for dir in entry["debug_dirs"].as_array().into_iter().flatten() {
        args.extend(["--debug-dir".to_string(), dir.as_str().unwrap().to_string()]);
    }
    args.push(entry["core"].as_str().unwrap().to_string());
    args
}

/// Compare one core's report with its truth; return every disagreement.
fn check(entry: &Value) -> Vec<String> {
    let core = entry["core"].as_str().unwrap();
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(entry["truth"].as_str().unwrap()).unwrap()).unwrap();
    let args = info_args(entry);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    if code != 0 {
        return vec![format!("{core}: exit {code}: {stderr}")];
    }
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &Value, want: &Value| {
        if got != want {
            problems.push(format!("{core}: {what}: pymortem says {got}, truth says {want}"));
        }
    };
    expect("pid", &report["pid"], &truth["pid"]);
    expect("signal", &report["signal"]["number"], &truth["expected_signal"]);
    expect("python version", &report["python"]["version"], &truth["python_version"]);
    expect("schema", &report["schema_version"], &Value::from(1));
    let by_lwp: BTreeMap<i64, &Value> =
        report["threads"].as_array().unwrap().iter().map(|t| (t["lwp"].as_i64().unwrap(), t)).collect();
    let truth_threads = truth["threads"].as_array().unwrap();
    for t in truth_threads {
        let lwp = t["native_id"].as_i64().unwrap();
        match by_lwp.get(&lwp) {
            None => expect("thread LWP present", &Value::Null, &Value::from(lwp)),
            Some(r) => expect(&format!("pthread id of LWP {lwp}"), &r["pthread_id"], &t["ident"]),
        }
    }
    let truth_lwps: BTreeSet<i64> = truth_threads.iter().map(|t| t["native_id"].as_i64().unwrap()).collect();
    let report_lwps: BTreeSet<i64> = by_lwp.keys().copied().collect();
    expect(
        "thread LWPs",
        &Value::from(report_lwps.into_iter().collect::<Vec<_>>()),
        &Value::from(truth_lwps.into_iter().collect::<Vec<_>>()),
    );
    let crash_ident = &truth["crash_thread_ident"];
    if let Some(crash) = truth_threads.iter().find(|t| &t["ident"] == crash_ident) {
        expect("crashed LWP", &report["crashed_lwp"], &crash["native_id"]);
    }
    problems
}

#[test]
fn info_matches_truth_on_every_sample_core() {
    let manifest = support::manifest();
    let covered: BTreeSet<(String, String)> = manifest
        .iter()
        .map(|e| (e["interp"].as_str().unwrap().to_string(), e["kind"].as_str().unwrap().to_string()))
        .collect();
    for interp in INTERPRETERS {
        for kind in ["kernel", "gcore"] {
            assert!(
                covered.contains(&(interp.to_string(), kind.to_string())),
                "no {kind} core for {interp}: the factory must cover every interpreter"
            );
        }
    }
    let chunks: Vec<&[Value]> = manifest.chunks(manifest.len().div_ceil(4).max(1)).collect();
    let problems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks.iter().map(|chunk| s.spawn(|| chunk.iter().flat_map(check).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(problems.is_empty(), "{} disagreements:\n{}", problems.len(), problems.join("\n"));
    eprintln!("checked {} cores", manifest.len());
}
