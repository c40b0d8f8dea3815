//! A writer for small synthetic ELF cores, written from the ELF and Linux ABI
//! specifications without reusing any of pymortem's parsing code, so tests
//! compare pymortem against an independent oracle.

#![allow(dead_code)]

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// `e_machine` of an x86-64 core (the default).
pub const EM_X86_64: u16 = 62;
/// `e_machine` of an AArch64 core.
pub const EM_AARCH64: u16 = 183;

/// `si_code` of a signal sent by `tkill`/`tgkill` (`abort()` raises its
/// SIGABRT so): the union then holds the sender's pid and uid.
pub const SI_TKILL: i32 = -6;
/// `si_code` of a SIGSEGV at an address with no mapping: the union then
/// holds the fault address.
pub const SEGV_MAPERR: i32 = 1;

pub struct Segment {
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub flags: u32,
}

pub struct Note {
    pub name: Vec<u8>,
    pub n_type: u32,
    pub desc: Vec<u8>,
}

#[derive(Default)]
pub struct SynthCore {
    pub notes: Vec<Note>,
    pub segments: Vec<Segment>,
    /// `e_machine`; `None` is [`EM_X86_64`].
    pub machine: Option<u16>,
}

fn put(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl SynthCore {
    pub fn note(&mut self, name: &[u8], n_type: u32, desc: Vec<u8>) -> &mut Self {
        self.notes.push(Note {
            name: name.to_vec(),
            n_type,
            desc,
        });
        self
    }

    /// NT_PRSTATUS (336 bytes): pr_cursig @12, pr_pid @32, pr_ppid @36,
    /// pr_reg @112 (rip is reg 16, rsp reg 19, fs_base reg 21).
    pub fn prstatus(
        &mut self,
        lwp: i32,
        cursig: i16,
        rip: u64,
        rsp: u64,
        fs_base: u64,
    ) -> &mut Self {
        let mut d = vec![0u8; 336];
        put(&mut d, 12, &cursig.to_le_bytes());
        put(&mut d, 32, &lwp.to_le_bytes());
        put(&mut d, 36, &1i32.to_le_bytes());
        put(&mut d, 112 + 16 * 8, &rip.to_le_bytes());
        put(&mut d, 112 + 19 * 8, &rsp.to_le_bytes());
        put(&mut d, 112 + 21 * 8, &fs_base.to_le_bytes());
        self.note(b"CORE\0", 1, d)
    }

    /// NT_PRPSINFO (136 bytes): uid @16, pid @24, ppid @28, fname @40, psargs @56.
    pub fn psinfo(&mut self, pid: i32, uid: u32, fname: &str, args: &str) -> &mut Self {
        let mut d = vec![0u8; 136];
        put(&mut d, 16, &uid.to_le_bytes());
        put(&mut d, 24, &pid.to_le_bytes());
        put(&mut d, 28, &1i32.to_le_bytes());
        put(&mut d, 40, &fname.as_bytes()[..fname.len().min(15)]);
        put(&mut d, 56, &args.as_bytes()[..args.len().min(79)]);
        self.note(b"CORE\0", 3, d)
    }

    /// NT_SIGINFO (128 bytes): signo @0, errno @4, code @8, address or pid @16.
    pub fn siginfo(&mut self, signo: i32, code: i32, word: u64) -> &mut Self {
        let mut d = vec![0u8; 128];
        put(&mut d, 0, &signo.to_le_bytes());
        put(&mut d, 8, &code.to_le_bytes());
        put(&mut d, 16, &word.to_le_bytes());
        self.note(b"CORE\0", 0x5349_4749, d)
    }

    /// NT_SIGINFO of a signal a process sent (`si_code` [`SI_TKILL`],
    /// `SI_USER`, ...): `si_pid` @16 and `si_uid` @20.
    pub fn siginfo_sender(&mut self, signo: i32, code: i32, pid: i32, uid: u32) -> &mut Self {
        let word = u64::from(pid as u32) | (u64::from(uid) << 32);
        self.siginfo(signo, code, word)
    }

    /// The core's `e_machine` ([`EM_X86_64`] unless set).
    pub fn machine(&mut self, e_machine: u16) -> &mut Self {
        self.machine = Some(e_machine);
        self
    }

    /// NT_ARM_TLS (0x401, owner `LINUX`), written after its thread's
    /// NT_PRSTATUS: `TPIDR_EL0`, then `TPIDR2_EL0` when given (Linux 6.3+
    /// writes both words, older kernels only the first).
    pub fn arm_tls(&mut self, tpidr: u64, tpidr2: Option<u64>) -> &mut Self {
        let mut d = tpidr.to_le_bytes().to_vec();
        if let Some(tpidr2) = tpidr2 {
            d.extend_from_slice(&tpidr2.to_le_bytes());
        }
        self.note(b"LINUX\0", 0x401, d)
    }

    /// NT_ARM_PAC_MASK (0x406, owner `LINUX`): `struct user_pac_mask
    /// { data_mask, insn_mask }`, the bits of a data or code pointer that
    /// hold its pointer-authentication code.
    pub fn arm_pac_mask(&mut self, data_mask: u64, insn_mask: u64) -> &mut Self {
        let mut d = data_mask.to_le_bytes().to_vec();
        d.extend_from_slice(&insn_mask.to_le_bytes());
        self.note(b"LINUX\0", 0x406, d)
    }

    pub fn auxv(&mut self, pairs: &[(u64, u64)]) -> &mut Self {
        let mut d = Vec::new();
        for (k, v) in pairs.iter().chain([(0u64, 0u64)].iter()) {
            d.extend_from_slice(&k.to_le_bytes());
            d.extend_from_slice(&v.to_le_bytes());
        }
        self.note(b"CORE\0", 6, d)
    }

    /// NT_FILE: count, page size, (start, end, page offset) triples, paths.
    pub fn nt_file(&mut self, entries: &[(u64, u64, u64, &str)]) -> &mut Self {
        let mut d = Vec::new();
        d.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        d.extend_from_slice(&4096u64.to_le_bytes());
        for (start, end, pgoff, _) in entries {
            d.extend_from_slice(&start.to_le_bytes());
            d.extend_from_slice(&end.to_le_bytes());
            d.extend_from_slice(&pgoff.to_le_bytes());
        }
        for (_, _, _, path) in entries {
            d.extend_from_slice(path.as_bytes());
            d.push(0);
        }
        self.note(b"CORE\0", 0x4649_4c45, d)
    }

    pub fn segment(&mut self, vaddr: u64, data: Vec<u8>, memsz: u64, flags: u32) -> &mut Self {
        self.segments.push(Segment {
            vaddr,
            data,
            memsz,
            flags,
        });
        self
    }

    /// Lay out: ELF header, program headers, the note segment, then each
    /// load segment's bytes at a 4096-aligned offset.
    pub fn build(&self) -> Vec<u8> {
        let phnum = 1 + self.segments.len();
        let mut out = vec![0u8; 64 + 56 * phnum];
        // e_ident
        put(&mut out, 0, b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little endian
        out[6] = 1; // EV_CURRENT
        put(&mut out, 16, &4u16.to_le_bytes()); // ET_CORE
        let machine = self.machine.unwrap_or(EM_X86_64);
        put(&mut out, 18, &machine.to_le_bytes());
        put(&mut out, 20, &1u32.to_le_bytes());
        put(&mut out, 32, &64u64.to_le_bytes()); // e_phoff
        put(&mut out, 52, &64u16.to_le_bytes()); // e_ehsize
        put(&mut out, 54, &56u16.to_le_bytes()); // e_phentsize
        put(&mut out, 56, &(phnum as u16).to_le_bytes());
        // Notes
        let mut notes = Vec::new();
        for n in &self.notes {
            notes.extend_from_slice(&(n.name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&n.n_type.to_le_bytes());
            notes.extend_from_slice(&n.name);
            while notes.len() % 4 != 0 {
                notes.push(0);
            }
            notes.extend_from_slice(&n.desc);
            while notes.len() % 4 != 0 {
                notes.push(0);
            }
        }
        let note_off = out.len() as u64;
        let phdr = |out: &mut Vec<u8>,
                    i: usize,
                    p_type: u32,
                    flags: u32,
                    off: u64,
                    vaddr: u64,
                    filesz: u64,
                    memsz: u64,
                    align: u64| {
            let b = 64 + 56 * i;
            put(out, b, &p_type.to_le_bytes());
            put(out, b + 4, &flags.to_le_bytes());
            put(out, b + 8, &off.to_le_bytes());
            put(out, b + 16, &vaddr.to_le_bytes());
            put(out, b + 24, &0u64.to_le_bytes());
            put(out, b + 32, &filesz.to_le_bytes());
            put(out, b + 40, &memsz.to_le_bytes());
            put(out, b + 48, &align.to_le_bytes());
        };
        phdr(&mut out, 0, 4, 0, note_off, 0, notes.len() as u64, 0, 4);
        out.extend_from_slice(&notes);
        for (i, seg) in self.segments.iter().enumerate() {
            let off = out.len().next_multiple_of(4096);
            out.resize(off, 0);
            out.extend_from_slice(&seg.data);
            phdr(
                &mut out,
                i + 1,
                1,
                seg.flags,
                off as u64,
                seg.vaddr,
                seg.data.len() as u64,
                seg.memsz,
                4096,
            );
        }
        out
    }
}

/// A two-thread process killed by SIGSEGV, with two adjacent data segments
/// and one partly dumped read-only segment.
pub fn sample() -> SynthCore {
    let mut core = SynthCore::default();
    core.prstatus(4242, 11, 0x401000, 0x7ffd_0000_1000, 0x7f00_0000_1740)
        .psinfo(4242, 1000, "python3", "python3 crash.py --flag")
        .siginfo(11, 1, 0xdead_beef)
        .auxv(&[(33, 0x7fff_f000_0000), (9, 0x401000)])
        .nt_file(&[(0x400000, 0x402000, 0, "/usr/bin/python3")])
        .prstatus(4243, 11, 0x402000, 0x7f00_0000_0f00, 0x7f00_0000_2740);
    let first: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
    core.segment(0x10000, first, 4096, PF_R | PF_W)
        .segment(0x11000, second, 4096, PF_R | PF_W)
        .segment(0x400000, vec![0x7f; 4096], 0x2000, PF_R | PF_X);
    core
}
