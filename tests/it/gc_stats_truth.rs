//! The collector's statistics in `pymortem gc --json` (`gc_stats`) against
//! what the dying process's `gc.get_stats()` returned, recorded in its truth
//! (`gc_stats.get_stats`, read last when the truth was written): every
//! generation's totals on every interpreter that keeps them (3.6+), and from
//! 3.15 the rings of the last collections, whose newest records are what
//! `gc.get_stats()` returns. Also: a core without debug files reads the
//! same statistics (`_Py_DebugOffsets` or the table), and a damaged
//! pointer or index is reported unreadable, with its address, without
//! changing the verdict.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

/// `gc --json` of a manifest entry's core, with `extra` arguments before the core.
fn gc_report(e: &Value, args: &[String]) -> (i32, Value) {
    let mut all = vec!["gc".to_string(), "--json".to_string()];
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&all);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{}: {err}: {stderr}", support::label(e)));
    (code, report)
}

/// The main interpreter's statistics: the one with id 0, or the only one
/// (3.6–3.8 keep them for the process).
fn main_stats(report: &Value) -> Option<&Value> {
    let stats = report["gc_stats"].as_array()?;
    stats
        .iter()
        .find(|s| s["interpreter_id"] == 0)
        .or_else(|| (stats.len() == 1).then(|| &stats[0]))
}

/// What one core's comparison found.
#[derive(Default)]
struct Outcome {
    problems: Vec<String>,
    /// Every generation's collections equal the truth's: the core died
    /// with the statistics the truth recorded.
    exact: bool,
}

/// Compare one core's `gc_stats` with its truth.
fn compare(e: &Value) -> Option<Outcome> {
    let label = support::label(e);
    let truth = support::truth(e);
    // Cores made before the truth recorded the statistics have no key.
    let recorded = truth.get("gc_stats")?;
    let (_, report) = gc_report(e, &support::file_args(e));
    let mut out = Outcome::default();
    let problems = &mut out.problems;
    if recorded.is_null() {
        // 2.7 keeps no statistics.
        if report["gc_stats"] != Value::Array(Vec::new()) {
            problems.push(format!(
                "{label}: gc.get_stats() does not exist, yet gc_stats is {}",
                report["gc_stats"]
            ));
        }
        return Some(out);
    }
    let expected = recorded["get_stats"].as_array().unwrap();
    let Some(stats) = main_stats(&report) else {
        problems.push(format!(
            "{label}: no statistics of the main interpreter in {}",
            report["gc_stats"]
        ));
        return Some(out);
    };
    if let Some(reason) = stats.get("unreadable") {
        problems.push(format!("{label}: the statistics are unreadable: {reason}"));
        return Some(out);
    }
    let totals = stats["totals"].as_array().unwrap();
    if totals.len() != expected.len() {
        problems.push(format!(
            "{label}: {} generations, gc.get_stats() has {}",
            totals.len(),
            expected.len()
        ));
        return Some(out);
    }
    let mut exact = true;
    for (g, (got, want)) in totals.iter().zip(expected).enumerate() {
        if got["generation"] != g {
            problems.push(format!(
                "{label}: totals[{g}] is generation {}",
                got["generation"]
            ));
        }
        let (n, m) = (got["collections"].as_i64(), want["collections"].as_i64());
        if n == m {
            // The same collections: every number is the truth's, the
            // duration to the bit.
            for (key, value) in want.as_object().unwrap() {
                if &got[key] != value {
                    problems.push(format!(
                        "{label}: generation {g} {key} is {}, gc.get_stats() said {value}",
                        got[key]
                    ));
                }
            }
        } else if n > m {
            // Collections ran after the truth was written (the scenario
            // worked on): the totals only grew.
            exact = false;
            for key in ["collected", "uncollectable", "candidates"] {
                if want.get(key).is_some() && got[key].as_i64() < want[key].as_i64() {
                    problems.push(format!(
                        "{label}: generation {g} {key} is {}, below gc.get_stats()'s {}",
                        got[key], want[key]
                    ));
                }
            }
        } else {
            problems.push(format!(
                "{label}: generation {g} has {n:?} collections, fewer than gc.get_stats()'s {m:?}"
            ));
        }
    }
    out.exact = exact && problems.is_empty();
    // 3.15 records candidates and duration, and keeps rings.
    let rings = stats["rings"].as_array().unwrap();
    if expected[0].get("candidates").is_none() {
        if !rings.is_empty() || !stats["update_seq"].is_null() {
            problems.push(format!("{label}: rings before 3.15: {rings:?}"));
        }
        return Some(out);
    }
    let clock = recorded["perf_counter_ns"].as_i64();
    out.problems.extend(check_rings(
        &label,
        stats,
        totals,
        out.exact.then_some(clock).flatten(),
    ));
    Some(out)
}

