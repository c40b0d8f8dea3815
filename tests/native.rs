//! Native unwinding with CFI: every thread of the threads scenario unwinds to
//! `_start`, `clone` or `clone3`; the already-tracked abort shows its path
//! through `Py_FatalError` from `PyTuple_New`.

mod support;

use pymortem::unwind::{StopReason, unwind_thread};
use pymortem::{Options, Process};
use serde_json::Value;

fn open(e: &Value) -> Process {
    let mut options = Options::default();
    if let Some(root) = e["sysroot"].as_str() {
        options = options.sysroot(root);
    }
    for d in e["debug_dirs"].as_array().into_iter().flatten() {
        options = options.debug_dir(d.as_str().unwrap());
    }
    Process::open(e["core"].as_str().unwrap(), &options).unwrap()
}

#[test]
fn every_thread_unwinds_to_its_start() {
    let mut problems = Vec::new();
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
    {
        let process = open(e);
        for t in process.threads() {
            let stack = unwind_thread(&process, t.lwp).unwrap();
            // Where the library is stripped (Debian's chroots carry no libc
            // symbols) the outermost frame has no name, but the CFI still
            // marks it outermost.
            let last = stack.frames.last().and_then(|f| f.function.clone());
            let named_right = last
                .as_deref()
                .is_none_or(|n| ["_start", "clone", "clone3"].contains(&n));
            let last = last.unwrap_or_else(|| "an unnamed frame".into());
            if stack.stop != StopReason::Outermost || !named_right || stack.frames.len() < 4 {
                problems.push(format!(
                    "{} thread {}: ends in {last} ({:?}) after {} frames",
                    e["interp"],
                    t.lwp,
                    stack.stop,
                    stack.frames.len()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_fatal_error_path_is_on_the_crashing_stack() {
    let mut checked = 0;
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "gc_already_tracked")
    {
        let truth: Value =
            serde_json::from_str(&std::fs::read_to_string(e["truth"].as_str().unwrap()).unwrap())
                .unwrap();
        if truth["expected_fatal_error"].is_null() {
            continue;
        }
        let process = open(e);
        let crashed = process.crashed_thread().unwrap().lwp;
        let stack = unwind_thread(&process, crashed).unwrap();
        let names: Vec<&str> = stack
            .frames
            .iter()
            .map(|f| f.function.as_deref().unwrap_or("??"))
            .collect();
        let fatal = names
            .iter()
            .position(|n| *n == "Py_FatalError" || n.starts_with("fatal_error"));
        let tuple_new = names.iter().position(|n| *n == "PyTuple_New");
        assert!(
            matches!((fatal, tuple_new), (Some(f), Some(t)) if f < t),
            "{} {}: {names:?}",
            e["interp"],
            e["kind"]
        );
        assert!(
            names.iter().take(4).any(|n| n.contains("abort")),
            "{}: abort below the fatal error: {names:?}",
            e["interp"]
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "2.7, 3.6 and 3.7, kernel and gcore");
}
