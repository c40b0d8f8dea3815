//! Every command's `--json` output validates against the machine-checkable
//! schema `docs/schema/pymortem-v1.schema.json` (JSON Schema draft 2020-12),
//! on real cores of 2.7, 3.11, 3.12 and 3.14 (pyenv builds and Debian
//! packages read through a sysroot), on a synthetic core and on truncated
//! copies; and the validator is shown to reject a broken report.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use support::{schema, schema_validator as validator};

/// Every validation error of `doc` as `label: instance path: message (schema path)`.
fn violations(label: &str, doc: &Value) -> Vec<String> {
    validator()
        .iter_errors(doc)
        .map(|e| {
            format!(
                "{label}: at '{}': {e} (schema {})",
                e.instance_path().as_str(),
                e.schema_path().as_str()
            )
        })
        .collect()
}

/// The generated cores' manifest, read once.
fn manifest() -> &'static [Value] {
    static MANIFEST: OnceLock<Vec<Value>> = OnceLock::new();
    MANIFEST.get_or_init(support::manifest)
}

/// The manifest entry of a generated core; missing cores fail the test.
fn entry(interp: &str, scenario: &str, kind: &str) -> &'static Value {
    manifest()
        .iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == kind)
        .unwrap_or_else(|| {
            panic!(
                "no {interp} {scenario} {kind} core in the manifest: regenerate the sample cores"
            )
        })
}

fn core_path(e: &Value) -> String {
    let core = e["core"]
        .as_str()
        .expect("manifest entry has a core")
        .to_string();
    assert!(
        Path::new(&core).is_file(),
        "{core} is missing: regenerate the sample cores"
    );
    core
}

/// One pymortem run whose stdout is one JSON document.
struct Run {
    label: String,
    args: Vec<String>,
    /// Exit codes that are right for it.
    codes: &'static [i32],
}

/// Run it, parse its output and validate it; `Ok` holds the document.
fn run_and_validate(run: &Run) -> Result<Value, Vec<String>> {
    let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    let label = &run.label;
    if !run.codes.contains(&code) {
        return Err(vec![format!(
            "{label}: exit {code}, expected one of {:?}: {stderr}",
            run.codes
        )]);
    }
    let doc: Value = serde_json::from_str(&stdout)
        .map_err(|e| vec![format!("{label}: not one JSON document: {e}: {stderr}")])?;
    let mut problems = violations(label, &doc);
    // Each command's report names itself.
    if doc["schema"] != run.args[0].as_str() {
        problems.push(format!("{label}: schema {}", doc["schema"]));
    }
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(problems)
    }
}

