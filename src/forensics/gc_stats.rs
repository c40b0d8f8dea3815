//! The collector's statistics: the totals per generation that
//! `gc.get_stats()` returns (3.4+), and from 3.15 the records of the last
//! collections of each generation, kept in rings.
//!
//! Up to 3.14 `generation_stats[3]` holds each generation's totals since
//! the interpreter started (a static of gcmodule.c in 3.4–3.6, in the GC
//! state from 3.7). From 3.15 the GC state holds a pointer to a `struct
//! gc_stats`: a ring of records for the young generation and one per old
//! generation. Each collection advances its ring's `index` first, copies
//! the record it pointed at into the new slot, and adds its own numbers to
//! the copy, so the slot at `index` is the newest record and every record
//! holds the generation's totals up to and including its collection, with
//! its own timestamps and the heap size it started with. `update_seq` is
//! odd while a record is being written. Reading is bounded by the layout's
//! sizes and every read may fail: what cannot be read is said, with its
//! address, never left out.

use serde::Serialize;

use super::read_context::ReadContext;
use crate::layout::facts::GcListLocation;
use crate::layout::offsets::Field;
use crate::memory::MemoryExt;

/// Slots of one ring, at most (its index is an `int8_t`).
const MAX_SLOTS: u64 = 127;
/// Rings of old generations, at most.
const MAX_OLD_RINGS: u64 = 8;
/// Generations of a `generation_stats` array, at most.
const MAX_GENERATIONS: u64 = 8;
/// Bytes of statistics read in one block, at most.
const MAX_BLOCK: u64 = 64 * 1024;
/// Generations of 3.4–3.6's static array (`NUM_GENERATIONS`).
const NUM_GENERATIONS: u64 = 3;

/// A generation's totals: every collection of it, up to a record's (3.15+)
/// or up to the crash. `None` where the version does not keep the number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Collections.
    pub collections: Option<i64>,
    /// Objects collected.
    pub collected: Option<i64>,
    /// Objects found uncollectable (put into `gc.garbage`).
    pub uncollectable: Option<i64>,
    /// Objects considered (3.15+).
    pub candidates: Option<i64>,
    /// Seconds spent collecting (3.15+).
    pub duration: Option<f64>,
}

/// One generation's totals, as `gc.get_stats()[generation]` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GenerationTotals {
    /// 0, 1, 2: the index into `gc.get_stats()`.
    pub generation: u32,
    /// Its totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// One collection's record in a ring (3.15+).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionRecord {
    /// Its slot in the ring.
    pub slot: u64,
    /// Its number: the generation's collections up to and including it.
    pub collections: i64,
    /// When it started, in nanoseconds of the monotonic clock
    /// (`time.perf_counter_ns()`).
    pub ts_start: Option<i64>,
    /// When it ended, on the same clock.
    pub ts_stop: Option<i64>,
    /// Its duration in seconds, from the two timestamps.
    pub duration: Option<f64>,
    /// Objects it collected: its totals less the previous collection's,
    /// `None` when the ring no longer holds that one.
    pub collected: Option<i64>,
    /// Objects it found uncollectable, likewise.
    pub uncollectable: Option<i64>,
    /// Objects it considered, likewise.
    pub candidates: Option<i64>,
    /// Live objects when it started.
    pub heap_size: Option<i64>,
    /// The generation's totals up to and including it, as recorded.
    pub totals: Totals,
}

