//! Per-address tables over the core's writable memory: one slot per 8 bytes,
//! addressed by arithmetic instead of hashing, so that heaps of millions of
//! objects are counted and marked in flat arrays.

use std::cell::Cell;

use crate::corefile::CoreFile;

/// Slots above this count make the dense tables fall back to nothing (the
/// callers then use hash maps): 2^31 slots cover 16 GiB of writable memory.
const MAX_SLOTS: u64 = 1 << 31;

/// Maps addresses in the core's dumped writable segments to slot numbers.
#[derive(Debug, Clone)]
pub struct AddressIndex {
    // Sorted by address; kept apart so that the search touches only `starts`.
    starts: Vec<u64>,
    ends: Vec<u64>,
    first_slots: Vec<u64>,
    slots: u64,
    // Bytes per slot: 8, or 16 where every object is 16-aligned, as a
    // shift: a division per lookup was a third of the counter's time.
    granule_shift: u32,
    // (start, end, first slot) of the last range found: consecutive
    // lookups often fall in one arena.
    last: Cell<(u64, u64, u64)>,
}

impl AddressIndex {
    /// An index over every dumped writable segment, a slot per `granule`
    /// bytes (8 or 16); `None` when too large or empty. Addresses not
    /// aligned to the granule have no slot.
    pub fn new(core: &CoreFile, granule: u64) -> Option<AddressIndex> {
        let granule = if granule == 16 { 16 } else { 8 };
        let (mut starts, mut ends, mut first_slots) = (Vec::new(), Vec::new(), Vec::new());
        let mut slots = 0u64;
        for s in core
            .segments()
            .iter()
            .filter(|s| s.perms.write && s.available > 0)
        {
            // Segments are page-aligned, so every slot boundary is aligned too.
            starts.push(s.vaddr);
            ends.push(s.vaddr.saturating_add(s.available));
            first_slots.push(slots);
            slots += s.available.div_ceil(granule);
            if slots > MAX_SLOTS {
                return None;
            }
        }
        if starts.is_empty() {
            return None;
        }
        Some(AddressIndex {
            starts,
            ends,
            first_slots,
            slots,
            granule_shift: granule.trailing_zeros(),
            last: Cell::new((0, 0, 0)),
        })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots as usize
    }

    /// The slot of a granule-aligned address in a dumped writable segment.
    #[inline]
    pub fn slot(&self, addr: u64) -> Option<usize> {
        if addr & (self.granule() - 1) != 0 {
            return None;
        }
        let (start, end, first) = self.last.get();
        if addr >= start && addr < end {
            return Some((first + ((addr - start) >> self.granule_shift)) as usize);
        }
        self.slot_searched(addr)
    }

    #[inline(never)]
    fn slot_searched(&self, addr: u64) -> Option<usize> {
        let i = self.range_of(addr);
        let (start, end, first) = (self.starts[i], self.ends[i], self.first_slots[i]);
        if addr < start || addr >= end {
            return None;
        }
        self.last.set((start, end, first));
        Some((first + ((addr - start) >> self.granule_shift)) as usize)
    }

    /// The last range starting at or below `addr` (or 0).
    fn range_of(&self, addr: u64) -> usize {
        crate::corefile::last_at_or_below(&self.starts, addr)
    }

    /// The ranges of slots, as (first address, first slot, slots), in
    /// address order: a plain copy another thread can walk.
    pub fn ranges(&self) -> Vec<(u64, usize, usize)> {
        let ends = self.first_slots.iter().skip(1).copied().chain([self.slots]);
        self.starts
            .iter()
            .zip(&self.first_slots)
            .zip(ends)
            .map(|((&start, &first), end)| (start, first as usize, (end - first) as usize))
            .collect()
    }

    /// Bytes per slot.
    #[inline]
    pub fn granule(&self) -> u64 {
        1 << self.granule_shift
    }

    /// The address of a slot.
    pub fn address(&self, slot: usize) -> Option<u64> {
        let slot = slot as u64;
        let i = self
            .first_slots
            .partition_point(|&f| f <= slot)
            .checked_sub(1)?;
        Some(self.starts[i] + ((slot - self.first_slots[i]) << self.granule_shift))
    }
}

