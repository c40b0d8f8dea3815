//! The pymalloc walk on a hand-built arena: one segment holding an arena
//! table, one arena and two pools, laid out with the built-in 3.12 table
//! (16 KiB pools, 1 MiB arenas). Every expectation comes from what the test
//! wrote.

use std::sync::Arc;

use super::{Allocation, BlockState, FreeReason, Pymalloc, walk_tables};
use crate::forensics::items::{DeadHeader, HeaderCheck};
use crate::forensics::read_context::ReadContext;
use crate::forensics::{Finding, FindingKind};
use crate::layout::Layout;
use crate::memory::ProcessMemory;

const BASE: u64 = 0x10_0000;
const SIZE: usize = 0x1_0000;
/// `arenas` and `maxarenas`, as the statics or the state hold them.
const ARENAS_AT: u64 = BASE + 0x100;
const MAXARENAS_AT: u64 = BASE + 0x108;
/// The arena objects.
const TABLE: u64 = BASE + 0x200;
/// The arena's mapping: not pool-aligned, so its first pool is at `POOL0`.
const ARENA: u64 = BASE + 0x1000;
const POOL_SIZE: u64 = 0x4000;
const POOL0: u64 = BASE + 0x4000;
const POOL1: u64 = POOL0 + POOL_SIZE;
/// Pools carved: two.
const CARVED_END: u64 = POOL1 + POOL_SIZE;
/// `POOL_OVERHEAD`: the 48-byte header rounded up to 16.
const OVERHEAD: u64 = 48;
/// Pool 0 serves size class 1: 32-byte blocks.
const BLOCK: u64 = 32;
/// Blocks pool 0 handed out (below `nextoffset`).
const HANDED_OUT: u64 = 10;

fn block(i: u64) -> u64 {
    POOL0 + OVERHEAD + i * BLOCK
}

struct Arena {
    bytes: Vec<u8>,
    layout: Layout,
}

impl Arena {
    /// Pool 0 handed out 10 blocks, of which 3 and 7 are free (chain
    /// 3 → 7 → NULL) and 8 in use; pool 1 is empty.
    fn healthy() -> Arena {
        let layout = crate::layout::tables::builtin(3, 12)
            .expect("the 3.12 table is built in")
            .layout_for("3.12.0");
        let mut arena = Arena {
            bytes: vec![0; SIZE],
            layout,
        };
        let o = arena.layout.offsets();
        let (a, p) = (o.arena_object, o.pool_header);
        arena.put(ARENAS_AT, TABLE);
        arena.put_u32(MAXARENAS_AT, 2);
        // Arena object 0 is in use, 1 is not (address 0).
        arena.put(TABLE + a.address.get().unwrap(), ARENA);
        arena.put(TABLE + a.pool_address.get().unwrap(), CARVED_END);
        for (pool, count, szidx, next) in [
            (POOL0, 8, 1, OVERHEAD + HANDED_OUT * BLOCK),
            (POOL1, 0, 3, OVERHEAD + 64),
        ] {
            let size = (u64::from(szidx) + 1) * 16;
            arena.put_u32(pool + p.count.get().unwrap(), count);
            arena.put_u32(pool + p.arenaindex.get().unwrap(), 0);
            arena.put_u32(pool + p.szidx.get().unwrap(), szidx);
            arena.put_u32(pool + p.nextoffset.get().unwrap(), next as u32);
            arena.put_u32(
                pool + p.maxnextoffset.get().unwrap(),
                (POOL_SIZE - size) as u32,
            );
        }
        arena.put(POOL0 + p.freeblock.get().unwrap(), block(3));
        arena.put(block(3), block(7));
        arena.put(block(7), 0);
        arena
    }

