//! AArch64 (ARM64) on Linux: the AAPCS64 procedure-call standard, the
//! kernel's `user_pt_regs` and signal frame, glibc's thread layout, pointer
//! authentication, and the few instruction encodings the unwinder decodes.

use super::{Registers, UnwindRegisters};

/// DWARF numbers 0–32 are tracked: x0–x30, sp and pc.
pub const DWARF_REGISTER_COUNT: usize = 33;

/// DWARF register numbers (DWARF for the Arm 64-bit Architecture, 4.1).
pub mod dwarf {
    /// x29, the frame pointer.
    pub const FP: u16 = 29;
    /// x30, the link register: the return-address column.
    pub const RETURN_ADDRESS: u16 = 30;
    /// sp.
    pub const SP: u16 = 31;
    /// pc: where a signal interrupted a frame (x30 keeps that frame's own
    /// link register then).
    pub const PC: u16 = 32;
    /// x0–x7.
    pub const ARGUMENTS: [u16; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    /// x0–x18 and x30, which a call may change, and pc.
    pub const CALLER_SAVED: [u16; 21] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30, 32,
    ];
    /// x0–x29: every general register that may point at data (x30 holds
    /// code addresses).
    pub const GENERAL: [u16; 30] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29,
    ];
}

/// AAPCS64 has no red zone; data below sp is dead.
pub const RED_ZONE: u64 = 0;

/// Names of the 34 registers of `user_pt_regs`, in its order.
pub const REGISTER_NAMES: [&str; 34] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30", "sp", "pc", "pstate",
];

const USER_SP: usize = 31;
const USER_PC: usize = 32;
const USER_FP: usize = 29;

/// Size of `struct elf_prstatus` (pr_reg is 34 words, then pr_fpvalid and padding).
pub const PRSTATUS_SIZE: usize = 392;
/// Offset of `pr_reg` in `struct elf_prstatus`.
const PRSTATUS_REGS_OFFSET: usize = 112;

/// The name of a DWARF register 0–32.
pub fn dwarf_register_name(dwarf: u16) -> Option<&'static str> {
    match dwarf {
        0..=30 => REGISTER_NAMES.get(usize::from(dwarf)).copied(),
        dwarf::SP => Some("sp"),
        dwarf::PC => Some("pc"),
        _ => None,
    }
}

/// The general registers of one thread, in `user_pt_regs` order, and its
/// thread pointer (`TPIDR_EL0`) when the core has an `NT_ARM_TLS` note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralRegisters {
    /// x0–x30, sp, pc, pstate.
    pub regs: [u64; 34],
    /// `TPIDR_EL0`, from `NT_ARM_TLS`.
    pub tpidr: Option<u64>,
}

impl GeneralRegisters {
    /// The registers of an `NT_PRSTATUS` descriptor, `None` when it is too short.
    pub fn from_prstatus(desc: &[u8]) -> Option<GeneralRegisters> {
        let bytes = desc.get(PRSTATUS_REGS_OFFSET..PRSTATUS_REGS_OFFSET + 34 * 8)?;
        let mut regs = [0u64; 34];
        for (reg, word) in regs.iter_mut().zip(bytes.chunks_exact(8)) {
            *reg = u64::from_le_bytes(word.try_into().ok()?);
        }
        Some(GeneralRegisters { regs, tpidr: None })
    }
    /// pc.
    pub fn pc(&self) -> u64 {
        self.regs[USER_PC]
    }
    /// sp.
    pub fn sp(&self) -> u64 {
        self.regs[USER_SP]
    }
    /// x29.
    pub fn fp(&self) -> u64 {
        self.regs[USER_FP]
    }
    /// A register by DWARF number 0–32.
    pub fn by_dwarf(&self, dwarf: u16) -> Option<u64> {
        (usize::from(dwarf) < DWARF_REGISTER_COUNT).then(|| self.regs[usize::from(dwarf)])
    }
    /// A register by its `user_pt_regs` name (and `tpidr_el0`).
    pub fn by_name(&self, name: &str) -> Option<u64> {
        if name == "tpidr_el0" {
            return self.tpidr;
        }
        REGISTER_NAMES
            .iter()
            .position(|&n| n == name)
            .map(|i| self.regs[i])
    }
    /// Every register with its name (`tpidr_el0` last, when known).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut named: Vec<_> = REGISTER_NAMES.iter().copied().zip(self.regs).collect();
        named.extend(self.tpidr.map(|t| ("tpidr_el0", t)));
        named
    }
}

