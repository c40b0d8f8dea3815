//! Reading Python objects out of a core: type names, strings, bytes, numbers
//! and containers, always within explicit bounds.

use std::cell::RefCell;
use std::collections::HashMap;

use super::types::{self, BuiltinType, TypeAnchors};
use crate::layout::{Layout, VersionRules};
use crate::memory::{Memory, MemoryExt};
use crate::memory::{ReadError, ReadFailure};

/// Types whose kind or name one view remembers, at most.
const MAX_CACHED_TYPES: usize = 1 << 16;
/// Longest type name read.
const MAX_TYPE_NAME: usize = 256;
/// Items read from one container for a repr.
const MAX_REPR_ITEMS: usize = 8;
/// Nesting depth of reprs.
const MAX_REPR_DEPTH: usize = 2;
/// Longest repr produced.
const MAX_REPR_LEN: usize = 200;
/// Most 30-bit digits of an int that are decoded.
const MAX_INT_DIGITS: u64 = 4;
/// Dict slots looked at, at most.
const MAX_DICT_SLOTS: u64 = 4096;

/// A view of the interpreter's objects: memory and layout (whose facts say
/// how the version encodes them).
pub struct Objects<'a, M: Memory> {
    /// Process memory.
    pub memory: &'a M,
    /// The layout.
    pub layout: &'a Layout,
    /// 2 or 4: the code-unit width of 2.7 `unicode` objects.
    pub py2_unicode_width: u64,
    type_names: RefCell<HashMap<u64, String>>,
    // Built-in types by address: names are not needed to read objects, and
    // a core lacks the read-only pages that hold static types' names.
    builtin_types: RefCell<HashMap<u64, Option<BuiltinType>>>,
    anchors: Option<&'a TypeAnchors>,
    /// The dict offsets, or why they are unknown (as a read failure at 0,
    /// whatever first failed, so every later dict read says the same).
    dict: std::cell::OnceCell<Result<DictOffsets, ReadError>>,
}

pub(crate) fn invalid(addr: u64, what: impl Into<String>) -> ReadError {
    ReadError::new(addr, 0, ReadFailure::Invalid(what.into()))
}

impl<'a, M: Memory> Objects<'a, M> {
    /// A view for one process.
    pub fn new(memory: &'a M, layout: &'a Layout, py2_unicode_width: u64) -> Self {
        Objects {
            memory,
            layout,
            py2_unicode_width,
            type_names: RefCell::new(HashMap::new()),
            builtin_types: RefCell::new(HashMap::new()),
            anchors: None,
            dict: std::cell::OnceCell::new(),
        }
    }

    /// The object model's rules for this version.
    pub fn rules(&self) -> &VersionRules {
        &self.layout.facts.rules
    }

    /// Identify types also by the anchors found in the core (the builtins
    /// dict's types), beside their shape.
    pub fn with_anchors(mut self, anchors: &'a TypeAnchors) -> Self {
        self.anchors = Some(anchors);
        self
    }

    /// The built-in type `ty` is, by address (anchors, types learnt from
    /// the frames) or by its own fields; never from its name.
    pub fn builtin_type(&self, ty: u64) -> Option<BuiltinType> {
        if let Some(known) = self.builtin_types.borrow().get(&ty) {
            return *known;
        }
        let found = self
            .anchors
            .and_then(|a| a.get(ty))
            .or_else(|| types::by_shape(self.memory, self.layout, ty))
            .or_else(|| self.static_type_by_name(ty));
        let mut cache = self.builtin_types.borrow_mut();
        // A damaged heap can point at any number of "types".
        if cache.len() < MAX_CACHED_TYPES {
            cache.insert(ty, found);
        }
        found
    }

