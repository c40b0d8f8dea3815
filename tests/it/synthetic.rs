//! Core parsing and the memory view, checked against synthetic cores written
//! by an independent writer (tests/it/support/synth.rs).

use crate::support;

use std::io::Write;
use std::sync::Arc;

use crate::support::synth::{self, PF_R, PF_X};
use pymortem::corefile::OpenError;
use pymortem::corefile::{CoreFile, OpenOptions, Producer};
use pymortem::memory::{Memory, MemoryExt, ProcessMemory};
use pymortem::{Options, Process, ReadFailure};

fn open_bytes(bytes: &[u8]) -> Result<CoreFile, OpenError> {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_temp(dir.path(), "core", bytes);
    CoreFile::open(&path, &OpenOptions::default())
}

#[test]
fn notes_decode_to_what_was_written() {
    let core = open_bytes(&synth::sample().build()).unwrap();
    let lwps: Vec<i32> = core.threads().iter().map(|t| t.lwp).collect();
    assert_eq!(lwps, [4242, 4243]);
    assert_eq!(core.threads()[1].pthread_id(), Some(0x7f00_0000_2740));
    assert_eq!(core.threads()[0].registers.pc(), 0x401000);
    let ps = core.psinfo().unwrap();
    assert_eq!((ps.pid, ps.uid, ps.fname.as_str()), (4242, 1000, "python3"));
    assert_eq!(ps.psargs, "python3 crash.py --flag");
    let sig = core.siginfo().unwrap();
    assert_eq!(
        (sig.signo, sig.code, sig.fault_address),
        (11, 1, Some(0xdead_beef))
    );
    assert_eq!(core.auxv().sysinfo_ehdr, Some(0x7fff_f000_0000));
    assert_eq!(core.file_mappings()[0].path, "/usr/bin/python3");
    assert_eq!(core.crashed_thread().unwrap().lwp, 4242);
    assert_eq!(core.producer(), Producer::Kernel);
    assert!(core.truncation().is_none());
}

#[test]
fn reads_span_segments_and_fail_with_reasons() {
    let core = Arc::new(open_bytes(&synth::sample().build()).unwrap());
    let mem = ProcessMemory::new(core);
    // 16 bytes straddling the two adjacent data segments.
    let mut buf = [0u8; 16];
    mem.read_exact_at(0x10ff8, &mut buf).unwrap();
    let expect: Vec<u8> = (4088..4096u32)
        .map(|i| (i % 251) as u8)
        .chain((0..8u32).map(|i| (i % 13) as u8))
        .collect();
    assert_eq!(buf.to_vec(), expect);
    // The text segment's second page was not dumped and no file backs it.
    let err = mem.read_u64(0x401000).unwrap_err();
    assert_eq!(err.addr, 0x401000);
    assert_eq!(err.reason, ReadFailure::NotDumped);
    assert_eq!(
        mem.read_u64(0x9000_0000).unwrap_err().reason,
        ReadFailure::NotMapped
    );
    // A read running off the end of the mapped range fails as a whole.
    assert!(mem.read_exact_at(0x11ff8, &mut [0u8; 16]).is_err());
}

#[test]
fn truncated_cores_keep_what_they_hold() {
    let bytes = synth::sample().build();
    let full = bytes.len();
    // Cut inside the second data segment, inside the first, and in the notes.
    for cut in [full - 2048, full - 4096 - 2048 - 4096, 200] {
        let core = open_bytes(&bytes[..cut]);
        let core = match core {
            Ok(c) => c,
            Err(e) => {
                assert!(cut < 400, "cut at {cut} should open: {e}");
                continue;
            }
        };
        let t = core.truncation().expect("truncation is reported");
        assert_eq!(t.actual_size, cut as u64);
        assert!(
            core.diagnostics()
                .iter()
                .any(|d| d.message.contains("truncated"))
        );
        let mem = ProcessMemory::new(Arc::new(core));
        if cut == full - 2048 {
            // The last segment (text) keeps its first 2048 bytes; the data segments are whole.
            assert_eq!(mem.read_u8(0x400000 + 100).unwrap(), 0x7f);
            assert_eq!(
                mem.read_u8(0x400000 + 3000).unwrap_err().reason,
                ReadFailure::Truncated
            );
            assert_eq!(mem.read_u8(0x11000 + 4095).unwrap(), (4095 % 13) as u8);
        }
    }
    // Cut in the middle of the last segment: its first half stays readable.
    let last_seg_start = full - 4096;
    let core = Arc::new(open_bytes(&bytes[..last_seg_start + 1000]).unwrap());
    let mem = ProcessMemory::new(core);
    assert_eq!(mem.read_u8(0x400000 + 999).unwrap(), 0x7f);
    assert_eq!(
        mem.read_u8(0x400000 + 1000).unwrap_err().reason,
        ReadFailure::Truncated
    );
}

