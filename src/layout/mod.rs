//! CPython structure layouts as data.
//!
//! A [`Layout`] holds, under canonical names ([`spec`]), the size of each
//! structure pymortem reads and the offset and size of each field it needs,
//! plus the [`Facts`] DWARF cannot give. It comes from one of three sources,
//! tried in order and reported with the result:
//!
//! 1. DWARF of the module that defines the interpreter ([`from_dwarf`]),
//!    cached on disk per build-id ([`cache`]);
//! 2. `_Py_DebugOffsets` read from the core (3.13+, [`debug_offsets`]),
//!    completed from the table; for a version with no table, read with a
//!    known version's member positions and completed from the nearest
//!    older table, its unplaced members guessed ([`infer`]);
//! 3. the built-in tables generated from DWARF into `layouts/` ([`tables`]).
//!
//! Whatever differs between versions beyond the layout is decided here too,
//! in [`Facts`] and its [`VersionRules`]: the rest of the library asks what
//! a fact says, never which version it reads, so a new version is a table
//! plus facts.

pub mod asyncio_task;
pub mod cache;
pub mod debug_offsets;
pub mod facts;
pub mod infer;
pub mod offsets;
pub mod select;
pub mod spec;
pub mod tables;
pub mod tp_flags;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::interpreter::{PythonVersion, VersionInfo, VersionSource};
pub use facts::{Facts, ManagedDict, VersionRules};
pub use offsets::{Field, MissingField};
pub use select::{LayoutChoice, LayoutOptions, select};
pub use spec::Offsets;

use crate::dwarf::{self, DwarfError, Query};
use crate::elf::ElfImage;

/// One field under its canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldLayout {
    /// The C member path it was read from (`threads.head`).
    pub c_path: String,
    /// Byte offset from the start of the struct.
    pub offset: u64,
    /// Size in bytes (the storage unit, for bitfields).
    pub size: u64,
    /// Bitfields: bit offset from the start of the struct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_offset: Option<u64>,
    /// Bitfields: width in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_size: Option<u64>,
}

/// One structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructLayout {
    /// The C type name it was read from.
    pub c_name: String,
    /// `sizeof`.
    pub size: u64,
    /// Fields by canonical name; a field the version does not have is absent.
    pub fields: BTreeMap<String, FieldLayout>,
}

/// Where a layout came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LayoutSource {
    /// DWARF in this file.
    Dwarf {
        /// The file holding the DWARF.
        path: PathBuf,
        /// Build-id of the module, hex.
        build_id: Option<String>,
        /// Read from the on-disk cache rather than from DWARF.
        cached: bool,
        /// Why the cached entry for this build-id was not used (it failed
        /// validation against the core), when it was rebuilt because of that.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_rejected: Option<String>,
    },
    /// `_Py_DebugOffsets` in the core, completed from a table.
    DebugOffsets {
        /// Address of the table (`_PyRuntime`).
        address: u64,
        /// The table that supplied the rest.
        table: String,
        /// When pymortem knows neither the member positions nor the table of
        /// the core's version: how the members were placed, and which are
        /// guessed ([`infer`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inferred: Option<infer::Inference>,
    },
    /// A built-in table.
    Table {
        /// The table's version, `X.Y`.
        table: String,
        /// The micro version whose layout was used.
        micro: String,
        /// Whether the core's micro version is one the table was generated from.
        exact: bool,
    },
}

/// Layouts and facts for one interpreter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Where it came from.
    pub source: LayoutSource,
    /// Structures by canonical name.
    pub structs: BTreeMap<String, StructLayout>,
    /// Static variables found in DWARF, as `unit:name` or `name`, at link-time addresses.
    #[serde(default)]
    pub globals: BTreeMap<String, u64>,
    /// Facts DWARF cannot give.
    pub facts: Facts,
    /// Damage met while reading the source (skipped DWARF units, for instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// [`Layout::offsets`], made on first use (a layout is not changed once
    /// it is read).
    #[serde(skip)]
    pub(crate) typed: offsets::OffsetsCache,
}

