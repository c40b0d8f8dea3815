//! Threads that run subinterpreters (the `subinterp_*` scenarios, 3.12+):
//! every thread state the process recorded is reported on its OS thread, in
//! the order the thread entered them, with its interpreter id and frames;
//! the interpreters' thread counts agree with the thread states listed; the
//! merged native stacks hold every thread state's frames, each inside the
//! eval loops of its own interpreter.

use crate::support;

use std::collections::BTreeMap;

use serde_json::Value;

const SCENARIOS: [&str; 3] = ["subinterp_threads", "subinterp_nested", "subinterp_chains"];
/// The interpreters of the matrix from 3.12 (generate.py's
/// `SCENARIO_MIN_VERSION` for these scenarios): kernel and gcore cores of each.
fn interpreters() -> Vec<&'static str> {
    support::INTERPRETERS
        .into_iter()
        .filter(|name| {
            let version = name.rsplit('-').next().unwrap_or("");
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next(), parts.next()) >= (Some(3), Some(12))
        })
        .collect()
}

use crate::support::{Frame, frames, gdb_lost_memory};

fn entries() -> Vec<Value> {
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| SCENARIOS.contains(&e["scenario"].as_str().unwrap_or("")))
        .collect();
    let interpreters = interpreters();
    assert!(interpreters.len() >= 4, "{interpreters:?}");
    for interp in interpreters {
        for scenario in SCENARIOS {
            for kind in ["kernel", "gcore"] {
                assert!(
                    entries.iter().any(|e| e["interp"] == interp
                        && e["scenario"] == scenario
                        && e["kind"] == kind),
                    "no {interp} {scenario} {kind} core: regenerate the sample cores"
                );
            }
        }
    }
    entries
}

