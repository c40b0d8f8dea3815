//! pymortem: post-mortem forensics for crashed CPython processes.
//!
//! The crate is layered; each layer knows nothing of the ones above it:
//!
//! 1. [`core`]: the ELF core file (segments, notes, compression).
//! 2. [`memory`]: the process's memory as one fallible read interface.
//! 3. [`modules`] and [`symbols`]: mapped files, debug info, symbols.
//! 4. [`python`]: the CPython model.
//! 5. [`report`]: serde report models behind the CLI's tables and JSON.
//!
//! [`Process`] ties the lower layers together:
//!
//! ```no_run
//! let process = pymortem::Process::open("core.1234", &pymortem::Options::default())?;
//! for thread in process.threads() {
//!     println!("LWP {} pthread {:#x}", thread.lwp, thread.pthread_id());
//! }
//! if let Some(python) = process.python() {
//!     println!("Python {}", python.version);
//! }
//! # Ok::<(), pymortem::Error>(())
//! ```

#![warn(missing_docs)]

pub mod core;
pub mod dwarf;
pub mod error;
pub mod forensics;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
pub mod memory;
pub mod modules;
pub mod process;
pub mod python;
pub mod report;
pub mod stacks;
pub mod symbols;
pub mod triage;
pub mod unwind;

pub use error::{Diagnostic, Error, ReadError, ReadFailure, Severity};
pub use process::{Options, Process};
