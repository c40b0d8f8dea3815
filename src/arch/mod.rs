//! The processor architecture seam: every fact that depends on the
//! instruction set lives here, behind [`ArchId`].
//!
//! The rest of pymortem names no machine register. It asks a thread's
//! [`Registers`] for its `pc`, `sp`, `fp` or thread pointer, reads a register
//! by its DWARF number, unwinds with [`UnwindRegisters`] (the registers the
//! unwinder tracks, by DWARF number), and asks the [`ArchId`] of the core for
//! the rest: the return-address rule, the argument registers of a call, the
//! call-instruction decoder of the stack scan, the red zone and the signal
//! frame. This is the lowest layer: it reads memory only through the word
//! reader its caller passes. Each architecture is one variant here and one
//! module beside [`x86_64`] and [`aarch64`].

pub mod aarch64;
pub mod x86_64;

/// The DWARF register numbers an [`UnwindRegisters`] can hold, at most:
/// the largest count over the architectures.
pub const MAX_DWARF_REGISTERS: usize =
    if x86_64::DWARF_REGISTER_COUNT > aarch64::DWARF_REGISTER_COUNT {
        x86_64::DWARF_REGISTER_COUNT
    } else {
        aarch64::DWARF_REGISTER_COUNT
    };

/// A processor architecture pymortem reads cores of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ArchId {
    /// x86-64 (AMD64), little-endian, System V ABI.
    X86_64,
    /// AArch64 (ARM64), little-endian, AAPCS64.
    Aarch64,
}

impl ArchId {
    /// The architecture of an ELF file with this `e_machine`, if supported.
    pub fn from_elf_machine(e_machine: u16) -> Option<ArchId> {
        match e_machine {
            m if m == object::elf::EM_X86_64.0 => Some(ArchId::X86_64),
            m if m == object::elf::EM_AARCH64.0 => Some(ArchId::Aarch64),
            _ => None,
        }
    }

