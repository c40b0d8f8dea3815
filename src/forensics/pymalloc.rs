//! pymalloc, CPython's allocator for objects of up to 512 bytes: its arenas,
//! their pools, and each pool's chain of free blocks, walked once into a map
//! that says of any address whether pymalloc handed it out and whether that
//! block is free now.
//!
//! An arena is a `ARENA_SIZE` mapping cut into `POOL_SIZE` pools from its
//! first pool-aligned address up to `pool_address`; a pool serves one size
//! class and starts with a `pool_header`. Its blocks below `nextoffset` were
//! handed out at least once: those on the `freeblock` chain are free, the
//! others in use (`ref.count` of them); those at or above `nextoffset` were
//! never handed out since the pool was (re)initialised. A pool with a count
//! of 0 is empty: every block is free.

use serde::Serialize;

use super::read_context::ReadContext;
use super::{Finding, FindingKind};
use crate::diagnostic::{Diagnostic, DiagnosticSource, Severity};
use crate::layout::facts::ObmallocLocation;
use crate::memory::{Memory, MemoryExt};

/// Arena objects read per allocator state, at most: the table doubles as it
/// grows, and 2^16 arenas of 1 MiB is 64 GiB of small objects.
const MAX_ARENAS: u64 = 1 << 16;
/// Arenas kept in all (several allocator states in 3.12+).
const MAX_ARENAS_TOTAL: usize = 1 << 17;
/// Chain findings kept: a few tell the story, thousands are noise.
const MAX_FINDINGS: usize = 64;

/// Why a block counts as free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreeReason {
    /// It is on its pool's `freeblock` chain.
    FreeChain,
    /// It lies at or beyond its pool's `nextoffset`: not handed out since
    /// the pool was last initialised.
    BeyondNextoffset,
    /// Its pool is empty (`ref.count` 0).
    EmptyPool,
    /// Its arena has not carved its pool yet (beyond `pool_address`).
    UncarvedPool,
}

impl FreeReason {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            FreeReason::FreeChain => "on its pool's free-block chain",
            FreeReason::BeyondNextoffset => {
                "beyond its pool's nextoffset (not handed out since the pool was set up)"
            }
            FreeReason::EmptyPool => "in an empty pool (ref.count 0)",
            FreeReason::UncarvedPool => "in a part of its arena not yet cut into pools",
        }
    }
}

/// The state of one pymalloc block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Handed out and not freed.
    InUse,
    /// Free, and why.
    Free(FreeReason),
    /// Its pool's chain is broken before reaching it: free or not is unknown.
    Unknown,
}

/// Where in pymalloc an address lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// `arena_object.address`: the arena's mapping.
    pub arena: u64,
    /// The pool's header.
    pub pool: u64,
    /// `szidx`; `None` for a pool not carved yet.
    pub size_class: Option<u32>,
    /// Bytes per block (0 for a pool not carved yet).
    pub block_size: u32,
    /// The first byte of the block.
    pub start: u64,
    /// The block's index in its pool.
    pub index: u32,
    /// Free or in use.
    pub state: BlockState,
}

impl Block {
    /// Whether the block is free.
    pub fn is_free(&self) -> bool {
        matches!(self.state, BlockState::Free(_))
    }

    /// In words: `pymalloc pool 0x…, 32-byte blocks, block 5 (0x…)`.
    pub fn describe(&self) -> String {
        if self.block_size == 0 {
            return format!(
                "pymalloc arena {:#x}, not yet cut into pools at {:#x}",
                self.arena, self.pool
            );
        }
        format!(
            "pymalloc pool {:#x} ({}-byte blocks), block {} at {:#x}",
            self.pool, self.block_size, self.index, self.start
        )
    }

