//! Code objects and their line tables.

use crate::layout::facts::LineTable;
use crate::memory::ReadError;
use crate::memory::{Memory, MemoryExt};

use super::objects::Objects;
use super::types::BuiltinType;

/// Longest file or function name read.
const MAX_NAME: usize = 1024;
/// Largest line table read.
const MAX_LINE_TABLE: usize = 1 << 20;

/// What a frame needs from its code object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_filename`.
    pub filename: String,
    /// `co_name`.
    pub name: String,
    /// `co_qualname` (3.11+).
    pub qualname: Option<String>,
    /// `co_firstlineno`.
    pub first_line: i64,
    /// The raw line table (`co_lnotab` or `co_linetable`).
    pub line_table: Vec<u8>,
}

impl<M: Memory> Objects<'_, M> {
    /// Read a code object; it must be of type `code` (told by address and
    /// shape, not by a name the core may lack).
    pub fn code(&self, code: u64) -> Result<CodeInfo, ReadError> {
        let ty = self.type_of(code)?;
        if self.builtin_type(ty) != Some(BuiltinType::Code) {
            return Err(ReadError::new(
                code,
                0,
                crate::memory::ReadFailure::Invalid(format!(
                    "a {}, not a code object",
                    self.type_label(ty)
                )),
            ));
        }
        let fields = self.layout.offsets().code;
        let text = |field: crate::layout::Field| -> Result<String, ReadError> {
            let name = field.name().trim_start_matches("PyCodeObject.");
            let off = field.get().ok_or_else(|| {
                ReadError::new(
                    code,
                    0,
                    crate::memory::ReadFailure::Invalid(format!("no {name}")),
                )
            })?;
            self.string(self.memory.read_ptr(code.wrapping_add(off))?, MAX_NAME)
        };
        let filename = text(fields.co_filename)?;
        let name = text(fields.co_name)?;
        let qualname = fields
            .co_qualname
            .get()
            .and_then(|_| text(fields.co_qualname).ok());
        let first_line = match fields.co_firstlineno.get() {
            Some(off) => i64::from(self.memory.read_i32(code.wrapping_add(off))?),
            None => 0,
        };
        let table_field = fields.co_linetable.get().or_else(|| fields.co_lnotab.get());
        let line_table = match table_field {
            Some(off) => {
                let obj = self.memory.read_ptr(code.wrapping_add(off))?;
                self.bytes(obj, MAX_LINE_TABLE).unwrap_or_default()
            }
            None => Vec::new(),
        };
        Ok(CodeInfo {
            filename,
            name,
            qualname,
            first_line,
            line_table,
        })
    }
}

/// The line for an instruction offset.
///
/// `offset` is in bytes for `Lnotab` and `Linetable310`, and in 2-byte code
/// units for `Locations311`. `None` means the instruction has no line.
pub fn line_for(kind: LineTable, table: &[u8], first_line: i64, offset: i64) -> Option<i64> {
    match kind {
        LineTable::Lnotab => Some(lnotab(table, first_line, offset, true)),
        LineTable::Linetable310 => linetable_310(table, first_line, offset),
        LineTable::Locations311 => locations_311(table, first_line, offset),
    }
}

/// 2.7 (unsigned line steps) and 3.6–3.9 (signed): pairs of (address step, line step).
pub fn lnotab(table: &[u8], first_line: i64, lasti: i64, signed: bool) -> i64 {
    let mut line = first_line;
    let mut addr: i64 = 0;
    for pair in table.chunks_exact(2) {
        addr += i64::from(pair[0]);
        if addr > lasti {
            break;
        }
        // The first line comes from the core: a damaged one must not overflow.
        line = line.wrapping_add(if signed {
            i64::from(pair[1] as i8)
        } else {
            i64::from(pair[1])
        });
    }
    line
}

fn linetable_310(table: &[u8], first_line: i64, byte_offset: i64) -> Option<i64> {
    let mut line = first_line;
    let mut end: i64 = 0;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += i64::from(pair[0]);
        let delta = pair[1] as i8;
        let range_line = if delta == -128 {
            None
        } else {
            line = line.wrapping_add(i64::from(delta));
            Some(line)
        };
        if start <= byte_offset && byte_offset < end {
            return range_line;
        }
    }
    None
}

fn varint(table: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *table.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 63) << shift;
        if b & 64 == 0 || shift > 56 {
            return Some(value);
        }
        shift += 6;
    }
}

fn svarint(table: &[u8], pos: &mut usize) -> Option<i64> {
    let v = varint(table, pos)?;
    let magnitude = (v >> 1) as i64;
    Some(if v & 1 == 1 { -magnitude } else { magnitude })
}

fn locations_311(table: &[u8], first_line: i64, unit: i64) -> Option<i64> {
    position_311(table, first_line, unit)?.line
}

/// Where in its source an instruction is: lines and 0-based columns, each
/// `None` where the location table has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The first line.
    pub line: Option<i64>,
    /// The last line.
    pub end_line: Option<i64>,
    /// The first column (UTF-8 bytes from the line's start).
    pub column: Option<i64>,
    /// The column just past the end, on `end_line`.
    pub end_column: Option<i64>,
}

