//! Writing an ELF core as the kernel does: a note segment (a
//! `NT_PRSTATUS` and `NT_FPREGSET` per thread, `NT_PRPSINFO`, `NT_AUXV`,
//! `NT_FILE`, and pymortem's own note saying how the copy was taken), then
//! one `PT_LOAD` per mapping, its bytes where the kernel would dump them.
//! Zero pages are left as holes: a thread's untouched stack costs nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// `PT_LOAD` flags.
pub const PF_X: u32 = 1;
/// Writable.
pub const PF_W: u32 = 2;
/// Readable.
pub const PF_R: u32 = 4;

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const PAGE: u64 = 4096;

/// One note.
#[derive(Debug, Clone)]
pub struct Note {
    /// Its owner (`CORE`, `LINUX`, `PYMORTEM`), without the NUL.
    pub name: &'static str,
    /// `n_type`.
    pub kind: u32,
    /// The descriptor.
    pub desc: Vec<u8>,
}

/// One `PT_LOAD`: `dumped` bytes of its contents are in the file.
#[derive(Debug, Clone)]
pub struct LoadSegment {
    /// Address.
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// Size in the file: `memsz` or 0 (the kernel dumps all or nothing;
    /// an ELF header page is dumped alone as a one-page segment).
    pub filesz: u64,
    /// `PF_*`.
    pub flags: u32,
}

/// The layout of a core about to be written: where each segment's bytes go.
#[derive(Debug)]
pub struct CoreLayout {
    /// Each segment's file offset.
    pub offsets: Vec<u64>,
    /// Each note's descriptor's file offset.
    pub desc_offsets: Vec<u64>,
}

/// The note segment's bytes, and where each descriptor starts in it.
fn notes_bytes(notes: &[Note]) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    let mut desc_offsets = Vec::with_capacity(notes.len());
    for note in notes {
        let name_len = note.name.len() + 1;
        out.extend_from_slice(&(name_len as u32).to_le_bytes());
        out.extend_from_slice(&(note.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&note.kind.to_le_bytes());
        out.extend_from_slice(note.name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        desc_offsets.push(out.len() as u64);
        out.extend_from_slice(&note.desc);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    (out, desc_offsets)
}

/// Write the ELF header, the program headers and the notes of a core
/// with these segments (their bytes are written afterwards, at the
/// offsets returned).
pub fn write_headers(
    file: &File,
    e_machine: u16,
    notes: &[Note],
    segments: &[LoadSegment],
) -> io::Result<CoreLayout> {
    let (notes, desc_offsets) = notes_bytes(notes);
    let phnum = segments.len() as u64 + 1;
    let notes_offset = EHDR_SIZE + PHDR_SIZE * phnum;
    let mut offset = (notes_offset + notes.len() as u64).next_multiple_of(PAGE);
    let mut offsets = Vec::with_capacity(segments.len());
    for segment in segments {
        offsets.push(offset);
        offset += segment.filesz.next_multiple_of(PAGE);
    }
    let mut head = Vec::with_capacity(notes_offset as usize);
    // e_ident: ELF64, little-endian, version 1, System V.
    head.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    head.extend_from_slice(&[0; 8]);
    head.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    head.extend_from_slice(&e_machine.to_le_bytes());
    head.extend_from_slice(&1u32.to_le_bytes()); // e_version
    head.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    head.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    head.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    head.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    head.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    head.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    // More than 0xffff headers would need PN_XNUM; callers cap the count.
    head.extend_from_slice(&(phnum.min(0xffff) as u16).to_le_bytes());
    head.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    head.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    head.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    program_header(
        &mut head,
        4, // PT_NOTE
        0,
        notes_offset,
        0,
        notes.len() as u64,
        0,
        4,
    );
    for (segment, &at) in segments.iter().zip(&offsets) {
        program_header(
            &mut head,
            1, // PT_LOAD
            segment.flags,
            at,
            segment.vaddr,
            segment.filesz,
            segment.memsz,
            PAGE,
        );
    }
    head.extend_from_slice(&notes);
    file.write_all_at(&head, 0)?;
    file.set_len(offset)?;
    Ok(CoreLayout {
        offsets,
        desc_offsets: desc_offsets.iter().map(|d| notes_offset + d).collect(),
    })
}

#[allow(clippy::too_many_arguments)] // the fields of Elf64_Phdr, in order
fn program_header(
    out: &mut Vec<u8>,
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&vaddr.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
    out.extend_from_slice(&filesz.to_le_bytes());
    out.extend_from_slice(&memsz.to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
}

/// Write `bytes` at `offset`, leaving its zero pages as holes (the file
/// was sized beforehand, so a hole reads as zeros).
pub fn write_sparse(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let mut run: Option<usize> = None;
    for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
        let at = i * PAGE as usize;
        let zero = page.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(at),
            (true, Some(start)) => {
                file.write_all_at(&bytes[start..at], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        file.write_all_at(&bytes[start..], offset + start as u64)?;
    }
    Ok(())
}

/// `NT_FILE`: the file mappings, (start, end, offset in bytes, path).
pub fn nt_file(entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
    let mut desc = Vec::new();
    desc.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    desc.extend_from_slice(&PAGE.to_le_bytes());
    for &(start, end, offset, _) in entries {
        desc.extend_from_slice(&start.to_le_bytes());
        desc.extend_from_slice(&end.to_le_bytes());
        desc.extend_from_slice(&(offset / PAGE).to_le_bytes());
    }
    for &(_, _, _, path) in entries {
        desc.extend_from_slice(path.as_bytes());
        desc.push(0);
    }
    desc
}

/// `NT_PRPSINFO` (x86-64 and AArch64 share its layout).
pub fn prpsinfo(pid: i32, ppid: i32, uid: u32, gid: u32, fname: &str, args: &str) -> Vec<u8> {
    let mut desc = vec![0u8; 136];
    desc[16..20].copy_from_slice(&uid.to_le_bytes());
    desc[20..24].copy_from_slice(&gid.to_le_bytes());
    desc[24..28].copy_from_slice(&pid.to_le_bytes());
    desc[28..32].copy_from_slice(&ppid.to_le_bytes());
    let fname = &fname.as_bytes()[..fname.len().min(15)];
    desc[40..40 + fname.len()].copy_from_slice(fname);
    let args = &args.as_bytes()[..args.len().min(79)];
    desc[56..56 + args.len()].copy_from_slice(args);
    desc
}
