//! Debug files whose compressed `.debug_info` declares 4 GiB (issue 15, item
//! 4): the real debug file of Debian's python3.13 with its zlib header
//! rewritten, and the same file with `.debug_info` replaced by 128 KB of
//! zstd that really expands to 4 GiB. pymortem must stay under 1 GiB, show
//! every thread's stack from `_Py_DebugOffsets`, and say why DWARF was not
//! used.

use crate::support;

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};
use serde_json::Value;

const CLAIMED: u64 = 4 << 30;
const RSS_LIMIT_KB: i64 = 1 << 20;

/// The debian-3.13 kernel core of the threads scenario.
fn entry() -> Value {
    support::manifest()
        .into_iter()
        .find(|e| {
            e["interp"] == "debian-3.13" && e["scenario"] == "threads" && e["kind"] == "kernel"
        })
        .expect("the manifest has debian-3.13 threads.kernel")
}

/// The interpreter's debug file, by build-id under the entry's debug dir.
fn debug_file(entry: &Value) -> (PathBuf, String) {
    // The manifest's exe is the interpreter's path on this machine (in the sysroot).
    let exe = Path::new(entry["exe"].as_str().unwrap());
    let image = pymortem::modules::ElfImage::open(exe).expect("the interpreter opens");
    let id = pymortem::modules::hex(&image.build_id().expect("a build-id"));
    let relative = format!(".build-id/{}/{}.debug", &id[..2], &id[2..]);
    let dir = entry["debug_dirs"][0].as_str().unwrap();
    (Path::new(dir).join(&relative), relative)
}

/// `.debug_info`'s section header offset and its data's file range.
fn debug_info(bytes: &[u8]) -> (usize, usize, usize) {
    let file = object::File::parse(bytes).unwrap();
    let section = file.section_by_name(".debug_info").unwrap();
    let (offset, size) = section.file_range().unwrap();
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(bytes[0x3a..0x3c].try_into().unwrap()) as usize;
    (
        shoff + section.index().0 * shentsize,
        offset as usize,
        size as usize,
    )
}

/// The zlib variant: only the declared size (`Elf64_Chdr.ch_size`) changes.
fn claim_4gib_zlib(bytes: &mut [u8]) {
    let (_, offset, _) = debug_info(bytes);
    assert_eq!(
        bytes[offset], 1,
        "the debug file's .debug_info is zlib (ELFCOMPRESS_ZLIB)"
    );
    bytes[offset + 8..offset + 16].copy_from_slice(&CLAIMED.to_le_bytes());
}

/// The zstd variant: a frame of 32,768 RLE blocks of 128 KiB of zeros, 4 GiB
/// once decoded, written over the section's data, whose size shrinks to it.
fn zstd_4gib_bomb(bytes: &mut [u8]) {
    let (header, offset, size) = debug_info(bytes);
    let mut data = Vec::new();
    data.extend_from_slice(&2u32.to_le_bytes()); // ELFCOMPRESS_ZSTD
    data.extend_from_slice(&0u32.to_le_bytes());
    data.extend_from_slice(&CLAIMED.to_le_bytes());
    data.extend_from_slice(&1u64.to_le_bytes());
    data.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // No content size, no dictionary; a 128 KiB window (exponent 7).
    data.extend_from_slice(&[0x00, 7 << 3]);
    let blocks = CLAIMED / (128 << 10);
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let block_header = (128u32 << 10) << 3 | 1 << 1 | last;
        data.extend_from_slice(&block_header.to_le_bytes()[..3]);
        data.push(0);
    }
    assert!(data.len() <= size, "the bomb fits where .debug_info was");
    bytes[offset..offset + data.len()].copy_from_slice(&data);
    bytes[header + 32..header + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
}

