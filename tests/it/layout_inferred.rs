//! A CPython version pymortem has no table for: `--newest-known X.Y` makes
//! it ignore the tables and `_Py_DebugOffsets` positions of every newer
//! version, so the stripped Debian 3.15 cores, read without their debug
//! files, stand for a version released after pymortem. The layout is then
//! inferred from the core's `_Py_DebugOffsets` (`src/layout/infer.rs`):
//! the stacks must still be the true ones, the output must say the layout
//! is a guess and what was guessed, and every member placed from the core
//! must equal the same build's DWARF.

use crate::support;
use crate::without_files::disagreements;

use serde_json::Value;

/// The stripped chroot interpreter's cores of `interp`.
fn cores(interp: &str) -> Vec<Value> {
    let cores: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["interp"] == interp)
        .collect();
    assert!(!cores.is_empty(), "no {interp} core in the manifest");
    cores
}

/// `pymortem COMMAND --json` on `entry`'s core, with its sysroot, without
/// its debug files, pretending the tables stop at `newest` when given.
fn run(command: &str, entry: &Value, newest: Option<&str>) -> (i32, Value, String) {
    let mut args = vec![
        command,
        "--json",
        "--no-cache",
        "--no-default-debug-dir",
        "--sysroot",
        entry["sysroot"].as_str().unwrap(),
    ];
    if command == "threads" {
        args.push("--locals");
    }
    if let Some(newest) = newest {
        args.extend(["--newest-known", newest]);
    }
    args.push(entry["core"].as_str().unwrap());
    let (code, stdout, stderr) = support::pymortem(&args);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: {e}: {stderr}", support::label(entry)));
    (code, value, stderr)
}

