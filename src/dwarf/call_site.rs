//! Call-site parameter values (`DW_TAG_call_site_parameter`): what the
//! compiler knows a caller passed in each argument register at one call,
//! such as the address of a string literal. They let a debugger print
//! `msg@entry` long after the callee overwrote the register.

use gimli::{AttributeValue, EndianSlice, LittleEndian};

use super::dies::{call_site_pc, is_call_site, visit_subtree};
use super::{Dwarf, DwarfError, Unit, bad_dwarf, borrow_sections, dwarf_path, load_sections};
use crate::elf::ElfImage;

/// DIEs looked at in the unit holding the call, at most.
const MAX_DIES: usize = 2_000_000;

/// A value the caller passed, as DWARF states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallValue {
    /// An address in the image (before load bias): `DW_OP_addr`.
    Address(u64),
    /// A constant.
    Constant(u64),
    /// A register of the caller at the call plus an offset (`DW_OP_bregN`):
    /// known when the caller's register is (a callee-saved one its callee's
    /// CFI restores).
    CallerRegister {
        /// The caller's register, by DWARF number.
        register: u16,
        /// Added to its value.
        offset: i64,
    },
}

/// The argument values DWARF records for the call that returns to
/// `return_pc` (an address in the image, before load bias), by DWARF
/// register number. Empty when the call has no such record.
pub fn call_site_values(
    image: &ElfImage,
    return_pc: u64,
) -> Result<Vec<(u16, CallValue)>, DwarfError> {
    Ok(call_site_values_at(image, &[return_pc])?
        .pop()
        .unwrap_or_default())
}

/// [`call_site_values`] for several calls of one image, in the order of
/// `return_pcs`: the sections are read (and decompressed) once and the
/// units walked once.
pub fn call_site_values_at(
    image: &ElfImage,
    return_pcs: &[u64],
) -> Result<Vec<Vec<(u16, CallValue)>>, DwarfError> {
    let mut found: Vec<Vec<(u16, CallValue)>> = vec![Vec::new(); return_pcs.len()];
    if return_pcs.is_empty() {
        return Ok(found);
    }
    let path = dwarf_path(image)?;
    let bad = bad_dwarf(&path);
    let sections = load_sections(
        image,
        &[".debug_ranges", ".debug_rnglists", ".debug_aranges"],
    )?;
    let loaded = borrow_sections(&sections);
    let dwarf: Dwarf<'_> = loaded.dwarf();
    let mut headers = dwarf.units();
    while let Some(header) = headers.next().map_err(bad)? {
        if found.iter().all(|f| !f.is_empty()) {
            break;
        }
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        for (i, &pc) in return_pcs.iter().enumerate() {
            if found[i].is_empty() && unit_contains(&dwarf, &unit, pc).map_err(bad)? {
                found[i] = values_in_unit(&dwarf, &unit, pc).map_err(bad)?;
            }
        }
    }
    Ok(found)
}

/// Whether the unit's root DIE covers `pc`. (gimli's `unit_ranges` adds
/// `DW_AT_high_pc` to `DW_AT_low_pc` unchecked, which hostile DWARF
/// overflows; here the sum is checked.)
fn unit_contains(dwarf: &Dwarf<'_>, unit: &Unit<'_>, pc: u64) -> gimli::Result<bool> {
    let mut entries = unit.entries();
    let Some(root) = entries.next_dfs()? else {
        return Ok(false);
    };
    if let Some(value) = root.attr_value(gimli::DW_AT_ranges)
        && let Some(mut ranges) = dwarf.attr_ranges(unit, value)?
    {
        let mut seen = 0;
        while let Some(r) = ranges.next()? {
            if r.begin <= pc && pc <= r.end {
                return Ok(true);
            }
            seen += 1;
            if seen > MAX_DIES {
                break;
            }
        }
        return Ok(false);
    }
    let low = match root.attr_value(gimli::DW_AT_low_pc) {
        Some(v) => dwarf.attr_address(unit, v)?,
        None => None,
    };
    let high = match root.attr_value(gimli::DW_AT_high_pc) {
        Some(gimli::AttributeValue::Udata(size)) => low.and_then(|l| l.checked_add(size)),
        Some(v) => dwarf.attr_address(unit, v)?,
        None => None,
    };
    // A call at a unit's very end returns to its end address.
    Ok(matches!((low, high), (Some(l), Some(h)) if l <= pc && pc <= h))
}

fn values_in_unit(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    return_pc: u64,
) -> gimli::Result<Vec<(u16, CallValue)>> {
    let unit_ref = gimli::UnitRef::new(dwarf, unit);
    let mut out = Vec::new();
    visit_subtree(
        unit_ref,
        |die| Ok(is_call_site(die) && call_site_pc(unit_ref, die)? == Some(return_pc)),
        |die| {
            if matches!(
                die.tag(),
                gimli::DW_TAG_call_site_parameter | gimli::DW_TAG_GNU_call_site_parameter
            ) && let Some(param) = parameter(dwarf, unit, die)?
            {
                out.push(param);
            }
            Ok(())
        },
    )?;
    Ok(out)
}

fn parameter(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    entry: &gimli::DebuggingInformationEntry<EndianSlice<'_, LittleEndian>>,
) -> gimli::Result<Option<(u16, CallValue)>> {
    let Some(AttributeValue::Exprloc(location)) = entry.attr_value(gimli::DW_AT_location) else {
        return Ok(None);
    };
    let mut ops = location.operations(unit.encoding());
    let register = match ops.next()? {
        Some(gimli::Operation::Register { register }) => register.0,
        _ => return Ok(None),
    };
    let value = match entry.attr_value(gimli::DW_AT_call_value) {
        Some(v) => Some(v),
        None => entry.attr_value(gimli::DW_AT_GNU_call_site_value),
    };
    let Some(AttributeValue::Exprloc(value)) = value else {
        return Ok(None);
    };
    let mut ops = value.operations(unit.encoding());
    let first = ops.next()?;
    // Only a value that is one operation is taken: anything longer (an
    // entry value, arithmetic) depends on state that is gone.
    if ops.next()?.is_some() {
        return Ok(None);
    }
    let value = match first {
        Some(gimli::Operation::Address { address }) => CallValue::Address(address),
        Some(gimli::Operation::AddressIndex { index }) => {
            CallValue::Address(dwarf.address(unit, index)?)
        }
        Some(gimli::Operation::UnsignedConstant { value }) => CallValue::Constant(value),
        Some(gimli::Operation::SignedConstant { value }) => CallValue::Constant(value as u64),
        Some(gimli::Operation::RegisterOffset {
            register, offset, ..
        }) => CallValue::CallerRegister {
            register: register.0,
            offset,
        },
        _ => return Ok(None),
    };
    Ok(Some((register, value)))
}
