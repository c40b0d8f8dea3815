//! Hostile strings from a core: control characters never reach a terminal
//! raw, CSV fields never start a formula, JSON keeps them exact; and the
//! error and warning texts of item 9 of issue 15.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Retitles the terminal, clears it, breaks the line and starts a CSV formula; 16 bytes,
/// the length of the scenario's `main_thread_body`, so that it can replace
/// the function name in place.
const HOSTILE_NAME: &str = "=\x1b]0;pwned\x07\x1b[2J\n";
const SCENARIO_FUNCTION: &str = "main_thread_body";
/// A file name whose newline forges a traceback line.
const FORGED_LINE: &str = "    File \"forged.py\", line 1, in evil";

/// The hostile PRPSINFO command name and arguments.
const HOSTILE_COMMAND: &str = "\x1b]0;pwned\x07\n";
const HOSTILE_ARGS: &str = "python\x1b[2J\nforged";

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    count
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Overwrite pr_fname and pr_psargs of the core's NT_PRPSINFO note.
fn patch_prpsinfo(core: &mut [u8], fname: &str, psargs: &str) {
    let phoff = u64_at(core, 32) as usize;
    let phnum = usize::from(u16::from_le_bytes([core[56], core[57]]));
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        if u32_at(core, ph) != 4 {
            continue;
        }
        let (start, size) = (
            u64_at(core, ph + 8) as usize,
            u64_at(core, ph + 32) as usize,
        );
        let mut at = start;
        while at + 12 <= start + size {
            let (namesz, descsz, n_type) = (
                u32_at(core, at) as usize,
                u32_at(core, at + 4) as usize,
                u32_at(core, at + 8),
            );
            let desc = at + 12 + namesz.next_multiple_of(4);
            if n_type == 3 && &core[at + 12..at + 16] == b"CORE" {
                // x86-64 elf_prpsinfo: pr_fname[16] at 40, pr_psargs[80] at 56.
                core[desc + 40..desc + 56].fill(0);
                core[desc + 40..desc + 40 + fname.len()].copy_from_slice(fname.as_bytes());
                core[desc + 56..desc + 136].fill(0);
                core[desc + 56..desc + 56 + psargs.len()].copy_from_slice(psargs.as_bytes());
                return;
            }
            at = desc + descsz.next_multiple_of(4);
        }
    }
    panic!("the core has no NT_PRPSINFO note");
}

/// A copy of the 3.11 `threads` kernel core whose main thread's function
/// is named [`HOSTILE_NAME`], whose script's file name holds a newline and
/// a forged traceback line, and whose command name and arguments hold
/// escape sequences and newlines. Returns the entry, the core, and the
/// forged file name.
fn hostile_core(dir: &Path) -> (Value, PathBuf, String) {
    let entry = support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "pyenv-3.11.7" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("the pyenv-3.11.7 threads kernel core in the manifest");
    let truth = support::truth(&entry);
    let script = truth["crash_frame"]["file"].as_str().unwrap().to_string();
    assert_eq!(truth["crash_frame"]["function"], SCENARIO_FUNCTION);
    let mut forged = format!("x.py\n{FORGED_LINE}\n");
    assert!(forged.len() <= script.len(), "the script path is too short");
    while forged.len() < script.len() {
        forged.insert(0, 'a');
    }
    let mut core = std::fs::read(entry["core"].as_str().unwrap()).unwrap();
    assert!(
        replace_all(
            &mut core,
            SCENARIO_FUNCTION.as_bytes(),
            HOSTILE_NAME.as_bytes()
        ) > 0
    );
    assert!(replace_all(&mut core, script.as_bytes(), forged.as_bytes()) > 0);
    patch_prpsinfo(&mut core, HOSTILE_COMMAND, HOSTILE_ARGS);
    let path = support::write_temp(dir, "hostile.core", &core);
    (entry, path, forged)
}

