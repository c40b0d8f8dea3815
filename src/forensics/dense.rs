//! Per-address tables over the core's writable memory: one slot per 8 bytes,
//! addressed by arithmetic instead of hashing, so that heaps of millions of
//! objects are counted and marked in flat arrays.

use crate::core::CoreFile;

/// Slots above this count make the dense tables fall back to nothing (the
/// callers then use hash maps): 2^31 slots cover 16 GiB of writable memory.
const MAX_SLOTS: u64 = 1 << 31;

/// Maps addresses in the core's dumped writable segments to slot numbers.
#[derive(Debug, Clone)]
pub struct AddressIndex {
    // (first address, end address, first slot), sorted by address.
    ranges: Vec<(u64, u64, u64)>,
    slots: u64,
}

impl AddressIndex {
    /// An index over every dumped writable segment; `None` when too large.
    pub fn new(core: &CoreFile) -> Option<AddressIndex> {
        let mut ranges = Vec::new();
        let mut slots = 0u64;
        for s in core
            .segments()
            .iter()
            .filter(|s| s.perms.write && s.available > 0)
        {
            let end = s.vaddr.saturating_add(s.available);
            ranges.push((s.vaddr, end, slots));
            slots += s.available.div_ceil(8);
            if slots > MAX_SLOTS {
                return None;
            }
        }
        Some(AddressIndex { ranges, slots })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots as usize
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// The slot of an 8-aligned address in a dumped writable segment.
    pub fn slot(&self, addr: u64) -> Option<usize> {
        if !addr.is_multiple_of(8) {
            return None;
        }
        let i = self
            .ranges
            .partition_point(|r| r.0 <= addr)
            .checked_sub(1)?;
        let (start, end, first) = self.ranges[i];
        (addr < end).then(|| (first + (addr - start) / 8) as usize)
    }

    /// The address of a slot.
    pub fn address(&self, slot: usize) -> Option<u64> {
        let slot = slot as u64;
        let i = self
            .ranges
            .partition_point(|r| r.2 <= slot)
            .checked_sub(1)?;
        let (start, _, first) = self.ranges[i];
        Some(start + (slot - first) * 8)
    }
}

/// One bit per slot.
#[derive(Debug, Clone)]
pub struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// All clear, for `len` slots.
    pub fn new(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Set a slot; return whether it was already set.
    pub fn test_and_set(&mut self, slot: usize) -> bool {
        let (w, b) = (slot / 64, slot % 64);
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        was
    }
}

/// A saturating byte counter per slot.
#[derive(Debug, Clone)]
pub struct Counts {
    counts: Vec<u8>,
}

impl Counts {
    /// All zero, for `len` slots.
    pub fn new(len: usize) -> Counts {
        Counts {
            counts: vec![0; len],
        }
    }

    /// Add one (saturating at 255, which then means "at least 255").
    pub fn add(&mut self, slot: usize) {
        let c = &mut self.counts[slot];
        *c = c.saturating_add(1);
    }

    /// The count of a slot.
    pub fn get(&self, slot: usize) -> u8 {
        self.counts.get(slot).copied().unwrap_or(0)
    }

    /// Every slot counted at least `min` times, with its count.
    pub fn at_least(&self, min: u8) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(move |(_, c)| **c >= min)
            .map(|(i, c)| (i, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_counts() {
        let mut b = Bits::new(130);
        assert!(!b.test_and_set(129));
        assert!(b.test_and_set(129));
        let mut c = Counts::new(4);
        for _ in 0..300 {
            c.add(2);
        }
        assert_eq!(c.get(2), 255);
        assert_eq!(c.at_least(2).collect::<Vec<_>>(), vec![(2, 255)]);
    }
}
