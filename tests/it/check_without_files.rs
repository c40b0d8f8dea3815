//! `check` with none of the interpreter's files (an empty sysroot), as the
//! README's "How files are found" says: from 3.10 the tuple free lists and
//! the GC lists are reached through the interpreter state, so the double
//! free is found from the core alone; on 2.7–3.9 the free lists are statics
//! found by symbol, so they stay unchecked: on 3.7–3.9 the GC lists still
//! lead to the holder, whose freed item is found directly; on 2.7 and 3.6
//! the verdict is incomplete, never clean.

use serde_json::Value;

use crate::support;

/// Major and minor version of a truth's `python_version` ("3.10.13").
fn minor_version(truth: &Value) -> (u64, u64) {
    let text = truth["python_version"].as_str().unwrap();
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn double_free_is_found_from_the_core_alone_from_3_10() {
    if support::matrix_missing() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == "double_free")
        // QEMU's cores name no module without the files (no NT_FILE, no ELF
        // header); arm64_kernel_shape runs this on their kernel-shape copies.
        .filter(|e| !support::written_by_qemu(e))
        .collect();
    assert_eq!(entries.len(), support::INTERPRETERS.len() * 2);
    let problems = support::parallel(&entries, |entry| {
        let core = entry["core"].as_str().unwrap();
        let truth = support::truth(entry);
        let (code, stdout, stderr) = support::pymortem(&[
            "check",
            "--json",
            "--sysroot",
            empty,
            "--no-default-debug-dir",
            core,
        ]);
        let report: Value = match serde_json::from_str(&stdout) {
            Ok(report) => report,
            Err(e) => return vec![format!("{core}: exit {code}, {e}: {stderr}")],
        };
        let verdict = &report["verdict"];
        let victim = &truth["objects"]["victim_tuple"];
        let unchecked: Vec<&str> = verdict["unchecked"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["check"].as_str())
            .collect();
        let mut problems = Vec::new();
        if minor_version(&truth) >= (3, 10) {
            let named = verdict["victims"]
                .as_array()
                .is_some_and(|v| v.contains(victim));
            // To 3.11 pymalloc's arena table is a static of the
            // interpreter: not in the core alone.
            let expected: &[&str] = if minor_version(&truth) <= (3, 11) {
                &["pymalloc"]
            } else {
                &[]
            };
            if code != 1 || !named || unchecked != expected {
                problems.push(format!(
                    "{core}: exit {code}, victims {}, unchecked {unchecked:?}; the truth's victim is {victim}",
                    verdict["victims"]
                ));
            }
        } else if !unchecked.contains(&"free_lists") {
            problems.push(format!(
                "{core}: unchecked {unchecked:?}: the free lists are statics of the interpreter, not in the core alone"
            ));
        } else if unchecked.contains(&"gc_lists") {
            // 2.7 and 3.6: the GC lists are statics too, so no container
            // was read: nothing can be found, the verdict says why.
            if code != 3 || verdict["status"] != "incomplete" {
                problems.push(format!(
                    "{core}: exit {code}, status {}, unchecked {unchecked:?}: want incomplete",
                    verdict["status"]
                ));
            }
        } else {
            // 3.7-3.9: the GC lists hang off _PyRuntime, so the holder list
            // is read and the freed victim it still holds is found directly.
            let named = verdict["victims"]
                .as_array()
                .is_some_and(|v| v.contains(victim));
            if code != 1 || !named {
                problems.push(format!(
                    "{core}: exit {code}, victims {}, unchecked {unchecked:?}: want the victim {victim} found \
                     through its holder although the free lists were not checked",
                    verdict["victims"]
                ));
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
}
