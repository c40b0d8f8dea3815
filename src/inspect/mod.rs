//! The library's front door for forensics scripts: owned, thread-safe
//! handles over one core's Python runtime ([`Python`]) and its objects
//! ([`Object`]).
//!
//! Every handle is `Clone + Send + Sync` and borrows nothing: it can be kept
//! in a struct, sent to another thread or used from rayon. Reads are
//! fallible and name the address and the reason; problems that do not stop
//! a walk are returned as diagnostics beside its results.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
//! # let (path, options) = (sample.core, sample.options);
//! let process = pymortem::Process::open(&path, &options)?;
//! let python = pymortem::Python::of(&process)?;
//! println!("CPython {} with {} threads", python.version(), python.threads().len());
//! for thread in python.threads() {
//!     for frame in &thread.stack.frames {
//!         println!("  {} ({}:{:?})", frame.function, frame.file, frame.line);
//!     }
//! }
//! # assert_eq!(python.version().major, 2);
//! # Ok(()) }
//! ```

mod object;

use std::sync::Arc;

pub use object::{Attribute, MAX_BYTES, MAX_ITEMS, MAX_STR_CHARS, Object, ObjectKind, Refcount};

use crate::error::{Diagnostic, Error};
use crate::forensics::{self, CheckResult, FreeListWalk, GcGenerations, ObjectInfo};
use crate::layout::{Layout, LayoutChoice, PythonVersion};
use crate::memory::ProcessMemory;
use crate::process::Process;
use crate::python::objects::Objects;
use crate::python::{
    PyInterpreter, PyThread, PythonState, RuntimeLocation, ThreadOptions, python_state,
    threads::unicode_width,
};
use crate::stacks::{MergedStack, SourceCache, merged_stack_of};

impl Python {
    /// The Python runtime of this process: its version, layout,
    /// interpreters and threads with their Python frames.
    ///
    /// Fails with [`Error::NoPython`] when the core holds no CPython runtime
    /// pymortem can read (the reason says what was missing), and with
    /// [`Error::FreeThreaded`] for a free-threaded build.
    pub fn of(process: &Process) -> Result<Python, Error> {
        Python::with_options(process, &ThreadOptions::default())
    }

    /// [`Python::of`] with options: the layout cache, and whether frames
    /// carry their arguments and locals.
    pub fn with_options(process: &Process, options: &ThreadOptions) -> Result<Python, Error> {
        if let Some(p) = process.python()
            && let Some(evidence) = &p.free_threaded
        {
            return Err(Error::FreeThreaded {
                path: process.core().path().to_path_buf(),
                build: p.build_name(),
                evidence: evidence.clone(),
            });
        }
        let state = python_state(process, options).map_err(|cause| Error::NoPython {
            path: process.core().path().to_path_buf(),
            cause,
        })?;
        let version = process
            .python()
            .map(|p| p.version)
            .ok_or_else(|| Error::NoPython {
                path: process.core().path().to_path_buf(),
                cause: crate::python::PythonError::NoInterpreter,
            })?;
        Ok(Python {
            parts: Arc::new(PythonParts {
                process: process.clone(),
                unicode_width: unicode_width(process),
                version,
                kinds: Default::default(),
                type_names: Default::default(),
                state,
            }),
        })
    }
}

/// Types whose kind or name a runtime remembers, at most (a damaged heap
/// can point at any number of "types").
const MAX_KNOWN_TYPES: usize = 1 << 16;

/// What a runtime learned about the types at some addresses: the core does
/// not change, so neither does the answer. Bounded by [`MAX_KNOWN_TYPES`].
#[derive(Debug)]
struct PerType<V>(std::sync::RwLock<rustc_hash::FxHashMap<u64, V>>);

impl<V> Default for PerType<V> {
    fn default() -> Self {
        PerType(Default::default())
    }
}

impl<V: Clone> PerType<V> {
    fn get(&self, ty: u64) -> Option<V> {
        self.0.read().ok()?.get(&ty).cloned()
    }

    fn remember(&self, ty: u64, value: V) {
        if let Ok(mut known) = self.0.write()
            && known.len() < MAX_KNOWN_TYPES
        {
            known.insert(ty, value);
        }
    }
}

