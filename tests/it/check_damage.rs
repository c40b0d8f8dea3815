//! Damaged GC and free lists end every walk with a finding: no hang, and the
//! other checks still report.

use crate::support;

use pymortem::forensics;
use pymortem::python::{ThreadOptions, python_state};
use pymortem::{Options, Process};
use serde_json::Value;

fn entry(interp: &str, scenario: &str) -> Value {
    support::manifest()
        .into_iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == "kernel")
        .unwrap()
}

fn file_offset(process: &Process, addr: u64) -> usize {
    let seg = process
        .core()
        .segments()
        .iter()
        .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.available)
        .expect("dumped");
    (seg.file_offset + (addr - seg.vaddr)) as usize
}

/// Patch 8-byte words of a core copy, then run `check --json` on it.
fn check_patched(path: &str, patches: &[(usize, u64)]) -> (i32, Value) {
    let mut bytes = std::fs::read(path).unwrap();
    for &(at, value) in patches {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let damaged = support::write_temp(dir.path(), "damaged.core", &bytes);
    let started = std::time::Instant::now();
    let (code, stdout, stderr) =
        support::pymortem(&["check", "--json", "--no-cache", damaged.to_str().unwrap()]);
    assert!(started.elapsed().as_secs() < 60, "no hang");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (code, serde_json::from_str(&stdout).unwrap())
}

#[test]
fn a_gc_list_looping_back_is_cut_and_reported() {
    if support::matrix_missing() {
        return;
    }
    for interp in ["pyenv-2.7.18", "pyenv-3.9.18", "pyenv-3.12.1"] {
        let e = entry(interp, "threads");
        let path = e["core"].as_str().unwrap();
        let process = Process::open(path, &Options::default()).unwrap();
        let state = python_state(&process, &ThreadOptions::default()).unwrap();
        let result = forensics::check(&process, &state);
        let generation = result.generations.iter().max_by_key(|g| g.walked).unwrap();
        assert!(generation.walked > 100);
        let layout = &state.layout.layout;
        let gc_head = layout.size("PyGC_Head").unwrap();
        // Make the 50th object's next link point back at the 10th.
        let objects: Vec<u64> = {
            let mut all = Vec::new();
            let mut node = generation.head;
            let next = layout.offset("PyGC_Head", "gc_next").unwrap();
            for _ in 0..60 {
                use pymortem::memory::MemoryExt;
                node = process.memory().read_ptr(node + next).unwrap() & !3;
                all.push(node);
            }
            all
        };
        let next_at = file_offset(
            &process,
            objects[50] + layout.offset("PyGC_Head", "gc_next").unwrap(),
        );
        let (code, report) = check_patched(path, &[(next_at, objects[10])]);
        assert_eq!(code, 1, "{interp}");
        let kinds: Vec<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"gc_list_cycle") || kinds.contains(&"gc_list_broken_link"),
            "{interp}: {kinds:?}"
        );
        let looped = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "gc_list_cycle");
        if let Some(f) = looped {
            assert_eq!(
                f["address"].as_u64().unwrap(),
                objects[10] + gc_head,
                "{interp}: names the object reached twice"
            );
        }
        // The free lists were still walked.
        assert!(
            !report["free_lists"].as_array().unwrap().is_empty(),
            "{interp}: a broken GC list does not hide the free lists"
        );
    }
}

#[test]
fn a_free_list_pointing_at_itself_is_a_cycle() {
    if support::matrix_missing() {
        return;
    }
    let e = entry("pyenv-3.11.7", "threads");
    let path = e["core"].as_str().unwrap();
    let process = Process::open(path, &Options::default()).unwrap();
    let state = python_state(&process, &ThreadOptions::default()).unwrap();
    let result = forensics::check(&process, &state);
    let slot = result
        .free_lists
        .iter()
        .find(|s| s.size.is_some() && s.walked >= 3)
        .expect("a slot with members");
    let layout = &state.layout.layout;
    let second = slot.members[1];
    let link_at = file_offset(
        &process,
        second + layout.offset("PyTupleObject", "ob_item").unwrap(),
    );
    let (code, report) = check_patched(path, &[(link_at, slot.members[0])]);
    assert_eq!(code, 1);
    let cycle = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "free_list_cycle")
        .expect("a cycle finding");
    assert_eq!(cycle["address"].as_u64().unwrap(), slot.members[0]);
    assert_eq!(
        cycle["evidence"]["repeated_address"].as_u64().unwrap(),
        slot.members[0]
    );
    // The GC lists were still walked.
    assert!(report["gc_objects"].as_u64().unwrap() > 1000);
}
