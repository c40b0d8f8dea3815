//! Links from a debug file to its supplementary file (dwz's common DWARF):
//! GNU's `.gnu_debugaltlink` (a NUL-terminated file name, then the
//! supplementary file's build-id) and DWARF 5's `.debug_sup` (version,
//! `is_supplementary`, a NUL-terminated file name, a ULEB128 length and a
//! checksum, which dwz fills with the supplementary file's build-id).
//!
//! Both come from the file's author: every length is checked, the name and
//! the id are bounded, and nothing is allocated before the bounds hold.

use serde::Serialize;

use super::ElfImage;

/// The longest file name a link may carry (Linux's `PATH_MAX`).
pub const MAX_SUPPLEMENTARY_NAME: usize = 4096;
/// The longest build-id (or `.debug_sup` checksum) a link may carry.
pub const MAX_SUPPLEMENTARY_ID: usize = 64;
/// A link section larger than this is not believed.
const MAX_LINK_SECTION: u64 = (MAX_SUPPLEMENTARY_NAME + MAX_SUPPLEMENTARY_ID + 16) as u64;

/// Which section names the supplementary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SupplementaryLinkKind {
    /// GNU's `.gnu_debugaltlink` (`dwz -m`), with `DW_FORM_GNU_ref_alt` and
    /// `DW_FORM_GNU_strp_alt` in the DWARF.
    GnuDebugaltlink,
    /// DWARF 5's `.debug_sup` (`dwz -m -5`), with `DW_FORM_ref_sup4/8` and
    /// `DW_FORM_strp_sup`.
    DebugSup,
}

/// A debug file's link to its supplementary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplementaryLink {
    /// The file name as stored: absolute, or relative to the debug file's folder.
    pub name: Vec<u8>,
    /// The supplementary file's build-id (or `.debug_sup` checksum).
    pub build_id: Vec<u8>,
    /// The section it came from.
    pub kind: SupplementaryLinkKind,
}

impl SupplementaryLink {
    /// The name for messages (lossy UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The build-id as lower-case hex.
    pub fn build_id_hex(&self) -> String {
        super::hex(&self.build_id)
    }
}

