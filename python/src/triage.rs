//! `triage`: many cores in parallel, each reduced to its crash signature.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use rayon::prelude::*;
use serde_json::{Value, json};

use pymortem::corefile::TempBudget;
use pymortem::triage::{TriageOptions, collect_inputs, triage_core};

use crate::convert::{json as to_json, model};
use crate::handles::Options;

/// Triage cores and folders of cores in parallel, as `pymortem triage`
/// does: yield one `pymortem.TriageResult` per input (its crash
/// `signature`, signal, fatal error, top frames, finding kinds and
/// verdict, or the `error` that stopped it, or why it was `skipped`), in
/// the order they finish.
///
/// `jobs`: worker threads (default: one per CPU). `no_checks`: skip the
/// free-list and GC checks. The other arguments are `pymortem.open()`'s.
#[pyfunction]
#[pyo3(signature = (paths, *, jobs=None, sysroot=None, exe=None, debug_dirs=Vec::new(),
    search_path=Vec::new(), no_default_debug_dir=false, temp_dir=None,
    max_core_size=None, debuginfod=false, no_checks=false))]
#[allow(clippy::too_many_arguments)]
pub fn triage(
    py: Python<'_>,
    paths: Vec<PathBuf>,
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
) -> PyResult<TriageIterator> {
    let options = batch_options(
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
    let (cores, skipped) = py.allow_threads(|| collect_inputs(&paths));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.unwrap_or(0))
        .build()
        .map_err(|e| crate::errors::Error::new_err(format!("cannot start worker threads: {e}")))?;
    let (sender, receiver) = channel::<Value>();
    for s in &skipped {
        let _ = sender.send(json!({"path": s.path, "skipped": s.reason}));
    }
    let total = cores.len() + skipped.len();
    let options = Arc::new(options);
    std::thread::spawn(move || {
        pool.install(|| {
            // Once the iterator is dropped, sends fail and the rest of the
            // batch is not started.
            let _ = cores.par_iter().try_for_each_with(sender, |sender, path| {
                let result = match triage_core(path, &options) {
                    Ok(triaged) => to_json(&triaged),
                    Err(e) => json!({"path": path, "error": e.to_string()}),
                };
                sender.send(result)
            });
        });
    });
    Ok(TriageIterator {
        receiver: Mutex::new(receiver),
        total,
    })
}

/// A batch's triage options: the batch's decompressed cores share one
/// temp budget, as in the CLI.
pub fn batch_options(options: Options, no_checks: bool) -> TriageOptions {
    let mut open = options.build();
    open.open.temp_budget = Some(TempBudget::new(open.open.max_decompressed_size));
    TriageOptions {
        open,
        no_checks,
        ..Default::default()
    }
}

/// The results of `pymortem.triage()`, as they finish.
#[pyclass(frozen, module = "pymortem")]
pub struct TriageIterator {
    receiver: Mutex<Receiver<Value>>,
    total: usize,
}

#[pymethods]
impl TriageIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let next = py.allow_threads(|| {
            let receiver = self.receiver.lock().ok()?;
            receiver.recv().ok()
        });
        next.map(|result| model(py, "TriageResult", &result))
            .transpose()
    }

    /// How many inputs (cores and skipped files) the iterator yields in all.
    fn __len__(&self) -> usize {
        self.total
    }
}
