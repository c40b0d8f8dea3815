//! `pymortem freelists` against the truth of the use-after-free scenario,
//! which releases a float, a list, a dict, a bound method, a built-in
//! method and a context onto their types' free lists just before it aborts
//! and records their addresses: each is a member of its type's list, and
//! of no other.

use crate::support;

use serde_json::Value;

fn version(e: &Value) -> (u32, u32) {
    let v = e["python_version"].as_str().unwrap();
    let mut p = v.split('.').map(|x| x.parse().unwrap());
    (p.next().unwrap(), p.next().unwrap())
}

/// The list a released object of `kind` goes to, as `free_lists[].list`
/// names it: 3.14+ names the members of `_Py_freelists`; 3.9–3.13 keep
/// no free list of methods.
fn expected_list(v: (u32, u32), kind: &str) -> Option<&'static str> {
    match (kind, v >= (3, 14)) {
        ("float", false) => Some("float"),
        ("float", true) => Some("floats"),
        ("list", false) => Some("list"),
        ("list", true) => Some("lists"),
        ("dict", false) => Some("dict"),
        ("dict", true) => Some("dicts"),
        ("method", false) if v.0 == 2 || v <= (3, 8) => Some("method"),
        ("method", true) => Some("pymethodobjects"),
        ("cfunction", false) if v.0 == 2 || v <= (3, 8) => Some("cfunction"),
        ("cfunction", true) => Some("pycfunctionobject"),
        ("context", false) => Some("context"),
        ("context", true) => Some("contexts"),
        _ => None,
    }
}

fn check(e: &Value) -> Vec<String> {
    let label = support::label(e);
    let truth = support::truth(e);
    let Some(freed) = truth["objects"]["freed_to_free_lists"].as_object() else {
        return vec![format!(
            "{label}: the truth has no freed_to_free_lists: the core predates the scenario's \
             spares (python3 sample-cores/generate.py --scenario use_after_free remakes it)"
        )];
    };
    let mut args = vec!["freelists".to_string(), "--json".to_string()];
    args.extend(support::file_args(e));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, stdout, stderr) = support::pymortem(&args);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{label}: {err}: {stderr}"));
    let mut problems = Vec::new();
    for (kind, address) in freed {
        let Some(expected) = expected_list(version(e), kind) else {
            continue;
        };
        let address = address.as_u64().unwrap();
        let holding: Vec<&str> = report["free_lists"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x.as_u64() == Some(address)))
            })
            .map(|s| s["list"].as_str().unwrap())
            .collect();
        if holding != [expected] {
            problems.push(format!(
                "{label}: the released {kind} {address:#x} is on {holding:?}, expected [{expected:?}]"
            ));
        }
    }
    problems
}

#[test]
fn released_floats_lists_dicts_methods_and_contexts_are_members_of_their_free_lists() {
    if support::matrix_missing() {
        return;
    }
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == "use_after_free")
        .collect();
    assert!(
        !entries.is_empty(),
        "no use_after_free cores in the manifest"
    );
    let problems = support::parallel(&entries, check);
    support::assert_no_problems(&problems);
}