/// Run pymortem with `--json`; the output must be valid by the schema. It
/// exits 0, or 3 (incomplete) where gdb lost stack memory the frames need.
fn run(e: &Value, command: &[&str]) -> Result<Value, String> {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(["--json".into(), "--no-cache".into()]);
    if let Some(root) = e["sysroot"].as_str() {
        args.extend(["--sysroot".into(), root.into()]);
    }
    for d in e["debug_dirs"].as_array().into_iter().flatten() {
        args.extend(["--debug-dir".into(), d.as_str().unwrap().into()]);
    }
    args.push(e["core"].as_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    if code != 0 && !(code == 3 && gdb_lost_memory(e)) {
        return Err(format!("exit {code}: {stderr}"));
    }
    let doc: Value = serde_json::from_str(&stdout).map_err(|e| e.to_string())?;
    let label = command.join(" ");
    let violations: Vec<String> = support::schema_violations(&doc)
        .into_iter()
        .map(|v| format!("{label}: {v}"))
        .collect();
    if !violations.is_empty() {
        return Err(violations.join("\n"));
    }
    Ok(doc)
}

/// The frames pymortem shows equal the recorded ones or, where gdb lost the
/// stack memory, are a prefix of them ended by an error that says so.
fn same_frames(have: &[Frame], want: &[Frame], error: &Value, lost: bool) -> Result<(), String> {
    if have == want {
        return Ok(());
    }
    if lost
        && have.len() <= want.len()
        && want[..have.len()] == *have
        && error.as_str().is_some_and(|e| e.contains("zeros"))
    {
        return Ok(());
    }
    Err(format!("{have:?} vs truth {want:?} (error {error})"))
}

fn check_threads(e: &Value) -> Vec<String> {
    let label = support::label(e);
    let truth = support::truth(e);
    let report = match run(e, &["threads"]) {
        Ok(r) => r,
        Err(err) => return vec![format!("{label}: {err}")],
    };
    let lost = gdb_lost_memory(e);
    let mut problems = Vec::new();
    let by_lwp = support::threads_by_lwp(&report);
    // The truth's thread states of each OS thread, in the order its chain entered them.
    let mut recorded: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for s in truth["thread_states"].as_array().unwrap() {
        recorded
            .entry(s["native_id"].as_i64().unwrap())
            .or_default()
            .push(s);
    }
    for (lwp, want) in &recorded {
        let Some(thread) = by_lwp.get(lwp) else {
            problems.push(format!("{label}: no thread {lwp}"));
            continue;
        };
        let have = thread["thread_states"].as_array().unwrap();
        let have_ids: Vec<i64> = have
            .iter()
            .filter_map(|s| s["interpreter_id"].as_i64())
            .collect();
        let want_ids: Vec<i64> = want
            .iter()
            .map(|s| s["interpreter_id"].as_i64().unwrap())
            .collect();
        if have_ids != want_ids {
            problems.push(format!(
                "{label}: LWP {lwp}: interpreters {have_ids:?} ({}), truth {want_ids:?}",
                thread["thread_states_order"]
            ));
            continue;
        }
        let expected_order = if want.len() > 1 { "c_stack" } else { "single" };
        if thread["thread_states_order"] != expected_order {
            problems.push(format!(
                "{label}: LWP {lwp}: order found by {}, not {expected_order}",
                thread["thread_states_order"]
            ));
        }
        for (h, w) in have.iter().zip(want) {
            if let Err(err) = same_frames(
                &frames(&h["frames"]),
                &frames(&w["stack"]),
                &h["frames_error"],
                lost,
            ) {
                problems.push(format!(
                    "{label}: LWP {lwp} interpreter {}: {err}",
                    w["interpreter_id"]
                ));
            }
        }
        // The thread's own fields describe the thread state it runs now.
        let current = have.last().unwrap();
        for field in [
            "thread_state",
            "interpreter",
            "interpreter_id",
            "holds_gil",
            "frames",
        ] {
            if thread[field] != current[field] {
                problems.push(format!(
                    "{label}: LWP {lwp}: {field} is not the innermost thread state's"
                ));
            }
        }
        // Only the thread state that aborted held a GIL: the others released
        // theirs, to block in read() or to enter the next interpreter.
        let crash_thread = *lwp == truth["pid"].as_i64().unwrap();
        for (i, h) in have.iter().enumerate() {
            let should = crash_thread && i + 1 == have.len();
            if h["holds_gil"] != should {
                problems.push(format!(
                    "{label}: LWP {lwp} interpreter {}: holds_gil {}",
                    h["interpreter_id"], h["holds_gil"]
                ));
            }
        }
    }
    // A thread state left by a thread that ended is listed on its own, with
    // no LWP, though the next thread took over its pthread_t.
    let orphans = truth["objects"]["orphan_thread_states"].as_array().unwrap();
    for orphan in orphans {
        let listed = report["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["thread_state"] == orphan["thread_state"]);
        match listed {
            Some(t)
                if t["lwp"].is_null()
                    && t["pthread_id"] == orphan["ident"]
                    && t["interpreter_id"] == orphan["interpreter_id"]
                    && t["thread_states"].as_array().unwrap().len() == 1 => {}
            other => problems.push(format!(
                "{label}: the ended thread's thread state {} is listed as {other:?}",
                orphan["thread_state"]
            )),
        }
    }
    // Every thread state of every interpreter is listed exactly once, and
    // each interpreter holds the thread states the process recorded for it.
    let listed: Vec<&Value> = report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["thread_states"].as_array().unwrap())
        .collect();
    for interp in report["interpreters"].as_array().unwrap() {
        let here = listed
            .iter()
            .filter(|s| s["interpreter"] == interp["address"])
            .count();
        let recorded_here = truth["thread_states"]
            .as_array()
            .unwrap()
            .iter()
            .chain(orphans)
            .filter(|s| s["interpreter_id"] == interp["id"])
            .count();
        if interp["threads"].as_u64() != Some(here as u64) || here != recorded_here {
            problems.push(format!(
                "{label}: interpreter {}: counts {} thread states, {here} listed, {recorded_here} recorded",
                interp["id"], interp["threads"]
            ));
        }
    }
    let interpreters = report["interpreters"].as_array().unwrap().len();
    let recorded_interpreters = {
        let mut ids: Vec<i64> = truth["thread_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["interpreter_id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    if interpreters != recorded_interpreters {
        problems.push(format!(
            "{label}: {interpreters} interpreters, {recorded_interpreters} recorded"
        ));
    }
    problems
}

#[test]
fn every_thread_state_is_on_its_os_thread_in_order_with_its_frames() {
    if support::matrix_missing() {
        return;
    }
    let entries = entries();
    let problems = support::parallel(&entries, check_threads);
    support::assert_no_problems(&problems);
}

/// With `--native`, each thread's merged stack holds the Python frames of
/// all its thread states, innermost thread state first, each one's run by
/// eval loops of its own: a native frame always separates two thread states.
fn check_native(e: &Value) -> Vec<String> {
    let label = support::label(e);
    let truth = support::truth(e);
    let report = match run(e, &["threads", "--native"]) {
        Ok(r) => r,
        Err(err) => return vec![format!("{label}: {err}")],
    };
    let mut problems = Vec::new();
    for thread in report["threads"].as_array().unwrap() {
        let Some(lwp) = thread["lwp"].as_i64() else {
            continue;
        };
        let states = thread["thread_states"].as_array().unwrap();
        let stack = &thread["stack"];
        // The thread states' frames, innermost thread state first, tagged with their state.
        let want: Vec<(usize, Frame)> = states
            .iter()
            .enumerate()
            .rev()
            .flat_map(|(i, s)| frames(&s["frames"]).into_iter().map(move |f| (i, f)))
            .collect();
        let entries = stack["frames"].as_array().unwrap();
        let python: Vec<Frame> = entries
            .iter()
            .filter(|f| f["kind"] == "python")
            .map(|f| frames(&Value::Array(vec![f.clone()])).remove(0))
            .collect();
        if python != want.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>() {
            problems.push(format!(
                "{label}: LWP {lwp}: merged Python frames differ from the thread states'"
            ));
            continue;
        }
        let tagged: Vec<usize> = stack["thread_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["python_frames"].as_u64().unwrap() as usize)
            .collect();
        let listed: Vec<usize> = states
            .iter()
            .map(|s| s["frames"].as_array().unwrap().len())
            .collect();
        if tagged != listed {
            problems.push(format!(
                "{label}: LWP {lwp}: stack thread states {tagged:?} vs {listed:?}"
            ));
        }
        // Kernel cores hold every stack: every Python frame sits in an eval loop.
        if e["kind"] == "kernel" && stack["unattached_python_frames"] != 0 {
            problems.push(format!(
                "{label}: LWP {lwp}: {} Python frames matched no eval loop",
                stack["unattached_python_frames"]
            ));
        }
        // Frames that matched no eval loop (a stack gdb lost) are in no eval
        // loop to share.
        if stack["unattached_python_frames"] != 0 {
            continue;
        }
        let mut python_seen = 0;
        let mut native_since_last = true;
        let mut last_state = None;
        for f in entries {
            if f["kind"] != "python" {
                native_since_last = true;
                continue;
            }
            let state = want[python_seen].0;
            if last_state.is_some_and(|s| s != state) && !native_since_last {
                problems.push(format!(
                    "{label}: LWP {lwp}: thread states {state} and {} share an eval loop",
                    last_state.unwrap()
                ));
            }
            last_state = Some(state);
            native_since_last = false;
            python_seen += 1;
        }
    }
    // The crashing thread's states, as info shows them.
    match run(e, &["info"]) {
        Ok(info) => {
            let crash = truth["pid"].as_i64().unwrap();
            let want: Vec<&Value> = truth["thread_states"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["native_id"] == crash)
                .map(|s| &s["interpreter_id"])
                .collect();
            let have: Vec<&Value> = info["crashed_thread_stack"]["thread_states"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| &s["interpreter_id"])
                .collect();
            if have != want {
                problems.push(format!(
                    "{label}: info's crashed stack has interpreters {have:?}, truth {want:?}"
                ));
            }
        }
        Err(err) => problems.push(format!("{label}: info: {err}")),
    }
    problems
}

#[test]
fn merged_stacks_hold_every_thread_state_in_its_own_eval_loops() {
    if support::matrix_missing() {
        return;
    }
    let entries = entries();
    let problems = support::parallel(&entries, check_native);
    support::assert_no_problems(&problems);
}

/// A healthy process that ran subinterpreters has no error or warning finding.
fn check_findings(e: &Value) -> Vec<String> {
    let label = support::label(e);
    match run(e, &["check"]) {
        Ok(r) => r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
            .map(|f| format!("{label}: {} {}", f["kind"], f["message"]))
            .collect(),
        Err(err) => vec![format!("{label}: check: {err}")],
    }
}

#[test]
fn subinterpreter_cores_have_no_error_or_warning_finding() {
    if support::matrix_missing() {
        return;
    }
    let entries = entries();
    let problems = support::parallel(&entries, check_findings);
    support::assert_no_problems(&problems);
}
