//! The few tar (ustar) records a bundle uses, written and read by hand: a
//! member is a 512-byte header and its bytes padded to 512, so a reader
//! over a mapped archive serves each member as a slice, never copying it.

use std::io::{self, Write};

/// Tar's block size.
pub const BLOCK: usize = 512;
/// Members read from one archive, at most (a bundle has a few dozen).
pub const MAX_MEMBERS: usize = 100_000;

/// What a member is, from its type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A regular file (`0` or NUL).
    File,
    /// A hard link (`1`).
    HardLink,
    /// A symbolic link (`2`).
    SymLink,
    /// A folder (`5`).
    Folder,
    /// Anything else (devices, FIFOs, pax or GNU extension records).
    Other(u8),
}

/// One member of a mapped archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name, `prefix/name` for ustar; not UTF-8-checked, not a path.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Where its bytes start in the archive.
    pub offset: usize,
    /// How many of its bytes the archive holds.
    pub len: usize,
    /// How many its header declares (more than `len` when the archive is cut short).
    pub declared: u64,
}

/// Why a walk over an archive stopped before its end marker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The end-of-archive marker (a zero block), or the bytes ran out on a block boundary.
    End,
    /// The bytes end inside a header or a member.
    Truncated,
    /// A header's checksum or fields are wrong: the rest cannot be trusted.
    BadHeader {
        /// The header's first byte in the archive.
        at: usize,
        /// What is wrong with it.
        reason: HeaderError,
    },
    /// More than [`MAX_MEMBERS`].
    TooMany,
}

/// Why a 512-byte block is not a usable tar header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The checksum field is not octal.
    #[error("the checksum field is not a number")]
    ChecksumNotANumber,
    /// The checksum does not match the header's bytes.
    #[error("checksum {stored} where the header sums to {computed}: not a tar header")]
    ChecksumMismatch {
        /// What the header says.
        stored: u64,
        /// What its bytes sum to.
        computed: u64,
    },
    /// The size field is neither octal nor base-256.
    #[error("the size field is not a number")]
    SizeNotANumber,
}

/// Every member of `archive`, in order, and why the walk ended.
pub fn members(archive: &[u8]) -> (Vec<Member>, Stop) {
    let mut found = Vec::new();
    let mut at = 0usize;
    loop {
        if found.len() >= MAX_MEMBERS {
            return (found, Stop::TooMany);
        }
        let Some(header) = archive.get(at..at + BLOCK) else {
            let stop = if at >= archive.len() {
                Stop::End
            } else {
                Stop::Truncated
            };
            return (found, stop);
        };
        if header.iter().all(|&b| b == 0) {
            return (found, Stop::End);
        }
        let member = match parse_header(header, at + BLOCK, archive.len()) {
            Ok(m) => m,
            Err(reason) => return (found, Stop::BadHeader { at, reason }),
        };
        let complete = member.len as u64 == member.declared;
        let next = member.offset + member.len.next_multiple_of(BLOCK);
        found.push(member);
        if !complete {
            return (found, Stop::Truncated);
        }
        at = next;
    }
}

fn parse_header(header: &[u8], offset: usize, archive_len: usize) -> Result<Member, HeaderError> {
    let stored = octal(&header[148..156]).ok_or(HeaderError::ChecksumNotANumber)?;
    let computed: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != computed {
        return Err(HeaderError::ChecksumMismatch { stored, computed });
    }
    let declared = size(&header[124..136]).ok_or(HeaderError::SizeNotANumber)?;
    let kind = match header[156] {
        b'0' | 0 => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::SymLink,
        b'5' => Kind::Folder,
        other => Kind::Other(other),
    };
    let name = text(&header[0..100]);
    let name = if &header[257..262] == b"ustar" && header[345] != 0 {
        format!("{}/{name}", text(&header[345..500]))
    } else {
        name
    };
    // Links and folders carry no bytes, whatever their size field says.
    let body = if matches!(kind, Kind::HardLink | Kind::SymLink | Kind::Folder) {
        0
    } else {
        declared
    };
    let room = archive_len.saturating_sub(offset) as u64;
    Ok(Member {
        name,
        kind,
        offset,
        len: body.min(room) as usize,
        declared: body,
    })
}