    /// When the core has the name (the interpreter's file is there): the
    /// static types that neither anchors nor shape told, such as `cell`
    /// outside a frame. Heap types are never taken for built-ins.
    fn static_type_by_name(&self, ty: u64) -> Option<BuiltinType> {
        match self.static_type_name(ty)?.as_str() {
            "NoneType" => Some(BuiltinType::None),
            "float" => Some(BuiltinType::Float),
            "cell" => Some(BuiltinType::Cell),
            _ => None,
        }
    }

    /// The `tp_name` of `ty` when it is a static type and the core has its
    /// name; heap types (which any class can name) give `None`.
    pub fn static_type_name(&self, ty: u64) -> Option<String> {
        let flags = self.type_flags(ty).ok()?;
        if flags & crate::layout::tp_flags::HEAPTYPE != 0 {
            return None;
        }
        self.read_tp_name(ty).ok()
    }

    /// The built-in type of the object at `obj`, `None` for other types.
    pub fn builtin_type_of(&self, obj: u64) -> Result<Option<BuiltinType>, ReadError> {
        Ok(self.builtin_type(self.type_of(obj)?))
    }

    /// Remember that `obj`, found in a frame's cell slot, is a cell, when
    /// its type has a cell's shape (which alone does not tell a cell).
    pub fn learn_cell(&self, obj: u64) {
        let Ok(ty) = self.type_of(obj) else { return };
        if self.builtin_type(ty).is_none() && types::has_cell_shape(self.memory, self.layout, ty) {
            self.builtin_types
                .borrow_mut()
                .insert(ty, Some(BuiltinType::Cell));
        }
    }

    /// `ob_type`.
    pub fn type_of(&self, obj: u64) -> Result<u64, ReadError> {
        self.memory
            .read_ptr(obj.wrapping_add(self.layout.offsets().object.ob_type.require()?))
    }

    /// `ob_size`.
    pub fn var_size(&self, obj: u64) -> Result<i64, ReadError> {
        self.memory
            .read_i64(obj.wrapping_add(self.layout.offsets().var_object.ob_size.require()?))
    }

    /// The raw refcount word (8 bytes at offset 0).
    pub fn refcount(&self, obj: u64) -> Result<i64, ReadError> {
        self.memory
            .read_i64(obj.wrapping_add(self.layout.offsets().object.ob_refcnt.require()?))
    }

    /// The `tp_name` of a type object; for a built-in type whose name the
    /// core lacks (it lives in the interpreter's read-only data), the name
    /// that type has.
    pub fn type_name_of_type(&self, ty: u64) -> Result<String, ReadError> {
        if let Some(name) = self.type_names.borrow().get(&ty) {
            return Ok(name.clone());
        }
        let name = match self.read_tp_name(ty) {
            Ok(name) => name,
            Err(e) => match self.builtin_type(ty) {
                Some(builtin) => builtin.name(self.rules()).to_string(),
                None => return Err(e),
            },
        };
        let mut names = self.type_names.borrow_mut();
        if names.len() < MAX_CACHED_TYPES {
            names.insert(ty, name.clone());
        }
        Ok(name)
    }

