//! ELF symbol tables with sized lookups and file-scoped local symbols.
//!
//! An address past a symbol's size is not in that symbol: stripped libraries
//! otherwise give confidently wrong names. Local symbols remember the source
//! file (`STT_FILE`) they follow, so statics with the same name in different
//! files (the `free_list` of tupleobject.c and of floatobject.c) stay apart.

use std::collections::HashMap;

use object::{Object, ObjectSymbol, ObjectSymbolTable, SymbolKind};
use serde::Serialize;

use crate::modules::ElfImage;

/// Which table a symbol came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolSource {
    /// `.symtab` (the binary's or its debug file's).
    Symtab,
    /// `.dynsym`.
    Dynsym,
}

/// What a symbol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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
    pub file: Option<String>,
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
    by_name: HashMap<String, Vec<u32>>,
    largest_size: u64,
}

/// Symbols beyond this count per table are ignored.
const MAX_SYMBOLS: usize = 4_000_000;

impl SymbolTable {
    /// Build from the `.symtab` and `.dynsym` of each image (a binary and its debug file).
    pub fn from_images(images: &[&ElfImage]) -> SymbolTable {
        let mut table = SymbolTable::default();
        let mut seen: HashMap<(u64, String), ()> = HashMap::new();
        for image in images {
            let Some(file) = image.parse() else { continue };
            if let Some(symtab) = file.symbol_table() {
                table.add(symtab.symbols(), SymbolSource::Symtab, &mut seen);
            }
            if let Some(dynsym) = file.dynamic_symbol_table() {
                table.add(dynsym.symbols(), SymbolSource::Dynsym, &mut seen);
            }
        }
        table
            .symbols
            .sort_by(|a, b| a.address.cmp(&b.address).then(b.size.cmp(&a.size)));
        for (i, sym) in table.symbols.iter().enumerate() {
            table
                .by_name
                .entry(sym.name.clone())
                .or_default()
                .push(i as u32);
            table.largest_size = table.largest_size.max(sym.size);
        }
        table
    }

    fn add<'d, S: ObjectSymbol<'d>>(
        &mut self,
        symbols: impl Iterator<Item = S>,
        source: SymbolSource,
        seen: &mut HashMap<(u64, String), ()>,
    ) {
        let mut current_file: Option<String> = None;
        for sym in symbols.take(MAX_SYMBOLS) {
            let Ok(name) = sym.name() else { continue };
            if sym.kind() == SymbolKind::File {
                current_file = (!name.is_empty()).then(|| name.to_string());
                continue;
            }
            if name.is_empty() || sym.is_undefined() || sym.section_index().is_none() {
                continue;
            }
            let kind = match sym.kind() {
                SymbolKind::Text => SymbolType::Function,
                SymbolKind::Data | SymbolKind::Tls => SymbolType::Object,
                SymbolKind::Section | SymbolKind::Label => continue,
                _ => SymbolType::Other,
            };
            let local = sym.is_local();
            if seen.insert((sym.address(), name.to_string()), ()).is_some() {
                continue;
            }
            self.symbols.push(Symbol {
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
        let candidates = self
            .by_name
            .get(name)?
            .iter()
            .map(|&i| &self.symbols[i as usize]);
        match file {
            Some(wanted) => {
                let wanted = basename(wanted);
                candidates
                    .into_iter()
                    .find(|s| s.file.as_deref().is_some_and(|f| basename(f) == wanted))
            }
            None => {
                let all: Vec<&Symbol> = candidates.collect();
                all.iter()
                    .find(|s| !s.local)
                    .or_else(|| all.first())
                    .copied()
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
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.symbols[i as usize])
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
        let mut t = SymbolTable {
            symbols,
            ..Default::default()
        };
        t.symbols.sort_by_key(|s| s.address);
        for (i, s) in t.symbols.iter().enumerate() {
            t.by_name.entry(s.name.clone()).or_default().push(i as u32);
            t.largest_size = t.largest_size.max(s.size);
        }
        t
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
        tuple.file = Some("tupleobject.c".into());
        let mut float = sym("free_list", 0x6000, 8);
        float.local = true;
        float.file = Some("floatobject.c".into());
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
