//! Struct layouts and static variables from DWARF, read with gimli.
//!
//! This layer knows C, not CPython: callers name the types and variables they
//! want. Units are scanned top-level DIE by top-level DIE, preferred units
//! first, and the scan stops once everything asked for is found, so only a
//! fraction of a large library's DWARF is decoded. Declaration stubs are
//! skipped, typedefs and cv-qualifiers are followed, anonymous members are
//! flattened, nested structs are flattened with dotted paths, and bitfields
//! keep their bit position.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};
use serde::{Deserialize, Serialize};

use crate::elf::ElfImage;

mod call_site;
mod dies;
mod lines;
mod tail_calls;

pub use call_site::{CallValue, call_site_values, call_site_values_at};
pub use lines::{SourceFrame, SourceLines};
pub use tail_calls::{CallSite, CallTarget};

type Slice<'a> = EndianSlice<'a, LittleEndian>;
type Unit<'a> = gimli::Unit<Slice<'a>>;
type Dwarf<'a> = gimli::Dwarf<Slice<'a>>;

/// Nested struct members are flattened this many levels deep.
const MAX_NEST_DEPTH: usize = 4;
/// Fields recorded per struct, at most.
const MAX_FIELDS: usize = 20_000;
/// Typedef/qualifier chains longer than this are treated as broken.
const MAX_TYPE_CHAIN: usize = 32;
/// Children read per struct, at most.
const MAX_MEMBERS: usize = 4_096;
/// Units parsed per file, at most (dwz's supplementary files hold tens of
/// thousands of partial units; each parsed one takes a few hundred bytes).
const MAX_UNITS: usize = 500_000;

/// The image's path for messages; an error when it has no DWARF.
fn dwarf_path(image: &ElfImage) -> Result<String, DwarfError> {
    let path = image.path().display().to_string();
    if image.has_dwarf() {
        Ok(path)
    } else {
        Err(DwarfError::NoDwarf(path))
    }
}

/// Turns gimli's errors into ours, naming the file.
fn bad_dwarf(path: &str) -> impl Fn(gimli::Error) -> DwarfError + Copy + '_ {
    move |e| DwarfError::Bad {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

/// Decompressed DWARF sections by name.
type Sections<'i> = HashMap<&'static str, Cow<'i, [u8]>>;

/// The sections of an image and of the supplementary file attached to it
/// ([`ElfImage::with_supplementary`]), whose DWARF the image's refers to.
struct Loaded<'i> {
    main: Sections<'i>,
    sup: Option<Sections<'i>>,
    /// Why the supplementary file's sections could not be loaded: readers
    /// of what the image holds itself (lines, call sites) go on without
    /// them, a lookup that needs the whole DWARF fails.
    sup_error: Option<DwarfError>,
}

/// The sections every lookup needs, plus `extra`, of the image and of its
/// supplementary file; the others stay compressed. A section present but
/// unusable (damaged, or declaring an implausible size) fails the load:
/// reading on without it would find nothing and look like DWARF without
/// the types asked for, instead of a reason to fall back. Together, both
/// files' decompress to at most
/// [`MAX_SECTIONS_TOTAL`](crate::elf::section_data::MAX_SECTIONS_TOTAL).
fn load_sections<'i>(
    image: &'i ElfImage,
    extra: &[&'static str],
) -> Result<Loaded<'i>, DwarfError> {
    let mut remaining = crate::elf::section_data::MAX_SECTIONS_TOTAL;
    let main = sections_of(image, extra, &mut remaining)?;
    let (sup, sup_error) = match image.supplementary() {
        Some(sup) => match sections_of(sup, extra, &mut remaining) {
            Ok(sections) => (Some(sections), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    Ok(Loaded {
        main,
        sup,
        sup_error,
    })
}

/// The sections of one file, taken out of `remaining`.
fn sections_of<'i>(
    image: &'i ElfImage,
    extra: &[&'static str],
    remaining: &mut u64,
) -> Result<Sections<'i>, DwarfError> {
    [
        ".debug_info",
        ".debug_abbrev",
        ".debug_str",
        ".debug_str_offsets",
        ".debug_line_str",
        ".debug_line",
        ".debug_addr",
    ]
    .iter()
    .chain(extra)
    .filter_map(|&name| match image.section_data_within(name, remaining) {
        Ok(data) => Ok(Some((name, data?))).transpose(),
        Err(e) => Some(Err(DwarfError::Bad {
            path: image.path().display().to_string(),
            reason: e.to_string(),
        })),
    })
    .collect()
}

/// gimli's sections over loaded ones, the supplementary file's beside.
struct Borrowed<'s> {
    main: gimli::DwarfSections<&'s [u8]>,
    sup: Option<gimli::DwarfSections<&'s [u8]>>,
}

