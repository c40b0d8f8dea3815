//! The calls a function makes, as DWARF records them (`DW_TAG_call_site`),
//! tail calls included: a function that ends by jumping to another leaves no
//! frame on the stack, and only these records say it was there.

use gimli::{AttributeValue, Reader, UnitRef};

use super::dies::{call_site_pc, follow, is_call_site, is_reference, visit_subtree};

/// Ranges looked at for one subprogram, at most.
const MAX_RANGES: usize = 65_536;
/// Specification and abstract-origin links followed to name a callee, at most.
const MAX_ORIGIN_HOPS: usize = 4;

/// One call the compiler recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// The address after the call or jump instruction, in the image.
    pub pc: u64,
    /// A tail call: a jump that replaces the caller's frame.
    pub tail_call: bool,
    /// The callee, when DWARF says which it is.
    pub target: Option<CallTarget>,
}

/// A callee as DWARF gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallTarget {
    /// Its entry address, in the image.
    Address(u64),
    /// Its (linkage) name, for callees declared but defined elsewhere.
    Name(String),
}

/// The call sites of the function whose code starts at `entry`, in `unit`.
pub fn call_sites_in_unit<R: Reader>(
    unit: UnitRef<'_, R>,
    entry: u64,
) -> gimli::Result<Vec<CallSite>> {
    let mut out = Vec::new();
    visit_subtree(
        unit,
        |die| Ok(die.tag() == gimli::DW_TAG_subprogram && starts_at(unit, die, entry)?),
        |die| {
            if is_call_site(die)
                && let Some(site) = call_site(unit, die)?
            {
                out.push(site);
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Whether the subprogram's code starts at `entry` (its low_pc, or the
/// start of one of its ranges: GCC splits cold code into a range of its own).
fn starts_at<R: Reader>(
    unit: UnitRef<'_, R>,
    die: &gimli::DebuggingInformationEntry<R>,
    entry: u64,
) -> gimli::Result<bool> {
    if let Some(low) = die.attr_value(gimli::DW_AT_low_pc) {
        return Ok(unit.attr_address(low)? == Some(entry));
    }
    let Some(ranges) = die.attr_value(gimli::DW_AT_ranges) else {
        return Ok(false);
    };
    let Some(mut ranges) = unit.attr_ranges(ranges)? else {
        return Ok(false);
    };
    let mut seen = 0;
    while let Some(range) = ranges.next()? {
        if range.begin == entry {
            return Ok(true);
        }
        seen += 1;
        if seen > MAX_RANGES {
            break;
        }
    }
    Ok(false)
}

fn call_site<R: Reader>(
    unit: UnitRef<'_, R>,
    die: &gimli::DebuggingInformationEntry<R>,
) -> gimli::Result<Option<CallSite>> {
    let Some(pc) = call_site_pc(unit, die)? else {
        return Ok(None);
    };
    let tail_call = [gimli::DW_AT_call_tail_call, gimli::DW_AT_GNU_tail_call]
        .into_iter()
        .any(|a| matches!(die.attr_value(a), Some(AttributeValue::Flag(true))));
    let target = match die
        .attr_value(gimli::DW_AT_call_origin)
        .or_else(|| die.attr_value(gimli::DW_AT_abstract_origin))
    {
        Some(origin) if is_reference(&origin) => callee(unit, origin)?,
        _ => constant_target(unit, die)?,
    };
    Ok(Some(CallSite {
        pc,
        tail_call,
        target,
    }))
}

/// The callee DIE `origin` refers to (in this unit, another, or the
/// supplementary file): its entry address when it has code here, else its
/// name.
fn callee<R: Reader>(
    unit: UnitRef<'_, R>,
    origin: AttributeValue<R>,
) -> gimli::Result<Option<CallTarget>> {
    let mut dwarf = unit.dwarf;
    // The unit holding the DIE, once it is not the call's.
    let mut elsewhere: Option<gimli::Unit<R>> = None;
    let mut value = origin;
    for _ in 0..MAX_ORIGIN_HOPS {
        let here = elsewhere.as_ref().unwrap_or(unit.unit);
        let Some((file, other, offset)) = follow(dwarf, here, value)? else {
            return Ok(None);
        };
        dwarf = file;
        if other.is_some() {
            elsewhere = other;
        }
        let current = UnitRef::new(dwarf, elsewhere.as_ref().unwrap_or(unit.unit));
        let die = current.entry(offset)?;
        if let Some(low) = die.attr_value(gimli::DW_AT_low_pc)
            && let Some(address) = current.attr_address(low)?
        {
            return Ok(Some(CallTarget::Address(address)));
        }
        for name in [
            gimli::DW_AT_linkage_name,
            gimli::DW_AT_MIPS_linkage_name,
            gimli::DW_AT_name,
        ] {
            if let Some(value) = die.attr_value(name) {
                // A name that cannot be read leaves this callee unnamed,
                // not the function's other calls unread.
                let text = current.attr_string(value).ok();
                let text = text.and_then(|t| Some(t.to_string_lossy().ok()?.into_owned()));
                return Ok(text.map(CallTarget::Name));
            }
        }
        match die
            .attr_value(gimli::DW_AT_specification)
            .or_else(|| die.attr_value(gimli::DW_AT_abstract_origin))
        {
            Some(next) => value = next,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// A call through a constant address (`DW_AT_call_target` of one `DW_OP_addr`).
fn constant_target<R: Reader>(
    unit: UnitRef<'_, R>,
    die: &gimli::DebuggingInformationEntry<R>,
) -> gimli::Result<Option<CallTarget>> {
    let Some(AttributeValue::Exprloc(expression)) = die
        .attr_value(gimli::DW_AT_call_target)
        .or_else(|| die.attr_value(gimli::DW_AT_GNU_call_site_target))
    else {
        return Ok(None);
    };
    let mut ops = expression.operations(unit.encoding());
    let first = ops.next()?;
    if ops.next()?.is_some() {
        return Ok(None);
    }
    Ok(match first {
        Some(gimli::Operation::Address { address }) => Some(CallTarget::Address(address)),
        Some(gimli::Operation::AddressIndex { index }) => {
            Some(CallTarget::Address(unit.address(index)?))
        }
        _ => None,
    })
}
