//! Decoding of the 64-bit Linux core-note payloads pymortem needs (the
//! registers in `NT_PRSTATUS` are decoded by [`crate::arch`]).
//!
//! `object` walks the notes; these functions decode their descriptors. Every
//! decoder checks lengths and returns `None` for a payload that is too short,
//! so a damaged note is reported rather than trusted.

use serde::Serialize;

use crate::arch::{ArchId, Registers};

/// Little-endian field readers over a note descriptor.
pub(crate) fn le_u64(data: &[u8], offset: usize) -> Option<u64> {
    let bytes = data.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

pub(crate) fn le_u32(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn le_i32(data: &[u8], offset: usize) -> Option<i32> {
    le_u32(data, offset).map(|v| v as i32)
}

fn le_i16(data: &[u8], offset: usize) -> Option<i16> {
    let bytes = data.get(offset..offset.checked_add(2)?)?;
    Some(i16::from_le_bytes(bytes.try_into().ok()?))
}

/// A NUL-terminated string inside a fixed-size field, lossily decoded.
fn fixed_str(data: &[u8], offset: usize, len: usize) -> Option<String> {
    let field = data.get(offset..offset.checked_add(len)?)?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    Some(String::from_utf8_lossy(&field[..end]).into_owned())
}

/// Decoded `NT_PRSTATUS`: one per thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrStatus {
    /// Signal number that stopped the thread (`pr_cursig`).
    pub cursig: i16,
    /// The thread's kernel id (LWP).
    pub lwp: i32,
    /// Parent pid as seen by the thread.
    pub ppid: i32,
    /// The general registers.
    pub registers: Registers,
}

/// Decode an `NT_PRSTATUS` descriptor of a core of architecture `arch`.
pub fn parse_prstatus(arch: ArchId, desc: &[u8]) -> Option<PrStatus> {
    // The fields before `pr_reg` have one layout on every 64-bit Linux.
    Some(PrStatus {
        cursig: le_i16(desc, 12)?,
        lwp: le_i32(desc, 32)?,
        ppid: le_i32(desc, 36)?,
        registers: arch.prstatus_registers(desc)?,
    })
}

/// Decoded `NT_PRPSINFO`: the process's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PsInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Command name (`comm`, at most 15 bytes).
    pub fname: String,
    /// Start of the argument text (at most 80 bytes, spaces between arguments).
    pub psargs: String,
}

/// Decode an x86-64 `NT_PRPSINFO` descriptor.
pub fn parse_prpsinfo(desc: &[u8]) -> Option<PsInfo> {
    Some(PsInfo {
        uid: le_u32(desc, 16)?,
        gid: le_u32(desc, 20)?,
        pid: le_i32(desc, 24)?,
        ppid: le_i32(desc, 28)?,
        fname: fixed_str(desc, 40, 16)?,
        psargs: fixed_str(desc, 56, 80)?.trim_end().to_string(),
    })
}

/// Decoded `NT_SIGINFO` (a `siginfo_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// errno value associated with the signal.
    pub errno: i32,
    /// Signal code (`si_code`): positive for kernel-generated faults, ≤ 0 for sent signals.
    pub code: i32,
    /// Faulting address, for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP raised by the kernel.
    pub fault_address: Option<u64>,
    /// Sending process, for signals sent by `kill`, `tkill` or `sigqueue`.
    pub sender_pid: Option<i32>,
    /// Sending user, for signals sent by `kill`, `tkill` or `sigqueue`.
    pub sender_uid: Option<u32>,
}

/// Decode a `NT_SIGINFO` descriptor.
pub fn parse_siginfo(desc: &[u8]) -> Option<SigInfo> {
    let signo = le_i32(desc, 0)?;
    let errno = le_i32(desc, 4)?;
    let code = le_i32(desc, 8)?;
    let is_fault_signal = matches!(signo, 4 | 5 | 7 | 8 | 11);
    let (fault_address, sender_pid, sender_uid) = if is_fault_signal && code > 0 {
        (le_u64(desc, 16), None, None)
    } else if code <= 0 {
        (None, le_i32(desc, 16), le_u32(desc, 20))
    } else {
        (None, None, None)
    };
    Some(SigInfo {
        signo,
        errno,
        code,
        fault_address,
        sender_pid,
        sender_uid,
    })
}