    /// Why it is free, or that it is not, in words.
    pub fn free_reason(&self) -> &'static str {
        match self.state {
            BlockState::Free(r) => r.describe(),
            BlockState::InUse => "in use",
            BlockState::Unknown => "free or not unknown: its pool's free chain is broken",
        }
    }

    /// Read back from [`Block::to_json`].
    pub fn from_json(value: &serde_json::Value) -> Option<Block> {
        let u = |key: &str| value.get(key).and_then(serde_json::Value::as_u64);
        let state = match value.get("state")?.as_str()? {
            "in_use" => BlockState::InUse,
            "free" => {
                BlockState::Free(serde_json::from_value(value.get("free_reason")?.clone()).ok()?)
            }
            _ => BlockState::Unknown,
        };
        Some(Block {
            arena: u("arena")?,
            pool: u("pool")?,
            size_class: u("size_class").map(|c| c as u32),
            block_size: u("block_size")? as u32,
            start: u("block")?,
            index: u("block_index")? as u32,
            state,
        })
    }

    /// Its facts as JSON, for a finding's or an object's evidence.
    pub fn to_json(&self) -> serde_json::Value {
        let (state, reason) = match self.state {
            BlockState::InUse => ("in_use", None),
            BlockState::Free(r) => ("free", Some(r)),
            BlockState::Unknown => ("unknown", None),
        };
        serde_json::json!({
            "allocator": "pymalloc",
            "arena": self.arena,
            "pool": self.pool,
            "size_class": self.size_class,
            "block_size": self.block_size,
            "block": self.start,
            "block_index": self.index,
            "state": state,
            "free_reason": reason,
        })
    }
}

/// What pymalloc says of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Not in any arena: the system allocator's (objects larger than 512
    /// bytes, raw allocations) or static.
    NotPymalloc,
    /// Inside a pool's header.
    PoolHeader(u64),
    /// In a block.
    Block(Block),
}

/// What a pool's blocks are, as walked.
#[derive(Debug, Clone, Copy)]
enum PoolBlocks {
    /// `ref.count` 0: all free.
    Empty,
    /// Free exactly where a bit is set in `bits[at..]`; blocks from
    /// `carved` on are free too (never handed out).
    Walked { at: u32, carved: u32 },
    /// The chain broke: blocks with a bit set are free, others unknown.
    Broken { at: u32 },
    /// The header could not be read or makes no sense.
    Unreadable,
}

#[derive(Debug, Clone, Copy)]
struct Pool {
    size_class: u32,
    block_size: u32,
    blocks: PoolBlocks,
}

#[derive(Debug, Clone)]
struct Arena {
    /// `arena_object.address`.
    address: u64,
    /// The first pool.
    first_pool: u64,
    /// `pool_address`: pools from here on are not carved yet.
    carved_end: u64,
    /// The end of the mapping.
    end: u64,
    /// Its pools, in `Pymalloc::pools`.
    pools: std::ops::Range<usize>,
}

/// The pymalloc map of one process.
#[derive(Debug, Default)]
pub struct Pymalloc {
    pool_size: u64,
    overhead: u64,
    /// Sorted by address, not overlapping.
    arenas: Vec<Arena>,
    pools: Vec<Pool>,
    bits: Vec<u64>,
    /// The allocator states walked (3.12+; the statics' address before).
    pub states: Vec<u64>,
    /// Why the arena table could not be located, when it could not.
    pub unlocated: Option<String>,
    /// Pools walked; free and in-use blocks counted.
    pub pools_walked: usize,
}

