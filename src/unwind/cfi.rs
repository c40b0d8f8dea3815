//! One CFI step with gimli: from a frame's registers to its caller's.

use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, EhFrameHdr, EndianArcSlice, EndianSlice,
    Evaluation, EvaluationResult, FrameDescriptionEntry, LittleEndian, Location, ParsedEhFrameHdr,
    Reader, Register, RegisterRule, UnwindContext, UnwindSection, Value, Vendor,
};
use object::{Object, ObjectSection};

use crate::arch::UnwindRegisters;
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Register and memory requests of a DWARF expression evaluation, at most.
const MAX_EXPRESSION_STEPS: usize = 256;
/// Operations executed by one DWARF expression, at most.
const MAX_EXPRESSION_OPS: u32 = 10_000;

/// Why a step failed.
pub enum StepError {
    /// The return address is undefined: the outermost frame.
    Outermost,
    /// No CFI covers the address.
    NoCfi(String),
    /// A register or memory the rules need could not be read.
    Unreadable(String),
}

/// A module's `.eh_frame` (and `.eh_frame_hdr`) at their link-time
/// addresses, and its `.debug_frame` (from the file or its debug file) for
/// code `.eh_frame` does not cover.
pub struct ModuleCfi<'m> {
    eh_frame: EhFrame<Slice<'m>>,
    hdr: Option<ParsedEhFrameHdr<Slice<'m>>>,
    bases: BaseAddresses,
    // Owned: a debug file's section may be compressed.
    debug_frame: Option<DebugFrame<EndianArcSlice<LittleEndian>>>,
    bias: u64,
}

fn debug_frame_of(bytes: &[u8], vendor: Vendor) -> DebugFrame<EndianArcSlice<LittleEndian>> {
    let mut frame = DebugFrame::from(EndianArcSlice::new(
        std::sync::Arc::from(bytes),
        LittleEndian,
    ));
    frame.set_address_size(8);
    frame.set_vendor(vendor);
    frame
}

impl<'m> ModuleCfi<'m> {
    /// Read the CFI sections of a module's file (or in-memory image).
    pub fn new(module: &'m Module) -> Option<ModuleCfi<'m>> {
        let image = module.file()?;
        let bias = module.load_bias?;
        let file = image.parse()?;
        let vendor = match file.architecture() {
            object::Architecture::Aarch64 => Vendor::AArch64,
            _ => Vendor::Default,
        };
        let section = |name: &str| -> Option<(u64, &'m [u8])> {
            let s = file.section_by_name(name)?;
            let data = s.data().ok()?;
            // The image outlives this function: re-borrow its bytes at 'm.
            let bytes: &'m [u8] = image.bytes();
            let start = (data.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
            Some((s.address(), bytes.get(start..start + data.len())?))
        };
        let debug_frame = [module.debug_file(), Some(image)]
            .into_iter()
            .flatten()
            .find_map(|i| i.section_data(".debug_frame").ok().flatten())
            .filter(|d| !d.is_empty())
            .map(|d| debug_frame_of(&d, vendor));
        let (eh_addr, eh_data) = section(".eh_frame").unwrap_or((0, &[]));
        if eh_data.is_empty() && debug_frame.is_none() {
            return None;
        }
        let mut bases = BaseAddresses::default().set_eh_frame(eh_addr);
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        let mut eh_frame = EhFrame::new(eh_data, LittleEndian);
        eh_frame.set_address_size(8);
        // DW_CFA_AARCH64_negate_ra_state shares its opcode with SPARC's
        // DW_CFA_GNU_window_save: gimli reads it only when told the vendor.
        eh_frame.set_vendor(vendor);
        let hdr = section(".eh_frame_hdr").and_then(|(addr, data)| {
            bases = bases.clone().set_eh_frame_hdr(addr);
            EhFrameHdr::new(data, LittleEndian).parse(&bases, 8).ok()
        });
        Some(ModuleCfi {
            eh_frame,
            hdr,
            bases,
            debug_frame,
            bias,
        })
    }

    /// CFI from raw sections at their link-time addresses, with a
    /// `.debug_frame` too (for fuzzing and tests).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_debug_frame(
        arch: crate::arch::ArchId,
        eh_frame: &'m [u8],
        eh_frame_address: u64,
        hdr: Option<(&'m [u8], u64)>,
        debug_frame: Option<&[u8]>,
        bias: u64,
    ) -> ModuleCfi<'m> {
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame_address);
        let vendor = match arch {
            crate::arch::ArchId::Aarch64 => Vendor::AArch64,
            _ => Vendor::Default,
        };
        let mut frame = EhFrame::new(eh_frame, LittleEndian);
        frame.set_address_size(8);
        frame.set_vendor(vendor);
        let hdr = hdr.and_then(|(data, addr)| {
            bases = bases.clone().set_eh_frame_hdr(addr);
            EhFrameHdr::new(data, LittleEndian).parse(&bases, 8).ok()
        });
        ModuleCfi {
            eh_frame: frame,
            hdr,
            bases,
            debug_frame: debug_frame.map(|d| debug_frame_of(d, vendor)),
            bias,
        }
    }

