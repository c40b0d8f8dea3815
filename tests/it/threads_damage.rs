//! Damaged frame chains end with a diagnostic, never a hang, and the other
//! threads keep their stacks; from 3.11 the frames past the damage are
//! recovered from the data stack.

use crate::support;

use pymortem::python::{ThreadOptions, python_state};
use pymortem::{Options, Process};
use serde_json::Value;

fn entry(interp: &str, scenario: &str) -> Value {
    support::manifest()
        .into_iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == "kernel")
        .unwrap()
}

/// File offset of `addr` in the core, if it is dumped there.
fn file_offset(process: &Process, addr: u64) -> Option<usize> {
    let seg = process
        .core()
        .segments()
        .iter()
        .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.available)?;
    Some((seg.file_offset + (addr - seg.vaddr)) as usize)
}

/// A copy of the core at `path`, in `dir`, with the word at `addr` set to `word`.
fn patched_copy(
    process: &Process,
    path: &str,
    addr: u64,
    word: u64,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let at = file_offset(process, addr).expect("the core holds the word");
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
    support::write_temp(dir, "damaged.core", &bytes)
}

/// A reported thread's frame addresses and whether each was recovered.
fn frames_of(thread: &Value) -> (Vec<u64>, Vec<bool>) {
    let frames = thread["frames"].as_array().unwrap();
    (
        frames
            .iter()
            .map(|f| f["frame"].as_u64().unwrap())
            .collect(),
        frames.iter().map(|f| f["recovered"] == true).collect(),
    )
}

/// The thread state with the most frames.
fn deepest(state: &pymortem::python::PythonState) -> &pymortem::python::PyThread {
    state
        .threads
        .iter()
        .max_by_key(|t| t.stack.frames.len())
        .expect("a thread state")
}

/// Make the second frame of the thread with the most frames point back at the
/// first, then run `threads` on the damaged copy.
fn loop_a_frame_chain(interp: &str) {
    let e = entry(interp, "threads");
    let path = e["core"].as_str().unwrap();
    let process = Process::open(path, &Options::default()).unwrap();
    let state = python_state(&process, &ThreadOptions::default()).unwrap();
    let victim = deepest(&state);
    let (first, second) = (victim.stack.frames[0].frame, victim.stack.frames[1].frame);
    let layout = &state.layout.layout;
    let link = match layout.facts.frames {
        pymortem::layout::facts::FrameModel::FrameObject => {
            layout.offset("PyFrameObject", "f_back")
        }
        pymortem::layout::facts::FrameModel::InterpreterFrame => {
            layout.offset("_PyInterpreterFrame", "previous")
        }
        other => panic!("a frame model this test does not know: {other:?}"),
    }
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let damaged = patched_copy(&process, path, second + link, first, dir.path());
    let started = std::time::Instant::now();
    let (code, stdout, stderr) =
        support::pymortem(&["threads", "--json", "--no-cache", damaged.to_str().unwrap()]);
    // The walk stopped early: the stacks are incomplete (exit 3).
    assert_eq!(code, 3, "{interp}: {stderr}");
    assert!(started.elapsed().as_secs() < 30, "{interp}: no hang");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let threads = report["threads"].as_array().unwrap();
    let damaged_thread = support::thread_of(&report, victim.tstate);
    assert!(
        damaged_thread["frames_error"]
            .as_str()
            .is_some_and(|e| e.contains("loops")),
        "{interp}: {} {}",
        damaged_thread["frames_error"],
        damaged_thread["frames"].as_array().unwrap().len()
    );
    // The frames before the loop are kept; from 3.11 the older ones come
    // back from the data stack, marked recovered, in their order.
    let (addresses, recovered) = frames_of(damaged_thread);
    let original: Vec<u64> = victim.stack.frames.iter().map(|f| f.frame).collect();
    if layout.facts.frames == pymortem::layout::facts::FrameModel::InterpreterFrame {
        assert_eq!(addresses, original, "{interp}: every frame, in order");
        assert!(
            !recovered[0] && !recovered[1] && recovered[2..].iter().all(|&r| r),
            "{interp}: the frames past the loop are the recovered ones: {recovered:?}"
        );
    } else {
        assert_eq!(
            addresses,
            original[..2],
            "{interp}: the frames before the loop are kept"
        );
    }
    assert!(
        report["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["message"].as_str().unwrap().contains("loops"))
    );
    // Every other thread is intact.
    for t in threads
        .iter()
        .filter(|t| t["thread_state"] != victim.tstate && t["thread_state"].is_u64())
    {
        let original = state
            .threads
            .iter()
            .find(|s| Some(s.tstate) == t["thread_state"].as_u64())
            .unwrap();
        assert_eq!(
            t["frames"].as_array().unwrap().len(),
            original.stack.frames.len(),
            "{interp}: other threads keep their stacks"
        );
        assert!(t["frames_error"].is_null());
    }
}

#[test]
fn a_looping_frame_chain_is_reported_and_cut() {
    if support::matrix_missing() {
        return;
    }
    for interp in [
        "pyenv-2.7.18",
        "pyenv-3.10.13",
        "pyenv-3.11.7",
        "pyenv-3.13.0",
    ] {
        loop_a_frame_chain(interp);
    }
}

#[test]
fn a_thousand_frames_deep_recursion_is_shown_in_full() {
    if support::matrix_missing() {
        return;
    }
    let e = entry("pyenv-3.12.1", "recursion");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(e["truth"].as_str().unwrap()).unwrap())
            .unwrap();
    let deepest = truth["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stack"].as_array().unwrap().len())
        .max()
        .unwrap();
    assert!(deepest >= 1000, "the scenario recurses 1000 deep");
    let process = Process::open(e["core"].as_str().unwrap(), &Options::default()).unwrap();
    let state = python_state(&process, &ThreadOptions::default()).unwrap();
    let longest = state
        .threads
        .iter()
        .map(|t| t.stack.frames.len())
        .max()
        .unwrap();
    assert_eq!(longest, deepest);
}

/// 3.15: every frame chain ends on its thread state's base frame. Cut the
/// `previous` link of the second frame of the deepest thread: the walk
/// ends early on a NULL, which before 3.15 looked like the end of the stack;
/// now the thread's stack says it is cut, and the frames past the cut come
/// back from the data stack.
#[test]
fn a_frame_chain_that_misses_its_base_frame_is_cut() {
    if support::matrix_missing() {
        return;
    }
    let e = entry("debian-3.15", "threads");
    let path = e["core"].as_str().unwrap();
    let process = support::open(&e);
    let state = python_state(&process, &ThreadOptions::default()).unwrap();
    let victim = deepest(&state);
    let second = victim.stack.frames[1].frame;
    let link = state
        .layout
        .layout
        .offset("_PyInterpreterFrame", "previous")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let damaged = patched_copy(&process, path, second + link, 0, dir.path());
    let (code, report, stderr) = support::threads_report(&e, &damaged);
    assert_eq!(code, 3, "incomplete: {stderr}");
    let thread = support::thread_of(&report, victim.tstate);
    assert!(
        thread["frames_error"]
            .as_str()
            .is_some_and(|e| e.contains("base frame")),
        "{}",
        thread["frames_error"]
    );
    let (addresses, recovered) = frames_of(thread);
    let original: Vec<u64> = victim.stack.frames.iter().map(|f| f.frame).collect();
    assert_eq!(addresses, original, "every frame, in order");
    assert!(
        !recovered[0] && !recovered[1] && recovered[2..].iter().all(|&r| r),
        "the frames past the cut are the recovered ones: {recovered:?}"
    );
}
