//! The built-in layout tables in `layouts/`, one TOML file per minor version,
//! generated from DWARF by `pymortem layout --emit` and compiled in.
//!
//! A table holds the layout of its newest micro version; where another micro
//! version it was generated from differs, `[micro."X.Y.Z"]` holds the
//! structures that differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::facts::VersionRules;
use super::{Facts, Layout, LayoutSource, StructLayout};
use crate::arch::ArchId;

/// The module a table was generated from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSource {
    /// File name of the module that held the DWARF.
    pub module: String,
    /// Its build-id.
    pub build_id: Option<String>,
}

/// What differs for one micro version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MicroOverride {
    /// Structures that differ from the base (whole structures).
    #[serde(default)]
    pub structs: BTreeMap<String, StructLayout>,
    /// Structures the micro version does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Facts, where they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

/// One `layouts/cpython-X.Y.toml` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// `X.Y`.
    pub version: String,
    /// The micro version the base layout is from.
    pub base: String,
    /// Every micro version the table was generated from.
    pub sources: BTreeMap<String, TableSource>,
    /// Facts of the base micro version.
    pub facts: Facts,
    /// The base layout.
    pub structs: BTreeMap<String, StructLayout>,
    /// Differences for other micro versions.
    #[serde(default)]
    pub micro: BTreeMap<String, MicroOverride>,
}

impl TableFile {
    /// The layout for `micro` (`X.Y.Z`): its override applied, or the base.
    pub fn layout_for(&self, micro: &str) -> Layout {
        let exact = self.sources.contains_key(micro);
        let mut structs = self.structs.clone();
        let mut facts = self.facts.clone();
        let used = if exact { micro } else { self.base.as_str() };
        if let Some(o) = self.micro.get(used) {
            for name in &o.removed {
                structs.remove(name);
            }
            structs.extend(o.structs.clone());
            if let Some(f) = &o.facts {
                facts = f.clone();
            }
        }
        // A table stores the measured facts only; the rules follow from its version.
        if let Some((major, minor)) = self.major_minor() {
            facts.rules = VersionRules::for_version(major, minor);
        }
        Layout {
            source: LayoutSource::Table {
                table: self.version.clone(),
                micro: used.to_string(),
                exact,
            },
            structs,
            globals: BTreeMap::new(),
            facts,
            warnings: Vec::new(),
            typed: Default::default(),
        }
    }

    /// The table's `X.Y` as numbers.
    fn major_minor(&self) -> Option<(u8, u8)> {
        let (major, minor) = self.version.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// Build a table from layouts of several micro versions of one minor version.
    pub fn from_layouts(
        version: &str,
        layouts: &BTreeMap<String, (Layout, TableSource)>,
    ) -> Option<TableFile> {
        // The newest micro version is the base.
        let (base, (base_layout, _)) = layouts.iter().max_by_key(|(micro, _)| micro_key(micro))?;
        let mut micro = BTreeMap::new();
        for (name, (layout, _)) in layouts {
            if name == base {
                continue;
            }
            let structs: BTreeMap<String, StructLayout> = layout
                .structs
                .iter()
                .filter(|(k, v)| base_layout.structs.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let removed: Vec<String> = base_layout
                .structs
                .keys()
                .filter(|k| !layout.structs.contains_key(*k))
                .cloned()
                .collect();
            let facts = (layout.facts != base_layout.facts).then(|| layout.facts.clone());
            if !structs.is_empty() || !removed.is_empty() || facts.is_some() {
                micro.insert(
                    name.clone(),
                    MicroOverride {
                        structs,
                        removed,
                        facts,
                    },
                );
            }
        }
        Some(TableFile {
            version: version.to_string(),
            base: base.clone(),
            sources: layouts
                .iter()
                .map(|(k, (_, s))| (k.clone(), s.clone()))
                .collect(),
            facts: base_layout.facts.clone(),
            structs: base_layout.structs.clone(),
            micro,
        })
    }

    /// The TOML text, with a header saying how it was made.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# CPython {} structure layouts for pymortem.\n\
             # Generated from DWARF by `pymortem layout --emit`; do not edit by hand.\n\
             # Regenerate with sample-cores/emit_layouts.py.\n\n{body}",
            self.version
        )
    }
}

fn micro_key(version: &str) -> Vec<u32> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

macro_rules! tables {
    ($name:ident, $dir:literal, $($v:literal),* $(,)?) => {
        /// `(X.Y, TOML text)` of every built-in table of one architecture.
        pub const $name: &[(&str, &str)] = &[$(($v, include_str!(concat!("../../layouts/", $dir, "cpython-", $v, ".toml")))),*];
    };
}

tables![
    TABLES, "", "2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"
];

// AArch64 has its own tables where glibc's types differ in size
// (`pthread_mutex_t` is 48 bytes, not 40): the versions the sample cores
// cover. Other versions need DWARF or `_Py_DebugOffsets` there.
tables![TABLES_AARCH64, "aarch64/", "3.11", "3.13", "3.14", "3.15"];

/// The built-in tables of `arch`.
pub fn tables_for(arch: ArchId) -> &'static [(&'static str, &'static str)] {
    match arch {
        ArchId::Aarch64 => TABLES_AARCH64,
        _ => TABLES,
    }
}

/// The parsed built-in x86-64 table for `X.Y`.
pub fn builtin(major: u8, minor: u8) -> Option<&'static TableFile> {
    builtin_for(ArchId::X86_64, major, minor)
}

/// The parsed built-in table of `arch` for `X.Y`, parsed once per process.
pub fn builtin_for(arch: ArchId, major: u8, minor: u8) -> Option<&'static TableFile> {
    type Parsed = std::sync::OnceLock<Vec<std::sync::OnceLock<Option<TableFile>>>>;
    static X86_64: Parsed = std::sync::OnceLock::new();
    static AARCH64: Parsed = std::sync::OnceLock::new();
    let (tables, parsed) = match arch {
        ArchId::Aarch64 => (TABLES_AARCH64, &AARCH64),
        _ => (TABLES, &X86_64),
    };
    let key = format!("{major}.{minor}");
    let index = tables.iter().position(|(v, _)| *v == key)?;
    let cells = parsed.get_or_init(|| tables.iter().map(|_| std::sync::OnceLock::new()).collect());
    cells[index]
        .get_or_init(|| toml::from_str(tables[index].1).ok())
        .as_ref()
}