    /// From `regs` at runtime address `lookup`, the caller's registers and
    /// whether this frame is a signal trampoline.
    pub fn step(
        &self,
        memory: &impl Memory,
        lookup: u64,
        regs: &UnwindRegisters,
    ) -> Result<(UnwindRegisters, bool), StepError> {
        let svma = lookup.wrapping_sub(self.bias);
        let get_cie = |section: &EhFrame<Slice<'m>>, bases: &BaseAddresses, offset| {
            section.cie_from_offset(bases, offset)
        };
        let eh = match self.hdr.as_ref().and_then(|h| h.table()) {
            Some(table) => table.fde_for_address(&self.eh_frame, &self.bases, svma, get_cie),
            None => self.eh_frame.fde_for_address(&self.bases, svma, get_cie),
        };
        let eh_error = match eh {
            Ok(fde) => return apply(&self.eh_frame, &self.bases, fde, memory, lookup, svma, regs),
            Err(e) => e,
        };
        // Code without .eh_frame (built with -fno-asynchronous-unwind-tables,
        // or hand-written assembly) may still have .debug_frame.
        let Some(debug_frame) = &self.debug_frame else {
            return Err(StepError::NoCfi(format!(
                "no CFI for {lookup:#x}: {eh_error}"
            )));
        };
        let bases = BaseAddresses::default();
        let fde = debug_frame
            .fde_for_address(&bases, svma, |section, bases, offset| {
                section.cie_from_offset(bases, offset)
            })
            .map_err(|e| {
                StepError::NoCfi(format!(
                    "no CFI for {lookup:#x}: {eh_error}; .debug_frame: {e}"
                ))
            })?;
        apply(debug_frame, &bases, fde, memory, lookup, svma, regs)
    }
}

/// Apply the CFI row for `svma` in `fde` to `regs`.
fn apply<R: Reader<Offset = usize>, S: UnwindSection<R>>(
    section: &S,
    bases: &BaseAddresses,
    fde: FrameDescriptionEntry<R>,
    memory: &impl Memory,
    lookup: u64,
    svma: u64,
    regs: &UnwindRegisters,
) -> Result<(UnwindRegisters, bool), StepError> {
    let signal = fde.is_signal_trampoline();
    let mut ctx = UnwindContext::new();
    let row = fde
        .unwind_info_for_address(section, bases, &mut ctx, svma)
        .map_err(|e| StepError::NoCfi(format!("bad CFI for {lookup:#x}: {e}")))?;
    let unreadable = |what: &str| StepError::Unreadable(format!("{what} at {lookup:#x}"));
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let base = regs
                .get(register.0)
                .ok_or_else(|| unreadable("the CFA register"))?;
            base.wrapping_add(*offset as u64)
        }
        CfaRule::Expression(e) => {
            let expr = e
                .get(section)
                .map_err(|_| unreadable("the CFA expression"))?;
            evaluate(memory, regs, expr, None).ok_or_else(|| unreadable("the CFA expression"))?
        }
    };
    let mut next = *regs;
    next.forget_caller_saved();
    next.set_sp(Some(cfa));
    let return_address = regs.arch().return_address_register();
    // Where the return-address column is a real register (AArch64's x30),
    // no rule means the function has not saved it: it still holds the
    // return address (a leaf). Elsewhere the CFI always gives the rule.
    let link_register = regs.arch().return_address_in_register();
    next.set_return_address(link_register.then(|| regs.get(return_address)).flatten());
    for reg in 0..regs.arch().dwarf_register_count() {
        let Some(rule) = row.register(Register(reg)) else {
            continue;
        };
        let value = match rule {
            RegisterRule::Undefined => None,
            RegisterRule::SameValue => regs.get(reg),
            RegisterRule::Offset(o) => memory.read_u64(cfa.wrapping_add(o as u64)).ok(),
            RegisterRule::ValOffset(o) => Some(cfa.wrapping_add(o as u64)),
            RegisterRule::Register(r) => regs.get(r.0),
            RegisterRule::Expression(e) => e
                .get(section)
                .ok()
                .and_then(|expr| evaluate(memory, regs, expr, Some(cfa)))
                .and_then(|addr| memory.read_u64(addr).ok()),
            RegisterRule::ValExpression(e) => e
                .get(section)
                .ok()
                .and_then(|expr| evaluate(memory, regs, expr, Some(cfa))),
            RegisterRule::Constant(c) => Some(c),
            _ => None,
        };
        if reg == return_address && matches!(rule, RegisterRule::Undefined) {
            return Err(StepError::Outermost);
        }
        next.set(reg, value);
    }
    Ok((next, signal))
}