/// Zeroed bytes for a dense table. Tables of 64 KiB and more come from an
/// anonymous map populated for writing at once (with huge pages asked for
/// from 2 MiB): a 20 MB table then costs ten page faults, not ten thousand,
/// and a 1 MB bitmap no copy-on-write fault (with a TLB flush on every CPU
/// the threads run on) per page.
enum ZeroedBytes {
    Mapped(memmap2::MmapMut),
    ReadContext(Vec<u8>),
}

impl ZeroedBytes {
    fn new(len: usize) -> ZeroedBytes {
        const HUGE: usize = 2 << 20;
        // Below this, the allocator's own heap serves (and its pages are
        // most likely written already).
        const MAPPED: usize = 64 << 10;
        if len >= MAPPED
            && let Ok(map) = memmap2::MmapMut::map_anon(len)
        {
            // Only hints: without them the map is still zeroed memory.
            if len >= HUGE {
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            // Counters are read before they are written: page by page, each
            // page would fault twice (the shared zero page, then a copy, with
            // a TLB flush on every CPU the threads ran on). One call maps
            // them all, before the threads start.
            let _ = map.advise(memmap2::Advice::PopulateWrite);
            return ZeroedBytes::Mapped(map);
        }
        ZeroedBytes::ReadContext(vec![0; len])
    }

    fn bytes(&self) -> &[u8] {
        match self {
            ZeroedBytes::Mapped(m) => m,
            ZeroedBytes::ReadContext(v) => v,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            ZeroedBytes::Mapped(m) => m,
            ZeroedBytes::ReadContext(v) => v,
        }
    }
}

impl std::fmt::Debug for ZeroedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZeroedBytes({} bytes)", self.bytes().len())
    }
}

/// One bit per slot.
#[derive(Debug)]
pub struct Bits {
    bytes: ZeroedBytes,
}

impl Bits {
    /// All clear, for `len` slots.
    pub fn new(len: usize) -> Bits {
        Bits {
            bytes: ZeroedBytes::new(len.div_ceil(8)),
        }
    }

    /// Whether a slot is set.
    #[inline]
    pub fn get(&self, slot: usize) -> bool {
        self.bytes
            .bytes()
            .get(slot / 8)
            .is_some_and(|b| b & (1 << (slot % 8)) != 0)
    }

    /// Set a slot; return whether it was already set.
    #[inline]
    pub fn test_and_set(&mut self, slot: usize) -> bool {
        let byte = &mut self.bytes.bytes_mut()[slot / 8];
        let bit = 1 << (slot % 8);
        let was = *byte & bit != 0;
        *byte |= bit;
        was
    }
}

/// Three bits per slot, the three words of 64 slots side by side: a
/// walk that asks all three of one slot at random reads one cache line, not
/// three.
#[derive(Debug)]
pub struct BitTriples {
    bytes: ZeroedBytes,
}

impl BitTriples {
    /// All clear, for `len` slots.
    pub fn new(len: usize) -> BitTriples {
        BitTriples {
            bytes: ZeroedBytes::new(len.div_ceil(64) * 24),
        }
    }

    /// The byte holding bit `which` of a slot, and the bit in it.
    #[inline]
    fn byte(slot: usize, which: usize) -> (usize, u8) {
        ((slot / 64 * 3 + which) * 8 + slot % 64 / 8, 1 << (slot % 8))
    }

    /// Whether bit `which` (0, 1 or 2) of a slot is set.
    #[inline]
    pub fn get(&self, which: usize, slot: usize) -> bool {
        let (at, bit) = Self::byte(slot, which);
        self.bytes.bytes().get(at).is_some_and(|b| b & bit != 0)
    }

    /// Set bit `which` of a slot; return whether it was already set.
    #[inline]
    pub fn test_and_set(&mut self, which: usize, slot: usize) -> bool {
        let (at, bit) = Self::byte(slot, which);
        let Some(byte) = self.bytes.bytes_mut().get_mut(at) else {
            return false;
        };
        let was = *byte & bit != 0;
        *byte |= bit;
        was
    }

