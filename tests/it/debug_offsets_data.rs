//! `layouts/debug-offsets.toml` (where each `_Py_DebugOffsets` member sits,
//! per minor version) is what gdb reads from the DWARF of every 3.13+
//! interpreter of the sample matrix: stale data, or a new interpreter on
//! this machine without its entry, fails here.

use std::process::Command;

use crate::support;

#[test]
fn the_debug_offsets_data_matches_every_interpreter_from_3_13() {
    if support::matrix_missing() {
        return;
    }
    // The manifest names the interpreters; the script reads each with gdb.
    let manifest = support::manifest();
    let newest_minor = manifest
        .iter()
        .filter_map(|e| {
            let v = e["python_version"].as_str()?;
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .max()
        .expect("interpreters in the manifest");
    assert!(
        newest_minor >= (3, 13),
        "the matrix has a 3.13+ interpreter"
    );
    let cores = std::env::var_os("PYMORTEM_CORES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| support::repo().join("sample-cores/generated"));
    let out = Command::new("python3")
        .arg(support::repo().join("sample-cores/emit_debug_offsets.py"))
        .arg("--check")
        .arg("--manifest")
        .arg(cores.join("manifest.json"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read_to_string(support::repo().join("layouts/debug-offsets.toml")).unwrap();
    let section = format!("[\"{}.{}\"]", newest_minor.0, newest_minor.1);
    assert!(
        data.contains(&section),
        "the newest interpreter's version has no {section} in layouts/debug-offsets.toml"
    );
}