    /// The ELF `e_machine` of the architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            ArchId::X86_64 => object::elf::EM_X86_64.0,
            ArchId::Aarch64 => object::elf::EM_AARCH64.0,
        }
    }

    /// The name pymortem shows (as in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            ArchId::X86_64 => "x86_64",
            ArchId::Aarch64 => "aarch64",
        }
    }

    /// The DWARF number of the register that holds where a frame a signal
    /// interrupted resumes; the return-address column on x86-64, the pc
    /// column on AArch64 (where the return-address column is x30).
    pub fn resume_address_register(self) -> u16 {
        match self {
            ArchId::X86_64 => x86_64::dwarf::RETURN_ADDRESS,
            ArchId::Aarch64 => aarch64::dwarf::PC,
        }
    }

    /// Whether the return-address column is a real register (AArch64's
    /// link register), whose value in a function that has not saved it is
    /// the return address; on x86-64 the column is a fiction of the CFI.
    pub fn return_address_in_register(self) -> bool {
        match self {
            ArchId::X86_64 => false,
            ArchId::Aarch64 => true,
        }
    }

    /// A code address read from a register or the stack without the pointer
    /// authentication code a signed return address carries; `pac_mask` is
    /// the core's instruction mask (`NT_ARM_PAC_MASK`) when it has one.
    pub fn code_address(self, value: u64, pac_mask: Option<u64>) -> u64 {
        match self {
            ArchId::X86_64 => value,
            ArchId::Aarch64 => aarch64::strip_code_address(value, pac_mask),
        }
    }

    /// Whether a signal frame is read from the kernel's frame layout rather
    /// than the trampoline's CFI. AArch64's vDSO trampoline CFI only follows
    /// the frame record, which skips the interrupted frame; QEMU's
    /// trampoline is in no file at all.
    pub fn reads_signal_frames(self) -> bool {
        match self {
            ArchId::X86_64 => false,
            ArchId::Aarch64 => true,
        }
    }

    /// The thread's `pthread_t` from its thread pointer and LWP, reading
    /// memory with `read_word` where the relation depends on the C library.
    pub fn pthread_from_thread_pointer(
        self,
        read_word: impl Fn(u64) -> Option<u64>,
        thread_pointer: u64,
        lwp: i32,
    ) -> Option<u64> {
        match self {
            // glibc's TCB is `struct pthread` itself, and fs points at it.
            ArchId::X86_64 => Some(thread_pointer),
            ArchId::Aarch64 => aarch64::pthread_from_thread_pointer(read_word, thread_pointer, lwp),
        }
    }

    /// Offset of the kernel thread id in glibc's `struct pthread`, where
    /// pymortem needs it to tell a `pthread_t` by its thread without the
    /// thread pointer (cores without `NT_ARM_TLS`).
    pub fn pthread_tid_offset(self) -> Option<u64> {
        match self {
            ArchId::X86_64 => None,
            ArchId::Aarch64 => Some(aarch64::PTHREAD_TID_OFFSET),
        }
    }

    /// How many DWARF register numbers (from 0) the unwinder tracks.
    pub fn dwarf_register_count(self) -> u16 {
        match self {
            ArchId::X86_64 => x86_64::DWARF_REGISTER_COUNT as u16,
            ArchId::Aarch64 => aarch64::DWARF_REGISTER_COUNT as u16,
        }
    }

    /// The DWARF number of the stack pointer.
    pub fn stack_pointer_register(self) -> u16 {
        match self {
            ArchId::X86_64 => x86_64::dwarf::SP,
            ArchId::Aarch64 => aarch64::dwarf::SP,
        }
    }

    /// The DWARF number of the frame pointer.
    pub fn frame_pointer_register(self) -> u16 {
        match self {
            ArchId::X86_64 => x86_64::dwarf::FP,
            ArchId::Aarch64 => aarch64::dwarf::FP,
        }
    }

    /// The DWARF return-address column: the register a CFI row's return
    /// address is in.
    pub fn return_address_register(self) -> u16 {
        match self {
            ArchId::X86_64 => x86_64::dwarf::RETURN_ADDRESS,
            ArchId::Aarch64 => aarch64::dwarf::RETURN_ADDRESS,
        }
    }

    /// The registers a call may clobber: unknown in the caller after one step.
    pub fn caller_saved_registers(self) -> &'static [u16] {
        match self {
            ArchId::X86_64 => &x86_64::dwarf::CALLER_SAVED,
            ArchId::Aarch64 => &aarch64::dwarf::CALLER_SAVED,
        }
    }

    /// The DWARF numbers of the integer argument registers, in argument order.
    pub fn argument_registers(self) -> &'static [u16] {
        match self {
            ArchId::X86_64 => &x86_64::dwarf::ARGUMENTS,
            ArchId::Aarch64 => &aarch64::dwarf::ARGUMENTS,
        }
    }

    /// The DWARF numbers of the general-purpose registers that may hold a
    /// pointer to data (not the stack pointer or the program counter).
    pub fn general_registers(self) -> &'static [u16] {
        match self {
            ArchId::X86_64 => &x86_64::dwarf::GENERAL,
            ArchId::Aarch64 => &aarch64::dwarf::GENERAL,
        }
    }

    /// The name of a DWARF register, for display.
    pub fn register_name(self, dwarf: u16) -> Option<&'static str> {
        match self {
            ArchId::X86_64 => x86_64::dwarf_register_name(dwarf),
            ArchId::Aarch64 => aarch64::dwarf_register_name(dwarf),
        }
    }

    /// Bytes below the stack pointer a function may use without moving it
    /// (the ABI's red zone): live data can lie there.
    pub fn red_zone(self) -> u64 {
        match self {
            ArchId::X86_64 => x86_64::RED_ZONE,
            ArchId::Aarch64 => aarch64::RED_ZONE,
        }
    }

    /// The frame-pointer rule: from a frame's registers, its caller's (frame
    /// pointer, return address and stack pointer), reading (with `read_word`) the frame record
    /// the frame pointer points at; `None` when the frame pointer is not a
    /// plausible frame record above the stack pointer or it cannot be read.
    pub fn frame_pointer_step(
        self,
        read_word: impl Fn(u64) -> Option<u64>,
        regs: &UnwindRegisters,
        pac_mask: Option<u64>,
    ) -> Option<UnwindRegisters> {
        match self {
            ArchId::X86_64 => x86_64::frame_pointer_step(read_word, regs),
            ArchId::Aarch64 => aarch64::frame_pointer_step(read_word, regs, pac_mask),
        }
    }

    /// The registers known in the caller when a stack scan found its return
    /// address `return_address` in the word at `slot`. On both architectures
    /// the caller's stack pointer is just above that word (pushed by `call`,
    /// or stored by a prologue in a frame record or spill slot); callee-saved
    /// registers may have been spilled anywhere, so only the frame pointer
    /// is kept, for a frame-pointer chain to pick up from.
    pub fn scanned_caller(
        self,
        regs: &UnwindRegisters,
        slot: u64,
        return_address: u64,
    ) -> UnwindRegisters {
        let mut next = UnwindRegisters::new(self);
        next.set_fp(regs.fp());
        next.set_sp(Some(slot.wrapping_add(8)));
        next.set_return_address(Some(return_address));
        next
    }

    /// How many bytes before a return address [`ArchId::follows_call`] needs.
    pub fn call_lookback(self) -> usize {
        match self {
            ArchId::X86_64 => x86_64::CALL_LOOKBACK,
            ArchId::Aarch64 => aarch64::CALL_LOOKBACK,
        }
    }

    /// Whether `before`, the [`ArchId::call_lookback`] bytes just before an
    /// address, ends with a call instruction: the test the stack scan uses
    /// for a return address.
    pub fn follows_call(self, before: &[u8]) -> bool {
        match self {
            ArchId::X86_64 => x86_64::follows_call(before),
            ArchId::Aarch64 => aarch64::follows_call(before),
        }
    }

    /// How many bytes before a return address [`ArchId::direct_call_target`] needs.
    pub fn direct_call_length(self) -> usize {
        match self {
            ArchId::X86_64 => x86_64::DIRECT_CALL_LENGTH,
            ArchId::Aarch64 => aarch64::DIRECT_CALL_LENGTH,
        }
    }

    /// The target of the direct (pc-relative) call in `call`, the bytes just
    /// before `return_address`; `None` for any other instruction.
    pub fn direct_call_target(self, return_address: u64, call: &[u8]) -> Option<u64> {
        match self {
            ArchId::X86_64 => x86_64::direct_call_target(return_address, call),
            ArchId::Aarch64 => aarch64::direct_call_target(return_address, call),
        }
    }

    /// How many bytes of a PLT stub [`ArchId::plt_slot`] needs.
    pub fn plt_stub_length(self) -> usize {
        match self {
            ArchId::X86_64 => x86_64::PLT_STUB_LENGTH,
            ArchId::Aarch64 => aarch64::PLT_STUB_LENGTH,
        }
    }

    /// The GOT slot a PLT stub at `stub` holding `code` jumps through, when
    /// `code` is such a stub.
    pub fn plt_slot(self, stub: u64, code: &[u8]) -> Option<u64> {
        match self {
            ArchId::X86_64 => x86_64::plt_slot(stub, code),
            ArchId::Aarch64 => aarch64::plt_slot(stub, code),
        }
    }

    /// The name of the C library's signal-return trampoline: the return
    /// address a signal handler's frame is given.
    pub fn signal_trampoline(self) -> &'static str {
        match self {
            ArchId::X86_64 => x86_64::SIGNAL_TRAMPOLINE,
            ArchId::Aarch64 => aarch64::SIGNAL_TRAMPOLINE,
        }
    }

    /// The registers of the frame a signal interrupted, from the `ucontext`
    /// the kernel saved on the stack, given the stack pointer at which the
    /// signal trampoline runs. This is what the trampoline's CFI says, for
    /// when a C library ships the trampoline without CFI.
    pub fn signal_frame_registers(
        self,
        read_word: impl Fn(u64) -> Option<u64>,
        trampoline_sp: u64,
    ) -> Option<UnwindRegisters> {
        match self {
            ArchId::X86_64 => x86_64::signal_frame_registers(read_word, trampoline_sp),
            ArchId::Aarch64 => aarch64::signal_frame_registers(read_word, trampoline_sp),
        }
    }

    /// As [`ArchId::signal_frame_registers`], for the trampoline at
    /// `trampoline_pc`, whose code may vouch for the frame where the saved
    /// `siginfo` cannot (AArch64 under QEMU).
    pub fn signal_frame_registers_at(
        self,
        read_word: impl Fn(u64) -> Option<u64>,
        trampoline_pc: u64,
        trampoline_sp: u64,
    ) -> Option<UnwindRegisters> {
        match self {
            ArchId::X86_64 => x86_64::signal_frame_registers(read_word, trampoline_sp),
            ArchId::Aarch64 => {
                aarch64::signal_frame_registers_at(read_word, trampoline_pc, trampoline_sp)
            }
        }
    }

    /// The sizes of `user_regs_struct` and of the floating-point register
    /// set as `PTRACE_GETREGSET` reads them, for the architectures whose
    /// live processes pymortem can copy (x86-64 only, so far).
    pub fn live_register_sizes(self) -> Option<(usize, usize)> {
        match self {
            ArchId::X86_64 => Some((x86_64::USER_REGS_SIZE, x86_64::FPREGSET_SIZE)),
            ArchId::Aarch64 => None,
        }
    }

    /// An `NT_PRSTATUS` descriptor of a thread no signal stopped, from its
    /// register set as `PTRACE_GETREGSET` gave it.
    pub fn prstatus_descriptor(self, lwp: i32, ppid: i32, user_regs: &[u8]) -> Option<Vec<u8>> {
        match self {
            ArchId::X86_64 => Some(x86_64::prstatus_descriptor(lwp, ppid, user_regs)),
            ArchId::Aarch64 => None,
        }
    }

    /// A register set holding only a program counter and a stack pointer.
    pub fn user_regs_from_pc_sp(self, pc: u64, sp: u64) -> Option<Vec<u8>> {
        match self {
            ArchId::X86_64 => Some(x86_64::user_regs_from_pc_sp(pc, sp)),
            ArchId::Aarch64 => None,
        }
    }

    /// The architecture of the machine pymortem runs on, if it reads its cores.
    pub fn host() -> Option<ArchId> {
        match std::env::consts::ARCH {
            "x86_64" => Some(ArchId::X86_64),
            "aarch64" => Some(ArchId::Aarch64),
            _ => None,
        }
    }

    /// The size of an `NT_PRSTATUS` descriptor.
    pub fn prstatus_size(self) -> usize {
        match self {
            ArchId::X86_64 => x86_64::PRSTATUS_SIZE,
            ArchId::Aarch64 => aarch64::PRSTATUS_SIZE,
        }
    }

    /// The general registers in an `NT_PRSTATUS` descriptor, `None` when it
    /// is too short.
    pub fn prstatus_registers(self, desc: &[u8]) -> Option<Registers> {
        match self {
            ArchId::X86_64 => x86_64::GeneralRegisters::from_prstatus(desc).map(Registers::X86_64),
            ArchId::Aarch64 => {
                aarch64::GeneralRegisters::from_prstatus(desc).map(Registers::Aarch64)
            }
        }
    }
}

