//! Free-threaded builds (3.13t+) are refused with an error that names the
//! build, never read with a default build's layout; `info` still shows the
//! process. The cores are synthetic (tests/it/support/synth.rs): a libpython
//! mapping whose writable data holds a `_Py_DebugOffsets` header.

use crate::support;

use std::path::{Path, PathBuf};

use crate::support::synth::{self, PF_R, PF_W, PF_X};
use pymortem::{Error, Options, Process, Python};
use serde_json::Value;

const LIB_BASE: u64 = 0x7f10_0000_0000;
const DATA: u64 = LIB_BASE + 0xc000;

/// A two-thread process whose interpreter library, `library`, holds a
/// `_Py_DebugOffsets` header: cookie, `PY_VERSION_HEX`, `free_threaded`.
fn core_with(dir: &Path, library: &str, version_hex: u64, free_threaded: u64) -> PathBuf {
    let mut core = synth::SynthCore::default();
    let path = format!("/nonexistent-pymortem-test/lib/{library}");
    core.prstatus(5150, 6, 0x401000, 0x7ffd_0000_1000, 0x7f00_0000_1740)
        .psinfo(5150, 1000, "python3", "python3 worker.py")
        .siginfo(6, -6, 5150)
        .nt_file(&[
            (
                0x400000,
                0x401000,
                0,
                "/nonexistent-pymortem-test/bin/python3",
            ),
            (LIB_BASE, LIB_BASE + 0xc000, 0, &path),
            (DATA, DATA + 0x1000, 0xc, &path),
        ])
        .prstatus(5151, 0, 0x402000, 0x7f00_0000_0f00, 0x7f00_0000_2740);
    let mut data = vec![0u8; 4096];
    data[..8].copy_from_slice(b"xdebugpy");
    data[8..16].copy_from_slice(&version_hex.to_le_bytes());
    data[16..24].copy_from_slice(&free_threaded.to_le_bytes());
    core.segment(0x400000, vec![0; 4096], 4096, PF_R | PF_X)
        .segment(LIB_BASE, elf_header(0xd000), 0xc000, PF_R | PF_X)
        .segment(DATA, data, 4096, PF_R | PF_W);
    support::write_temp(dir, "core", &core.build())
}

/// The first page of a shared library: an ELF header and one PT_LOAD
/// program header covering `extent` bytes (a module is recognised by it).
fn elf_header(extent: u64) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    page[..4].copy_from_slice(b"\x7fELF");
    page[4] = 2; // ELFCLASS64
    page[5] = 1; // little endian
    page[6] = 1;
    page[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    page[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    page[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    page[52..54].copy_from_slice(&64u16.to_le_bytes());
    page[54..56].copy_from_slice(&56u16.to_le_bytes());
    page[56..58].copy_from_slice(&1u16.to_le_bytes());
    page[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    page[64 + 40..64 + 48].copy_from_slice(&extent.to_le_bytes()); // p_memsz
    page
}

fn json(args: &[&str]) -> (i32, Value) {
    let (code, stdout, stderr) = support::pymortem(args);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}\n{stderr}"));
    (code, value)
}

fn messages(report: &Value) -> Vec<String> {
    report["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The library error, the CLI's `info`, `threads` and `check` on one core.
fn assert_refused(core: &Path, build: &str, evidence: &str) {
    let path = core.to_str().unwrap();
    let process = Process::open(core, &Options::default()).unwrap();
    match Python::of(&process) {
        Err(Error::FreeThreaded {
            build: b,
            evidence: e,
            ..
        }) => {
            assert_eq!(b, build);
            assert!(e.contains(evidence), "{e}");
        }
        Err(other) => panic!("expected a free-threaded refusal, got {other}"),
        Ok(_) => panic!("a free-threaded core was read with a default layout"),
    }
    let refusal = format!("free-threaded CPython {build} is not supported yet");

    // info: the process and its threads, and why there is no Python state.
    let (code, info) = json(&["info", "--json", "--no-cache", path]);
    assert_eq!(code, 0);
    assert_eq!(info["pid"], 5150);
    let lwps: Vec<i64> = info["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["lwp"].as_i64().unwrap())
        .collect();
    assert_eq!(lwps, [5150, 5151]);
    assert!(
        info["python"]["free_threaded"]
            .as_str()
            .is_some_and(|e| e.contains(evidence)),
        "{}",
        info["python"]
    );
    assert!(
        messages(&info).iter().any(|m| m.contains(&refusal)),
        "{:?}",
        messages(&info)
    );
    let (_, text, _) = support::pymortem(&["info", "--no-cache", path]);
    assert!(
        text.contains("free-threaded build, not supported yet"),
        "{text}"
    );

    // threads: no Python state, and the reason; an error, not "incomplete"
    // (no file would let it be read).
    let (code, threads) = json(&["threads", "--json", "--no-cache", path]);
    assert_eq!(code, 2);
    assert!(threads["interpreters"].as_array().unwrap().is_empty());
    assert!(
        threads["threads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["frames"].as_array().unwrap().is_empty() && t["thread_state"].is_null())
    );
    assert!(messages(&threads).iter().any(|m| m.contains(&refusal)));

    // check: an error, never a verdict.
    let (code, stdout, _) = support::pymortem(&["check", "--no-cache", path]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains(&refusal), "{stdout}");
    let (code, _, stderr) = support::pymortem(&["object", "--no-cache", path, "0x1000"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&refusal), "{stderr}");
}

#[test]
fn the_debug_offsets_flag_refuses_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_with(dir.path(), "libpython3.13.so.1.0", 0x030D_00F0, 1);
    assert_refused(
        &core,
        "3.13t",
        "_Py_DebugOffsets.free_threaded = 1 at 0x7f100000c010",
    );
}

#[test]
fn a_t_suffixed_library_refuses_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let core = core_with(dir.path(), "libpython3.14t.so.1.0", 0x030E_00F0, 0);
    assert_refused(&core, "3.14t", "libpython3.14t.so.1.0");
}

#[test]
fn a_default_build_is_not_called_free_threaded() {
    // The same core with the flag clear and no `t`: no refusal (the layout
    // then fails for want of a runtime, which is another error).
    let dir = tempfile::tempdir().unwrap();
    let core = core_with(dir.path(), "libpython3.13.so.1.0", 0x030D_00F0, 0);
    let process = Process::open(&core, &Options::default()).unwrap();
    let python = process.python().expect("the version is found");
    assert_eq!(python.version.to_string(), "3.13.0");
    assert_eq!(python.free_threaded, None);
    assert!(!matches!(
        Python::of(&process),
        Err(Error::FreeThreaded { .. })
    ));
    let (_, info) = json(&["info", "--json", "--no-cache", core.to_str().unwrap()]);
    assert!(info["python"]["free_threaded"].is_null());
}
