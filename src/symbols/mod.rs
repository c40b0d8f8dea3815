//! ELF symbol tables with sized lookups and file-scoped local symbols.
//!
//! An address past a symbol's size is not in that symbol: stripped libraries
//! otherwise give confidently wrong names. Local symbols remember the source
//! file (`STT_FILE`) they follow, so statics with the same name in different
//! files (the `free_list` of tupleobject.c and of floatobject.c) stay apart.

use std::sync::{Arc, OnceLock};

use object::{Object, ObjectSymbol, ObjectSymbolTable, SymbolKind};
use serde::Serialize;

use crate::elf::ElfImage;

mod address_index;
pub use address_index::SymbolAddressIndex;

/// Which table a symbol came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SymbolSource {
    /// `.symtab` (the binary's or its debug file's).
    Symtab,
    /// `.dynsym`.
    Dynsym,
}

/// What a symbol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SymbolType {
    /// Code.
    Function,
    /// Data.
    Object,
    /// Anything else with an address.
    Other,
}

/// One symbol, at its link-time address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The symbol's name.
    pub name: String,
    /// Link-time address (add the module's load bias for the runtime address).
    pub address: u64,
    /// Size in bytes; 0 when the table does not say.
    pub size: u64,
    /// Function, object or other.
    pub kind: SymbolType,
    /// True for `STB_LOCAL`.
    pub local: bool,
    /// Source file of a local symbol, from the preceding `STT_FILE`.
    pub file: Option<Arc<str>>,
    /// The table it came from.
    pub source: SymbolSource,
}

impl Symbol {
    /// Whether `address` (link-time) lies within this symbol.
    pub fn contains(&self, address: u64) -> bool {
        address == self.address || (address > self.address && address - self.address < self.size)
    }
}

/// The symbols of one module, sorted by address and indexed by name.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
    // Indices into `symbols`, sorted by name: a binary-searched name index
    // costs one allocation where a hash map costs one per symbol.
    by_name: OnceLock<Vec<u32>>,
    largest_size: u64,
}

/// Symbols beyond this count per table are ignored.
const MAX_SYMBOLS: usize = 4_000_000;

impl SymbolTable {
    /// Build from the `.symtab` and `.dynsym` of each image (a binary and its debug file).
    pub fn from_images(images: &[&ElfImage]) -> SymbolTable {
        let mut symbols = Vec::new();
        for image in images {
            let Some(file) = image.parse() else { continue };
            if let Some(symtab) = file.symbol_table() {
                collect(symtab.symbols(), SymbolSource::Symtab, &mut symbols);
            }
            if let Some(dynsym) = file.dynamic_symbol_table() {
                collect(dynsym.symbols(), SymbolSource::Dynsym, &mut symbols);
            }
        }
        SymbolTable::from_symbols(symbols)
    }

    /// Build from a list of symbols; duplicates (same address and name) are
    /// dropped, keeping the first, so `.symtab` wins over `.dynsym`.
    pub fn from_symbols(mut symbols: Vec<Symbol>) -> SymbolTable {
        // One sort without comparing names (address lookups are what stacks
        // need): largest first at one address, `.symtab` before `.dynsym`.
        // Lookups take the last of equal entries: `.dynsym`, then the
        // plainest alias (`clone3` over `__GI___clone3`).
        symbols.sort_unstable_by_key(|s| {
            (
                s.address,
                std::cmp::Reverse(s.size),
                s.source as u8,
                std::cmp::Reverse(alias_rank(&s.name)),
            )
        });
        // Duplicates share an address: look for them only in that small group.
        let mut kept: Vec<Symbol> = Vec::with_capacity(symbols.len());
        let mut group_start = 0;
        for symbol in symbols {
            if kept
                .get(group_start)
                .is_none_or(|g| g.address != symbol.address)
            {
                group_start = kept.len();
            }
            if !kept[group_start..].iter().any(|k| k.name == symbol.name) {
                kept.push(symbol);
            }
        }
        let largest_size = kept.iter().map(|s| s.size).max().unwrap_or(0);
        SymbolTable {
            symbols: kept,
            by_name: OnceLock::new(),
            largest_size,
        }
    }

    /// Indices sorted by name, built on the first lookup by name.
    fn by_name(&self) -> &[u32] {
        self.by_name.get_or_init(|| {
            let mut by_name: Vec<u32> = (0..self.symbols.len() as u32).collect();
            by_name.sort_by(|&a, &b| {
                self.symbols[a as usize]
                    .name
                    .cmp(&self.symbols[b as usize].name)
            });
            by_name
        })
    }