impl Borrowed<'_> {
    /// The DWARF, with [`gimli::Dwarf::sup`] set when there is a
    /// supplementary file: `DW_FORM_GNU_strp_alt`/`DW_FORM_strp_sup`
    /// strings resolve through it, and references
    /// (`DW_FORM_GNU_ref_alt`/`DW_FORM_ref_sup4/8`) lead into it.
    fn dwarf(&self) -> Dwarf<'_> {
        let mut dwarf = view(&self.main);
        if let Some(sup) = &self.sup {
            dwarf.set_sup(view(sup));
        }
        dwarf
    }
}

/// gimli's view of one file's sections.
fn view<'s>(sections: &gimli::DwarfSections<&'s [u8]>) -> Dwarf<'s> {
    let mut dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    // dwz's units share abbreviation tables: each is parsed once.
    dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
    dwarf
}

fn borrow_sections<'s>(loaded: &'s Loaded<'_>) -> Borrowed<'s> {
    let borrow = |sections: &'s Sections<'_>| {
        gimli::DwarfSections::<&[u8]>::load(|id| {
            Ok::<_, std::convert::Infallible>(sections.get(id.name()).map_or(&[][..], |c| &c[..]))
        })
        .unwrap_or_else(|never| match never {})
    };
    Borrowed {
        main: borrow(&loaded.main),
        sup: loaded.sup.as_ref().map(borrow),
    }
}

/// An error when `image`'s DWARF refers to a supplementary file that is
/// not attached: read alone it lacks types, names and strings, and a
/// lookup that needs them all (a layout) must not pretend it found them.
fn require_complete(image: &ElfImage, path: &str) -> Result<(), DwarfError> {
    if image.supplementary().is_some() {
        return Ok(());
    }
    match image.supplementary_link() {
        Ok(None) => Ok(()),
        Ok(Some(link)) => Err(DwarfError::Incomplete {
            path: path.to_string(),
            reason: format!(
                "it refers to the supplementary file {} (build-id {}), which was not found",
                link.name_lossy(),
                link.build_id_hex()
            ),
        }),
        Err(e) => Err(DwarfError::Incomplete {
            path: path.to_string(),
            reason: format!("its link to a supplementary file is unreadable: {e}"),
        }),
    }
}

/// Why DWARF could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DwarfError {
    /// The image has no `.debug_info`.
    #[error("{0}: no DWARF (.debug_info is missing or empty)")]
    NoDwarf(String),
    /// gimli rejected the data.
    #[error("{path}: bad DWARF: {reason}")]
    Bad {
        /// The file.
        path: String,
        /// gimli's message.
        reason: String,
    },
    /// Part of the DWARF lives in a supplementary file (dwz) that is missing.
    #[error(
        "{path}: incomplete DWARF: {reason}; pass the folder holding it with --debug-dir \
         (as .build-id/xx/rest.debug or .dwz/NAME)"
    )]
    Incomplete {
        /// The debug file.
        path: String,
        /// Which file is missing, and its build-id.
        reason: String,
    },
}

/// One field of a struct, with nested members flattened (`threads.head`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Byte offset from the start of the outermost struct.
    pub offset: u64,
    /// Size in bytes (of the storage unit, for a bitfield).
    pub size: u64,
    /// For bitfields: bit offset from the start of the outermost struct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_offset: Option<u64>,
    /// For bitfields: width in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_size: Option<u64>,
}

/// A struct or union as DWARF describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructType {
    /// The name that matched (a typedef or a struct tag).
    pub name: String,
    /// `sizeof`.
    pub size: u64,
    /// Every member, by dotted path.
    pub fields: BTreeMap<String, Field>,
}

