//! `Process` and `Python`: a core, and its CPython runtime.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use serde_json::{Value, json};

use crate::convert::{self, json as to_json, model, to_py};
use crate::errors::IntoPy;
use crate::object::Object;

/// Open a core (plain, or compressed as systemd-coredump writes them) or a
/// bundle made by `pymortem bundle`.
///
/// `sysroot`: resolve every path the core names under it, like gdb's.
/// `exe`: the main executable, when it is not where the core says.
/// `debug_dirs`: folders of separate debug files (searched before
/// /usr/lib/debug). `search_path`: folder trees searched by build-id for
/// module and debug files. `no_default_debug_dir`: do not search
/// /usr/lib/debug. `temp_dir`: where compressed cores and bundles are
/// decompressed. `max_core_size`: the most a compressed core may
/// decompress to, in bytes. `debuginfod`: ask the servers DEBUGINFOD_URLS
/// names for missing files.
///
/// Raises `pymortem.OpenError` when the input cannot be opened.
#[pyfunction]
#[pyo3(signature = (path, sysroot=None, *, exe=None, debug_dirs=Vec::new(),
    search_path=Vec::new(), no_default_debug_dir=false, temp_dir=None,
    max_core_size=None, debuginfod=false))]
#[allow(clippy::too_many_arguments)]
pub fn open(
    py: Python<'_>,
    path: PathBuf,
    sysroot: Option<PathBuf>,
    exe: Option<PathBuf>,
    debug_dirs: Vec<PathBuf>,
    search_path: Vec<PathBuf>,
    no_default_debug_dir: bool,
    temp_dir: Option<PathBuf>,
    max_core_size: Option<u64>,
    debuginfod: bool,
) -> PyResult<Process> {
    let options = Options {
        sysroot,
        exe,
        debug_dirs,
        search_path,
        no_default_debug_dir,
        temp_dir,
        max_core_size,
        debuginfod,
    }
    .build();
    let process = py
        .allow_threads(|| pymortem::Process::open(&path, &options))
        .py_err()?;
    Ok(Process::new(process))
}

/// Copy the running process `pid` (its threads stopped for milliseconds,
/// unless `block` is false) and open the copy, as `open` opens a core.
#[pyfunction]
#[pyo3(signature = (pid, *, block=true, sysroot=None, exe=None, debug_dirs=Vec::new(),
    search_path=Vec::new(), no_default_debug_dir=false, temp_dir=None, debuginfod=false))]
#[allow(clippy::too_many_arguments)]
pub fn attach(
    py: Python<'_>,
    pid: i32,
    block: bool,
    sysroot: Option<PathBuf>,
    exe: Option<PathBuf>,
    debug_dirs: Vec<PathBuf>,
    search_path: Vec<PathBuf>,
    no_default_debug_dir: bool,
    temp_dir: Option<PathBuf>,
    debuginfod: bool,
) -> PyResult<Process> {
    let options = Options {
        sysroot,
        exe,
        debug_dirs,
        search_path,
        no_default_debug_dir,
        temp_dir,
        max_core_size: None,
        debuginfod,
    }
    .build();
    let live = pymortem::live::SnapshotOptions {
        block,
        ..pymortem::live::SnapshotOptions::default()
    };
    let process = py
        .allow_threads(|| pymortem::Process::attach(pid, &options, &live))
        .py_err()?;
    Ok(Process::new(process))
}

/// `open`'s arguments.
pub struct Options {
    pub sysroot: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    pub debug_dirs: Vec<PathBuf>,
    pub search_path: Vec<PathBuf>,
    pub no_default_debug_dir: bool,
    pub temp_dir: Option<PathBuf>,
    pub max_core_size: Option<u64>,
    pub debuginfod: bool,
}

impl Options {
    /// The library's options.
    pub fn build(self) -> pymortem::Options {
        let mut options = pymortem::Options::default();
        if let Some(dir) = self.sysroot {
            options = options.sysroot(dir);
        }
        if let Some(exe) = self.exe {
            options = options.exe(exe);
        }
        for dir in self.debug_dirs {
            options = options.debug_dir(dir);
        }
        for dir in self.search_path {
            options = options.search_path(dir);
        }
        if self.no_default_debug_dir {
            options = options.no_default_debug_dir();
        }
        if let Some(dir) = self.temp_dir {
            options = options.temp_dir(dir);
        }
        if let Some(bytes) = self.max_core_size {
            options = options.max_core_size(bytes);
        }
        if self.debuginfod
            && let Some(client) = pymortem::debuginfod::Debuginfod::from_env()
        {
            options = options.debuginfod(Arc::new(client));
        }
        options
    }
}