impl From<GeneralRegisters> for Registers {
    fn from(regs: GeneralRegisters) -> Registers {
        Registers::Aarch64(regs)
    }
}

/// The value of an `NT_ARM_TLS` descriptor: `TPIDR_EL0` (newer kernels
/// append `TPIDR2_EL0`).
pub fn thread_pointer_note(desc: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(desc.get(..8)?.try_into().ok()?))
}

/// The instruction-address mask of an `NT_ARM_PAC_MASK` descriptor
/// (`struct user_pac_mask { data_mask, insn_mask }`): the bits a pointer
/// authentication code occupies in a code address.
pub fn pac_mask_note(desc: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(desc.get(8..16)?.try_into().ok()?))
}

/// Without an `NT_ARM_PAC_MASK` note: a user-space code address has at most
/// 48 significant bits (the kernel's default virtual-address size), so every
/// bit above can only be a pointer-authentication code or a tag.
const DEFAULT_PAC_MASK: u64 = !((1 << 48) - 1);

/// A code address read from the stack or a register, with any pointer
/// authentication code removed: `mask` is the core's instruction mask when
/// it has one.
pub fn strip_code_address(value: u64, mask: Option<u64>) -> u64 {
    value & !mask.unwrap_or(DEFAULT_PAC_MASK)
}

/// Offset of `tid` in glibc's `struct pthread` on AArch64: after the 24
/// reserved words and the `list` link (stable across glibc versions, as
/// the thread layout variant I puts no TCB header there).
pub const PTHREAD_TID_OFFSET: u64 = 0xd0;

/// How far below the thread pointer glibc's `struct pthread` may start:
/// `sizeof(struct pthread)` grows with glibc versions (0x740 in 2.36, 0x720
/// in 2.41), so the search spans a margin on both sides.
const PTHREAD_SIZE_RANGE: std::ops::RangeInclusive<u64> = 0x500..=0xa00;

/// The thread's `pthread_t` from its thread pointer. glibc's AArch64 TLS
/// (variant I) puts the TCB at the thread pointer and `struct pthread` just
/// below it, so `pthread_t` = TP − `sizeof(struct pthread)`, a size this
/// does not know: the nearest candidate whose `tid` is the thread's LWP and
/// whose `list` link holds two pointers wins.
pub fn pthread_from_thread_pointer(
    read_word: impl Fn(u64) -> Option<u64>,
    thread_pointer: u64,
    lwp: i32,
) -> Option<u64> {
    let lwp = u32::try_from(lwp).ok()?;
    PTHREAD_SIZE_RANGE.step_by(8).find_map(|size| {
        let pthread = thread_pointer.checked_sub(size)?;
        let tid_word = read_word(pthread.checked_add(PTHREAD_TID_OFFSET)?)?;
        let list_next = read_word(pthread.checked_add(PTHREAD_TID_OFFSET - 16)?)?;
        let list_prev = read_word(pthread.checked_add(PTHREAD_TID_OFFSET - 8)?)?;
        let linked = [list_next, list_prev]
            .iter()
            .all(|&p| p != 0 && p.is_multiple_of(8));
        ((tid_word & 0xffff_ffff) as u32 == lwp && linked).then_some(pthread)
    })
}

/// Frames farther apart than this are not a frame-pointer chain.
const MAX_FRAME_SIZE: u64 = 1 << 24;

/// AAPCS64 frame records: x29 points at `{caller's x29, x30}`, stored by the
/// prologue's `stp x29, x30, [sp, #-n]!`. The caller's sp is at least just
/// above the record (the exact value needs the CFI).
pub fn frame_pointer_step(
    read_word: impl Fn(u64) -> Option<u64>,
    regs: &UnwindRegisters,
    pac_mask: Option<u64>,
) -> Option<UnwindRegisters> {
    let fp = regs.fp()?;
    let sp = regs.sp()?;
    if fp < sp || fp % 16 != 0 || fp - sp > MAX_FRAME_SIZE {
        return None;
    }
    let mut next = *regs;
    next.forget_caller_saved();
    next.set_fp(Some(read_word(fp)?));
    let lr = read_word(fp.wrapping_add(8))?;
    next.set_return_address(Some(strip_code_address(lr, pac_mask)));
    next.set_sp(Some(fp.wrapping_add(16)));
    Some(next)
}

