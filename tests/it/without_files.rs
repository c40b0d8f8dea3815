//! Python stacks from the core alone: with none of the interpreter's files
//! (an empty sysroot), every thread's frames still equal the stack its
//! scenario recorded; `--search-path` finds relocated files by build-id;
//! symlinks in a sysroot are followed only while they stay inside it.
//!
//! Without files the core still holds everything a Python stack is made of:
//! thread states, frames, code objects and their strings and line tables,
//! and the type objects (writable data). What it lacks is read-only data:
//! static types' names, which pymortem therefore never needs, and the
//! symbol tables: native frames are then unnamed, and 2.7 and 3.6, which
//! keep the GIL holder in a static found only by its symbol, have no known
//! holder. Everything else the truth records is checked.

use crate::support;

use std::path::{Path, PathBuf};

use pymortem::modules::{FileStatus, resolve_in_root};
use serde_json::Value;

use crate::support::Frame;

fn threads_json(entry: &Value, search: &[String]) -> Result<Value, String> {
    let mut args: Vec<String> = [
        "threads",
        "--json",
        "--locals",
        "--no-cache",
        "--no-default-debug-dir",
    ]
    .map(String::from)
    .to_vec();
    args.extend(search.iter().cloned());
    args.push(entry["core"].as_str().unwrap().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = support::pymortem(&args);
    // 3 (incomplete): a chain broke on stack memory gdb did not dump; the
    // frames beyond come back from the data stack and are compared below.
    if code != 0 && !(code == 3 && support::gdb_lost_memory(entry)) {
        return Err(format!("exit {code}: {stderr}"));
    }
    serde_json::from_str(&stdout).map_err(|e| e.to_string())
}

/// Every way the report's stacks and locals differ from the truth.
pub(crate) fn disagreements(entry: &Value, report: &Value, label: &str) -> Vec<String> {
    let truth = support::truth(entry);
    let lost = support::gdb_lost_memory(entry);
    let by_lwp = support::threads_by_lwp(report);
    let mut problems = Vec::new();
    for t in truth["threads"].as_array().unwrap() {
        let lwp = t["native_id"].as_i64().unwrap();
        let Some(got) = by_lwp.get(&lwp) else {
            problems.push(format!("{label}: no thread {lwp}"));
            continue;
        };
        let want: Vec<Frame> = t["stack"]
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
        let recovered = got["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["recovered"] == true);
        if recovered && !lost {
            problems.push(format!(
                "{label}: thread {lwp}: frames recovered in a core that lost no stack"
            ));
        }
        if have != want {
            let at = have
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(have.len().min(want.len()));
            problems.push(format!(
                "{label}: thread {lwp}: {} frames vs truth {}; first difference at {at}: {:?} vs {:?} ({})",
                have.len(),
                want.len(),
                have.get(at),
                want.get(at),
                got["frames_error"]
            ));
            continue;
        }
        if got["pthread_id"] != t["ident"] {
            problems.push(format!(
                "{label}: thread {lwp}: pthread {}",
                got["pthread_id"]
            ));
        }
        // Each scenario dies in Python code run by the crashing thread, which
        // holds the GIL. 2.7 and 3.6 keep the holder in the static
        // `_PyThreadState_Current`, found only by its symbol: without files
        // that fact is unknown, and pymortem marks no thread.
        let old_gil = entry["python_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.") || v.starts_with("3.6."));
        let is_crash_thread = t["ident"] == truth["crash_thread_ident"];
        if !old_gil && got["holds_gil"] != is_crash_thread {
            problems.push(format!(
                "{label}: thread {lwp}: holds_gil {}",
                got["holds_gil"]
            ));
        }
        // Parked threads' locals (the writer's move on after its snapshot).
        if t["writer"] == true {
            continue;
        }
        for (i, tf) in t["stack"].as_array().unwrap().iter().enumerate() {
            for (name, repr) in tf["locals"].as_object().into_iter().flatten() {
                let have = got["frames"][i]["locals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|l| l["name"] == name.as_str())
                    .and_then(|l| l["repr"].as_str());
                if have != repr.as_str() {
                    problems.push(format!(
                        "{label}: thread {lwp} frame {i}: local {name} = {repr}, pymortem has {have:?}"
                    ));
                }
            }
        }
    }
    problems
}

/// Arguments that give pymortem no file of the process: an empty sysroot.
fn no_files(empty: &Path) -> Vec<String> {
    vec!["--sysroot".into(), empty.display().to_string()]
}

#[test]
fn every_frame_without_the_interpreters_files() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let empty = tempfile::tempdir().unwrap();
    let problems = support::parallel(&manifest, |entry| {
        let label = format!("{} (no files)", support::label(entry));
        // The premise: not one module file is found.
        let options = pymortem::Options::default()
            .sysroot(empty.path())
            .no_default_debug_dir();
        let process = pymortem::Process::open(entry["core"].as_str().unwrap(), &options).unwrap();
        let found: Vec<&str> = process
            .modules()
            .modules()
            .iter()
            .filter(|m| m.file().is_some() && m.kind != pymortem::modules::ModuleKind::Vdso)
            .map(|m| m.recorded_path.as_str())
            .collect();
        if !found.is_empty() {
            return vec![format!(
                "{label}: files found in an empty sysroot: {found:?}"
            )];
        }
        if support::written_by_qemu(entry) {
            // No NT_FILE note and no ELF header in the core: without the
            // files no module is known. The run must say so and what it tried.
            let said = |what: &str| {
                process
                    .diagnostics()
                    .iter()
                    .any(|d| d.message.contains(what))
            };
            let said = said("no NT_FILE note") && said("its file was not found");
            return if said {
                Vec::new()
            } else {
                vec![format!(
                    "{label}: no diagnostic names the missing module files: {:?}",
                    process.diagnostics()
                )]
            };
        }
        match threads_json(entry, &no_files(empty.path())) {
            Ok(report) => disagreements(entry, &report, &label),
            Err(e) => vec![format!("{label}: {e}")],
        }
    });
    support::assert_no_problems(&problems);
    eprintln!("{} cores read without their files", manifest.len());
}

/// Copy `from` to `to`, making the folders.
fn copy(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// The module recorded at `path`, opened with `options`.
fn file_status(entry: &Value, options: &pymortem::Options, path: &str) -> FileStatus {
    let process = pymortem::Process::open(entry["core"].as_str().unwrap(), options).unwrap();
    let module = process
        .modules()
        .modules()
        .iter()
        .find(|m| m.recorded_path == path)
        .unwrap_or_else(|| panic!("{}: no module {path}", support::label(entry)))
        .clone();
    module.file_status.clone()
}

fn pyenv_threads_cores(manifest: &[Value]) -> Vec<&Value> {
    manifest
        .iter()
        .filter(|e| e["scenario"] == "threads" && e["sysroot"].is_null())
        .filter(|e| e["interp"].as_str().unwrap().starts_with("pyenv-"))
        .collect()
}

#[test]
fn search_path_finds_relocated_files_by_build_id() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let cores = pyenv_threads_cores(&manifest);
    assert!(!cores.is_empty(), "no pyenv threads cores in the manifest");
    let problems = support::parallel(&cores, |&entry| {
        let label = support::label(entry);
        let (exe, lib) = (
            entry["exe"].as_str().unwrap(),
            entry["libpython"].as_str().unwrap(),
        );
        let tree = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        // Other names, other folders; and a decoy with the library's own
        // name but another build (another interpreter's executable).
        let moved_lib = tree.path().join("x/y/renamed.so");
        copy(exe, &tree.path().join("bin/not-python"));
        copy(lib, &moved_lib);
        let decoy = tree
            .path()
            .join("a")
            .join(Path::new(lib).file_name().unwrap());
        copy("/bin/true", &decoy);
        let with_files = match threads_json(entry, &[]) {
            Ok(r) => r,
            Err(e) => return vec![format!("{label}: {e}")],
        };
        let mut search = no_files(empty.path());
        search.extend(["--search-path".into(), tree.path().display().to_string()]);
        let relocated = match threads_json(entry, &search) {
            Ok(r) => r,
            Err(e) => return vec![format!("{label} (search path): {e}")],
        };
        let mut problems = Vec::new();
        let options = pymortem::Options::default()
            .sysroot(empty.path())
            .search_path(tree.path())
            .no_default_debug_dir();
        match file_status(entry, &options, lib) {
            FileStatus::Verified { path } if path == moved_lib => {}
            other => problems.push(format!("{label}: libpython by build-id: {other:?}")),
        }
        let stacks = |r: &Value| -> Vec<(Value, Vec<Frame>)> {
            r["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["lwp"].clone(), support::frames(&t["frames"])))
                .collect()
        };
        if stacks(&relocated) != stacks(&with_files) {
            problems.push(format!(
                "{label}: stacks through --search-path differ from those with the files in place"
            ));
        }
        problems.extend(disagreements(
            entry,
            &relocated,
            &format!("{label} (search path)"),
        ));
        problems
    });
    support::assert_no_problems(&problems);
}

#[test]
fn search_path_finds_debug_files_by_build_id() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entry = manifest
        .iter()
        .find(|e| e["stripped"] == true && e["sysroot"].is_string())
        .expect("a stripped chroot interpreter's core in the manifest");
    let debug_dir = entry["debug_dirs"][0].as_str().unwrap();
    let options = pymortem::Options::default()
        .sysroot(entry["sysroot"].as_str().unwrap())
        .search_path(debug_dir)
        .no_default_debug_dir();
    let process = pymortem::Process::open(entry["core"].as_str().unwrap(), &options).unwrap();
    let python = process.python().expect("a Python process");
    let module = process
        .modules()
        .modules()
        .iter()
        .find(|m| m.recorded_path == python.module)
        .unwrap()
        .clone();
    let debug = module.debug_file().map(|d| d.path().to_path_buf());
    assert!(
        debug.as_ref().is_some_and(|d| d.starts_with(debug_dir)),
        "{}: debug file {debug:?}, status {:?}",
        support::label(entry),
        module.debug_status
    );
}

#[test]
fn sysroot_symlinks_are_followed_only_inside_it() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entry = *pyenv_threads_cores(&manifest)
        .first()
        .expect("a pyenv threads core");
    let lib = entry["libpython"].as_str().unwrap();
    // /root/.pyenv/versions/X/lib/libpythonX.so -> the install's root folder.
    let install = Path::new(lib).parent().unwrap().parent().unwrap();
    let inner = |root: &Path| root.join(install.strip_prefix("/").unwrap());

    // An absolute link inside the sysroot restarts at the sysroot.
    let root = tempfile::tempdir().unwrap();
    let moved = root.path().join("opt/python");
    copy(
        lib,
        &moved.join("lib").join(Path::new(lib).file_name().unwrap()),
    );
    std::fs::create_dir_all(inner(root.path()).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/opt/python", inner(root.path())).unwrap();
    let options = pymortem::Options::default()
        .sysroot(root.path())
        .no_default_debug_dir();
    let root_real = std::fs::canonicalize(root.path()).unwrap();
    match file_status(entry, &options, lib) {
        FileStatus::Verified { path } => assert_eq!(
            path,
            root_real
                .join("opt/python/lib")
                .join(Path::new(lib).file_name().unwrap())
        ),
        other => panic!("absolute link inside the sysroot: {other:?}"),
    }

    // A relative link that climbs with `..` stops at the sysroot's top: it
    // never reaches a copy of the library outside the sysroot.
    let outside = tempfile::tempdir().unwrap();
    let host_copy = outside.path().join("libpython.so");
    copy(lib, &host_copy);
    let escape = tempfile::tempdir().unwrap();
    let lib_dir = inner(escape.path()).join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let climb: PathBuf = std::iter::repeat_n("..", 32)
        .collect::<PathBuf>()
        .join(host_copy.strip_prefix("/").unwrap());
    std::os::unix::fs::symlink(&climb, lib_dir.join(Path::new(lib).file_name().unwrap())).unwrap();
    let options = pymortem::Options::default()
        .sysroot(escape.path())
        .no_default_debug_dir();
    match file_status(entry, &options, lib) {
        FileStatus::Missing { .. } => {}
        other => panic!("a link climbing out of the sysroot was followed: {other:?}"),
    }
    assert_eq!(resolve_in_root(escape.path(), lib), None);
    assert!(host_copy.is_file(), "the copy outside exists");
}

/// File offset of `addr` in the core, if it is dumped there.
fn file_offset(process: &pymortem::Process, addr: u64) -> Option<usize> {
    let seg = process
        .core()
        .segments()
        .iter()
        .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.available)?;
    Some((seg.file_offset + (addr - seg.vaddr)) as usize)
}

