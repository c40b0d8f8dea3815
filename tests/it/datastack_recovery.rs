//! Outer frames come back from the data stack (3.11+) when the core lacks
//! the worker threads' C stacks, on every 3.11+ interpreter of the suite.
//!
//! gdb's gcore loses thread stacks only on some glibc versions (the Debian
//! 3.14 chroot here), so each `threads` kernel core of a 3.11+ interpreter is
//! copied with the stack segment of every thread but the crashing one filled
//! with zeros, as gdb leaves them. The frame chain then breaks at the first
//! entry frame (3.13+: `tstate->current_frame` is on the heap) or cannot start
//! at all (3.11/3.12: `tstate->cframe` is on the C stack); every frame the
//! scenario recorded must still be shown, the recovered ones marked and last.

use crate::support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::Value;

/// `(p_offset, p_vaddr, p_filesz)` of every PT_LOAD segment.
fn load_segments(core: &Path) -> Vec<(u64, u64, u64)> {
    let mut file = File::open(core).unwrap();
    let mut header = [0u8; 64];
    file.read_exact(&mut header).unwrap();
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let phoff = word(&header, 32);
    let phnum = u16::from_le_bytes([header[56], header[57]]) as usize;
    let mut table = vec![0u8; 56 * phnum];
    file.seek(SeekFrom::Start(phoff)).unwrap();
    file.read_exact(&mut table).unwrap();
    table
        .chunks_exact(56)
        .filter(|p| u32::from_le_bytes(p[..4].try_into().unwrap()) == 1)
        .map(|p| (word(p, 8), word(p, 16), word(p, 32)))
        .collect()
}

/// A copy of `core` in `dir` with the segments holding `sps` zeroed.
fn without_stacks(core: &Path, dir: &Path, sps: &[u64]) -> std::path::PathBuf {
    let copy = dir.join("core");
    std::fs::copy(core, &copy).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    for &sp in sps {
        let (offset, _, size) = load_segments(core)
            .into_iter()
            .find(|&(_, vaddr, size)| vaddr <= sp && sp < vaddr + size)
            .unwrap_or_else(|| panic!("no segment holds sp {sp:#x}"));
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&vec![0u8; size as usize]).unwrap();
    }
    copy
}

fn json(args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    // 3 (incomplete): a chain that broke on the zeroed stacks.
    assert!(matches!(code, 0 | 3), "{args:?}: exit {code}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn check(entry: &Value) -> Vec<String> {
    let label = support::label(entry);
    let truth = support::truth(entry);
    let version = minor_version(entry).unwrap();
    let mut info_args = vec!["info".to_string(), "--json".into(), "--no-cache".into()];
    info_args.extend(support::file_args(entry));
    let info = json(&info_args);
    let sps: Vec<u64> = info["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["crashed"] != true)
        .map(|t| t["sp"].as_u64().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let core = without_stacks(Path::new(entry["core"].as_str().unwrap()), dir.path(), &sps);
    let mut args = vec!["threads".to_string(), "--json".into(), "--no-cache".into()];
    args.extend(support::search_args(entry));
    args.push(core.to_str().unwrap().into());
    let report = json(&args);
    let mut problems = Vec::new();
    let warnings: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "warning")
        .filter_map(|d| d["message"].as_str())
        .filter(|m| m.contains("recovered from the thread's data stack"))
        .collect();
    // The frames tile the chunks exactly (each co_framesize words): a
    // search past words that are no frame means a size was misread.
    if let Some(w) = warnings.iter().find(|w| w.contains("no frame")) {
        problems.push(format!("{label}: {w}"));
    }
    let mut broken = 0;
    for t in truth["threads"].as_array().unwrap() {
        let lwp = t["native_id"].as_i64().unwrap();
        let Some(got) = report["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["lwp"].as_i64() == Some(lwp))
        else {
            problems.push(format!("{label}: no thread {lwp}"));
            continue;
        };
        let frames = got["frames"].as_array().unwrap();
        let have: Vec<(&str, &str, Option<i64>)> = frames
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap(),
                    f["file"].as_str().unwrap(),
                    f["line"].as_i64(),
                )
            })
            .collect();
        let want: Vec<(&str, &str, Option<i64>)> = t["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap(),
                    f["file"].as_str().unwrap(),
                    f["line"].as_i64(),
                )
            })
            .collect();
        if have != want {
            problems.push(format!(
                "{label}: thread {lwp}: {have:?}\n  vs truth {want:?}"
            ));
        }
        let recovered: Vec<bool> = frames.iter().map(|f| f["recovered"] == true).collect();
        let crashed = t["ident"] == truth["crash_thread_ident"];
        // Which frames the chain cannot reach once the C stacks are gone is
        // CPython's doing: 3.11/3.12 find the first frame through the C
        // stack, so none; 3.13 crosses the C stack only below the outermost
        // frame, so it reaches all; 3.14 runs a thread's `run` through
        // `Context.run` (C), so `_bootstrap_inner` and `_bootstrap` lie beyond.
        let want_recovered: Vec<bool> = want
            .iter()
            .map(|(function, _, _)| {
                !crashed
                    && match version {
                        (3, 11) | (3, 12) => true,
                        (3, 13) => false,
                        _ => matches!(*function, "_bootstrap_inner" | "_bootstrap"),
                    }
            })
            .collect();
        if recovered != want_recovered {
            problems.push(format!(
                "{label}: thread {lwp}: recovered {recovered:?}, expected {want_recovered:?}"
            ));
        }
        if recovered.contains(&true) {
            broken += 1;
        }
    }
    if warnings.len() != broken {
        problems.push(format!(
            "{label}: {broken} threads with recovered frames but {} warnings",
            warnings.len()
        ));
    }
    problems
}

/// `(major, minor)` of a manifest entry's interpreter.
fn minor_version(entry: &Value) -> Option<(u32, u32)> {
    let mut parts = entry["python_version"]
        .as_str()?
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[test]
fn outer_frames_come_back_from_the_data_stack_on_every_311_plus_interpreter() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let jobs: Vec<&Value> = manifest
        .iter()
        .filter(|e| {
            e["scenario"] == "threads"
                && e["kind"] == "kernel"
                && minor_version(e).is_some_and(|v| v >= (3, 11))
        })
        .collect();
    // 3.11.7, 3.12.1, 3.13.0 (pyenv) and Debian's 3.11, 3.13, 3.14.
    assert!(jobs.len() >= 6, "only {} 3.11+ threads cores", jobs.len());
    let problems = support::parallel(&jobs, |e| check(e));
    support::assert_no_problems(&problems);
}
