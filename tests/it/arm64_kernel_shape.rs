//! Kernel-shape AArch64 cores. QEMU's cores of the arm64 interpreters hold
//! only NT_PRSTATUS, NT_PRPSINFO and NT_AUXV and none of the modules' ELF
//! header pages; a real ARM64 machine's kernel also writes NT_FILE,
//! NT_SIGINFO, one NT_ARM_TLS per thread, NT_ARM_PAC_MASK where the CPU
//! authenticates pointers, and the first page of every file mapping that
//! starts at offset 0. Each QEMU core is rewritten here into that shape by
//! the independent writer (`support::synth`), from facts found without
//! pymortem:
//!
//! - NT_FILE from the dynamic linker's own list: the executable's
//!   `PT_DYNAMIC` (from its file under the sysroot, at `AT_EXECFN`), its
//!   `DT_DEBUG` in the core's dumped `.dynamic`, `r_debug` and `link_map`;
//!   each module's `PT_LOAD`s (read with goblin) give its file mappings as
//!   the kernel lists them (page-aligned, split where the process's
//!   mappings, the core's segments, divide them, the `PROT_NONE` gaps the
//!   dynamic linker leaves between segments included), under the file's
//!   real path;
//! - NT_SIGINFO from the first thread's `pr_cursig` and the scenario's truth
//!   (the fault address a segfault scenario records, or `abort()`'s `tgkill`
//!   from the process itself);
//! - NT_ARM_TLS from each thread's `pthread_self()` in the truth: glibc's
//!   AArch64 thread pointer lies `sizeof(struct pthread)` above it, where
//!   the TCB's first word is the DTV whose module-1 entry points 16 bytes
//!   above the thread pointer;
//! - NT_ARM_PAC_MASK for the core QEMU wrote with pointer authentication
//!   on: the kernel's mask for 48-bit virtual addresses.
//!
//! pymortem must then read the same process from both shapes: the module
//! list from NT_FILE, the signal's code, each thread's `pthread_t` from its
//! thread pointer, the same stacks and the same findings; and on the core
//! with signed return addresses, the same native stacks with and without
//! the mask, as deep as on the same scenario's core without signing.

use crate::support;
use crate::support::synth::{EM_AARCH64, SEGV_MAPERR, SI_TKILL, SynthCore};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::program_header::{PT_DYNAMIC, PT_LOAD, PT_PHDR};
use serde_json::Value;

/// The cores rewritten, each compared with its QEMU original: two
/// interpreters (glibc 2.41 and 2.43), threads and a segfault each, and a
/// core with findings for each.
const CORES: [(&str, &str); 6] = [
    ("debian-3.13-arm64", "threads"),
    ("debian-3.13-arm64", "segfault"),
    ("debian-3.13-arm64", "double_free"),
    ("debian-3.15-arm64", "threads"),
    ("debian-3.15-arm64", "segfault"),
    ("debian-3.15-arm64", "use_after_free"),
];

/// The core QEMU wrote with pointer authentication on (`QEMU_CPU=max`).
const PAC_CORE: (&str, &str, &str) = ("debian-3.14-arm64", "threads", "qemu_pac");

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;

const AT_PHDR: u64 = 3;
const AT_PAGESZ: u64 = 6;
const AT_EXECFN: u64 = 31;

const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;

const SIGSEGV: i32 = 11;

/// Linux's pointer-authentication mask for a 48-bit user address space:
/// `GENMASK(54, 48)` (bit 55 selects the half, bits 56–63 are the tag).
const PAC_MASK_48_BIT_VA: u64 = 0x007f_0000_0000_0000;

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn page_down(addr: u64, page: u64) -> u64 {
    addr & !(page - 1)
}

fn page_up(addr: u64, page: u64) -> u64 {
    addr.next_multiple_of(page)
}

/// A `PT_LOAD` of a core.
struct Load {
    vaddr: u64,
    memsz: u64,
    offset: usize,
    filesz: usize,
    flags: u32,
}

/// A note of a core, owner without its NUL.
struct CoreNote {
    name: String,
    n_type: u32,
    desc: Vec<u8>,
}

/// A QEMU core, read with goblin.
struct QemuCore {
    bytes: Vec<u8>,
    loads: Vec<Load>,
    notes: Vec<CoreNote>,
}

