//! The crash database from Python: `record` (what `pymortem triage --db`
//! does, for a list of cores) and `groups` (what `pymortem groups --json`
//! prints). `pymortem.dask.triage` runs `record` on a cluster's workers.

use std::path::PathBuf;

use pyo3::prelude::*;
use serde_json::{Value, json};

use pymortem::crashdb::{GroupQuery, Ingest, open_store, regroup};
use pymortem::triage::{classify_inputs, collect_inputs, triage_core};

use crate::convert::json as to_json;
use crate::errors::Error;
use crate::handles::Options;

fn db_error(e: impl std::fmt::Display) -> PyErr {
    Error::new_err(e.to_string())
}

/// The cores under `paths` (files, and folders walked recursively) and the
/// files that are not cores, as `pymortem triage` finds them: a dict with
/// `cores` (paths) and `skipped` (`{"path", "skipped"}` dicts).
#[pyfunction]
pub fn collect_cores(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<PyObject> {
    let (cores, skipped) = py.allow_threads(|| collect_inputs(&paths));
    let value = json!({
        "cores": cores,
        "skipped": skipped
            .iter()
            .map(|s| json!({"path": s.path, "skipped": s.reason}))
            .collect::<Vec<Value>>(),
    });
    crate::convert::value_to_py(py, &value)
}

/// Record cores into the crash database `db` (a SQLite file or a
/// `postgresql://` URL), as `pymortem triage --db` does: cores recorded
/// before (same path, size and time, or same content) are not read again.
/// Returns a dict: `database` (what was recorded, as in `triage --json`'s
/// summary) and `results` (one dict per core read, as `triage` yields
/// them). The GIL is released throughout.
#[pyfunction]
#[pyo3(signature = (db, paths, *, host=None, jobs=Some(1), sysroot=None, exe=None,
    debug_dirs=Vec::new(), search_path=Vec::new(), no_default_debug_dir=false,
    temp_dir=None, max_core_size=None, debuginfod=false, no_checks=false))]
#[allow(clippy::too_many_arguments)]
pub fn record(
    py: Python<'_>,
    db: String,
    paths: Vec<PathBuf>,
    host: Option<String>,
    jobs: Option<usize>,
    sysroot: Option<PathBuf>,
    exe: Option<PathBuf>,
    debug_dirs: Vec<PathBuf>,
    search_path: Vec<PathBuf>,
    no_default_debug_dir: bool,
    temp_dir: Option<PathBuf>,
    max_core_size: Option<u64>,
    debuginfod: bool,
    no_checks: bool,
) -> PyResult<PyObject> {
    let options = crate::triage::batch_options(
        Options {
            sysroot,
            exe,
            debug_dirs,
            search_path,
            no_default_debug_dir,
            temp_dir,
            max_core_size,
            debuginfod,
        },
        no_checks,
    );
    let value = py.allow_threads(|| -> Result<Value, String> {
        let mut ingest = Ingest::open(&db, host).map_err(|e| e.to_string())?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.unwrap_or(0))
            .build()
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
        let (files, _) = pymortem::triage::walk_inputs(&paths);
        let files = ingest.drop_recorded(files).map_err(|e| e.to_string())?;
        let (cores, _) = classify_inputs(files);
        let cores = pool
            .install(|| ingest.drop_recorded_contents(cores))
            .map_err(|e| e.to_string())?;
        let outcomes = ingest
            .read_and_record(&pool, &cores, |path: &PathBuf| {
                (
                    path.clone(),
                    triage_core(path, &options).map_err(pymortem::crashdb::UnreadableCore::from),
                )
            })
            .map_err(|e| e.to_string())?;
        let results: Vec<Value> = outcomes
            .iter()
            .map(|(path, outcome)| match outcome {
                Ok(core) => to_json(core),
                Err(e) => json!({"path": path, "error": e}),
            })
            .collect();
        Ok(json!({"database": ingest.summary().to_json(), "results": results}))
    });
    let value = value.map_err(db_error)?;
    crate::convert::value_to_py(py, &value)
}

/// The groups of the crash database `db`, largest first, as `pymortem
/// groups --json` prints them (a dict). `since`: Unix seconds; `limit`: at
/// most that many groups.
#[pyfunction]
#[pyo3(signature = (db, *, since=None, limit=None))]
pub fn groups(
    py: Python<'_>,
    db: String,
    since: Option<u64>,
    limit: Option<usize>,
) -> PyResult<PyObject> {
    let value = py.allow_threads(|| -> Result<Value, String> {
        let mut store = open_store(&db, false).map_err(|e| e.to_string())?;
        regroup(store.as_mut()).map_err(|e| e.to_string())?;
        let list = store
            .groups(&GroupQuery { since, limit })
            .map_err(|e| e.to_string())?;
        Ok(pymortem::report::groups_json(
            &list,
            &store.location(),
            since,
        ))
    });
    let value = value.map_err(db_error)?;
    crate::convert::value_to_py(py, &value)
}
