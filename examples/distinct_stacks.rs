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
use pymortem::Process;
use rayon::prelude::*;

#[derive(Parser)]
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
    let python = Process::open(path, options)?.python_runtime()?;
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
    for (path, found) in per_core {
        for stack in found {
            let group = groups.entry(stack).or_default();
            group.0 += 1;
            group.1.insert(path.clone());
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    for (stack, (threads, cores)) in &groups {
        let _ = writeln!(out, "{threads} threads in {} cores", cores.len());
        for (function, file, line) in stack {
            let line = line.map_or("?".to_string(), |l| l.to_string());
            let _ = writeln!(out, "  {function} ({file}:{line})");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "{} distinct stacks, {} cores read, {} skipped",
        groups.len(),
        cores.len(),
        skipped.len()
    );
    common::emit(&out);
}