/// 3.15: the rings are young, old 0 and old 1 of 11, 3 and 3 slots; each
/// one's newest record is its generation's totals; records are consecutive
/// collections, newest first, each one's numbers its totals less its
/// predecessor's and its duration its timestamps' difference (the totals'
/// difference too, within rounding); none ended after `clock` (the truth's
/// monotonic clock, when the core died with the truth's statistics).
fn check_rings(label: &str, stats: &Value, totals: &[Value], clock: Option<i64>) -> Vec<String> {
    let mut problems = Vec::new();
    let rings = stats["rings"].as_array().unwrap();
    let shape: Vec<(&str, u64, u64)> = rings
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["generation"].as_u64().unwrap(),
                r["slots"].as_u64().unwrap(),
            )
        })
        .collect();
    if shape != [("young", 0, 11), ("old 0", 1, 3), ("old 1", 2, 3)] {
        problems.push(format!("{label}: rings {shape:?}"));
        return problems;
    }
    if stats["update_seq"].as_u64().is_none_or(|s| s % 2 == 1) {
        problems.push(format!(
            "{label}: update_seq {} (odd: a record was being written)",
            stats["update_seq"]
        ));
        return problems;
    }
    for (ring, total) in rings.iter().zip(totals) {
        let name = ring["name"].as_str().unwrap();
        if let Some(reason) = ring.get("unreadable") {
            problems.push(format!("{label}: {name} unreadable: {reason}"));
            continue;
        }
        let records = ring["records"].as_array().unwrap();
        let collections = total["collections"].as_u64().unwrap();
        if records.len() as u64 != collections.min(ring["slots"].as_u64().unwrap()) {
            problems.push(format!(
                "{label}: {name} has {} records after {collections} collections",
                records.len()
            ));
        }
        let Some(newest) = records.first() else {
            continue;
        };
        if newest["slot"] != ring["index"] {
            problems.push(format!(
                "{label}: {name}'s newest record is in slot {}, its index is {}",
                newest["slot"], ring["index"]
            ));
        }
        for key in [
            "collections",
            "collected",
            "uncollectable",
            "candidates",
            "duration",
        ] {
            if newest["totals"][key] != total[key] {
                problems.push(format!(
                    "{label}: {name}'s newest record has {key} {}, the totals {}",
                    newest["totals"][key], total[key]
                ));
            }
        }
        if let (Some(clock), Some(stop)) = (clock, newest["ts_stop"].as_i64())
            && stop > clock
        {
            problems.push(format!(
                "{label}: {name}'s newest collection ended at {stop} ns, after the truth was \
                 written ({clock} ns on the same clock)"
            ));
        }
        for pair in records.windows(2) {
            let (new, old) = (&pair[0], &pair[1]);
            let n = new["collections"].as_i64().unwrap();
            if old["collections"].as_i64() != Some(n - 1) {
                problems.push(format!(
                    "{label}: {name}: collection {n} follows {} in the ring",
                    old["collections"]
                ));
                continue;
            }
            for key in ["collected", "uncollectable", "candidates"] {
                let own =
                    new["totals"][key].as_i64().unwrap() - old["totals"][key].as_i64().unwrap();
                if new[key].as_i64() != Some(own) {
                    problems.push(format!(
                        "{label}: {name} collection {n}: {key} {}, its totals grew by {own}",
                        new[key]
                    ));
                }
            }
            let (start, stop) = (
                new["ts_start"].as_i64().unwrap(),
                new["ts_stop"].as_i64().unwrap(),
            );
            if start < old["ts_stop"].as_i64().unwrap() || stop < start {
                problems.push(format!(
                    "{label}: {name} collection {n} ran from {start} to {stop}, the one before \
                     ended at {}",
                    old["ts_stop"]
                ));
            }
            let grew = new["totals"]["duration"].as_f64().unwrap()
                - old["totals"]["duration"].as_f64().unwrap();
            let duration = new["duration"].as_f64().unwrap();
            if (grew - duration).abs() > 1e-9 {
                problems.push(format!(
                    "{label}: {name} collection {n} took {duration} s by its timestamps, its \
                     totals' duration grew by {grew} s"
                ));
            }
        }
    }
    problems
}

/// Every core whose truth recorded `gc.get_stats()` agrees with it; every
/// interpreter that keeps statistics has a core that died with exactly the
/// recorded ones (the others ran collections after writing their truth).
#[test]
fn gc_stats_match_gc_get_stats_of_the_dying_process() {
    if support::matrix_missing() {
        return;
    }
    let entries = support::manifest();
    let exact: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let compared = Mutex::new(BTreeMap::<String, usize>::new());
    let mut problems = support::parallel(&entries, |e| {
        let Some(outcome) = compare(e) else {
            return Vec::new();
        };
        let interp = e["interp"].as_str().unwrap().to_string();
        *compared.lock().unwrap().entry(interp.clone()).or_default() += 1;
        if outcome.exact {
            *exact.lock().unwrap().entry(interp).or_default() += 1;
        }
        outcome.problems
    });
    let (exact, compared) = (exact.into_inner().unwrap(), compared.into_inner().unwrap());
    for interp in support::INTERPRETERS {
        if !compared.contains_key(interp) {
            problems.push(format!(
                "{interp}: no core's truth records gc.get_stats(): regenerate some \
                 (python3 sample-cores/generate.py --interp {interp} --scenario threads busy_heap)"
            ));
        } else if interp != "pyenv-2.7.18" && !exact.contains_key(interp) {
            problems.push(format!(
                "{interp}: no core died with the statistics its truth recorded"
            ));
        }
    }
    eprintln!("compared {compared:?}; died with the recorded statistics: {exact:?}");
    support::assert_no_problems(&problems);
}

