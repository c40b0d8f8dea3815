//! asyncio tasks (the `asyncio_tasks` scenario, 3.8+): every task of the
//! event loop, its name, state, coroutine chain, what it awaits and which
//! tasks await it equal what the dying process recorded; with the
//! `_asyncio` module's DWARF and, for the Debian interpreters, without it
//! (the built-in table), which itself equals every interpreter's DWARF.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support;

const SCENARIO: &str = "asyncio_tasks";

/// The scenario's cores: kernel and gcore of every 3.8+ interpreter.
fn entries() -> Vec<Value> {
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == SCENARIO)
        .collect();
    for interp in support::INTERPRETERS {
        let version = interp.rsplit('-').next().unwrap_or("");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        if (parts.next(), parts.next()) < (Some(3), Some(8)) {
            continue;
        }
        for kind in ["kernel", "gcore"] {
            assert!(
                entries
                    .iter()
                    .any(|e| e["interp"] == interp && e["kind"] == kind),
                "no {interp} {SCENARIO} {kind} core: regenerate the sample cores"
            );
        }
    }
    entries
}

/// `tasks --json` on a core with `search` arguments: exit 0 and valid by the schema.
fn tasks_json(entry: &Value, search: &[String]) -> Result<Value, String> {
    let mut args = vec!["tasks".to_string(), "--json".into(), "--no-cache".into()];
    args.extend(search.iter().cloned());
    args.push(entry["core"].as_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    if code != 0 {
        return Err(format!("exit {code}: {stderr}"));
    }
    let doc: Value = serde_json::from_str(&stdout).map_err(|e| e.to_string())?;
    let violations = support::schema_violations(&doc);
    if violations.is_empty() {
        Ok(doc)
    } else {
        Err(violations.join("\n"))
    }
}

/// Sorted addresses of a JSON array.
fn addresses(list: &Value) -> Vec<u64> {
    let mut out: Vec<u64> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    out.sort_unstable();
    out
}

/// (function, file, line) of each frame of a coroutine chain, innermost first.
fn chain(list: &Value) -> Vec<(String, String, i64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("?").to_string(),
                f["file"].as_str().unwrap_or("?").to_string(),
                f["line"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Where the report's tasks differ from the truth's.
fn disagreements(label: &str, report: &Value, truth: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let writer_lwp = truth["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["writer"] == true)
        .and_then(|t| t["native_id"].as_i64());
    for truth_loop in truth["asyncio"]["loops"].as_array().unwrap() {
        let address = truth_loop["address"].as_u64().unwrap();
        let Some(got_loop) = report["loops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["address"].as_u64() == Some(address))
        else {
            problems.push(format!("{label}: no event loop {address:#x}"));
            continue;
        };
        let loop_type = truth_loop["type"].as_str().unwrap();
        let got_type = got_loop["type_name"].as_str().unwrap_or("");
        if got_type.rsplit('.').next() != Some(loop_type) {
            problems.push(format!(
                "{label}: loop type {} is not {loop_type}",
                got_loop["type_name"]
            ));
        }
        let got: BTreeMap<u64, &Value> = got_loop["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["address"].as_u64().unwrap(), t))
            .collect();
        let want: BTreeMap<u64, &Value> = truth_loop["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["address"].as_u64().unwrap(), t))
            .collect();
        if got.keys().collect::<Vec<_>>() != want.keys().collect::<Vec<_>>() {
            problems.push(format!(
                "{label}: tasks {:x?}, the truth has {:x?}",
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>()
            ));
        }
        for (address, t) in &want {
            let Some(g) = got.get(address) else {
                continue;
            };
            let name = t["name"].as_str().unwrap();
            let mut differ = |what: &str, got: String, want: String| {
                if got != want {
                    problems.push(format!(
                        "{label}: task {name} ({address:#x}): {what} {got}, the truth has {want}"
                    ));
                }
            };
            differ("name", g["name"].to_string(), t["name"].to_string());
            differ("state", g["state"].to_string(), t["state"].to_string());
            differ(
                "coroutine chain",
                format!("{:?}", chain(&g["coroutine"])),
                format!("{:?}", chain(&t["coroutine"])),
            );
            differ(
                "awaits",
                format!("{:?}", g["awaits"]["address"].as_u64()),
                format!("{:?}", t["awaits"]["address"].as_u64()),
            );
            differ(
                "awaited tasks",
                format!("{:x?}", addresses(&g["awaits"]["tasks"])),
                format!("{:x?}", addresses(&t["awaits"]["tasks"])),
            );
            differ(
                "awaited by",
                format!("{:x?}", addresses(&g["awaited_by"])),
                format!("{:x?}", addresses(&t["awaited_by"])),
            );
            let running_on = if t["running"] == true {
                writer_lwp
            } else {
                None
            };
            differ(
                "running on",
                format!("{:?}", g["running_on"].as_i64()),
                format!("{running_on:?}"),
            );
            if !g["coroutine_error"].is_null() || !g["unreadable"].is_null() {
                problems.push(format!(
                    "{label}: task {name}: {} {}",
                    g["coroutine_error"], g["unreadable"]
                ));
            }
        }
    }
    problems
}

#[test]
fn every_task_equals_the_truth_from_3_8() {
    if support::matrix_missing() {
        return;
    }
    let entries = entries();
    let problems = support::parallel(&entries, |entry| {
        let label = support::label(entry);
        let truth = support::truth(entry);
        let mut problems = match tasks_json(entry, &support::search_args(entry)) {
            Ok(report) => {
                let source = report["task_layout_source"].as_str().unwrap_or("");
                let mut p = disagreements(&label, &report, &truth);
                if !source.starts_with("DWARF of ") {
                    p.push(format!("{label}: the task layout came from {source:?}"));
                }
                p
            }
            Err(e) => vec![format!("{label}: {e}")],
        };
        // Without debug files, the Debian interpreters' tasks are read
        // through the built-in table.
        if let Some(root) = entry["sysroot"].as_str() {
            let label = format!("{label} (no debug files)");
            let search = [
                "--sysroot".to_string(),
                root.to_string(),
                "--no-default-debug-dir".to_string(),
            ];
            match tasks_json(entry, &search) {
                Ok(report) => {
                    let source = report["task_layout_source"].as_str().unwrap_or("");
                    if !source.starts_with("built-in table ") {
                        problems.push(format!("{label}: the task layout came from {source:?}"));
                    }
                    problems.extend(disagreements(&label, &report, &truth));
                }
                Err(e) => problems.push(format!("{label}: {e}")),
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
    eprintln!("{} asyncio cores compared with their truth", entries.len());
}

#[test]
fn the_task_table_equals_every_interpreters_dwarf() {
    if support::matrix_missing() {
        return;
    }
    let mut problems = Vec::new();
    let mut compared = 0;
    for entry in entries().iter().filter(|e| e["kind"] == "kernel") {
        let label = support::label(entry);
        let process = support::open(entry);
        let version = process.python().unwrap().version;
        // The library's handle lists the same tasks as the truth.
        let python = pymortem::Python::of(&process).unwrap();
        let mut listed: Vec<u64> = python
            .tasks()
            .loops
            .iter()
            .flat_map(|l| l.tasks.iter().map(|t| t.address))
            .collect();
        listed.sort_unstable();
        let truth = support::truth(entry);
        let mut recorded: Vec<u64> = truth["asyncio"]["loops"][0]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["address"].as_u64())
            .collect();
        recorded.sort_unstable();
        if listed != recorded {
            problems.push(format!("{label}: Python::tasks lists {listed:x?}"));
        }
        let candidates = pymortem::layout::asyncio_task::candidate_modules(
            process.modules().modules(),
            process.python_module(),
        );
        let Some(dwarf) = candidates
            .iter()
            .find_map(|m| pymortem::layout::asyncio_task::from_dwarf(m))
        else {
            problems.push(format!("{label}: no module has DWARF for TaskObj"));
            continue;
        };
        match pymortem::layout::asyncio_task::table(version.major, version.minor) {
            Some(table) if *table == dwarf => compared += 1,
            Some(table) => problems.push(format!(
                "{label}: the table has {table:?}, the DWARF {dwarf:?}"
            )),
            None => problems.push(format!("{label}: no table for {version}")),
        }
    }
    support::assert_no_problems(&problems);
    assert!(compared >= 9, "only {compared} interpreters compared");
}

#[test]
fn threads_with_tasks_shows_the_same_tasks() {
    if support::matrix_missing() {
        return;
    }
    let entry = entries()
        .into_iter()
        .find(|e| e["interp"] == "pyenv-3.12.1" && e["kind"] == "kernel")
        .unwrap();
    let mut args = vec!["threads", "--tasks", "--json", "--no-cache"];
    let files = support::file_args(&entry);
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = support::pymortem(&args);
    assert_eq!(code, 0, "{stderr}");
    let threads: Value = serde_json::from_str(&stdout).unwrap();
    let tasks = tasks_json(&entry, &support::search_args(&entry)).unwrap();
    assert_eq!(threads["tasks"], tasks["loops"]);
    assert!(tasks["loops"][0]["tasks"].as_array().unwrap().len() >= 6);
    // Text: the tasks follow the threads.
    args.retain(|a| *a != "--json");
    let (code, text, stderr) = support::pymortem(&args);
    assert_eq!(code, 0, "{stderr}");
    let threads_at = text.find("Thread LWP").unwrap();
    let tasks_at = text.find("Task \"worker\"").unwrap();
    assert!(threads_at < tasks_at, "{text}");
    assert!(text.contains("awaited by \"waiter\""), "{text}");
}