/// A static or global variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// The compile unit that defines it (e.g. `Objects/tupleobject.c`).
    pub unit: String,
    /// Link-time address.
    pub address: u64,
    /// Size of its type, if known.
    pub size: Option<u64>,
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Struct, union or typedef names.
    pub types: Vec<String>,
    /// Variable names; `None` unit means any unit.
    pub variables: Vec<String>,
    /// Unit names (basenames such as `pystate.c`) to scan first.
    pub preferred_units: Vec<String>,
    /// Groups of alternative type names; when one of each group is found in
    /// the preferred units, the other units are not scanned.
    pub required: Vec<Vec<String>>,
}

/// What was found.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Types by the name asked for.
    pub types: HashMap<String, StructType>,
    /// Every definition of each variable asked for (statics repeat across units).
    pub variables: Vec<Variable>,
    /// Units decoded before the scan stopped.
    pub units_scanned: usize,
    /// Units in the file.
    pub units_total: usize,
    /// Damaged units, skipped in whole or in part.
    pub errors: Vec<String>,
}

/// Run `query` against the DWARF in `image`.
///
/// Variables are collected from every unit scanned; the scan stops early only
/// once every type has been found and every variable seen at least once in
/// the preferred units.
pub fn query(image: &ElfImage, query: &Query) -> Result<QueryResult, DwarfError> {
    let path = dwarf_path(image)?;
    // Types and names kept in a missing supplementary file would be missing
    // here, or half read: no answer is better than a wrong one.
    require_complete(image, &path)?;
    let bad = bad_dwarf(&path);
    // Only the sections type and variable lookups need; the rest stay compressed.
    let sections = load_sections(image, &[])?;
    if let Some(e) = sections.sup_error {
        return Err(e);
    }
    let loaded = borrow_sections(&sections);
    let dwarf: Dwarf<'_> = loaded.dwarf();

    let mut unit_errors = Vec::new();
    let main = FileUnits::parse(&dwarf, "", &mut unit_errors).map_err(bad)?;
    let sup = match dwarf.sup() {
        Some(sup) => {
            Some(FileUnits::parse(sup, "supplementary file ", &mut unit_errors).map_err(bad)?)
        }
        None => None,
    };
    let units = Units { main, sup };
    let units_total = units.main.units.len() + units.sup.as_ref().map_or(0, |s| s.units.len());
    let preferred: HashSet<&str> = query.preferred_units.iter().map(String::as_str).collect();
    // The image's units, preferred ones first, file order otherwise; then
    // the supplementary file's (each also scanned, earlier, by the units
    // that import it).
    let mut order: Vec<(bool, UnitScanner<'_, '_>)> = (0..units.main.units.len())
        .filter_map(|i| units.scanner(Side::Main, i))
        .chain(
            (0..units.sup.as_ref().map_or(0, |s| s.units.len()))
                .filter_map(|i| units.scanner(Side::Sup, i)),
        )
        .map(|s| {
            let is_preferred = s.side == Side::Main && preferred.contains(basename(&s.unit_name()));
            (is_preferred, s)
        })
        .collect();
    order.sort_by_key(|(is_preferred, _)| !is_preferred);

    let type_names: HashSet<&str> = query.types.iter().map(String::as_str).collect();
    let var_names: HashSet<&str> = query.variables.iter().map(String::as_str).collect();
    let mut result = QueryResult {
        units_total,
        errors: unit_errors,
        ..Default::default()
    };
    let mut vars_seen: HashSet<String> = HashSet::new();
    let mut visited: HashSet<(Side, usize)> = HashSet::new();
    for &(is_preferred, scanner) in &order {
        let done_types = result.types.len() == type_names.len();
        let done_vars = vars_seen.len() == var_names.len();
        if done_types && done_vars && !is_preferred {
            break;
        }
        // Types a version lacks would otherwise force a scan of every unit:
        // once the preferred units are done and every required type is
        // found, the rest are skipped.
        let required_found = query
            .required
            .iter()
            .all(|group| group.iter().any(|n| result.types.contains_key(n)));
        if !is_preferred && required_found && !query.required.is_empty() {
            break;
        }
        // The unit, then the partial units it imports (dwz moves what units
        // share into those, in the file or its supplementary file), each once.
        let mut pending = vec![scanner];
        while let Some(unit) = pending.pop() {
            if !visited.insert((unit.side, unit.index)) {
                continue;
            }
            result.units_scanned += 1;
            let mut imports = Vec::new();
            if let Err(e) = unit.scan(
                &type_names,
                &var_names,
                &mut result,
                &mut vars_seen,
                &mut imports,
            ) {
                result.errors.push(format!(
                    "unit {}: {e} (the rest of the unit was skipped)",
                    unit.unit_name()
                ));
            }
            pending.extend(imports.into_iter().rev());
        }
    }
    Ok(result)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The image's own DWARF, or its supplementary file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Main,
    Sup,
}

