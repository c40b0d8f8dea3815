//! The merge of several thread states' Python frames into one native stack.

use super::*;
use crate::unwind::{FrameAddress, Trust};

fn native(function: &str, sp: u64) -> NativeFrame {
    NativeFrame {
        address: FrameAddress::ReturnAddress(0x1000),
        sp,
        trust: Trust::Cfi,
        module: None,
        build_id: None,
        module_offset: None,
        function: Some(function.to_string()),
        function_offset: None,
        signal_frame: false,
        source: Vec::new(),
    }
}

fn python(function: &str, entry: bool) -> PyFrame {
    PyFrame {
        function: function.to_string(),
        qualname: None,
        file: "f.py".to_string(),
        line: Some(1),
        end_line: None,
        column: None,
        end_column: None,
        first_line: 1,
        code: 0,
        frame: 0,
        entry,
        recovered: false,
        locals: None,
        unreadable: None,
    }
}

/// The frames' names, innermost first, Python ones in brackets.
fn names(frames: &[StackFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            StackFrame::Python(p) => format!("[{}]", p.function),
            StackFrame::Native(n) => n.function.clone().unwrap_or_default(),
        })
        .collect()
}

/// A thread in interpreter 1, entered from interpreter 0's `run`: two eval
/// loops, one per thread state; `anchors` as the thread states give them.
fn two_interpreters() -> NativeStack {
    NativeStack {
        frames: vec![
            native("os_read", 0x100),
            native("_PyEval_EvalFrameDefault", 0x200),
            native("run_string", 0x300),
            native("_PyEval_EvalFrameDefault", 0x400),
            native("main", 0x500),
        ],
        stop: crate::unwind::StopReason::Outermost,
    }
}

fn rules_313() -> VersionRules {
    VersionRules::for_version(3, 13)
}

#[test]
fn each_thread_state_runs_in_its_own_eval_loop() {
    let inner = [python("sub_level", false), python("<module>", true)];
    let outer = [python("run", false), python("<module>", true)];
    let segments = [
        PythonSegment {
            frames: &inner,
            anchor: Some(0x280),
        },
        PythonSegment {
            frames: &outer,
            anchor: Some(0x480),
        },
    ];
    let (frames, unattached) =
        merge_thread_states(&two_interpreters(), &segments, Some(&rules_313()));
    assert_eq!(
        names(&frames),
        [
            "os_read",
            "[sub_level]",
            "[<module>]",
            "_PyEval_EvalFrameDefault",
            "run_string",
            "[run]",
            "[<module>]",
            "_PyEval_EvalFrameDefault",
            "main"
        ]
    );
    assert_eq!(unattached, 0);
}

#[test]
fn a_cut_chain_does_not_pull_the_outer_thread_states_frames_inward() {
    // The inner thread state runs two eval loops, but its chain was cut
    // after one frame: without the outer one's anchor its frames would move
    // into the inner thread state's second eval loop.
    let native = NativeStack {
        frames: vec![
            native("os_read", 0x100),
            native("_PyEval_EvalFrameDefault", 0x200),
            native("PyObject_Call", 0x280),
            native("_PyEval_EvalFrameDefault", 0x300),
            native("run_string", 0x380),
            native("_PyEval_EvalFrameDefault", 0x400),
            native("main", 0x500),
        ],
        stop: crate::unwind::StopReason::Outermost,
    };
    let inner = [python("sub_level", false)];
    let outer = [python("run", false), python("<module>", true)];
    let segments = [
        PythonSegment {
            frames: &inner,
            anchor: None,
        },
        PythonSegment {
            frames: &outer,
            anchor: Some(0x480),
        },
    ];
    let (frames, unattached) = merge_thread_states(&native, &segments, Some(&rules_313()));
    assert_eq!(
        names(&frames),
        [
            "os_read",
            "[sub_level]",
            "_PyEval_EvalFrameDefault",
            "PyObject_Call",
            "_PyEval_EvalFrameDefault",
            "run_string",
            "[run]",
            "[<module>]",
            "_PyEval_EvalFrameDefault",
            "main"
        ]
    );
    assert_eq!(unattached, 0);
}

#[test]
fn frames_left_when_the_next_thread_state_starts_stay_before_it() {
    // Two inner frames, the first marked as an entry frame by a damaged
    // chain: the second is left when the outer thread state's loop starts.
    let inner = [python("sub_level", true), python("lost", false)];
    let outer = [python("run", true)];
    let segments = [
        PythonSegment {
            frames: &inner,
            anchor: Some(0x200),
        },
        PythonSegment {
            frames: &outer,
            anchor: Some(0x400),
        },
    ];
    let (frames, unattached) =
        merge_thread_states(&two_interpreters(), &segments, Some(&rules_313()));
    assert_eq!(
        names(&frames),
        [
            "os_read",
            "[sub_level]",
            "_PyEval_EvalFrameDefault",
            "run_string",
            "[lost]",
            "[run]",
            "_PyEval_EvalFrameDefault",
            "main"
        ]
    );
    assert_eq!(unattached, 1);
}

#[test]
fn one_thread_state_merges_as_before() {
    let only = [python("f", false), python("<module>", true)];
    let (frames, unattached) = merge(&two_interpreters(), &only, Some(&rules_313()));
    assert_eq!(
        names(&frames),
        [
            "os_read",
            "[f]",
            "[<module>]",
            "_PyEval_EvalFrameDefault",
            "run_string",
            "_PyEval_EvalFrameDefault",
            "main"
        ]
    );
    assert_eq!(unattached, 0);
}