/// Instructions are 4 bytes.
pub const CALL_LOOKBACK: usize = 4;

/// Whether the instruction before an address is a call: `bl imm26`, `blr
/// xN`, or the pointer-authenticating `blraa`/`blrab`/`blraaz`/`blrabz`.
pub fn follows_call(before: &[u8]) -> bool {
    let Ok(word) = <[u8; 4]>::try_from(before) else {
        return false;
    };
    let insn = u32::from_le_bytes(word);
    let bl = insn & 0xfc00_0000 == 0x9400_0000;
    let blr = insn & 0xffff_fc1f == 0xd63f_0000;
    // BLRAA/BLRAB (0xd73f08xx/0xd73f0cxx) and BLRAAZ/BLRABZ (0xd63f081f/0xd63f0c1f).
    let blra = insn & 0xfeff_f800 == 0xd63f_0800;
    bl || blr || blra
}

/// `bl imm26` is one instruction.
pub const DIRECT_CALL_LENGTH: usize = 4;

/// The target of `bl imm26` ending at `return_address`.
pub fn direct_call_target(return_address: u64, call: &[u8]) -> Option<u64> {
    let insn = u32::from_le_bytes(call.try_into().ok()?);
    if insn & 0xfc00_0000 != 0x9400_0000 {
        return None;
    }
    // imm26, sign-extended, in words, from the address of the bl itself.
    let words = ((insn << 6) as i32) >> 6;
    let bl_address = return_address.wrapping_sub(4);
    Some(bl_address.wrapping_add((i64::from(words) * 4) as u64))
}

/// `adrp x16, page; ldr x17, [x16, #off]; add x16, x16, #off; br x17`, with
/// an optional leading `bti c`.
pub const PLT_STUB_LENGTH: usize = 20;

/// The GOT slot of a PLT stub: `adrp x16` then `ldr x17, [x16, #imm]`.
pub fn plt_slot(stub: u64, code: &[u8]) -> Option<u64> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            code.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    // `bti c` (hint #34) opens stubs of branch-protected binaries.
    let first = usize::from(word(0)? == 0xd503_245f);
    let adrp = word(first)?;
    let ldr = word(first + 1)?;
    // adrp x16: op=1, bits 28..24 = 10000, Rd = 16.
    if adrp & 0x9f00_001f != 0x9000_0010 {
        return None;
    }
    // ldr x17, [x16, #imm12 * 8]: 64-bit unsigned-offset load, Rn = 16, Rt = 17.
    if ldr & 0xffc0_03ff != 0xf940_0211 {
        return None;
    }
    let immlo = u64::from((adrp >> 29) & 3);
    let immhi = u64::from((adrp >> 5) & 0x7_ffff);
    let page_delta = (((immhi << 2 | immlo) << 43) as i64 >> 43) << 12;
    let adrp_address = stub.wrapping_add(4 * first as u64);
    let page = (adrp_address & !0xfff).wrapping_add(page_delta as u64);
    let offset = u64::from((ldr >> 10) & 0xfff) * 8;
    Some(page.wrapping_add(offset))
}

/// The kernel's signal-return trampoline in the vDSO.
pub const SIGNAL_TRAMPOLINE: &str = "__kernel_rt_sigreturn";

/// `struct rt_sigframe` at the trampoline's sp: the 128-byte `siginfo_t`,
/// then `struct ucontext`, whose `uc_mcontext` (`struct sigcontext`) is 16-
/// aligned after `uc_flags`, `uc_link`, `uc_stack` and the 128-byte signal
/// mask: `fault_address`, `regs[31]`, `sp`, `pc`, `pstate`.
const SIGFRAME_MCONTEXT: u64 = 128 + 176;
const SIGCONTEXT_REGS: u64 = SIGFRAME_MCONTEXT + 8;
const SIGCONTEXT_SP: u64 = SIGCONTEXT_REGS + 31 * 8;
const SIGCONTEXT_PC: u64 = SIGCONTEXT_SP + 8;
const SIGCONTEXT_PSTATE: u64 = SIGCONTEXT_PC + 8;

