//! "clean" means every check ran: a core read without the interpreter's files
//! is *incomplete* (exit code 3) in every command, says what was not checked
//! and that the missing piece is the sysroot, not a debug file.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;

const SAMPLE: &str = "pyenv-2.7.18-double_free";
const EXIT_INCOMPLETE: i32 = 3;

/// The sample's core alone, without the files its bundle carries.
struct BareCore {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl BareCore {
    fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

fn core() -> BareCore {
    let dir = tempfile::tempdir().unwrap();
    let path = support::bundles::extract_core(
        &support::bundles::sample(SAMPLE),
        dir.path(),
        &format!("{SAMPLE}.core.zst"),
    );
    BareCore { _dir: dir, path }
}

fn truth() -> Value {
    support::bundles::sample_truth(SAMPLE)
}

/// Arguments that read the sample with nothing of the machine it came from:
/// an empty sysroot, no debug folders.
fn without_files(command: &str, empty: &Path, scratch: &Path) -> Vec<String> {
    vec![
        command.to_string(),
        "--no-default-debug-dir".to_string(),
        "--temp-dir".to_string(),
        scratch.display().to_string(),
        "--sysroot".to_string(),
        empty.display().to_string(),
    ]
}

fn run(args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::pymortem(&args)
}

#[test]
fn check_without_the_interpreters_files_is_incomplete_not_clean() {
    let empty = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut args = without_files("check", empty.path(), scratch.path());
    args.push("--json".into());
    let bare = core();
    args.push(bare.display().to_string());
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, EXIT_INCOMPLETE, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let verdict = &report["verdict"];
    assert_eq!(verdict["status"], "incomplete", "{verdict}");
    let unchecked = verdict["unchecked"].as_array().unwrap();
    let checks: Vec<&str> = unchecked
        .iter()
        .map(|u| u["check"].as_str().unwrap())
        .collect();
    for needed in ["free_lists", "gc_lists"] {
        assert!(checks.contains(&needed), "{needed} not listed: {checks:?}");
    }
    // The interpreter's file is what is missing: the remedy is the sysroot.
    for u in unchecked {
        let remedy = u["remedy"].as_str().unwrap();
        assert!(remedy.contains("--sysroot"), "{remedy}");
        assert!(!remedy.contains("--debug-dir"), "{remedy}");
        assert!(!u["reason"].as_str().unwrap().is_empty());
    }
    let severe = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "note")
        .count();
    assert_eq!(severe, 0, "nothing could be checked, so nothing is found");

    // The text says it too.
    args.retain(|a| a != "--json");
    let (code, text, _) = run(&args);
    assert_eq!(code, EXIT_INCOMPLETE);
    assert!(text.contains("Verdict (incomplete)"), "{text}");
    assert!(text.contains("Not checked"), "{text}");
    assert!(!text.contains("Verdict (clean)"), "{text}");
}

#[test]
fn every_command_exits_incomplete_without_the_files() {
    let empty = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let victim = truth()["objects"]["victim_tuple"].as_u64().unwrap();
    // (`threads` reads every frame without the files: its exit 3 is for a
    // walk that stops early, tests/it/threads_damage.rs.)
    for (command, extra) in [
        ("freelists", None),
        ("gc", None),
        ("object", Some(format!("{victim:#x}"))),
    ] {
        let mut args = without_files(command, empty.path(), scratch.path());
        let bare = core();
        args.push(bare.display().to_string());
        args.extend(extra);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, EXIT_INCOMPLETE, "{command}: {stdout}\n{stderr}");
    }
}

#[test]
fn with_its_files_the_same_core_is_checked_in_full() {
    let scratch = tempfile::tempdir().unwrap();
    let args = vec![
        "check".to_string(),
        "--json".to_string(),
        "--temp-dir".to_string(),
        scratch.path().display().to_string(),
        support::bundles::sample(SAMPLE).display().to_string(),
    ];
    let (code, stdout, stderr) = run(&args);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let verdict = &report["verdict"];
    assert_eq!(verdict["unchecked"], Value::Array(Vec::new()), "{stderr}");
    // The scenario's victim is found: findings outrank incompleteness.
    assert_eq!(code, 1);
    assert_eq!(verdict["status"], "corrupt");
    let victim = truth()["objects"]["victim_tuple"].as_u64().unwrap();
    assert!(
        verdict["victims"]
            .as_array()
            .unwrap()
            .contains(&victim.into())
    );
}

#[test]
fn triage_fails_on_incomplete_cores_when_asked() {
    let empty = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(
        &core().path,
        folder.path().join(format!("{SAMPLE}.core.zst")),
    )
    .unwrap();
    let base = |fail_on: &str| {
        let mut args = without_files("triage", empty.path(), scratch.path());
        args.extend([
            "--json".to_string(),
            "--fail-on".to_string(),
            fail_on.to_string(),
            folder.path().display().to_string(),
        ]);
        args
    };
    let (code, stdout, stderr) = run(&base("incomplete"));
    assert_eq!(code, 1, "{stderr}");
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["verdict"], "incomplete", "{first}");
    assert!(!first["unchecked"].as_array().unwrap().is_empty());
    // Nothing was found, so failing on findings alone passes.
    let (code, _, stderr) = run(&base("findings"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn freed_tuples_example_does_not_claim_none_without_the_lists() {
    let empty = tempfile::tempdir().unwrap();
    let bare = core();
    let core = bare.display().to_string();
    let sysroot = empty.path().display().to_string();
    let (code, stdout, stderr) = support::example("freed_tuples", &[&core, "--sysroot", &sysroot]);
    assert_eq!(code, EXIT_INCOMPLETE, "{stdout}\n{stderr}");
    assert!(stdout.contains("incomplete"), "{stdout}");
    assert!(!stdout.contains("0 freed tuples"), "{stdout}");
}
