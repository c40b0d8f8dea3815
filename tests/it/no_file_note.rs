//! Cores without an `NT_FILE` note (gcore cores whose notes were cut, cores
//! from other tools): the module list comes back from the dynamic linker's
//! `r_debug`/`link_map` list in memory, and everything built on it with it.
//!
//! Real cores of the sample matrix (pyenv builds and Debian packages read
//! through a sysroot; kernel and gcore cores) are copied with the `NT_FILE`
//! note cut out of their note segment by a small writer here; pymortem must
//! then report the same ELF modules (base, end, bias, build-id, the same
//! files and debug files), the same native and Python stacks and the same
//! findings, and say where the list came from. A second copy also lacks
//! every module's code and ELF header pages, as the cores QEMU writes do:
//! the headers and the code then come from the modules' files, with the
//! same results. Synthetic cores whose chain is a cycle or points at
//! garbage must end, promptly, with a diagnostic.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::synth::{PF_R, PF_W, PF_X, SynthCore};

/// `NT_FILE`'s note type (`"FILE"`).
const NT_FILE: u32 = 0x4649_4c45;

/// The cores tried: a pyenv build and a Debian package (through a
/// sysroot), each as a kernel core and as a gcore core; scenarios with
/// threads, native frames in libc, and findings.
const CORES: [(&str, &str, &str); 4] = [
    ("pyenv-3.12.1", "threads", "kernel"),
    ("pyenv-2.7.18", "double_free", "gcore"),
    ("debian-3.13", "use_after_free", "kernel"),
    ("debian-3.14", "threads", "gcore"),
];

/// The manifest entry of a matrix core; a missing one fails the test.
fn entry(manifest: &[Value], interp: &str, scenario: &str, kind: &str) -> Value {
    let found = manifest
        .iter()
        .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == kind)
        .unwrap_or_else(|| {
            panic!(
                "no {interp} {scenario} {kind} core in the manifest: regenerate the sample cores"
            )
        });
    let core = found["core"].as_str().unwrap();
    assert!(
        Path::new(core).is_file(),
        "{core} is missing: regenerate the sample cores"
    );
    found.clone()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Cut every `CORE` `NT_FILE` note out of the ELF core `bytes`: each note
/// segment is rewritten in place with the notes after it moved up and its
/// `p_filesz` shrunk, so no other offset moves. Returns how many were cut.
/// Written from the ELF specification, not with pymortem's parser.
fn cut_nt_file(bytes: &mut [u8]) -> usize {
    assert_eq!(&bytes[..4], b"\x7fELF", "not ELF");
    let phoff = le_u64(bytes, 32) as usize;
    let phentsize = usize::from(le_u16(bytes, 54));
    let phnum = usize::from(le_u16(bytes, 56));
    let mut cut = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if le_u32(bytes, ph) != 4 {
            continue;
        }
        let offset = le_u64(bytes, ph + 8) as usize;
        let filesz = le_u64(bytes, ph + 32) as usize;
        // Core notes are 4-aligned (an 8 here would pad to 8).
        let align = (le_u64(bytes, ph + 48) as usize).max(4);
        let notes = bytes[offset..offset + filesz].to_vec();
        let mut kept = Vec::with_capacity(notes.len());
        let mut pos = 0;
        while pos + 12 <= notes.len() {
            let namesz = le_u32(&notes, pos) as usize;
            let descsz = le_u32(&notes, pos + 4) as usize;
            let n_type = le_u32(&notes, pos + 8);
            let name = &notes[pos + 12..pos + 12 + namesz];
            let end = (pos + 12 + namesz.next_multiple_of(align) + descsz.next_multiple_of(align))
                .min(notes.len());
            if n_type == NT_FILE && name == b"CORE\0" {
                cut += 1;
            } else {
                kept.extend_from_slice(&notes[pos..end]);
            }
            pos = end;
        }
        bytes[offset..offset + kept.len()].copy_from_slice(&kept);
        bytes[offset + kept.len()..offset + filesz].fill(0);
        bytes[ph + 32..ph + 40].copy_from_slice(&(kept.len() as u64).to_le_bytes());
    }
    cut
}