impl QemuCore {
    fn open(path: &str) -> QemuCore {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (loads, notes) = {
            let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("goblin: {path}: {e}"));
            assert_eq!(elf.header.e_type, goblin::elf::header::ET_CORE, "{path}");
            assert_eq!(
                elf.header.e_machine,
                goblin::elf::header::EM_AARCH64,
                "{path}"
            );
            let loads: Vec<Load> = elf
                .program_headers
                .iter()
                .filter(|p| p.p_type == PT_LOAD)
                .map(|p| Load {
                    vaddr: p.p_vaddr,
                    memsz: p.p_memsz,
                    offset: p.p_offset as usize,
                    filesz: p.p_filesz as usize,
                    flags: p.p_flags,
                })
                .collect();
            let notes: Vec<CoreNote> = elf
                .iter_note_headers(&bytes)
                .expect("a note segment")
                .map(|n| {
                    let n = n.unwrap_or_else(|e| panic!("goblin: {path}: note: {e}"));
                    CoreNote {
                        name: n.name.to_string(),
                        n_type: n.n_type,
                        desc: n.desc.to_vec(),
                    }
                })
                .collect();
            (loads, notes)
        };
        QemuCore {
            bytes,
            loads,
            notes,
        }
    }

    /// `len` bytes of the process at `addr`, when the core holds them all.
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let load = self
            .loads
            .iter()
            .find(|l| l.vaddr <= addr && addr - l.vaddr < l.filesz as u64)?;
        let at = (addr - load.vaddr) as usize;
        (at + len <= load.filesz).then(|| &self.bytes[load.offset + at..load.offset + at + len])
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        self.read(addr, 8).map(|b| le_u64(b, 0))
    }

    fn c_string(&self, addr: u64) -> Option<String> {
        let mut out = Vec::new();
        for i in 0..4096 {
            match self.read(addr + i, 1)?[0] {
                0 => return String::from_utf8(out).ok(),
                b => out.push(b),
            }
        }
        None
    }

    /// The `CORE` notes of a type, in order.
    fn notes(&self, n_type: u32) -> Vec<&CoreNote> {
        self.notes
            .iter()
            .filter(|n| n.name == "CORE" && n.n_type == n_type)
            .collect()
    }

    fn auxv(&self) -> BTreeMap<u64, u64> {
        let notes = self.notes(NT_AUXV);
        assert_eq!(notes.len(), 1, "one NT_AUXV");
        notes[0]
            .desc
            .chunks_exact(16)
            .map(|pair| (le_u64(pair, 0), le_u64(pair, 8)))
            .take_while(|&(key, _)| key != 0)
            .collect()
    }
}

/// `pr_cursig` of an NT_PRSTATUS.
fn cursig(prstatus: &[u8]) -> i32 {
    i32::from(i16::from_le_bytes(prstatus[12..14].try_into().unwrap()))
}

/// `pr_pid` (the thread's LWP) of an NT_PRSTATUS.
fn pr_pid(prstatus: &[u8]) -> i64 {
    i64::from(i32::from_le_bytes(prstatus[32..36].try_into().unwrap()))
}

/// Register `n` of an AArch64 NT_PRSTATUS (`pr_reg` at 112: x0–x30, sp,
/// pc, pstate).
fn register(prstatus: &[u8], n: usize) -> u64 {
    le_u64(prstatus, 112 + 8 * n)
}

/// A guest path resolved inside `root` as the guest's kernel would, its
/// symlinks followed within the root: the host file and the guest's real
/// path (what NT_FILE records).
fn resolve_in_root(root: &Path, guest: &str) -> Option<(PathBuf, String)> {
    let components = |path: &str| -> Vec<String> {
        path.split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect()
    };
    let mut pending = components(guest);
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let host = root.join(done.join("/")).join(&component);
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            let target = target.to_str()?.to_string();
            if target.starts_with('/') {
                done.clear();
            }
            pending.extend(components(&target));
        } else {
            done.push(component);
        }
    }
    let host = root.join(done.join("/"));
    host.is_file()
        .then(|| (host, format!("/{}", done.join("/"))))
}

/// A module of the process: its file and where the dynamic linker put it.
struct Module {
    /// The file's real path in the guest, as NT_FILE records it.
    guest_path: String,
    host_path: PathBuf,
    bias: u64,
    file: Vec<u8>,
}

impl Module {
    fn read(root: &Path, guest: &str, bias: u64) -> Option<Module> {
        let (host_path, guest_path) = resolve_in_root(root, guest)?;
        let file = std::fs::read(&host_path).ok()?;
        Some(Module {
            guest_path,
            host_path,
            bias,
            file,
        })
    }

    /// The NUL-terminated string at `addr` in the module's file-backed
    /// pages, read from its file.
    fn c_string(&self, addr: u64) -> Option<String> {
        let elf = self.elf();
        let load = elf.program_headers.iter().find(|p| {
            p.p_type == PT_LOAD
                && self.bias + p.p_vaddr <= addr
                && addr < self.bias + p.p_vaddr + p.p_filesz
        })?;
        let at = (addr - self.bias - load.p_vaddr + load.p_offset) as usize;
        let bytes = self.file.get(at..)?;
        let len = bytes.iter().position(|&b| b == 0)?;
        String::from_utf8(bytes[..len].to_vec()).ok()
    }

    fn elf(&self) -> Elf<'_> {
        Elf::parse(&self.file)
            .unwrap_or_else(|e| panic!("goblin: {}: {e}", self.host_path.display()))
    }
}

