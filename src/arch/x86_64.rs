//! x86-64 on Linux: the System V ABI, the kernel's `user_regs_struct` and
//! signal frame, and the few instruction encodings the unwinder decodes.

use super::{Registers, UnwindRegisters};

/// DWARF numbers 0–16 are tracked: the 16 general registers and the
/// return-address column.
pub const DWARF_REGISTER_COUNT: usize = 17;

/// DWARF register numbers (System V psABI, figure 3.36).
pub mod dwarf {
    /// rbp.
    pub const FP: u16 = 6;
    /// rsp.
    pub const SP: u16 = 7;
    /// The return-address column (rip).
    pub const RETURN_ADDRESS: u16 = 16;
    /// rdi, rsi, rdx, rcx, r8, r9.
    pub const ARGUMENTS: [u16; 6] = [5, 4, 1, 2, 8, 9];
    /// rax, rdx, rcx, rsi, rdi, r8–r11.
    pub const CALLER_SAVED: [u16; 9] = [0, 1, 2, 4, 5, 8, 9, 10, 11];
    /// The general-purpose registers but rsp: rax, rdx, rcx, rbx, rsi,
    /// rdi, rbp, r8–r15.
    pub const GENERAL: [u16; 15] = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15];
}

/// The System V red zone: 128 bytes below rsp.
pub const RED_ZONE: u64 = 128;

/// Names of the 27 registers of `user_regs_struct`, in its order.
pub const REGISTER_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// Names of DWARF registers 0–16.
const DWARF_NAMES: [&str; DWARF_REGISTER_COUNT] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip",
];

/// Position in `user_regs_struct` of DWARF registers 0–16.
const DWARF_TO_USER_REGS: [usize; DWARF_REGISTER_COUNT] =
    [10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0, 16];

const USER_RIP: usize = 16;
const USER_RSP: usize = 19;
const USER_RBP: usize = 4;
const USER_FS_BASE: usize = 21;