fn run(entry: &Value, command: &[&str], core: &Path) -> (i32, String, String) {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(support::search_args(entry));
    args.push(core.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::pymortem(&args)
}

/// Every way a text output lets a control character or a forged line through.
fn raw_controls(what: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(c) = text.chars().find(|&c| c != '\n' && c.is_control()) {
        problems.push(format!("{what}: raw control character {c:?} in the output"));
    }
    for line in text.lines() {
        if line.trim_start().starts_with(FORGED_LINE.trim_start()) {
            problems.push(format!("{what}: a forged line: {line:?}"));
        }
        if line.starts_with("forged") {
            problems.push(format!(
                "{what}: the command's newline started a line: {line:?}"
            ));
        }
    }
    problems
}

#[test]
fn core_strings_are_escaped_in_text_and_exact_in_json() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (entry, core, forged) = hostile_core(dir.path());
    let mut problems = Vec::new();
    let escaped_name = "=\\x1b]0;pwned\\x07\\x1b[2J\\n";

    let (code, out, err) = run(&entry, &["threads", "--locals"], &core);
    assert!(code == 0 || code == 3, "threads exit {code}: {err}");
    problems.extend(raw_controls("threads", &out));
    problems.extend(raw_controls("threads stderr", &err));
    if !out.contains(&format!("in {escaped_name}")) {
        problems.push(format!(
            "threads: the hostile name is not shown escaped:\n{out}"
        ));
    }
    if !out.contains(&format!("x.py\\n{FORGED_LINE}\\n\", line")) {
        problems.push(format!(
            "threads: the forged file name is not shown escaped:\n{out}"
        ));
    }

    for command in [&["threads", "--native"][..], &["info"], &["check"]] {
        let (code, out, err) = run(&entry, command, &core);
        assert!(code != 2, "{command:?} exit {code}: {err}");
        problems.extend(raw_controls(&format!("{command:?}"), &out));
        problems.extend(raw_controls(&format!("{command:?} stderr"), &err));
    }
    let (_, info, _) = run(&entry, &["info"], &core);
    if !info.contains("\\x1b]0;pwned\\x07\\n") || !info.contains("python\\x1b[2J\\nforged") {
        problems.push(format!("info: the command is not shown escaped:\n{info}"));
    }

    // JSON: exact strings.
    let (_, json, _) = run(&entry, &["threads", "--json"], &core);
    let report: Value = serde_json::from_str(&json).unwrap();
    let frames: Vec<&Value> = report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["thread_states"].as_array().into_iter().flatten())
        .flat_map(|s| s["frames"].as_array().into_iter().flatten())
        .collect();
    if !frames
        .iter()
        .any(|f| f["function"] == HOSTILE_NAME && f["file"] == forged.as_str())
    {
        problems.push("threads --json: no frame with the exact hostile name and file".into());
    }
    let (_, json, _) = run(&entry, &["info", "--json"], &core);
    let report: Value = serde_json::from_str(&json).unwrap();
    if report["command"] != HOSTILE_COMMAND.trim_end_matches('\n')
        && report["command"] != HOSTILE_COMMAND
    {
        problems.push(format!(
            "info --json: command {} is not exact",
            report["command"]
        ));
    }
    support::assert_no_problems(&problems);
}

/// Split one CSV line into its fields, unquoted.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[test]
fn triage_escapes_text_and_guards_csv_formulas() {
    if support::matrix_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (entry, core, _) = hostile_core(dir.path());
    let mut problems = Vec::new();

    let (code, out, err) = run(&entry, &["triage"], &core);
    assert_eq!(code, 0, "triage: {err}");
    problems.extend(raw_controls("triage", &out));
    problems.extend(raw_controls("triage stderr", &err));

    let (code, csv, err) = run(&entry, &["triage", "--csv"], &core);
    assert_eq!(code, 0, "triage --csv: {err}");
    problems.extend(raw_controls("triage --csv", &csv));
    assert_eq!(csv.lines().count(), 2, "one header and one row:\n{csv}");
    let row = csv_fields(csv.lines().nth(1).unwrap());
    for field in &row {
        if field.starts_with(['=', '+', '-', '@']) {
            problems.push(format!("triage --csv: a formula field {field:?}"));
        }
    }
    if !row.iter().any(|f| f.starts_with("'=\\x1b]0;pwned")) {
        problems.push(format!(
            "triage --csv: the hostile frame is not shown guarded: {row:?}"
        ));
    }

    let (_, json, _) = run(&entry, &["triage", "--json"], &core);
    let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    if !first["python_frames"].as_array().is_some_and(|f| {
        f.iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains(HOSTILE_NAME)))
    }) {
        problems.push(format!(
            "triage --json: the exact name is not among {}",
            first["python_frames"]
        ));
    }
    support::assert_no_problems(&problems);
}

