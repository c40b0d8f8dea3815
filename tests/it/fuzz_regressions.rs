//! Replays the fuzz regression corpus (`fuzz/regressions/<target>/`): every
//! input that once crashed a target, plus a sample of the fuzzers' corpora,
//! runs through the same entry points as the fuzz targets, without a panic.

use crate::support;

use std::panic::{AssertUnwindSafe, catch_unwind};

/// A fuzz target's entry point.
type Target = fn(&[u8]);

#[test]
fn fuzz_regressions_replay_cleanly() {
    let targets: [(&str, Target); 5] = [
        ("core_notes", pymortem::fuzzing::core_notes),
        ("memory_view", pymortem::fuzzing::memory_view),
        ("dwarf_layout", pymortem::fuzzing::dwarf_layout),
        ("python_walkers", pymortem::fuzzing::python_walkers),
        ("cfi_step", pymortem::fuzzing::cfi_step),
    ];
    let mut failures = Vec::new();
    for (name, run) in targets {
        let dir = support::repo().join("fuzz/regressions").join(name);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            entries.len() >= 2,
            "{name}: the regression corpus holds {} inputs",
            entries.len()
        );
        for path in entries {
            let data = std::fs::read(&path).unwrap();
            // A hang is a failure too: run each input on a watched thread.
            let (done, wait) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let ok = catch_unwind(AssertUnwindSafe(|| run(&data))).is_ok();
                let _ = done.send(ok);
            });
            match wait.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(true) => {}
                Ok(false) => failures.push(format!("{} panics", path.display())),
                Err(_) => failures.push(format!("{} hangs", path.display())),
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:?}");
}
