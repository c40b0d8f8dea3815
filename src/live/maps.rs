//! `/proc/PID/maps`: the process's mappings, in address order.

use std::path::Path;

/// The most mappings read (a process has thousands at most; a cap keeps a
/// strange `/proc` from costing unbounded memory).
pub const MAX_MAPPINGS: usize = 1 << 18;

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r`, `w`, `x` and shared (`s`) versus private (`p`).
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
    /// `MAP_SHARED`.
    pub shared: bool,
    /// Offset in the file, bytes.
    pub offset: u64,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// The file's path, a pseudo-name (`[heap]`, `[stack]`, `[vdso]`,
    /// `[anon:…]`), or empty.
    pub path: String,
    /// Read-only after relocation: written by the loader, then protected.
    pub relro: bool,
}

impl Mapping {
    /// Whether a file backs it (a path and an inode).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// Whether the kernel's core dump (with its default filter) writes its
    /// contents: anonymous memory, private memory written to, the vDSO.
    /// Read-only file pages are found in the file; `[vvar]` cannot be read.
    pub fn dumped(&self) -> bool {
        if !self.read || self.path.starts_with("[vvar") || self.path == "[vsyscall]" {
            return false;
        }
        if self.path == "[vdso]" {
            return true;
        }
        if self.is_file() {
            // Private writable file mappings are .data, .bss and RELRO:
            // written by the loader or the program. Shared file mappings
            // are the file's, as the kernel's default filter has it.
            return (self.write || self.relro) && !self.shared;
        }
        true
    }
}

/// Mark the RELRO pages the kernel would dump: a private read-only file
/// mapping right below a writable mapping of the same file was written by
/// the loader before it was made read-only (the link map's `.dynamic`,
/// `.got`), so its pages are the process's, not the file's.
pub fn mark_relro(maps: &mut [Mapping]) {
    for i in 0..maps.len().saturating_sub(1) {
        let next = &maps[i + 1];
        let (written_next, next_start, next_inode) =
            (next.write && !next.shared, next.start, next.inode);
        let this = &mut maps[i];
        if this.is_file()
            && this.read
            && !this.write
            && !this.execute
            && !this.shared
            && this.offset > 0
            && written_next
            && next_start == this.end
            && next_inode == this.inode
        {
            this.relro = true;
        }
    }
}

/// Read and parse `/proc/PID/maps` (or any file of its format).
pub fn read_maps(path: &Path) -> std::io::Result<Vec<Mapping>> {
    let text = std::fs::read(path)?;
    let mut maps = parse_maps(&String::from_utf8_lossy(&text));
    mark_relro(&mut maps);
    Ok(maps)
}

/// Parse the text of a maps file; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(parse_line)
        .take(MAX_MAPPINGS)
        .collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (word, tail) = trimmed.split_at(end);
        rest = tail;
        word
    };
    let range = field();
    let perms = field().as_bytes().to_vec();
    let offset = field();
    let _device = field();
    let inode = field();
    // The path is the rest after the padding: it may hold spaces.
    let path = rest.trim_start_matches(' ').to_string();
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start || perms.len() < 4 {
        return None;
    }
    Some(Mapping {
        start,
        end,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        execute: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path,
        relro: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_spaces_pseudo_names_and_garbage() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234                       /usr/bin/python3.11
55d0c0a01000-55d0c0a02000 rw-p 00001000 08:01 1234                       /tmp/a file (deleted)
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
7ffd3000-7ffd4000 r-xp 00000000 00:00 0                                  [vdso]
7ffd5000-7ffd6000 ---p 00000000 00:00 0 
garbage
2000-1000 rw-p 00000000 00:00 0
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].path, "/usr/bin/python3.11");
        assert!(!maps[0].dumped(), "read-only file pages are in the file");
        assert_eq!(maps[1].path, "/tmp/a file (deleted)");
        assert_eq!(maps[1].offset, 0x1000);
        assert!(maps[1].dumped());
        assert!(maps[2].dumped() && maps[3].dumped());
        assert!(!maps[4].dumped(), "unreadable");
        assert_eq!(maps[4].path, "");
    }

    #[test]
    fn relro_is_the_read_only_piece_below_the_data() {
        let text = "\
1000-2000 r--p 00000000 08:01 7 /lib/libx.so
2000-3000 r-xp 00001000 08:01 7 /lib/libx.so
3000-4000 r--p 00002000 08:01 7 /lib/libx.so
4000-5000 r--p 00003000 08:01 7 /lib/libx.so
5000-6000 rw-p 00004000 08:01 7 /lib/libx.so
";
        let mut maps = parse_maps(text);
        mark_relro(&mut maps);
        let dumped: Vec<bool> = maps.iter().map(Mapping::dumped).collect();
        assert_eq!(dumped, [false, false, false, true, true]);
    }
}