/// Run every job on four threads and fail with every problem found;
/// returns how many documents validated.
fn run_all(runs: &[Run], check: impl Fn(&Run, &Value) -> Vec<String> + Sync) -> usize {
    let validated = AtomicUsize::new(0);
    let problems = support::parallel(runs, |run| match run_and_validate(run) {
        Ok(doc) => {
            validated.fetch_add(1, Ordering::Relaxed);
            check(run, &doc)
        }
        Err(problems) => problems,
    });
    support::assert_no_problems(&problems);
    let n = validated.into_inner();
    assert_eq!(n, runs.len(), "every run was validated");
    n
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The tuple the corrupt scenarios free twice, from their truth file.
fn victim(e: &Value) -> u64 {
    let path = e["truth"]
        .as_str()
        .expect("manifest entry has a truth file");
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let truth: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    truth["objects"]["victim_tuple"]
        .as_u64()
        .unwrap_or_else(|| panic!("{path}: no objects.victim_tuple"))
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::meta::validate(schema) {
        panic!(
            "the schema breaks the 2020-12 meta-schema at '{}': {e}",
            e.instance_path().as_str()
        );
    }
    validator();
}

/// Every command on real cores: 2.7, 3.12 and 3.14 (through a sysroot) for
/// the threads, double-free and already-tracked scenarios, a gcore core,
/// 3.11 Debian packages with separate debug files, and the double free on
/// every other interpreter of the manifest.
#[test]
fn every_command_validates_on_real_cores() {
    if support::matrix_missing() {
        return;
    }
    let cores = [
        ("pyenv-2.7.18", "threads", "kernel"),
        ("pyenv-2.7.18", "double_free", "kernel"),
        ("pyenv-2.7.18", "gc_already_tracked", "kernel"),
        ("pyenv-3.12.1", "threads", "kernel"),
        ("pyenv-3.12.1", "threads", "gcore"),
        ("pyenv-3.12.1", "double_free", "kernel"),
        ("pyenv-3.12.1", "gc_already_tracked", "kernel"),
        ("debian-3.11", "double_free", "kernel"),
        ("debian-3.14", "threads", "kernel"),
        ("debian-3.14", "double_free", "kernel"),
        ("debian-3.14", "gc_already_tracked", "kernel"),
    ];
    // And the double free on every other interpreter the manifest has.
    let mut others: Vec<&str> = manifest()
        .iter()
        .filter_map(|e| e["interp"].as_str())
        .filter(|interp| !cores.iter().any(|c| c.0 == *interp))
        .collect();
    others.sort();
    others.dedup();
    let cores = cores.into_iter().chain(others.into_iter().map(|interp| {
        // The arm64 interpreters have QEMU's cores, with no kernel's.
        let kind = if support::ARM64_INTERPRETERS.contains(&interp) {
            "qemu"
        } else {
            "kernel"
        };
        (interp, "double_free", kind)
    }));
    let mut runs = Vec::new();
    for (interp, scenario, kind) in cores {
        let e = entry(interp, scenario, kind);
        let core = core_path(e);
        let search = support::search_args(e);
        let commands: [(&[&str], &'static [i32]); 7] = [
            (&["info"], &[0]),
            (&["layout"], &[0]),
            (&["threads"], &[0]),
            (&["threads", "--native", "--locals"], &[0]),
            (&["check"], &[0, 1]),
            (&["freelists"], &[0, 1]),
            (&["gc"], &[0, 1]),
        ];
        for (command, codes) in commands {
            let mut args = strings(command);
            args.push("--json".into());
            args.extend(search.iter().cloned());
            args.push(core.clone());
            runs.push(Run {
                label: format!("{interp} {scenario} {kind}: {}", command.join(" ")),
                args,
                codes,
            });
        }
        if scenario != "threads" {
            let mut args = strings(&["object", "--json"]);
            args.extend(search.iter().cloned());
            args.push(core.clone());
            args.push(format!("{:#x}", victim(e)));
            runs.push(Run {
                label: format!("{interp} {scenario} {kind}: object victim"),
                args,
                codes: &[0],
            });
        }
    }
    let with_findings = std::sync::Mutex::new(Vec::new());
    let n = run_all(&runs, |run, doc| {
        let mut problems = Vec::new();
        let native = run.args.iter().any(|a| a == "--native");
        if doc["schema"] == "threads" {
            let stacks = doc["threads"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t.get("stack").is_some())
                .count();
            if native != (stacks > 0) {
                problems.push(format!(
                    "{}: {stacks} threads have a native stack",
                    run.label
                ));
            }
        }
        let findings = doc["findings"].as_array().map_or(0, Vec::len);
        if findings > 0 {
            with_findings.lock().unwrap().push(run.label.clone());
        }
        problems
    });
    // The corrupt scenarios exercise the findings' shapes in every report
    // that has them: a double free shows in check and freelists (its GC
    // lists stay intact), an object handed out twice in gc.
    let with_findings = with_findings.into_inner().unwrap();
    for label in [
        "pyenv-2.7.18 double_free kernel: check",
        "pyenv-2.7.18 double_free kernel: freelists",
        "pyenv-2.7.18 gc_already_tracked kernel: gc",
        "pyenv-3.12.1 double_free kernel: check",
        "pyenv-3.12.1 double_free kernel: freelists",
        "pyenv-3.12.1 gc_already_tracked kernel: gc",
        "debian-3.14 double_free kernel: check",
        "debian-3.14 double_free kernel: freelists",
        "pyenv-3.12.1 double_free kernel: object victim",
    ] {
        assert!(
            with_findings.iter().any(|l| l == label),
            "{label} has findings; reports with findings: {with_findings:?}"
        );
    }
    eprintln!("validated {n} documents from real cores");
}

/// `info`, `threads`, `check` and `gc` on a synthetic core without Python, on a
/// kernel core cut to two thirds (notes kept) and on a gcore core cut the
/// same way (notes lost): the null and error shapes.
#[test]
fn damaged_and_synthetic_cores_validate() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cores: Vec<PathBuf> = vec![support::write_temp(
        dir.path(),
        "synthetic.core",
        &support::synth::sample().build(),
    )];
    for kind in ["kernel", "gcore"] {
        let e = entry("pyenv-3.11.7", "threads", kind);
        let bytes = std::fs::read(core_path(e)).unwrap();
        cores.push(support::write_temp(
            dir.path(),
            &format!("cut-{kind}.core"),
            &bytes[..bytes.len() * 2 / 3],
        ));
    }
    let mut runs = Vec::new();
    for core in &cores {
        let name = core.file_name().unwrap().to_string_lossy().into_owned();
        let core = core.to_string_lossy().into_owned();
        let commands: [(&[&str], &'static [i32]); 4] = [
            (&["info"], &[0]),
            // No Python found: 2; stacks cut where the core ends: 3.
            (&["threads", "--native", "--locals"], &[0, 2, 3]),
            // Without an interpreter the checks cannot run: exit 2, with a
            // report; with one whose lists the cut core lacks: 3 (incomplete).
            (&["check"], &[0, 1, 2, 3]),
            (&["gc"], &[0, 1, 2, 3]),
        ];
        for (command, codes) in commands {
            let mut args = strings(command);
            args.extend(["--json".to_string(), core.clone()]);
            runs.push(Run {
                label: format!("{name}: {}", command.join(" ")),
                args,
                codes,
            });
        }
    }
    let truncated = AtomicUsize::new(0);
    let n = run_all(&runs, |_, doc| {
        if doc["schema"] == "info" && doc["core"]["truncated"].is_object() {
            truncated.fetch_add(1, Ordering::Relaxed);
        }
        Vec::new()
    });
    assert_eq!(
        truncated.into_inner(),
        2,
        "both cut cores report their truncation"
    );
    eprintln!("validated {n} documents from synthetic and truncated cores");
}

/// Layouts from each source: DWARF for a binary (no runtime), the built-in
/// table (no debug information under an empty sysroot) and `_Py_DebugOffsets`
/// (3.14 without its debug files).
#[test]
fn layouts_from_every_source_validate() {
    if support::matrix_missing() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_string_lossy().into_owned();
    let py311 = entry("pyenv-3.11.7", "threads", "kernel");
    let deb314 = entry("debian-3.14", "threads", "kernel");
    let lib = py311["libpython"]
        .as_str()
        .expect("manifest names libpython");
    let cases: [(&str, Vec<String>); 3] = [
        ("dwarf", strings(&["--python-version", "3.11.7", lib])),
        (
            "table",
            vec![
                "--sysroot".into(),
                empty.clone(),
                "--no-default-debug-dir".into(),
                core_path(py311),
            ],
        ),
        (
            "debug_offsets",
            vec![
                "--sysroot".into(),
                deb314["sysroot"].as_str().unwrap().into(),
                "--no-default-debug-dir".into(),
                core_path(deb314),
            ],
        ),
    ];
    let runs: Vec<Run> = cases
        .iter()
        .map(|(source, rest)| {
            let mut args = strings(&["layout", "--json", "--no-cache"]);
            args.extend(rest.iter().cloned());
            Run {
                label: format!("layout from {source}"),
                args,
                codes: &[0],
            }
        })
        .collect();
    let n = run_all(&runs, |run, doc| {
        let source = run.label.trim_start_matches("layout from ");
        if doc["layout"]["source"]["kind"] == source {
            Vec::new()
        } else {
            vec![format!("{}: source {}", run.label, doc["layout"]["source"])]
        }
    });
    eprintln!("validated {n} layout documents");
}

/// `triage --json` prints JSON lines: each core, an unreadable core, skipped
/// files, then the summary; every line validates.
#[test]
fn triage_json_lines_validate() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.core"), b"garbage").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"notes").unwrap();
    let folder = dir.path().to_string_lossy().into_owned();
    let pyenv: Vec<String> = [
        ("pyenv-2.7.18", "double_free"),
        ("pyenv-3.12.1", "gc_already_tracked"),
        ("pyenv-3.12.1", "threads"),
    ]
    .iter()
    .map(|(interp, scenario)| core_path(entry(interp, scenario, "kernel")))
    .collect();
    let deb = entry("debian-3.14", "double_free", "kernel");
    let mut deb_args = strings(&["triage", "--json"]);
    deb_args.extend(support::search_args(deb));
    deb_args.push(core_path(deb));
    let mut pyenv_args = strings(&["triage", "--json"]);
    pyenv_args.extend(pyenv.iter().cloned());
    pyenv_args.push(folder);
    let mut validated = 0;
    let mut problems = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (args, cores, skipped) in [(pyenv_args, 4, 1), (deb_args, 1, 0)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = support::pymortem(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            cores + skipped + 1,
            "one line per core and skipped file, then the summary:\n{stdout}"
        );
        for (i, line) in lines.iter().enumerate() {
            let doc: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("triage line {i} is not JSON: {e}: {line}"));
            problems.extend(violations(&format!("triage line {i}"), &doc));
            validated += 1;
            let kind = if doc.get("schema").is_some() {
                assert_eq!(i, lines.len() - 1, "the summary comes last");
                assert_eq!(doc["cores"], cores, "{line}");
                assert_eq!(doc["skipped"], skipped, "{line}");
                "summary"
            } else if doc.get("error").is_some() {
                "error"
            } else if doc.get("skipped").is_some() {
                "skipped"
            } else {
                "core"
            };
            kinds.insert(kind);
        }
    }
    support::assert_no_problems(&problems);
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["core", "error", "skipped", "summary"]
    );
    eprintln!("validated {validated} triage lines");
}