    fn read_tp_name(&self, ty: u64) -> Result<String, ReadError> {
        let name_ptr = self
            .memory
            .read_ptr(ty.wrapping_add(self.layout.offsets().type_object.tp_name.require()?))?;
        let bytes = self.memory.read_cstr(name_ptr, MAX_TYPE_NAME)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The type's name for display: its `tp_name`, else `<type at 0x…>`.
    pub fn type_label(&self, ty: u64) -> String {
        self.type_name_of_type(ty)
            .unwrap_or_else(|_| format!("<type at {ty:#x}>"))
    }

    /// The text of a string object of whatever type, unchecked: for keys
    /// read before any type is known (3.x `str`, 2.7 `str`).
    pub fn raw_text(&self, obj: u64, max_chars: usize) -> Result<String, ReadError> {
        if self.rules().bytes_type_is_str {
            return self
                .bytes(obj, max_chars)
                .map(|b| String::from_utf8_lossy(&b).into_owned());
        }
        self.pep393(obj, max_chars)
    }

    /// The type name of an object (`tuple`, `str`, `module.Class`).
    pub fn type_name(&self, obj: u64) -> Result<String, ReadError> {
        self.type_name_of_type(self.type_of(obj)?)
    }

    /// The text of a `str` (3.x) or of a 2.7 `str`/`unicode`, at most `max_chars`.
    pub fn string(&self, obj: u64, max_chars: usize) -> Result<String, ReadError> {
        if self.rules().bytes_type_is_str {
            return match self.builtin_type_of(obj)? {
                Some(BuiltinType::Bytes) => self
                    .bytes(obj, max_chars)
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                Some(BuiltinType::Str) => self.py2_unicode(obj, max_chars),
                _ => Err(invalid(
                    obj,
                    format!("a {}, not a string", self.type_label(self.type_of(obj)?)),
                )),
            };
        }
        self.pep393(obj, max_chars)
    }

    /// The length in code points of a `str` (3.x) or `unicode` (2.7).
    pub fn string_len(&self, obj: u64) -> Result<u64, ReadError> {
        let offsets = self.layout.offsets();
        let field = if self.layout.facts.pep393 {
            offsets.ascii.length
        } else {
            offsets.unicode.length
        };
        let length = self.memory.read_i64(obj.wrapping_add(field.require()?))?;
        u64::try_from(length).map_err(|_| invalid(obj, format!("negative string length {length}")))
    }

    fn pep393(&self, obj: u64, max_chars: usize) -> Result<String, ReadError> {
        let offsets = self.layout.offsets();
        let length = self
            .memory
            .read_i64(obj.wrapping_add(offsets.ascii.length.require()?))?;
        if length < 0 {
            return Err(invalid(obj, format!("negative string length {length}")));
        }
        let ascii_fields = offsets.ascii;
        let state_at = ascii_fields
            .state
            .get()
            .ok_or_else(|| invalid(obj, "no state field"))?;
        let state = self.memory.read_u32(obj.wrapping_add(state_at))?;
        let bits = |field: crate::layout::Field| -> Result<u32, ReadError> {
            let name = field.name().trim_start_matches("PyASCIIObject.");
            if !field.is_present() {
                return Err(invalid(obj, format!("no {name} bits")));
            }
            let Some((bit, width)) = field.bits() else {
                return Err(invalid(obj, "not a bitfield"));
            };
            let shift = bit - state_at * 8;
            Ok((state >> shift) & ((1u32 << width) - 1))
        };
        let kind = u64::from(bits(ascii_fields.state_kind)?);
        let compact = bits(ascii_fields.state_compact)? == 1;
        let ascii = bits(ascii_fields.state_ascii)? == 1;
        if !matches!(kind, 1 | 2 | 4) {
            return Err(invalid(
                obj,
                format!("string kind {kind} (not ready or damaged)"),
            ));
        }
        let data = match (compact, ascii) {
            (true, true) => obj + offsets.ascii.sizeof.require()?,
            (true, false) => obj + offsets.compact_unicode.sizeof.require()?,
            (false, _) => self
                .memory
                .read_ptr(obj.wrapping_add(offsets.unicode.data.require()?))?,
        };
        let count = (length as u64).min(max_chars as u64);
        let raw = self
            .memory
            .read_bytes(data, count * kind, (max_chars as u64) * 4)?;
        Ok(decode_units(&raw, kind))
    }

    fn py2_unicode(&self, obj: u64, max_chars: usize) -> Result<String, ReadError> {
        let offsets = self.layout.offsets();
        let length = self
            .memory
            .read_i64(obj.wrapping_add(offsets.unicode.length.require()?))?;
        let data = self
            .memory
            .read_ptr(obj.wrapping_add(offsets.unicode.str.require()?))?;
        if length < 0 {
            return Err(invalid(obj, "negative unicode length"));
        }
        let width = self.py2_unicode_width;
        let count = (length as u64).min(max_chars as u64);
        let raw = self
            .memory
            .read_bytes(data, count * width, (max_chars as u64) * 4)?;
        Ok(decode_units(&raw, width))
    }

    /// The contents of a `bytes` (3.x) or 2.7 `str`, at most `max` bytes.
    pub fn bytes(&self, obj: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        let size = self.var_size(obj)?;
        if size < 0 {
            return Err(invalid(obj, format!("negative size {size}")));
        }
        let sval = if self.rules().bytes_type_is_str {
            self.layout.offsets().string.ob_sval.require()?
        } else {
            self.layout.offsets().bytes.ob_sval.require()?
        };
        let n = (size as u64).min(max as u64);
        self.memory
            .read_bytes(obj.wrapping_add(sval), n, max as u64)
    }

    /// Items of a tuple, at most `max`.
    pub fn tuple_items(&self, obj: u64, max: usize) -> Result<(Vec<u64>, u64), ReadError> {
        let size = self.var_size(obj)?;
        let size = u64::try_from(size).map_err(|_| invalid(obj, "negative tuple size"))?;
        let base = obj.wrapping_add(self.layout.offsets().tuple.ob_item.require()?);
        let n = size.min(max as u64);
        let items = (0..n)
            .map(|i| self.memory.read_ptr(base.wrapping_add(i * 8)))
            .collect::<Result<_, _>>()?;
        Ok((items, size))
    }

    /// Items of a list, at most `max`.
    pub fn list_items(&self, obj: u64, max: usize) -> Result<(Vec<u64>, u64), ReadError> {
        let size = self.var_size(obj)?;
        let size = u64::try_from(size).map_err(|_| invalid(obj, "negative list size"))?;
        let array = self
            .memory
            .read_ptr(obj.wrapping_add(self.layout.offsets().list.ob_item.require()?))?;
        let n = size.min(max as u64);
        let items = (0..n)
            .map(|i| self.memory.read_ptr(array.wrapping_add(i * 8)))
            .collect::<Result<_, _>>()?;
        Ok((items, size))
    }

    /// An `int` (2.7 `int`, `bool` or `long`; 3.x `int` or `bool`) that fits in 120 bits.
    pub fn int(&self, obj: u64) -> Result<i128, ReadError> {
        let offsets = self.layout.offsets();
        if self.rules().separate_short_int
            && matches!(
                self.builtin_type_of(obj)?,
                Some(BuiltinType::Py2Int | BuiltinType::Bool)
            )
        {
            return self
                .memory
                .read_i64(obj.wrapping_add(offsets.int.ob_ival.require()?))
                .map(i128::from);
        }
        let digits_at = obj.wrapping_add(offsets.long.ob_digit.require()?);
        let (negative, ndigits) = if self.rules().int_size_in_tag {
            // 3.12+: lv_tag = ndigits << 3 | sign (0 positive, 1 zero, 2 negative).
            let tag = self
                .memory
                .read_u64(obj.wrapping_add(offsets.long.lv_tag.require()?))?;
            (tag & 3 == 2, tag >> 3)
        } else {
            let size = self.var_size(obj)?;
            (size < 0, size.unsigned_abs())
        };
        if ndigits > MAX_INT_DIGITS {
            return Err(invalid(obj, format!("an int of {ndigits} digits")));
        }
        let mut value: i128 = 0;
        for i in (0..ndigits).rev() {
            let digit = self.memory.read_u32(digits_at.wrapping_add(i * 4))?;
            value = (value << 30) | i128::from(digit & 0x3fff_ffff);
        }
        Ok(if negative { -value } else { value })
    }

    /// A `float`.
    pub fn float(&self, obj: u64) -> Result<f64, ReadError> {
        let bits = self
            .memory
            .read_u64(obj.wrapping_add(self.layout.offsets().float.ob_fval.require()?))?;
        Ok(f64::from_bits(bits))
    }

    /// (key, value) pairs of a dict, at most `max`, and its size.
    pub fn dict_items(&self, obj: u64, max: usize) -> Result<(Vec<(u64, u64)>, u64), ReadError> {
        let (entries, used) = self.dict_entries(obj, max)?;
        Ok((entries.iter().map(|e| (e.key, e.value)).collect(), used))
    }
    /// A dict's `ma_used`: how many entries it has.
    pub fn dict_len(&self, obj: u64) -> Result<u64, ReadError> {
        let d = self.dict_offsets()?;
        Ok(self.memory.read_i64(obj.wrapping_add(d.ma_used))?.max(0) as u64)
    }

    /// The live entries of a dict, at most `max`, with its `ma_used`.
    pub fn dict_entries(&self, obj: u64, max: usize) -> Result<(Vec<DictEntry>, u64), ReadError> {
        let mut out = Vec::new();
        let used = self.for_each_dict_entry(obj, max, &mut |e| out.push(e))?;
        Ok((out, used))
    }

    /// Call `visit` for each live entry of a dict, at most `max`; return its
    /// `ma_used`. Entries read before a failed read have been visited.
    pub fn for_each_dict_entry(
        &self,
        obj: u64,
        max: usize,
        visit: &mut dyn FnMut(DictEntry),
    ) -> Result<u64, ReadError> {
        let d = self.dict_offsets()?;
        let used = self.memory.read_i64(obj.wrapping_add(d.ma_used))?.max(0) as u64;
        let mut seen = 0;
        if let DictTable::Open { ma_mask, ma_table } = d.table {
            // 2.7: an open-addressing table of {hash, key, value}.
            let mask = self.memory.read_u64(obj.wrapping_add(ma_mask))?;
            let table = self.memory.read_ptr(obj.wrapping_add(ma_table))?;
            for i in 0..mask.saturating_add(1).min(MAX_DICT_SLOTS) {
                let entry = table.wrapping_add(i * d.entry.size);
                let value_at = entry.wrapping_add(d.entry.value);
                let value = self.memory.read_ptr(value_at)?;
                if value != 0 {
                    let key_at = entry.wrapping_add(d.entry.key);
                    let key = self.memory.read_ptr(key_at)?;
                    visit(DictEntry {
                        key_at,
                        key,
                        value_at,
                        value,
                        split: false,
                    });
                    seen += 1;
                    if seen >= max {
                        break;
                    }
                }
            }
            return Ok(used);
        }
        let keys = self.memory.read_ptr(obj.wrapping_add(d.ma_keys))?;
        let values = self.memory.read_ptr(obj.wrapping_add(d.ma_values))?;
        let split_values = (values != 0).then(|| values.wrapping_add(d.values_at));
        self.for_each_keys_entry(keys, split_values, max, visit)?;
        Ok(used)
    }

    /// Where a dict's entries live: its keys object (its table on 2.7) and
    /// its split values (0 when combined).
    pub fn dict_tables(&self, obj: u64) -> Result<(u64, u64), ReadError> {
        let d = self.dict_offsets()?;
        if let DictTable::Open { ma_table, .. } = d.table {
            return Ok((self.memory.read_ptr(obj.wrapping_add(ma_table))?, 0));
        }
        Ok((
            self.memory.read_ptr(obj.wrapping_add(d.ma_keys))?,
            self.memory.read_ptr(obj.wrapping_add(d.ma_values))?,
        ))
    }

    /// Call `visit` for each live entry of the keys object `keys` (3.x), at
    /// most `max`; values come from `split_values` (the first value slot of a
    /// split table) when given, else from the entries.
    pub(crate) fn for_each_keys_entry(
        &self,
        keys: u64,
        split_values: Option<u64>,
        max: usize,
        visit: &mut dyn FnMut(DictEntry),
    ) -> Result<(), ReadError> {
        let d = self.dict_offsets()?;
        let mut seen = 0;
        let nentries = self
            .memory
            .read_i64(keys.wrapping_add(d.dk_nentries))?
            .max(0) as u64;
        let (index_bytes, unicode) = match d.table {
            DictTable::Log2 {
                log2_size,
                log2_index_bytes,
                kind,
            } => {
                let log2_size = u64::from(self.memory.read_u8(keys.wrapping_add(log2_size))?);
                let log2_index =
                    u64::from(self.memory.read_u8(keys.wrapping_add(log2_index_bytes))?);
                let kind = self.memory.read_u8(keys.wrapping_add(kind))?;
                if log2_index > 40 || log2_size > 40 {
                    return Err(invalid(keys, "implausible dict size"));
                }
                (1u64 << log2_index, kind != 0)
            }
            DictTable::Sized { dk_size } => {
                let size = self.memory.read_u64(keys.wrapping_add(dk_size))?;
                let width = match size {
                    0..=0xff => 1,
                    0x100..=0xffff => 2,
                    0x1_0000..=0xffff_ffff => 4,
                    _ => 8,
                };
                (size.saturating_mul(width), false)
            }
            DictTable::Open { .. } => unreachable!("handled above"),
        };
        let entries = keys.wrapping_add(d.dk_indices).wrapping_add(index_bytes);
        let shape = match (unicode, d.unicode_entry) {
            (true, Some(u)) => u,
            (true, None) => return Err(invalid(keys, "the layout has no PyDictUnicodeEntry")),
            (false, _) => d.entry,
        };
        let n = nentries.min(MAX_DICT_SLOTS);
        // One look at the whole entry table when the core has it in one piece.
        let table = self
            .memory
            .slice_at(entries, (n * shape.size) as usize)
            .filter(|_| split_values.is_none());
        for i in 0..n {
            let entry = entries.wrapping_add(i * shape.size);
            let key_at = entry.wrapping_add(shape.key);
            let value_at = match split_values {
                Some(v) => v.wrapping_add(i * 8),
                None => entry.wrapping_add(shape.value),
            };
            let (key, value) = match table {
                Some(t) => {
                    let word = |off: u64| {
                        let at = (i * shape.size + off) as usize;
                        t.get(at..at + 8)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_le_bytes)
                    };
                    (word(shape.key), word(shape.value))
                }
                None => (
                    self.memory.read_ptr(key_at)?,
                    self.memory.read_ptr(value_at)?,
                ),
            };
            if key != 0 && value != 0 {
                visit(DictEntry {
                    key_at,
                    key,
                    value_at,
                    value,
                    split: split_values.is_some(),
                });
                seen += 1;
                if seen >= max {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The dict offsets, looked up once.
    fn dict_offsets(&self) -> Result<DictOffsets, ReadError> {
        if let Some(d) = self.dict.get() {
            return d.clone();
        }
        let found = self.find_dict_offsets().map_err(|e| match e.reason {
            ReadFailure::Invalid(what) => invalid(0, what),
            other => invalid(0, other.to_string()),
        });
        let _ = self.dict.set(found.clone());
        found
    }

    fn find_dict_offsets(&self) -> Result<DictOffsets, ReadError> {
        let offsets = self.layout.offsets();
        let entry = DictEntryShape {
            size: offsets.dict_key_entry.sizeof.require()?,
            key: offsets.dict_key_entry.me_key.require()?,
            value: offsets.dict_key_entry.me_value.require()?,
        };
        let ma_used = offsets.dict.ma_used.require()?;
        if !self.rules().dict_keys_object {
            return Ok(DictOffsets {
                ma_used,
                ma_keys: 0,
                ma_values: 0,
                dk_nentries: 0,
                dk_indices: 0,
                values_at: 0,
                table: DictTable::Open {
                    ma_mask: offsets.dict.ma_mask.require()?,
                    ma_table: offsets.dict.ma_table.require()?,
                },
                entry,
                unicode_entry: None,
            });
        }
        let table = match offsets.dict_keys.dk_log2_size.get() {
            Some(log2_size) => DictTable::Log2 {
                log2_size,
                log2_index_bytes: offsets.dict_keys.dk_log2_index_bytes.require()?,
                kind: offsets.dict_keys.dk_kind.require()?,
            },
            None => DictTable::Sized {
                dk_size: offsets.dict_keys.dk_size.require()?,
            },
        };
        let unicode_entry = match (
            offsets.dict_unicode_entry.sizeof.get(),
            offsets.dict_unicode_entry.me_key.get(),
            offsets.dict_unicode_entry.me_value.get(),
        ) {
            (Some(size), Some(key), Some(value)) => Some(DictEntryShape { size, key, value }),
            _ => None,
        };
        Ok(DictOffsets {
            ma_used,
            ma_keys: offsets.dict.ma_keys.require()?,
            ma_values: offsets.dict.ma_values.require()?,
            dk_nentries: offsets.dict_keys.dk_nentries.require()?,
            dk_indices: offsets.dict_keys.dk_indices.require()?,
            values_at: offsets.dict_values.values.get().unwrap_or(0),
            table,
            entry,
            unicode_entry,
        })
    }

    /// A short, bounded, Python-like repr; never fails (damage shows in it).
    pub fn repr(&self, obj: u64) -> String {
        let mut out = self.repr_at(obj, 0);
        if out.chars().count() > MAX_REPR_LEN {
            out = out.chars().take(MAX_REPR_LEN).collect::<String>() + "…";
        }
        out
    }

    fn repr_at(&self, obj: u64, depth: usize) -> String {
        if obj == 0 {
            return "<NULL>".into();
        }
        let ty = match self.type_of(obj) {
            Ok(ty) => ty,
            Err(e) => return format!("<unreadable object at {obj:#x}: {}>", e.reason),
        };
        let name = self.type_label(ty);
        let bytes_type_is_str = self.rules().bytes_type_is_str;
        let result = match self.builtin_type(ty) {
            Some(BuiltinType::None) => Ok("None".to_string()),
            Some(BuiltinType::Bool) => self.int(obj).map(|v| {
                if v != 0 {
                    "True".into()
                } else {
                    "False".into()
                }
            }),
            Some(BuiltinType::Long | BuiltinType::Py2Int) => self.int(obj).map(|v| v.to_string()),
            Some(BuiltinType::Float) => self.float(obj).map(python_float_repr),
            Some(BuiltinType::Str) if !bytes_type_is_str => {
                self.string(obj, MAX_REPR_LEN).map(|s| python_str_repr(&s))
            }
            Some(BuiltinType::Bytes) if bytes_type_is_str => self
                .bytes(obj, MAX_REPR_LEN)
                .map(|b| python_bytes_repr(&b, "")),
            Some(BuiltinType::Str) => self
                .string(obj, MAX_REPR_LEN)
                .map(|s| format!("u{}", python_str_repr(&s))),
            Some(BuiltinType::Bytes) => self
                .bytes(obj, MAX_REPR_LEN)
                .map(|b| python_bytes_repr(&b, "b")),
            // A cell (a closure variable): show what it holds.
            Some(BuiltinType::Cell) => self
                .memory
                .read_ptr(
                    obj.wrapping_add(self.layout.offsets().object.sizeof.require().unwrap_or(16)),
                )
                .map(|v| {
                    if v == 0 {
                        "<empty cell>".to_string()
                    } else {
                        self.repr_at(v, depth)
                    }
                }),
            Some(BuiltinType::Tuple | BuiltinType::List) if depth >= MAX_REPR_DEPTH => {
                Ok(format!("<{name}>"))
            }
            Some(BuiltinType::Tuple) => {
                self.tuple_items(obj, MAX_REPR_ITEMS).map(|(items, len)| {
                    let inner = self.join(&items, len, depth);
                    if len == 1 {
                        format!("({inner},)")
                    } else {
                        format!("({inner})")
                    }
                })
            }
            Some(BuiltinType::List) => self
                .list_items(obj, MAX_REPR_ITEMS)
                .map(|(items, len)| format!("[{}]", self.join(&items, len, depth))),
            Some(BuiltinType::Dict) if depth >= MAX_REPR_DEPTH => Ok("<dict>".into()),
            Some(BuiltinType::Dict) => self.dict_items(obj, MAX_REPR_ITEMS).map(|(items, len)| {
                let mut parts: Vec<String> = items
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}: {}",
                            self.repr_at(*k, depth + 1),
                            self.repr_at(*v, depth + 1)
                        )
                    })
                    .collect();
                if len > items.len() as u64 {
                    parts.push(format!("… {} more", len - items.len() as u64));
                }
                format!("{{{}}}", parts.join(", "))
            }),
            _ => Ok(format!("<{name} object at {obj:#x}>")),
        };
        result.unwrap_or_else(|e| format!("<{name} at {obj:#x}: {}>", e.reason))
    }