impl Pymalloc {
    /// Where `addr` lies in pymalloc.
    pub fn classify(&self, addr: u64) -> Allocation {
        let i = self.arenas.partition_point(|a| a.end <= addr);
        let Some(arena) = self.arenas.get(i).filter(|a| a.address <= addr) else {
            return Allocation::NotPymalloc;
        };
        if addr < arena.first_pool {
            // The unaligned head of an arena is never used.
            return Allocation::NotPymalloc;
        }
        let pool = addr & !(self.pool_size - 1);
        if pool >= arena.carved_end {
            return Allocation::Block(Block {
                arena: arena.address,
                pool,
                size_class: None,
                block_size: 0,
                start: addr,
                index: 0,
                state: BlockState::Free(FreeReason::UncarvedPool),
            });
        }
        let offset = addr - pool;
        if offset < self.overhead {
            return Allocation::PoolHeader(pool);
        }
        let n = ((pool - arena.first_pool) / self.pool_size) as usize;
        let Some(p) = self.pools.get(arena.pools.start + n) else {
            return Allocation::NotPymalloc;
        };
        let size = u64::from(p.block_size.max(1));
        let index = ((offset - self.overhead) / size) as u32;
        let bit = |at: u32| {
            self.bits
                .get(at as usize + index as usize / 64)
                .is_some_and(|w| w >> (index % 64) & 1 != 0)
        };
        let state = match p.blocks {
            PoolBlocks::Empty => BlockState::Free(FreeReason::EmptyPool),
            PoolBlocks::Walked { .. } | PoolBlocks::Broken { .. }
                if u64::from(index) >= (self.pool_size - self.overhead) / size =>
            {
                // The tail after the last whole block: never a block.
                BlockState::Free(FreeReason::BeyondNextoffset)
            }
            PoolBlocks::Walked { carved, .. } if index >= carved => {
                BlockState::Free(FreeReason::BeyondNextoffset)
            }
            PoolBlocks::Walked { at, .. } if bit(at) => BlockState::Free(FreeReason::FreeChain),
            PoolBlocks::Walked { .. } => BlockState::InUse,
            PoolBlocks::Broken { at } if bit(at) => BlockState::Free(FreeReason::FreeChain),
            PoolBlocks::Broken { .. } | PoolBlocks::Unreadable => BlockState::Unknown,
        };
        Allocation::Block(Block {
            arena: arena.address,
            pool,
            size_class: Some(p.size_class),
            block_size: p.block_size,
            start: pool + self.overhead + u64::from(index) * size,
            index,
            state,
        })
    }

    /// The block at `addr` when it is a free one.
    pub fn free_block(&self, addr: u64) -> Option<Block> {
        if self.arenas.is_empty() {
            return None;
        }
        match self.classify(addr) {
            Allocation::Block(b) if b.is_free() => Some(b),
            _ => None,
        }
    }

    /// Whether any arena was found.
    pub fn located(&self) -> bool {
        self.unlocated.is_none()
    }

    /// Arenas walked.
    pub fn arena_count(&self) -> usize {
        self.arenas.len()
    }
}

/// Which allocator an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AllocatorKind {
    /// A pymalloc block.
    Pymalloc,
    /// A pymalloc pool's header: never an object.
    PymallocPoolHeader,
    /// Not in any pymalloc arena: the system allocator's (objects larger
    /// than 512 bytes, raw allocations) or static.
    System,
    /// pymalloc's arenas could not be located.
    Unknown,
}

/// Whether a pymalloc block is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStateName {
    /// Handed out and not freed.
    InUse,
    /// Free.
    Free,
    /// Its pool's free chain is broken: unknown.
    Unknown,
}

/// What the allocator says of one address, for `pymortem object`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocatorState {
    /// Which allocator.
    pub allocator: AllocatorKind,
    /// The block's state (pymalloc blocks only).
    pub state: Option<BlockStateName>,
    /// Why a free block is free.
    pub free_reason: Option<FreeReason>,
    /// The arena's mapping.
    pub arena: Option<u64>,
    /// The pool's header.
    pub pool: Option<u64>,
    /// The pool's size class (`szidx`).
    pub size_class: Option<u32>,
    /// Bytes per block.
    pub block_size: Option<u32>,
    /// The block's first byte.
    pub block: Option<u64>,
    /// The block's index in its pool.
    pub block_index: Option<u32>,
    /// In words.
    pub description: String,
}

