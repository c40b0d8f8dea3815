//! `pymortem triage` over a folder of mixed scenario cores: several versions,
//! kernel and gcore, plain and zstd-compressed (systemd-coredump names), one
//! truncated core and one garbage file. Every file appears once; cores of one
//! scenario and version share a group; different scenarios never do.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

const SCENARIOS: [&str; 8] = [
    "threads",
    "recursion",
    "generator",
    "double_free",
    "use_after_free",
    "gc_already_tracked",
    "segfault",
    "segfault_faulthandler",
];
const INTERPRETERS: [&str; 4] = [
    "pyenv-2.7.18",
    "pyenv-3.7.16",
    "pyenv-3.11.7",
    "pyenv-3.13.0",
];

/// A hard link (the folder is on the cores' file system), else a copy.
fn place(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn a_mixed_folder_is_grouped_by_scenario_and_version() {
    if support::matrix_missing() {
        return;
    }
    let target = support::repo().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let manifest = support::manifest();
    // file name -> (scenario, interpreter), from the manifest, not from pymortem.
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut compressed = 0;
    for e in manifest.iter().filter(|e| {
        SCENARIOS.contains(&e["scenario"].as_str().unwrap())
            && INTERPRETERS.contains(&e["interp"].as_str().unwrap())
    }) {
        let (scenario, interp, kind) = (
            e["scenario"].as_str().unwrap(),
            e["interp"].as_str().unwrap(),
            e["kind"].as_str().unwrap(),
        );
        let core = PathBuf::from(e["core"].as_str().unwrap());
        // Every gcore of 3.11 as systemd-coredump writes it: zstd, its naming.
        let name = if kind == "gcore" && interp == "pyenv-3.11.7" {
            compressed += 1;
            let name = format!(
                "core.python3\\x2e11.0.0123456789abcdef0123456789abcdef.{}.{}.zst",
                1000 + compressed,
                1_790_000_000_000_000u64 + compressed * 1_000_000
            );
            let raw = std::fs::read(&core).unwrap();
            std::fs::write(
                dir.path().join(&name),
                zstd::encode_all(&raw[..], 1).unwrap(),
            )
            .unwrap();
            name
        } else {
            let sub = dir.path().join(interp);
            std::fs::create_dir_all(&sub).unwrap();
            let name = format!("{scenario}.{kind}.core");
            place(&core, &sub.join(&name));
            format!("{interp}/{name}")
        };
        expected.insert(name, (scenario.to_string(), interp.to_string()));
    }
    assert_eq!(expected.len(), SCENARIOS.len() * INTERPRETERS.len() * 2);
    // One truncated core, one garbage file, one file that is not a core.
    let threads = dir.path().join("pyenv-3.13.0/threads.kernel.core");
    let bytes = std::fs::read(&threads).unwrap();
    std::fs::write(dir.path().join("cut.core"), &bytes[..bytes.len() * 3 / 5]).unwrap();
    std::fs::write(
        dir.path().join("garbage.core"),
        b"this is not a core at all".repeat(100),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), b"notes").unwrap();

    let folder = dir.path().to_string_lossy().into_owned();
    let (code, stdout, stderr) = support::pymortem(&["triage", "--json", &folder]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, rows) = lines.split_last().unwrap();
    assert_eq!(summary["schema"], "triage");

    let relative = |v: &Value| {
        Path::new(v["path"].as_str().unwrap())
            .strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut seen = BTreeSet::new();
    for row in rows {
        assert!(seen.insert(relative(row)), "{} twice", relative(row));
    }
    let mut all: BTreeSet<String> = expected.keys().cloned().collect();
    all.extend(["cut.core", "garbage.core", "README.txt"].map(String::from));
    assert_eq!(seen, all, "every file exactly once");

    let by_name: BTreeMap<String, &Value> = rows.iter().map(|r| (relative(r), r)).collect();
    assert!(
        by_name["garbage.core"]["error"].is_string(),
        "{}",
        by_name["garbage.core"]
    );
    assert!(by_name["README.txt"]["skipped"].is_string());
    assert!(
        by_name["cut.core"]["error"].is_string() || by_name["cut.core"]["signature"].is_string()
    );

    let mut problems = Vec::new();
    let mut group_of_case: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut scenario_of_group: BTreeMap<String, String> = BTreeMap::new();
    for (name, (scenario, interp)) in &expected {
        let row = by_name[name];
        let Some(signature) = row["signature"].as_str() else {
            problems.push(format!("{name}: {row}"));
            continue;
        };
        let case = (scenario.clone(), interp.clone());
        match group_of_case.get(&case) {
            Some(g) if g != signature => {
                problems.push(format!("{name}: {signature}, its other core {g}"))
            }
            _ => {
                group_of_case.insert(case, signature.to_string());
            }
        }
        match scenario_of_group.get(signature) {
            Some(s) if s != scenario => problems.push(format!(
                "{name}: group {signature} holds {s} and {scenario}"
            )),
            _ => {
                scenario_of_group.insert(signature.to_string(), scenario.clone());
            }
        }
    }
    support::assert_no_problems(&problems);
    assert!(compressed >= 8);
}
