//! `pymortem._native`: the Rust handles of the `pymortem` crate as Python
//! classes, the exceptions, `open`, `triage` and the command line.
//!
//! The handles ([`Process`], [`Python`], [`Object`]) are owned, `Clone +
//! Send + Sync` in Rust: their Python classes are frozen and can be shared
//! between threads; every long walk releases the GIL. Reports (frames,
//! findings, verdicts, diagnostics) cross the boundary as their serde JSON
//! forms, which the pure-Python layer (`pymortem._model`) turns into
//! dataclasses.

mod convert;
mod crashdb;
mod errors;
mod handles;
mod object;
mod triage;

// The root crate's command line, compiled here from its own source so that
// the wheel's `pymortem` command is the binary's: same arguments, output and
// exit codes. It names the library as `pymortem::` and nothing of the binary.
#[allow(dead_code, unreachable_pub)]
#[path = "../../src/cli/mod.rs"]
mod cli;

use pyo3::prelude::*;
use pyo3::types::PyList;

/// Run the `pymortem` command line with `argv` (its first item is the
/// program name) and return its exit code. Output goes to the process's
/// stdout and stderr, as the binary's does. `--help`, `--version` and
/// argument errors end the process, as in the binary.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.allow_threads(|| {
        let code = cli::run_from(argv);
        // A library has no runtime to flush stdout at exit.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        code
    })
}

/// The native half of the `pymortem` package; use `pymortem` itself.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::register(m)?;
    m.add_class::<handles::Process>()?;
    m.add_class::<handles::Runtime>()?;
    m.add_class::<object::Object>()?;
    m.add_class::<object::ObjectIterator>()?;
    m.add_class::<handles::GcObjects>()?;
    m.add_class::<triage::TriageIterator>()?;
    m.add_function(wrap_pyfunction!(handles::open, m)?)?;
    m.add_function(wrap_pyfunction!(handles::attach, m)?)?;
    m.add_function(wrap_pyfunction!(triage::triage, m)?)?;
    m.add_function(wrap_pyfunction!(crashdb::record, m)?)?;
    m.add_function(wrap_pyfunction!(crashdb::groups, m)?)?;
    m.add_function(wrap_pyfunction!(crashdb::collect_cores, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("__all__", PyList::empty(py))?;
    Ok(())
}
