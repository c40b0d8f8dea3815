//! Finding `_PyRuntime` (3.7+) without knowing any layout: by symbol, by its
//! own ELF section, or by the `_Py_DebugOffsets` cookie at its start.

use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};

use super::version::DEBUG_OFFSETS_COOKIE;
use crate::corefile::CoreFile;
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;

/// Bytes of writable data scanned for the cookie, at most.
const MAX_SCAN_BYTES: u64 = 256 << 20;

/// How the runtime (or the first interpreter) was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuntimeStrategy {
    /// The `_PyRuntime` symbol (`.dynsym` or `.symtab`).
    Symbol,
    /// The `.PyRuntime` ELF section.
    Section,
    /// A scan for the `_Py_DebugOffsets` cookie.
    DebugOffsetsScan,
    /// The `interp_head` static (2.7, 3.6; `.symtab` or DWARF).
    InterpHeadSymbol,
    /// A scan of .data and .bss for an interpreter state whose thread list points back to it.
    InterpreterScan,
}

/// Address of `_PyRuntime` and how it was found.
pub fn find(
    core: &CoreFile,
    memory: &impl Memory,
    module: &Module,
) -> Option<(u64, RuntimeStrategy)> {
    if let Some(addr) = module.symbol_address("_PyRuntime", None) {
        return Some((addr, RuntimeStrategy::Symbol));
    }
    if let Some(addr) = section_address(module) {
        return Some((addr, RuntimeStrategy::Section));
    }
    scan_cookie(core, memory, module).map(|a| (a, RuntimeStrategy::DebugOffsetsScan))
}

/// Runtime address of the `.PyRuntime` section (3.12+ builds on Linux).
fn section_address(module: &Module) -> Option<u64> {
    let file = module.file()?.parse()?;
    let section = file.section_by_name(".PyRuntime")?;
    Some(section.address().wrapping_add(module.load_bias?))
}

/// The cookie, 8-aligned, in the module's writable segments of the core,
/// followed by a plausible version word.
fn scan_cookie(core: &CoreFile, memory: &impl Memory, module: &Module) -> Option<u64> {
    for (vaddr, bytes) in core.writable_bytes_in(module.base, module.end, MAX_SCAN_BYTES) {
        let mut at = 0;
        while let Some(pos) = bytes[at..]
            .windows(8)
            .position(|w| w == DEBUG_OFFSETS_COOKIE)
        {
            let addr = vaddr + (at + pos) as u64;
            if addr.is_multiple_of(8)
                && memory
                    .read_u64(addr.wrapping_add(8))
                    .is_ok_and(|v| v >> 24 == 3)
            {
                return Some(addr);
            }
            at += pos + 1;
        }
    }
    None
}