/// One generation's ring of records (3.15+).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRing {
    /// `young`, `old 0`, `old 1`.
    pub name: String,
    /// The generation its records are of (as in [`GenerationTotals`]).
    pub generation: u32,
    /// Address of its first slot.
    pub address: u64,
    /// Its slots.
    pub slots: u64,
    /// Its `index`: the slot of the newest record.
    pub index: Option<i64>,
    /// The records, newest first; slots never written are left out.
    pub records: Vec<CollectionRecord>,
    /// Why it could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// The statistics of one interpreter (of the process up to 3.8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcStats {
    /// The interpreter state, from 3.9; `None` before (3.4–3.6's static,
    /// 3.7–3.8's `_PyRuntime`).
    pub interpreter: Option<u64>,
    /// The interpreter's id, when read.
    pub interpreter_id: Option<i64>,
    /// Where the statistics are: the `generation_stats` array, or from
    /// 3.15 the `struct gc_stats` its pointer names; `None` when they
    /// could not be located.
    pub address: Option<u64>,
    /// 3.15+: the address of the `generation_stats` pointer.
    pub pointer_at: Option<u64>,
    /// Per generation, what `gc.get_stats()` returns: the totals up to the
    /// crash (3.15+: the newest record of each ring).
    pub totals: Vec<GenerationTotals>,
    /// 3.15+: the last collections of each generation.
    pub rings: Vec<StatsRing>,
    /// 3.15+: `update_seq`, odd while a collection was writing its record.
    pub update_seq: Option<u32>,
    /// Why the statistics could not be read, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl GcStats {
    fn new(interpreter: Option<u64>, interpreter_id: Option<i64>) -> GcStats {
        GcStats {
            interpreter,
            interpreter_id,
            address: None,
            pointer_at: None,
            totals: Vec::new(),
            rings: Vec::new(),
            update_seq: None,
            unreadable: None,
        }
    }

    /// A collection was writing its record when the process died (3.15+):
    /// the newest record of one ring may be partly written.
    pub fn writing(&self) -> bool {
        self.update_seq.is_some_and(|s| s % 2 == 1)
    }
}

/// Why the statistics could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unlocated {
    #[error(
        "the GC statistics are a static of gcmodule.c (generation_stats), and neither \
         the interpreter's symbol table nor its DWARF was found to name it"
    )]
    StaticNotNamed,
    #[error("the GC statistics are in _PyRuntime, which was not found")]
    RuntimeNotFound,
    #[error("the GC statistics are in the interpreter state, and no interpreter was found")]
    InterpreterNotFound,
    #[error("the layout has no GC state (GCRuntimeState.generation_stats)")]
    NotInLayout,
}

/// The statistics of every interpreter; empty when the version keeps none
/// (2.7).
pub fn read(heap: &ReadContext) -> Vec<GcStats> {
    let o = heap.layout.offsets();
    // 2.7 keeps no statistics: its layout has no `gc_generation_stats`.
    let Some(record) = o.gc_generation_stats.sizeof.get().filter(|&s| s > 0) else {
        return Vec::new();
    };
    let unlocated = |reason: Unlocated| {
        let mut stats = GcStats::new(None, None);
        stats.unreadable = Some(reason.to_string());
        vec![stats]
    };
    match heap.facts.gc_lists {
        GcListLocation::Static => {
            let found = heap.module.and_then(|m| {
                heap.layout
                    .static_address(m, "gcmodule.c", "generation_stats")
            });
            match found {
                Some(address) => {
                    let mut stats = GcStats::new(None, None);
                    totals_array(
                        heap,
                        address,
                        NUM_GENERATIONS.saturating_mul(record),
                        record,
                        &mut stats,
                    );
                    vec![stats]
                }
                None => unlocated(Unlocated::StaticNotNamed),
            }
        }
        GcListLocation::Runtime => match (heap.runtime, o.runtime.gc.get()) {
            (Some(runtime), Some(gc)) => {
                vec![of_gc_state(heap, None, runtime.wrapping_add(gc), record)]
            }
            (None, _) => unlocated(Unlocated::RuntimeNotFound),
            (_, None) => unlocated(Unlocated::NotInLayout),
        },
        GcListLocation::Interpreter => {
            let Some(gc) = o.interp.gc.get() else {
                return unlocated(Unlocated::NotInLayout);
            };
            if heap.interpreters.is_empty() {
                return unlocated(Unlocated::InterpreterNotFound);
            }
            heap.interpreters
                .iter()
                .map(|&interp| {
                    let id = o
                        .interp
                        .id
                        .get()
                        .and_then(|off| heap.memory.read_i64(interp.wrapping_add(off)).ok());
                    let mut stats =
                        of_gc_state(heap, Some(interp), interp.wrapping_add(gc), record);
                    stats.interpreter_id = id;
                    stats
                })
                .collect()
        }
    }
}