/// The interrupted frame's registers from the `rt_sigframe` at the
/// trampoline's sp: x0–x30 and sp as saved, and the interrupted pc in the
/// pc column (x30 stays that frame's link register, which a leaf function
/// interrupted before saving it still needs). `None` unless the frame looks
/// like one: a signal number (or none: QEMU leaves `siginfo` unwritten for a
/// handler without `SA_SIGINFO`), and a pstate of user mode (EL0).
pub fn signal_frame_registers(
    read_word: impl Fn(u64) -> Option<u64>,
    trampoline_sp: u64,
) -> Option<UnwindRegisters> {
    let signo = read_word(trampoline_sp)? & 0xffff_ffff;
    if signo > 64 {
        return None;
    }
    sigcontext_registers(read_word, trampoline_sp)
}

/// The trampoline's two instructions, as one little-endian word: `mov x8,
/// #139` (`__NR_rt_sigreturn`), `svc #0`; the vDSO's `__kernel_rt_sigreturn`
/// and QEMU's trampoline page alike.
pub const SIGRETURN_CODE: u64 = 0xd400_0001_d280_1168;

/// As [`signal_frame_registers`], for the trampoline at `trampoline_pc`:
/// when its code is [`SIGRETURN_CODE`] the frame is a signal frame whatever
/// its `siginfo` holds (QEMU writes none for a handler without
/// `SA_SIGINFO`, leaving what was on the stack: faulthandler's alternate
/// stack is reused heap memory), so only the pstate is checked.
pub fn signal_frame_registers_at(
    read_word: impl Fn(u64) -> Option<u64>,
    trampoline_pc: u64,
    trampoline_sp: u64,
) -> Option<UnwindRegisters> {
    if read_word(trampoline_pc) == Some(SIGRETURN_CODE) {
        sigcontext_registers(read_word, trampoline_sp)
    } else {
        signal_frame_registers(read_word, trampoline_sp)
    }
}