/// A crashed process: its core, memory, modules and threads.
///
/// Made by `pymortem.open()`. Cheap to share between threads: every
/// method may be called from any thread, and long work releases the GIL.
#[pyclass(frozen, module = "pymortem")]
pub struct Process {
    process: pymortem::Process,
    /// The Python runtimes read so far, without and with locals.
    python: [OnceLock<pymortem::Python>; 2],
}

impl Process {
    fn new(process: pymortem::Process) -> Process {
        Process {
            process,
            python: Default::default(),
        }
    }
}

#[pymethods]
impl Process {
    /// The core file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.process.core().path().to_path_buf()
    }

    /// The process id (from the core's process-info note, else the first
    /// thread's LWP), or None.
    #[getter]
    fn pid(&self) -> Option<i32> {
        self.process.pid()
    }

    /// The number of the signal that killed the process (6 for SIGABRT,
    /// 11 for SIGSEGV, …), or None.
    #[getter]
    fn signal(&self) -> Option<i32> {
        self.process
            .core()
            .siginfo()
            .map(|s| s.signo)
            .filter(|&s| s != 0)
            .or_else(|| {
                let cursig = i32::from(self.process.crashed_thread()?.cursig);
                (cursig != 0).then_some(cursig)
            })
    }

    /// The name of the signal that killed the process (`SIGABRT`), or None.
    #[getter]
    fn signal_name(&self) -> Option<&'static str> {
        pymortem::corefile::signals::signal_name(self.signal()?)
    }

    /// The LWP of the thread that crashed, or None.
    #[getter]
    fn crashed_lwp(&self) -> Option<i32> {
        self.process.crashed_thread().map(|t| t.lwp)
    }

    /// Every thread of the core, as `pymortem.Thread` (lwp, pthread_id,
    /// crashed, pc, sp), in the core's order.
    #[getter]
    fn threads(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let crashed = self.crashed_lwp();
        let process = &self.process;
        let threads: Vec<Value> = py.allow_threads(|| {
            process
                .threads()
                .iter()
                .map(|t| {
                    json!({
                        "lwp": t.lwp,
                        "pthread_id": pymortem::memory::threads::pthread_id(process.memory(), t),
                        "crashed": Some(t.lwp) == crashed,
                        "pc": t.registers.pc(),
                        "sp": t.registers.sp(),
                        "signal": (t.cursig != 0).then_some(t.cursig),
                    })
                })
                .collect()
        });
        threads.iter().map(|t| model(py, "Thread", t)).collect()
    }

    /// Every module (executable, libraries, vDSO) the process had mapped,
    /// as `pymortem.Module`, with where its file and debug info were found.
    #[getter]
    fn modules(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let process = &self.process;
        let modules: Vec<Value> = py.allow_threads(|| {
            process
                .modules()
                .modules()
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name(),
                        "path": m.recorded_path,
                        "kind": to_json(&m.kind),
                        "base": m.base,
                        "end": m.end,
                        "load_bias": m.load_bias,
                        "build_id": m.build_id_hex(),
                        "deleted": m.deleted,
                        "file": to_json(&m.file_status),
                        "debug": to_json(&m.debug_status),
                    })
                })
                .collect()
        });
        modules.iter().map(|m| model(py, "Module", m)).collect()
    }

    /// The native stack of thread `lwp`, innermost frame first, as a list
    /// of `pymortem.Frame` (kind "native"); None when the core has no such
    /// thread.
    fn native_stack(&self, py: Python<'_>, lwp: i32) -> PyResult<Option<Vec<PyObject>>> {
        let process = &self.process;
        let Some(stack) = py.allow_threads(|| {
            pymortem::unwind::unwind_thread(process, lwp).map(|s| {
                s.frames
                    .iter()
                    .map(|f| json!(pymortem::stacks::StackFrame::Native(f.clone())))
                    .collect::<Vec<Value>>()
            })
        }) else {
            return Ok(None);
        };
        stack
            .iter()
            .map(|f| model(py, "Frame", f))
            .collect::<PyResult<_>>()
            .map(Some)
    }

    /// The CPython runtime of the process (version, threads, objects,
    /// checks). `locals=True` reads each Python frame's arguments and
    /// locals too. The runtime is read once and kept.
    ///
    /// Raises `pymortem.NoPython` when the core holds no CPython runtime
    /// pymortem can read.
    #[pyo3(signature = (*, locals=false))]
    fn python(&self, py: Python<'_>, locals: bool) -> PyResult<Runtime> {
        let slot = &self.python[usize::from(locals)];
        if let Some(python) = slot.get() {
            return Ok(Runtime::of(python.clone()));
        }
        let process = &self.process;
        let python = py
            .allow_threads(|| {
                let options = pymortem::python::ThreadOptions {
                    locals,
                    ..Default::default()
                };
                pymortem::Python::with_options(process, &options)
            })
            .py_err()?;
        Ok(Runtime::of(slot.get_or_init(|| python).clone()))
    }

    /// The whole `pymortem info --json` report of the process, as a dict.
    fn info(&self, py: Python<'_>) -> PyResult<PyObject> {
        let process = &self.process;
        let report = py.allow_threads(|| to_json(&pymortem::report::InfoReport::build(process)));
        convert::value_to_py(py, &report)
    }

    /// Problems met while opening the core that did not stop it, as dicts
    /// (severity, source, message).
    #[getter]
    fn diagnostics(&self, py: Python<'_>) -> PyResult<PyObject> {
        to_py(py, &self.process.diagnostics())
    }

    fn __repr__(&self) -> String {
        format!(
            "<pymortem.Process {} pid={} threads={}>",
            self.process.core().path().display(),
            self.process
                .pid()
                .map_or_else(|| "?".to_string(), |p| p.to_string()),
            self.process.threads().len()
        )
    }
}

