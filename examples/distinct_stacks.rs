//! The distinct Python stacks across a folder of cores: every thread of
//! every core, grouped by its frames (function, file, line), most common
//! first. Cores are read in parallel.
//!
//! ```text
//! cargo run --example distinct_stacks -- PATH... [--sysroot DIR] [--debug-dir DIR]
//! ```
//!
//! PATH is a core or a folder of cores (systemd-coredump's compressed ones
//! too). Output, one block per distinct stack, innermost frame first:
//!
//! ```text
//! 3 threads in 2 cores
//!   wait (/usr/lib/python3.11/threading.py:320)
//!   worker (/srv/app/jobs.py:41)
//! ```

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use pymortem::{Process, Python};
use rayon::prelude::*;

/// The distinct Python stacks across cores and folders of cores: every
/// thread of every core grouped by its frames, most common first.
#[derive(Parser)]
#[command(name = "distinct_stacks")]
struct Args {
    /// Cores, or folders of cores.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    files: common::FileArgs,
}

/// A thread's frames, innermost first: (function, file, line).
type Stack = Vec<(String, String, Option<i64>)>;

/// Every Python thread's stack in the core at `path`.
fn stacks(path: &PathBuf, options: &pymortem::Options) -> Result<Vec<Stack>, pymortem::Error> {
    let python = Python::of(&Process::open(path, options)?)?;
    Ok(python
        .threads()
        .iter()
        .map(|thread| {
            thread
                .stack
                .frames
                .iter()
                .map(|f| (f.function.clone(), f.file.clone(), f.line))
                .collect()
        })
        .collect())
}

fn main() {
    let args = Args::parse();
    let options = args.files.options();
    let (cores, skipped) = pymortem::triage::collect_inputs(&args.paths);
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    let per_core: Vec<(PathBuf, Vec<Stack>)> = cores
        .par_iter()
        .filter_map(|path| match stacks(path, &options) {
            Ok(found) => Some((path.clone(), found)),
            Err(e) => {
                eprintln!("{e}");
                None
            }
        })
        .collect();
    // Each distinct stack: how many threads had it, and in which cores.
    let mut groups: HashMap<Stack, (usize, BTreeSet<PathBuf>)> = HashMap::new();
    // Threads with no Python frame (no thread state, or not running Python
    // code) are counted, not shown as a heading over nothing.
    let mut without_frames = 0;
    for (path, found) in per_core {
        for stack in found {
            if stack.is_empty() {
                without_frames += 1;
                continue;
            }
            let group = groups.entry(stack).or_default();
            group.0 += 1;
            group.1.insert(path.clone());
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    for (stack, (threads, cores)) in &groups {
        let _ = writeln!(
            out,
            "{} in {}",
            counted(*threads, "thread", "threads"),
            counted(cores.len(), "core", "cores")
        );
        for (function, file, line) in stack {
            let line = line.map_or("unknown line".to_string(), |l| l.to_string());
            let _ = writeln!(out, "  {function} ({file}:{line})");
        }
        let _ = writeln!(out);
    }
    if without_frames > 0 {
        let _ = writeln!(
            out,
            "({} with no Python frame)\n",
            counted(without_frames, "thread", "threads")
        );
    }
    let _ = writeln!(
        out,
        "{}, {} read, {} skipped",
        counted(groups.len(), "distinct stack", "distinct stacks"),
        counted(cores.len(), "core", "cores"),
        skipped.len()
    );
    common::emit(&out);
}

/// `1 core`, `2 cores`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