/// The registers saved in the `rt_sigframe` at `trampoline_sp`, `None`
/// unless its pstate is user mode (EL0).
fn sigcontext_registers(
    read_word: impl Fn(u64) -> Option<u64>,
    trampoline_sp: u64,
) -> Option<UnwindRegisters> {
    let at = |offset: u64| read_word(trampoline_sp.wrapping_add(offset));
    let pstate = at(SIGCONTEXT_PSTATE)?;
    // M[4:0] = 0 is AArch64 EL0t; bits above 32 are reserved zero.
    if pstate & 0x1f != 0 || pstate >> 32 != 0 {
        return None;
    }
    let mut regs = UnwindRegisters::new(super::ArchId::Aarch64);
    for n in 0..31u16 {
        regs.set(n, Some(at(SIGCONTEXT_REGS + 8 * u64::from(n))?));
    }
    regs.set(dwarf::SP, Some(at(SIGCONTEXT_SP)?));
    regs.set(dwarf::PC, Some(at(SIGCONTEXT_PC)?));
    Some(regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchId;

    use crate::arch::test_words as words;

    fn put(bytes: &mut [u8], at: u64, value: u64) {
        let at = at as usize;
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn prstatus_registers_round_trip() {
        let mut desc = vec![0u8; PRSTATUS_SIZE];
        for i in 0..34u64 {
            put(&mut desc, PRSTATUS_REGS_OFFSET as u64 + 8 * i, 0x1000 + i);
        }
        let regs = ArchId::Aarch64.prstatus_registers(&desc).unwrap();
        assert_eq!(regs.arch(), ArchId::Aarch64);
        for (i, (name, value)) in regs.named().into_iter().enumerate() {
            assert_eq!(name, REGISTER_NAMES[i]);
            assert_eq!(value, 0x1000 + i as u64);
            assert_eq!(regs.by_name(name), Some(value));
        }
        assert_eq!(regs.pc(), 0x1000 + 32);
        assert_eq!(regs.sp(), 0x1000 + 31);
        assert_eq!(regs.fp(), 0x1000 + 29);
        assert_eq!(regs.thread_pointer(), None, "no NT_ARM_TLS");
        assert!(
            ArchId::Aarch64
                .prstatus_registers(&desc[..PRSTATUS_REGS_OFFSET + 33 * 8])
                .is_none()
        );
        let unwind = regs.unwind_registers();
        assert_eq!(unwind.sp(), Some(regs.sp()));
        assert_eq!(
            unwind.return_address(),
            Some(0x1000 + 30),
            "x30 is the link register"
        );
        assert_eq!(unwind.get(dwarf::PC), Some(regs.pc()));
        for n in 0..33 {
            let name = ArchId::Aarch64.register_name(n).unwrap();
            assert_eq!(regs.by_dwarf(n), regs.by_name(name), "{name}");
        }
        assert_eq!(ArchId::Aarch64.register_name(33), None);
    }

    #[test]
    fn call_instructions() {
        let ends = |insn: u32| ArchId::Aarch64.follows_call(&insn.to_le_bytes());
        assert!(ends(0x9400_0010), "bl +0x40");
        assert!(ends(0x97ff_fff0), "bl -0x40");
        assert!(ends(0xd63f_0020), "blr x1");
        assert!(ends(0xd63f_083f), "blraaz x1");
        assert!(ends(0xd73f_0c20), "blrab x1, x0");
        assert!(!ends(0xd61f_0220), "br x17 is not a call");
        assert!(!ends(0x1400_0010), "b is not a call");
        assert!(!ends(0xd65f_03c0), "ret");
        assert!(!ArchId::Aarch64.follows_call(&[0, 0, 0x3f]), "too short");
        let arch = ArchId::Aarch64;
        assert_eq!(
            arch.direct_call_target(0x1004, &0x9400_0010u32.to_le_bytes()),
            Some(0x1040)
        );
        assert_eq!(
            arch.direct_call_target(0x1004, &0x97ff_fff0u32.to_le_bytes()),
            Some(0x1000 - 0x40)
        );
        assert_eq!(
            arch.direct_call_target(0x1004, &0xd63f_0020u32.to_le_bytes()),
            None
        );
    }

    #[test]
    fn plt_stubs() {
        // From an arm64 libc: at 0x27700, adrp x16, 0x1ca000 (+0x1a3000 pages);
        // ldr x17, [x16, #0xf88]; add x16, x16, #0xf88; br x17.
        let stub = 0x27700u64;
        let page_delta: u64 = 0x1ca000 - 0x27000;
        let imm = page_delta >> 12;
        let adrp = 0x9000_0010u32 | ((imm as u32 & 3) << 29) | (((imm >> 2) as u32) << 5);
        let ldr = 0xf940_0211u32 | ((0xf88 / 8) << 10);
        let mut code = Vec::new();
        for insn in [adrp, ldr, 0x913e_2210, 0xd61f_0220, 0xd503_201f] {
            code.extend(insn.to_le_bytes());
        }
        assert_eq!(
            ArchId::Aarch64.plt_slot(stub, &code),
            Some(0x1ca000 + 0xf88)
        );
        let mut bti = 0xd503_245fu32.to_le_bytes().to_vec();
        bti.extend(&code[..16]);
        assert_eq!(
            ArchId::Aarch64.plt_slot(stub - 4, &bti),
            Some(0x1ca000 + 0xf88),
            "bti c first"
        );
        assert_eq!(ArchId::Aarch64.plt_slot(stub, &[0; 20]), None);
        assert_eq!(ArchId::Aarch64.plt_slot(stub, &code[..6]), None);
    }

    #[test]
    fn pointer_authentication_codes_are_stripped() {
        assert_eq!(
            strip_code_address(0x0079_0055_00a2_2c30, None),
            0x55_00a2_2c30
        );
        assert_eq!(strip_code_address(0x005d_0000_005f_1708, None), 0x5f_1708);
        let mask = 0x007f_8000_0000_0000;
        assert_eq!(
            strip_code_address(0x0020_0055_00a2_2c30, Some(mask)),
            0x55_00a2_2c30
        );
        assert_eq!(
            pac_mask_note(&[1, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0x80, 0x7f, 0]),
            Some(0x007f_8000_0000_0000)
        );
        assert_eq!(pac_mask_note(&[0; 12]), None);
    }

    #[test]
    fn frame_records_and_scans() {
        let sp = 0x55_0000_1000u64;
        let mut stack = vec![0u8; 128];
        put(&mut stack, 32, sp + 96); // saved x29
        put(&mut stack, 40, 0x0012_0000_0040_1234); // signed x30
        let memory = words(sp, stack);
        let mut regs = UnwindRegisters::new(ArchId::Aarch64);
        regs.set_sp(Some(sp));
        regs.set_fp(Some(sp + 32));
        regs.set(5, Some(55));
        regs.set(20, Some(20));
        let next = ArchId::Aarch64
            .frame_pointer_step(&memory, &regs, None)
            .unwrap();
        assert_eq!(next.fp(), Some(sp + 96));
        assert_eq!(next.return_address(), Some(0x40_1234), "PAC stripped");
        assert_eq!(next.sp(), Some(sp + 48));
        assert_eq!(next.get(5), None, "x5 is caller-saved");
        assert_eq!(next.get(20), Some(20), "x20 is callee-saved");
        regs.set_fp(Some(sp + 8));
        assert!(
            ArchId::Aarch64
                .frame_pointer_step(&memory, &regs, None)
                .is_none(),
            "a frame record is 16-aligned"
        );
        let scanned = ArchId::Aarch64.scanned_caller(&regs, sp + 40, 0x40_1234);
        assert_eq!(scanned.sp(), Some(sp + 48));
        assert_eq!(scanned.return_address(), Some(0x40_1234));
    }

    #[test]
    fn pthread_from_the_thread_pointer() {
        let pthread = 0x55_00b6_1440u64;
        let tp = pthread + 0x720;
        let base = pthread - 0x600;
        let mut bytes = vec![0u8; 0x1000];
        put(&mut bytes, pthread - base + 0xc0, 0x55_00b6_0000);
        put(&mut bytes, pthread - base + 0xc8, 0x55_00b6_0000);
        put(&mut bytes, pthread - base + 0xd0, 17151);
        // A decoy closer to the thread pointer: the lwp without a list link.
        put(&mut bytes, pthread + 0x40 - base + 0xd0, 17151);
        let memory = words(base, bytes);
        assert_eq!(
            pthread_from_thread_pointer(&memory, tp, 17151),
            Some(pthread)
        );
        assert_eq!(pthread_from_thread_pointer(&memory, tp, 17152), None);
        assert_eq!(pthread_from_thread_pointer(&memory, 0x10, 1), None);
    }

    #[test]
    fn signal_frames() {
        let sp = 0x55_0080_0000u64;
        let mut frame = vec![0u8; SIGCONTEXT_PSTATE as usize + 8];
        put(&mut frame, 0, 11);
        for n in 0..31 {
            put(&mut frame, SIGCONTEXT_REGS + 8 * n, 0x100 + n);
        }
        put(&mut frame, SIGCONTEXT_SP, 0x55_0090_0000);
        put(&mut frame, SIGCONTEXT_PC, 0x40_5678);
        put(&mut frame, SIGCONTEXT_PSTATE, 0x6000_0000);
        let memory = words(sp, frame.clone());
        let regs = ArchId::Aarch64.signal_frame_registers(&memory, sp).unwrap();
        assert_eq!(regs.get(0), Some(0x100));
        assert_eq!(regs.get(30), Some(0x100 + 30), "x30 as saved");
        assert_eq!(regs.sp(), Some(0x55_0090_0000));
        assert_eq!(regs.get(dwarf::PC), Some(0x40_5678));
        put(&mut frame, SIGCONTEXT_PSTATE, 0x6000_0005);
        let memory = words(sp, frame.clone());
        assert!(
            ArchId::Aarch64
                .signal_frame_registers(&memory, sp)
                .is_none(),
            "EL1h is no user frame"
        );
        put(&mut frame, SIGCONTEXT_PSTATE, 0);
        put(&mut frame, 0, 1000);
        let memory = words(sp, frame);
        assert!(
            ArchId::Aarch64
                .signal_frame_registers(&memory, sp)
                .is_none(),
            "no signal number"
        );
        // Unless the return address is the sigreturn code: QEMU leaves
        // siginfo unwritten for a handler without SA_SIGINFO.
        let code = 0x55_0084_3000u64;
        let reader = |a: u64| {
            if a == code {
                Some(SIGRETURN_CODE)
            } else {
                memory(a)
            }
        };
        let regs = signal_frame_registers_at(reader, code, sp).unwrap();
        assert_eq!(regs.get(dwarf::PC), Some(0x40_5678));
        assert!(signal_frame_registers_at(&memory, code, sp).is_none());
    }
}