/// The parsed units of one file, for following references between them.
struct FileUnits<'d, 'a> {
    dwarf: &'d Dwarf<'a>,
    units: Vec<Unit<'a>>,
    /// Each unit's offset in `.debug_info`, ascending.
    offsets: Vec<usize>,
}

impl<'d, 'a> FileUnits<'d, 'a> {
    /// Every unit of `dwarf`; a damaged one is noted in `errors` (its
    /// label naming the file) and left out.
    fn parse(
        dwarf: &'d Dwarf<'a>,
        label: &str,
        errors: &mut Vec<String>,
    ) -> gimli::Result<FileUnits<'d, 'a>> {
        let mut units = Vec::new();
        let mut offsets = Vec::new();
        let mut headers = dwarf.units();
        let mut seen = 0;
        while let Some(header) = headers.next()? {
            let at = header.offset().0;
            seen += 1;
            if seen > MAX_UNITS {
                errors.push(format!(
                    "{label}more than {MAX_UNITS} units: those from {at:#x} on were not read"
                ));
                break;
            }
            match dwarf.unit(header) {
                Ok(mut unit) => {
                    // Types and variables need no line table; dwz's partial
                    // units each hold a copy of a large one.
                    unit.line_program = None;
                    units.push(unit);
                    offsets.push(at);
                }
                Err(e) => errors.push(format!("{label}unit at {at:#x}: {e}")),
            }
        }
        Ok(FileUnits {
            dwarf,
            units,
            offsets,
        })
    }

    /// The unit holding the DIE at `offset`, and the DIE's offset in it.
    fn containing(&self, offset: gimli::DebugInfoOffset<usize>) -> Option<(usize, UnitOffset)> {
        let index = self
            .offsets
            .partition_point(|&at| at <= offset.0)
            .checked_sub(1)?;
        let in_unit = offset.to_unit_offset(&self.units.get(index)?.header)?;
        Some((index, in_unit))
    }
}

/// The units of the image and of its supplementary file.
struct Units<'d, 'a> {
    main: FileUnits<'d, 'a>,
    sup: Option<FileUnits<'d, 'a>>,
}

impl<'d, 'a> Units<'d, 'a> {
    fn file(&self, side: Side) -> Option<&FileUnits<'d, 'a>> {
        match side {
            Side::Main => Some(&self.main),
            Side::Sup => self.sup.as_ref(),
        }
    }

    /// A scanner of unit `index` of `side`, as a unit of its own.
    fn scanner(&self, side: Side, index: usize) -> Option<UnitScanner<'_, 'a>> {
        let file = self.file(side)?;
        let unit = file.units.get(index)?;
        Some(UnitScanner {
            units: self,
            file,
            side,
            index,
            unit,
            cu: unit,
        })
    }
}

/// One unit being read, with what it takes to follow references out of it.
#[derive(Clone, Copy)]
struct UnitScanner<'d, 'a> {
    units: &'d Units<'d, 'a>,
    file: &'d FileUnits<'d, 'a>,
    side: Side,
    index: usize,
    unit: &'d Unit<'a>,
    /// The compile unit whose name a variable found here is recorded
    /// under: the unit itself, or the one that imported this partial unit.
    cu: &'d Unit<'a>,
}

/// The resolved type of a member or variable.
enum Resolved<'d, 'a> {
    /// A struct or union: the unit holding it and its offset there.
    Struct(UnitScanner<'d, 'a>, UnitOffset),
    Other {
        size: Option<u64>,
    },
}

impl<'d, 'a> UnitScanner<'d, 'a> {
    fn dwarf(&self) -> &'d Dwarf<'a> {
        self.file.dwarf
    }

