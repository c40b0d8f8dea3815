//! Separate debug files: by build-id, by `.gnu_debuglink` with its CRC checked,
//! and compressed debug sections (zlib and zstd). The fixtures are compiled
//! and split with gcc and objcopy at test time.

use std::path::{Path, PathBuf};
use std::process::Command;

use pymortem::modules::{
    DebugVia, ElfImage, SearchPaths, SectionCompression, find_debug_file,
    find_debug_file_noting_skips, hex,
};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A program with enough types that objcopy finds its DWARF worth compressing.
fn build_program(dir: &Path) -> PathBuf {
    let mut src = String::new();
    for i in 0..200 {
        src.push_str(&format!(
            "struct s{i} {{ long a{i}; double b{i}; char c{i}[{}]; }};\n",
            i + 1
        ));
        src.push_str(&format!(
            "struct s{i} g{i};\nlong f{i}(struct s{i} *p) {{ return p->a{i} + (long)p->b{i}; }}\n"
        ));
    }
    src.push_str("int main(void) { return (int)f0(&g0); }\n");
    std::fs::write(dir.join("prog.c"), src).unwrap();
    let exe = dir.join("prog");
    run(Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--build-id", "-o"])
        .arg(&exe)
        .arg(dir.join("prog.c")));
    exe
}

fn objcopy(args: &[&str], from: &Path, to: &Path) {
    run(Command::new("objcopy").args(args).arg(from).arg(to));
}

#[test]
fn debuglink_is_followed_only_with_the_right_crc() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path());
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let debug = bin_dir.join("prog.debug");
    objcopy(&["--only-keep-debug"], &exe, &debug);
    let stripped = bin_dir.join("prog");
    // objcopy computes the CRC of prog.debug, found relative to the cwd.
    run(Command::new("objcopy")
        .current_dir(&bin_dir)
        .args(["--strip-debug", "--add-gnu-debuglink=prog.debug"])
        .arg(&exe)
        .arg(&stripped));
    let image = ElfImage::open(&stripped).unwrap();
    assert!(!image.has_dwarf());
    let paths = SearchPaths {
        no_default_debug_dir: true,
        ..Default::default()
    };
    let (found, via) =
        find_debug_file(&paths, None, Some(&image), "/usr/bin/prog").expect("found by debuglink");
    assert_eq!(via, DebugVia::Debuglink);
    assert_eq!(found.path(), debug);
    assert!(found.has_dwarf());
    // One flipped byte changes the CRC: the file is no longer trusted.
    let mut bytes = std::fs::read(&debug).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&debug, bytes).unwrap();
    assert!(find_debug_file(&paths, None, Some(&image), "/usr/bin/prog").is_none());
}

#[test]
fn build_id_directory_is_searched_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path());
    let id = ElfImage::open(&exe)
        .unwrap()
        .build_id()
        .expect("gcc wrote a build-id");
    let hexid = hex(&id);
    let debug_dir = dir.path().join("debug");
    let target = debug_dir
        .join(".build-id")
        .join(&hexid[..2])
        .join(format!("{}.debug", &hexid[2..]));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    objcopy(&["--only-keep-debug"], &exe, &target);
    let paths = SearchPaths {
        debug_dirs: vec![debug_dir.clone()],
        no_default_debug_dir: true,
        ..Default::default()
    };
    let (found, via) =
        find_debug_file(&paths, Some(&id), None, "/x/prog").expect("found by build-id");
    assert_eq!((found.path(), via), (target.as_path(), DebugVia::BuildId));
    // A file at the right place with another build-id is refused.
    let mut other = id.clone();
    other[0] ^= 1;
    let other_hex = hex(&other);
    let wrong = debug_dir
        .join(".build-id")
        .join(&other_hex[..2])
        .join(format!("{}.debug", &other_hex[2..]));
    std::fs::create_dir_all(wrong.parent().unwrap()).unwrap();
    std::fs::copy(&target, &wrong).unwrap();
    assert!(find_debug_file(&paths, Some(&other), None, "/x/prog").is_none());
}

