//! Mutation test: thousands of damaged copies of real cores (bit flips in the
//! notes and the heap, truncations, overwritten free-list, frame and GC links,
//! injected cycles, huge sizes). Every run returns a result or a clear error
//! within a time bound: no panic, no abort, bounded memory.

use crate::support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pymortem::corefile::CoreFile;
use pymortem::python::{ThreadOptions, python_state};
use pymortem::report::{CheckPart, CheckReport, InfoReport, ThreadsReport};
use pymortem::{Options, Process};

/// Runs per core; three cores make thousands in all.
const RUNS_PER_CORE: usize = 800;
/// No single run may take longer.
const RUN_LIMIT: Duration = Duration::from_secs(10);

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// File offsets worth damaging, found on the intact core.
struct Targets {
    notes: (usize, usize),
    heap: Vec<(usize, usize)>,
    links: Vec<(usize, u64)>,
}

fn targets(path: &str) -> Targets {
    let process = Process::open(path, &Options::default()).unwrap();
    let core = process.core();
    let bytes = core.bytes();
    // The notes sit between the program headers and the first segment's data.
    let first_data = core
        .segments()
        .iter()
        .map(|s| s.file_offset as usize)
        .filter(|&o| o > 0)
        .min()
        .unwrap_or(bytes.len());
    let heap: Vec<(usize, usize)> = core
        .segments()
        .iter()
        .filter(|s| s.perms.write && s.available >= 64)
        .map(|s| (s.file_offset as usize, s.available as usize))
        .collect();
    let file_offset = |addr: u64| -> Option<usize> {
        let seg = core
            .segments()
            .iter()
            .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.available)?;
        Some((seg.file_offset + (addr - seg.vaddr)) as usize)
    };
    let mut links = Vec::new();
    let state = python_state(&process, &ThreadOptions::default()).unwrap();
    let layout = &state.layout.layout;
    let result = pymortem::forensics::check(&process, &state);
    // Free-list links, with another member's address as the new value.
    let link = layout.offset("PyTupleObject", "ob_item").unwrap_or(24);
    for slot in result.free_lists.iter().filter(|s| s.size.is_some()) {
        for (i, &m) in slot.members.iter().enumerate() {
            if let Some(at) = file_offset(m + link) {
                links.push((at, slot.members[i / 2]));
            }
        }
    }
    // Frame links, pointing back at the thread's first frame.
    let back = layout
        .offset("PyFrameObject", "f_back")
        .or(layout.offset("_PyInterpreterFrame", "previous"))
        .unwrap_or(16);
    for t in &state.threads {
        for f in &t.stack.frames {
            if let (Some(at), Some(first)) = (file_offset(f.frame + back), t.stack.frames.first()) {
                links.push((at, first.frame));
            }
        }
    }
    // asyncio tasks: their coroutine, waited future and name pointing at
    // another task, and coroutine frames' value stacks at their own task.
    let version = process.python().unwrap().version;
    if let Some(task) = pymortem::layout::asyncio_task::table(version.major, version.minor) {
        let python = pymortem::Python::of(&process).unwrap();
        let tasks: Vec<u64> = python
            .tasks()
            .loops
            .iter()
            .flat_map(|l| l.tasks.iter().map(|t| t.address))
            .collect();
        for (i, &t) in tasks.iter().enumerate() {
            let other = tasks[(i + 1) % tasks.len()];
            for field in [
                task.task_coro,
                task.task_fut_waiter,
                task.task_name,
                task.task_loop,
            ] {
                if let Some(at) = file_offset(t + field) {
                    links.push((at, other));
                }
            }
        }
    }
    // GC links of the first objects of each generation, pointing backwards.
    let next = layout.offset("PyGC_Head", "gc_next").unwrap_or(0);
    let head_size = layout.size("PyGC_Head").unwrap_or(16);
    for g in &result.generations {
        let mut node = g.head;
        for _ in 0..20 {
            use pymortem::memory::MemoryExt;
            let Ok(n) = process.memory().read_ptr(node + next) else {
                break;
            };
            let n = n & !3;
            if n == g.head || n == 0 {
                break;
            }
            if let Some(at) = file_offset(n + next) {
                links.push((at, g.head.max(node)));
            }
            node = n;
        }
        let _ = head_size;
    }
    Targets {
        notes: (64, first_data.saturating_sub(64)),
        heap,
        links,
    }
}

