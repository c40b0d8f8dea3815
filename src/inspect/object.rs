//! [`Object`]: one Python object in the core, read on demand.

use serde::Serialize;

use super::Python;
use crate::error::Error;
use crate::forensics::read_context::{GcState, ReadContext, TPFLAGS_HAVE_GC};
use crate::memory::ProcessMemory;
use crate::python::objects::Objects;
use crate::python::types::BuiltinType;

/// Items read from one container, at most: a corrupt size must not make a
/// script allocate gigabytes.
pub const MAX_ITEMS: usize = 1 << 20;
/// Characters of a string value read, at most.
pub const MAX_STR_CHARS: usize = 1 << 20;
/// Bytes of a bytes value read, at most.
pub const MAX_BYTES: usize = 1 << 24;

use crate::layout::tp_flags::{
    BYTES_SUBCLASS, DICT_SUBCLASS, INT_SUBCLASS_2, LIST_SUBCLASS, LONG_SUBCLASS, TUPLE_SUBCLASS,
    TYPE_SUBCLASS, UNICODE_SUBCLASS,
};

/// What an object is, as far as typed access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ObjectKind {
    /// `None`.
    None,
    /// `bool`.
    Bool,
    /// `int` (and 2.7's `long`), or a subclass.
    Int,
    /// `float`.
    Float,
    /// `str` (3.x) or `unicode` (2.7), or a subclass.
    Str,
    /// `bytes` (3.x) or `str` (2.7), or a subclass.
    Bytes,
    /// `tuple` or a subclass.
    Tuple,
    /// `list` or a subclass.
    List,
    /// `dict` or a subclass.
    Dict,
    /// A type object.
    Type,
    /// Anything else: instances of classes, functions, modules, …
    Other,
}

impl ObjectKind {
    /// Its name, as in the JSON: `none`, `int`, `tuple`, …, `other`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::None => "none",
            ObjectKind::Bool => "bool",
            ObjectKind::Int => "int",
            ObjectKind::Float => "float",
            ObjectKind::Str => "str",
            ObjectKind::Bytes => "bytes",
            ObjectKind::Tuple => "tuple",
            ObjectKind::List => "list",
            ObjectKind::Dict => "dict",
            ObjectKind::Type => "type",
            ObjectKind::Other => "other",
        }
    }
}

/// A refcount word, and whether it marks the object immortal (3.12+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refcount {
    /// `ob_refcnt`.
    pub value: i64,
    /// The count is the immortal marker, not a count.
    pub immortal: bool,
}

/// One attribute of an instance.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: Object,
    /// Where the value pointer is stored (dict entry or value slot).
    pub value_at: u64,
}

/// A Python object at an address: a cheap, thread-safe handle that reads
/// the core only when asked. Every read names the address and the reason
/// when it fails.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free")?;
/// # let truth = sample.truth;
/// let process = pymortem::Process::open(&sample.core, &sample.options)?;
/// let python = pymortem::Python::of(&process)?;
/// // The list that still holds the freed tuple (its address from the truth file).
/// let holder = python.object(truth["objects"]["holder_list"].as_u64().unwrap());
/// assert_eq!(holder.type_name()?, "list");
/// let victim = &holder.list_items()?[0];
/// assert_eq!(victim.type_name()?, "tuple");
/// println!("{:#x} holds {:#x}, refcount {}", holder.address(), victim.address(), victim.refcount()?.value);
/// # assert_eq!(victim.address(), truth["objects"]["victim_tuple"].as_u64().unwrap());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Object {
    python: Python,
    address: u64,
}

impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        self.address == other.address
    }
}

impl Eq for Object {}

impl Object {
    pub(super) fn new(python: Python, address: u64) -> Object {
        Object { python, address }
    }

