//! Replays the fuzz regression corpus (`fuzz/regressions/<target>/`): every
//! input that once crashed a target, plus a sample of the fuzzers' corpora,
//! runs through the same entry points as the fuzz targets, without a panic.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};

/// A fuzz target's entry point.
type Target = fn(&[u8]);

#[test]
fn fuzz_regressions_replay_cleanly() {
    let targets: [(&str, Target); 4] = [
        ("core_notes", pymortem::fuzzing::core_notes),
        ("memory_view", pymortem::fuzzing::memory_view),
        ("dwarf_layout", pymortem::fuzzing::dwarf_layout),
        ("python_walkers", pymortem::fuzzing::python_walkers),
    ];
    let mut failures = Vec::new();
    for (name, run) in targets {
        let dir = support::repo().join("fuzz/regressions").join(name);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            entries.len() >= 10,
            "{name}: the regression corpus holds {} inputs",
            entries.len()
        );
        for path in entries {
            let data = std::fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:?}");
}