    /// The DIE a reference attribute points to: in this unit, in another
    /// unit of the same file (`DW_FORM_ref_addr`), or in the supplementary
    /// file (`DW_FORM_GNU_ref_alt`, `DW_FORM_ref_sup4/8`). `None` for other
    /// forms and for references that lead nowhere.
    fn follow(
        &self,
        value: AttributeValue<Slice<'a>>,
    ) -> Option<(UnitScanner<'d, 'a>, UnitOffset)> {
        let (side, offset) = match value {
            AttributeValue::UnitRef(offset) => return Some((*self, offset)),
            AttributeValue::DebugInfoRef(offset) => (self.side, offset),
            // The supplementary file has no supplementary file of its own.
            AttributeValue::DebugInfoRefSup(offset) if self.side == Side::Main => {
                (Side::Sup, offset)
            }
            _ => return None,
        };
        let file = self.units.file(side)?;
        let (index, in_unit) = file.containing(offset)?;
        let unit = file.units.get(index)?;
        let target = UnitScanner {
            units: self.units,
            file,
            side,
            index,
            unit,
            cu: self.cu,
        };
        Some((target, in_unit))
    }

    fn name(&self, entry: &gimli::DebuggingInformationEntry<Slice<'a>>) -> Option<String> {
        let value = entry.attr_value(gimli::DW_AT_name)?;
        let s = self.dwarf().attr_string(self.unit, value).ok()?;
        Some(s.to_string_lossy().into_owned())
    }

    fn unit_name(&self) -> String {
        self.cu
            .name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn scan(
        &self,
        types: &HashSet<&str>,
        vars: &HashSet<&str>,
        result: &mut QueryResult,
        vars_seen: &mut HashSet<String>,
        imports: &mut Vec<UnitScanner<'d, 'a>>,
    ) -> gimli::Result<()> {
        let mut cursor = self.unit.entries();
        if cursor.next_dfs()?.is_none() {
            return Ok(());
        }
        // First child of the unit DIE, then its siblings.
        let mut entry = cursor.next_dfs()?.filter(|e| e.depth() == 1).cloned();
        while let Some(die) = entry {
            let tag = die.tag();
            if matches!(
                tag,
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_typedef
            ) {
                // Compare the raw name first: most DIEs are not wanted.
                let wanted = die
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| self.dwarf().attr_string(self.unit, v).ok())
                    .and_then(|raw| {
                        std::str::from_utf8(raw.slice())
                            .ok()
                            .filter(|n| types.contains(n))
                            .map(str::to_string)
                    });
                if let Some(name) = wanted.filter(|n| !result.types.contains_key(n))
                    && die.attr_value(gimli::DW_AT_declaration).is_none()
                    && let Some(st) = self.struct_type(&name, die.offset())
                {
                    result.types.insert(name, st);
                }
            } else if tag == gimli::DW_TAG_variable
                && let Some(var) = self.variable(&die, vars)
            {
                vars_seen.insert(var.name.clone());
                if !result.variables.contains(&var) {
                    result.variables.push(var);
                }
            } else if tag == gimli::DW_TAG_imported_unit
                && let Some((target, _)) = die
                    .attr_value(gimli::DW_AT_import)
                    .and_then(|v| self.follow(v))
            {
                imports.push(UnitScanner {
                    cu: self.cu,
                    ..target
                });
            }
            entry = cursor.next_sibling()?.cloned();
        }
        Ok(())
    }

    /// A variable with a `DW_OP_addr`/`DW_OP_addrx` location; its name may sit on
    /// the declaration that `DW_AT_specification` points to.
    fn variable(
        &self,
        die: &gimli::DebuggingInformationEntry<Slice<'a>>,
        vars: &HashSet<&str>,
    ) -> Option<Variable> {
        let location = die.attr_value(gimli::DW_AT_location)?;
        let spec = die
            .attr_value(gimli::DW_AT_specification)
            .and_then(|v| self.follow(v))
            .and_then(|(owner, at)| Some((owner, owner.unit.entry(at).ok()?)));
        let name = self
            .name(die)
            .or_else(|| spec.as_ref().and_then(|(owner, s)| owner.name(s)))?;
        if !vars.contains(name.as_str()) {
            return None;
        }
        let AttributeValue::Exprloc(expr) = location else {
            return None;
        };
        let mut ops = expr.operations(self.unit.encoding());
        let address = match ops.next().ok()?? {
            gimli::Operation::Address { address } => address,
            gimli::Operation::AddressIndex { index } => {
                self.dwarf().address(self.unit, index).ok()?
            }
            _ => return None,
        };
        let type_die = match die.attr_value(gimli::DW_AT_type) {
            Some(t) => self.follow(t),
            None => spec
                .as_ref()
                .and_then(|(owner, s)| owner.follow(s.attr_value(gimli::DW_AT_type)?)),
        };
        let size = type_die.and_then(|(owner, t)| owner.type_size(t));
        Some(Variable {
            name,
            unit: self.unit_name(),
            address,
            size,
        })
    }