    fn objects(&self) -> Objects<'_, ProcessMemory> {
        self.python.objects()
    }

    fn wrap(&self, addresses: impl IntoIterator<Item = u64>) -> Vec<Object> {
        addresses
            .into_iter()
            .map(|a| self.python.object(a))
            .collect()
    }

    /// Its address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// The runtime it belongs to.
    pub fn python(&self) -> &Python {
        &self.python
    }

    /// Its type object (`ob_type`).
    pub fn type_object(&self) -> Result<Object, Error> {
        let ty = self.objects().type_of(self.address)?;
        Ok(self.python.object(ty))
    }

    /// Its type's name (`tp_name`), e.g. `tuple`, `collections.OrderedDict`.
    pub fn type_name(&self) -> Result<String, Error> {
        let ty = self.objects().type_of(self.address)?;
        Ok(self.python.type_name_of_type(ty)?.to_string())
    }

    /// Its refcount word.
    pub fn refcount(&self) -> Result<Refcount, Error> {
        let value = self.objects().refcount(self.address)?;
        let immortal = self.python.layout().facts.is_immortal(value);
        Ok(Refcount { value, immortal })
    }

    /// Whether the GC tracks it: `None` when its type has no GC header, so
    /// the question does not apply.
    pub fn gc_state(&self) -> Result<Option<GcState>, Error> {
        let objects = self.objects();
        let ty = objects.type_of(self.address)?;
        if objects.type_flags(ty)? & TPFLAGS_HAVE_GC == 0 {
            return Ok(None);
        }
        let heap = ReadContext::new(self.python.process(), self.python.state());
        heap.gc_state(self.address)
            .map(|(state, _)| Some(state))
            .ok_or_else(|| {
                crate::error::ReadError::new(
                    self.address.wrapping_sub(heap.gc_head_size),
                    heap.gc_head_size,
                    crate::error::ReadFailure::Invalid("unreadable GC header".into()),
                )
                .into()
            })
    }

    /// A short, bounded, Python-like repr; damage shows in it, it never fails.
    pub fn repr(&self) -> String {
        self.objects().repr(self.address)
    }

    /// What kind of object it is, from its type's flags and name.
    pub fn kind(&self) -> Result<ObjectKind, Error> {
        let objects = self.objects();
        let ty = objects.type_of(self.address)?;
        if let Some(kind) = self.python.known_kind(ty) {
            return Ok(kind);
        }
        let kind = Self::kind_of_type(&objects, ty)?;
        self.python.remember_kind(ty, kind);
        Ok(kind)
    }

    fn kind_of_type(objects: &Objects<'_, ProcessMemory>, ty: u64) -> Result<ObjectKind, Error> {
        let short_int = objects.rules().separate_short_int;
        let flags = objects.type_flags(ty)?;
        let kind = if flags & TUPLE_SUBCLASS != 0 {
            ObjectKind::Tuple
        } else if flags & LIST_SUBCLASS != 0 {
            ObjectKind::List
        } else if flags & DICT_SUBCLASS != 0 {
            ObjectKind::Dict
        } else if flags & UNICODE_SUBCLASS != 0 {
            ObjectKind::Str
        } else if flags & BYTES_SUBCLASS != 0 {
            ObjectKind::Bytes
        } else if flags & TYPE_SUBCLASS != 0 {
            ObjectKind::Type
        } else if flags & LONG_SUBCLASS != 0 || (short_int && flags & INT_SUBCLASS_2 != 0) {
            match objects.builtin_type(ty) {
                Some(BuiltinType::Bool) => ObjectKind::Bool,
                _ => ObjectKind::Int,
            }
        } else {
            match objects.builtin_type(ty) {
                Some(BuiltinType::Float) => ObjectKind::Float,
                Some(BuiltinType::None) => ObjectKind::None,
                _ => ObjectKind::Other,
            }
        };
        Ok(kind)
    }

    /// Its kind, when it is one of `accepted`; else [`Error::WrongType`]
    /// saying it is not an `expected`.
    fn expect(&self, accepted: &[ObjectKind], expected: &'static str) -> Result<ObjectKind, Error> {
        let kind = self.kind()?;
        if accepted.contains(&kind) {
            return Ok(kind);
        }
        Err(self.wrong_type(expected))
    }

    fn wrong_type(&self, expected: &'static str) -> Error {
        Error::WrongType {
            address: self.address,
            expected,
            found: self.type_name().unwrap_or_else(|_| "?".into()),
        }
    }

    /// `ob_size`: the length of a tuple, list, bytes or int's digits.
    pub fn var_size(&self) -> Result<i64, Error> {
        Ok(self.objects().var_size(self.address)?)
    }

    /// The length of a tuple, list, dict, str or bytes, as the object
    /// records it (read, not counted).
    pub fn length(&self) -> Result<u64, Error> {
        let objects = self.objects();
        match self.kind()? {
            ObjectKind::Tuple | ObjectKind::List | ObjectKind::Bytes => {
                Ok(objects.var_size(self.address)?.max(0) as u64)
            }
            ObjectKind::Dict => Ok(objects.dict_len(self.address)?),
            ObjectKind::Str => Ok(objects.string_len(self.address)?),
            _ => Err(self.wrong_type("container or string")),
        }
    }

    /// The items of a tuple, at most [`MAX_ITEMS`].
    pub fn tuple_items(&self) -> Result<Vec<Object>, Error> {
        self.expect(&[ObjectKind::Tuple], "tuple")?;
        let (items, _) = self.objects().tuple_items(self.address, MAX_ITEMS)?;
        Ok(self.wrap(items))
    }

    /// The items of a list, at most [`MAX_ITEMS`].
    pub fn list_items(&self) -> Result<Vec<Object>, Error> {
        self.expect(&[ObjectKind::List], "list")?;
        let (items, _) = self.objects().list_items(self.address, MAX_ITEMS)?;
        Ok(self.wrap(items))
    }

    /// The (key, value) entries of a dict in table order, at most [`MAX_ITEMS`].
    pub fn dict_entries(&self) -> Result<Vec<(Object, Object)>, Error> {
        self.expect(&[ObjectKind::Dict], "dict")?;
        let (entries, _) = self.objects().dict_items(self.address, MAX_ITEMS)?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (self.python.object(k), self.python.object(v)))
            .collect())
    }

    /// The value of a `str` (2.7: `unicode` or `str`), at most [`MAX_STR_CHARS`].
    pub fn str_value(&self) -> Result<String, Error> {
        match self.kind()? {
            ObjectKind::Str => Ok(self.objects().string(self.address, MAX_STR_CHARS)?),
            // 2.7's `str` holds bytes; names and identifiers are ASCII.
            ObjectKind::Bytes if self.python.layout().facts.rules.bytes_type_is_str => {
                Ok(self.objects().string(self.address, MAX_STR_CHARS)?)
            }
            _ => Err(self.wrong_type("str")),
        }
    }

    /// The value of a `bytes` (2.7: `str`), at most [`MAX_BYTES`].
    pub fn bytes_value(&self) -> Result<Vec<u8>, Error> {
        self.expect(&[ObjectKind::Bytes], "bytes")?;
        Ok(self.objects().bytes(self.address, MAX_BYTES)?)
    }

    /// The value of an `int` or `bool` that fits in 120 bits.
    pub fn int_value(&self) -> Result<i128, Error> {
        self.expect(&[ObjectKind::Int, ObjectKind::Bool], "int")?;
        Ok(self.objects().int(self.address)?)
    }

    /// The value of a `float`.
    pub fn float_value(&self) -> Result<f64, Error> {
        self.expect(&[ObjectKind::Float], "float")?;
        Ok(self.objects().float(self.address)?)
    }

    /// The attributes of an instance, from its `__dict__` or the values that
    /// stand in for one (3.11+), in key order, at most [`MAX_ITEMS`]. Empty
    /// for objects without an instance dict.
    pub fn attributes(&self) -> Result<Vec<Attribute>, Error> {
        let objects = self.objects();
        let entries = objects.attributes(self.address, MAX_ITEMS)?;
        entries
            .into_iter()
            .map(|e| {
                Ok(Attribute {
                    name: self.python.object(e.key).str_value()?,
                    value: self.python.object(e.value),
                    value_at: e.value_at,
                })
            })
            .collect()
    }

    /// The instance attribute `name`, if the object has it in its dict.
    pub fn attribute(&self, name: &str) -> Result<Option<Object>, Error> {
        Ok(self
            .attributes()?
            .into_iter()
            .find(|a| a.name == name)
            .map(|a| a.value))
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectKind;

    #[test]
    fn kind_names_are_the_json_names() {
        use ObjectKind::*;
        for kind in [
            None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Type, Other,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name(), "{kind:?}");
        }
    }
}
