//! Native stacks: unwinding each thread from its registers with the CFI in
//! `.eh_frame` (gimli), falling back to frame pointers.
//!
//! A frame's address is either the instruction pointer of the innermost (or
//! signal-interrupted) frame or a return address; lookups use the return
//! address minus one so that a call at a function's very end (to a function
//! that never returns, like `abort`) is attributed to its caller.

// The tests read a module's CFI on its own; nothing else outside does.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod cfi;
#[cfg(not(feature = "test-support"))]
pub(crate) mod cfi;

use std::collections::HashMap;

use serde::Serialize;

use crate::arch::{ArchId, UnwindRegisters};
use crate::memory::{Memory, MemoryExt};
use crate::modules::Module;
use crate::process::Process;

/// Frames unwound per thread, at most: deep Python recursion takes several
/// C frames per Python frame (a recursion limit of 1000 makes 5000 on 3.7).
pub const MAX_DEPTH: usize = 20_000;

/// How a frame was found, most trustworthy first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trust {
    /// The thread's registers.
    Context,
    /// Call-frame information.
    Cfi,
    /// The frame-pointer chain.
    FramePointer,
    /// A scan of the stack for a word that points just after a call
    /// instruction: a guess, used only where CFI and frame pointers fail.
    Scan,
    /// Not on the stack: the function ended in a tail call (a jump) toward
    /// the frame inside it, as the DWARF call sites of its caller's callee
    /// record (`DW_AT_call_tail_call`). Its address is after the jump.
    TailCall,
}

/// Which ways of finding a caller `unwind_thread_with` may use, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    /// Call-frame information (`.eh_frame`, `.debug_frame`).
    pub cfi: bool,
    /// The frame-pointer chain.
    pub frame_pointer: bool,
    /// Stack scanning.
    pub scan: bool,
}

impl Default for Methods {
    fn default() -> Methods {
        Methods {
            cfi: true,
            frame_pointer: true,
            scan: true,
        }
    }
}

/// Stack words a scan looks at for one frame, at most.
const MAX_SCAN_WORDS: u64 = 2048;

/// The address a frame is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "address", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FrameAddress {
    /// An instruction pointer: the innermost frame, or one a signal interrupted.
    InstructionPointer(u64),
    /// A return address: the instruction after a call.
    ReturnAddress(u64),
}

impl FrameAddress {
    /// The raw address.
    pub fn address(self) -> u64 {
        match self {
            FrameAddress::InstructionPointer(a) | FrameAddress::ReturnAddress(a) => a,
        }
    }
    /// The address to look up: inside the call instruction for return addresses.
    pub fn lookup(self) -> u64 {
        match self {
            FrameAddress::InstructionPointer(a) => a,
            FrameAddress::ReturnAddress(a) => a.saturating_sub(1),
        }
    }
}

/// One native frame.
#[derive(Debug, Clone, Serialize)]
pub struct NativeFrame {
    /// Where it is.
    pub address: FrameAddress,
    /// Its stack pointer.
    pub sp: u64,
    /// How it was found.
    pub trust: Trust,
    /// The module holding the address.
    pub module: Option<String>,
    /// Build-id of the module, hex.
    pub build_id: Option<String>,
    /// Offset of the address in the module (from its load bias).
    pub module_offset: Option<u64>,
    /// The function, when a symbol covers the address.
    pub function: Option<String>,
    /// Offset into the function.
    pub function_offset: Option<u64>,
    /// A signal handler trampoline (`__restore_rt`): the next frame was interrupted.
    pub signal_frame: bool,
    /// Source lines from DWARF, when asked for and available: the innermost
    /// inlined function first, the function holding the code last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<crate::dwarf::SourceFrame>,
}

/// Why the unwind stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The CFI says the return address is undefined: the outermost frame (`_start`, `clone`).
    Outermost,
    /// A return address of zero.
    ReturnAddressZero,
    /// The stack pointer did not move up.
    StackNotIncreasing,
    /// No CFI and no usable frame pointer for this address.
    NoUnwindInfo(String),
    /// A register or the stack could not be read.
    Unreadable(String),
    /// The depth cap.
    TooDeep,
}

/// A thread's native stack.
#[derive(Debug, Clone, Serialize)]
pub struct NativeStack {
    /// Innermost first.
    pub frames: Vec<NativeFrame>,
    /// Why it ended.
    pub stop: StopReason,
}

/// Unwind the thread with this LWP (once per process: later calls share it).
pub fn unwind_thread(process: &Process, lwp: i32) -> Option<NativeStack> {
    unwind_thread_with_registers(process, lwp).map(|(stack, _)| stack)
}

/// Unwind the thread with this LWP using only `methods`.
pub fn unwind_thread_with(process: &Process, lwp: i32, methods: Methods) -> Option<NativeStack> {
    unwind(process, lwp, methods, &mut |_| {})
}