/// The executable (from `AT_EXECFN` and `AT_PHDR`) and every module of the
/// dynamic linker's `link_map` list that is a file under `root` (the vDSO
/// is none), walked from `DT_DEBUG` in the executable's dynamic section.
fn modules(core: &QemuCore, root: &Path) -> Vec<Module> {
    let auxv = core.auxv();
    let execfn = core
        .c_string(auxv[&AT_EXECFN])
        .expect("AT_EXECFN's string is in the core");
    let mut exe = Module::read(root, &execfn, 0)
        .unwrap_or_else(|| panic!("{execfn} is not under {}", root.display()));
    let (phdr_vaddr, dynamic) = {
        let elf = exe.elf();
        let phdr_vaddr = elf
            .program_headers
            .iter()
            .find(|p| p.p_type == PT_PHDR)
            .map(|p| p.p_vaddr)
            .or_else(|| {
                elf.program_headers
                    .iter()
                    .find(|p| p.p_type == PT_LOAD && p.p_offset == 0)
                    .map(|p| p.p_vaddr + elf.header.e_phoff)
            })
            .expect("the executable's program headers are loaded");
        let dynamic = elf
            .program_headers
            .iter()
            .find(|p| p.p_type == PT_DYNAMIC)
            .map(|p| (p.p_vaddr, p.p_memsz))
            .expect("a dynamic executable");
        (phdr_vaddr, dynamic)
    };
    exe.bias = auxv[&AT_PHDR] - phdr_vaddr;
    let mut r_debug = None;
    for i in 0..dynamic.1 / 16 {
        let at = exe.bias + dynamic.0 + 16 * i;
        let tag = core.u64_at(at).expect("the dynamic section is dumped");
        match tag {
            DT_NULL => break,
            DT_DEBUG => r_debug = core.u64_at(at + 8),
            _ => {}
        }
    }
    let r_debug = r_debug
        .filter(|&a| a != 0)
        .expect("DT_DEBUG points at r_debug");
    let mut modules = vec![exe];
    let mut seen = BTreeSet::new();
    let mut link = core.u64_at(r_debug + 8).expect("r_debug.r_map");
    while link != 0 && seen.insert(link) {
        assert!(seen.len() < 256, "a link_map list of 256 entries");
        let l_addr = core.u64_at(link).expect("link_map.l_addr");
        // The first entry is the executable's.
        if seen.len() > 1 {
            // The dynamic linker's own name is the executable's PT_INTERP
            // string, in its code pages, which QEMU does not dump.
            let name = core
                .u64_at(link + 8)
                .and_then(|p| core.c_string(p).or_else(|| modules[0].c_string(p)))
                .unwrap_or_default();
            // The vDSO's name is no path.
            if name.starts_with('/') {
                let module = Module::read(root, &name, l_addr)
                    .unwrap_or_else(|| panic!("{name} is not under {}", root.display()));
                modules.push(module);
            }
        }
        link = core.u64_at(link + 24).expect("link_map.l_next");
    }
    modules
}

/// One entry of NT_FILE: a mapping of a file.
#[derive(Debug, Clone, PartialEq)]
struct FileMapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// A module's file mappings as the kernel lists them: each `PT_LOAD`'s
/// file part, page-aligned; the `PROT_NONE` gap the dynamic linker leaves
/// between two segments (the rest of its first mapping of the whole file,
/// at the continuing offset) where the core has such a gap; each split
/// where the core's segments (the process's mappings) change.
fn file_mappings(core: &QemuCore, module: &Module, page: u64) -> Vec<FileMapping> {
    let elf = module.elf();
    let mut loads: Vec<(u64, u64, u64)> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_filesz > 0)
        .map(|p| {
            let start = module.bias + p.p_vaddr;
            (
                page_down(start, page),
                page_up(start + p.p_filesz, page),
                page_down(p.p_offset, page),
            )
        })
        .collect();
    loads.sort();
    let first = loads[0];
    let mut ranges = Vec::new();
    for (i, &load) in loads.iter().enumerate() {
        if let Some(&(_, gap_start, _)) = i.checked_sub(1).map(|p| &loads[p]) {
            let gap = core
                .loads
                .iter()
                .any(|s| s.vaddr == gap_start && s.vaddr + s.memsz == load.0 && s.flags == 0);
            if gap_start < load.0 && gap {
                ranges.push((gap_start, load.0, first.2 + (gap_start - first.0)));
            }
        }
        ranges.push(load);
    }
    let mut mappings = Vec::new();
    for (start, end, offset) in ranges {
        let mut cuts: Vec<u64> = core
            .loads
            .iter()
            .flat_map(|s| [s.vaddr, s.vaddr + s.memsz])
            .filter(|&a| start < a && a < end)
            .collect();
        cuts.push(end);
        cuts.sort();
        cuts.dedup();
        let mut from = start;
        for to in cuts {
            mappings.push(FileMapping {
                start: from,
                end: to,
                offset: offset + (from - start),
                path: module.guest_path.clone(),
            });
            from = to;
        }
    }
    mappings
}