/// The statistics of the GC state at `gc`.
fn of_gc_state(heap: &ReadContext, interpreter: Option<u64>, gc: u64, record: u64) -> GcStats {
    let o = heap.layout.offsets();
    let mut stats = GcStats::new(interpreter, None);
    let field = o.gc_runtime.generation_stats;
    let Some(offset) = field.get() else {
        stats.unreadable = Some(Unlocated::NotInLayout.to_string());
        return stats;
    };
    let at = gc.wrapping_add(offset);
    if o.gc_stats.sizeof.get().is_some() {
        rings(heap, at, record, &mut stats);
    } else if field.size().is_some_and(|s| s < record) {
        // A pointer (3.15+) whose target the layout does not describe.
        stats.pointer_at = Some(at);
        stats.unreadable = Some(
            "generation_stats is a pointer, and the layout has no struct gc_stats to read \
             where it points"
                .to_string(),
        );
    } else {
        // The array inline: its size says how many generations.
        let size = field
            .size()
            .unwrap_or(NUM_GENERATIONS.saturating_mul(record));
        totals_array(heap, at, size, record, &mut stats);
    }
    stats
}

/// Read a little-endian integer of `field`'s size from `bytes` at `base`
/// plus the field's offset.
fn int_at(bytes: &[u8], base: u64, field: Field) -> Option<i64> {
    let start = usize::try_from(base.checked_add(field.get()?)?).ok()?;
    let size = field.size().unwrap_or(8);
    let slice = bytes.get(start..start.checked_add(usize::try_from(size).ok()?)?)?;
    Some(match slice.len() {
        8 => i64::from_le_bytes(slice.try_into().ok()?),
        4 => i64::from(i32::from_le_bytes(slice.try_into().ok()?)),
        2 => i64::from(i16::from_le_bytes(slice.try_into().ok()?)),
        1 => i64::from(slice[0] as i8),
        _ => return None,
    })
}

/// A `double` of `field` from `bytes` at `base`.
fn double_at(bytes: &[u8], base: u64, field: Field) -> Option<f64> {
    let start = usize::try_from(base.checked_add(field.get()?)?).ok()?;
    let slice = bytes.get(start..start.checked_add(8)?)?;
    Some(f64::from_le_bytes(slice.try_into().ok()?))
}

/// The totals a `gc_generation_stats` at `base` of `bytes` holds.
fn totals_at(heap: &ReadContext, bytes: &[u8], base: u64) -> Totals {
    let f = &heap.layout.offsets().gc_generation_stats;
    Totals {
        collections: int_at(bytes, base, f.collections),
        collected: int_at(bytes, base, f.collected),
        uncollectable: int_at(bytes, base, f.uncollectable),
        candidates: int_at(bytes, base, f.candidates),
        duration: double_at(bytes, base, f.duration),
    }
}

/// 3.4–3.14: the `generation_stats` array of `size` bytes at `address`.
fn totals_array(heap: &ReadContext, address: u64, size: u64, record: u64, stats: &mut GcStats) {
    stats.address = Some(address);
    let count = (size / record).min(MAX_GENERATIONS);
    let bytes = match heap
        .memory
        .read_bytes(address, count.saturating_mul(record), MAX_BLOCK)
    {
        Ok(bytes) => bytes,
        Err(e) => {
            stats.unreadable = Some(e.to_string());
            return;
        }
    };
    stats.totals = (0..count)
        .map(|g| GenerationTotals {
            generation: g as u32,
            totals: totals_at(heap, &bytes, g * record),
        })
        .collect();
}

/// What the layout lacks, or gets wrong, to place the rings of `struct gc_stats`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct LayoutGap(String);

/// Where the rings sit in `struct gc_stats`, from the layout.
struct Geometry {
    size: u64,
    /// (name, generation, offset of the first slot, slots, offset of `index`).
    rings: Vec<(String, u32, u64, u64, u64)>,
    update_seq: Option<u64>,
}