/// Unwind the thread with this LWP, with the registers each frame had as
/// far as the unwind knows them (all in the innermost frame; the
/// callee-saved ones that CFI restores in the outer frames), frame by frame.
pub fn unwind_thread_with_registers(
    process: &Process,
    lwp: i32,
) -> Option<(NativeStack, Vec<UnwindRegisters>)> {
    /// One thread's unwind with every method, as [`Process::memoized`] keeps it.
    struct Unwound(Option<(NativeStack, Vec<UnwindRegisters>)>);
    let key = u64::from(lwp as u32);
    let unwound = process.memoized(key, || {
        let mut registers = Vec::new();
        let stack = unwind(process, lwp, Methods::default(), &mut |r| {
            registers.push(*r)
        });
        Unwound(stack.map(|s| (s, registers)))
    });
    unwound.0.clone()
}

/// The unwind, handing `frame_registers` each frame's registers as the frame is kept.
fn unwind(
    process: &Process,
    lwp: i32,
    methods: Methods,
    frame_registers: &mut dyn FnMut(&UnwindRegisters),
) -> Option<NativeStack> {
    let thread = process.threads().iter().find(|t| t.lwp == lwp)?;
    let arch = thread.registers.arch();
    let mut regs = thread.registers.unwind_registers();
    let memory = process.memory();
    let stack_segment = process.core().segment_index(thread.registers.sp());
    let mut cache: HashMap<usize, Option<cfi::ModuleCfi<'_>>> = HashMap::new();
    let mut frames = Vec::new();
    let mut address = FrameAddress::InstructionPointer(thread.registers.pc());
    let mut trust = Trust::Context;
    let mut interrupted = false;
    let stop = loop {
        if frames.len() >= MAX_DEPTH {
            break StopReason::TooDeep;
        }
        let sp = regs.sp().unwrap_or(0);
        let module = process.modules().by_address(address.address());
        let mut frame = describe(module.map(|m| &**m), address, sp, trust);
        let cfi_step = module.filter(|_| methods.cfi).map(|m| {
            let index = process
                .modules()
                .modules()
                .iter()
                .position(|x| std::ptr::eq(&**x, &**m))
                .unwrap_or(usize::MAX);
            match cache.entry(index).or_insert_with(|| cfi::ModuleCfi::new(m)) {
                Some(c) => c.step(memory, address.lookup(), &regs),
                None => Err(cfi::StepError::NoCfi(format!(
                    "{} has no .eh_frame",
                    m.name()
                ))),
            }
        });
        // AArch64 reads a signal frame from the kernel's layout: the
        // trampoline's CFI (or, under QEMU, the trampoline's whole file) does
        // not give the interrupted frame.
        let signal_step = match address {
            FrameAddress::ReturnAddress(pc)
                if arch.reads_signal_frames()
                    && (module.is_none()
                        || frame.function.as_deref() == Some(arch.signal_trampoline())) =>
            {
                arch.signal_frame_registers_at(|a| memory.read_u64(a).ok(), pc, sp)
                    .filter(|r| plausible_resume(process, arch, r))
            }
            _ => None,
        };
        let step = match (signal_step, cfi_step) {
            (Some(next), _) => Ok((next, true, Trust::Cfi)),
            (None, cfi_step) => match cfi_step {
                Some(Ok((next, is_signal))) => Ok((next, is_signal, Trust::Cfi)),
                Some(Err(cfi::StepError::Outermost)) => Err(StopReason::Outermost),
                Some(Err(cfi::StepError::NoCfi(e) | cfi::StepError::Unreadable(e))) => {
                    Err(StopReason::NoUnwindInfo(e))
                }
                None if !methods.cfi => Err(StopReason::NoUnwindInfo("CFI not used".into())),
                None => Err(StopReason::NoUnwindInfo(format!(
                    "{:#x} is in no module",
                    address.address()
                ))),
            },
        };
        // Without CFI, the frame pointer may still lead on; failing that, a
        // scan of the stack for a return address.
        let step = match step {
            Err(StopReason::NoUnwindInfo(e)) => methods
                .frame_pointer
                .then(|| {
                    arch.frame_pointer_step(
                        |a| memory.read_u64(a).ok(),
                        &regs,
                        process.core().pac_mask(),
                    )
                })
                .flatten()
                .map(|next| (next, false, Trust::FramePointer))
                .or_else(|| {
                    methods
                        .scan
                        .then(|| scan_step(process, &regs))
                        .flatten()
                        .map(|next| (next, false, Trust::Scan))
                })
                .ok_or(StopReason::NoUnwindInfo(e)),
            other => other,
        };
        let (next, is_signal, next_trust) = match step {
            Ok(s) => s,
            Err(reason) => {
                frames.push(frame);
                frame_registers(&regs);
                break reason;
            }
        };
        if is_signal && let FrameAddress::ReturnAddress(a) = address {
            // A signal trampoline's CFI is marked 'S': its "return address" is
            // where execution resumes (sigreturn), not after a call. Name it as is.
            frame = describe(
                module.map(|m| &**m),
                FrameAddress::InstructionPointer(a),
                sp,
                trust,
            );
        }
        frame.signal_frame = is_signal;
        frames.push(frame);
        frame_registers(&regs);
        // A signal frame resumes at the interrupted pc, which AArch64 keeps
        // apart from the link register.
        let resume = if is_signal {
            next.get(arch.resume_address_register())
        } else {
            next.return_address()
        };
        let Some(ra) = resume.map(|a| process.core().code_address(a)) else {
            break StopReason::Outermost;
        };
        if ra == 0 {
            break StopReason::ReturnAddressZero;
        }
        let next_sp = next.sp().unwrap_or(0);
        // A leaf function on AArch64 returns through the link register
        // without a frame: the innermost (or an interrupted) frame's caller
        // may share its stack pointer.
        let leaf = next_sp == sp && arch.return_address_in_register() && trust == Trust::Context;
        if next_sp <= sp && !is_signal && !interrupted && !leaf {
            break StopReason::StackNotIncreasing;
        }
        if stack_segment.is_some() && process.core().segment_index(next_sp).is_none() {
            break StopReason::Unreadable(format!(
                "the stack pointer {next_sp:#x} left the dumped memory"
            ));
        }
        // The frame a signal interrupted is at an instruction pointer, not a return address.
        address = if is_signal {
            FrameAddress::InstructionPointer(ra)
        } else {
            FrameAddress::ReturnAddress(ra)
        };
        interrupted = is_signal;
        trust = next_trust;
        regs = next;
        if is_signal && arch.return_address_in_register() {
            // The interrupted frame's registers were saved whole, its pc
            // exact: it may be a leaf, like the innermost frame.
            trust = Trust::Context;
            regs.set(arch.resume_address_register(), Some(ra));
        }
    };
    Some(NativeStack { frames, stop })
}