/// glibc's AArch64 thread pointer for the thread whose `pthread_t` is
/// `pthread`: the word `q` in `[pthread + 0x400, pthread + 0xc00)` that
/// holds the DTV whose module-1 entry (`dtv[1]`, 16 bytes in) is `q + 16`.
/// Every match is returned; one is expected.
fn thread_pointers(core: &QemuCore, pthread: u64) -> Vec<u64> {
    (pthread + 0x400..pthread + 0xc00)
        .step_by(8)
        .filter(|&q| {
            core.u64_at(q)
                .is_some_and(|dtv| dtv != 0 && core.u64_at(dtv + 16) == Some(q + 16))
        })
        .collect()
}

/// What went into a kernel-shape core.
struct Written {
    path: PathBuf,
    /// `(si_signo, si_code)` of NT_SIGINFO.
    signal: (i32, i32),
    /// The fault address, for a SIGSEGV.
    fault_address: Option<u64>,
    /// The sender's pid, for a signal a process sent.
    sender_pid: Option<i64>,
    /// Each thread's thread pointer, by LWP.
    thread_pointers: BTreeMap<i64, u64>,
    /// Each module's header page written into the core: its address, the
    /// module's file and the file's first 64 bytes (the ELF header).
    headers: Vec<(u64, PathBuf, Vec<u8>)>,
    /// NT_FILE's entries.
    file_mappings: Vec<FileMapping>,
    /// NT_ARM_PAC_MASK's instruction mask.
    pac_mask: Option<u64>,
}

