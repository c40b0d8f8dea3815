//! The largest containers the GC tracks: every list, tuple and dict linked
//! into a generation list, by the length it records, largest first. A first
//! look at what filled a heap.
//!
//! ```text
//! cargo run --example largest_containers -- CORE [--top N] [--sysroot DIR] [--debug-dir DIR]
//! ```
//!
//! Output: a header line, then one tab-separated line per container:
//! rank, length, type, address, generation, a bounded repr.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use pymortem::{ObjectKind, Process, Python};

/// The largest lists, tuples and dicts the GC tracks, by the length they
/// record, largest first: a first look at what filled a heap.
#[derive(Parser)]
#[command(name = "largest_containers")]
struct Args {
    /// The core file (compressed ones too).
    core: PathBuf,
    /// How many containers to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    files: common::FileArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let process = Process::open(&args.core, &args.files.options())?;
    let python = Python::of(&process)?;
    let gc = python.gc_generations();
    for diagnostic in &gc.diagnostics {
        eprintln!("{:?}: {}", diagnostic.severity, diagnostic.message);
    }
    // (length, address, generation): every tracked list, tuple and dict.
    let mut containers = Vec::new();
    for generation in &gc.generations {
        for &address in &generation.objects {
            let object = python.object(address);
            if !matches!(
                object.kind(),
                Ok(ObjectKind::List | ObjectKind::Tuple | ObjectKind::Dict)
            ) {
                continue;
            }
            if let Ok(length) = object.length() {
                containers.push((length, address, generation.summary.name.as_str()));
            }
        }
    }
    containers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = String::new();
    let _ = writeln!(out, "rank\tlength\ttype\taddress\tgeneration\trepr");
    for (rank, (length, address, generation)) in containers.iter().take(args.top).enumerate() {
        let object = python.object(*address);
        let type_name = object.type_name().unwrap_or_else(|_| "?".into());
        let _ = writeln!(
            out,
            "{}\t{length}\t{type_name}\t{address:#x}\t{generation}\t{}",
            rank + 1,
            object.repr()
        );
    }
    common::emit(&out);
    Ok(())
}