impl AllocatorState {
    /// What `map` says of `addr`.
    pub fn of(map: &Pymalloc, addr: u64) -> AllocatorState {
        let mut state = AllocatorState {
            allocator: AllocatorKind::Unknown,
            state: None,
            free_reason: None,
            arena: None,
            pool: None,
            size_class: None,
            block_size: None,
            block: None,
            block_index: None,
            description: String::new(),
        };
        if let Some(why) = &map.unlocated {
            state.description = format!("unknown: {why}");
            return state;
        }
        match map.classify(addr) {
            Allocation::NotPymalloc => {
                state.allocator = AllocatorKind::System;
                state.description = "not in a pymalloc arena: the system allocator's (objects larger than 512 bytes) or static".into();
            }
            Allocation::PoolHeader(pool) => {
                state.allocator = AllocatorKind::PymallocPoolHeader;
                state.pool = Some(pool);
                state.description =
                    format!("inside the header of pymalloc pool {pool:#x}: not an object");
            }
            Allocation::Block(b) => {
                state.allocator = AllocatorKind::Pymalloc;
                state.arena = Some(b.arena);
                state.pool = Some(b.pool);
                state.size_class = b.size_class;
                state.block_size = Some(b.block_size);
                state.block = Some(b.start);
                state.block_index = Some(b.index);
                let (name, reason) = match b.state {
                    BlockState::InUse => (BlockStateName::InUse, None),
                    BlockState::Free(r) => (BlockStateName::Free, Some(r)),
                    BlockState::Unknown => (BlockStateName::Unknown, None),
                };
                state.state = Some(name);
                state.free_reason = reason;
                let what = match b.state {
                    BlockState::InUse => "in use".to_string(),
                    _ => format!("free: {}", b.free_reason()),
                };
                state.description = format!("{}, {what}", b.describe());
            }
        }
        state
    }

    /// Whether the block is free.
    pub fn is_free(&self) -> bool {
        self.state == Some(BlockStateName::Free)
    }
}

/// The offsets the walk reads, all from the layout.
struct Offsets {
    arena_size: u64,
    address: u64,
    pool_address: u64,
    count: u64,
    freeblock: u64,
    arenaindex: u64,
    szidx: u64,
    nextoffset: u64,
    maxnextoffset: u64,
    header_size: u64,
}

fn offsets(heap: &ReadContext) -> Option<Offsets> {
    let o = heap.layout.offsets();
    let a = &o.arena_object;
    let p = &o.pool_header;
    Some(Offsets {
        arena_size: a.sizeof.get()?,
        address: a.address.get()?,
        pool_address: a.pool_address.get()?,
        count: p.count.get()?,
        freeblock: p.freeblock.get()?,
        arenaindex: p.arenaindex.get()?,
        szidx: p.szidx.get()?,
        nextoffset: p.nextoffset.get()?,
        maxnextoffset: p.maxnextoffset.get()?,
        header_size: p.sizeof.get()?,
    })
}

/// Why the arena table could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unlocated {
    #[error(
        "pymalloc's arena table is a static of obmalloc.c (`arenas`, `maxarenas`) and neither \
         the interpreter's symbol table nor its DWARF was found to name it"
    )]
    StaticsNotNamed,
    #[error("the layout lacks pymalloc's structures (arena_object, pool_header, _obmalloc_state)")]
    NotInLayout,
    #[error("pymalloc's state lives in the interpreter state, and no interpreter was found")]
    InterpreterNotFound,
}