/// A frame at `address`, named from `module`'s symbols.
pub(crate) fn describe(
    module: Option<&Module>,
    address: FrameAddress,
    sp: u64,
    trust: Trust,
) -> NativeFrame {
    let mut frame = NativeFrame {
        address,
        sp,
        trust,
        module: None,
        build_id: None,
        module_offset: None,
        function: None,
        function_offset: None,
        signal_frame: false,
        source: Vec::new(),
    };
    if let Some(m) = module {
        frame.module = Some(m.name().to_string());
        frame.build_id = m.build_id_hex();
        if let Some(bias) = m.load_bias {
            let svma = address.lookup().wrapping_sub(bias);
            frame.module_offset = Some(address.address().wrapping_sub(bias));
            if let Some((name, start)) = m.symbol_at(svma) {
                frame.function = Some(name);
                frame.function_offset =
                    Some(address.address().wrapping_sub(bias).wrapping_sub(start));
            }
        }
    }
    frame
}

/// The caller's registers from the first word above the stack pointer that
/// looks like a return address: it points into executable memory just after
/// a call instruction. Only the stack pointer and return address are known.
fn scan_step(process: &Process, regs: &UnwindRegisters) -> Option<UnwindRegisters> {
    let memory = process.memory();
    let sp = regs.sp()?;
    for i in 0..MAX_SCAN_WORDS {
        let slot = sp.checked_add(i * 8)?;
        let Ok(candidate) = memory.read_u64(slot) else {
            return None;
        };
        let candidate = process.core().code_address(candidate);
        if is_return_address(process, regs.arch(), candidate) {
            return Some(regs.arch().scanned_caller(regs, slot, candidate));
        }
    }
    None
}

/// Whether a signal frame read from the stack resumes somewhere real: its
/// pc in executable memory and its stack pointer in the dumped memory.
fn plausible_resume(process: &Process, arch: ArchId, regs: &UnwindRegisters) -> bool {
    let core = process.core();
    let pc = regs
        .get(arch.resume_address_register())
        .map(|a| core.code_address(a));
    let in_code = pc
        .and_then(|pc| core.segment_index(pc))
        .is_some_and(|i| core.segments()[i].perms.execute);
    in_code && regs.sp().and_then(|sp| core.segment_index(sp)).is_some()
}

fn is_return_address(process: &Process, arch: ArchId, address: u64) -> bool {
    let core = process.core();
    let executable = core
        .segment_index(address)
        .is_some_and(|i| core.segments()[i].perms.execute);
    let lookback = arch.call_lookback();
    if !executable || address < lookback as u64 {
        return false;
    }
    let mut buffer = [0u8; 16];
    let Some(before) = buffer.get_mut(..lookback) else {
        return false;
    };
    process
        .memory()
        .read_exact_at(address - lookback as u64, before)
        .is_ok_and(|()| arch.follows_call(before))
}