    fn join(&self, items: &[u64], len: u64, depth: usize) -> String {
        let mut parts: Vec<String> = items.iter().map(|&i| self.repr_at(i, depth + 1)).collect();
        if len > items.len() as u64 {
            parts.push(format!("… {} more", len - items.len() as u64));
        }
        parts.join(", ")
    }
}

/// Where a dict's fields are: read once per view, since heap walks visit
/// every dict.
#[derive(Debug, Clone, Copy)]
struct DictOffsets {
    ma_used: u64,
    ma_keys: u64,
    ma_values: u64,
    dk_nentries: u64,
    dk_indices: u64,
    values_at: u64,
    table: DictTable,
    entry: DictEntryShape,
    unicode_entry: Option<DictEntryShape>,
}

/// How a dict's table is sized.
#[derive(Debug, Clone, Copy)]
enum DictTable {
    /// 2.7: `ma_mask` and `ma_table` in the dict itself.
    Open { ma_mask: u64, ma_table: u64 },
    /// 3.6–3.10: `dk_size`.
    Sized { dk_size: u64 },
    /// 3.11+: log2 sizes and a key kind.
    Log2 {
        log2_size: u64,
        log2_index_bytes: u64,
        kind: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct DictEntryShape {
    size: u64,
    key: u64,
    value: u64,
}

/// One live dict entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictEntry {
    /// Where the key pointer is.
    pub key_at: u64,
    /// The key.
    pub key: u64,
    /// Where the value pointer is.
    pub value_at: u64,
    /// The value.
    pub value: u64,
    /// The dict is split: its keys belong to a shared keys object, not to it.
    pub split: bool,
}

/// `repr()` of a str: single quotes unless the text has one and no double quote.
pub fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr()` of bytes (3.x) or a 2.7 str (`prefix` empty).
fn python_bytes_repr(b: &[u8], prefix: &str) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from(prefix);
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// `repr()` of a float, close to Python's: shortest round-trip digits.
fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let text = format!("{v:?}");
    // Rust writes 1e20 and 1e-7, Python 1e+20 and 1e-07.
    match text.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// Decode 1-, 2- or 4-byte code units; invalid code points become U+FFFD.
fn decode_units(raw: &[u8], width: u64) -> String {
    match width {
        1 => raw.iter().map(|&b| char::from(b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| {
                char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs_follow_python() {
        assert_eq!(python_str_repr("abc"), "'abc'");
        assert_eq!(python_str_repr("it's"), "\"it's\"");
        assert_eq!(python_str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(python_str_repr("a\nb\\"), "'a\\nb\\\\'");
        assert_eq!(python_bytes_repr(b"\x00ab", "b"), "b'\\x00ab'");
        assert_eq!(python_float_repr(1.5), "1.5");
        assert_eq!(python_float_repr(1e20), "1e+20");
        assert_eq!(python_float_repr(1e-7), "1e-07");
    }
}