/// The rings' places, or why the layout cannot place them.
fn geometry(heap: &ReadContext, record: u64) -> Result<Geometry, LayoutGap> {
    let o = heap.layout.offsets();
    let size = o.gc_stats.sizeof.get().unwrap_or(0);
    let mut rings = Vec::new();
    let mut end = 0;
    let mut ring = |name: String, generation: u32, items: Field, index: Field, base: u64| {
        let (Some(at), Some(bytes), Some(index)) = (items.get(), items.size(), index.get()) else {
            return Err(LayoutGap(format!(
                "the layout has no {} or {}",
                items.name(),
                index.name()
            )));
        };
        let slots = bytes / record;
        if slots == 0 || slots > MAX_SLOTS || bytes % record != 0 {
            return Err(LayoutGap(format!(
                "{} is {bytes} bytes, not 1 to {MAX_SLOTS} records of {record} bytes",
                items.name()
            )));
        }
        // Sums of the layout's numbers, saturated: a size beyond any struct's
        // fails the check on `end` below.
        let (first, index) = (base.saturating_add(at), base.saturating_add(index));
        end = end
            .max(first.saturating_add(bytes))
            .max(index.saturating_add(1));
        rings.push((name, generation, first, slots, index));
        Ok(())
    };
    ring(
        "young".into(),
        0,
        o.gc_stats.young_items,
        o.gc_stats.young_index,
        0,
    )?;
    let old = o.gc_stats.old;
    let buffer = o.gc_old_stats_buffer.sizeof.get().unwrap_or(0);
    let (Some(old_at), Some(old_bytes)) = (old.get(), old.size()) else {
        return Err(LayoutGap(format!("the layout has no {}", old.name())));
    };
    if buffer == 0 || old_bytes % buffer != 0 || old_bytes / buffer > MAX_OLD_RINGS {
        return Err(LayoutGap(format!(
            "{} is {old_bytes} bytes, not up to {MAX_OLD_RINGS} rings of {buffer} bytes",
            old.name()
        )));
    }
    for k in 0..old_bytes / buffer {
        ring(
            format!("old {k}"),
            k as u32 + 1,
            o.gc_old_stats_buffer.items,
            o.gc_old_stats_buffer.index,
            old_at.saturating_add(k * buffer),
        )?;
    }
    let update_seq = o.gc_stats.update_seq.get();
    if let Some(at) = update_seq {
        end = end.max(at.saturating_add(4));
    }
    // Trailing padding is less than the struct's 8-byte alignment: a size
    // further off means rings of other sizes than the layout's (a
    // `_Py_DebugOffsets` size over a table of another build).
    if size < end || size - end >= 8 {
        return Err(LayoutGap(format!(
            "sizeof(struct gc_stats) is {size} bytes, but its fields as the layout places \
             them end at {end}: the rings differ from the layout's"
        )));
    }
    Ok(Geometry {
        size,
        rings,
        update_seq,
    })
}

/// 3.15+: the rings that the pointer at `pointer_at` names.
fn rings(heap: &ReadContext, pointer_at: u64, record: u64, stats: &mut GcStats) {
    stats.pointer_at = Some(pointer_at);
    let address = match heap.memory.read_ptr(pointer_at) {
        Ok(0) => {
            stats.unreadable = Some(format!(
                "the generation_stats pointer at {pointer_at:#x} is NULL: the statistics \
                 were not allocated yet, or were freed"
            ));
            return;
        }
        Ok(address) => address,
        Err(e) => {
            stats.unreadable = Some(format!("the generation_stats pointer: {e}"));
            return;
        }
    };
    stats.address = Some(address);
    let geometry = match geometry(heap, record) {
        Ok(g) => g,
        Err(reason) => {
            stats.unreadable = Some(reason.to_string());
            return;
        }
    };
    let bytes = match heap.memory.read_bytes(address, geometry.size, MAX_BLOCK) {
        Ok(bytes) => bytes,
        Err(e) => {
            stats.unreadable = Some(e.to_string());
            return;
        }
    };
    stats.update_seq = geometry.update_seq.and_then(|at| {
        let at = usize::try_from(at).ok()?;
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    });
    for (name, generation, items, slots, index_at) in geometry.rings {
        let (ring, newest) = ring(heap, &bytes, address, name, items, slots, index_at, record);
        stats.totals.push(GenerationTotals {
            generation,
            totals: newest,
        });
        stats.rings.push(StatsRing { generation, ..ring });
    }
}