/// The position of code unit `unit` in a 3.11+ location table; `None` when
/// the table does not reach the unit or is damaged.
pub fn position_311(table: &[u8], first_line: i64, unit: i64) -> Option<Position> {
    let mut line = first_line;
    let mut addr: i64 = 0;
    let mut pos = 0;
    while pos < table.len() {
        let first = table[pos];
        pos += 1;
        if first & 0x80 == 0 {
            // Not the start of an entry: the table is damaged.
            return None;
        }
        let code = (first >> 3) & 15;
        let length = i64::from(first & 7) + 1;
        let column = |value: u64| i64::try_from(value).ok();
        let position = match code {
            // Short form: the line is unchanged, columns in the code and one byte.
            // (A table cut short keeps its line; the columns it lacks are none.)
            0..=9 => {
                let second = table.get(pos).copied();
                pos += 1;
                let start = second.map(|b| i64::from(code) << 3 | i64::from(b >> 4));
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    column: start,
                    end_column: start.zip(second).map(|(s, b)| s + i64::from(b & 15)),
                }
            }
            // One-line forms: a line step of 0 to 2, then two column bytes.
            10..=12 => {
                line = line.wrapping_add(i64::from(code) - 10);
                let (start, end) = (table.get(pos), table.get(pos + 1));
                pos += 2;
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    column: start.map(|&b| i64::from(b)),
                    end_column: end.map(|&b| i64::from(b)),
                }
            }
            // A line step, no columns.
            13 => {
                line = line.wrapping_add(svarint(table, &mut pos)?);
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    ..Position::default()
                }
            }
            // Long form: line step, end-line step, then columns stored plus one (0 is none).
            14 => {
                line = line.wrapping_add(svarint(table, &mut pos)?);
                let end_line = line.wrapping_add(i64::try_from(varint(table, &mut pos)?).ok()?);
                let start = varint(table, &mut pos)?;
                let end = varint(table, &mut pos)?;
                Position {
                    line: Some(line),
                    end_line: Some(end_line),
                    column: start.checked_sub(1).and_then(column),
                    end_column: end.checked_sub(1).and_then(column),
                }
            }
            _ => Position::default(),
        };
        if addr <= unit && unit < addr + length {
            return Some(position);
        }
        addr += length;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_walk() {
        // Lines 10, 11 at byte 6, 13 at byte 10.
        let table = [6u8, 1, 4, 2];
        assert_eq!(lnotab(&table, 10, 0, true), 10);
        assert_eq!(lnotab(&table, 10, 6, true), 11);
        assert_eq!(lnotab(&table, 10, 9, true), 11);
        assert_eq!(lnotab(&table, 10, 10, true), 13);
        // A negative step in 3.6+.
        assert_eq!(lnotab(&[2, 0xff], 10, 2, true), 9);
        assert_eq!(lnotab(&[2, 0xff], 10, 2, false), 265);
    }

    #[test]
    fn linetable_310_ranges() {
        // [0,4) line 11, [4,6) no line, [6,10) line 13.
        let table = [4u8, 1, 2, 0x80, 4, 2];
        assert_eq!(linetable_310(&table, 10, 2), Some(11));
        assert_eq!(linetable_310(&table, 10, 5), None);
        assert_eq!(linetable_310(&table, 10, 8), Some(13));
        assert_eq!(linetable_310(&table, 10, 10), None);
    }

    #[test]
    fn locations_311_entries() {
        // Entry 1: code 13 (no columns), 2 units, line +2 (svarint 4).
        // Entry 2: code 10 (one-line, +0), 1 unit, 2 column bytes.
        // Entry 3: code 15 (no location), 1 unit.
        // Entry 4: code 14 (long), 1 unit, line -1 (svarint 3), then 3 varints.
        let table = [
            0x80 | (13 << 3) | 1,
            4,
            0x80 | (10 << 3),
            1,
            2,
            0x80 | (15 << 3),
            0x80 | (14 << 3),
            3,
            0,
            1,
            2,
        ];
        assert_eq!(locations_311(&table, 100, 0), Some(102));
        assert_eq!(locations_311(&table, 100, 1), Some(102));
        assert_eq!(locations_311(&table, 100, 2), Some(102));
        assert_eq!(locations_311(&table, 100, 3), None);
        assert_eq!(locations_311(&table, 100, 4), Some(101));
        assert_eq!(locations_311(&table, 100, 5), None);
        let at = |unit| position_311(&table, 100, unit).unwrap();
        assert_eq!(
            at(0),
            Position {
                line: Some(102),
                end_line: Some(102),
                column: None,
                end_column: None
            }
        );
        assert_eq!((at(2).column, at(2).end_column), (Some(1), Some(2)));
        assert_eq!(at(3), Position::default());
        // Long form: end line +0, columns stored plus one: 1 -> 0, 2 -> 1.
        assert_eq!(
            at(4),
            Position {
                line: Some(101),
                end_line: Some(101),
                column: Some(0),
                end_column: Some(1)
            }
        );
        // Short form code 2, second byte 0x35: column 2*8+3 = 19, end 19+5.
        let short = [0x80 | (2 << 3), 0x35];
        assert_eq!(
            position_311(&short, 7, 0).map(|p| (p.line, p.column, p.end_column)),
            Some((Some(7), Some(19), Some(24)))
        );
    }
}