/// A NUL-ended field as text (lossy: names are compared, never opened).
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// An octal field (spaces and NULs around it allowed).
fn octal(field: &[u8]) -> Option<u64> {
    let digits: &[u8] = field
        .split(|&b| b == 0 || b == b' ')
        .find(|part| !part.is_empty())
        .unwrap_or(b"0");
    digits.iter().try_fold(0u64, |n, &d| {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        n.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

/// A size field: octal, or GNU's base-256 (first byte 0x80) for 8 GiB and more.
fn size(field: &[u8]) -> Option<u64> {
    if field[0] == 0x80 {
        return field[1..]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256)?.checked_add(u64::from(b)));
    }
    octal(field)
}

/// Write one regular-file member's header for `name` (`prefix` + `name`
/// when longer than 100 bytes) of `len` bytes. Owner root, mode 0644,
/// time 0: the same inputs make the same archive.
pub fn write_header(out: &mut impl Write, name: &str, len: u64) -> io::Result<()> {
    let mut header = [0u8; BLOCK];
    let (prefix, base) = split_name(name)?;
    header[..base.len()].copy_from_slice(base.as_bytes());
    header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    if len < 1 << 33 {
        header[124..136].copy_from_slice(format!("{len:011o}\0").as_bytes());
    } else {
        header[124] = 0x80;
        header[128..136].copy_from_slice(&len.to_be_bytes());
    }
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.write_all(&header)
}

/// Zeros that pad a member of `len` bytes to its block.
pub fn padding(len: u64) -> &'static [u8] {
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    let rest = (len % BLOCK as u64) as usize;
    if rest == 0 { &[] } else { &ZEROS[rest..] }
}

/// The two zero blocks that end an archive.
pub fn write_end(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// Split `name` into ustar's prefix (155 bytes) and name (100 bytes) at a `/`.
fn split_name(name: &str) -> io::Result<(&str, &str)> {
    if name.len() <= 100 {
        return Ok(("", name));
    }
    name.char_indices()
        .filter(|&(i, c)| c == '/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .next()
        .ok_or_else(|| io::Error::other(format!("{name}: too long for a tar member name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, bytes) in members {
            write_header(&mut out, name, bytes.len() as u64).unwrap();
            out.extend_from_slice(bytes);
            out.extend_from_slice(padding(bytes.len() as u64));
        }
        write_end(&mut out).unwrap();
        out
    }

    #[test]
    fn members_are_read_back_as_slices() {
        let long = format!("files/{}/{}", "ab".repeat(64), "n".repeat(90));
        let bytes = archive(&[("a", b"hello"), (&long, &[7u8; 1000]), ("empty", b"")]);
        let (found, stop) = members(&bytes);
        assert_eq!(stop, Stop::End);
        let names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", long.as_str(), "empty"]);
        assert_eq!(&bytes[found[0].offset..][..found[0].len], b"hello");
        assert_eq!(found[1].len, 1000);
        assert!(found.iter().all(|m| m.kind == Kind::File));
    }

    #[test]
    fn a_cut_archive_keeps_what_it_holds() {
        let bytes = archive(&[("a", b"hello"), ("b", &[1u8; 2000])]);
        let (found, stop) = members(&bytes[..BLOCK * 3 + 100]);
        assert_eq!(stop, Stop::Truncated);
        assert_eq!(found[1].len, 100);
        assert_eq!(found[1].declared, 2000);
    }

    #[test]
    fn a_bad_checksum_stops_the_walk() {
        let mut bytes = archive(&[("a", b"hello"), ("b", b"x")]);
        bytes[BLOCK * 2] ^= 1;
        let (found, stop) = members(&bytes);
        assert_eq!(found.len(), 1);
        // The second header, flipped in its name, sums one away from its checksum.
        assert!(
            matches!(
                stop,
                Stop::BadHeader {
                    at,
                    reason: HeaderError::ChecksumMismatch { stored, computed },
                } if at == BLOCK * 2 && stored.abs_diff(computed) == 1
            ),
            "{stop:?}"
        );
    }

    #[test]
    fn huge_sizes_use_base_256() {
        let mut out = Vec::new();
        write_header(&mut out, "core", 20 << 30).unwrap();
        let (found, stop) = members(&out);
        assert_eq!(stop, Stop::Truncated);
        assert_eq!(found[0].declared, 20 << 30);
        assert_eq!(found[0].len, 0);
    }
}