#[test]
fn compressed_debug_sections_decompress() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path());
    let plain = ElfImage::open(&exe).unwrap();
    let expected = plain
        .section_data(".debug_info")
        .unwrap()
        .unwrap()
        .into_owned();
    assert_eq!(plain.debug_compression(), SectionCompression::None);
    for (flag, kind) in [
        ("zlib", SectionCompression::Zlib),
        ("zstd", SectionCompression::Zstd),
    ] {
        let out = dir.path().join(format!("prog.{flag}"));
        objcopy(&[&format!("--compress-debug-sections={flag}")], &exe, &out);
        let image = ElfImage::open(&out).unwrap();
        assert_eq!(image.debug_compression(), kind, "{flag}");
        assert!(image.has_dwarf());
        let data = image.section_data(".debug_info").unwrap().unwrap();
        assert_eq!(
            &data[..],
            &expected[..],
            "{flag} decompresses to the original .debug_info"
        );
        // And gimli reads the first unit header from it.
        let section = gimli::DebugInfo::new(&data, gimli::LittleEndian);
        let unit = section.units().next().unwrap().expect("a unit");
        assert!(unit.version() >= 4);
    }
}

/// A stripped `usr/bin/prog` with a debug link to `prog.debug` inside a
/// sysroot under `dir`, and the real `prog.debug` outside it.
/// Returns (sysroot, module image, the real debug file).
fn sysroot_with_debuglink(dir: &Path) -> (PathBuf, ElfImage, PathBuf) {
    let exe = build_program(dir);
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let debug = outside.join("prog.debug");
    objcopy(&["--only-keep-debug"], &exe, &debug);
    let root = dir.join("root");
    let bin_dir = root.join("usr/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    run(Command::new("objcopy")
        .current_dir(&outside)
        .args(["--strip-debug", "--add-gnu-debuglink=prog.debug"])
        .arg(&exe)
        .arg(bin_dir.join("prog")));
    let image = ElfImage::open(&bin_dir.join("prog")).unwrap();
    (root, image, debug)
}

#[test]
fn a_debuglink_symlink_never_leaves_the_sysroot() {
    let dir = tempfile::tempdir().unwrap();
    let (root, image, outside_debug) = sysroot_with_debuglink(dir.path());
    let paths = SearchPaths {
        sysroot: Some(root.clone()),
        no_default_debug_dir: true,
        ..Default::default()
    };
    // Both debuglink places beside the module hold an absolute symlink to
    // the right debug file, outside the sysroot.
    let beside = root.join("usr/bin/prog.debug");
    std::os::unix::fs::symlink(&outside_debug, &beside).unwrap();
    std::fs::create_dir_all(root.join("usr/bin/.debug")).unwrap();
    std::os::unix::fs::symlink(&outside_debug, root.join("usr/bin/.debug/prog.debug")).unwrap();
    assert!(
        find_debug_file(&paths, None, Some(&image), "/usr/bin/prog").is_none(),
        "a debug file outside the sysroot was used"
    );
    // The same file inside the sysroot is found.
    std::fs::remove_file(&beside).unwrap();
    std::fs::copy(&outside_debug, &beside).unwrap();
    let (found, via) =
        find_debug_file(&paths, None, Some(&image), "/usr/bin/prog").expect("found by debuglink");
    assert_eq!(via, DebugVia::Debuglink);
    assert_eq!(found.path(), beside);
}

#[test]
fn a_sparse_debuglink_candidate_is_skipped_before_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let (root, image, outside_debug) = sysroot_with_debuglink(dir.path());
    let paths = SearchPaths {
        sysroot: Some(root.clone()),
        no_default_debug_dir: true,
        ..Default::default()
    };
    // A real debug file's headers, then 100 GiB of holes: no disk is used.
    let candidate = root.join("usr/bin/prog.debug");
    std::fs::copy(&outside_debug, &candidate).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&candidate)
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    let mut skipped = Vec::new();
    let found =
        find_debug_file_noting_skips(&paths, None, Some(&image), "/usr/bin/prog", &mut skipped);
    assert!(found.is_none());
    let prefix = format!("{}: skipped: ", candidate.display());
    assert!(
        skipped.iter().any(|s| s.starts_with(&prefix)),
        "no skip of {} in {skipped:?}",
        candidate.display()
    );
}

#[test]
fn a_fifo_as_debuglink_candidate_is_skipped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (root, image, _) = sysroot_with_debuglink(dir.path());
    let paths = SearchPaths {
        sysroot: Some(root.clone()),
        no_default_debug_dir: true,
        ..Default::default()
    };
    let candidate = root.join("usr/bin/prog.debug");
    run(Command::new("mkfifo").arg(&candidate));
    let mut skipped = Vec::new();
    let found =
        find_debug_file_noting_skips(&paths, None, Some(&image), "/usr/bin/prog", &mut skipped);
    assert!(found.is_none());
    assert_eq!(
        skipped,
        [format!(
            "{}: skipped: not a regular file: it is a FIFO",
            candidate.display()
        )]
    );
}
