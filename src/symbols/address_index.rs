//! Which symbol contains an address, from an index of the ELF tables'
//! addresses alone: names are read only for the few candidates of a lookup.
//! Building it costs about two scans of the tables, while a [`SymbolTable`]
//! (names, files, aliases) costs many more; a stack's dozens of lookups
//! would cost one scan each without it.
//!
//! [`SymbolTable`]: super::SymbolTable

use object::read::elf::ElfFile64;
use object::{Object, ObjectSymbol, ObjectSymbolTable, SymbolIndex, SymbolKind};

use crate::elf::ElfImage;

use super::{MAX_SYMBOLS, alias_rank, is_mapping_symbol};

/// One symbol with an address: where it is, not what it is called.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u64,
    /// `start + size`, saturating: a symbol of size 0 contains only its start.
    end: u64,
    image: u16,
    dynamic: bool,
    index: u32,
}

impl Entry {
    fn contains(&self, address: u64) -> bool {
        address == self.start || (address > self.start && address < self.end)
    }
}

/// The defined, named-kind symbols of a module's images, by start address.
#[derive(Debug, Default)]
pub struct SymbolAddressIndex {
    entries: Vec<Entry>,
    /// `reach[i]`: the largest `end` of `entries[..=i]`, so that a lookup
    /// knows when no earlier symbol can contain its address.
    reach: Vec<u64>,
}

impl SymbolAddressIndex {
    /// The index of `.symtab` and `.dynsym` of each of `images`, which
    /// [`SymbolAddressIndex::lookup`] must be given again in the same order.
    pub fn build(images: &[&ElfImage]) -> SymbolAddressIndex {
        let mut entries = Vec::new();
        for (image, elf) in images
            .iter()
            .take(usize::from(u16::MAX))
            .enumerate()
            .filter_map(|(i, image)| Some((i as u16, image.parse()?)))
        {
            let tables = [
                (elf.symbol_table(), false),
                (elf.dynamic_symbol_table(), true),
            ];
            for (table, dynamic) in tables.into_iter().filter_map(|(t, d)| Some((t?, d))) {
                for sym in table.symbols().take(MAX_SYMBOLS) {
                    if !has_address(&sym) {
                        continue;
                    }
                    let Ok(index) = u32::try_from(sym.index().0) else {
                        continue;
                    };
                    let start = sym.address();
                    entries.push(Entry {
                        start,
                        end: start.saturating_add(sym.size()),
                        image,
                        dynamic,
                        index,
                    });
                }
            }
        }
        entries.sort_unstable_by_key(|e| e.start);
        let reach = entries
            .iter()
            .scan(0u64, |reach, e| {
                *reach = (*reach).max(e.end);
                Some(*reach)
            })
            .collect();
        SymbolAddressIndex { entries, reach }
    }

    /// The symbol containing the link-time `address`: the closest start, at
    /// one start the smallest symbol, then the `.dynsym` one (the public
    /// name: `raise`, not `__GI_raise`), then the plainest alias. Returns
    /// the name and start.
    pub fn lookup(&self, images: &[&ElfImage], address: u64) -> Option<(String, u64)> {
        /// A containing symbol, ordered so that the better one is greater.
        type Rank = (
            std::cmp::Reverse<u64>,
            bool,
            std::cmp::Reverse<(usize, usize)>,
            std::cmp::Reverse<(u16, u32)>,
        );
        let mut parsed: Vec<Option<ElfFile64<'_>>> = Vec::new();
        let mut best: Option<(u64, Rank, String)> = None;
        let mut i = self.entries.partition_point(|e| e.start <= address);
        while i > 0 {
            i -= 1;
            let e = self.entries[i];
            match &best {
                // Only the same start can still be better.
                Some((start, ..)) if e.start != *start => break,
                None if e.start < address && self.reach[i] <= address => break,
                _ => {}
            }
            if !e.contains(address) {
                continue;
            }
            let Some(name) = name_of(images, &mut parsed, e) else {
                continue;
            };
            if name.is_empty() || is_mapping_symbol(&name) {
                continue;
            }
            let rank: Rank = (
                std::cmp::Reverse(e.end - e.start),
                e.dynamic,
                std::cmp::Reverse(alias_rank(&name)),
                // Equal in all else (compilers' anonymous constants): the
                // first in the tables, so that the choice is stable.
                std::cmp::Reverse((e.image, e.index)),
            );
            if best.as_ref().is_none_or(|(_, b, _)| rank > *b) {
                best = Some((e.start, rank, name));
            }
        }
        best.map(|(start, _, name)| (name, start))
    }
}