/// A process's CPython runtime: its version, interpreters, threads and
/// their stacks, its objects, free lists and GC lists, and the forensic
/// checks. Made by `Process.python()`.
///
/// Iterating over it yields every object the GC tracks (`Object`).
#[pyclass(frozen, module = "pymortem", name = "Python")]
pub struct Runtime {
    python: pymortem::Python,
}

impl Runtime {
    pub fn of(python: pymortem::Python) -> Runtime {
        Runtime { python }
    }

    pub fn inner(&self) -> &pymortem::Python {
        &self.python
    }
}

#[pymethods]
impl Runtime {
    /// The CPython version, `3.12.1` (or `3.12` when only that is known).
    #[getter]
    fn version(&self) -> String {
        self.python.version().to_string()
    }

    /// The version as a tuple: `(3, 12, 1)`, or `(3, 12)` when the micro
    /// version is unknown.
    #[getter]
    fn version_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let v = self.python.version();
        let mut parts = vec![u32::from(v.major), u32::from(v.minor)];
        parts.extend(v.micro.map(u32::from));
        PyTuple::new(py, parts)
    }

    /// The process this runtime belongs to.
    #[getter]
    fn process(&self) -> Process {
        Process::new(self.python.process().clone())
    }

    /// Every interpreter, main first, as dicts (address, id, threads).
    #[getter]
    fn interpreters(&self, py: Python<'_>) -> PyResult<PyObject> {
        to_py(py, &self.python.interpreters())
    }

    /// Every Python thread state with its Python frames, as
    /// `pymortem.PythonThread`, interpreter by interpreter.
    #[getter]
    fn threads(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let threads = to_json(&self.python.threads());
        threads
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| model(py, "PythonThread", t))
            .collect()
    }

    /// Every core thread's merged stack (its native frames with the Python
    /// frames they run), as `pymortem.ThreadStack`, in the core's order.
    fn stacks(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let python = &self.python;
        let stacks: Vec<Value> = py.allow_threads(|| {
            python
                .stacks()
                .iter()
                .map(|s| {
                    json!({
                        "lwp": s.lwp,
                        "stack": to_json(&s.stack),
                        "python": to_json(&s.python),
                    })
                })
                .collect()
        });
        stacks.iter().map(|s| model(py, "ThreadStack", s)).collect()
    }

    /// The merged stack of core thread `lwp`, as `pymortem.ThreadStack`.
    fn stack(&self, py: Python<'_>, lwp: i32) -> PyResult<PyObject> {
        let python = &self.python;
        let stack = py.allow_threads(|| {
            json!({
                "lwp": lwp,
                "stack": to_json(&python.stack(lwp)),
                "python": to_json(&python.thread_states_of(lwp).last()),
            })
        });
        model(py, "ThreadStack", &stack)
    }

    /// The object at `address` (nothing is read until asked for).
    fn object(&self, address: u64) -> Object {
        Object::new(self.python.object(address))
    }

    /// Everything the checks can tell about the object at `address`: type,
    /// refcount, GC state, free-list membership, referrers, findings (a
    /// dict, as `pymortem object --json` prints it).
    fn inspect(&self, py: Python<'_>, address: u64) -> PyResult<PyObject> {
        let python = &self.python;
        let info = py.allow_threads(|| to_json(&python.inspect(address)));
        convert::value_to_py(py, &info)
    }

    /// Every free list walked, as `pymortem.FreeLists` (slots, findings,
    /// diagnostics, unchecked).
    fn free_lists(&self, py: Python<'_>) -> PyResult<PyObject> {
        let python = &self.python;
        let walk = py.allow_threads(|| {
            let walk = python.free_lists();
            json!({
                "slots": to_json(&walk.slots),
                "findings": to_json(&walk.findings),
                "diagnostics": to_json(&walk.diagnostics),
                "unchecked": to_json(&walk.unchecked),
            })
        });
        model(py, "FreeLists", &walk)
    }

    /// Every GC generation walked, as `pymortem.GcGenerations`; each
    /// generation's `objects` are addresses (`Python.object()` reads one).
    fn gc_generations(&self, py: Python<'_>) -> PyResult<PyObject> {
        let python = &self.python;
        let gc = py.allow_threads(|| {
            let gc = python.gc_generations();
            json!({
                "generations": gc.generations.iter().map(|g| {
                    let mut summary = to_json(&g.summary);
                    summary["objects"] = json!(g.objects);
                    summary
                }).collect::<Vec<_>>(),
                "findings": to_json(&gc.findings),
                "collecting": gc.collecting,
                "stats": to_json(&gc.stats),
                "diagnostics": to_json(&gc.diagnostics),
                "unchecked": to_json(&gc.unchecked),
            })
        });
        model(py, "GcGenerations", &gc)
    }

    /// Every object the GC tracks, generation by generation, as an
    /// iterator of `Object`.
    fn gc_objects(&self, py: Python<'_>) -> GcObjects {
        let python = &self.python;
        let addresses = py.allow_threads(|| {
            python
                .gc_generations()
                .generations
                .into_iter()
                .flat_map(|g| g.objects)
                .collect::<Vec<u64>>()
        });
        GcObjects {
            python: self.python.clone(),
            addresses,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn __iter__(&self, py: Python<'_>) -> GcObjects {
        self.gc_objects(py)
    }

    /// Run every forensic check (free lists against GC lists, headers,
    /// references) and return `pymortem.CheckResult`: typed findings with
    /// their evidence, and the verdict.
    fn check(&self, py: Python<'_>) -> PyResult<PyObject> {
        let python = &self.python;
        let result = py.allow_threads(|| to_json(&python.check()));
        model(py, "CheckResult", &result)
    }

    /// Every asyncio task by event loop (a dict, as `pymortem tasks --json`
    /// shows them).
    fn tasks(&self, py: Python<'_>) -> PyResult<PyObject> {
        let python = &self.python;
        let tasks = py.allow_threads(|| to_json(&python.tasks()));
        convert::value_to_py(py, &tasks)
    }

    /// Problems met while reading the runtime that did not stop it, as dicts.
    #[getter]
    fn diagnostics(&self, py: Python<'_>) -> PyResult<PyObject> {
        to_py(py, &self.python.diagnostics())
    }

    fn __repr__(&self) -> String {
        format!(
            "<pymortem.Python {} threads={}>",
            self.python.version(),
            self.python.threads().len()
        )
    }
}

/// An iterator over the objects the GC tracks.
#[pyclass(frozen, module = "pymortem")]
pub struct GcObjects {
    python: pymortem::Python,
    addresses: Vec<u64>,
    next: std::sync::atomic::AtomicUsize,
}

#[pymethods]
impl GcObjects {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<Object> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let address = *self.addresses.get(i)?;
        Some(Object::new(self.python.object(address)))
    }

    fn __len__(&self) -> usize {
        self.addresses.len()
    }
}
