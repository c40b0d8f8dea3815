//! Entry points for the fuzz targets in `fuzz/`, also replayed over the
//! regression corpus by `tests/it/fuzz_regressions.rs`. Each takes arbitrary
//! bytes and must return without panicking, looping or over-allocating.

use std::path::Path;
use std::sync::Arc;

use crate::corefile::{CoreFile, notes};
use crate::elf::ElfImage;
use crate::layout::tables;
use crate::memory::{BufferMemory, Memory, MemoryExt, ProcessMemory};
use crate::python::objects::Objects;
use crate::python::{code, frames};

fn word(data: &[u8], i: usize) -> u64 {
    data.get(i * 8..i * 8 + 8)
        .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
}

/// Core headers and notes, and every note decoder on the raw bytes.
pub fn core_notes(data: &[u8]) {
    for arch in [crate::arch::ArchId::X86_64, crate::arch::ArchId::Aarch64] {
        let _ = notes::parse_prstatus(arch, data);
    }
    let _ = crate::arch::aarch64::thread_pointer_note(data);
    let _ = crate::arch::aarch64::pac_mask_note(data);
    let _ = notes::parse_prpsinfo(data);
    let _ = notes::parse_siginfo(data);
    let _ = notes::parse_auxv(data);
    let _ = notes::parse_nt_file(data);
    if let Ok(core) = CoreFile::from_bytes(Path::new("fuzz"), data.to_vec()) {
        let _ = core.crashed_thread();
        let process = crate::Process::from_core(Arc::new(core), &crate::Options::default());
        for thread in process.threads() {
            let _ = crate::memory::threads::is_pthread_of(process.memory(), thread, word(data, 3));
        }
        let _ = crate::report::InfoReport::build(&process);
    }
}

/// The memory view over a core built from the first part of the input, read
/// at addresses and lengths taken from the second.
pub fn memory_view(data: &[u8]) {
    let split = (word(data, 0) as usize % data.len().max(1))
        .max(8)
        .min(data.len());
    let (core_bytes, reads) = data.split_at(split);
    let Ok(core) = CoreFile::from_bytes(Path::new("fuzz"), core_bytes.to_vec()) else {
        return;
    };
    let memory = ProcessMemory::new(Arc::new(core));
    for i in 0..reads.len() / 8 {
        let addr = word(reads, i);
        let mut buf = [0u8; 64];
        let len = (addr % 65) as usize;
        let _ = memory.read_exact_at(addr, &mut buf[..len]);
        let _ = memory.read_cstr(addr, 300);
        let _ = memory.core_only().read_u64(addr);
        let _ = memory.provenance(addr);
        let _ = memory.read_bytes(addr, addr >> 40, 1 << 16);
    }
}

/// Layout extraction, call-site values, source lines and call sites from
/// an ELF image's DWARF.
pub fn dwarf_layout(data: &[u8]) {
    if let Some(image) = ElfImage::from_bytes("fuzz", data.to_vec()) {
        let _ = crate::layout::from_dwarf(&image, None, (3, 11, Some(7)));
        let _ = image.build_id();
        let _ = image.debuglink();
        let _ = crate::symbols::SymbolTable::from_images(&[&image]).lookup(word(data, 3));
        // What native stacks read: call-site values, source lines, and the
        // call sites that rebuild tail-call frames.
        let _ = crate::dwarf::call_site_values(&image, word(data, 5));
        if let Some(lines) = crate::dwarf::SourceLines::new(&image) {
            let _ = lines.frames(word(data, 7));
            let _ = lines.call_sites(word(data, 7));
        }
        // dwz links, and the image as its own supplementary file: the alt
        // and sup forms then lead into the same hostile DWARF.
        let _ = image.supplementary_link();
        let _ = image.supplementary_ids();
        let linked = image.clone().with_supplementary(image);
        let _ = crate::layout::from_dwarf(&linked, None, (3, 11, Some(7)));
        let _ = crate::dwarf::call_site_values(&linked, word(data, 5));
        if let Some(lines) = crate::dwarf::SourceLines::new(&linked) {
            let _ = lines.frames(word(data, 7));
            let _ = lines.call_sites(word(data, 7));
        }
    }
}

