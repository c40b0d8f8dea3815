//! Walks over a unit's DIEs shared by the call-site readers.

use gimli::{AttributeValue, DebuggingInformationEntry, Reader, UnitRef};

/// DIEs looked at in one unit, at most.
const MAX_DIES: usize = 2_000_000;
/// Unit headers read to find the unit a reference leads into, at most.
const MAX_UNITS: usize = 1_000_000;

/// Where a reference attribute of a DIE in `unit` (of `dwarf`) leads: the
/// DWARF holding the target (`dwarf`, or its supplementary file's), the
/// target's unit when it is another one, and the target's offset in its
/// unit. Follows `DW_FORM_ref*` within the unit, `DW_FORM_ref_addr` to
/// another unit of the file, and `DW_FORM_GNU_ref_alt`/`DW_FORM_ref_sup4/8`
/// into the supplementary file (dwz); `None` for other forms, a missing
/// supplementary file, or an offset no unit holds.
#[allow(clippy::type_complexity)]
pub(super) fn follow<'d, R: Reader>(
    dwarf: &'d gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    value: AttributeValue<R>,
) -> gimli::Result<
    Option<(
        &'d gimli::Dwarf<R>,
        Option<gimli::Unit<R>>,
        gimli::UnitOffset<R::Offset>,
    )>,
> {
    let (file, offset) = match value {
        AttributeValue::UnitRef(offset) => return Ok(Some((dwarf, None, offset))),
        AttributeValue::DebugInfoRef(offset) => {
            if let Some(in_unit) = offset.to_unit_offset(&unit.header) {
                return Ok(Some((dwarf, None, in_unit)));
            }
            (dwarf, offset)
        }
        AttributeValue::DebugInfoRefSup(offset) => match dwarf.sup() {
            Some(sup) => (sup, offset),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let mut headers = file.units();
    let mut seen = 0;
    while let Some(header) = headers.next()? {
        if header.offset().0 > offset.0 {
            break;
        }
        if let Some(in_unit) = offset.to_unit_offset(&header) {
            return Ok(Some((file, Some(file.unit(header)?), in_unit)));
        }
        seen += 1;
        if seen > MAX_UNITS {
            break;
        }
    }
    Ok(None)
}

/// Whether the value is a reference to a DIE, in any form [`follow`] takes.
pub(super) fn is_reference<R: Reader>(value: &AttributeValue<R>) -> bool {
    matches!(
        value,
        AttributeValue::UnitRef(_)
            | AttributeValue::DebugInfoRef(_)
            | AttributeValue::DebugInfoRefSup(_)
    )
}

/// Visit the descendants of the first DIE, in depth-first order, that
/// `is_root` accepts; at most [`MAX_DIES`] DIEs are read.
pub(super) fn visit_subtree<R: Reader>(
    unit: UnitRef<'_, R>,
    mut is_root: impl FnMut(&DebuggingInformationEntry<R>) -> gimli::Result<bool>,
    mut visit: impl FnMut(&DebuggingInformationEntry<R>) -> gimli::Result<()>,
) -> gimli::Result<()> {
    let mut entries = unit.entries();
    let mut root_depth: Option<isize> = None;
    let mut seen = 0;
    while let Some(die) = entries.next_dfs()? {
        seen += 1;
        if seen > MAX_DIES {
            break;
        }
        match root_depth {
            Some(d) if die.depth() <= d => break,
            Some(_) => visit(die)?,
            None => {
                if is_root(die)? {
                    root_depth = Some(die.depth());
                }
            }
        }
    }
    Ok(())
}

/// Whether the DIE is a call site (DWARF 5, or GCC's DWARF 4 extension).
pub(super) fn is_call_site<R: Reader>(die: &DebuggingInformationEntry<R>) -> bool {
    matches!(
        die.tag(),
        gimli::DW_TAG_call_site | gimli::DW_TAG_GNU_call_site
    )
}

/// A call site's pc: the address after the call or jump. DWARF 5 names it
/// `DW_AT_call_return_pc`; GCC's DWARF 4 extension uses `DW_AT_low_pc`.
pub(super) fn call_site_pc<R: Reader>(
    unit: UnitRef<'_, R>,
    die: &DebuggingInformationEntry<R>,
) -> gimli::Result<Option<u64>> {
    match die
        .attr_value(gimli::DW_AT_call_return_pc)
        .or_else(|| die.attr_value(gimli::DW_AT_low_pc))
    {
        Some(v) => unit.attr_address(v),
        None => Ok(None),
    }
}