/// A copy of `entry`'s core in `dir` without its `NT_FILE` note.
fn copy_without_nt_file(entry: &Value, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(entry["core"].as_str().unwrap()).unwrap();
    assert_eq!(
        cut_nt_file(&mut bytes),
        1,
        "{}: one NT_FILE note",
        support::label(entry)
    );
    let path = dir.join(format!(
        "{}-{}-{}.core",
        entry["interp"].as_str().unwrap(),
        entry["scenario"].as_str().unwrap(),
        entry["kind"].as_str().unwrap()
    ));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// The file mappings of the core's `NT_FILE` note: `(start, end, file
/// offset in bytes)` each. Written from the note's layout (count, page
/// size, then start, end and page offset per mapping), not with pymortem.
fn nt_file_mappings(bytes: &[u8]) -> Vec<(u64, u64, u64)> {
    let phoff = le_u64(bytes, 32) as usize;
    let phentsize = usize::from(le_u16(bytes, 54));
    let phnum = usize::from(le_u16(bytes, 56));
    let mut mappings = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if le_u32(bytes, ph) != 4 {
            continue;
        }
        let offset = le_u64(bytes, ph + 8) as usize;
        let notes = &bytes[offset..offset + le_u64(bytes, ph + 32) as usize];
        let align = (le_u64(bytes, ph + 48) as usize).max(4);
        let mut pos = 0;
        while pos + 12 <= notes.len() {
            let namesz = le_u32(notes, pos) as usize;
            let descsz = le_u32(notes, pos + 4) as usize;
            let desc = pos + 12 + namesz.next_multiple_of(align);
            if le_u32(notes, pos + 8) == NT_FILE && &notes[pos + 12..pos + 12 + namesz] == b"CORE\0"
            {
                let count = le_u64(notes, desc) as usize;
                let page = le_u64(notes, desc + 8);
                for k in 0..count {
                    let at = desc + 16 + 24 * k;
                    mappings.push((
                        le_u64(notes, at),
                        le_u64(notes, at + 8),
                        le_u64(notes, at + 16) * page,
                    ));
                }
            }
            pos = desc + descsz.next_multiple_of(align);
        }
    }
    mappings
}

/// Drop from the core `bytes` what QEMU leaves out of an aarch64 core:
/// every executable `PT_LOAD` of a mapped file and, since an aarch64
/// module's ELF header, program headers and build-id note lie in its
/// executable mapping (x86-64's linker gives them a read-only one), the
/// read-only `PT_LOAD` that starts each file at offset 0. Their `p_filesz`
/// becomes 0 and their bytes stay in the file, unreferenced. The vDSO is
/// no file and is kept. Returns how many segments were emptied.
fn drop_code_and_headers(bytes: &mut [u8], mappings: &[(u64, u64, u64)]) -> usize {
    let phoff = le_u64(bytes, 32) as usize;
    let phentsize = usize::from(le_u16(bytes, 54));
    let phnum = usize::from(le_u16(bytes, 56));
    let mut emptied = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (flags, vaddr, filesz) = (
            le_u32(bytes, ph + 4),
            le_u64(bytes, ph + 16),
            le_u64(bytes, ph + 32),
        );
        if le_u32(bytes, ph) != 1 || filesz == 0 {
            continue;
        }
        let of_a_file = mappings
            .iter()
            .any(|&(start, end, _)| start <= vaddr && vaddr < end);
        let header_page = mappings
            .iter()
            .any(|&(start, _, offset)| start == vaddr && offset == 0);
        let code = flags & PF_X != 0;
        let read_only = flags & PF_W == 0;
        if of_a_file && (code || (read_only && header_page)) {
            bytes[ph + 32..ph + 40].copy_from_slice(&0u64.to_le_bytes());
            emptied += 1;
        }
    }
    emptied
}