/// One ring of `bytes` (the `struct gc_stats` at `address`): its records,
/// newest first, and the newest one's totals.
#[allow(clippy::too_many_arguments)]
fn ring(
    heap: &ReadContext,
    bytes: &[u8],
    address: u64,
    name: String,
    items: u64,
    slots: u64,
    index_at: u64,
    record: u64,
) -> (StatsRing, Totals) {
    let f = &heap.layout.offsets().gc_generation_stats;
    let index = usize::try_from(index_at)
        .ok()
        .and_then(|at| bytes.get(at))
        .map(|&b| i64::from(b as i8));
    let mut ring = StatsRing {
        name,
        generation: 0,
        address: address.wrapping_add(items),
        slots,
        index,
        records: Vec::new(),
        unreadable: None,
    };
    let Some(newest) = index
        .and_then(|i| u64::try_from(i).ok())
        .filter(|&i| i < slots)
    else {
        ring.unreadable = Some(format!(
            "its index {} at {:#x} is not one of its {slots} slots",
            index.map_or("(unread)".to_string(), |i| i.to_string()),
            address.wrapping_add(index_at)
        ));
        return (ring, Totals::default());
    };
    let at = |slot: u64| items + slot * record;
    let totals = totals_at(heap, bytes, at(newest));
    for k in 0..slots {
        let slot = (newest + slots - k) % slots;
        let base = at(slot);
        let recorded = totals_at(heap, bytes, base);
        // A slot no collection has written yet holds zeros.
        let Some(number) = recorded.collections.filter(|&n| n > 0) else {
            continue;
        };
        let (ts_start, ts_stop) = (
            int_at(bytes, base, f.ts_start),
            int_at(bytes, base, f.ts_stop),
        );
        let duration = ts_start
            .zip(ts_stop)
            .and_then(|(a, b)| b.checked_sub(a))
            .filter(|d| *d >= 0)
            .map(|d| d as f64 / 1e9);
        ring.records.push(CollectionRecord {
            slot,
            collections: number,
            ts_start,
            ts_stop,
            duration,
            collected: None,
            uncollectable: None,
            candidates: None,
            heap_size: int_at(bytes, base, f.heap_size),
            totals: recorded,
        });
    }
    // Each collection's own numbers: its totals less the previous
    // collection's, when the ring still holds that one (the first
    // collection's predecessor is the zeros it started from).
    let previous: Vec<Option<Totals>> = (0..ring.records.len())
        .map(|i| {
            let number = ring.records[i].collections;
            if number == 1 {
                return Some(Totals {
                    collections: Some(0),
                    collected: Some(0),
                    uncollectable: Some(0),
                    candidates: Some(0),
                    duration: Some(0.0),
                });
            }
            ring.records
                .get(i + 1)
                .filter(|older| older.collections == number - 1)
                .map(|older| older.totals)
        })
        .collect();
    for (record, previous) in ring.records.iter_mut().zip(previous) {
        let Some(previous) = previous else {
            continue;
        };
        let own = |now: Option<i64>, before: Option<i64>| now?.checked_sub(before?);
        record.collected = own(record.totals.collected, previous.collected);
        record.uncollectable = own(record.totals.uncollectable, previous.uncollectable);
        record.candidates = own(record.totals.candidates, previous.candidates);
    }
    (ring, totals)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::layout::Layout;
    use crate::memory::ProcessMemory;

    const BASE: u64 = 0x20_0000;
    const SIZE: usize = 0x10000;
    /// The interpreter state (its GC state is inside, at the layout's offset).
    const INTERP: u64 = BASE;
    /// The `struct gc_stats`.
    const STATS: u64 = BASE + 0x8000;

    fn layout() -> Layout {
        crate::layout::tables::builtin(3, 15)
            .expect("the 3.15 table is built in")
            .layout_for("3.15.2")
    }

    struct Memory {
        bytes: Vec<u8>,
        layout: Layout,
    }

    impl Memory {
        fn put(&mut self, addr: u64, value: &[u8]) {
            let at = (addr - BASE) as usize;
            self.bytes[at..at + value.len()].copy_from_slice(value);
        }

        /// The address of the pointer to the statistics.
        fn pointer_at(&self) -> u64 {
            let o = self.layout.offsets();
            INTERP + o.interp.gc.get().unwrap() + o.gc_runtime.generation_stats.get().unwrap()
        }

        /// `n` collections recorded in the ring whose first slot is at
        /// `items` and index at `index`, as gc.c records them: collection
        /// k collects k objects of 10 k candidates in 10 ns, at 1000 k ns.
        fn collections(&mut self, items: u64, slots: u64, index: u64, n: i64) {
            let o = self.layout.offsets();
            let f = o.gc_generation_stats;
            let record = o.gc_generation_stats.sizeof.get().unwrap();
            for k in 1..=n {
                let at = items + (k as u64 % slots) * record;
                let put = |m: &mut Memory, field: Field, value: i64| {
                    m.put(at + field.get().unwrap(), &value.to_le_bytes());
                };
                put(self, f.collections, k);
                put(self, f.collected, k * (k + 1) / 2);
                put(self, f.uncollectable, 0);
                put(self, f.candidates, 10 * k * (k + 1) / 2);
                put(self, f.ts_start, 1000 * k);
                put(self, f.ts_stop, 1000 * k + 10);
                put(self, f.heap_size, 100 + k);
                self.put(
                    at + f.duration.get().unwrap(),
                    &(k as f64 * 1e-8).to_le_bytes(),
                );
            }
            self.put(index, &[(n as u64 % slots) as u8]);
        }

        fn read(&self) -> Vec<GcStats> {
            let core = super::super::walker_tests::one_segment_core(BASE, &self.bytes);
            let memory = ProcessMemory::new(Arc::new(core));
            let context = ReadContext::over(&memory, &self.layout).with_runtime(vec![INTERP], None);
            read(&context)
        }
    }

    /// 25 young collections (the ring wrapped twice), 2 of old 0, none of
    /// old 1.
    fn memory() -> Memory {
        let mut m = Memory {
            bytes: vec![0; SIZE],
            layout: layout(),
        };
        let pointer_at = m.pointer_at();
        m.put(pointer_at, &STATS.to_le_bytes());
        let o = m.layout.offsets().clone();
        let (young, young_index) = (
            STATS + o.gc_stats.young_items.get().unwrap(),
            STATS + o.gc_stats.young_index.get().unwrap(),
        );
        let old = STATS + o.gc_stats.old.get().unwrap();
        let (items, index) = (
            o.gc_old_stats_buffer.items.get().unwrap(),
            o.gc_old_stats_buffer.index.get().unwrap(),
        );
        m.collections(young, 11, young_index, 25);
        m.collections(old + items, 3, old + index, 2);
        m.put(
            STATS + o.gc_stats.update_seq.get().unwrap(),
            &54u32.to_le_bytes(),
        );
        m
    }

    #[test]
    fn the_newest_record_is_at_the_index_and_the_others_precede_it() {
        let m = memory();
        let stats = m.read();
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!(s.unreadable, None);
        assert_eq!(
            (s.address, s.pointer_at),
            (Some(STATS), Some(m.pointer_at()))
        );
        assert_eq!((s.update_seq, s.writing()), (Some(54), false));
        let names: Vec<(&str, u32, u64)> = s
            .rings
            .iter()
            .map(|r| (r.name.as_str(), r.generation, r.slots))
            .collect();
        assert_eq!(names, [("young", 0, 11), ("old 0", 1, 3), ("old 1", 2, 3)]);
        let young = &s.rings[0];
        assert_eq!(young.index, Some(3));
        // Newest first: 25 in slot 3, down to 15 in slot 4 after the wrap.
        let numbers: Vec<(i64, u64)> = young
            .records
            .iter()
            .map(|r| (r.collections, r.slot))
            .collect();
        let expected: Vec<(i64, u64)> = (15..=25).rev().map(|k| (k, k as u64 % 11)).collect();
        assert_eq!(numbers, expected);
        let newest = &young.records[0];
        assert_eq!(
            (newest.collected, newest.candidates, newest.uncollectable),
            (Some(25), Some(250), Some(0))
        );
        assert_eq!(
            (newest.ts_start, newest.ts_stop, newest.heap_size),
            (Some(25_000), Some(25_010), Some(125))
        );
        assert_eq!(newest.duration, Some(1e-8));
        assert_eq!(newest.totals.collected, Some(25 * 26 / 2));
        // The oldest one's predecessor is gone: its own numbers are unknown.
        let oldest = young.records.last().unwrap();
        assert_eq!((oldest.collected, oldest.candidates), (None, None));
        assert_eq!(oldest.totals.collections, Some(15));
        // The totals are the newest records', as gc.get_stats() gives them.
        let totals: Vec<(u32, Option<i64>, Option<i64>)> = s
            .totals
            .iter()
            .map(|t| (t.generation, t.totals.collections, t.totals.collected))
            .collect();
        assert_eq!(
            totals,
            [
                (0, Some(25), Some(325)),
                (1, Some(2), Some(3)),
                (2, Some(0), Some(0))
            ]
        );
        assert_eq!(s.totals[0].totals.duration, Some(25.0 * 1e-8));
        // Old 0's first collection started from zeros: its numbers are its totals.
        let old0: Vec<(i64, Option<i64>)> = s.rings[1]
            .records
            .iter()
            .map(|r| (r.collections, r.collected))
            .collect();
        assert_eq!(old0, [(2, Some(2)), (1, Some(1))]);
        assert!(s.rings[2].records.is_empty());
        assert_eq!(s.rings[2].unreadable, None);
    }

    #[test]
    fn an_index_outside_the_ring_leaves_it_unread_and_the_others_read() {
        let mut m = memory();
        let at = STATS + m.layout.offsets().gc_stats.young_index.get().unwrap();
        m.put(at, &[11]);
        let stats = m.read();
        let young = &stats[0].rings[0];
        assert_eq!(
            young.unreadable.as_deref(),
            Some(format!("its index 11 at {at:#x} is not one of its 11 slots").as_str())
        );
        assert!(young.records.is_empty());
        assert_eq!(stats[0].totals[0].totals, Totals::default());
        assert_eq!(stats[0].rings[1].records.len(), 2);
        m.put(at, &[0xff]);
        let stats = m.read();
        assert!(
            stats[0].rings[0]
                .unreadable
                .as_deref()
                .unwrap()
                .contains("index -1")
        );
    }

    #[test]
    fn a_null_or_wild_pointer_is_unreadable_with_its_address() {
        let mut m = memory();
        let pointer_at = m.pointer_at();
        m.put(pointer_at, &0u64.to_le_bytes());
        let stats = m.read();
        assert_eq!(stats[0].address, None);
        assert!(stats[0].unreadable.as_deref().unwrap().contains("is NULL"));
        assert!(stats[0].totals.is_empty() && stats[0].rings.is_empty());
        m.put(pointer_at, &0x10u64.to_le_bytes());
        let stats = m.read();
        assert_eq!(stats[0].address, Some(0x10));
        assert_eq!(
            stats[0].unreadable.as_deref(),
            Some("cannot read 1120 bytes at 0x10: not mapped in the process")
        );
    }

    #[test]
    fn an_odd_update_seq_says_a_record_was_being_written() {
        let mut m = memory();
        let at = STATS + m.layout.offsets().gc_stats.update_seq.get().unwrap();
        m.put(at, &55u32.to_le_bytes());
        assert!(m.read()[0].writing());
    }
}
