//! Attributes of instances: where an object keeps its `__dict__`, or the
//! values that stand in for one, which moved in 3.11, 3.12 and 3.13.

use super::objects::{DictEntry, Objects, invalid};
use crate::layout::ManagedDict;
use crate::memory::ReadError;
use crate::memory::{Memory, MemoryExt};

/// `Py_TPFLAGS_INLINE_VALUES` (3.13+): the values follow the object.
const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;
/// `Py_TPFLAGS_MANAGED_DICT` (3.11+): the dict pointer sits before the object.
const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;
/// The managed dict pointer, in words before the object (3.11+).
const MANAGED_DICT_WORDS: u64 = 3;
/// The 3.11 values pointer, in words before the object.
const VALUES_WORDS_311: u64 = 4;

/// Where an instance keeps its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeStore {
    /// No instance dict: a builtin, a slotted class, or none made yet.
    Absent,
    /// A dict object.
    Dict(u64),
    /// Values without a dict (3.11+): the type's shared keys and the address
    /// of the first value slot.
    Values {
        /// The type's `ht_cached_keys`.
        keys: u64,
        /// The first value slot.
        values: u64,
    },
}

impl<M: Memory> Objects<'_, M> {
    /// The type's `tp_flags`.
    pub fn type_flags(&self, ty: u64) -> Result<u64, ReadError> {
        let at = self.layout.offsets().type_object.tp_flags.require()?;
        self.memory.read_u64(ty.wrapping_add(at))
    }

    /// Whether instances of type `ty` (with `tp_flags` `flags`) keep
    /// attributes: a managed dict, or a `__dict__` slot at a positive offset.
    pub fn keeps_attributes(&self, ty: u64, flags: u64) -> bool {
        if self.rules().managed_dict != ManagedDict::None && flags & TPFLAGS_MANAGED_DICT != 0 {
            return true;
        }
        self.layout
            .offsets()
            .type_object
            .tp_dictoffset
            .get()
            .and_then(|at| self.memory.read_i64(ty.wrapping_add(at)).ok())
            .is_some_and(|offset| offset > 0)
    }

    /// Where the object at `obj` keeps its `__dict__` pointer, when it has one.
    pub fn dict_slot(&self, obj: u64) -> Option<u64> {
        let ty = self.type_of(obj).ok()?;
        let flags = self.type_flags(ty).ok()?;
        if self.rules().managed_dict != ManagedDict::None && flags & TPFLAGS_MANAGED_DICT != 0 {
            return Some(obj.wrapping_sub(MANAGED_DICT_WORDS * 8));
        }
        let at = self.layout.offsets().type_object.tp_dictoffset.get()?;
        let offset = self.memory.read_i64(ty.wrapping_add(at)).ok()?;
        (offset > 0).then(|| obj.wrapping_add(offset as u64))
    }

    /// Where the object at `obj` keeps its attributes.
    pub fn attribute_store(&self, obj: u64) -> Result<AttributeStore, ReadError> {
        let ty = self.type_of(obj)?;
        let flags = self.type_flags(ty)?;
        let managed = self.rules().managed_dict;
        if managed != ManagedDict::None && flags & TPFLAGS_MANAGED_DICT != 0 {
            return self.managed_store(obj, ty, flags, managed);
        }
        let at = self.layout.offsets().type_object.tp_dictoffset.require()?;
        let offset = self.memory.read_i64(ty.wrapping_add(at))?;
        match offset {
            0 => Ok(AttributeStore::Absent),
            // A negative offset counts from the end of a variable-size
            // object (int and tuple subclasses); rare, and left out.
            ..0 => Err(invalid(
                ty,
                format!(
                    "tp_dictoffset {offset}: dicts at the end of variable-size objects are not read"
                ),
            )),
            _ => match self.memory.read_ptr(obj.wrapping_add(offset as u64))? {
                0 => Ok(AttributeStore::Absent),
                dict => Ok(AttributeStore::Dict(dict)),
            },
        }
    }

    fn managed_store(
        &self,
        obj: u64,
        ty: u64,
        flags: u64,
        managed: ManagedDict,
    ) -> Result<AttributeStore, ReadError> {
        let word = self
            .memory
            .read_ptr(obj.wrapping_sub(MANAGED_DICT_WORDS * 8))?;
        let values_at = self.layout.offsets().dict_values.values.get().unwrap_or(0);
        let values = match managed {
            ManagedDict::None => return Ok(AttributeStore::Absent),
            // 3.11: the dict, or else the values, each a word of its own.
            ManagedDict::SeparateWords => match word {
                0 => self
                    .memory
                    .read_ptr(obj.wrapping_sub(VALUES_WORDS_311 * 8))?,
                dict => return Ok(AttributeStore::Dict(dict)),
            },
            // 3.12: one word; values are stored as their address minus 1,
            // which makes the word odd.
            ManagedDict::TaggedWord if word & 1 != 0 => word.wrapping_add(1),
            ManagedDict::TaggedWord if word != 0 => return Ok(AttributeStore::Dict(word)),
            ManagedDict::TaggedWord => 0,
            // 3.13+: the dict if one was made, else values inline after the
            // object, flagged valid.
            ManagedDict::InlineValues if word != 0 => return Ok(AttributeStore::Dict(word)),
            ManagedDict::InlineValues if flags & TPFLAGS_INLINE_VALUES != 0 => {
                let basic_at = self.layout.offsets().type_object.tp_basicsize.require()?;
                let inline = obj.wrapping_add(self.memory.read_u64(ty.wrapping_add(basic_at))?);
                let valid = match self.layout.offsets().dict_values.valid.get() {
                    Some(at) => self.memory.read_u8(inline.wrapping_add(at))? != 0,
                    None => true,
                };
                if valid { inline } else { 0 }
            }
            ManagedDict::InlineValues => 0,
        };
        if values == 0 {
            return Ok(AttributeStore::Absent);
        }
        let keys_at = self.layout.offsets().heap_type.ht_cached_keys.require()?;
        let keys = self.memory.read_ptr(ty.wrapping_add(keys_at))?;
        if keys == 0 {
            return Err(invalid(
                ty,
                "instance values without the type's cached keys",
            ));
        }
        Ok(AttributeStore::Values {
            keys,
            values: values.wrapping_add(values_at),
        })
    }

    /// The attributes of the object at `obj`, as (name object, value) pairs
    /// in the order of its keys, at most `max`.
    pub fn attributes(&self, obj: u64, max: usize) -> Result<Vec<DictEntry>, ReadError> {
        let mut out = Vec::new();
        match self.attribute_store(obj)? {
            AttributeStore::Absent => {}
            AttributeStore::Dict(dict) => {
                self.for_each_dict_entry(dict, max, &mut |e| out.push(e))?;
            }
            AttributeStore::Values { keys, values } => {
                self.for_each_keys_entry(keys, Some(values), max, &mut |e| out.push(e))?;
            }
        }
        Ok(out)
    }
}