/// A copy of `entry`'s core in `dir` without its `NT_FILE` note, and with
/// [`drop_code_and_headers`] when `headerless`.
fn copy_of(entry: &Value, dir: &Path, headerless: bool) -> PathBuf {
    if !headerless {
        return copy_without_nt_file(entry, dir);
    }
    let mut bytes = std::fs::read(entry["core"].as_str().unwrap()).unwrap();
    let mappings = nt_file_mappings(&bytes);
    let emptied = drop_code_and_headers(&mut bytes, &mappings);
    assert!(
        emptied >= 3,
        "{}: only {emptied} segments emptied",
        support::label(entry)
    );
    assert_eq!(cut_nt_file(&mut bytes), 1);
    let path = dir.join(format!(
        "{}-{}-{}-headerless.core",
        entry["interp"].as_str().unwrap(),
        entry["scenario"].as_str().unwrap(),
        entry["kind"].as_str().unwrap()
    ));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// A module's recorded path as a host file: under the entry's sysroot,
/// symlinks followed (the kernel records `/usr/lib/…/libc.so.6` where the
/// dynamic linker says `/lib/…/libc.so.6`: one file).
fn host_path(entry: &Value, recorded: &str) -> Option<PathBuf> {
    let root = Path::new(entry["sysroot"].as_str().unwrap_or("/"));
    // gdb run outside the sysroot's chroot records host paths, already in it.
    let inside = Path::new(recorded)
        .strip_prefix(root)
        .map(|rest| format!("/{}", rest.display()));
    let found = pymortem::modules::resolve_in_root(root, inside.as_deref().unwrap_or(recorded))?;
    std::fs::canonicalize(found).ok()
}

/// A module of an `info` report as it is compared: everything but the
/// recorded path, which is compared as the file it names.
fn module_facts(entry: &Value, m: &Value) -> Value {
    let mut facts = m.clone();
    let object = facts.as_object_mut().unwrap();
    let path = object.remove("path").unwrap();
    object.remove("name");
    let file = path.as_str().and_then(|p| host_path(entry, p));
    object.insert(
        "recorded_file".into(),
        Value::from(file.map(|f| f.display().to_string())),
    );
    facts
}

/// How the recovered `info` report differs from the `NT_FILE` one: the
/// same ELF modules, at the same bases, with the same facts.
fn module_differences(entry: &Value, full: &Value, cut: &Value, label: &str) -> Vec<String> {
    let by_base = |report: &Value| -> BTreeMap<u64, Value> {
        report["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["base"].as_u64().unwrap(), module_facts(entry, m)))
            .collect()
    };
    let (want, have) = (by_base(full), by_base(cut));
    let mut problems = Vec::new();
    for (base, w) in &want {
        match have.get(base) {
            None => problems.push(format!("{label}: module {w} at {base:#x} not recovered")),
            Some(h) if h != w => problems.push(format!(
                "{label}: module at {base:#x}:\n  NT_FILE:  {w}\n  link_map: {h}"
            )),
            Some(_) => {}
        }
    }
    for (base, h) in &have {
        if !want.contains_key(base) {
            problems.push(format!("{label}: extra module {h} at {base:#x}"));
        }
    }
    problems
}

/// Everything of a `threads --native` report that the module list decides:
/// each thread's native and Python frames, and the interpreter found.
fn stacks(report: &Value) -> Value {
    let mut stacks = report.clone();
    let object = stacks.as_object_mut().unwrap();
    // The core's path and the diagnostics (which say how the list was
    // found) are expected to differ.
    object.remove("core");
    object.remove("diagnostics");
    stacks
}

/// How reads of the modules' pages differ between the full core and the
/// cut one, opened with the library: each page's first bytes must be the
/// same, and so must its provenance (a core segment, or a file on disk)
/// unless `headerless` (the cut core then lacks pages the full one has,
/// which files supply). A kernel core leaves out read-only file pages:
/// there the recovered modules' files must supply them as `NT_FILE`'s do.
/// Returns the problems and how many pages came from files.
fn page_differences(
    entry: &Value,
    cut: &Path,
    label: &str,
    headerless: bool,
) -> (Vec<String>, usize) {
    use pymortem::memory::{Memory, Provenance};
    let options = support::options(entry);
    let full = support::open(entry);
    let recovered = pymortem::Process::open(cut, &options).unwrap();
    let mut problems = Vec::new();
    let mut from_files = 0;
    for module in full.modules().modules() {
        for page in (module.base..module.end).step_by(4096) {
            let (a, b) = (
                full.memory().provenance(page),
                recovered.memory().provenance(page),
            );
            let mut bytes_a = [0u8; 16];
            let mut bytes_b = [0u8; 16];
            let read_a = full.memory().read_exact_at(page, &mut bytes_a).is_ok();
            let read_b = recovered.memory().read_exact_at(page, &mut bytes_b).is_ok();
            if (a != b && !headerless) || read_a != read_b || bytes_a != bytes_b {
                if problems.len() < 8 {
                    problems.push(format!(
                        "{label}: {} page {page:#x}: NT_FILE {a:?} (read {read_a}), \
                         link_map {b:?} (read {read_b})",
                        module.name()
                    ));
                }
            } else if matches!(b, Provenance::File { .. }) {
                from_files += 1;
            }
        }
    }
    (problems, from_files)
}

/// Whether `report`'s diagnostics hold one of `severity` whose message
/// contains every one of `words`.
fn says(report: &Value, severity: &str, words: &[&str]) -> bool {
    report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| {
            d["severity"] == severity
                && d["message"]
                    .as_str()
                    .is_some_and(|m| words.iter().all(|w| m.contains(w)))
        })
}

#[test]
fn modules_stacks_and_findings_come_back_from_link_map() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Value> = CORES
        .iter()
        .map(|(interp, scenario, kind)| entry(&manifest, interp, scenario, kind))
        .collect();
    let problems = support::parallel(&entries, |entry| {
        let cut = copy_of(entry, dir.path(), false);
        compare_with_the_original(entry, &cut, false)
    });
    support::assert_no_problems(&problems);
}