/// The layout of `entry`'s core read from its -dbg package's DWARF: the oracle.
fn dwarf_layout(entry: &Value) -> Value {
    let (code, stdout, stderr) = support::pymortem(&[
        "layout",
        "--json",
        "--no-cache",
        "--sysroot",
        entry["sysroot"].as_str().unwrap(),
        "--debug-dir",
        entry["debug_dirs"][0].as_str().unwrap(),
        entry["core"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let oracle: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(oracle["layout"]["source"]["kind"], "dwarf");
    oracle["layout"].clone()
}

/// A member's value in a layout: its structure's size or its field's offset.
fn value_of(layout: &Value, member: &Value) -> Option<u64> {
    let s = &layout["structs"][member["structure"].as_str().unwrap()];
    match member["field"].as_str() {
        None => s["size"].as_u64(),
        Some(field) => s["fields"][field]["offset"].as_u64(),
    }
}

/// How an inferred layout's members compare with DWARF.
#[derive(Debug, Default)]
struct Tally {
    /// Placed from the core, equal to DWARF.
    right: Vec<String>,
    /// Placed from the core, not equal to DWARF.
    wrong: Vec<String>,
    /// Guessed from the table, and the table's value is DWARF's.
    guessed_right: Vec<String>,
    /// Guessed, and the table's value is not DWARF's (or one of them has none).
    guessed_wrong: Vec<String>,
}

fn tally(layout: &Value, oracle: &Value) -> Tally {
    let inferred = &layout["source"]["inferred"];
    let mut t = Tally::default();
    for member in inferred["placed"].as_array().unwrap() {
        let (got, want) = (value_of(layout, member), value_of(oracle, member));
        let name = format!("{}: {got:?} vs DWARF {want:?}", member["member"]);
        if got.is_some() && got == want {
            t.right.push(name);
        } else {
            t.wrong.push(name);
        }
    }
    for member in inferred["guessed"].as_array().unwrap() {
        let (got, want) = (value_of(layout, member), value_of(oracle, member));
        let name = format!("{}: {got:?} vs DWARF {want:?}", member["member"]);
        if got == want {
            t.guessed_right.push(name);
        } else {
            t.guessed_wrong.push(name);
        }
    }
    t
}

#[test]
fn stripped_315_cores_read_as_if_314_were_newest_have_the_true_stacks() {
    if support::matrix_missing() {
        return;
    }
    let entries = cores("debian-3.15");
    let problems = support::parallel(&entries, |entry| {
        let label = format!("{} (newest known 3.14)", support::label(entry));
        let (code, report, stderr) = run("threads", entry, Some("3.14"));
        let mut problems = Vec::new();
        // 3 (incomplete): a chain broke on stack memory gdb did not dump.
        if code != 0 && !(code == 3 && support::gdb_lost_memory(entry)) {
            problems.push(format!("{label}: exit {code}: {stderr}"));
        }
        let inferred = &report["layout_source"]["inferred"];
        if inferred["positions"] != "3.14" {
            problems.push(format!(
                "{label}: not inferred from the 3.14 positions: {}",
                report["layout_source"]
            ));
        }
        // A guessed layout is never a silent success.
        let warned = report["diagnostics"].as_array().unwrap().iter().any(|d| {
            d["severity"] == "warning"
                && d["source"] == "layout"
                && d["message"].as_str().unwrap().contains("may be wrong")
        });
        if !warned {
            problems.push(format!(
                "{label}: no layout warning: {}",
                report["diagnostics"]
            ));
        }
        problems.extend(disagreements(entry, &report, &label));
        problems
    });
    support::assert_no_problems(&problems);
}

#[test]
fn the_inferred_layout_names_its_table_and_its_guesses() {
    if support::matrix_missing() {
        return;
    }
    let entry = cores("debian-3.15")
        .into_iter()
        .find(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
        .unwrap();
    let (code, report, stderr) = run("layout", &entry, Some("3.14"));
    assert_eq!(code, 0, "{stderr}");
    let errors = support::schema_violations(&report);
    assert!(errors.is_empty(), "{errors:#?}");
    let source = &report["layout"]["source"];
    assert_eq!(source["kind"], "debug_offsets", "{}", report["attempts"]);
    assert!(
        source["table"].as_str().unwrap().starts_with("3.14 "),
        "completed by the 3.14 table: {source}"
    );
    let inferred = &source["inferred"];
    assert_eq!(inferred["version"], "3.15");
    assert_eq!(inferred["positions"], "3.14");
    let guessed: Vec<&str> = inferred["guessed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    // 3.15's new section (heap_type_object) is not in 3.14's table of
    // positions: it cannot be placed.
    assert!(
        guessed.contains(&"heap_type_object.ht_cached_keys"),
        "{guessed:?}"
    );
    let used = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "debug_offsets")
        .unwrap()["outcome"]
        .as_str()
        .unwrap();
    assert!(
        used.contains("inferred") && used.contains("3.14 positions") && used.contains("guessed"),
        "{used}"
    );
    for member in &guessed {
        assert!(used.contains(member), "{member} is not named in {used}");
    }
    // Without the pretence the same core reads its own positions and table.
    let (_, plain, _) = run("layout", &entry, None);
    assert_eq!(plain["layout"]["source"]["kind"], "debug_offsets");
    assert!(plain["layout"]["source"].get("inferred").is_none());
}

#[test]
fn members_placed_from_the_debug_offsets_equal_dwarf() {
    if support::matrix_missing() {
        return;
    }
    for (interp, newest) in [("debian-3.15", "3.14"), ("debian-3.14", "3.13")] {
        let entry = cores(interp)
            .into_iter()
            .find(|e| e["scenario"] == "threads" && e["kind"] == "kernel")
            .unwrap();
        let (_, report, stderr) = run("layout", &entry, Some(newest));
        let layout = &report["layout"];
        assert!(
            layout["source"]["inferred"].is_object(),
            "{interp}: {stderr} {}",
            report["attempts"]
        );
        let t = tally(layout, &dwarf_layout(&entry));
        // The measurement, for the record (`--nocapture`).
        eprintln!(
            "{interp} read with tables up to {newest}: {} placed right, {} placed wrong, \
             {} guessed ({} of them right, {} wrong: {:?})",
            t.right.len(),
            t.wrong.len(),
            t.guessed_right.len() + t.guessed_wrong.len(),
            t.guessed_right.len(),
            t.guessed_wrong.len(),
            t.guessed_wrong
        );
        assert!(
            t.wrong.is_empty(),
            "{interp}: placed wrongly: {:#?}",
            t.wrong
        );
        assert!(
            t.right.len() > 40,
            "{interp}: only {} placed",
            t.right.len()
        );
    }
}