/// The validator is live: a real `check` report with an unknown key in a
/// finding and an address written as a hex string fails, at those paths.
#[test]
fn a_broken_report_is_rejected_where_it_is_broken() {
    if support::matrix_missing() {
        return;
    }
    let e = entry("pyenv-3.12.1", "double_free", "kernel");
    let core = core_path(e);
    let (code, stdout, stderr) = support::pymortem(&["check", "--json", &core]);
    assert_eq!(code, 1, "{stderr}");
    let mut doc: Value = serde_json::from_str(&stdout).unwrap();
    support::assert_no_problems(&violations("check", &doc));

    let finding = &mut doc["findings"][0];
    assert!(finding.is_object(), "the double free has findings");
    let address = finding["address"].as_u64().expect("an integer address");
    finding["address"] = Value::from(format!("{address:#x}"));
    finding["suspected_by"] = Value::from("an unknown key");

    let errors: Vec<(String, String)> = validator()
        .iter_errors(&doc)
        .map(|e| (e.instance_path().as_str().to_string(), e.to_string()))
        .collect();
    let report = errors
        .iter()
        .map(|(path, message)| format!("'{path}': {message}"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!validator().is_valid(&doc), "the broken report validates");
    assert!(
        errors
            .iter()
            .any(|(path, message)| path == "/findings/0/address" && message.contains("integer")),
        "no type error at /findings/0/address:\n{report}"
    );
    assert!(
        errors
            .iter()
            .any(|(path, message)| path == "/findings/0" && message.contains("suspected_by")),
        "no unknown-key error at /findings/0:\n{report}"
    );
    assert_eq!(
        errors.len(),
        2,
        "exactly the two breakages are reported:\n{report}"
    );
}