/// A thread's general registers as the core saved them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registers {
    /// x86-64's `user_regs_struct`.
    X86_64(x86_64::GeneralRegisters),
    /// AArch64's `user_pt_regs`, with `TPIDR_EL0` when the core saved it.
    Aarch64(aarch64::GeneralRegisters),
}

impl Registers {
    /// The architecture they belong to.
    pub fn arch(&self) -> ArchId {
        match self {
            Registers::X86_64(_) => ArchId::X86_64,
            Registers::Aarch64(_) => ArchId::Aarch64,
        }
    }
    /// The program counter (instruction pointer).
    pub fn pc(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.pc(),
            Registers::Aarch64(r) => r.pc(),
        }
    }
    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.sp(),
            Registers::Aarch64(r) => r.sp(),
        }
    }
    /// The frame pointer.
    pub fn fp(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.fp(),
            Registers::Aarch64(r) => r.fp(),
        }
    }
    /// The thread pointer, when the core saved it (always on x86-64, where
    /// it is glibc's `pthread_t`; from `NT_ARM_TLS` on AArch64).
    pub fn thread_pointer(&self) -> Option<u64> {
        match self {
            Registers::X86_64(r) => Some(r.thread_pointer()),
            Registers::Aarch64(r) => r.tpidr,
        }
    }
    /// Record the thread pointer from a note of its own (`NT_ARM_TLS`).
    pub fn set_thread_pointer(&mut self, value: u64) {
        match self {
            Registers::X86_64(_) => {}
            Registers::Aarch64(r) => r.tpidr = Some(value),
        }
    }
    /// A register by DWARF number, if it is one the core saved.
    pub fn by_dwarf(&self, dwarf: u16) -> Option<u64> {
        match self {
            Registers::X86_64(r) => r.by_dwarf(dwarf),
            Registers::Aarch64(r) => r.by_dwarf(dwarf),
        }
    }
    /// A register by the name the kernel's register structure gives it.
    pub fn by_name(&self, name: &str) -> Option<u64> {
        match self {
            Registers::X86_64(r) => r.by_name(name),
            Registers::Aarch64(r) => r.by_name(name),
        }
    }
    /// Every saved register with its name, in the kernel's order.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        match self {
            Registers::X86_64(r) => r.named(),
            Registers::Aarch64(r) => r.named(),
        }
    }
    /// The values of the registers the unwinder tracks, in DWARF order.
    pub fn dwarf_values(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.arch().dwarf_register_count()).filter_map(|n| self.by_dwarf(n))
    }
    /// The starting point of an unwind: every tracked register known.
    pub fn unwind_registers(&self) -> UnwindRegisters {
        let mut regs = UnwindRegisters::new(self.arch());
        for n in 0..self.arch().dwarf_register_count() {
            regs.set(n, self.by_dwarf(n));
        }
        regs
    }
}