/// A process's CPython runtime: a cheap, thread-safe handle.
#[derive(Debug, Clone)]
pub struct Python {
    parts: Arc<PythonParts>,
}

#[derive(Debug)]
struct PythonParts {
    process: Process,
    version: PythonVersion,
    unicode_width: u64,
    state: PythonState,
    kinds: PerType<ObjectKind>,
    /// Scripts ask every object its type's name: one read of `tp_name` per type.
    type_names: PerType<Arc<str>>,
}

/// One core thread's merged stack, with its Python thread states.
#[derive(Debug, Clone)]
pub struct ThreadStack {
    /// The kernel thread id.
    pub lwp: i32,
    /// The Python thread state it runs now (the last of `thread_states`),
    /// when it ran Python.
    pub python: Option<PyThread>,
    /// All its thread states, outermost first: more than one when it runs
    /// subinterpreters.
    pub thread_states: Vec<PyThread>,
    /// Native and Python frames (of every thread state), innermost first.
    pub stack: MergedStack,
}

impl Python {
    /// The process this runtime belongs to.
    pub fn process(&self) -> &Process {
        &self.parts.process
    }
    /// The CPython version.
    pub fn version(&self) -> PythonVersion {
        self.parts.version
    }
    /// The structure layout every read uses.
    pub fn layout(&self) -> &Layout {
        &self.parts.state.layout.layout
    }
    /// The layout with every source that was tried for it (DWARF, cache,
    /// `_Py_DebugOffsets`, built-in table).
    pub fn layout_choice(&self) -> &LayoutChoice {
        &self.parts.state.layout
    }
    /// Where the interpreters were found, and how.
    pub fn runtime(&self) -> &RuntimeLocation {
        &self.parts.state.runtime
    }
    /// Every interpreter, main first.
    pub fn interpreters(&self) -> &[PyInterpreter] {
        &self.parts.state.interpreters
    }
    /// Every Python thread state of every interpreter with its Python
    /// frames, interpreter by interpreter. A core thread that runs
    /// subinterpreters holds several: see [`Python::thread_states_of`].
    pub fn threads(&self) -> &[PyThread] {
        &self.parts.state.threads
    }
    /// The thread states bound to core thread `lwp`, outermost (entered
    /// first) first; the last is the one it runs now.
    pub fn thread_states_of(&self, lwp: i32) -> Vec<&PyThread> {
        self.parts.state.thread_states_of(lwp)
    }
    /// The thread state that held the GIL, when known.
    pub fn gil_holder(&self) -> Option<&PyThread> {
        let holder = self.parts.state.gil_holder?;
        self.threads().iter().find(|t| t.tstate == holder)
    }
    /// Problems met while reading the runtime that did not stop it.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.parts.state.diagnostics
    }
    /// The model the lower-level modules take ([`crate::forensics`],
    /// [`crate::stacks`]).
    pub fn state(&self) -> &PythonState {
        &self.parts.state
    }

    /// The merged native and Python stack of core thread `lwp` (the Python
    /// frames of all its thread states), with source lines and inlined
    /// functions when debug info has them, and the frames of functions that
    /// ended in a tail call rebuilt from DWARF call sites.
    pub fn stack(&self, lwp: i32) -> MergedStack {
        merged_stack_of(
            self.process(),
            lwp,
            &self.thread_states_of(lwp),
            Some(&mut SourceCache::default()),
        )
    }

    /// Every core thread's merged stack, in the core's thread order.
    pub fn stacks(&self) -> Vec<ThreadStack> {
        let mut sources = SourceCache::default();
        self.process()
            .threads()
            .iter()
            .map(|t| {
                let states = self.thread_states_of(t.lwp);
                ThreadStack {
                    lwp: t.lwp,
                    python: states.last().map(|&s| s.clone()),
                    thread_states: states.iter().map(|&s| s.clone()).collect(),
                    stack: merged_stack_of(self.process(), t.lwp, &states, Some(&mut sources)),
                }
            })
            .collect()
    }

    /// The object at `address`. Nothing is read until it is asked for.
    pub fn object(&self, address: u64) -> Object {
        Object::new(self.clone(), address)
    }

    /// Every free list, walked, with the contradictions found inside them.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
    /// let python = pymortem::Python::of(&pymortem::Process::open(&sample.core, &sample.options)?)?;
    /// for slot in python.free_lists().slots.iter().filter(|s| s.walked > 0) {
    ///     println!("{}: {} free, counter {:?}", slot.list, slot.walked, slot.counter);
    /// }
    /// // The victim was pushed twice: its slot's chain loops back to it.
    /// # let index = sample.truth["objects"]["freelist_index"].as_u64().unwrap() as usize;
    /// let walk = python.free_lists();
    /// let slot = walk.slots.iter().find(|s| s.list == format!("tuple[{index}]")).unwrap();
    /// assert_eq!(slot.counter, Some(2));
    /// assert_eq!(slot.members, [sample.truth["objects"]["victim_tuple"].as_u64().unwrap()]);
    /// # Ok(()) }
    /// ```
    pub fn free_lists(&self) -> FreeListWalk {
        forensics::free_lists(self.process(), self.state())
    }

    /// Every GC generation list, walked, with the objects in each.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
    /// let python = pymortem::Python::of(&pymortem::Process::open(&sample.core, &sample.options)?)?;
    /// let gc = python.gc_generations();
    /// for generation in &gc.generations {
    ///     println!("{}: {} objects", generation.summary.name, generation.objects.len());
    /// }
    /// // The list that still holds the freed tuple is tracked.
    /// let holder = sample.truth["objects"]["holder_list"].as_u64().unwrap();
    /// assert!(gc.generations.iter().any(|g| g.objects.contains(&holder)));
    /// # Ok(()) }
    /// ```
    pub fn gc_generations(&self) -> GcGenerations {
        forensics::gc_generations(self.process(), self.state())
    }

    /// Every asyncio task (3.8+), by event loop: its state, name,
    /// coroutine chain, the future it waits for and the tasks awaiting it.
    pub fn tasks(&self) -> crate::asyncio::Tasks {
        crate::asyncio::tasks(self.process(), self.state())
    }

    /// Run every forensic check: free lists against GC lists, headers and
    /// references, with typed findings and a verdict.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
    /// use pymortem::forensics::FindingKind;
    ///
    /// let python = pymortem::Python::of(&pymortem::Process::open(&sample.core, &sample.options)?)?;
    /// let result = python.check();
    /// for finding in &result.findings {
    ///     println!("{:?} {:?} at {:#x}: {}", finding.severity, finding.kind, finding.address, finding.message);
    /// }
    /// let victim = sample.truth["objects"]["victim_tuple"].as_u64().unwrap();
    /// assert!(result.findings.iter().any(|f| f.address == victim && f.kind == FindingKind::FreeListCycle));
    /// # Ok(()) }
    /// ```
    pub fn check(&self) -> CheckResult {
        forensics::check(self.process(), self.state())
    }

    /// Everything the checks can tell about one object: its GC state, the
    /// lists holding it, who references it, and findings about it.
    pub fn inspect(&self, address: u64) -> ObjectInfo {
        forensics::inspect(self.process(), self.state(), address)
    }

    /// A reader of this runtime's objects.
    pub(crate) fn objects(&self) -> Objects<'_, ProcessMemory> {
        Objects::new(
            self.process().memory(),
            self.layout(),
            self.parts.unicode_width,
        )
        .with_anchors(&self.state().type_anchors)
    }

    /// The kind of the objects of type `ty`, found before.
    pub(crate) fn known_kind(&self, ty: u64) -> Option<ObjectKind> {
        self.parts.kinds.get(ty)
    }

    /// Remember the kind of the objects of type `ty`.
    pub(crate) fn remember_kind(&self, ty: u64, kind: ObjectKind) {
        self.parts.kinds.remember(ty, kind);
    }

    /// The name of the type at `ty`, read once.
    pub(crate) fn type_name_of_type(&self, ty: u64) -> Result<Arc<str>, crate::ReadError> {
        if let Some(name) = self.parts.type_names.get(ty) {
            return Ok(name);
        }
        let name: Arc<str> = self.objects().type_name_of_type(ty)?.into();
        self.parts.type_names.remember(ty, name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn handles_are_owned_and_thread_safe() {
        assert_send_sync::<Process>();
        assert_send_sync::<Python>();
        assert_send_sync::<Object>();
    }
}