/// Point the code object of a middle frame of the deepest thread at a str
/// (its file name); that frame is shown as unreadable, with its address and
/// the reason, and every frame before and after it is still there.
fn a_frame_with_a_bad_code_object(interp: &str) {
    use pymortem::layout::facts::FrameModel;
    let manifest = support::manifest();
    let entry = manifest
        .iter()
        .find(|e| e["interp"] == interp && e["scenario"] == "threads" && e["kind"] == "kernel")
        .unwrap_or_else(|| panic!("no {interp} threads core"));
    let path = entry["core"].as_str().unwrap();
    let process = support::open(entry);
    let python = pymortem::Python::of(&process).unwrap();
    let state = python.state();
    let victim = state
        .threads
        .iter()
        .max_by_key(|t| t.stack.frames.len())
        .unwrap();
    let original = victim.stack.frames.clone();
    assert!(original.len() >= 3, "{interp}: a thread with 3 frames");
    let middle = original.len() / 2;
    let layout = &state.layout.layout;
    let code_field = match layout.facts.frames {
        FrameModel::FrameObject => layout.offset("PyFrameObject", "f_code"),
        FrameModel::InterpreterFrame => layout.offset("_PyInterpreterFrame", "code"),
        other => panic!("a frame model this test does not know: {other:?}"),
    }
    .unwrap();
    let filename = layout.offset("PyCodeObject", "co_filename").unwrap();
    use pymortem::memory::MemoryExt;
    let a_str = process
        .memory()
        .read_ptr(original[0].code + filename)
        .unwrap();
    let at = file_offset(&process, original[middle].frame + code_field).expect("frame in the core");
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at..at + 8].copy_from_slice(&a_str.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let damaged = support::write_temp(dir.path(), "bad-code.core", &bytes);
    let (code, report, stderr) = support::threads_report(entry, &damaged);
    assert_eq!(code, 0, "{interp}: {stderr}");
    let thread = support::thread_of(&report, victim.tstate);
    let got = thread["frames"].as_array().unwrap();
    assert_eq!(got.len(), original.len(), "{interp}: no frame is dropped");
    for (i, (g, o)) in got.iter().zip(&original).enumerate() {
        assert_eq!(g["frame"], o.frame, "{interp}: frame {i}");
        if i == middle {
            let reason = g["unreadable"].as_str().unwrap_or_default();
            assert!(
                reason.contains("not a code object"),
                "{interp}: frame {i}: {g}"
            );
            assert_eq!(g["code"], a_str);
        } else {
            assert!(g["unreadable"].is_null(), "{interp}: frame {i}: {g}");
            assert_eq!(g["function"], o.function.as_str(), "{interp}: frame {i}");
            assert_eq!(g["line"], serde_json::json!(o.line), "{interp}: frame {i}");
        }
    }
    assert!(
        thread["frames_error"].is_null(),
        "{interp}: {}",
        thread["frames_error"]
    );
}

