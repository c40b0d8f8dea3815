//! `pymortem threads --json` on every sample core: each thread's Python stack
//! (function, file, line) equals the stack its scenario recorded, and from
//! 3.11 each frame's position (lines and columns) equals `co_positions()`.

use crate::support;

use std::collections::BTreeMap;

use serde_json::Value;

/// The report and the exit code (0, or 3 when a frame walk stopped early).
fn run(entry: &Value, with_debug: bool) -> Result<(i32, Value), String> {
    let mut args = vec![
        "threads".to_string(),
        "--json".to_string(),
        "--locals".to_string(),
        "--no-cache".to_string(),
        "--no-default-debug-dir".to_string(),
    ];
    if let Some(root) = entry["sysroot"].as_str() {
        args.extend(["--sysroot".into(), root.into()]);
    }
    if with_debug {
        for d in entry["debug_dirs"].as_array().into_iter().flatten() {
            args.extend(["--debug-dir".into(), d.as_str().unwrap().into()]);
        }
    }
    args.push(entry["core"].as_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    if code != 0 && code != 3 {
        return Err(format!("exit {code}: {stderr}"));
    }
    serde_json::from_str(&stdout)
        .map(|report| (code, report))
        .map_err(|e| e.to_string())
}

fn check(entry: &Value, with_debug: bool) -> Vec<String> {
    let label = format!(
        "{}{}",
        support::label(entry),
        if with_debug { "" } else { " (no debug files)" }
    );
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(entry["truth"].as_str().unwrap()).unwrap())
            .unwrap();
    let (code, report) = match run(entry, with_debug) {
        Ok(r) => r,
        Err(e) => return vec![format!("{label}: {e}")],
    };
    // gdb's gcore stops copying a mapping at the first page it cannot read
    // (glibc 2.41+ thread-stack guard regions) and leaves the rest zero: the
    // frame chain of 3.11+ then breaks at the entry frames on the C stack, and
    // pymortem must recover the outer frames from the data stack. Only such
    // cores may show recovered frames (the vsyscall page is never readable).
    let lost_stacks = support::gdb_lost_memory(entry);
    let recovery_warned = report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| {
            d["severity"] == "warning"
                && d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("recovered from the thread's data stack"))
        });
    // A chain that broke leaves the stacks incomplete (3) even when every
    // frame came back: frames that lived off the data stack could be lost.
    // Only cores that lost stack memory may say so.
    if code == 3 && !lost_stacks {
        return vec![format!(
            "{label}: exit 3 (incomplete) on a core that lost no stack"
        )];
    }
    let by_lwp = support::threads_by_lwp(&report);
    let mut problems = Vec::new();
    let mut positions_compared = 0;
    for t in truth["threads"].as_array().unwrap() {
        let lwp = t["native_id"].as_i64().unwrap();
        let Some(got) = by_lwp.get(&lwp) else {
            problems.push(format!("{label}: no thread {lwp}"));
            continue;
        };
        let want: Vec<(String, String, Option<i64>)> = t["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap().to_string(),
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_i64(),
                )
            })
            .collect();
        let have = support::frames(&got["frames"]);
        let recovered: Vec<bool> = got["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["recovered"] == true)
            .collect();
        if let Some(first) = recovered.iter().position(|&r| r) {
            // Recovered frames are the outer ones the chain did not reach.
            if !lost_stacks || recovered[first..].contains(&false) || !recovery_warned {
                problems.push(format!(
                    "{label}: thread {lwp}: recovered frames {recovered:?} in a core that lost no \
                     stack ({}), not as the outermost frames, or without a warning",
                    !lost_stacks
                ));
            }
        }
        if have != want {
            let first_diff = have
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(have.len().min(want.len()));
            problems.push(format!(
                "{label}: thread {lwp}: {} frames vs truth {}; first difference at {first_diff}: {:?} vs {:?}",
                have.len(),
                want.len(),
                have.get(first_diff),
                want.get(first_diff)
            ));
        }
        // Source positions (3.11+), where the scenario recorded them: every
        // frame but the writer's innermost, which moves on after the snapshot.
        if have == want {
            for (i, tf) in t["stack"].as_array().unwrap().iter().enumerate() {
                let Some(position) = tf["position"].as_array() else {
                    continue;
                };
                let frame = &got["frames"][i];
                let have_position: Vec<&Value> = ["line", "end_line", "column", "end_column"]
                    .iter()
                    .map(|k| &frame[*k])
                    .collect();
                if have_position != position.iter().collect::<Vec<_>>() {
                    problems.push(format!(
                        "{label}: thread {lwp} frame {i} ({}): position {position:?} but pymortem has {have_position:?}",
                        tf["function"]
                    ));
                }
                positions_compared += 1;
            }
        }
        // Locals the scenario recorded (simple values, parked threads only: the
        // writer's locals move on after the snapshot).
        if t["writer"] != true {
            for (i, tf) in t["stack"].as_array().unwrap().iter().enumerate() {
                let Some(want_locals) = tf["locals"].as_object() else {
                    continue;
                };
                let have_locals: BTreeMap<&str, &str> = got["frames"][i]["locals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| (l["name"].as_str().unwrap(), l["repr"].as_str().unwrap()))
                    .collect();
                for (name, repr) in want_locals {
                    if have_locals.get(name.as_str()) != Some(&repr.as_str().unwrap()) {
                        problems.push(format!(
                            "{label}: thread {lwp} frame {i} ({}): local {name} = {repr} but pymortem has {:?}",
                            tf["function"],
                            have_locals.get(name.as_str())
                        ));
                    }
                }
            }
        }
        // Every scenario dies in Python code run by the crashing thread, which
        // therefore holds the GIL; no other thread does.
        let is_crash_thread = t["ident"] == truth["crash_thread_ident"];
        if got["holds_gil"] != is_crash_thread {
            problems.push(format!(
                "{label}: thread {lwp}: holds_gil {} but crash thread is {is_crash_thread}",
                got["holds_gil"]
            ));
        }
        if got["pthread_id"] != t["ident"] {
            problems.push(format!(
                "{label}: thread {lwp}: pthread {} vs truth {}",
                got["pthread_id"], t["ident"]
            ));
        }
    }
    // 3.11+ location tables give every parked frame a position: a core whose
    // truth or report has none compared nothing. (The subinterpreter
    // scenarios record their stacks another way, without positions.)
    let records_positions = !entry["scenario"]
        .as_str()
        .is_some_and(|s| s.starts_with("subinterp"));
    let version: Vec<u32> = entry["python_version"]
        .as_str()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if records_positions && version >= vec![3, 11] && positions_compared == 0 {
        problems.push(format!("{label}: no frame position compared"));
    }
    problems
}

#[test]
fn python_stacks_match_truth_on_every_sample_core() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let mut jobs: Vec<(&Value, bool)> = manifest.iter().map(|e| (e, true)).collect();
    // Debian's stripped interpreters again without their debug files.
    jobs.extend(
        manifest
            .iter()
            .filter(|e| e["stripped"] == true)
            .map(|e| (e, false)),
    );
    let problems = support::parallel(&jobs, |(e, d)| check(e, *d));
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("checked {} core runs", jobs.len());
}
