//! pymortem: post-mortem forensics for crashed CPython processes.
//!
//! Open a core, rebuild the interpreter's structures from DWARF (or
//! built-in layout tables when the binary is stripped), read every thread's
//! Python and native stack, walk the tuple free lists and the GC lists, and
//! flag, with evidence, the objects whose state contradicts their
//! free-list membership.
//!
//! # A tour
//!
//! Every example here runs on a core committed to the repository (a bundle
//! holding the core and its interpreter's files): a Python 2.7 process in
//! which a 7-tuple was released twice while a list still held it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
//! # let (path, truth) = (&sample.core, &sample.truth);
//! use pymortem::{Options, Process, Python};
//!
//! // Open the core; the binaries it names are looked up under a sysroot
//! // (a bundle made by `pymortem bundle` carries them and needs none).
//! # let options = sample.options.clone();
//! # /*
//! let options = Options::default().sysroot("/srv/cores/root");
//! # */
//! let process = Process::open(path, &options)?;
//! println!("pid {:?}, {} threads", process.core().psinfo().map(|p| p.pid), process.threads().len());
//!
//! // The Python runtime: version, layout, interpreters, threads.
//! let python = Python::of(&process)?;
//! assert_eq!(python.version().to_string(), "2.7.18");
//!
//! // Every thread's Python frames merged into its native stack.
//! for thread in python.stacks() {
//!     println!("thread {}: {} frames", thread.lwp, thread.stack.frames.len());
//! }
//!
//! // The checks: typed findings with their evidence, and a verdict.
//! let result = python.check();
//! let victim = result.verdict.victims[0];
//! # assert_eq!(victim, truth["objects"]["victim_tuple"].as_u64().unwrap());
//! println!("{}", result.verdict.summary);
//!
//! // Objects by address: who still holds the victim?
//! let info = python.inspect(victim);
//! let holder = python.object(info.referrers[0].container.unwrap());
//! assert_eq!(holder.type_name()?, "list");
//! assert_eq!(holder.list_items()?[0].address(), victim);
//!
//! // Raw memory, symbols and layouts are there too.
//! use pymortem::memory::MemoryExt;
//! let ob_refcnt = python.layout().offset("PyObject", "ob_refcnt").unwrap();
//! assert_eq!(process.memory().read_i64(victim + ob_refcnt)?, 0);
//! assert!(process.symbol_address("PyTuple_New").is_some());
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! The crate is layered, lowest first; each layer knows nothing of the ones
//! above it (`tests/it/architecture.rs` checks that the top-level modules
//! form no cycle):
//!
//! 0. [`arch`]: the processor architecture: a thread's registers, DWARF
//!    register numbers, the return-address and frame-pointer rules, call
//!    decoding, the red zone and signal frames. Only it names a register.
//! 1. [`mapped_file`], [`regular_file`]: opening and mapping files;
//!    [`diagnostic`]: the problems every layer keeps beside its results.
//!    [`live`]: a running process copied as an ELF core (threads stopped
//!    with ptrace, memory read with `process_vm_readv`).
//! 2. [`corefile`]: the ELF core file (segments, notes, compression, signal
//!    names) and [`corefile::OpenError`].
//! 3. [`elf`]: an ELF image (a module's file, a debug file, the vDSO) and
//!    bounded reads of its sections.
//! 4. [`memory`]: the process's memory as one fallible read interface, and
//!    [`ReadError`].
//! 5. [`symbols`], [`dwarf`]: symbol tables and debug info of an ELF image.
//! 6. [`bundle`]: reading a core with its files in one archive.
//! 7. [`modules`]: the mapped files found on disk or in a bundle.
//! 8. [`interpreter`]: which CPython the process ran (its version) and
//!    where its `_PyRuntime` lies.
//! 9. [`process`]: a core with its memory, modules and interpreter version;
//!    [`layout`]: CPython's structure layouts, from DWARF or tables, chosen
//!    from the interpreter's version, the module set and the memory.
//! 10. [`python`] and [`unwind`]: the CPython model, native stacks.
//! 11. [`stacks`]: Python frames merged into native stacks, fatal errors.
//! 12. [`forensics`]: free lists, GC lists, references, findings.
//! 13. [`error`]: the top-level [`Error`], which carries the Python model's
//!     [`python::PythonError`] and wraps the lower layers' errors.
//! 14. [`inspect`]: the handles above, [`Python`] and [`Object`] (and
//!     `Python::of`, which makes a [`Python`] from a [`Process`]).
//! 15. [`triage`] for folders of cores, [`report`]: serde report models
//!     behind the CLI's tables and JSON, [`bundler`]: writing a bundle from
//!     an opened [`Process`].
//! 16. `crashdb` (feature `crashdb`, on with the command line's): the
//!     crash database, triage's results recorded by content in SQLite
//!     behind the `CrashStore` trait, migrated on open.
//!
//! Handles ([`Process`], [`Python`], [`Object`]) are owned, cheap to clone
//! and `Send + Sync`. Errors are [`Error`] values that name the file or the
//! address and the reason; problems that do not stop an analysis are
//! [`Diagnostic`]s kept beside its results.

#![warn(missing_docs)]

pub mod arch;
pub mod asyncio;
pub mod bundle;
pub mod bundler;
pub mod corefile;
#[cfg(feature = "crashdb")]
pub mod crashdb;
pub mod debuginfod;
pub mod diagnostic;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod doc_support;
pub mod dwarf;
pub mod elf;
pub mod error;
pub mod forensics;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod interpreter;
pub mod layout;
pub mod live;
pub mod mapped_file;
pub mod memory;
pub mod modules;
pub mod process;
pub mod python;
pub mod read_error;
pub mod regular_file;
pub mod report;
pub mod stacks;
pub mod symbols;
pub mod triage;
pub mod unwind;

pub use error::{Diagnostic, DiagnosticSource, Error, ReadError, ReadFailure, Severity};
pub use inspect::{Attribute, Object, ObjectKind, Python, Refcount, ThreadStack};
pub use process::{Options, Process};