/// One CFI step over `.eh_frame` (and `.debug_frame`) bytes from the
/// input, with registers and stack memory taken from the input too; and the
/// stack scan's call decoding.
pub fn cfi_step(data: &[u8]) {
    if data.len() < 160 {
        return;
    }
    let (head, sections) = data.split_at(160);
    let arch = if head[0] & 2 == 0 {
        crate::arch::ArchId::X86_64
    } else {
        crate::arch::ArchId::Aarch64
    };
    let mut regs = crate::arch::UnwindRegisters::new(arch);
    for n in 0..arch.dwarf_register_count() {
        regs.set(n, Some(word(head, usize::from(n) % 20)));
    }
    let memory = BufferMemory {
        base: word(head, 0) & !0xfff,
        bytes: head.to_vec(),
    };
    // The input's tail is `.eh_frame`, or `.eh_frame` then `.debug_frame`:
    // the step falls back to the latter for code the former lacks.
    let split = (word(head, 18) as usize) % (sections.len() + 1);
    let (eh_frame, debug_frame) = sections.split_at(split);
    let debug_frame = (head[0] & 1 == 1).then_some(debug_frame);
    let cfi = crate::unwind::cfi::ModuleCfi::with_debug_frame(
        arch,
        eh_frame,
        0x1000,
        None,
        debug_frame,
        0,
    );
    let _ = cfi.step(&memory, word(head, 17) % 0x10000, &regs);
    // The rules that need no CFI: frame records, signal frames, and the
    // instruction decoders of the stack scan and the tail-call search.
    let read = |a: u64| memory.read_u64(a).ok();
    let _ = arch.frame_pointer_step(read, &regs, Some(word(head, 19)));
    let _ = arch.signal_frame_registers(read, word(head, 2));
    let _ = arch.signal_frame_registers_at(read, word(head, 9), word(head, 2));
    let _ = arch.pthread_from_thread_pointer(read, word(head, 3), word(head, 4) as i32);
    let _ = arch.code_address(word(head, 5), (head[0] & 4 == 4).then(|| word(head, 6)));
    for before in sections.windows(arch.call_lookback()).take(256) {
        let _ = arch.follows_call(before);
    }
    for call in sections.windows(arch.direct_call_length()).take(64) {
        let _ = arch.direct_call_target(word(head, 7), call);
    }
    for stub in sections.windows(arch.plt_stub_length()).take(64) {
        let _ = arch.plt_slot(word(head, 8), stub);
    }
}

/// The CPython walkers (frames, code objects, line tables, reprs,
/// instance attributes) over
/// synthetic memory laid out by the input, with a real version's layout.
pub fn python_walkers(data: &[u8]) {
    const BASE: u64 = 0x1_0000;
    let versions = [
        (2, 7, "2.7.18"),
        (3, 8, "3.8.18"),
        (3, 10, "3.10.13"),
        (3, 11, "3.11.7"),
        (3, 13, "3.13.0"),
        (3, 12, "3.12.1"),
        (3, 14, "3.14.10"),
    ];
    let (major, minor, micro) =
        versions[data.first().copied().unwrap_or(0) as usize % versions.len()];
    let Some(table) = tables::builtin(major, minor) else {
        return;
    };
    let layout = table.layout_for(micro);
    let memory = BufferMemory {
        base: BASE,
        bytes: data.to_vec(),
    };
    let objects = Objects::new(&memory, &layout, 4);
    let anchors = crate::python::types::TypeAnchors::from_builtins(&objects, Some(BASE));
    let objects = objects.with_anchors(&anchors);
    let _ = frames::walk(&objects, BASE, true);
    for i in 0..(data.len() / 8).min(64) {
        let addr = word(data, i);
        objects.learn_cell(addr);
        let _ = objects.repr(addr);
        let _ = objects.code(addr);
        let _ = objects.dict_items(addr, 8);
        let _ = objects.attributes(addr, 8);
        let _ = objects.string_len(addr);
        let _ = objects.dict_len(addr);
    }
    use crate::layout::facts::LineTable;
    for kind in [
        LineTable::Lnotab,
        LineTable::Linetable310,
        LineTable::Locations311,
    ] {
        let _ = code::line_for(kind, data, word(data, 1) as i64, word(data, 2) as i64);
    }
}
