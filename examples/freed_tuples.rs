//! The story's diagnosis, by hand: find the tuples that sit on a free list
//! while live containers still point at them (a tuple released once too
//! often), and name every container that holds one.
//!
//! ```text
//! cargo run --example freed_tuples -- CORE [--sysroot DIR] [--debug-dir DIR]
//! ```
//!
//! Output, one block per freed tuple that is still referenced:
//!
//! ```text
//! freed tuple 0x7f0c… on the free list of 7-tuples: refcount 0, GC untracked
//!   held by list 0x7f0c… item 0 (generation 2)
//! ```
//!
//! Exit status: 0 when no freed tuple is referenced, 1 when some are, 2 on
//! error, 3 when the free lists or the GC lists could not be walked (then
//! "none found" would not mean none are there).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pymortem::{Object, ObjectKind, Process, Python};

/// The tuples on a free list that live containers still point at (a tuple
/// released once too often), and every container that holds one.
/// Exit 0: none; 1: some; 2: error; 3: the lists could not be walked.
#[derive(Parser)]
#[command(name = "freed_tuples")]
struct Args {
    /// The core file (compressed ones too).
    core: PathBuf,
    #[command(flatten)]
    files: common::FileArgs,
}

/// Where in a container a pointer was found.
enum Place {
    Item(usize),
    Key(Object),
    Value(Object),
    Attribute(String),
}

impl Place {
    /// In words, e.g. `item 0`, `value of key 'name'`.
    fn describe(&self) -> String {
        match self {
            Place::Item(i) => format!("item {i}"),
            Place::Key(key) => format!("key {}", key.repr()),
            Place::Value(key) => format!("value of key {}", key.repr()),
            Place::Attribute(name) => format!("attribute {name}"),
        }
    }
}

/// Where `container` points.
fn references(container: &Object) -> Vec<(Place, Object)> {
    let numbered = |items: Vec<Object>| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (Place::Item(i), item))
            .collect()
    };
    match container.kind() {
        Ok(ObjectKind::List) => numbered(container.list_items().unwrap_or_default()),
        Ok(ObjectKind::Tuple) => numbered(container.tuple_items().unwrap_or_default()),
        Ok(ObjectKind::Dict) => container
            .dict_entries()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(key, value)| {
                [
                    (Place::Key(key.clone()), key.clone()),
                    (Place::Value(key), value),
                ]
            })
            .collect(),
        Ok(ObjectKind::Other) => container
            .attributes()
            .unwrap_or_default()
            .into_iter()
            .map(|a| (Place::Attribute(a.name), a.value))
            .collect(),
        _ => Vec::new(),
    }
}

/// What the search came to.
enum Outcome {
    /// Every list was walked; were freed tuples found still referenced?
    Searched(bool),
    /// A list could not be walked: the search proves nothing.
    Incomplete,
}

fn run(args: &Args) -> Result<Outcome, pymortem::Error> {
    let process = Process::open(&args.core, &args.files.options())?;
    let python = Python::of(&process)?;

    // 1. Every tuple on a free list, with the length its slot keeps.
    let free = python.free_lists();
    let freed: HashMap<u64, u64> = free
        .slots
        .iter()
        .filter_map(|slot| Some((slot, slot.size?)))
        .flat_map(|(slot, size)| slot.members.iter().map(move |&m| (m, size)))
        .collect();

    // 2. Every container the GC tracks, searched for pointers to them.
    let gc = python.gc_generations();
    // A list that could not be walked makes "none found" meaningless.
    let unchecked: Vec<_> = free.unchecked.iter().chain(&gc.unchecked).collect();
    if !unchecked.is_empty() {
        let mut out = String::new();
        for u in unchecked {
            let _ = writeln!(
                out,
                "not checked: {}: {}\n  to check them: {}",
                u.check.describe(),
                u.reason,
                u.remedy
            );
        }
        let _ = writeln!(out, "incomplete: no verdict on freed tuples");
        common::emit(&out);
        return Ok(Outcome::Incomplete);
    }
    let mut holders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for generation in &gc.generations {
        for &address in &generation.objects {
            let container = python.object(address);
            for (place, target) in references(&container) {
                if freed.contains_key(&target.address()) {
                    let type_name = container.type_name().unwrap_or_else(|_| "?".into());
                    holders.entry(target.address()).or_default().push(format!(
                        "{type_name} {address:#x} {} ({})",
                        place.describe(),
                        generation.summary.name
                    ));
                }
            }
        }
    }

    // 3. The evidence for each.
    let mut out = String::new();
    for (tuple, held_by) in &holders {
        let tuple_object = python.object(*tuple);
        let refcount = tuple_object
            .refcount()
            .map_or_else(|e| format!("unreadable ({e})"), |r| r.value.to_string());
        let gc_state = match tuple_object.gc_state() {
            Ok(Some(state)) => format!("{state:?}").to_lowercase(),
            Ok(None) => "no header".into(),
            Err(e) => format!("unreadable ({e})"),
        };
        let _ = writeln!(
            out,
            "freed tuple {tuple:#x} on the free list of {}-tuples: refcount {refcount}, GC {gc_state}",
            freed[tuple]
        );
        for holder in held_by {
            let _ = writeln!(out, "  held by {holder}");
        }
    }
    let _ = writeln!(
        out,
        "{} freed tuples still referenced ({} on the free lists, {} tracked objects searched)",
        holders.len(),
        freed.len(),
        gc.generations
            .iter()
            .map(|g| g.objects.len())
            .sum::<usize>()
    );
    common::emit(&out);
    Ok(Outcome::Searched(!holders.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Outcome::Searched(false)) => ExitCode::SUCCESS,
        Ok(Outcome::Searched(true)) => ExitCode::from(1),
        Ok(Outcome::Incomplete) => ExitCode::from(3),
        Err(e) => {
            eprintln!("freed_tuples: {e}");
            ExitCode::from(2)
        }
    }
}