fn run_with_patched_debug_file(patch: fn(&mut Vec<u8>), declared: &str) {
    let entry = entry();
    let truth = support::truth(&entry);
    let (original, relative) = debug_file(&entry);
    let mut bytes = std::fs::read(&original).unwrap();
    patch(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let patched = dir.path().join(&relative);
    std::fs::create_dir_all(patched.parent().unwrap()).unwrap();
    std::fs::write(&patched, &bytes).unwrap();
    drop(bytes);

    let debug_dir = dir.path().to_str().unwrap();
    let sysroot = entry["sysroot"].as_str().unwrap();
    let core = entry["core"].as_str().unwrap();
    let (code, out, err, rss) = support::pymortem_with_peak_rss(&[
        "threads",
        "--no-cache",
        "--sysroot",
        sysroot,
        "--no-default-debug-dir",
        "--debug-dir",
        debug_dir,
        core,
    ]);
    let mut problems = Vec::new();
    if rss >= RSS_LIMIT_KB {
        problems.push(format!("peak RSS {rss} KB, over 1 GiB"));
    }
    if code != 0 {
        problems.push(format!("exit {code}, expected 0"));
    }
    if !out.contains("layout from _Py_DebugOffsets") {
        problems.push(format!(
            "the layout is not _Py_DebugOffsets: {}",
            out.lines().next().unwrap_or("")
        ));
    }
    if !out.contains(declared) && !err.contains(declared) {
        problems.push(format!("no diagnostic saying `{declared}`"));
    }
    for thread in truth["threads"].as_array().unwrap() {
        for frame in thread["stack"].as_array().unwrap() {
            let line = format!(
                "File \"{}\", line {}, in ",
                frame["file"].as_str().unwrap(),
                frame["line"]
            );
            if !out.contains(&line) {
                problems.push(format!("thread {}: no frame `{line}`", thread["native_id"]));
            }
        }
    }
    if !problems.is_empty() {
        problems.push(format!("stdout:\n{out}\nstderr:\n{err}"));
    }
    support::assert_no_problems(&problems);
}

#[test]
fn zlib_debug_info_claiming_4gib_falls_back_to_debug_offsets() {
    if support::matrix_missing() {
        return;
    }
    run_with_patched_debug_file(
        |bytes| claim_4gib_zlib(bytes),
        &format!(".debug_info: compressed section declares {CLAIMED} bytes"),
    );
}

#[test]
fn zstd_debug_info_expanding_to_4gib_stays_bounded() {
    if support::matrix_missing() {
        return;
    }
    run_with_patched_debug_file(
        |bytes| zstd_4gib_bomb(bytes),
        &format!(".debug_info: compressed section declares {CLAIMED} bytes"),
    );
}

/// Each section within its own bound (250 MiB from 8 MiB: a skippable
/// frame of padding, then zeros in RLE blocks), but five of them loaded
/// together would hold 1.25 GB: the sections of one file share one bound.
const EACH: u64 = 250 << 20;
const SECTIONS: [&str; 5] = [
    ".debug_info",
    ".debug_abbrev",
    ".debug_str",
    ".debug_line",
    ".debug_line_str",
];

fn zstd_sections_adding_up(bytes: &mut Vec<u8>) {
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(bytes[0x3a..0x3c].try_into().unwrap()) as usize;
    let indices: Vec<usize> = {
        let file = object::File::parse(&bytes[..]).unwrap();
        SECTIONS
            .iter()
            .map(|name| {
                file.section_by_name(name)
                    .unwrap_or_else(|| panic!("the debug file has {name}"))
                    .index()
                    .0
            })
            .collect()
    };
    for index in indices {
        let mut data = Vec::new();
        data.extend_from_slice(&2u32.to_le_bytes()); // ELFCOMPRESS_ZSTD
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&EACH.to_le_bytes());
        data.extend_from_slice(&1u64.to_le_bytes());
        let padding = 8u32 << 20;
        data.extend_from_slice(&0x184D_2A50u32.to_le_bytes()); // a skippable frame
        data.extend_from_slice(&padding.to_le_bytes());
        data.resize(data.len() + padding as usize, 0x5a);
        data.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
        data.extend_from_slice(&[0x00, 7 << 3]);
        let blocks = EACH / (128 << 10);
        for i in 0..blocks {
            let last = u32::from(i + 1 == blocks);
            let block_header = (128u32 << 10) << 3 | 1 << 1 | last;
            data.extend_from_slice(&block_header.to_le_bytes()[..3]);
            data.push(0);
        }
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
        let header = shoff + index * shentsize;
        let flags = u64::from_le_bytes(bytes[header + 8..header + 16].try_into().unwrap());
        bytes[header + 8..header + 16].copy_from_slice(&(flags | 0x800).to_le_bytes()); // SHF_COMPRESSED
        let at = bytes.len() as u64;
        bytes[header + 24..header + 32].copy_from_slice(&at.to_le_bytes());
        bytes[header + 32..header + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&data);
    }
}

#[test]
fn sections_within_their_own_bound_cannot_add_up_past_the_files_bound() {
    if support::matrix_missing() {
        return;
    }
    run_with_patched_debug_file(
        zstd_sections_adding_up,
        &format!("compressed section declares {EACH} bytes"),
    );
}