/// The `(arenas, maxarenas)` addresses of every allocator state.
fn locate(heap: &ReadContext) -> Result<Vec<(u64, u64)>, Unlocated> {
    let o = heap.layout.offsets();
    let rules = heap.facts.rules;
    match rules.obmalloc {
        ObmallocLocation::Statics => {
            let module = heap.module.ok_or(Unlocated::StaticsNotNamed)?;
            let find = |name: &str| {
                module
                    .symbol_address(name, Some("obmalloc.c"))
                    // LTO renames file statics (Debian's 3.11: `arenas.lto_priv.0`)
                    // and drops the file symbols.
                    .or_else(|| {
                        (0..4).find_map(|i| {
                            module.symbol_address(&format!("{name}.lto_priv.{i}"), None)
                        })
                    })
                    .or_else(|| {
                        let bias = module.load_bias?;
                        heap.layout
                            .globals
                            .get(&format!("obmalloc.c:{name}"))
                            .map(|a| a.wrapping_add(bias))
                    })
            };
            match (find("arenas"), find("maxarenas")) {
                (Some(a), Some(m)) => Ok(vec![(a, m)]),
                _ => Err(Unlocated::StaticsNotNamed),
            }
        }
        location => {
            let (Some(field), Some(arenas), Some(maxarenas)) = (
                o.interp.obmalloc.get(),
                o.obmalloc_state.arenas.get(),
                o.obmalloc_state.maxarenas.get(),
            ) else {
                return Err(Unlocated::NotInLayout);
            };
            if heap.interpreters.is_empty() {
                return Err(Unlocated::InterpreterNotFound);
            }
            let mut states: Vec<u64> = heap
                .interpreters
                .iter()
                .filter_map(|&interp| {
                    let at = interp.wrapping_add(field);
                    match location {
                        ObmallocLocation::InterpreterInline => Some(at),
                        _ => heap.memory.read_ptr(at).ok().filter(|&s| s != 0),
                    }
                })
                .collect();
            // Subinterpreters sharing the main allocator point at its state.
            states.sort_unstable();
            states.dedup();
            Ok(states
                .into_iter()
                .map(|s| (s.wrapping_add(arenas), s.wrapping_add(maxarenas)))
                .collect())
        }
    }
}

/// Read a little-endian unsigned field of `size` bytes.
fn read_uint(heap: &ReadContext, addr: u64, size: u64) -> Option<u64> {
    match size {
        4 => heap.memory.read_u32(addr).ok().map(u64::from),
        8 => heap.memory.read_u64(addr).ok(),
        _ => None,
    }
}

/// Walk every arena of every allocator state, check each pool's chain, and
/// build the map. Chain damage becomes findings; what could not be read,
/// diagnostics.
pub fn walk(
    heap: &ReadContext,
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Pymalloc {
    let rules = heap.facts.rules;
    let located = offsets(heap)
        .ok_or(Unlocated::NotInLayout)
        .and_then(|_| locate(heap));
    match located {
        Ok(tables) => walk_tables(heap, &tables, findings, diagnostics),
        Err(why) => {
            let why = why.to_string();
            diagnostics.push(Diagnostic::error(DiagnosticSource::Forensics, why.clone()));
            Pymalloc {
                pool_size: rules.pool_size,
                unlocated: Some(why),
                ..Pymalloc::default()
            }
        }
    }
}

/// Walk the arena tables at `tables` (the addresses of `arenas` and
/// `maxarenas` of each allocator state).
pub(crate) fn walk_tables(
    heap: &ReadContext,
    tables: &[(u64, u64)],
    findings: &mut Vec<Finding>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Pymalloc {
    let rules = heap.facts.rules;
    let mut map = Pymalloc {
        pool_size: rules.pool_size,
        ..Pymalloc::default()
    };
    let Some(offsets) = offsets(heap) else {
        map.unlocated = Some(Unlocated::NotInLayout.to_string());
        return map;
    };
    let alignment = rules.allocator_alignment;
    map.overhead = offsets.header_size.next_multiple_of(alignment);
    let mut walker = Walker {
        heap,
        o: &offsets,
        pool_size: rules.pool_size,
        arena_size: rules.arena_size,
        alignment,
        overhead: map.overhead,
        findings: Vec::new(),
    };
    for &(arenas_at, maxarenas_at) in tables {
        map.states.push(arenas_at);
        let (Ok(table), Some(max)) = (
            heap.memory.read_ptr(arenas_at),
            read_uint(
                heap,
                maxarenas_at,
                heap.layout
                    .offsets()
                    .obmalloc_state
                    .maxarenas
                    .size()
                    .unwrap_or(4),
            ),
        ) else {
            diagnostics.push(Diagnostic::error(
                DiagnosticSource::Forensics,
                format!("pymalloc's arena table at {arenas_at:#x} could not be read"),
            ));
            continue;
        };
        if max > MAX_ARENAS {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Forensics,
                format!(
                    "pymalloc says it has {max} arena objects; the first {MAX_ARENAS} are walked"
                ),
            ));
        }
        for i in 0..max.min(MAX_ARENAS) {
            if map.arenas.len() >= MAX_ARENAS_TOTAL {
                break;
            }
            let entry = table.wrapping_add(i * offsets.arena_size);
            walker.arena(&mut map, entry, i as u32, diagnostics);
        }
    }
    map.arenas.sort_by_key(|a| a.address);
    // Overlapping arenas (a corrupt table) would make lookups ambiguous:
    // keep the first of each overlap.
    let mut kept: Vec<Arena> = Vec::with_capacity(map.arenas.len());
    for arena in std::mem::take(&mut map.arenas) {
        if kept.last().is_some_and(|last| last.end > arena.address) {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Forensics,
                format!(
                    "pymalloc arena {:#x} overlaps another; skipped",
                    arena.address
                ),
            ));
            continue;
        }
        kept.push(arena);
    }
    map.arenas = kept;
    findings.append(&mut walker.findings);
    map
}