    /// Bit `which` of every slot, as a bitmap of its own.
    pub fn extract(&self, which: usize, len: usize) -> Bits {
        let mut bits = Bits::new(len);
        let out = bits.bytes.bytes_mut();
        for (i, triple) in self.bytes.bytes().chunks_exact(24).enumerate() {
            let word = &triple[which * 8..which * 8 + 8];
            if let Some(dst) = out.get_mut(i * 8..) {
                let n = dst.len().min(8);
                dst[..n].copy_from_slice(&word[..n]);
            }
        }
        bits
    }
}

/// A saturating byte counter per slot.
#[derive(Debug)]
pub struct Counts {
    counts: ZeroedBytes,
}

impl Counts {
    /// All zero, for `len` slots.
    pub fn new(len: usize) -> Counts {
        Counts {
            counts: ZeroedBytes::new(len),
        }
    }

    /// Add one (saturating at 255, which then means "at least 255");
    /// return whether this was the slot's first.
    #[inline]
    pub fn add(&mut self, slot: usize) -> bool {
        let c = &mut self.counts.bytes_mut()[slot];
        let first = *c == 0;
        *c = c.saturating_add(1);
        first
    }

    /// The count of a slot.
    pub fn get(&self, slot: usize) -> u8 {
        self.counts.bytes().get(slot).copied().unwrap_or(0)
    }

    /// Every slot of `slots` counted at least once, in order. Eight counts
    /// are tested at once, as in [`Counts::at_least`].
    pub fn counted_in(&self, slots: std::ops::Range<usize>) -> impl Iterator<Item = usize> + '_ {
        let bytes = self.counts.bytes();
        let end = slots.end.min(bytes.len());
        let start = slots.start.min(end);
        let (words, tail) = bytes[start..end].as_chunks::<8>();
        let tail_start = start + words.len() * 8;
        words
            .iter()
            .enumerate()
            .filter(|(_, w)| u64::from_ne_bytes(**w) != 0)
            .flat_map(move |(i, w)| {
                w.iter()
                    .enumerate()
                    .filter(|(_, c)| **c != 0)
                    .map(move |(j, _)| start + i * 8 + j)
            })
            .chain(
                tail.iter()
                    .enumerate()
                    .filter(|(_, c)| **c != 0)
                    .map(move |(j, _)| tail_start + j),
            )
    }

    /// Every slot counted at least `min` times, with its count. Eight
    /// counts are tested at once: nearly every word of a heap has none.
    pub fn at_least(&self, min: u8) -> impl Iterator<Item = (usize, u8)> + '_ {
        let (words, tail) = self.counts.bytes().as_chunks::<8>();
        let tail_start = words.len() * 8;
        words
            .iter()
            .enumerate()
            .filter(move |(_, w)| w.iter().any(|&c| c >= min))
            .flat_map(move |(i, w)| {
                w.iter()
                    .enumerate()
                    .filter(move |(_, c)| **c >= min)
                    .map(move |(j, c)| (i * 8 + j, *c))
            })
            .chain(
                tail.iter()
                    .enumerate()
                    .filter(move |(_, c)| **c >= min)
                    .map(move |(j, c)| (tail_start + j, *c)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_triples_keep_their_three_bits_apart_and_extract_one() {
        let mut t = BitTriples::new(200);
        assert!(!t.test_and_set(1, 130));
        assert!(t.test_and_set(1, 130));
        assert!(!t.get(0, 130) && !t.get(2, 130));
        t.test_and_set(2, 7);
        t.test_and_set(2, 199);
        let bits = t.extract(2, 200);
        assert!(bits.get(7) && bits.get(199) && !bits.get(130));
        assert!(t.extract(1, 200).get(130));
    }

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
        let mut d = Counts::new(21);
        for slot in [0, 7, 9, 20] {
            d.add(slot);
        }
        assert_eq!(d.counted_in(0..21).collect::<Vec<_>>(), vec![0, 7, 9, 20]);
        assert_eq!(d.counted_in(8..20).collect::<Vec<_>>(), vec![9]);
    }
}