/// Write `entry`'s QEMU core as a kernel would have written it into `dir`:
/// the same memory and NT_PRSTATUS/NT_PRPSINFO/NT_AUXV, in the kernel's
/// order, with NT_SIGINFO, NT_FILE, each module's ELF header page,
/// NT_ARM_TLS per thread (`tls_words` words: 1 before Linux 6.3, 2 since)
/// and, with `pac_mask`, NT_ARM_PAC_MASK per thread.
fn write_kernel_shape(
    entry: &Value,
    dir: &Path,
    tls_words: usize,
    pac_mask: Option<u64>,
) -> Written {
    let label = support::label(entry);
    let truth = support::truth(entry);
    let root = Path::new(
        entry["sysroot"]
            .as_str()
            .expect("an arm64 core has a sysroot"),
    );
    let core = QemuCore::open(entry["core"].as_str().unwrap());
    let auxv = core.auxv();
    let page = auxv[&AT_PAGESZ];
    assert_eq!(page, 4096, "{label}: NT_FILE is written with 4 KiB pages");

    // NT_FILE and the header pages.
    let modules = modules(&core, root);
    assert!(
        modules.len() >= 4,
        "{label}: only {} modules in link_map",
        modules.len()
    );
    let mut file_map: Vec<FileMapping> = modules
        .iter()
        .flat_map(|m| file_mappings(&core, m, page))
        .collect();
    file_map.sort_by_key(|m| m.start);
    for pair in file_map.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "{label}: overlapping mappings {pair:?}"
        );
    }
    let mut header_pages: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut headers = Vec::new();
    for module in &modules {
        let start = file_mapping_at_offset_0(&file_map, module);
        let load = core
            .loads
            .iter()
            .find(|l| l.vaddr == start)
            .unwrap_or_else(|| panic!("{label}: no core segment at {start:#x}"));
        // QEMU dumps no page of a code mapping; a kernel, the first.
        if load.filesz == 0 {
            let len = (page as usize).min(load.memsz as usize);
            header_pages.insert(start, module.file[..len].to_vec());
        }
        headers.push((start, module.host_path.clone(), module.file[..64].to_vec()));
    }

    // NT_SIGINFO: the signal of the first thread, which crashed.
    let statuses = core.notes(NT_PRSTATUS);
    let signo = cursig(&statuses[0].desc);
    assert_eq!(
        i64::from(signo),
        truth["expected_signal"].as_i64().unwrap(),
        "{label}: the first NT_PRSTATUS holds the scenario's signal"
    );
    let psinfo = core.notes(NT_PRPSINFO);
    assert_eq!(psinfo.len(), 1, "{label}: one NT_PRPSINFO");
    let uid = u32::from_le_bytes(psinfo[0].desc[16..20].try_into().unwrap());
    let pid = truth["pid"].as_i64().unwrap();
    let bad_address = truth["objects"]["bad_address"].as_u64();
    let (code, fault_address, sender_pid) = match bad_address {
        Some(address) if signo == SIGSEGV => (SEGV_MAPERR, Some(address), None),
        // abort() raises its signal with tgkill(getpid(), gettid(), sig).
        _ => (SI_TKILL, None, Some(pid)),
    };

    // NT_ARM_TLS: each thread's thread pointer, found from its pthread_t.
    let idents: BTreeMap<i64, u64> = truth["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["native_id"].as_i64().unwrap(),
                t["ident"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut tps = BTreeMap::new();
    for status in &statuses {
        let lwp = pr_pid(&status.desc);
        let ident = idents
            .get(&lwp)
            .unwrap_or_else(|| panic!("{label}: LWP {lwp} is not in the truth"));
        let found = thread_pointers(&core, *ident);
        assert_eq!(
            found.len(),
            1,
            "{label}: LWP {lwp} (pthread {ident:#x}): thread pointer candidates {found:x?}"
        );
        tps.insert(lwp, found[0]);
    }
    // One glibc, one sizeof(struct pthread).
    let sizes: BTreeSet<u64> = tps.iter().map(|(lwp, tp)| tp - idents[lwp]).collect();
    assert_eq!(sizes.len(), 1, "{label}: TP - pthread_t: {sizes:x?}");

    let mut synth = SynthCore::default();
    synth.machine(EM_AARCH64);
    for (i, status) in statuses.iter().enumerate() {
        // Linux writes the first thread's NT_PRSTATUS, then the process's
        // notes, then that thread's other register sets; then each other
        // thread's.
        synth.note(b"CORE\0", NT_PRSTATUS, status.desc.clone());
        if i == 0 {
            synth.note(b"CORE\0", NT_PRPSINFO, psinfo[0].desc.clone());
            match fault_address {
                Some(address) => synth.siginfo(signo, code, address),
                None => synth.siginfo_sender(signo, code, pid as i32, uid),
            };
            synth.note(b"CORE\0", NT_AUXV, core.notes(NT_AUXV)[0].desc.clone());
            let entries: Vec<(u64, u64, u64, &str)> = file_map
                .iter()
                .map(|m| (m.start, m.end, m.offset / page, m.path.as_str()))
                .collect();
            synth.nt_file(&entries);
        }
        let tp = tps[&pr_pid(&status.desc)];
        synth.arm_tls(tp, (tls_words > 1).then_some(0));
        if let Some(mask) = pac_mask {
            synth.arm_pac_mask(mask, mask);
        }
    }
    for load in &core.loads {
        let data = match header_pages.get(&load.vaddr) {
            Some(header) => header.clone(),
            None => core.bytes[load.offset..load.offset + load.filesz].to_vec(),
        };
        synth.segment(load.vaddr, data, load.memsz, load.flags);
    }
    let path = dir.join(format!(
        "{}-{}-{}{}.kernel-shape.core",
        entry["interp"].as_str().unwrap(),
        entry["scenario"].as_str().unwrap(),
        entry["kind"].as_str().unwrap(),
        if pac_mask.is_some() { "-pac-mask" } else { "" }
    ));
    std::fs::write(&path, synth.build()).unwrap();
    Written {
        path,
        signal: (signo, code),
        fault_address,
        sender_pid,
        thread_pointers: tps,
        headers,
        file_mappings: file_map,
        pac_mask,
    }
}

/// Where the module's mapping of its file's offset 0 starts.
fn file_mapping_at_offset_0(file_map: &[FileMapping], module: &Module) -> u64 {
    file_map
        .iter()
        .find(|m| m.path == module.guest_path && m.offset == 0 && m.start >= module.bias)
        .unwrap_or_else(|| panic!("no mapping of {} at offset 0", module.guest_path))
        .start
}

/// The named native functions of each thread of a `threads --native`
/// report, by LWP.
fn native_functions(report: &Value) -> BTreeMap<i64, Vec<String>> {
    support::threads_by_lwp(report)
        .into_iter()
        .map(|(lwp, t)| {
            let names = t["stack"]["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["kind"] == "native")
                .filter_map(|f| f["function"].as_str().map(String::from))
                .collect();
            (lwp, names)
        })
        .collect()
}

/// The number of native frames of each thread, by LWP.
fn native_depths(report: &Value) -> BTreeMap<i64, usize> {
    support::threads_by_lwp(report)
        .into_iter()
        .map(|(lwp, t)| {
            let depth = t["stack"]["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["kind"] == "native")
                .count();
            (lwp, depth)
        })
        .collect()
}

/// The manifest entry of an arm64 core; a missing one fails the test.
fn arm64_entry(manifest: &[Value], interp: &str, scenario: &str, kind: &str) -> Value {
    let found = support::entry(manifest, interp, scenario, kind).clone();
    assert_eq!(found["arch"], "aarch64", "{}", support::label(&found));
    let core = found["core"].as_str().unwrap();
    assert!(
        Path::new(core).is_file(),
        "{core} is missing: regenerate the sample cores"
    );
    found
}

/// How `info` on the kernel-shape core disagrees with what was written,
/// the truth and `info` on the QEMU core.
fn info_problems(entry: &Value, written: &Written, truth: &Value) -> Vec<String> {
    let label = support::label(entry);
    let qemu_core = Path::new(entry["core"].as_str().unwrap());
    let (_, qemu) = support::json_report(&["info"], entry, qemu_core);
    let (_, kernel) = support::json_report(&["info"], entry, &written.path);
    let mut problems =
        support::info_disagreements(&format!("{label} (kernel shape)"), &kernel, truth);
    problems.extend(support::schema_violations(&kernel));
    let mut expect = |what: &str, got: &Value, want: Value| {
        if *got != want {
            problems.push(format!(
                "{label} (kernel shape): {what}: {got}, wrote {want}"
            ));
        }
    };
    expect("core.arch", &kernel["core"]["arch"], Value::from("aarch64"));
    expect(
        "core.producer",
        &kernel["core"]["producer"],
        Value::from("kernel"),
    );
    expect(
        "module_source",
        &kernel["module_source"],
        Value::from("nt_file"),
    );
    expect(
        "signal.number",
        &kernel["signal"]["number"],
        Value::from(written.signal.0),
    );
    expect(
        "signal.code",
        &kernel["signal"]["code"],
        Value::from(written.signal.1),
    );
    expect(
        "signal.fault_address",
        &kernel["signal"]["fault_address"],
        Value::from(written.fault_address),
    );
    expect(
        "signal.sender_pid",
        &kernel["signal"]["sender_pid"],
        Value::from(written.sender_pid),
    );
    // Every thread has its pthread_t, which the truth recorded (compared
    // per LWP by info_disagreements): none is missing.
    for t in kernel["threads"].as_array().into_iter().flatten() {
        if !t["pthread_id"].is_u64() {
            problems.push(format!(
                "{label} (kernel shape): thread without pthread: {t}"
            ));
        }
    }
    // The same modules (the ELF files of NT_FILE are the link_map's), with
    // the same files, build-ids and debug files.
    let modules = |r: &Value| -> BTreeMap<u64, Value> {
        r["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let facts = serde_json::json!({
                    "kind": m["kind"],
                    "build_id": m["build_id"],
                    "load_bias": m["load_bias"],
                    "file": m["file"],
                    "debug": m["debug"],
                });
                (m["base"].as_u64().unwrap(), facts)
            })
            .collect()
    };
    let mut differences = Vec::new();
    support::json_differences(
        "modules",
        &Value::from(
            modules(&qemu)
                .into_iter()
                .map(|(b, m)| (format!("{b:#x}"), m))
                .collect::<serde_json::Map<_, _>>(),
        ),
        &Value::from(
            modules(&kernel)
                .into_iter()
                .map(|(b, m)| (format!("{b:#x}"), m))
                .collect::<serde_json::Map<_, _>>(),
        ),
        &mut differences,
    );
    problems.extend(
        differences
            .iter()
            .map(|d| format!("{label}: QEMU / kernel shape: info {d}")),
    );
    // The modules' paths are NT_FILE's (the files' real paths, where the
    // dynamic linker names the links to them), and so are their names.
    let recorded: BTreeSet<&str> = written
        .file_mappings
        .iter()
        .map(|m| m.path.as_str())
        .collect();
    for m in kernel["modules"].as_array().unwrap() {
        if m["kind"] != "vdso" && !m["path"].as_str().is_some_and(|p| recorded.contains(p)) {
            problems.push(format!(
                "{label} (kernel shape): module path {} is not NT_FILE's",
                m["path"]
            ));
        }
        let base_name = m["path"].as_str().and_then(|p| p.rsplit('/').next());
        if m["name"].as_str() != base_name {
            problems.push(format!(
                "{label} (kernel shape): module {} named {}",
                m["path"], m["name"]
            ));
        }
    }
    problems
}