/// Whether `sym` names a place in the image: defined, in a section, and
/// neither a file, a section nor a thread-local variable (whose value is an
/// offset in each thread's TLS block, not an address).
fn has_address<'d>(sym: &impl ObjectSymbol<'d>) -> bool {
    !sym.is_undefined()
        && sym.section_index().is_some()
        && !matches!(
            sym.kind(),
            SymbolKind::File | SymbolKind::Section | SymbolKind::Label | SymbolKind::Tls
        )
}

/// The name of `e`, parsing its image once per lookup.
fn name_of<'i>(
    images: &[&'i ElfImage],
    parsed: &mut Vec<Option<ElfFile64<'i>>>,
    e: Entry,
) -> Option<String> {
    let image = usize::from(e.image);
    if parsed.len() <= image {
        parsed.resize_with(image + 1, || None);
    }
    if parsed[image].is_none() {
        parsed[image] = images.get(image)?.parse();
    }
    let elf = parsed[image].as_ref()?;
    let table = if e.dynamic {
        elf.dynamic_symbol_table()?
    } else {
        elf.symbol_table()?
    };
    let sym = table.symbol_by_index(SymbolIndex(e.index as usize)).ok()?;
    sym.name().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The choice [`SymbolAddressIndex::lookup`] makes, by scanning every
    /// symbol of every table.
    fn scanned(images: &[&ElfImage], address: u64) -> Option<(String, u64)> {
        type Rank = (
            u64,
            std::cmp::Reverse<u64>,
            bool,
            std::cmp::Reverse<(usize, usize)>,
            std::cmp::Reverse<(usize, usize)>,
        );
        let mut best: Option<(Rank, String)> = None;
        for (image_number, image) in images.iter().enumerate() {
            let elf = image.parse().unwrap();
            let tables = [
                (elf.symbol_table(), false),
                (elf.dynamic_symbol_table(), true),
            ];
            for (table, dynamic) in tables.into_iter().filter_map(|(t, d)| Some((t?, d))) {
                for sym in table.symbols() {
                    let (start, size) = (sym.address(), sym.size());
                    let contains = address == start || (address > start && address - start < size);
                    let name = sym.name().unwrap_or("");
                    if !contains || !has_address(&sym) || name.is_empty() || is_mapping_symbol(name)
                    {
                        continue;
                    }
                    let rank: Rank = (
                        start,
                        std::cmp::Reverse(size),
                        dynamic,
                        std::cmp::Reverse(alias_rank(name)),
                        std::cmp::Reverse((image_number, sym.index().0)),
                    );
                    if best.as_ref().is_none_or(|(b, _)| rank > *b) {
                        best = Some((rank, name.to_string()));
                    }
                }
            }
        }
        best.map(|(rank, name)| (name, rank.0))
    }

    #[test]
    fn lookups_choose_what_a_scan_of_every_symbol_chooses() {
        let exe = std::env::current_exe().unwrap();
        let image = ElfImage::open(&exe).unwrap();
        let images = [&image];
        let index = SymbolAddressIndex::build(&images);
        assert!(
            index.entries.len() > 1000,
            "{} symbols",
            index.entries.len()
        );
        let (low, high) = (index.entries[0].start, index.reach[index.reach.len() - 1]);
        // Symbol starts, one byte either side, and addresses in between.
        let mut addresses: Vec<u64> = index
            .entries
            .iter()
            .step_by(97)
            .flat_map(|e| [e.start.saturating_sub(1), e.start, e.start + 1, e.end])
            .collect();
        addresses.extend((0..400).map(|i| low + (high - low) / 400 * i + 3));
        addresses.extend([0, low.saturating_sub(1), high, high + 4096, u64::MAX]);
        let mut found = 0;
        for address in addresses {
            let expected = scanned(&images, address);
            found += usize::from(expected.is_some());
            assert_eq!(index.lookup(&images, address), expected, "{address:#x}");
        }
        assert!(found > 100, "only {found} addresses fell in a symbol");
    }
}