/// The registers an unwind step knows, by DWARF number: each either known
/// or not (a caller-saved register is unknown in the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnwindRegisters {
    arch: ArchId,
    values: [Option<u64>; MAX_DWARF_REGISTERS],
}

impl UnwindRegisters {
    /// None known.
    pub fn new(arch: ArchId) -> UnwindRegisters {
        UnwindRegisters {
            arch,
            values: [None; MAX_DWARF_REGISTERS],
        }
    }
    /// Their architecture.
    pub fn arch(&self) -> ArchId {
        self.arch
    }
    /// The register with this DWARF number, if tracked and known.
    pub fn get(&self, dwarf: u16) -> Option<u64> {
        self.values.get(usize::from(dwarf)).copied().flatten()
    }
    /// Set a tracked register (an untracked number is ignored).
    pub fn set(&mut self, dwarf: u16, value: Option<u64>) {
        if dwarf < self.arch.dwarf_register_count()
            && let Some(slot) = self.values.get_mut(usize::from(dwarf))
        {
            *slot = value;
        }
    }
    /// The stack pointer.
    pub fn sp(&self) -> Option<u64> {
        self.get(self.arch.stack_pointer_register())
    }
    /// Set the stack pointer.
    pub fn set_sp(&mut self, value: Option<u64>) {
        self.set(self.arch.stack_pointer_register(), value);
    }
    /// The frame pointer.
    pub fn fp(&self) -> Option<u64> {
        self.get(self.arch.frame_pointer_register())
    }
    /// Set the frame pointer.
    pub fn set_fp(&mut self, value: Option<u64>) {
        self.set(self.arch.frame_pointer_register(), value);
    }
    /// The return address (in the frame's own registers: where it returns to).
    pub fn return_address(&self) -> Option<u64> {
        self.get(self.arch.return_address_register())
    }
    /// Set the return address.
    pub fn set_return_address(&mut self, value: Option<u64>) {
        self.set(self.arch.return_address_register(), value);
    }
    /// Forget the registers a call may clobber.
    pub fn forget_caller_saved(&mut self) {
        for &n in self.arch.caller_saved_registers() {
            self.set(n, None);
        }
    }
}

/// A word reader over `bytes` at `base`, for the architectures' tests.
#[cfg(test)]
pub(crate) fn test_words(base: u64, bytes: Vec<u8>) -> impl Fn(u64) -> Option<u64> {
    move |address| {
        let at = usize::try_from(address.checked_sub(base)?).ok()?;
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    }
}