    /// Follow typedefs and qualifiers to the underlying type, across units
    /// and into the supplementary file.
    fn resolve(
        &self,
        offset: UnitOffset,
    ) -> Option<(
        Resolved<'d, 'a>,
        gimli::DebuggingInformationEntry<Slice<'a>>,
    )> {
        let (mut here, mut offset) = (*self, offset);
        for _ in 0..MAX_TYPE_CHAIN {
            let die = here.unit.entry(offset).ok()?;
            match die.tag() {
                gimli::DW_TAG_typedef
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_restrict_type
                | gimli::DW_TAG_atomic_type => {
                    match die
                        .attr_value(gimli::DW_AT_type)
                        .and_then(|v| here.follow(v))
                    {
                        Some((next, at)) => (here, offset) = (next, at),
                        // `typedef void T`, or a reference that leads nowhere.
                        None => return Some((Resolved::Other { size: None }, die)),
                    }
                }
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                    if die.attr_value(gimli::DW_AT_declaration).is_some() {
                        return Some((Resolved::Other { size: None }, die));
                    }
                    return Some((Resolved::Struct(here, offset), die));
                }
                gimli::DW_TAG_array_type => {
                    let size = here.array_size(&die, offset);
                    return Some((Resolved::Other { size }, die));
                }
                gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type => {
                    let size =
                        byte_size(&die).or(Some(u64::from(here.unit.encoding().address_size)));
                    return Some((Resolved::Other { size }, die));
                }
                _ => {
                    let size = byte_size(&die);
                    return Some((Resolved::Other { size }, die));
                }
            }
        }
        None
    }

    fn type_size(&self, offset: UnitOffset) -> Option<u64> {
        match self.resolve(offset)? {
            (Resolved::Struct(..), die) => byte_size(&die),
            (Resolved::Other { size }, _) => size,
        }
    }

    fn array_size(
        &self,
        die: &gimli::DebuggingInformationEntry<Slice<'a>>,
        offset: UnitOffset,
    ) -> Option<u64> {
        if let Some(size) = byte_size(die) {
            return Some(size);
        }
        let (owner, element) = self.follow(die.attr_value(gimli::DW_AT_type)?)?;
        let element = owner.type_size(element)?;
        let mut count: u64 = 1;
        let mut cursor = self.unit.entries_at_offset(offset).ok()?;
        cursor.next_dfs().ok()??;
        let mut child = cursor.next_dfs().ok()?.filter(|c| c.depth() == 1).cloned();
        let mut seen = 0;
        while let Some(c) = child {
            if c.tag() == gimli::DW_TAG_subrange_type {
                let n = c
                    .attr_value(gimli::DW_AT_count)
                    .and_then(|v| v.udata_value())
                    .or_else(|| {
                        c.attr_value(gimli::DW_AT_upper_bound)
                            .and_then(|v| v.udata_value())
                            .map(|u| u.saturating_add(1))
                    })
                    .unwrap_or(0); // a flexible array member
                count = count.saturating_mul(n);
            }
            seen += 1;
            if seen > 16 {
                break;
            }
            child = cursor.next_sibling().ok()?.cloned();
        }
        Some(element.saturating_mul(count))
    }

    fn struct_type(&self, name: &str, offset: UnitOffset) -> Option<StructType> {
        let (Resolved::Struct(owner, struct_offset), die) = self.resolve(offset)? else {
            return None;
        };
        let size = byte_size(&die)?;
        let mut fields = BTreeMap::new();
        owner.members(struct_offset, "", 0, 0, &mut fields);
        Some(StructType {
            name: name.to_string(),
            size,
            fields,
        })
    }

    /// Add every member of the struct at `offset` to `fields`, at `base` bytes
    /// from the outermost struct, with `prefix` for nested names.
    fn members(
        &self,
        offset: UnitOffset,
        prefix: &str,
        base: u64,
        depth: usize,
        fields: &mut BTreeMap<String, Field>,
    ) {
        let Ok(mut cursor) = self.unit.entries_at_offset(offset) else {
            return;
        };
        let Ok(Some(_)) = cursor.next_dfs() else {
            return;
        };
        let mut child = match cursor.next_dfs() {
            Ok(Some(c)) if c.depth() == 1 => Some(c.clone()),
            _ => None,
        };
        let mut count = 0;
        while let Some(member) = child {
            count += 1;
            if count > MAX_MEMBERS || fields.len() >= MAX_FIELDS {
                return;
            }
            if member.tag() == gimli::DW_TAG_member {
                self.member(&member, prefix, base, depth, fields);
            }
            child = cursor.next_sibling().ok().flatten().cloned();
        }
    }

    fn member(
        &self,
        member: &gimli::DebuggingInformationEntry<Slice<'a>>,
        prefix: &str,
        base: u64,
        depth: usize,
        fields: &mut BTreeMap<String, Field>,
    ) {
        let name = self.name(member);
        let location = member_location(member).unwrap_or(0);
        let Some((owner, type_offset)) = member
            .attr_value(gimli::DW_AT_type)
            .and_then(|v| self.follow(v))
        else {
            return;
        };
        let Some((resolved, type_die)) = owner.resolve(type_offset) else {
            return;
        };
        let type_size = match &resolved {
            Resolved::Struct(..) => byte_size(&type_die),
            Resolved::Other { size } => *size,
        };
        let bit_size = member
            .attr_value(gimli::DW_AT_bit_size)
            .and_then(|v| v.udata_value());
        let (offset, bit_offset) = match bit_size {
            Some(bits) => {
                let storage = byte_size(member).or(type_size).unwrap_or(4);
                let bit_pos = if let Some(data_bit) = member
                    .attr_value(gimli::DW_AT_data_bit_offset)
                    .and_then(|v| v.udata_value())
                {
                    data_bit
                } else if let Some(old) = member
                    .attr_value(gimli::DW_AT_bit_offset)
                    .and_then(|v| v.udata_value())
                {
                    // DWARF 2/3 count from the storage unit's most significant bit.
                    (location * 8 + storage * 8).saturating_sub(old + bits)
                } else {
                    location * 8
                };
                // The storage unit holding the bits, aligned to its own size.
                let storage = storage.max(1);
                let byte = bit_pos / 8 / storage * storage;
                (base + byte, Some(base * 8 + bit_pos))
            }
            None => (base + location, None),
        };
        match (&name, &resolved) {
            // Anonymous struct or union: its members belong to the parent.
            (None, Resolved::Struct(inner, at)) if depth < MAX_NEST_DEPTH => {
                inner.members(*at, prefix, base + location, depth + 1, fields);
            }
            (None, _) => {}
            (Some(name), _) => {
                let path = format!("{prefix}{name}");
                if let (Resolved::Struct(inner, at), true) = (&resolved, depth < MAX_NEST_DEPTH) {
                    inner.members(*at, &format!("{path}."), base + location, depth + 1, fields);
                }
                fields.insert(
                    path,
                    Field {
                        offset,
                        size: type_size.unwrap_or(0),
                        bit_offset,
                        bit_size: bit_size.map(|b| b.min(64)),
                    },
                );
            }
        }
    }
}

fn byte_size(die: &gimli::DebuggingInformationEntry<Slice<'_>>) -> Option<u64> {
    die.attr_value(gimli::DW_AT_byte_size)
        .and_then(|v| v.udata_value())
}

/// `DW_AT_data_member_location` as a constant or a `DW_OP_plus_uconst` expression.
fn member_location(member: &gimli::DebuggingInformationEntry<Slice<'_>>) -> Option<u64> {
    match member.attr_value(gimli::DW_AT_data_member_location)? {
        AttributeValue::Exprloc(expr) => {
            let mut ops = expr.operations(gimli::Encoding {
                format: gimli::Format::Dwarf32,
                version: 4,
                address_size: 8,
            });
            match ops.next().ok()?? {
                gimli::Operation::PlusConstant { value } => Some(value),
                _ => None,
            }
        }
        value => value.udata_value(),
    }
}
