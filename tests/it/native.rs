//! Native stacks: every thread of the threads scenario unwinds to `_start`,
//! `clone` or `clone3` and every Python frame finds its eval-loop frame; the
//! segfault stacks reach the faulting C function (through faulthandler's
//! signal frame) and the Python function that called it; the already-tracked
//! abort shows `Py_FatalError` from `PyTuple_New` with the message the
//! scenario expected.

use crate::support;

use pymortem::Process;
use pymortem::layout::LayoutOptions;
use pymortem::modules::ModuleKind;
use pymortem::python::{PythonState, ThreadOptions, python_state};
use pymortem::stacks::{MergedStack, StackFrame, is_eval_frame, merged_stack};
use pymortem::unwind::cfi::ModuleCfi;
use pymortem::unwind::{
    FrameAddress, Methods, StopReason, Trust, unwind_thread, unwind_thread_with,
};
use serde_json::Value;

use crate::support::open;

#[test]
fn every_thread_unwinds_to_its_start() {
    if support::matrix_missing() {
        return;
    }
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
    support::assert_no_problems(&problems);
}

/// The Python threads, with the layout read afresh (no cache from another build).
fn state_of(process: &Process) -> PythonState {
    let options = ThreadOptions {
        locals: false,
        layout: LayoutOptions {
            no_cache: true,
            cache_dir: None,
            newest_known: None,
        },
    };
    python_state(process, &options).unwrap()
}

/// The crashing thread's merged stack, built with the library's public API.
fn crashed_merged_stack(process: &Process) -> MergedStack {
    let state = state_of(process);
    let lwp = process.crashed_thread().unwrap().lwp;
    let thread = state.threads.iter().find(|t| t.lwp == Some(lwp));
    merged_stack(process, lwp, thread, None)
}

fn describe(stack: &MergedStack) -> String {
    stack
        .frames
        .iter()
        .map(|f| match f {
            StackFrame::Python(p) => format!("py:{}", p.function),
            StackFrame::Native(n) => format!(
                "{}{}",
                n.function.as_deref().unwrap_or("??"),
                if n.signal_frame { "[signal]" } else { "" }
            ),
            other => panic!("a frame kind this test does not know: {other:?}"),
        })
        .collect::<Vec<_>>()
        .join(" < ")
}

#[test]
fn segfault_stacks_reach_the_faulting_function_and_its_python_caller() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entries: Vec<&Value> = manifest
        .iter()
        .filter(|e| e["scenario"] == "segfault" || e["scenario"] == "segfault_faulthandler")
        .collect();
    let problems = support::parallel(&entries, |e| {
        let truth = support::truth(e);
        let process = open(e);
        let stack = crashed_merged_stack(&process);
        let what = format!(
            "{} {} {}: {}",
            e["interp"],
            e["scenario"],
            e["kind"],
            describe(&stack)
        );
        let crash_function = truth["objects"]["crash_function"].as_str().unwrap();
        let Some(python) = stack
            .frames
            .iter()
            .position(|f| matches!(f, StackFrame::Python(p) if p.function == crash_function))
        else {
            return vec![format!("{what}: no Python frame {crash_function}")];
        };
        // The kernel writes a faulthandler core from inside the handler, which
        // re-raised the signal; gdb's gcore stops at the fault itself.
        let in_handler = truth["objects"]["faulthandler"] == true
            && (e["kind"] == "kernel" || support::written_by_qemu(e));
        let faulting = if in_handler {
            match stack
                .frames
                .iter()
                .position(|f| matches!(f, StackFrame::Native(n) if n.signal_frame))
            {
                Some(signal) => signal + 1,
                None => return vec![format!("{what}: no signal frame")],
            }
        } else {
            0
        };
        let mut problems = Vec::new();
        match stack.frames.get(faulting) {
            Some(StackFrame::Native(n))
                if matches!(n.address, FrameAddress::InstructionPointer(_))
                    && n.function.is_some() => {}
            _ => problems.push(format!(
                "{what}: frame {faulting} is not a named interrupted native frame"
            )),
        }
        // Only native frames between the faulting function and the Python caller,
        // and the eval loop that ran the caller further out.
        if faulting >= python
            || stack.frames[faulting..python]
                .iter()
                .any(|f| matches!(f, StackFrame::Python(_)))
        {
            problems.push(format!(
                "{what}: the Python caller is not right above the native frames"
            ));
        }
        let eval_after = stack.frames[python..].iter().any(|f| {
            matches!(f, StackFrame::Native(n) if n.function.as_deref().is_some_and(is_eval_frame))
        });
        if !eval_after || stack.unattached_python_frames != 0 {
            problems.push(format!(
                "{what}: Python frames not attached to eval frames ({} unattached)",
                stack.unattached_python_frames
            ));
        }
        problems
    });
    support::assert_no_problems(&problems);
    assert_eq!(
        entries.len(),
        2 * support::CORES_PER_SCENARIO,
        "2 scenarios x every interpreter x its kinds"
    );
}