/// Without the interpreter's files (an empty sysroot) the layout comes from
/// `_Py_DebugOffsets` (3.13+) or the built-in table, and the statistics
/// read are those read with the debug files.
#[test]
fn gc_stats_without_files_are_those_read_with_them() {
    if support::matrix_missing() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let entries: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
        .collect();
    let problems = support::parallel(&entries, |e| {
        let label = support::label(e);
        let (_, with) = gc_report(e, &support::file_args(e));
        let bare = [
            "--sysroot".to_string(),
            empty.path().to_string_lossy().into_owned(),
            "--no-default-debug-dir".to_string(),
            e["core"].as_str().unwrap().to_string(),
        ];
        let (_, without) = gc_report(e, &bare);
        let mut problems = Vec::new();
        // 2.7 and 3.6 keep theirs in statics that only symbols name.
        let version = e["python_version"].as_str().unwrap();
        if version.starts_with("2.") || version.starts_with("3.6.") {
            return problems;
        }
        if with["gc_stats"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{label}: no statistics with the files"));
        }
        if with["gc_stats"] != without["gc_stats"] {
            problems.push(format!(
                "{label}: without files (layout {}) the statistics differ:\n  {}\n  with files: {}",
                without["layout_source"], without["gc_stats"], with["gc_stats"]
            ));
        }
        problems
    });
    support::assert_no_problems(&problems);
}

/// A 3.15 core with its `generation_stats` pointer, or its young ring's
/// index, overwritten: the statistics (or that ring) are reported
/// unreadable with the address and the reason, and neither the exit code
/// nor the verdict changes.
#[test]
fn gc_stats_damaged_are_unreadable_not_findings() {
    if support::matrix_missing() {
        return;
    }
    let e = support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "debian-3.15" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("a debian-3.15 threads kernel core");
    let (code, report) = gc_report(&e, &support::file_args(&e));
    let process = support::open(&e);
    let python = pymortem::Python::of(&process).unwrap();
    let stats = python.gc_generations().stats;
    let main = stats
        .iter()
        .find(|s| s.interpreter_id == Some(0))
        .expect("the main interpreter's statistics");
    let (pointer_at, address) = (main.pointer_at.unwrap(), main.address.unwrap());
    let young_index = address
        + python
            .layout()
            .offsets()
            .gc_stats
            .young_index
            .get()
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = e["core"].as_str().unwrap();
    let patched = |addr: u64, bytes: &[u8], name: &str| {
        let seg = process
            .core()
            .segments()
            .iter()
            .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.available)
            .expect("the core holds the word");
        let at = (seg.file_offset + (addr - seg.vaddr)) as usize;
        let mut core = std::fs::read(path).unwrap();
        core[at..at + bytes.len()].copy_from_slice(bytes);
        support::write_temp(dir.path(), name, &core)
    };
    let search = support::search_args(&e);
    let run = |core: std::path::PathBuf| {
        let mut args = search.clone();
        args.push(core.to_string_lossy().into_owned());
        gc_report(&e, &args)
    };
    let cases = [
        (
            patched(pointer_at, &0x10u64.to_le_bytes(), "pointer.core"),
            "cannot read 1120 bytes at 0x10",
        ),
        (
            patched(pointer_at, &0u64.to_le_bytes(), "null.core"),
            "is NULL",
        ),
    ];
    for (core, reason) in cases {
        let (damaged_code, damaged) = run(core);
        assert_eq!(damaged_code, code, "the exit code is unchanged");
        assert_eq!(
            damaged["verdict"], report["verdict"],
            "the verdict is unchanged"
        );
        let got = main_stats(&damaged).unwrap();
        let unreadable = got["unreadable"].as_str().unwrap_or_default();
        assert!(unreadable.contains(reason), "{reason:?} in {got}");
        assert_eq!(got["pointer_at"], pointer_at);
    }
    let (damaged_code, damaged) = run(patched(young_index, &[42], "index.core"));
    assert_eq!(damaged_code, code);
    assert_eq!(damaged["verdict"], report["verdict"]);
    let got = main_stats(&damaged).unwrap();
    let young = &got["rings"][0];
    let reason = young["unreadable"].as_str().unwrap_or_default();
    assert!(
        reason.contains("index 42") && reason.contains(&format!("{young_index:#x}")),
        "the young ring is unreadable at its index: {young}"
    );
    assert_eq!(young["records"], Value::Array(Vec::new()));
    assert_eq!(got["rings"][1], main_stats(&report).unwrap()["rings"][1]);
}