struct Walker<'a, 'p> {
    heap: &'a ReadContext<'p>,
    o: &'a Offsets,
    pool_size: u64,
    arena_size: u64,
    alignment: u64,
    overhead: u64,
    findings: Vec<Finding>,
}

impl Walker<'_, '_> {
    fn arena(
        &mut self,
        map: &mut Pymalloc,
        entry: u64,
        index: u32,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let heap = self.heap;
        let (Ok(address), Ok(pool_address)) = (
            heap.memory.read_u64(entry.wrapping_add(self.o.address)),
            heap.memory
                .read_u64(entry.wrapping_add(self.o.pool_address)),
        ) else {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Forensics,
                format!("pymalloc arena object {index} at {entry:#x} could not be read"),
            ));
            return;
        };
        // An arena object without an address is unused.
        if address == 0 {
            return;
        }
        let end = address.saturating_add(self.arena_size);
        // A hostile core's address may sit at the top of the address space.
        let first_pool = address
            .checked_next_multiple_of(self.pool_size)
            .unwrap_or(u64::MAX);
        if pool_address < first_pool
            || first_pool == u64::MAX
            || pool_address > end
            || !pool_address.is_multiple_of(self.pool_size)
        {
            diagnostics.push(Diagnostic::warning(
                DiagnosticSource::Forensics,
                format!(
                    "pymalloc arena {index} at {address:#x} has its next pool at {pool_address:#x}, outside it; its pools are not walked"
                ),
            ));
            return;
        }
        let start = map.pools.len();
        let mut pool = first_pool;
        while pool < pool_address {
            let p = self.pool(map, pool, index);
            map.pools.push(p);
            let Some(next) = pool.checked_add(self.pool_size) else {
                break;
            };
            pool = next;
        }
        map.pools_walked += map.pools.len() - start;
        map.arenas.push(Arena {
            address,
            first_pool,
            carved_end: pool_address,
            end,
            pools: start..map.pools.len(),
        });
    }

    fn pool(&mut self, map: &mut Pymalloc, pool: u64, arena_index: u32) -> Pool {
        let heap = self.heap;
        let o = self.o;
        let header = heap.memory.slice_at(pool, o.header_size as usize);
        let unreadable = Pool {
            size_class: 0,
            block_size: 0,
            blocks: PoolBlocks::Unreadable,
        };
        let Some(header) = header else {
            return unreadable;
        };
        let u32_at = |off: u64| {
            header
                .get(off as usize..off as usize + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
        };
        let u64_at = |off: u64| {
            header
                .get(off as usize..off as usize + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        };
        let (
            Some(count),
            Some(freeblock),
            Some(arenaindex),
            Some(szidx),
            Some(next),
            Some(maxnext),
        ) = (
            u32_at(o.count),
            u64_at(o.freeblock),
            u32_at(o.arenaindex),
            u32_at(o.szidx),
            u32_at(o.nextoffset),
            u32_at(o.maxnextoffset),
        )
        else {
            return unreadable;
        };
        let block_size = self.pool_size.saturating_sub(u64::from(maxnext));
        let usable = self.pool_size - self.overhead;
        let class_fits = |alignment: u64| block_size == (u64::from(szidx) + 1) * alignment;
        // A header that contradicts its own arena cannot be walked (a pool
        // set up for another arena, or overwritten).
        if arenaindex != arena_index
            || block_size == 0
            || block_size > usable
            || !(class_fits(self.alignment) || class_fits(8) || class_fits(16))
            || u64::from(next) < self.overhead
            || u64::from(next) > self.pool_size
        {
            return unreadable;
        }
        let mut p = Pool {
            size_class: szidx,
            block_size: block_size as u32,
            blocks: PoolBlocks::Empty,
        };
        if count == 0 {
            return p;
        }
        let blocks = usable / block_size;
        let carved = ((u64::from(next) - self.overhead) / block_size).min(blocks);
        let at = map.bits.len();
        map.bits.resize(at + blocks.div_ceil(64) as usize, 0);
        let bits = &mut map.bits[at..];
        let mut on_chain = 0u64;
        let mut from = pool;
        let mut link = freeblock;
        let broken = loop {
            if link == 0 {
                break None;
            }
            let offset = link.wrapping_sub(pool);
            let in_pool =
                link >= pool + self.overhead && offset < self.overhead + carved * block_size;
            if !in_pool || !(offset - self.overhead).is_multiple_of(block_size) {
                break Some(Damage::Outside { from, link });
            }
            let index = (offset - self.overhead) / block_size;
            let (word, mask) = ((index / 64) as usize, 1u64 << (index % 64));
            if bits[word] & mask != 0 {
                break Some(Damage::Cycle { from, link, index });
            }
            bits[word] |= mask;
            on_chain += 1;
            from = link;
            match heap.memory.read_u64(link) {
                Ok(next) => link = next,
                Err(_) => break Some(Damage::Unreadable),
            }
        };
        let pool_facts = PoolFacts {
            pool,
            size_class: szidx,
            block_size,
            count,
            on_chain,
            carved,
        };
        match broken {
            Some(damage) => {
                p.blocks = PoolBlocks::Broken { at: at as u32 };
                self.damage(&pool_facts, damage);
            }
            None => {
                p.blocks = PoolBlocks::Walked {
                    at: at as u32,
                    carved: carved as u32,
                };
                let used = carved - on_chain;
                if used != u64::from(count) {
                    self.push(pool_facts.finding(
                        FindingKind::PymallocCountMismatch,
                        pool,
                        format!(
                            "pymalloc pool {pool:#x} ({block_size}-byte blocks) counts {count} blocks in use, but {carved} were handed out and {on_chain} are on its free chain ({used} in use): a block freed twice or freed while another thread allocated"
                        ),
                    ));
                }
            }
        }
        p
    }

    fn damage(&mut self, pool: &PoolFacts, damage: Damage) {
        let PoolFacts {
            pool: at,
            block_size,
            ..
        } = *pool;
        let f = match damage {
            Damage::Unreadable => return,
            Damage::Cycle { from, link, index } => pool
                .finding(
                    FindingKind::PymallocChainCycle,
                    link,
                    format!(
                        "the free-block chain of pymalloc pool {at:#x} ({block_size}-byte blocks) comes back to block {index} at {link:#x} (from {from:#x}): the block was freed twice"
                    ),
                )
                .with("link_from", from)
                .with("block_index", index),
            Damage::Outside { from, link } => {
                let what = if link >= at && link < at + self.pool_size {
                    "not the start of a block it handed out"
                } else {
                    "outside the pool"
                };
                pool.finding(
                    FindingKind::PymallocChainOutsidePool,
                    from,
                    format!(
                        "the free-block chain of pymalloc pool {at:#x} ({block_size}-byte blocks) links from {from:#x} to {link:#x}, {what}: a write into a freed block (a Py_INCREF or Py_DECREF on a freed object shifts its first word)"
                    ),
                )
                .with("link_from", from)
                .with("link", link)
            }
        };
        self.push(f);
    }

    fn push(&mut self, f: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        }
    }
}