/// Auxiliary-vector entries pymortem uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Auxv {
    /// `AT_SYSINFO_EHDR`: base of the vDSO image.
    pub sysinfo_ehdr: Option<u64>,
    /// `AT_EXECFN`: address of the executable's file name string.
    pub execfn: Option<u64>,
    /// `AT_PHDR`: address of the executable's program headers.
    pub phdr: Option<u64>,
    /// `AT_PHENT`: size of one of those program headers.
    pub phent: Option<u64>,
    /// `AT_PHNUM`: how many there are.
    pub phnum: Option<u64>,
    /// `AT_ENTRY`: the executable's entry point.
    pub entry: Option<u64>,
    /// `AT_BASE`: base address of the dynamic loader.
    pub base: Option<u64>,
    /// `AT_PAGESZ`.
    pub page_size: Option<u64>,
}

/// Decode a `NT_AUXV` descriptor; stops at `AT_NULL` or the end of the data.
pub fn parse_auxv(desc: &[u8]) -> Auxv {
    let mut auxv = Auxv::default();
    for pair in desc.chunks_exact(16) {
        let (Some(key), Some(value)) = (le_u64(pair, 0), le_u64(pair, 8)) else {
            break;
        };
        match key {
            0 => break,
            3 => auxv.phdr = Some(value),
            4 => auxv.phent = Some(value),
            5 => auxv.phnum = Some(value),
            6 => auxv.page_size = Some(value),
            7 => auxv.base = Some(value),
            9 => auxv.entry = Some(value),
            31 => auxv.execfn = Some(value),
            33 => auxv.sysinfo_ehdr = Some(value),
            _ => {}
        }
    }
    auxv
}

/// One file mapping from `NT_FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMapping {
    /// First mapped address.
    pub start: u64,
    /// One past the last mapped address.
    pub end: u64,
    /// Offset in the file, in bytes.
    pub file_offset: u64,
    /// The path as the kernel recorded it (a ` (deleted)` suffix is kept here).
    pub path: String,
}

/// Decode a `NT_FILE` descriptor.
///
/// The entry count comes from the core, so it is bounded by what the
/// descriptor can actually hold before anything is allocated.
pub fn parse_nt_file(desc: &[u8]) -> Option<Vec<FileMapping>> {
    let count = le_u64(desc, 0)?;
    let page_size = le_u64(desc, 8)?;
    let max_entries = (desc.len().saturating_sub(16) / 24) as u64;
    if count > max_entries {
        return None;
    }
    let count = count as usize;
    let names_start = 16 + count * 24;
    let mut names = desc.get(names_start..)?.split(|&b| b == 0);
    let mut mappings = Vec::with_capacity(count);
    for i in 0..count {
        let base = 16 + i * 24;
        let start = le_u64(desc, base)?;
        let end = le_u64(desc, base + 8)?;
        let page_offset = le_u64(desc, base + 16)?;
        let path = String::from_utf8_lossy(names.next()?).into_owned();
        if end < start {
            return None;
        }
        mappings.push(FileMapping {
            start,
            end,
            file_offset: page_offset.saturating_mul(page_size),
            path,
        });
    }
    Some(mappings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_file_count_larger_than_payload_is_rejected() {
        let mut desc = vec![0u8; 16];
        desc[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(parse_nt_file(&desc).is_none());
    }

    #[test]
    fn nt_file_decodes_entries() {
        let mut desc = Vec::new();
        desc.extend_from_slice(&2u64.to_le_bytes());
        desc.extend_from_slice(&4096u64.to_le_bytes());
        for (s, e, o) in [(0x1000u64, 0x3000u64, 0u64), (0x3000, 0x4000, 2)] {
            desc.extend_from_slice(&s.to_le_bytes());
            desc.extend_from_slice(&e.to_le_bytes());
            desc.extend_from_slice(&o.to_le_bytes());
        }
        desc.extend_from_slice(b"/bin/a\0/lib/b (deleted)\0");
        let maps = parse_nt_file(&desc).unwrap();
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[1].file_offset, 8192);
        assert_eq!(maps[1].path, "/lib/b (deleted)");
    }

    #[test]
    fn short_payloads_are_rejected() {
        assert!(parse_prstatus(ArchId::X86_64, &[0u8; 100]).is_none());
        assert!(parse_prpsinfo(&[0u8; 50]).is_none());
        assert!(parse_siginfo(&[0u8; 8]).is_none());
    }
}