fn mutate(bytes: &mut Vec<u8>, t: &Targets, rng: &mut Rng) -> String {
    let flip = |bytes: &mut Vec<u8>, at: usize, rng: &mut Rng| {
        if at < bytes.len() {
            bytes[at] ^= 1 << rng.below(8);
        }
    };
    match rng.below(7) {
        0 => {
            let n = 1 + rng.below(16);
            for _ in 0..n {
                let at = t.notes.0 + rng.below(t.notes.1);
                flip(bytes, at, rng);
            }
            format!("{n} bit flips in the notes")
        }
        1 => {
            let n = 1 + rng.below(256);
            for _ in 0..n {
                let (off, len) = t.heap[rng.below(t.heap.len())];
                flip(bytes, off + rng.below(len), rng);
            }
            format!("{n} bit flips in writable memory")
        }
        2 => {
            let len = rng.below(bytes.len());
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        }
        3 | 4 if !t.links.is_empty() => {
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let (at, value) = t.links[rng.below(t.links.len())];
                let value = match rng.below(3) {
                    0 => value,
                    1 => rng.next(),
                    _ => value.wrapping_add(8 * (rng.below(5) as u64)),
                };
                if at + 8 <= bytes.len() {
                    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            format!("{n} links overwritten")
        }
        5 => {
            // Adversarial sizes: words set to 2^60-ish values.
            let n = 1 + rng.below(64);
            for _ in 0..n {
                let (off, len) = t.heap[rng.below(t.heap.len())];
                let at = (off + rng.below(len)) & !7;
                if at + 8 <= bytes.len() {
                    bytes[at..at + 8].copy_from_slice(&(1u64 << (56 + rng.below(7))).to_le_bytes());
                }
            }
            format!("{n} huge words")
        }
        _ => {
            // Random 8-byte words anywhere in writable memory.
            let n = 1 + rng.below(512);
            for _ in 0..n {
                let (off, len) = t.heap[rng.below(t.heap.len())];
                let at = (off + rng.below(len)) & !7;
                if at + 8 <= bytes.len() {
                    let v = rng.next();
                    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            format!("{n} random words")
        }
    }
}

/// Everything a user can ask of a core.
fn analyse(bytes: Vec<u8>) {
    let Ok(core) = CoreFile::from_bytes(Path::new("mutated"), bytes) else {
        return;
    };
    let process = Process::from_core(Arc::new(core), &Options::default());
    let _ = InfoReport::build(&process);
    let state = python_state(
        &process,
        &ThreadOptions {
            locals: true,
            ..Default::default()
        },
    );
    let _ = ThreadsReport::build(&process, state.as_ref());
    let _ = pymortem::report::TasksReport::build(&process, state.as_ref());
    if let Ok(state) = &state {
        let result = pymortem::forensics::check(&process, state);
        let _ = CheckReport::build(&process, Ok(state), Some(result), CheckPart::All);
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn thousands_of_damaged_cores_never_panic_or_hang() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let picks = [
        ("pyenv-2.7.18", "use_after_free"),
        ("pyenv-3.8.18", "gc_already_tracked"),
        ("pyenv-3.12.1", "generator"),
        ("pyenv-3.9.18", "asyncio_tasks"),
    ];
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (seed, (interp, scenario)) in picks.iter().enumerate() {
        let entry = manifest
            .iter()
            .find(|e| e["interp"] == *interp && e["scenario"] == *scenario && e["kind"] == "kernel")
            .unwrap();
        let path = entry["core"].as_str().unwrap();
        let pristine = std::fs::read(path).unwrap();
        let t = targets(path);
        // A fixed seed keeps CI reproducible; PYMORTEM_MUTATION_SEED explores further.
        let extra: u64 = std::env::var("PYMORTEM_MUTATION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed as u64 + 1) ^ extra.rotate_left(17));
        for i in 0..RUNS_PER_CORE {
            let mut bytes = pristine.clone();
            let what = mutate(&mut bytes, &t, &mut rng);
            let run_started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| analyse(bytes)));
            runs += 1;
            let took = run_started.elapsed();
            if outcome.is_err() {
                failures.push(format!(
                    "{interp} {scenario} run {i} seed {extra} ({what}): panicked"
                ));
            } else if took > RUN_LIMIT {
                failures.push(format!(
                    "{interp} {scenario} run {i} seed {extra} ({what}): took {took:?}"
                ));
            }
        }
    }
    let rss = peak_rss_kib();
    eprintln!(
        "{runs} mutated cores in {:?}, peak RSS {} MiB",
        started.elapsed(),
        rss / 1024
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(rss < 4 << 20, "peak RSS {rss} KiB: memory is not bounded");
}
