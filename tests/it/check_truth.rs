//! `pymortem check` against the scenarios' truth files: the victims of the
//! double-free, use-after-free and already-tracked scenarios are flagged with
//! the right kinds and the list still holding them is named as a referrer;
//! healthy scenarios have no error or warning findings.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;

const CORRUPT: [&str; 3] = ["double_free", "use_after_free", "gc_already_tracked"];
const HEALTHY: [&str; 6] = [
    "threads",
    "recursion",
    "generator",
    "segfault",
    "segfault_faulthandler",
    "busy_heap",
];

fn run(entry: &Value, command: &str, extra: &[String]) -> (i32, Value) {
    let mut args = vec![command.to_string(), "--json".to_string()];
    if let Some(root) = entry["sysroot"].as_str() {
        args.extend(["--sysroot".into(), root.into()]);
    }
    for d in entry["debug_dirs"].as_array().into_iter().flatten() {
        args.extend(["--debug-dir".into(), d.as_str().unwrap().into()]);
    }
    args.push(entry["core"].as_str().unwrap().into());
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"));
    (code, report)
}

fn version(e: &Value) -> (u32, u32) {
    let v = e["python_version"].as_str().unwrap();
    let mut p = v.split('.').map(|x| x.parse().unwrap());
    (p.next().unwrap(), p.next().unwrap())
}

/// Every disagreement between a corrupt scenario's report and its truth.
fn check_corrupt(e: &Value) -> Vec<String> {
    let t = support::truth(e);
    let victim = t["objects"]["victim_tuple"].as_u64().unwrap();
    let holder = t["objects"]["holder_list"].as_u64().unwrap();
    let (code, r) = run(e, "check", &[]);
    let mut problems = Vec::new();
    let l = support::label(e);
    if code != 1 {
        problems.push(format!("{l}: exit {code}, expected 1 (findings)"));
    }
    let about: Vec<&Value> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["address"] == victim)
        .collect();
    let kinds: BTreeSet<&str> = about.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    let required: &[&str] = match e["scenario"].as_str().unwrap() {
        "double_free" => &["free_list_cycle", "free_list_member_referenced"],
        "use_after_free" => &["free_list_member_referenced"],
        // Handed out twice: more owners than the refcount counts; from 3.8
        // to 3.13 the second GC track also breaks the GC list.
        _ if version(e) >= (3, 8) && version(e) <= (3, 13) => {
            &["refcount_below_references", "gc_list_broken_link"]
        }
        _ => &["refcount_below_references"],
    };
    for k in required {
        if !kinds.contains(k) {
            problems.push(format!(
                "{l}: victim {victim:#x} lacks a {k} finding (has {kinds:?})"
            ));
        }
    }
    if about.iter().any(|f| f["severity"] != "error") {
        problems.push(format!("{l}: victim findings should be errors"));
    }
    let named = about.iter().any(|f| {
        f["referrers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["container"] == holder)
    });
    if !named {
        problems.push(format!(
            "{l}: the holder list {holder:#x} is not named as a referrer of {victim:#x}"
        ));
    }
    if e["scenario"] == "double_free" {
        let cycle = about.iter().find(|f| f["kind"] == "free_list_cycle");
        if cycle.is_some_and(|c| c["evidence"]["repeated_address"] != victim) {
            problems.push(format!(
                "{l}: the cycle finding does not name the repeated address"
            ));
        }
    }
    let verdict = &r["verdict"];
    if verdict["status"] != "corrupt"
        || !verdict["victims"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| *v == victim)
    {
        problems.push(format!("{l}: verdict {verdict} does not name the victim"));
    }
    let summary = verdict["summary"].as_str().unwrap_or("");
    if !summary.contains(&format!("{victim:#x}")) {
        problems.push(format!(
            "{l}: the verdict does not mention the victim: {summary}"
        ));
    }
    problems
}

fn check_healthy(e: &Value) -> Vec<String> {
    let (code, r) = run(e, "check", &[]);
    let mut problems = Vec::new();
    let loud: Vec<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "note")
        .map(|f| format!("{} {}", f["kind"], f["message"]))
        .collect();
    if code != 0 || !loud.is_empty() {
        problems.push(format!(
            "{}: exit {code}, findings {loud:?}",
            support::label(e)
        ));
    }
    if r["verdict"]["status"] != "clean" {
        problems.push(format!("{}: verdict {}", support::label(e), r["verdict"]));
    }
    if r["gc_objects"].as_u64().unwrap_or(0) < 1000 {
        problems.push(format!(
            "{}: only {} tracked objects walked",
            support::label(e),
            r["gc_objects"]
        ));
    }
    problems
}

#[test]
fn corrupt_scenarios_flag_their_victims() {
    if support::matrix_missing() {
        return;
    }
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| CORRUPT.contains(&e["scenario"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries.len(),
        3 * support::CORES_PER_SCENARIO,
        "every corrupt scenario of every interpreter, kernel and gcore (x86-64), qemu (arm64)"
    );
    let problems = support::parallel(&entries, check_corrupt);
    support::assert_no_problems(&problems);
}

#[test]
fn healthy_scenarios_have_no_error_or_warning() {
    if support::matrix_missing() {
        return;
    }
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| HEALTHY.contains(&e["scenario"].as_str().unwrap()))
        .collect();
    // And the threads core whose return addresses carry PAC bits.
    assert_eq!(
        entries.len(),
        HEALTHY.len() * support::CORES_PER_SCENARIO + 1
    );
    let problems = support::parallel(&entries, check_healthy);
    support::assert_no_problems(&problems);
}

#[test]
fn object_shows_the_victim_with_its_free_list_and_holder() {
    if support::matrix_missing() {
        return;
    }
    for interp in ["pyenv-2.7.18", "pyenv-3.12.1", "debian-3.14"] {
        let e = support::manifest()
            .into_iter()
            .find(|e| {
                e["interp"] == interp && e["scenario"] == "use_after_free" && e["kind"] == "kernel"
            })
            .unwrap();
        let t = support::truth(&e);
        let victim = t["objects"]["victim_tuple"].as_u64().unwrap();
        let (code, o) = run(&e, "object", &[format!("{victim:#x}")]);
        assert_eq!(code, 0, "{interp}");
        assert_eq!(o["type_name"], "tuple", "{interp}");
        assert!(
            o["free_list"].as_str().unwrap_or("").contains("free list"),
            "{interp}: {o}"
        );
        assert_eq!(o["gc_state"], "untracked", "{interp}");
        assert!(
            o["referrers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["container"] == t["objects"]["holder_list"]),
            "{interp}: {o}"
        );
        // The items the scenario put in it, as Python would print them.
        let first = t["objects"]["victim_item_values"][1].as_str().unwrap();
        assert!(
            o["repr"].as_str().unwrap().contains(first),
            "{interp}: {}",
            o["repr"]
        );
    }
}