/// Size of `struct elf_prstatus`.
pub const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` in `struct elf_prstatus`.
const PRSTATUS_REGS_OFFSET: usize = 112;

/// Size of `user_regs_struct`, as `PTRACE_GETREGSET` fills it.
pub const USER_REGS_SIZE: usize = 27 * 8;
/// Size of `user_fpregs_struct` (`NT_FPREGSET`).
pub const FPREGSET_SIZE: usize = 512;

/// An `NT_PRSTATUS` descriptor for a thread that no signal stopped:
/// `pr_pid`, `pr_ppid` and `pr_reg` (a `user_regs_struct`, shorter input
/// is zero-padded).
pub fn prstatus_descriptor(lwp: i32, ppid: i32, user_regs: &[u8]) -> Vec<u8> {
    let mut desc = vec![0u8; PRSTATUS_SIZE];
    desc[32..36].copy_from_slice(&lwp.to_le_bytes());
    desc[36..40].copy_from_slice(&ppid.to_le_bytes());
    let regs = &user_regs[..user_regs.len().min(USER_REGS_SIZE)];
    desc[PRSTATUS_REGS_OFFSET..PRSTATUS_REGS_OFFSET + regs.len()].copy_from_slice(regs);
    // pr_fpvalid: the thread's NT_FPREGSET follows.
    desc[PRSTATUS_REGS_OFFSET + USER_REGS_SIZE..PRSTATUS_REGS_OFFSET + USER_REGS_SIZE + 4]
        .copy_from_slice(&1i32.to_le_bytes());
    desc
}

/// A `user_regs_struct` holding only a program counter and a stack
/// pointer (what `/proc/PID/task/TID/syscall` tells of a blocked thread).
pub fn user_regs_from_pc_sp(pc: u64, sp: u64) -> Vec<u8> {
    let mut regs = vec![0u8; USER_REGS_SIZE];
    regs[USER_RIP * 8..USER_RIP * 8 + 8].copy_from_slice(&pc.to_le_bytes());
    regs[USER_RSP * 8..USER_RSP * 8 + 8].copy_from_slice(&sp.to_le_bytes());
    regs
}

/// The name of a DWARF register 0–16.
pub fn dwarf_register_name(dwarf: u16) -> Option<&'static str> {
    DWARF_NAMES.get(usize::from(dwarf)).copied()
}

/// The general registers of one thread, in `user_regs_struct` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralRegisters(pub [u64; 27]);

impl GeneralRegisters {
    /// The registers of an `NT_PRSTATUS` descriptor, `None` when it is too short.
    pub fn from_prstatus(desc: &[u8]) -> Option<GeneralRegisters> {
        let bytes = desc.get(PRSTATUS_REGS_OFFSET..PRSTATUS_REGS_OFFSET + 27 * 8)?;
        let mut regs = [0u64; 27];
        for (reg, word) in regs.iter_mut().zip(bytes.chunks_exact(8)) {
            *reg = u64::from_le_bytes(word.try_into().ok()?);
        }
        Some(GeneralRegisters(regs))
    }
    /// rip.
    pub fn pc(&self) -> u64 {
        self.0[USER_RIP]
    }
    /// rsp.
    pub fn sp(&self) -> u64 {
        self.0[USER_RSP]
    }
    /// rbp.
    pub fn fp(&self) -> u64 {
        self.0[USER_RBP]
    }
    /// fs_base: on x86-64 glibc the thread's `pthread_t`.
    pub fn thread_pointer(&self) -> u64 {
        self.0[USER_FS_BASE]
    }
    /// A register by DWARF number 0–16.
    pub fn by_dwarf(&self, dwarf: u16) -> Option<u64> {
        DWARF_TO_USER_REGS
            .get(usize::from(dwarf))
            .map(|&i| self.0[i])
    }
    /// A register by its `user_regs_struct` name.
    pub fn by_name(&self, name: &str) -> Option<u64> {
        REGISTER_NAMES
            .iter()
            .position(|&n| n == name)
            .map(|i| self.0[i])
    }
    /// Every register with its name.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        REGISTER_NAMES.iter().copied().zip(self.0).collect()
    }
}

impl From<GeneralRegisters> for Registers {
    fn from(regs: GeneralRegisters) -> Registers {
        Registers::X86_64(regs)
    }
}

/// Frames farther apart than this are not a frame-pointer chain.
const MAX_FRAME_SIZE: u64 = 1 << 24;

/// `push rbp; mov rbp, rsp`: `[rbp]` is the caller's rbp, `[rbp+8]` the return
/// address, and the caller's rsp is rbp+16.
pub fn frame_pointer_step(
    read_word: impl Fn(u64) -> Option<u64>,
    regs: &UnwindRegisters,
) -> Option<UnwindRegisters> {
    let fp = regs.fp()?;
    let sp = regs.sp()?;
    if fp < sp || fp % 8 != 0 || fp - sp > MAX_FRAME_SIZE {
        return None;
    }
    let mut next = *regs;
    next.set_fp(Some(read_word(fp)?));
    next.set_return_address(Some(read_word(fp.wrapping_add(8))?));
    next.set_sp(Some(fp.wrapping_add(16)));
    Some(next)
}

/// The longest call form [`follows_call`] recognises.
pub const CALL_LOOKBACK: usize = 7;

/// Whether the 7 bytes before an address end with a call instruction:
/// `call rel32` (E8), or `call r/m64` (FF /2) in any addressing form that
/// fits (register, SIB, disp8, disp32, RIP-relative), REX prefix or not.
pub fn follows_call(before: &[u8]) -> bool {
    if before.len() != CALL_LOOKBACK {
        return false;
    }
    if before[2] == 0xE8 {
        return true;
    }
    (0..6).any(|at| {
        let modrm = before[at + 1];
        if before[at] != 0xFF || (modrm >> 3) & 7 != 2 {
            return false;
        }
        let (mode, rm) = (modrm >> 6, modrm & 7);
        let sib = mode != 3 && rm == 4;
        let sib_base = before.get(at + 2).map(|b| b & 7);
        let displacement = match mode {
            1 => 1,
            2 => 4,
            // RIP-relative, or a SIB with no base register.
            0 if rm == 5 || (sib && sib_base == Some(5)) => 4,
            _ => 0,
        };
        at + 2 + usize::from(sib) + displacement == CALL_LOOKBACK
    })
}

/// `call rel32` is 5 bytes.
pub const DIRECT_CALL_LENGTH: usize = 5;

/// The target of `call rel32` ending at `return_address`.
pub fn direct_call_target(return_address: u64, call: &[u8]) -> Option<u64> {
    let [0xE8, a, b, c, d] = *call else {
        return None;
    };
    let displacement = i32::from_le_bytes([a, b, c, d]);
    Some(return_address.wrapping_add(displacement as i64 as u64))
}

/// `endbr64` (4), `bnd` (1), `jmp *disp32(%rip)` (6).
pub const PLT_STUB_LENGTH: usize = 11;

/// The GOT slot of a PLT stub: `endbr64` and `bnd` optional, then
/// `jmp *slot(%rip)`.
pub fn plt_slot(stub: u64, code: &[u8]) -> Option<u64> {
    let mut at = 0;
    if code.get(..4)? == [0xF3, 0x0F, 0x1E, 0xFA] {
        at += 4;
    }
    if *code.get(at)? == 0xF2 {
        at += 1;
    }
    if code.get(at..at + 2)? != [0xFF, 0x25] {
        return None;
    }
    let displacement = i32::from_le_bytes(code.get(at + 2..at + 6)?.try_into().ok()?);
    let next = stub.wrapping_add(at as u64 + 6);
    Some(next.wrapping_add(displacement as i64 as u64))
}

/// glibc's signal-return trampoline.
pub const SIGNAL_TRAMPOLINE: &str = "__restore_rt";

/// Offset of `uc_mcontext.gregs` in `ucontext_t` (after `uc_flags`,
/// `uc_link` and the 24-byte `uc_stack`).
const UCONTEXT_GREGS: u64 = 40;

/// The DWARF register each of the first 17 `gregs` holds (`REG_R8` …
/// `REG_RIP`), rip as the return-address column.
const GREGS_TO_DWARF: [u16; 17] = [8, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7, 16];

/// When the handler returns into `__restore_rt`, rsp points at the
/// `ucontext_t` of the `rt_sigframe` (its `pretcode` popped by `ret`).
pub fn signal_frame_registers(
    read_word: impl Fn(u64) -> Option<u64>,
    trampoline_sp: u64,
) -> Option<UnwindRegisters> {
    let gregs = trampoline_sp.wrapping_add(UCONTEXT_GREGS);
    let mut regs = UnwindRegisters::new(super::ArchId::X86_64);
    for (i, &dwarf) in GREGS_TO_DWARF.iter().enumerate() {
        let value = read_word(gregs.wrapping_add(8 * i as u64))?;
        regs.set(dwarf, Some(value));
    }
    Some(regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchId;

    use crate::arch::test_words as words;

    #[test]
    fn prstatus_registers_round_trip() {
        let mut desc = vec![0u8; PRSTATUS_SIZE];
        for i in 0..27u64 {
            let at = PRSTATUS_REGS_OFFSET + 8 * i as usize;
            desc[at..at + 8].copy_from_slice(&(0x1000 + i).to_le_bytes());
        }
        let regs = ArchId::X86_64.prstatus_registers(&desc).unwrap();
        assert_eq!(regs.arch(), ArchId::X86_64);
        for (i, (name, value)) in regs.named().into_iter().enumerate() {
            assert_eq!(name, REGISTER_NAMES[i]);
            assert_eq!(value, 0x1000 + i as u64);
            assert_eq!(regs.by_name(name), Some(value));
        }
        assert_eq!(regs.pc(), 0x1000 + 16, "rip is user_regs_struct[16]");
        assert_eq!(regs.sp(), 0x1000 + 19, "rsp is user_regs_struct[19]");
        assert_eq!(regs.fp(), 0x1000 + 4, "rbp is user_regs_struct[4]");
        assert_eq!(regs.thread_pointer(), Some(0x1000 + 21), "fs_base is [21]");
        assert_eq!(regs.by_name("no such register"), None);
        assert!(
            ArchId::X86_64
                .prstatus_registers(&desc[..PRSTATUS_SIZE - 40])
                .is_none(),
            "a descriptor cut inside pr_reg"
        );
    }

    #[test]
    fn dwarf_numbers_name_and_reach_the_same_registers() {
        let mut values = [0u64; 27];
        for (i, v) in values.iter_mut().enumerate() {
            *v = i as u64;
        }
        let regs = Registers::from(GeneralRegisters(values));
        for dwarf in 0..17u16 {
            let name = ArchId::X86_64.register_name(dwarf).unwrap();
            assert_eq!(regs.by_dwarf(dwarf), regs.by_name(name), "{name}");
        }
        assert_eq!(ArchId::X86_64.register_name(17), None);
        assert_eq!(regs.by_dwarf(17), None);
        let unwind = regs.unwind_registers();
        assert_eq!(unwind.sp(), Some(regs.sp()));
        assert_eq!(unwind.fp(), Some(regs.fp()));
        assert_eq!(unwind.return_address(), Some(regs.pc()));
        let arguments: Vec<_> = ArchId::X86_64
            .argument_registers()
            .iter()
            .map(|&n| ArchId::X86_64.register_name(n).unwrap())
            .collect();
        assert_eq!(arguments, ["rdi", "rsi", "rdx", "rcx", "r8", "r9"]);
        assert_eq!(regs.dwarf_values().count(), 17);
    }

    #[test]
    fn call_instructions_before_a_return_address() {
        let ends_with = |tail: &[u8]| {
            let mut b = [0x90u8; 7];
            b[7 - tail.len()..].copy_from_slice(tail);
            ArchId::X86_64.follows_call(&b)
        };
        assert!(ends_with(&[0xE8, 1, 2, 3, 4]), "call rel32");
        assert!(ends_with(&[0xFF, 0xD0]), "call rax");
        assert!(ends_with(&[0x41, 0xFF, 0xD3]), "call r11");
        assert!(ends_with(&[0xFF, 0x50, 0x08]), "call [rax+8]");
        assert!(ends_with(&[0xFF, 0x15, 1, 2, 3, 4]), "call [rip+disp32]");
        assert!(ends_with(&[0xFF, 0x90, 1, 2, 3, 4]), "call [rax+disp32]");
        assert!(ends_with(&[0xFF, 0x54, 0x24, 0x08]), "call [rsp+8]");
        assert!(ends_with(&[0xFF, 0x14, 0x24]), "call [rsp]");
        assert!(ends_with(&[0xFF, 0x14, 0x25, 1, 2, 3, 4]), "call [disp32]");
        assert!(
            !ends_with(&[0xFF, 0x14, 0x24, 0x08]),
            "a call that would end early"
        );
        assert!(!ends_with(&[0xFF, 0xE0]), "jmp rax is not a call");
        assert!(!ends_with(&[0x48, 0x89, 0xC7]), "mov rdi, rax");
        assert!(!ends_with(&[]), "nops");
        assert!(!ArchId::X86_64.follows_call(&[0xE8; 6]), "too few bytes");
    }

    #[test]
    fn direct_calls_and_plt_stubs() {
        let arch = ArchId::X86_64;
        let back = (-0x20i32).to_le_bytes();
        let call = [0xE8, back[0], back[1], back[2], back[3]];
        assert_eq!(arch.direct_call_target(0x1000, &call), Some(0xFE0));
        assert_eq!(
            arch.direct_call_target(0x1000, &[0xFF, 0xD0, 0, 0, 0]),
            None
        );
        let jmp = [0xF3, 0x0F, 0x1E, 0xFA, 0xF2, 0xFF, 0x25, 0x10, 0, 0, 0];
        assert_eq!(arch.plt_slot(0x2000, &jmp), Some(0x2000 + 11 + 0x10));
        let plain = [0xFF, 0x25, 0x10, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0x90];
        assert_eq!(arch.plt_slot(0x2000, &plain), Some(0x2000 + 6 + 0x10));
        assert_eq!(arch.plt_slot(0x2000, &[0x90; 11]), None);
        assert_eq!(arch.plt_slot(0x2000, &jmp[..6]), None, "cut short");
    }

    #[test]
    fn frame_pointer_and_scan_rules() {
        let sp = 0x7fff_0000_0000u64;
        let mut stack = vec![0u8; 64];
        stack[16..24].copy_from_slice(&(sp + 48).to_le_bytes()); // saved rbp
        stack[24..32].copy_from_slice(&0x40_1234u64.to_le_bytes()); // return address
        let memory = words(sp, stack);
        let mut regs = UnwindRegisters::new(ArchId::X86_64);
        regs.set_sp(Some(sp));
        regs.set_fp(Some(sp + 16));
        let next = ArchId::X86_64
            .frame_pointer_step(&memory, &regs, None)
            .unwrap();
        assert_eq!(next.fp(), Some(sp + 48));
        assert_eq!(next.return_address(), Some(0x40_1234));
        assert_eq!(next.sp(), Some(sp + 32));
        regs.set_fp(Some(sp - 8));
        assert!(
            ArchId::X86_64
                .frame_pointer_step(&memory, &regs, None)
                .is_none(),
            "a frame pointer below the stack pointer"
        );
        let scanned = ArchId::X86_64.scanned_caller(&regs, sp + 24, 0x40_1234);
        assert_eq!(scanned.sp(), Some(sp + 32));
        assert_eq!(scanned.return_address(), Some(0x40_1234));
        assert_eq!(scanned.fp(), regs.fp());
        assert_eq!(scanned.get(0), None, "nothing else is known");
        // A frame record at the top of the address space wraps, as every
        // pointer read from a core does: no overflow panic.
        let mut top = UnwindRegisters::new(ArchId::X86_64);
        top.set_sp(Some(u64::MAX - 15));
        top.set_fp(Some(u64::MAX - 7));
        let next = ArchId::X86_64
            .frame_pointer_step(|_| Some(0), &top, None)
            .unwrap();
        assert_eq!(next.sp(), Some(8));
    }

    #[test]
    fn signal_frame_registers_from_a_ucontext() {
        let sp = 0x7ffe_0000_1000u64;
        // ucontext_t: uc_flags, uc_link, uc_stack (24 bytes), then gregs:
        // r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip.
        let mut frame = vec![0u8; 40 + 23 * 8];
        let gregs = [
            ("r8", 0x108),
            ("r9", 0x109),
            ("r10", 0x110),
            ("r11", 0x111),
            ("r12", 0x112),
            ("r13", 0x113),
            ("r14", 0x114),
            ("r15", 0x115),
            ("rdi", 0x5d1),
            ("rsi", 0x551),
            ("rbp", 0x7ffe_0000_2000),
            ("rbx", 0xb0),
            ("rdx", 0xd0),
            ("rax", 0xa0),
            ("rcx", 0xc0),
            ("rsp", 0x7ffe_0000_1f00),
            ("rip", 0x40_5678),
        ];
        for (i, (_, value)) in gregs.iter().enumerate() {
            let at = 40 + 8 * i;
            frame[at..at + 8].copy_from_slice(&u64::to_le_bytes(*value));
        }
        let memory = words(sp, frame);
        let regs = ArchId::X86_64.signal_frame_registers(&memory, sp).unwrap();
        for (name, value) in gregs {
            let dwarf = (0..17)
                .find(|&n| ArchId::X86_64.register_name(n) == Some(name))
                .unwrap();
            assert_eq!(regs.get(dwarf), Some(value), "{name}");
        }
        assert_eq!(regs.sp(), Some(0x7ffe_0000_1f00));
        assert_eq!(regs.return_address(), Some(0x40_5678), "the interrupted pc");
        assert!(
            ArchId::X86_64
                .signal_frame_registers(&memory, sp + 64)
                .is_none(),
            "a ucontext past the dumped memory"
        );
    }
}
