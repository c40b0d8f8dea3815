//! MiniDebugInfo: each Debian interpreter rebuilt the way Fedora ships its
//! binaries (the function symbols `.dynsym` lacks, taken from the debug
//! file, xz-compressed into `.gnu_debugdata`; gdb's documented recipe),
//! read without any debug file, names its native frames as the full debug
//! file does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support;

/// The interpreter at `exe` with a `.gnu_debugdata` made from `debug`, written to `out`.
fn with_mini_debuginfo(exe: &Path, debug: &Path, out: &Path) {
    let dir = out.parent().unwrap();
    let script = r#"
set -eu
nm -D "$1" --format=posix --defined-only | awk '{ print $1 }' | sort > "$4/dynsyms"
nm "$2" --format=posix --defined-only | awk '{ if ($2 == "T" || $2 == "t" || $2 == "D") print $1 }' | sort > "$4/funcsyms"
comm -13 "$4/dynsyms" "$4/funcsyms" > "$4/keep_symbols"
objcopy -S --remove-section .gdb_index --remove-section .comment --keep-symbols="$4/keep_symbols" "$2" "$4/mini_debuginfo"
xz -c "$4/mini_debuginfo" > "$4/mini_debuginfo.xz"
objcopy --add-section .gnu_debugdata="$4/mini_debuginfo.xz" "$1" "$3"
"#;
    let status = Command::new("sh")
        .args(["-c", script, "sh"])
        .args([exe, debug, out, dir])
        .status()
        .expect("sh runs");
    assert!(
        status.success(),
        "the MiniDebugInfo recipe failed for {}",
        exe.display()
    );
}

/// `threads --native --json` on `core` with `args`.
fn native_json(core: &str, args: &[String]) -> Value {
    let mut all: Vec<&str> = vec!["threads", "--native", "--json", "--no-cache"];
    all.extend(args.iter().map(String::as_str));
    all.push(core);
    let (code, stdout, stderr) = support::pymortem(&all);
    assert!(code == 0 || code == 3, "exit {code}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The name of each native frame of `module`, by (LWP, address). Frames
/// rebuilt from DWARF call sites (tail calls) are left out: MiniDebugInfo
/// has no DWARF to rebuild them from.
fn frame_names(report: &Value, module: &str) -> BTreeMap<(i64, u64), Option<String>> {
    let mut out = BTreeMap::new();
    for t in report["threads"].as_array().unwrap() {
        let Some(frames) = t["stack"]["frames"].as_array() else {
            continue;
        };
        for f in frames {
            if f["kind"] == "native" && f["module"] == module && f["trust"] != "tail_call" {
                out.insert(
                    (
                        t["lwp"].as_i64().unwrap_or(-1),
                        f["address"]["address"].as_u64().unwrap(),
                    ),
                    f["function"].as_str().map(str::to_string),
                );
            }
        }
    }
    out
}

#[test]
fn mini_debuginfo_names_native_frames_as_the_debug_file_does() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut compared = 0;
    for interp in ["debian-3.11", "debian-3.13", "debian-3.14", "debian-3.15"] {
        let entry = support::entry(&manifest, interp, "threads", "kernel");
        let core = entry["core"].as_str().unwrap();
        let root = entry["sysroot"].as_str();
        let recorded = entry["exe"].as_str().unwrap();
        // The manifest names the file on this machine (under the sysroot for a chroot's).
        let exe = PathBuf::from(recorded);
        let debug_dir = entry["debug_dirs"][0].as_str().unwrap();
        let process = support::open(entry);
        let build_id = process
            .modules()
            .executable()
            .and_then(|m| m.build_id_hex())
            .unwrap();
        let debug = Path::new(debug_dir)
            .join(".build-id")
            .join(&build_id[..2])
            .join(format!("{}.debug", &build_id[2..]));
        let out = dir.path().join(interp).join(exe.file_name().unwrap());
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        with_mini_debuginfo(&exe, &debug, &out);

        let mut base: Vec<String> = Vec::new();
        if let Some(root) = root {
            base.extend(["--sysroot".into(), root.into()]);
        }
        let module = exe.file_name().unwrap().to_str().unwrap();
        let mut full_args = base.clone();
        full_args.extend(["--debug-dir".into(), debug_dir.into()]);
        let mut bare_args = base.clone();
        bare_args.push("--no-default-debug-dir".into());
        let mut mini_args = bare_args.clone();
        mini_args.extend(["--exe".into(), out.display().to_string()]);

        let full = frame_names(&native_json(core, &full_args), module);
        let bare = frame_names(&native_json(core, &bare_args), module);
        let mini = frame_names(&native_json(core, &mini_args), module);
        let named = |names: &BTreeMap<(i64, u64), Option<String>>| {
            names.values().filter(|n| n.is_some()).count()
        };
        // The premise: without symbols, frames go unnamed.
        if named(&bare) >= named(&full) {
            problems.push(format!(
                "{interp}: {} of {} frames are named without any symbols",
                named(&bare),
                full.len()
            ));
        }
        if mini.keys().ne(full.keys()) {
            problems.push(format!(
                "{interp}: the stacks differ in their {module} frames"
            ));
            continue;
        }
        for (key, name) in &full {
            if name.is_some() && mini[key] != *name {
                problems.push(format!(
                    "{interp}: frame {:#x} of LWP {} is {:?} with MiniDebugInfo, {name:?} with the debug file",
                    key.1, key.0, mini[key]
                ));
            }
        }
        eprintln!(
            "{interp}: {} {module} frames, named with the debug file {}, without symbols {}, \
             with MiniDebugInfo {}",
            full.len(),
            named(&full),
            named(&bare),
            named(&mini)
        );
        compared += full.len();

        // `info` says where the names came from; a damaged section is shown
        // unusable and the stack is read as without it.
        let mini_state = |args: &[String]| {
            let mut all: Vec<&str> = vec!["info", "--json", "--no-cache"];
            all.extend(args.iter().map(String::as_str));
            all.push(core);
            let (_, stdout, stderr) = support::pymortem(&all);
            let info: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
            info["modules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == module)
                .map(|m| m["mini_debuginfo"].clone())
        };
        if mini_state(&mini_args) != Some(Value::from("used")) {
            problems.push(format!(
                "{interp}: info does not say MiniDebugInfo was used"
            ));
        }
        let garbage = dir.path().join(interp).join("garbage");
        std::fs::write(&garbage, b"not an xz stream").unwrap();
        let damaged = dir.path().join(interp).join("damaged");
        std::fs::create_dir_all(&damaged).unwrap();
        let damaged = damaged.join(exe.file_name().unwrap());
        let status = Command::new("objcopy")
            .arg(format!(
                "--add-section=.gnu_debugdata={}",
                garbage.display()
            ))
            .args([&exe, &damaged])
            .status()
            .unwrap();
        assert!(status.success());
        let mut damaged_args = bare_args.clone();
        damaged_args.extend(["--exe".into(), damaged.display().to_string()]);
        let state = mini_state(&damaged_args);
        if !state
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("unusable: "))
        {
            problems.push(format!(
                "{interp}: a damaged section is reported as {state:?}"
            ));
        }
        if frame_names(&native_json(core, &damaged_args), module) != bare {
            problems.push(format!("{interp}: a damaged section changed the stacks"));
        }
    }
    support::assert_no_problems(&problems);
    assert!(compared > 100, "only {compared} frames compared");
}