/// How the library reads the kernel-shape core: the module headers
/// written into it from the core's segments, with the files' bytes; each
/// thread's thread pointer from its NT_ARM_TLS; the NT_ARM_PAC_MASK.
fn library_problems(entry: &Value, written: &Written) -> Vec<String> {
    use pymortem::memory::{Memory, Provenance};
    let label = format!("{} (kernel shape)", support::label(entry));
    let process = pymortem::Process::open(&written.path, &support::options(entry)).unwrap();
    let mut problems = Vec::new();
    for (base, file, want) in &written.headers {
        let provenance = process.memory().provenance(*base);
        let mut have = vec![0u8; want.len()];
        let read = process.memory().read_exact_at(*base, &mut have).is_ok();
        if !matches!(provenance, Provenance::Core { .. }) || !read || &have != want {
            problems.push(format!(
                "{label}: header of {} at {base:#x}: {provenance:?}, read {read}, \
                 same bytes {}",
                file.display(),
                &have == want
            ));
        }
    }
    let thread_pointers: BTreeMap<i64, Option<u64>> = process
        .threads()
        .iter()
        .map(|t| (i64::from(t.lwp), t.registers.thread_pointer()))
        .collect();
    let written_pointers: BTreeMap<i64, Option<u64>> = written
        .thread_pointers
        .iter()
        .map(|(&lwp, &tp)| (lwp, Some(tp)))
        .collect();
    if thread_pointers != written_pointers {
        problems.push(format!(
            "{label}: thread pointers {thread_pointers:x?}, wrote {written_pointers:x?}"
        ));
    }
    if process.core().pac_mask() != written.pac_mask {
        problems.push(format!(
            "{label}: PAC mask {:x?}, wrote {:x?}",
            process.core().pac_mask(),
            written.pac_mask
        ));
    }
    problems
}