    fn named(&self, name: &str) -> impl Iterator<Item = &Symbol> {
        let by_name = self.by_name();
        let start = by_name.partition_point(|&i| self.symbols[i as usize].name.as_str() < name);
        by_name[start..]
            .iter()
            .map(|&i| &self.symbols[i as usize])
            .take_while(move |s| s.name == name)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The symbol that contains the link-time `address`, honouring sizes.
    ///
    /// Of overlapping symbols the one starting closest wins.
    pub fn lookup(&self, address: u64) -> Option<&Symbol> {
        let after = self.symbols.partition_point(|s| s.address <= address);
        self.symbols[..after]
            .iter()
            .rev()
            .take_while(|s| address - s.address <= self.largest_size)
            .take(64)
            .find(|s| s.contains(address))
    }

    /// A symbol by name. With `file`, only a local of that source file (matched
    /// by file name, with or without directories) is returned; without it,
    /// global symbols are preferred over locals.
    pub fn find(&self, name: &str, file: Option<&str>) -> Option<&Symbol> {
        let mut candidates = self.named(name);
        match file {
            Some(wanted) => {
                let wanted = basename(wanted);
                candidates.find(|s| s.file.as_deref().is_some_and(|f| basename(f) == wanted))
            }
            None => {
                let first = self.named(name).next()?;
                candidates.find(|s| !s.local).or(Some(first))
            }
        }
    }

    /// Like [`find`](Self::find), but also accepts the names GCC gives statics
    /// under link-time optimisation (`tupledealloc.lto_priv.0`), since
    /// distribution builds such as Debian's are LTO builds.
    pub fn find_static(&self, name: &str, file: Option<&str>) -> Option<&Symbol> {
        self.find(name, file)
            .or_else(|| (0..4).find_map(|n| self.find(&format!("{name}.lto_priv.{n}"), file)))
    }

    /// Every symbol with this name.
    pub fn find_all(&self, name: &str) -> impl Iterator<Item = &Symbol> {
        self.named(name)
    }
}

/// Find one symbol by name straight from the ELF tables, without building a
/// [`SymbolTable`]: cheap when only a few well-known names are needed. With
/// `file`, only a local of that source file matches.
pub fn find_in_images(images: &[&ElfImage], name: &str, file: Option<&str>) -> Option<(u64, u64)> {
    let wanted_file = file.map(basename);
    for image in images {
        let Some(elf) = image.parse() else { continue };
        let tables = [elf.dynamic_symbol_table(), elf.symbol_table()];
        for table in tables.into_iter().flatten() {
            let mut current_file: Option<&str> = None;
            for sym in table.symbols().take(MAX_SYMBOLS) {
                // Bytes compared as they are: decoding every name of a
                // table of thousands to compare one was most of the cost.
                let Ok(sym_name) = sym.name_bytes() else {
                    continue;
                };
                if sym.kind() == SymbolKind::File {
                    current_file = std::str::from_utf8(sym_name).ok();
                    continue;
                }
                if sym_name != name.as_bytes() || sym.is_undefined() {
                    continue;
                }
                let file_ok = match wanted_file {
                    None => true,
                    Some(w) => sym.is_local() && current_file.is_some_and(|f| basename(f) == w),
                };
                if file_ok {
                    return Some((sym.address(), sym.size()));
                }
            }
        }
    }
    None
}

fn collect<'d, S: ObjectSymbol<'d>>(
    symbols: impl Iterator<Item = S>,
    source: SymbolSource,
    out: &mut Vec<Symbol>,
) {
    let mut current_file: Option<Arc<str>> = None;
    for sym in symbols.take(MAX_SYMBOLS) {
        let Ok(name) = sym.name() else { continue };
        if sym.kind() == SymbolKind::File {
            current_file = (!name.is_empty()).then(|| Arc::from(name));
            continue;
        }
        if name.is_empty() || sym.is_undefined() || sym.section_index().is_none() {
            continue;
        }
        if sym.kind() == SymbolKind::Unknown && is_mapping_symbol(name) {
            continue;
        }
        let kind = match sym.kind() {
            SymbolKind::Text => SymbolType::Function,
            SymbolKind::Data | SymbolKind::Tls => SymbolType::Object,
            SymbolKind::Section | SymbolKind::Label => continue,
            _ => SymbolType::Other,
        };
        let local = sym.is_local();
        out.push(Symbol {
            name: name.to_string(),
            address: sym.address(),
            size: sym.size(),
            kind,
            local,
            file: if local { current_file.clone() } else { None },
            source,
        });
    }
}

/// How plain an alias is, smaller being plainer: leading underscores, then length.
fn alias_rank(name: &str) -> (usize, usize) {
    (name.len() - name.trim_start_matches('_').len(), name.len())
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Arm's mapping symbols (`$x`, `$d`, `$x.42`) mark where code and data
/// start inside a section; they name no function.
fn is_mapping_symbol(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next() == Some('$')
        && matches!(chars.next(), Some('x' | 'd' | 'a' | 't'))
        && matches!(chars.next(), None | Some('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, address: u64, size: u64) -> Symbol {
        Symbol {
            name: name.into(),
            address,
            size,
            kind: SymbolType::Function,
            local: false,
            file: None,
            source: SymbolSource::Symtab,
        }
    }

    fn table(symbols: Vec<Symbol>) -> SymbolTable {
        SymbolTable::from_symbols(symbols)
    }

    #[test]
    fn address_past_size_is_not_in_symbol() {
        let t = table(vec![sym("a", 0x1000, 0x10), sym("b", 0x2000, 0x100)]);
        assert_eq!(t.lookup(0x100f).unwrap().name, "a");
        assert!(t.lookup(0x1010).is_none());
        assert_eq!(t.lookup(0x20ff).unwrap().name, "b");
        assert!(t.lookup(0x0fff).is_none());
    }

    #[test]
    fn locals_are_scoped_to_their_file() {
        let mut tuple = sym("free_list", 0x5000, 160);
        tuple.local = true;
        tuple.file = Some(Arc::from("tupleobject.c"));
        let mut float = sym("free_list", 0x6000, 8);
        float.local = true;
        float.file = Some(Arc::from("floatobject.c"));
        let t = table(vec![tuple, float]);
        assert_eq!(
            t.find("free_list", Some("tupleobject.c")).unwrap().address,
            0x5000
        );
        assert_eq!(
            t.find("free_list", Some("Objects/floatobject.c"))
                .unwrap()
                .address,
            0x6000
        );
        assert_eq!(t.find("free_list", Some("listobject.c")), None);
    }
}