    fn put(&mut self, addr: u64, value: u64) {
        let at = (addr - BASE) as usize;
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(&mut self, addr: u64, value: u32) {
        let at = (addr - BASE) as usize;
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn set_count(&mut self, count: u32) {
        let at = self.layout.offsets().pool_header.count.get().unwrap();
        self.put_u32(POOL0 + at, count);
    }

    /// The bytes as an ELF core with one writable PT_LOAD segment.
    fn memory(&self) -> ProcessMemory {
        let core = crate::forensics::walker_tests::one_segment_core(BASE, &self.bytes);
        ProcessMemory::new(Arc::new(core))
    }

    /// The walk, its findings, and the diagnostics.
    fn walk(&self) -> (Pymalloc, Vec<Finding>) {
        let memory = self.memory();
        let heap = ReadContext::over(&memory, &self.layout);
        let (mut findings, mut diagnostics) = (Vec::new(), Vec::new());
        let map = walk_tables(
            &heap,
            &[(ARENAS_AT, MAXARENAS_AT)],
            &mut findings,
            &mut diagnostics,
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        (map, findings)
    }
}

fn state(map: &Pymalloc, addr: u64) -> BlockState {
    match map.classify(addr) {
        Allocation::Block(b) => b.state,
        other => panic!("{addr:#x} is {other:?}, not a block"),
    }
}

fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

#[test]
fn a_healthy_pool_has_no_findings_and_each_block_its_state() {
    let (map, findings) = Arena::healthy().walk();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(map.arena_count(), 1);
    assert_eq!(
        state(&map, block(3)),
        BlockState::Free(FreeReason::FreeChain)
    );
    // An address inside a free block (a GC object's, after its header).
    assert_eq!(
        state(&map, block(7) + 16),
        BlockState::Free(FreeReason::FreeChain)
    );
    for used in [0, 1, 2, 4, 5, 6, 8, 9] {
        assert_eq!(state(&map, block(used)), BlockState::InUse, "block {used}");
    }
    assert_eq!(
        state(&map, block(HANDED_OUT)),
        BlockState::Free(FreeReason::BeyondNextoffset)
    );
    assert_eq!(
        state(&map, POOL1 + OVERHEAD + 64),
        BlockState::Free(FreeReason::EmptyPool)
    );
    assert_eq!(
        state(&map, CARVED_END + 0x100),
        BlockState::Free(FreeReason::UncarvedPool)
    );
    assert_eq!(map.classify(POOL0 + 8), Allocation::PoolHeader(POOL0));
    // Before the first pool, and outside the arena: not pymalloc's.
    assert_eq!(map.classify(ARENA + 8), Allocation::NotPymalloc);
    assert_eq!(map.classify(BASE + 0x80), Allocation::NotPymalloc);
    assert_eq!(map.classify(ARENA + (1 << 20)), Allocation::NotPymalloc);
    let Allocation::Block(b) = map.classify(block(5) + 3) else {
        panic!("block 5 is a block");
    };
    assert_eq!(
        (b.pool, b.index, b.start, b.block_size, b.size_class),
        (POOL0, 5, block(5), BLOCK as u32, Some(1))
    );
}

#[test]
fn a_chain_that_comes_back_is_a_cycle_at_the_block_freed_twice() {
    let mut arena = Arena::healthy();
    // Block 3 pushed again: 3 → 7 → 3.
    arena.put(block(7), block(3));
    let (map, findings) = arena.walk();
    assert_eq!(kinds(&findings), [FindingKind::PymallocChainCycle]);
    assert_eq!(findings[0].address, block(3));
    // What the chain showed is still free; the rest is unknown.
    assert_eq!(
        state(&map, block(7)),
        BlockState::Free(FreeReason::FreeChain)
    );
    assert_eq!(state(&map, block(2)), BlockState::Unknown);
}

#[test]
fn a_link_outside_the_pool_or_into_a_block_is_a_finding_at_its_block() {
    for bad in [POOL1 + OVERHEAD, block(5) + 1, block(HANDED_OUT)] {
        let mut arena = Arena::healthy();
        arena.put(block(7), bad);
        let (_, findings) = arena.walk();
        assert_eq!(
            kinds(&findings),
            [FindingKind::PymallocChainOutsidePool],
            "link {bad:#x}"
        );
        assert_eq!(findings[0].address, block(7));
        assert_eq!(findings[0].evidence["link"], bad);
    }
}

#[test]
fn a_count_that_differs_from_the_chain_is_a_mismatch() {
    let mut arena = Arena::healthy();
    arena.set_count(9);
    let (_, findings) = arena.walk();
    assert_eq!(kinds(&findings), [FindingKind::PymallocCountMismatch]);
    assert_eq!(findings[0].address, POOL0);
    assert_eq!(findings[0].evidence["count"], 9);
    assert_eq!(findings[0].evidence["on_free_chain"], 2);
}

#[test]
fn a_reference_into_a_free_block_is_a_dead_header_with_its_block() {
    let arena = Arena::healthy();
    let (map, _) = arena.walk();
    let memory = arena.memory();
    let heap = ReadContext::over(&memory, &arena.layout).with_pymalloc(&map);
    let mut headers = HeaderCheck::new();
    let Some(DeadHeader::FreeBlock(b)) = headers.dead(&heap, block(3)) else {
        panic!("block 3 is free");
    };
    assert_eq!((b.pool, b.index), (POOL0, 3));
    // Its evidence reads back.
    let f = DeadHeader::FreeBlock(b).record(Finding::new(
        FindingKind::FreedObjectReferenced,
        crate::diagnostic::Severity::Error,
        block(3),
        None,
        String::new(),
    ));
    assert_eq!(DeadHeader::of_finding(&f), Some(DeadHeader::FreeBlock(b)));
    assert!(!matches!(
        headers.dead(&heap, block(4)),
        Some(DeadHeader::FreeBlock(_))
    ));
}