/// How a chain broke.
enum Damage {
    Cycle { from: u64, link: u64, index: u64 },
    Outside { from: u64, link: u64 },
    Unreadable,
}

#[derive(Clone, Copy)]
struct PoolFacts {
    pool: u64,
    size_class: u32,
    block_size: u64,
    count: u32,
    on_chain: u64,
    carved: u64,
}

impl PoolFacts {
    fn finding(&self, kind: FindingKind, address: u64, message: String) -> Finding {
        Finding::new(
            kind,
            Severity::Error,
            address,
            Some(format!("pymalloc pool {:#x}", self.pool)),
            message,
        )
        .with("pool", self.pool)
        .with("size_class", self.size_class)
        .with("block_size", self.block_size)
        .with("count", self.count)
        .with("on_free_chain", self.on_chain)
        .with("handed_out", self.carved)
    }
}

/// Objects linked into a GC generation list whose block is free: freed
/// without being untracked, or a list that runs through freed memory. A
/// free block's first word is pymalloc's link, over the GC header's next
/// link, so the GC walk has already flagged such an object (a broken link,
/// a bad refcount): only those are looked up, which keeps a million
/// lookups off a healthy heap.
pub fn cross_check(heap: &ReadContext, map: &Pymalloc, findings: &mut Vec<Finding>) {
    if map.arenas.is_empty() {
        return;
    }
    let mut flagged: Vec<u64> = findings
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FindingKind::GcListBrokenLink
                    | FindingKind::GcListCycle
                    | FindingKind::GcObjectBadRefcount
            )
        })
        .map(|f| f.address)
        .collect();
    flagged.sort_unstable();
    flagged.dedup();
    let mut found = 0;
    for obj in flagged {
        // The block starts at the GC header.
        let Some(block) = map.free_block(obj.wrapping_sub(heap.gc_head_size)) else {
            continue;
        };
        findings.push(
            Finding::new(
                FindingKind::FreeBlockInGcList,
                Severity::Error,
                obj,
                Some(format!("pymalloc pool {:#x}", block.pool)),
                format!(
                    "{obj:#x} is linked into a GC list, but its block is free ({}; {}): freed without being untracked, or a GC list that runs through freed memory",
                    block.describe(),
                    block.free_reason()
                ),
            )
            .with("allocator", block.to_json()),
        );
        found += 1;
        if found == MAX_FINDINGS {
            break;
        }
    }
}

/// Add each finding's object's allocator state to its evidence: which
/// pymalloc block, or the system allocator's.
pub fn annotate(map: &Pymalloc, findings: &mut [Finding]) {
    if map.arenas.is_empty() {
        return;
    }
    for f in findings.iter_mut() {
        if !matches!(
            f.kind,
            FindingKind::FreedObjectReferenced
                | FindingKind::StaticPointsToFreed
                | FindingKind::RefcountBelowReferences
        ) || f.evidence.contains_key("allocator")
        {
            continue;
        }
        let value = match map.classify(f.address) {
            Allocation::Block(b) => b.to_json(),
            Allocation::PoolHeader(pool) => {
                serde_json::json!({"allocator": "pymalloc", "pool_header": pool})
            }
            Allocation::NotPymalloc => {
                f.message.push_str(
                    " (not in a pymalloc arena: the system allocator's, as objects larger than 512 bytes are)",
                );
                serde_json::json!({"allocator": "system"})
            }
        };
        f.evidence.insert("allocator".into(), value);
    }
}

#[cfg(test)]
mod tests;