#[test]
fn an_unreadable_frame_is_shown_and_the_walk_goes_on() {
    if support::matrix_missing() {
        return;
    }
    for interp in [
        "pyenv-2.7.18",
        "pyenv-3.10.13",
        "pyenv-3.11.7",
        "pyenv-3.13.0",
        "debian-3.14",
    ] {
        a_frame_with_a_bad_code_object(interp);
    }
}

/// Scenarios whose process had no corrupted object.
const CORRUPT: [&str; 3] = ["double_free", "use_after_free", "gc_already_tracked"];

#[test]
fn healthy_cores_read_without_files_raise_no_error_or_warning() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let healthy: Vec<&Value> = manifest
        .iter()
        .filter(|e| !CORRUPT.contains(&e["scenario"].as_str().unwrap()))
        .collect();
    let empty = tempfile::tempdir().unwrap();
    let problems = support::parallel(&healthy, |&entry| {
        let mut args = ["check", "--json", "--no-cache", "--no-default-debug-dir"]
            .map(String::from)
            .to_vec();
        args.extend(no_files(empty.path()));
        args.push(entry["core"].as_str().unwrap().into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stdout, stderr) = support::pymortem(&args);
        let Ok(report) = serde_json::from_str::<Value>(&stdout) else {
            return vec![format!("{} (no files): {stderr}", support::label(entry))];
        };
        report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
            .map(|f| {
                format!(
                    "{} (no files): {}: {}",
                    support::label(entry),
                    f["kind"],
                    f["message"]
                )
            })
            .collect()
    });
    support::assert_no_problems(&problems);
}