/// Why a link section cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupplementaryLinkError {
    /// The section's contents cannot be read (damaged or too large).
    #[error("{section}: {reason}")]
    Unreadable {
        /// The section.
        section: &'static str,
        /// Why.
        reason: String,
    },
    /// The contents do not follow the format.
    #[error("{section}: {reason}")]
    Malformed {
        /// The section.
        section: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ElfImage {
    /// The link to the supplementary file this file's DWARF refers to:
    /// `.gnu_debugaltlink`, else a `.debug_sup` that is not itself a
    /// supplementary file's; `Ok(None)` when it has neither.
    pub fn supplementary_link(&self) -> Result<Option<SupplementaryLink>, SupplementaryLinkError> {
        if let Some(data) = self.link_section(".gnu_debugaltlink")? {
            return parse_debugaltlink(&data).map(Some);
        }
        match self.link_section(".debug_sup")? {
            Some(data) => match parse_debug_sup(&data)? {
                DebugSup {
                    is_supplementary: false,
                    name,
                    checksum,
                } => Ok(Some(SupplementaryLink {
                    name,
                    build_id: checksum,
                    kind: SupplementaryLinkKind::DebugSup,
                })),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// The ids a link to this file may name: its build-id, and the
    /// checksum of its own `.debug_sup` when it is a DWARF 5 supplementary
    /// file (dwz writes those without a build-id note).
    pub fn supplementary_ids(&self) -> Vec<Vec<u8>> {
        let mut ids: Vec<Vec<u8>> = self.build_id().into_iter().collect();
        if let Ok(Some(data)) = self.link_section(".debug_sup")
            && let Ok(DebugSup {
                is_supplementary: true,
                checksum,
                ..
            }) = parse_debug_sup(&data)
            && !ids.contains(&checksum)
        {
            ids.push(checksum);
        }
        ids
    }

    /// A link section's bytes, bounded; `Ok(None)` without the section.
    fn link_section(
        &self,
        section: &'static str,
    ) -> Result<Option<std::borrow::Cow<'_, [u8]>>, SupplementaryLinkError> {
        let mut room = MAX_LINK_SECTION;
        self.section_data_within(section, &mut room)
            .map_err(|e| SupplementaryLinkError::Unreadable {
                section,
                reason: e.to_string(),
            })
            .and_then(|data| match data {
                Some(d) if d.len() as u64 > MAX_LINK_SECTION => {
                    Err(SupplementaryLinkError::Malformed {
                        section,
                        reason: format!(
                            "{} bytes, more than a link can hold (at most {MAX_LINK_SECTION})",
                            d.len()
                        ),
                    })
                }
                other => Ok(other),
            })
    }
}

/// `.gnu_debugaltlink`: the name up to its NUL, then the build-id.
fn parse_debugaltlink(data: &[u8]) -> Result<SupplementaryLink, SupplementaryLinkError> {
    let malformed = |reason: &str| SupplementaryLinkError::Malformed {
        section: ".gnu_debugaltlink",
        reason: reason.to_string(),
    };
    let (name, rest) = split_name(data).ok_or_else(|| malformed("the file name has no NUL"))?;
    let name = checked_name(".gnu_debugaltlink", name)?;
    let build_id = checked_id(".gnu_debugaltlink", rest)?;
    Ok(SupplementaryLink {
        name,
        build_id,
        kind: SupplementaryLinkKind::GnuDebugaltlink,
    })
}

/// A parsed `.debug_sup`.
struct DebugSup {
    is_supplementary: bool,
    name: Vec<u8>,
    checksum: Vec<u8>,
}

/// `.debug_sup`: version (2 bytes, 5), `is_supplementary` (1 byte), the
/// name up to its NUL, the checksum's length (ULEB128), the checksum.
fn parse_debug_sup(data: &[u8]) -> Result<DebugSup, SupplementaryLinkError> {
    let malformed = |reason: String| SupplementaryLinkError::Malformed {
        section: ".debug_sup",
        reason,
    };
    let (Some(version), Some(&flag)) = (data.get(..2), data.get(2)) else {
        return Err(malformed("shorter than its header".into()));
    };
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version != 5 {
        return Err(malformed(format!("version {version}, not 5")));
    }
    let is_supplementary = match flag {
        0 => false,
        1 => true,
        other => {
            return Err(malformed(format!(
                "is_supplementary is {other}, not 0 or 1"
            )));
        }
    };
    let (name, rest) =
        split_name(&data[3..]).ok_or_else(|| malformed("the file name has no NUL".into()))?;
    // The supplementary file itself stores an empty name.
    let name = if is_supplementary {
        name.to_vec()
    } else {
        checked_name(".debug_sup", name)?
    };
    let (length, used) = uleb128(rest).ok_or_else(|| malformed("bad checksum length".into()))?;
    let checksum = rest
        .get(used..)
        .and_then(|r| r.get(..usize::try_from(length).ok()?))
        .ok_or_else(|| malformed(format!("checksum length {length} runs past the section")))?;
    Ok(DebugSup {
        is_supplementary,
        name,
        checksum: checked_id(".debug_sup", checksum)?,
    })
}

/// The bytes before the first NUL, and those after it.
fn split_name(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|&b| b == 0)?;
    Some((&data[..end], &data[end + 1..]))
}

/// The name, when it is not empty and not over [`MAX_SUPPLEMENTARY_NAME`].
fn checked_name(section: &'static str, name: &[u8]) -> Result<Vec<u8>, SupplementaryLinkError> {
    let reason = if name.is_empty() {
        "empty file name".to_string()
    } else if name.len() > MAX_SUPPLEMENTARY_NAME {
        format!(
            "a {}-byte file name (at most {MAX_SUPPLEMENTARY_NAME})",
            name.len()
        )
    } else {
        return Ok(name.to_vec());
    };
    Err(SupplementaryLinkError::Malformed { section, reason })
}

/// The id, when it is 1 to [`MAX_SUPPLEMENTARY_ID`] bytes.
fn checked_id(section: &'static str, id: &[u8]) -> Result<Vec<u8>, SupplementaryLinkError> {
    if id.is_empty() || id.len() > MAX_SUPPLEMENTARY_ID {
        return Err(SupplementaryLinkError::Malformed {
            section,
            reason: format!(
                "a {}-byte build-id (1 to {MAX_SUPPLEMENTARY_ID} are accepted)",
                id.len()
            ),
        });
    }
    Ok(id.to_vec())
}

/// An unsigned LEB128 and the bytes it took; `None` when cut short or
/// over 64 bits.
fn uleb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugaltlink_is_a_name_then_the_build_id() {
        let mut data = b"../../.dwz/x86_64-linux-gnu/python3.11.debug\0".to_vec();
        data.extend_from_slice(&[0xab; 20]);
        let link = parse_debugaltlink(&data).unwrap();
        assert_eq!(link.name, b"../../.dwz/x86_64-linux-gnu/python3.11.debug");
        assert_eq!(link.build_id, vec![0xab; 20]);
        // No NUL, no id, an oversized id or name: refused.
        assert!(parse_debugaltlink(b"name-without-nul").is_err());
        assert!(parse_debugaltlink(b"name\0").is_err());
        assert!(parse_debugaltlink(b"\0\x01\x02").is_err());
        let mut long = b"n\0".to_vec();
        long.extend_from_slice(&[1; 65]);
        assert!(parse_debugaltlink(&long).is_err());
        let mut long_name = vec![b'a'; MAX_SUPPLEMENTARY_NAME + 1];
        long_name.extend_from_slice(b"\0\x01");
        assert!(parse_debugaltlink(&long_name).is_err());
    }

    #[test]
    fn debug_sup_holds_version_flag_name_and_checksum() {
        let mut data = vec![5, 0, 0];
        data.extend_from_slice(b"../../.dwz/common.debug\0");
        data.push(20);
        data.extend_from_slice(&[0x11; 20]);
        let sup = parse_debug_sup(&data).unwrap();
        assert!(!sup.is_supplementary);
        assert_eq!(sup.name, b"../../.dwz/common.debug");
        assert_eq!(sup.checksum, vec![0x11; 20]);
        // The supplementary file's own section: flag 1 and an empty name.
        let own = [5, 0, 1, 0, 2, 0xaa, 0xbb];
        let own = parse_debug_sup(&own).unwrap();
        assert!(own.is_supplementary);
        assert_eq!(own.checksum, vec![0xaa, 0xbb]);
        // Wrong version, bad flag, a length past the end, a huge length.
        assert!(parse_debug_sup(&[4, 0, 0, b'a', 0, 1, 1]).is_err());
        assert!(parse_debug_sup(&[5, 0, 7, b'a', 0, 1, 1]).is_err());
        assert!(parse_debug_sup(&[5, 0, 0, b'a', 0, 5, 1]).is_err());
        assert!(
            parse_debug_sup(&[5, 0, 0, b'a', 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err()
        );
        assert!(parse_debug_sup(&[5]).is_err());
    }

    #[test]
    fn uleb128_is_bounded() {
        assert_eq!(uleb128(&[0x14]), Some((20, 1)));
        assert_eq!(uleb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uleb128(&[0x80; 11]), None);
        assert_eq!(uleb128(&[]), None);
    }
}