/// Evaluate a CFI expression to an address, with `initial` pushed first.
fn evaluate<R: Reader<Offset = usize>>(
    memory: &impl Memory,
    regs: &UnwindRegisters,
    expr: gimli::Expression<R>,
    initial: Option<u64>,
) -> Option<u64> {
    let encoding = gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 4,
        address_size: 8,
    };
    let mut eval: Evaluation<R> = expr.evaluation(encoding);
    // A branch back to itself (DW_OP_skip, DW_OP_bra) would loop for ever.
    eval.set_max_iterations(MAX_EXPRESSION_OPS);
    if let Some(v) = initial {
        eval.set_initial_value(v);
    }
    let mut result = eval.evaluate().ok()?;
    for _ in 0..MAX_EXPRESSION_STEPS {
        result = match result {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresRegister { register, .. } => {
                let v = regs.get(register.0)?;
                eval.resume_with_register(Value::Generic(v)).ok()?
            }
            EvaluationResult::RequiresMemory { address, size, .. } => {
                let v = match size {
                    1 => u64::from(memory.read_u8(address).ok()?),
                    2 => u64::from(memory.read_u16(address).ok()?),
                    4 => u64::from(memory.read_u32(address).ok()?),
                    _ => memory.read_u64(address).ok()?,
                };
                eval.resume_with_memory(Value::Generic(v)).ok()?
            }
            _ => return None,
        };
    }
    if !matches!(result, EvaluationResult::Complete) {
        return None;
    }
    match eval.result().first()?.location {
        Location::Address { address } => Some(address),
        Location::Value { value } => value.to_u64(!0).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;

    /// A `.debug_frame` (version 1) with one CIE, `CFA = sp + 8; ra at CFA - 8`,
    /// the state at every function's entry, and one FDE covering `[start, start + len)`.
    fn debug_frame(start: u64, len: u64) -> Vec<u8> {
        let mut cie = Vec::new();
        cie.extend(0xffff_ffffu32.to_le_bytes()); // CIE id
        cie.push(1); // version
        cie.push(0); // augmentation ""
        cie.push(1); // code alignment factor
        cie.push(0x78); // data alignment factor -8
        cie.push(16); // return address register
        cie.extend([0x0c, 0x07, 0x08]); // DW_CFA_def_cfa r7 (the stack pointer), 8
        cie.extend([0x90, 0x01]); // DW_CFA_offset r16, 1 * -8
        while (cie.len() + 4) % 8 != 0 {
            cie.push(0); // DW_CFA_nop
        }
        let mut out = (cie.len() as u32).to_le_bytes().to_vec();
        out.extend(cie);
        let mut fde = Vec::new();
        fde.extend(0u32.to_le_bytes()); // the CIE at offset 0
        fde.extend(start.to_le_bytes());
        fde.extend(len.to_le_bytes());
        while (fde.len() + 4) % 8 != 0 {
            fde.push(0);
        }
        out.extend((fde.len() as u32).to_le_bytes());
        out.extend(fde);
        out
    }

    #[test]
    fn debug_frame_covers_code_without_eh_frame() {
        let sections = debug_frame(0x1000, 0x100);
        let cfi = ModuleCfi::with_debug_frame(
            crate::arch::ArchId::X86_64,
            &[],
            0,
            None,
            Some(&sections),
            0x7f00_0000_0000,
        );
        let sp = 0x7fff_0000_0000u64;
        let mut stack = vec![0u8; 64];
        stack[..8].copy_from_slice(&0x7f00_0000_2345u64.to_le_bytes());
        let memory = BufferMemory {
            base: sp,
            bytes: stack,
        };
        let mut regs = UnwindRegisters::new(crate::arch::ArchId::X86_64);
        regs.set_sp(Some(sp));
        regs.set_return_address(Some(0x7f00_0000_1010));
        let Ok((next, signal)) = cfi.step(&memory, 0x7f00_0000_1010, &regs) else {
            panic!("no step from .debug_frame");
        };
        assert_eq!(
            next.return_address(),
            Some(0x7f00_0000_2345),
            "return address from [CFA - 8]"
        );
        assert_eq!(
            next.sp(),
            Some(sp + 8),
            "the caller's stack pointer is the CFA"
        );
        assert!(!signal);
        // Outside the FDE there is no CFI at all.
        assert!(matches!(
            cfi.step(&memory, 0x7f00_0000_2000, &regs),
            Err(StepError::NoCfi(_))
        ));
    }
}