#[test]
fn the_fatal_error_path_and_message_are_on_the_crashing_stack() {
    if support::matrix_missing() {
        return;
    }
    let mut checked = 0;
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "gc_already_tracked")
    {
        let truth = support::truth(e);
        let Some(expected) = truth["expected_fatal_error"].as_str() else {
            continue;
        };
        let process = open(e);
        let stack = crashed_merged_stack(&process);
        // abort below Py_FatalError (or 3.6/3.7's fatal_error) below PyTuple_New.
        let names: Vec<&str> = stack
            .frames
            .iter()
            .filter_map(|f| match f {
                StackFrame::Native(n) => Some(n.function.as_deref().unwrap_or("??")),
                StackFrame::Python(_) => None,
                other => panic!("a frame kind this test does not know: {other:?}"),
            })
            .collect();
        let fatal_at = names
            .iter()
            .position(|n| *n == "Py_FatalError" || n.starts_with("fatal_error"));
        let tuple_new = names.iter().position(|n| *n == "PyTuple_New");
        assert!(
            matches!((fatal_at, tuple_new), (Some(f), Some(t)) if f < t)
                && names.iter().take(4).any(|n| n.contains("abort")),
            "{} {}: {names:?}",
            e["interp"],
            e["kind"]
        );
        let fatal = stack.fatal_error.as_ref().unwrap_or_else(|| {
            panic!(
                "{} {}: no fatal error in {}",
                e["interp"],
                e["kind"],
                describe(&stack)
            )
        });
        assert_eq!(
            fatal.message.as_deref(),
            Some(expected),
            "{} {}: {fatal:?}",
            e["interp"],
            e["kind"]
        );
        assert!(
            fatal.path.starts_with("PyTuple_New → Py_FatalError"),
            "{fatal:?}"
        );
        // The verdict of `check` carries it too.
        let (code, out, err) = support::pymortem(&["check", "--json", e["core"].as_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            report["verdict"]["fatal_error"], expected,
            "{} {}",
            e["interp"], e["kind"]
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "2.7, 3.6 and 3.7, kernel and gcore");
}

#[test]
fn every_python_frame_of_the_threads_scenario_has_its_eval_frame() {
    if support::matrix_missing() {
        return;
    }
    let mut problems = Vec::new();
    let mut threads_checked = 0;
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
    {
        let process = open(e);
        let state = state_of(&process);
        for t in state.threads.iter().filter(|t| !t.stack.frames.is_empty()) {
            let Some(lwp) = t.lwp else { continue };
            let stack = merged_stack(&process, lwp, Some(t), None);
            let python_in_order: Vec<&str> = stack
                .frames
                .iter()
                .filter_map(|f| match f {
                    StackFrame::Python(p) => Some(p.function.as_str()),
                    StackFrame::Native(_) => None,
                    other => panic!("a frame kind this test does not know: {other:?}"),
                })
                .collect();
            let walked: Vec<&str> = t.stack.frames.iter().map(|f| f.function.as_str()).collect();
            if stack.unattached_python_frames != 0 || python_in_order != walked {
                problems.push(format!("{} LWP {lwp}: {}", e["interp"], describe(&stack)));
            }
            threads_checked += 1;
        }
    }
    support::assert_no_problems(&problems);
    assert!(
        threads_checked >= support::INTERPRETERS.len() * 4,
        "{threads_checked} threads"
    );
}

#[test]
fn stack_scanning_alone_finds_every_caller_cfi_finds() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entries: Vec<&Value> = manifest
        .iter()
        .filter(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
        .collect();
    let only = |cfi, scan| Methods {
        cfi,
        frame_pointer: false,
        scan,
    };
    let problems = support::parallel(&entries, |e| {
        let process = open(e);
        let mut problems = Vec::new();
        for t in process.threads() {
            let by_cfi = unwind_thread_with(&process, t.lwp, only(true, false)).unwrap();
            let by_scan = unwind_thread_with(&process, t.lwp, only(false, true)).unwrap();
            if by_scan
                .frames
                .iter()
                .skip(1)
                .any(|f| f.trust != Trust::Scan)
            {
                problems.push(format!(
                    "{} LWP {}: a scanned frame not marked scan",
                    e["interp"], t.lwp
                ));
            }
            // Scanning may add stale return addresses, but must not miss or
            // reorder a real one.
            let mut scanned = by_scan.frames.iter().map(|f| f.address.address());
            let missing: Vec<String> = by_cfi
                .frames
                .iter()
                .filter(|f| !scanned.any(|a| a == f.address.address()))
                .map(|f| f.function.clone().unwrap_or_else(|| "??".into()))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{} LWP {}: scanning missed {missing:?}",
                    e["interp"], t.lwp
                ));
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
    assert_eq!(entries.len(), support::INTERPRETERS.len());
}

#[test]
fn the_vdso_read_from_the_core_has_cfi_for_its_functions() {
    if support::matrix_missing() {
        return;
    }
    let mut checked = 0;
    for e in support::manifest()
        .iter()
        .filter(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
    {
        let process = open(e);
        let vdso = process
            .modules()
            .modules()
            .iter()
            .find(|m| m.kind == ModuleKind::Vdso)
            .unwrap_or_else(|| panic!("{}: no vDSO module", e["interp"]));
        let cfi = ModuleCfi::new(vdso).unwrap_or_else(|| panic!("{}: no vDSO CFI", e["interp"]));
        let thread = &process.threads()[0];
        let regs = thread.registers.unwind_registers();
        let mut functions = 0;
        for name in [
            "__vdso_clock_gettime",
            "__vdso_gettimeofday",
            "__vdso_time",
            "__vdso_getcpu",
        ] {
            let Some(address) = vdso.symbol_address(name, None) else {
                continue;
            };
            // At a function's first instruction the return address is at [rsp].
            let step = cfi.step(process.memory(), address, &regs);
            assert!(step.is_ok(), "{} {name}: no CFI step", e["interp"]);
            functions += 1;
        }
        assert!(
            functions >= 3,
            "{}: {functions} vDSO functions",
            e["interp"]
        );
        checked += 1;
    }
    assert_eq!(checked, support::INTERPRETERS.len());
}
