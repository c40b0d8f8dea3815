//! One CFI step with gimli: from a frame's registers to its caller's.

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, Evaluation, EvaluationResult,
    LittleEndian, Location, ParsedEhFrameHdr, Register, RegisterRule, UnwindContext, UnwindSection,
    Value,
};
use object::{Object, ObjectSection};

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

/// A module's `.eh_frame` (and `.eh_frame_hdr`) at their link-time addresses.
pub struct ModuleCfi<'m> {
    eh_frame: EhFrame<Slice<'m>>,
    hdr: Option<ParsedEhFrameHdr<Slice<'m>>>,
    bases: BaseAddresses,
    bias: u64,
}

impl<'m> ModuleCfi<'m> {
    /// Read the CFI sections of a module's file (or in-memory image).
    pub fn new(module: &'m Module) -> Option<ModuleCfi<'m>> {
        let image = module.file()?;
        let bias = module.load_bias?;
        let file = image.parse()?;
        let section = |name: &str| -> Option<(u64, &'m [u8])> {
            let s = file.section_by_name(name)?;
            let data = s.data().ok()?;
            // The image outlives this function: re-borrow its bytes at 'm.
            let bytes: &'m [u8] = image.bytes();
            let start = (data.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
            Some((s.address(), bytes.get(start..start + data.len())?))
        };
        let (eh_addr, eh_data) = section(".eh_frame")?;
        let mut bases = BaseAddresses::default().set_eh_frame(eh_addr);
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        let mut eh_frame = EhFrame::new(eh_data, LittleEndian);
        eh_frame.set_address_size(8);
        let hdr = section(".eh_frame_hdr").and_then(|(addr, data)| {
            bases = bases.clone().set_eh_frame_hdr(addr);
            EhFrameHdr::new(data, LittleEndian).parse(&bases, 8).ok()
        });
        Some(ModuleCfi {
            eh_frame,
            hdr,
            bases,
            bias,
        })
    }

    /// CFI from raw sections at their link-time addresses (for fuzzing and tests).
    pub fn from_sections(
        eh_frame: &'m [u8],
        eh_frame_address: u64,
        hdr: Option<(&'m [u8], u64)>,
        bias: u64,
    ) -> ModuleCfi<'m> {
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame_address);
        let mut frame = EhFrame::new(eh_frame, LittleEndian);
        frame.set_address_size(8);
        let hdr = hdr.and_then(|(data, addr)| {
            bases = bases.clone().set_eh_frame_hdr(addr);
            EhFrameHdr::new(data, LittleEndian).parse(&bases, 8).ok()
        });
        ModuleCfi {
            eh_frame: frame,
            hdr,
            bases,
            bias,
        }
    }

    /// From `regs` (DWARF numbering, 0–16) at runtime address `lookup`, the
    /// caller's registers and whether this frame is a signal trampoline.
    pub fn step(
        &self,
        memory: &impl Memory,
        lookup: u64,
        regs: &[Option<u64>; 17],
    ) -> Result<([Option<u64>; 17], bool), StepError> {
        let svma = lookup.wrapping_sub(self.bias);
        let get_cie = |section: &EhFrame<Slice<'m>>, bases: &BaseAddresses, offset| {
            section.cie_from_offset(bases, offset)
        };
        let fde = match self.hdr.as_ref().and_then(|h| h.table()) {
            Some(table) => table.fde_for_address(&self.eh_frame, &self.bases, svma, get_cie),
            None => self.eh_frame.fde_for_address(&self.bases, svma, get_cie),
        }
        .map_err(|e| StepError::NoCfi(format!("no CFI for {lookup:#x}: {e}")))?;
        let signal = fde.is_signal_trampoline();
        let mut ctx = UnwindContext::new();
        let row = fde
            .unwind_info_for_address(&self.eh_frame, &self.bases, &mut ctx, svma)
            .map_err(|e| StepError::NoCfi(format!("bad CFI for {lookup:#x}: {e}")))?;
        let unreadable = |what: &str| StepError::Unreadable(format!("{what} at {lookup:#x}"));
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                let base = regs
                    .get(register.0 as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(|| unreadable("the CFA register"))?;
                base.wrapping_add(*offset as u64)
            }
            CfaRule::Expression(e) => {
                let expr = e
                    .get(&self.eh_frame)
                    .map_err(|_| unreadable("the CFA expression"))?;
                evaluate(memory, regs, expr, None)
                    .ok_or_else(|| unreadable("the CFA expression"))?
            }
        };
        let mut next = *regs;
        // Caller-saved registers are not known in the caller.
        for r in [0usize, 1, 2, 4, 5, 8, 9, 10, 11] {
            next[r] = None;
        }
        next[7] = Some(cfa);
        next[16] = None;
        for reg in 0..17u16 {
            let Some(rule) = row.register(Register(reg)) else {
                continue;
            };
            let value = match rule {
                RegisterRule::Undefined => None,
                RegisterRule::SameValue => regs[reg as usize],
                RegisterRule::Offset(o) => memory.read_u64(cfa.wrapping_add(o as u64)).ok(),
                RegisterRule::ValOffset(o) => Some(cfa.wrapping_add(o as u64)),
                RegisterRule::Register(r) => regs.get(r.0 as usize).copied().flatten(),
                RegisterRule::Expression(e) => e
                    .get(&self.eh_frame)
                    .ok()
                    .and_then(|expr| evaluate(memory, regs, expr, Some(cfa)))
                    .and_then(|addr| memory.read_u64(addr).ok()),
                RegisterRule::ValExpression(e) => e
                    .get(&self.eh_frame)
                    .ok()
                    .and_then(|expr| evaluate(memory, regs, expr, Some(cfa))),
                RegisterRule::Constant(c) => Some(c),
                _ => None,
            };
            if reg == 16 && matches!(rule, RegisterRule::Undefined) {
                return Err(StepError::Outermost);
            }
            next[reg as usize] = value;
        }
        Ok((next, signal))
    }
}

/// Evaluate a CFI expression to an address, with `initial` pushed first.
fn evaluate(
    memory: &impl Memory,
    regs: &[Option<u64>; 17],
    expr: gimli::Expression<Slice<'_>>,
    initial: Option<u64>,
) -> Option<u64> {
    let encoding = gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 4,
        address_size: 8,
    };
    let mut eval: Evaluation<Slice<'_>> = expr.evaluation(encoding);
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
                let v = regs.get(register.0 as usize).copied().flatten()?;
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