/// How `threads --native` on the kernel-shape core disagrees with the truth
/// and with the QEMU core.
fn threads_problems(entry: &Value, written: &Written, truth: &Value) -> Vec<String> {
    let label = support::label(entry);
    let qemu_core = Path::new(entry["core"].as_str().unwrap());
    let (code_qemu, qemu) = support::json_report(&["threads", "--native"], entry, qemu_core);
    let (code_kernel, kernel) =
        support::json_report(&["threads", "--native"], entry, &written.path);
    let mut problems = Vec::new();
    if code_kernel != code_qemu || code_kernel != 0 {
        problems.push(format!(
            "{label}: threads exit {code_kernel} (kernel shape), {code_qemu} (QEMU)"
        ));
    }
    let by_lwp = support::threads_by_lwp(&kernel);
    for t in truth["threads"].as_array().unwrap() {
        let lwp = t["native_id"].as_i64().unwrap();
        let Some(got) = by_lwp.get(&lwp) else {
            problems.push(format!("{label} (kernel shape): no thread {lwp}"));
            continue;
        };
        let (have, want) = (
            support::frames(&got["frames"]),
            support::frames(&t["stack"]),
        );
        if have != want {
            problems.push(format!(
                "{label} (kernel shape): thread {lwp}: Python stack {have:?}, truth {want:?}"
            ));
        }
        if got["pthread_id"] != t["ident"] {
            problems.push(format!(
                "{label} (kernel shape): thread {lwp}: pthread {}, truth {}",
                got["pthread_id"], t["ident"]
            ));
        }
    }
    let named: usize = native_functions(&kernel).values().map(Vec::len).sum();
    if named == 0 {
        problems.push(format!("{label} (kernel shape): no named native frame"));
    }
    if native_functions(&kernel) != native_functions(&qemu) {
        problems.push(format!(
            "{label}: named native frames differ:\n  QEMU shape:   {:?}\n  kernel shape: {:?}",
            native_functions(&qemu),
            native_functions(&kernel)
        ));
    }
    problems.extend(shape_differences(&label, "threads", &qemu, &kernel));
    problems
}

/// Where the reports of the QEMU core and its kernel-shape copy differ,
/// apart from what names the core and says how it was read.
fn shape_differences(label: &str, what: &str, qemu: &Value, kernel: &Value) -> Vec<String> {
    let mut differences = Vec::new();
    support::json_differences(
        what,
        &support::without_core(qemu),
        &support::without_core(kernel),
        &mut differences,
    );
    differences
        .iter()
        .map(|d| format!("{label}: QEMU / kernel shape: {d}"))
        .collect()
}