#[test]
fn every_prefix_of_a_core_opens_or_fails_cleanly() {
    let bytes = synth::sample().build();
    for cut in (0..bytes.len()).step_by(97) {
        let _ = open_bytes(&bytes[..cut]).map(|c| {
            let p = Process::from_core(Arc::new(c), &Options::default());
            let _ = pymortem::report::InfoReport::build(&p);
        });
    }
}

#[test]
fn compressed_cores_open_directly() {
    let raw = synth::sample().build();
    let dir = tempfile::tempdir().unwrap();
    let mut zstd_bytes = Vec::new();
    zstd::stream::copy_encode(&raw[..], &mut zstd_bytes, 3).unwrap();
    let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
    lz4.write_all(&raw).unwrap();
    let lz4_bytes = lz4.finish().unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&raw).unwrap();
    let xz_bytes = xz.finish().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gz_bytes = gz.finish().unwrap();
    for (name, bytes, format) in [
        ("core.zst", &zstd_bytes, "zstd"),
        ("core.lz4", &lz4_bytes, "lz4"),
        ("core.xz", &xz_bytes, "xz"),
        ("core.gz", &gz_bytes, "gzip"),
    ] {
        let path = support::write_temp(dir.path(), name, bytes);
        let options = OpenOptions {
            temp_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let core = CoreFile::open(&path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(core.compression(), Some(format));
        assert_eq!(
            core.bytes(),
            &raw[..],
            "{name} decompresses to the original"
        );
        assert_eq!(core.threads().len(), 2);
        // A stream cut in half keeps what it decoded, or fails cleanly.
        let half = support::write_temp(
            dir.path(),
            &format!("half-{name}"),
            &bytes[..bytes.len() / 2],
        );
        match CoreFile::open(&half, &options) {
            Ok(core) => assert!(core.truncation().is_some() || core.bytes().len() < raw.len()),
            Err(e) => assert!(e.to_string().contains("half-"), "error names the file: {e}"),
        }
    }
    // The temp files are removed when the cores are dropped.
    let leftovers = std::fs::read_dir(dir.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("pymortem-core-")
    });
    assert_eq!(leftovers.count(), 0);
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"this is not a core file\n".to_vec()),
        ("elf-exe", std::fs::read("/bin/true").unwrap()),
        (
            "random",
            (0..10_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("bad-zstd", vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5]),
    ];
    for (name, bytes) in cases {
        let path = support::write_temp(dir.path(), name, &bytes);
        let (code, stdout, stderr) = support::pymortem(&["info", path.to_str().unwrap()]);
        assert_eq!(
            code, 2,
            "{name}: exit code 2 for bad input; stdout {stdout}"
        );
        assert!(
            stderr.contains(name),
            "{name}: the error names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn nt_file_paths_never_leave_the_sysroot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let elf = std::fs::read("/bin/true").unwrap();
    std::fs::write(outside.join("secret.so"), &elf).unwrap();
    std::fs::write(root.join("usr/lib/inside.so"), &elf).unwrap();
    // A symlink inside the sysroot that points at an absolute host path.
    std::os::unix::fs::symlink(outside.join("secret.so"), root.join("usr/lib/link.so")).unwrap();
    let mut core = synth::SynthCore::default();
    core.prstatus(7, 6, 0, 0, 0).nt_file(&[
        (0x500000, 0x501000, 0, "/../outside/secret.so"),
        (0x600000, 0x601000, 0, "/usr/../../../../outside/secret.so"),
        (0x700000, 0x701000, 0, "/usr/lib/link.so"),
        (0x800000, 0x801000, 0, "/usr/lib/../../usr/lib/inside.so"),
    ]);
    for a in [0x500000u64, 0x600000, 0x700000, 0x800000] {
        core.segment(a, elf[..4096].to_vec(), 4096, PF_R | PF_X);
    }
    let path = support::write_temp(tmp.path(), "core", &core.build());
    let process = Process::open(&path, &Options::default().sysroot(&root)).unwrap();
    let modules = process.modules().modules();
    assert_eq!(modules.len(), 4);
    for m in modules {
        if let Some(file) = m.file() {
            assert!(
                file.path().starts_with(&root),
                "{} resolved outside the sysroot: {}",
                m.recorded_path,
                file.path().display()
            );
        }
        if m.recorded_path.contains("inside") {
            assert_eq!(
                m.file().map(|f| f.path().to_path_buf()),
                Some(root.join("usr/lib/inside.so"))
            );
        } else {
            assert!(m.file().is_none(), "{} must not be found", m.recorded_path);
        }
    }
}

#[test]
fn exe_option_and_deleted_files() {
    let tmp = tempfile::tempdir().unwrap();
    let exe_bytes = std::fs::read("/bin/true").unwrap();
    let exe = support::write_temp(tmp.path(), "true-copy", &exe_bytes);
    let lib = support::write_temp(tmp.path(), "libgone.so", &exe_bytes);
    let mut core = synth::SynthCore::default();
    core.prstatus(9, 6, 0, 0, 0)
        // AT_PHDR inside the first mapping marks it as the executable.
        .auxv(&[(3, 0x400040)])
        .nt_file(&[
            (0x400000, 0x402000, 0, "/opt/app/bin/python-moved"),
            (
                0x900000,
                0x901000,
                0,
                &format!("{} (deleted)", lib.display()),
            ),
        ]);
    // The kernel keeps each ELF mapping's first page, with its build-id note.
    core.segment(0x400000, exe_bytes[..4096].to_vec(), 8192, PF_R | PF_X)
        .segment(0x900000, exe_bytes[..4096].to_vec(), 4096, PF_R | PF_X);
    let path = support::write_temp(tmp.path(), "core", &core.build());

    let without = Process::open(&path, &Options::default()).unwrap();
    let exe_module = without
        .modules()
        .executable()
        .expect("AT_PHDR names the executable");
    assert!(
        exe_module.file().is_none(),
        "the recorded path does not exist"
    );
    let err = without.memory().read_u8(0x401000 + 10).unwrap_err();
    assert!(
        matches!(err.reason, ReadFailure::FileMissing { .. }),
        "{err}"
    );

    let with = Process::open(&path, &Options::default().exe(&exe)).unwrap();
    let exe_module = with.modules().executable().unwrap();
    assert_eq!(
        exe_module.file().map(|f| f.path().to_path_buf()),
        Some(exe.clone())
    );
    assert!(matches!(
        exe_module.file_status,
        pymortem::modules::FileStatus::Verified { .. }
    ));
    // Pages past the dumped first page now come from the verified file.
    assert_eq!(
        with.memory().read_u8(0x401000 + 10).unwrap(),
        exe_bytes[4096 + 10]
    );

    let gone = with
        .modules()
        .modules()
        .iter()
        .find(|m| m.base == 0x900000)
        .unwrap();
    assert!(gone.deleted);
    assert_eq!(
        gone.recorded_path,
        lib.display().to_string(),
        "suffix removed"
    );
    assert!(
        gone.file().is_some(),
        "a deleted file that still exists at its path is used"
    );
}
