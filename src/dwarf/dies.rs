//! Walks over a unit's DIEs shared by the call-site readers.

use gimli::{DebuggingInformationEntry, Reader, UnitRef};

/// DIEs looked at in one unit, at most.
const MAX_DIES: usize = 2_000_000;

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