/// How `check` on the kernel-shape core disagrees with the QEMU core and,
/// for a corrupt scenario, with its truth's victim.
fn check_problems(entry: &Value, written: &Written, truth: &Value) -> Vec<String> {
    let label = support::label(entry);
    let qemu_core = Path::new(entry["core"].as_str().unwrap());
    let (code_qemu, qemu) = support::json_report(&["check"], entry, qemu_core);
    let (code_kernel, kernel) = support::json_report(&["check"], entry, &written.path);
    let mut problems = Vec::new();
    if code_kernel != code_qemu {
        problems.push(format!(
            "{label}: check exit {code_kernel} (kernel shape), {code_qemu} (QEMU)"
        ));
    }
    if let Some(victim) = truth["objects"]["victim_tuple"].as_u64() {
        let flagged = kernel["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["address"] == victim && f["severity"] == "error");
        if !flagged || code_kernel != 1 {
            problems.push(format!(
                "{label} (kernel shape): victim {victim:#x} not flagged (exit {code_kernel})"
            ));
        }
    }
    problems.extend(shape_differences(&label, "check", &qemu, &kernel));
    problems
}

#[test]
fn kernel_shape_arm64_cores_read_as_their_qemu_originals() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entries: Vec<Value> = CORES
        .iter()
        .map(|(interp, scenario)| arm64_entry(&manifest, interp, scenario, "qemu"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let problems = support::parallel(&entries, |entry| {
        let truth = support::truth(entry);
        // Linux 6.3+ writes TPIDR2_EL0 after TPIDR_EL0; older kernels do not.
        let tls_words = if entry["interp"] == "debian-3.15-arm64" {
            2
        } else {
            1
        };
        let written = write_kernel_shape(entry, dir.path(), tls_words, None);
        let mut problems = info_problems(entry, &written, &truth);
        problems.extend(library_problems(entry, &written));
        problems.extend(threads_problems(entry, &written, &truth));
        problems.extend(check_problems(entry, &written, &truth));
        println!(
            "{}: {} NT_FILE entries, {} headers, signal {:?}, thread pointers {:x?}",
            support::label(entry),
            written.file_mappings.len(),
            written.headers.len(),
            written.signal,
            written.thread_pointers
        );
        std::fs::remove_file(&written.path).unwrap();
        problems
    });
    support::assert_no_problems(&problems);
}

/// How many return addresses saved in the frame records of each thread's
/// x29 chain carry pointer-authentication bits, walked in the QEMU core.
fn signed_return_addresses(core: &QemuCore) -> usize {
    let mut signed = 0;
    for status in core.notes(NT_PRSTATUS) {
        let mut fp = register(&status.desc, 29);
        for _ in 0..256 {
            let (Some(next), Some(lr)) = (core.u64_at(fp), core.u64_at(fp + 8)) else {
                break;
            };
            if lr & PAC_MASK_48_BIT_VA != 0 {
                signed += 1;
            }
            if next <= fp {
                break;
            }
            fp = next;
        }
    }
    signed
}

#[test]
fn signed_return_addresses_unwind_as_unsigned_ones() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let (interp, scenario, kind) = PAC_CORE;
    let pac = arm64_entry(&manifest, interp, scenario, kind);
    let plain = arm64_entry(&manifest, interp, scenario, "qemu");
    let label = support::label(&pac);
    // The test shows something only if the saved return addresses are
    // signed in one core and not in the other.
    let signed = signed_return_addresses(&QemuCore::open(pac["core"].as_str().unwrap()));
    let unsigned = signed_return_addresses(&QemuCore::open(plain["core"].as_str().unwrap()));
    assert!(
        signed > 0,
        "{label}: no signed return address in frame records"
    );
    assert_eq!(
        unsigned,
        0,
        "{}: signed return addresses",
        support::label(&plain)
    );

    let dir = tempfile::tempdir().unwrap();
    let with_mask = write_kernel_shape(&pac, dir.path(), 2, Some(PAC_MASK_48_BIT_VA));
    let without_mask = write_kernel_shape(&pac, dir.path(), 2, None);
    let truth = support::truth(&pac);
    let mut problems = info_problems(&pac, &with_mask, &truth);
    problems.extend(library_problems(&pac, &with_mask));
    problems.extend(library_problems(&pac, &without_mask));
    problems.extend(threads_problems(&pac, &with_mask, &truth));

    // The same native stacks with the kernel's mask as with none.
    let (_, masked) = support::json_report(&["threads", "--native"], &pac, &with_mask.path);
    let (_, unmasked) = support::json_report(&["threads", "--native"], &pac, &without_mask.path);
    let mut differences = Vec::new();
    support::json_differences(
        "threads",
        &support::without_core(&unmasked),
        &support::without_core(&masked),
        &mut differences,
    );
    problems.extend(
        differences
            .iter()
            .map(|d| format!("{label}: without / with NT_ARM_PAC_MASK: {d}")),
    );

    // Each worker's native stack reaches as deep, through the same named
    // functions, as the same worker's in the core without signing (workers
    // paired by name).
    let (_, reference) = support::json_report(
        &["threads", "--native"],
        &plain,
        Path::new(plain["core"].as_str().unwrap()),
    );
    let names = |entry: &Value| -> BTreeMap<String, i64> {
        support::truth(entry)["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["is_main"] != true)
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["native_id"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let (pac_workers, plain_workers) = (names(&pac), names(&plain));
    assert!(pac_workers.len() >= 2, "{label}: workers {pac_workers:?}");
    assert_eq!(
        pac_workers.keys().collect::<Vec<_>>(),
        plain_workers.keys().collect::<Vec<_>>(),
        "{label}: the same workers"
    );
    let (functions, depths) = (native_functions(&masked), native_depths(&masked));
    let (ref_functions, ref_depths) = (native_functions(&reference), native_depths(&reference));
    for (name, lwp) in &pac_workers {
        let ref_lwp = plain_workers[name];
        let have = functions.get(lwp).cloned().unwrap_or_default();
        let want = ref_functions.get(&ref_lwp).cloned().unwrap_or_default();
        if have != want {
            problems.push(format!(
                "{label}: {name}: named native frames {have:?}, without signing {want:?}"
            ));
        }
        for entry_function in ["thread_run", "pythread_wrapper"] {
            if !have.iter().any(|f| f == entry_function) {
                problems.push(format!(
                    "{label}: {name}: no {entry_function} frame: {have:?}"
                ));
            }
        }
        let (depth, ref_depth) = (depths.get(lwp), ref_depths.get(&ref_lwp));
        if depth < ref_depth {
            problems.push(format!(
                "{label}: {name}: {depth:?} native frames, without signing {ref_depth:?}"
            ));
        }
    }
    println!(
        "{label}: {signed} signed return addresses in frame records; thread pointers {:x?}",
        with_mask.thread_pointers
    );
    support::assert_no_problems(&problems);
}