impl Layout {
    /// Every field by name in the code, looked up once.
    pub fn offsets(&self) -> &Offsets {
        self.typed.get_or_init(|| Offsets::new(self))
    }
    /// A structure.
    pub fn get(&self, name: &str) -> Option<&StructLayout> {
        self.structs.get(name)
    }
    /// `sizeof` a structure.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.structs.get(name).map(|s| s.size)
    }
    /// A field.
    pub fn field(&self, struct_name: &str, field: &str) -> Option<&FieldLayout> {
        self.structs.get(struct_name)?.fields.get(field)
    }
    /// A field's offset.
    pub fn offset(&self, struct_name: &str, field: &str) -> Option<u64> {
        self.field(struct_name, field).map(|f| f.offset)
    }

    /// Runtime address of the static `name` of the C file `unit` (such as
    /// `gcmodule.c`) in `module`: by its symbol, else by the DWARF variable
    /// the layout recorded as `unit:name`.
    pub fn static_address(
        &self,
        module: &crate::modules::Module,
        unit: &str,
        name: &str,
    ) -> Option<u64> {
        module.symbol_address(name, Some(unit)).or_else(|| {
            let bias = module.load_bias?;
            self.globals
                .get(&format!("{unit}:{name}"))
                .map(|a| a.wrapping_add(bias))
        })
    }
}

/// Extract every structure in [`spec::STRUCTS`] from the DWARF in `image`.
///
/// `version` gives the facts; DWARF does not say which CPython it describes.
pub fn from_dwarf(
    image: &ElfImage,
    build_id: Option<String>,
    version: (u8, u8, Option<u8>),
) -> Result<Layout, DwarfError> {
    let query = Query {
        types: spec::STRUCTS
            .iter()
            .flat_map(|s| s.c_names.iter().map(|n| n.to_string()))
            .chain(
                spec::WHOLE_STRUCTS
                    .iter()
                    .flat_map(|(_, names)| names.iter().map(|n| n.to_string())),
            )
            .collect(),
        variables: spec::VARIABLES.iter().map(|(_, n)| n.to_string()).collect(),
        preferred_units: spec::PREFERRED_UNITS
            .iter()
            .map(|u| u.to_string())
            .collect(),
        required: spec::STRUCTS
            .iter()
            .filter(|s| spec::REQUIRED.contains(&s.name))
            .map(|s| s.c_names.iter().map(|n| n.to_string()).collect())
            .collect(),
    };
    let found = dwarf::query(image, &query)?;
    let mut structs = BTreeMap::new();
    for s in spec::STRUCTS {
        let Some(ty) = s.c_names.iter().find_map(|n| found.types.get(*n)) else {
            continue;
        };
        let mut fields = BTreeMap::new();
        for (canonical, paths) in s.fields {
            if let Some((path, f)) = paths.iter().find_map(|p| ty.fields.get(*p).map(|f| (p, f))) {
                fields.insert(
                    canonical.to_string(),
                    FieldLayout {
                        c_path: path.to_string(),
                        offset: f.offset,
                        size: f.size,
                        bit_offset: f.bit_offset,
                        bit_size: f.bit_size,
                    },
                );
            }
        }
        structs.insert(
            s.name.to_string(),
            StructLayout {
                c_name: ty.name.clone(),
                size: ty.size,
                fields,
            },
        );
    }
    for (name, c_names) in spec::WHOLE_STRUCTS {
        let Some(ty) = c_names.iter().find_map(|n| found.types.get(*n)) else {
            continue;
        };
        // Top-level members only: nested ones are dotted paths.
        let fields = ty
            .fields
            .iter()
            .filter(|(path, _)| !path.contains('.'))
            .map(|(path, f)| {
                let field = FieldLayout {
                    c_path: path.clone(),
                    offset: f.offset,
                    size: f.size,
                    bit_offset: f.bit_offset,
                    bit_size: f.bit_size,
                };
                (path.clone(), field)
            })
            .collect();
        structs.insert(
            name.to_string(),
            StructLayout {
                c_name: ty.name.clone(),
                size: ty.size,
                fields,
            },
        );
    }
    let mut globals = BTreeMap::new();
    for (unit, name) in spec::VARIABLES {
        for var in found.variables.iter().filter(|v| v.name == *name) {
            let var_unit = var.unit.rsplit('/').next().unwrap_or(&var.unit);
            if unit.is_empty() {
                globals.insert(name.to_string(), var.address);
            } else if var_unit == *unit {
                globals.insert(format!("{unit}:{name}"), var.address);
            }
        }
    }
    Ok(Layout {
        source: LayoutSource::Dwarf {
            path: image.path().to_path_buf(),
            build_id,
            cached: false,
            cache_rejected: None,
        },
        structs,
        globals,
        facts: Facts::for_version(version.0, version.1, version.2),
        warnings: found.errors,
        typed: Default::default(),
    })
}