const NOT_A_CORE_HINT: &str = "check that the file is an ELF core";

#[test]
fn temp_dir_errors_carry_no_not_a_core_hint() {
    let dir = tempfile::tempdir().unwrap();
    // A valid zstd stream of some bytes: the core is fine, the temp dir is not.
    let packed = zstd::encode_all(&b"\x7fELF not much of a core"[..], 3).unwrap();
    let core = support::write_temp(dir.path(), "core.zst", &packed);
    let missing = dir.path().join("no-such-dir");
    let (code, _, err) = support::pymortem(&[
        "info",
        "--temp-dir",
        missing.to_str().unwrap(),
        core.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("temp file"), "{err}");
    assert!(
        !err.contains(NOT_A_CORE_HINT),
        "a temp dir error with the not-a-core hint: {err}"
    );

    // A file that is read and is not a core keeps the hint.
    let text = support::write_temp(dir.path(), "notes.txt", b"just some text\n");
    let (code, _, err) = support::pymortem(&["info", text.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(NOT_A_CORE_HINT), "{err}");
}

#[test]
fn triage_errors_name_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let packed = zstd::encode_all(&b"\x7fELF not much of a core"[..], 3).unwrap();
    let core = support::write_temp(dir.path(), "core.python.1000.zst", &packed);
    let missing = dir.path().join("no-such-dir");
    let (_, out, err) = support::pymortem(&[
        "triage",
        "--temp-dir",
        missing.to_str().unwrap(),
        core.to_str().unwrap(),
    ]);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{out}{err}");
    let expected = format!("error: {}: ", core.display());
    assert!(
        lines[0].starts_with(&expected),
        "{:?} does not name the core",
        lines[0]
    );
    assert!(!lines[0].contains(NOT_A_CORE_HINT), "{}", lines[0]);
}

/// An ELF core whose first note segment holds more notes than the cap, and
/// which has `extra` more note segments of one note each.
fn note_flood(extra: usize) -> Vec<u8> {
    const NOTES: usize = (1 << 20) + 1;
    let phnum = 1 + extra;
    let data_at = 64 + 56 * phnum;
    let flood_len = 12 * NOTES;
    let mut out = vec![0u8; data_at];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    let note_phdr = |out: &mut Vec<u8>, i: usize, offset: usize, size: usize| {
        let at = 64 + 56 * i;
        out[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&(offset as u64).to_le_bytes());
        out[at + 32..at + 40].copy_from_slice(&(size as u64).to_le_bytes());
        out[at + 48..at + 56].copy_from_slice(&4u64.to_le_bytes());
    };
    note_phdr(&mut out, 0, data_at, flood_len);
    for i in 1..phnum {
        note_phdr(&mut out, i, data_at, 12);
    }
    // Empty notes: namesz, descsz and type all 0.
    out.resize(data_at + flood_len, 0);
    out
}

#[test]
fn the_note_cap_is_reported_once_per_core() {
    let dir = tempfile::tempdir().unwrap();
    let core = support::write_temp(dir.path(), "flood.core", &note_flood(90));
    let (code, out, err) = support::pymortem(&["info", "--json", core.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let warnings = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("notes; the rest are ignored"))
        })
        .count();
    assert_eq!(warnings, 1, "{:#}", report["diagnostics"]);
}