/// The cores tried without their modules' code and header pages: a Debian
/// package through a sysroot and pyenv builds on the host; kernel cores
/// (whose code pages are already left out) and a gcore core (which leaves
/// out the code mappings themselves).
const HEADERLESS_CORES: [(&str, &str, &str); 3] = [
    ("debian-3.13", "use_after_free", "kernel"),
    ("pyenv-3.12.1", "threads", "kernel"),
    ("pyenv-2.7.18", "double_free", "gcore"),
];

#[test]
fn headers_and_code_the_core_lacks_come_from_the_files() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Value> = HEADERLESS_CORES
        .iter()
        .map(|(interp, scenario, kind)| entry(&manifest, interp, scenario, kind))
        .collect();
    let problems = support::parallel(&entries, |entry| {
        let cut = copy_of(entry, dir.path(), true);
        compare_with_the_original(entry, &cut, true)
    });
    support::assert_no_problems(&problems);
}

/// How pymortem's reports on `cut`, a copy of `entry`'s core without
/// `NT_FILE` (and without its modules' code and headers when
/// `headerless`), differ from those on the original: the same modules,
/// pages, stacks and findings, with the list from `link_map`.
fn compare_with_the_original(entry: &Value, cut: &Path, headerless: bool) -> Vec<String> {
    let label = match headerless {
        true => format!("{} without headers", support::label(entry)),
        false => support::label(entry),
    };
    let full = PathBuf::from(entry["core"].as_str().unwrap());
    let mut problems = Vec::new();

    let (_, info_full) = support::json_report(&["info"], entry, &full);
    let (_, info_cut) = support::json_report(&["info"], entry, cut);
    if info_full["module_source"] != "nt_file" {
        problems.push(format!(
            "{label}: the full core's source is {}",
            info_full["module_source"]
        ));
    }
    if info_cut["module_source"] != "link_map" {
        problems.push(format!(
            "{label}: without NT_FILE the source is {}",
            info_cut["module_source"]
        ));
    }
    if !says(
        &info_cut,
        "note",
        &["no NT_FILE note", "link_map", "r_debug at 0x"],
    ) {
        problems.push(format!(
            "{label}: no note says the list was recovered: {:#}",
            info_cut["diagnostics"]
        ));
    }
    let from_files = says(&info_cut, "note", &["holds no ELF header for", "files"]);
    if from_files != headerless {
        problems.push(format!(
            "{label}: a note says headers came from files: {from_files}: {:#}",
            info_cut["diagnostics"]
        ));
    }
    if says(
        &info_cut,
        "warning",
        &["module list from the dynamic linker"],
    ) || says(&info_cut, "warning", &["ELF header"])
    {
        problems.push(format!(
            "{label}: the chain of a sound core gave warnings: {:#}",
            info_cut["diagnostics"]
        ));
    }
    problems.extend(support::schema_violations(&info_cut));
    problems.extend(module_differences(entry, &info_full, &info_cut, &label));
    let count = |r: &Value, kind: &str| {
        r["modules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] != "vdso" && (kind.is_empty() || m["kind"] == kind))
            .count()
    };
    let libraries = count(&info_cut, "library");
    if libraries < 3 || count(&info_cut, "executable") != 1 {
        problems.push(format!(
            "{label}: {libraries} libraries and {} executables recovered",
            count(&info_cut, "executable")
        ));
    }

    let (differences, file_pages) = page_differences(entry, cut, &label, headerless);
    problems.extend(differences);
    if (headerless || entry["kind"] == "kernel") && file_pages == 0 {
        problems.push(format!(
            "{label}: no page came from a file: the test shows nothing"
        ));
    }

    let (code_full, threads_full) = support::json_report(&["threads", "--native"], entry, &full);
    let (code_cut, threads_cut) = support::json_report(&["threads", "--native"], entry, cut);
    if code_full != code_cut {
        problems.push(format!(
            "{label}: threads exit {code_cut}, with NT_FILE {code_full}"
        ));
    }
    let native_frames = threads_cut["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["stack"]["frames"].as_array().into_iter().flatten())
        .filter(|f| f["kind"] == "native" && f["function"].is_string())
        .count();
    if native_frames == 0 {
        problems.push(format!("{label}: no named native frame"));
    }
    let mut differences = Vec::new();
    support::json_differences(
        "threads",
        &stacks(&threads_full),
        &stacks(&threads_cut),
        &mut differences,
    );
    problems.extend(differences.iter().map(|d| format!("{label}: {d}")));
    if headerless {
        problems.extend(bundle_differences(
            entry,
            cut,
            &label,
            &info_full,
            &threads_full,
        ));
    }

    let (code_full, check_full) = support::json_report(&["check"], entry, &full);
    let (code_cut, check_cut) = support::json_report(&["check"], entry, cut);
    if code_full != code_cut {
        problems.push(format!(
            "{label}: check exit {code_cut}, with NT_FILE {code_full}"
        ));
    }
    let finding_count = check_full["findings"].as_array().map_or(0, Vec::len);
    let mut differences = Vec::new();
    support::json_differences(
        "check",
        &support::without_core(&check_full),
        &support::without_core(&check_cut),
        &mut differences,
    );
    problems.extend(differences.iter().map(|d| format!("{label}: {d}")));

    println!(
        "{label}: NT_FILE {} modules, link_map {} ({libraries} libraries; vDSO apart); \
         {file_pages} pages from files; {native_frames} native frames; \
         {finding_count} findings",
        count(&info_full, ""),
        count(&info_cut, ""),
    );
    problems
}

/// How a bundle of the headerless copy `cut` reads differently from the
/// original core: the modules' bases and build-ids, and the threads'
/// stacks. The bundle holds no build-id in its core to find the files by:
/// it finds them by the paths its manifest records.
fn bundle_differences(
    entry: &Value,
    cut: &Path,
    label: &str,
    info_full: &Value,
    threads_full: &Value,
) -> Vec<String> {
    // On the cores' disk rather than /tmp, which may be a small tmpfs.
    let dir = tempfile::tempdir_in(support::repo().join("target")).unwrap();
    let bundle = dir.path().join("crash.pymortem");
    let mut args: Vec<String> = ["bundle", "--level", "1", "-o"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(bundle.display().to_string());
    args.extend(support::search_args(entry));
    args.push(cut.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = support::pymortem(&args);
    if code != 0 {
        return vec![format!("{label}: bundle exits {code}: {stderr}")];
    }
    let read = |command: &[&str]| -> Value {
        let mut args = command.to_vec();
        args.extend(["--json", "--no-cache", bundle.to_str().unwrap()]);
        let (_, stdout, stderr) = support::pymortem(&args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{label}: {command:?} on its bundle: {e}: {stderr}"))
    };
    let identities = |report: &Value| -> Vec<(Value, Value)> {
        report["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["base"].clone(), m["build_id"].clone()))
            .collect()
    };
    let mut problems = Vec::new();
    let (want, have) = (identities(info_full), identities(&read(&["info"])));
    if want != have {
        problems.push(format!(
            "{label}: its bundle's modules (base, build-id) {have:?}, the core's {want:?}"
        ));
    }
    let mut differences = Vec::new();
    support::json_differences(
        "bundle threads",
        &threads_full["threads"],
        &read(&["threads", "--native"])["threads"],
        &mut differences,
    );
    problems.extend(differences.iter().map(|d| format!("{label}: {d}")));
    problems
}

/// Run pymortem with `args`, failing if it has not ended within a minute
/// (a cycle followed forever would never end): exit code and stdout.
fn run_with_deadline(args: &[&str]) -> (i32, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pymortem");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pymortem {args:?} still running after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

const EXE: u64 = 0x40_0000;
const DATA: u64 = 0x60_0000;
/// Where the link_map entries are, 0x100 apart.
const ENTRIES: u64 = DATA + 0x1000;

/// A core without `NT_FILE` of a dynamically linked process: an executable
/// at [`EXE`] (ELF header, program headers with `PT_PHDR` and
/// `PT_DYNAMIC`), its dynamic section at [`DATA`] with `DT_DEBUG` pointing
/// at `r_debug` (DATA + 0x800, `r_map` = `r_map`), and `link_map` entries
/// at [`ENTRIES`] as `(l_addr, l_name, l_ld, l_next, l_prev)` each.
fn dynamic_core(r_map: u64, entries: &[[u64; 5]]) -> Vec<u8> {
    let mut exe = vec![0u8; 0x1000];
    let put =
        |b: &mut Vec<u8>, at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut exe, 0, b"\x7fELF\x02\x01\x01");
    put(&mut exe, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut exe, 18, &62u16.to_le_bytes());
    put(&mut exe, 32, &64u64.to_le_bytes());
    put(&mut exe, 54, &56u16.to_le_bytes());
    put(&mut exe, 56, &4u16.to_le_bytes());
    // (type, flags, offset, vaddr, size)
    let data_size = (0x1000 + 0x100 * entries.len() as u64).next_multiple_of(0x1000);
    let phdrs = [
        (6u32, PF_R, 64u64, EXE + 64, 4 * 56u64),
        (1, PF_R | PF_X, 0, EXE, 0x1000),
        (1, PF_R | PF_W, 0x1000, DATA, data_size),
        (2, PF_R | PF_W, 0x1000, DATA, 0x20),
    ];
    for (i, (p_type, flags, offset, vaddr, size)) in phdrs.into_iter().enumerate() {
        let at = 64 + 56 * i;
        put(&mut exe, at, &p_type.to_le_bytes());
        put(&mut exe, at + 4, &flags.to_le_bytes());
        put(&mut exe, at + 8, &offset.to_le_bytes());
        put(&mut exe, at + 16, &vaddr.to_le_bytes());
        put(&mut exe, at + 32, &size.to_le_bytes());
        put(&mut exe, at + 40, &size.to_le_bytes());
    }
    put(&mut exe, 0x800, b"/usr/bin/python-synthetic\0");
    let mut data = vec![0u8; data_size as usize];
    put(&mut data, 0, &21u64.to_le_bytes()); // DT_DEBUG
    put(&mut data, 8, &(DATA + 0x800).to_le_bytes());
    put(&mut data, 0x800, &1i32.to_le_bytes());
    put(&mut data, 0x808, &r_map.to_le_bytes());
    for (i, entry) in entries.iter().enumerate() {
        for (j, word) in entry.iter().enumerate() {
            put(&mut data, 0x1000 + 0x100 * i + 8 * j, &word.to_le_bytes());
        }
    }
    let mut core = SynthCore::default();
    core.prstatus(7, 11, EXE + 0x100, DATA + 0x1f00, 0)
        .psinfo(7, 0, "python3", "python3 hostile.py")
        .siginfo(11, 1, 0)
        .auxv(&[
            (3, EXE + 64),
            (4, 56),
            (5, 4),
            (9, EXE + 0x100),
            (31, EXE + 0x800),
        ])
        .segment(EXE, exe, 0x1000, PF_R | PF_X)
        .segment(DATA, data, data_size, PF_R | PF_W);
    core.build()
}

/// `info --json` on a synthetic core, which must end, with exit 0.
fn info_of(bytes: &[u8], name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_temp(dir.path(), name, bytes);
    let (code, out, err) =
        run_with_deadline(&["info", "--json", "--no-cache", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{name}: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_no_schema_violations(&report, name);
    report
}

fn assert_no_schema_violations(report: &Value, name: &str) {
    let violations = support::schema_violations(report);
    assert!(violations.is_empty(), "{name}: {violations:?}");
}

/// The executable's entry (no name, bias 0), as the dynamic linker
/// writes it first.
fn exe_entry(next: u64) -> [u64; 5] {
    [0, 0, DATA, next, 0]
}

#[test]
fn a_sound_synthetic_chain_names_the_executable() {
    let report = info_of(&dynamic_core(ENTRIES, &[exe_entry(0)]), "sound.core");
    assert_eq!(report["module_source"], "link_map", "{report:#}");
    let modules = report["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 1, "{modules:#?}");
    assert_eq!(modules[0]["path"], "/usr/bin/python-synthetic");
    assert_eq!(modules[0]["kind"], "executable");
    assert_eq!(modules[0]["base"], EXE);
    // .bss included: the writable PT_LOAD's end.
    assert_eq!(modules[0]["end"], DATA + 0x2000);
    // No warning: the chain was sound.
    assert!(
        !says(&report, "warning", &["module list"]),
        "{:#}",
        report["diagnostics"]
    );
    assert!(
        says(&report, "note", &["no NT_FILE note", "r_debug at 0x600800"]),
        "{:#}",
        report["diagnostics"]
    );
}

#[test]
fn a_cyclic_chain_ends_with_a_diagnostic() {
    // The executable's entry, then two that lead back to the first.
    let entries = [
        exe_entry(ENTRIES + 0x100),
        [1 << 40, 0, 0, ENTRIES + 0x200, ENTRIES],
        [2 << 40, 0, 0, ENTRIES, ENTRIES + 0x100],
    ];
    let report = info_of(&dynamic_core(ENTRIES, &entries), "cycle.core");
    assert!(
        says(
            &report,
            "warning",
            &["link_map entry 0x601000 comes again", "cycle"]
        ),
        "{:#}",
        report["diagnostics"]
    );
    assert_eq!(report["module_source"], "link_map");
    assert_eq!(report["modules"].as_array().unwrap().len(), 1);
    // An entry whose next is itself.
    let entries = [exe_entry(ENTRIES), [0; 5]];
    let report = info_of(&dynamic_core(ENTRIES, &entries), "self.core");
    assert!(
        says(&report, "warning", &["link_map entry 0x601000 comes again"]),
        "{:#}",
        report["diagnostics"]
    );
}

#[test]
fn a_chain_into_garbage_ends_with_a_diagnostic() {
    // r_map points nowhere.
    let report = info_of(&dynamic_core(0xdead_0000, &[]), "nowhere.core");
    assert!(
        says(
            &report,
            "warning",
            &["a link_map entry", "0xdead0000", "not mapped"]
        ),
        "{:#}",
        report["diagnostics"]
    );
    // The walk read nothing: the executable alone, through the auxiliary vector.
    assert_eq!(report["module_source"], "auxv");
    assert_eq!(report["modules"].as_array().unwrap().len(), 1);
    // An entry whose back link is wrong, one whose name and dynamic
    // section point nowhere, and l_next into the middle of the data.
    let entries = [
        exe_entry(ENTRIES + 0x100),
        [
            0x7f00_0000_0000,
            0xbad_0000,
            0xbad_1000,
            ENTRIES + 0x208,
            ENTRIES,
        ],
    ];
    let report = info_of(&dynamic_core(ENTRIES, &entries), "garbage.core");
    for words in [
        &["name at 0xbad0000 is unreadable"][..],
        &["no ELF header", "0x7f0000000000"],
        &[
            "link_map entry 0x601208",
            "l_prev 0x0",
            "0x601100 was expected",
        ],
    ] {
        assert!(
            says(&report, "warning", words),
            "{words:?}: {:#}",
            report["diagnostics"]
        );
    }
}

#[test]
fn a_chain_longer_than_any_process_has_is_cut_with_few_diagnostics() {
    // 5000 entries with sound links, each naming a load bias with no ELF
    // header behind it: the walk stops at its cap, and the entries'
    // problems are listed a few at a time, not 4096 times.
    let count = 5000u64;
    let entries: Vec<[u64; 5]> = std::iter::once(exe_entry(ENTRIES + 0x100))
        .chain((1..count).map(|i| {
            let at = ENTRIES + i * 0x100;
            let next = if i + 1 < count { at + 0x100 } else { 0 };
            [(i + 1) << 32, 0, 0, next, at - 0x100]
        }))
        .collect();
    let started = Instant::now();
    let report = info_of(&dynamic_core(ENTRIES, &entries), "long.core");
    assert!(
        says(&report, "warning", &["more than 4096 link_map entries"]),
        "{:#}",
        report["diagnostics"]
    );
    assert!(
        says(
            &report,
            "warning",
            &["more link_map entries had an unreadable name or no ELF header"]
        ),
        "{:#}",
        report["diagnostics"]
    );
    let diagnostics = report["diagnostics"].as_array().unwrap().len();
    assert!(diagnostics < 40, "{diagnostics} diagnostics");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_note_cutter_leaves_every_other_note() {
    // The test's own writer, on a synthetic core with NT_FILE between
    // other notes: the notes after it move up, none is lost.
    let mut core = crate::support::synth::sample();
    core.auxv(&[(6, 4096)]);
    let mut bytes = core.build();
    let before = pymortem::corefile::CoreFile::from_bytes(Path::new("s"), bytes.clone()).unwrap();
    assert_eq!(cut_nt_file(&mut bytes), 1);
    let after = pymortem::corefile::CoreFile::from_bytes(Path::new("s"), bytes).unwrap();
    assert!(after.file_mappings().is_empty());
    assert!(!before.file_mappings().is_empty());
    let types = |c: &pymortem::corefile::CoreFile| -> Vec<u32> {
        c.note_records().iter().map(|n| n.n_type).collect()
    };
    let mut expected = types(&before);
    expected.retain(|&t| t != NT_FILE);
    assert_eq!(types(&after), expected);
    assert_eq!(after.threads().len(), 2);
    assert_eq!(after.auxv().page_size, Some(4096));
}
