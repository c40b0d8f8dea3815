//! CPython's built-in types identified by address and by the type object's
//! own fields, not by `tp_name`: a static type's name lives in the
//! interpreter's read-only data, which a core holds only when the file does
//! (pages never written are not dumped), while the type object itself is in
//! writable data that every core has.
//!
//! Two sources, both read from the core alone:
//! - anchors: the main interpreter's `builtins` dict maps names to the type
//!   objects (`float`, `bool`, ...) and to `None`, whose type is `NoneType`;
//! - shape: `tp_flags`' subclass bits, `tp_base` (`object` is the one type
//!   without a base), `ob_type` (`type` is its own type) and the sizes
//!   (`code` has `PyCodeObject`'s).

use std::collections::HashMap;

use crate::layout::{Layout, VersionRules};
use crate::memory::{Memory, MemoryExt};

use crate::layout::tp_flags::{
    BYTES_SUBCLASS, DICT_SUBCLASS, HAVE_GC, HEAPTYPE, INT_SUBCLASS_2, LIST_SUBCLASS, LONG_SUBCLASS,
    TUPLE_SUBCLASS, TYPE_SUBCLASS, UNICODE_SUBCLASS,
};
/// Entries of the builtins dict looked at, at most.
const MAX_BUILTINS: usize = 512;

/// A built-in type pymortem reads objects of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuiltinType {
    /// `type`.
    Type,
    /// `object`.
    Object,
    /// `code`.
    Code,
    /// `tuple`.
    Tuple,
    /// `list`.
    List,
    /// `dict`.
    Dict,
    /// Text: `str` (3.x), `unicode` (2.7).
    Str,
    /// Bytes: `bytes` (3.x), `str` (2.7).
    Bytes,
    /// `int` (3.x), `long` (2.7).
    Long,
    /// 2.7's machine-word `int`.
    Py2Int,
    /// `bool`.
    Bool,
    /// `float`.
    Float,
    /// `NoneType`.
    None,
    /// `cell`, learnt from the frames' cell slots.
    Cell,
}

impl BuiltinType {
    /// Its `tp_name` under `rules`.
    pub fn name(self, rules: &VersionRules) -> &'static str {
        let bytes_type_is_str = rules.bytes_type_is_str;
        match self {
            BuiltinType::Type => "type",
            BuiltinType::Object => "object",
            BuiltinType::Code => "code",
            BuiltinType::Tuple => "tuple",
            BuiltinType::List => "list",
            BuiltinType::Dict => "dict",
            BuiltinType::Str if bytes_type_is_str => "unicode",
            BuiltinType::Str => "str",
            BuiltinType::Bytes if bytes_type_is_str => "str",
            BuiltinType::Bytes => "bytes",
            BuiltinType::Long if rules.separate_short_int => "long",
            BuiltinType::Long | BuiltinType::Py2Int => "int",
            BuiltinType::Bool => "bool",
            BuiltinType::Float => "float",
            BuiltinType::None => "NoneType",
            BuiltinType::Cell => "cell",
        }
    }
}

/// Type objects found by address in the core: the builtins dict's.
#[derive(Debug, Clone, Default)]
pub struct TypeAnchors {
    by_address: HashMap<u64, BuiltinType>,
}

impl TypeAnchors {
    /// The built-in type at `ty`, if an anchor named it.
    pub fn get(&self, ty: u64) -> Option<BuiltinType> {
        self.by_address.get(&ty).copied()
    }

    /// How many types were anchored.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether no type was anchored.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Anchors from the `builtins` dict of the interpreter state `interp`;
    /// empty when it cannot be read. Only static types are taken, so a
    /// rebound name (`builtins.float = MyFloat`) anchors nothing.
    pub fn from_builtins<M: Memory>(
        objects: &super::objects::Objects<'_, M>,
        interp: Option<u64>,
    ) -> TypeAnchors {
        let mut anchors = TypeAnchors::default();
        let Some(builtins_at) = objects
            .layout
            .offsets()
            .interp
            .builtins
            .get()
            .zip(interp)
            .map(|(off, interp)| interp.wrapping_add(off))
        else {
            return anchors;
        };
        let Ok(dict) = objects.memory.read_ptr(builtins_at) else {
            return anchors;
        };
        let Ok((entries, _)) = objects.dict_items(dict, MAX_BUILTINS) else {
            return anchors;
        };
        for (key, value) in entries {
            let Ok(name) = objects.raw_text(key, 16) else {
                continue;
            };
            let (ty, kind) = match name.as_str() {
                "None" => (objects.type_of(value), BuiltinType::None),
                "float" => (Ok(value), BuiltinType::Float),
                "bool" => (Ok(value), BuiltinType::Bool),
                _ => continue,
            };
            if let Ok(ty) = ty
                && is_static_type(objects.memory, objects.layout, ty)
            {
                anchors.by_address.insert(ty, kind);
            }
        }
        anchors
    }
}

/// Metatypes followed from an object's type up to `type`, at most: `type`
/// itself, a metaclass, a metaclass's metaclass, with room to spare.
const MAX_METATYPE_CHAIN: usize = 6;

/// Whether `ty` is a type object, given how to read an object's type and a
/// type's `tp_flags`. Its type must be a metatype (`Py_TPFLAGS_TYPE_SUBCLASS`)
/// that is itself a type, up to `type`, which is its own type: one flag bit
/// alone is met by chance in any word, a chain of them ending in a
/// self-loop is not.
pub fn is_type_object(
    ty: u64,
    mut type_of: impl FnMut(u64) -> Option<u64>,
    mut flags: impl FnMut(u64) -> Option<u64>,
) -> bool {
    let mut t = ty;
    for _ in 0..MAX_METATYPE_CHAIN {
        if t == 0 || !t.is_multiple_of(8) {
            return false;
        }
        let Some(meta) = type_of(t) else {
            return false;
        };
        if flags(meta).is_none_or(|f| f & TYPE_SUBCLASS == 0) {
            return false;
        }
        if meta == t {
            return true;
        }
        t = meta;
    }
    false
}

/// Whether `ty` looks like a static type object: a type object
/// ([`is_type_object`]) that is not a heap type.
fn is_static_type<M: Memory>(memory: &M, layout: &Layout, ty: u64) -> bool {
    let (Some(ob_type), Some(tp_flags)) = (
        layout.offsets().object.ob_type.get(),
        layout.offsets().type_object.tp_flags.get(),
    ) else {
        return false;
    };
    let flags = |t: u64| memory.read_u64(t.wrapping_add(tp_flags)).ok();
    is_type_object(ty, |t| memory.read_ptr(t.wrapping_add(ob_type)).ok(), flags)
        && flags(ty).is_some_and(|f| f & HEAPTYPE == 0)
}

/// The built-in type `ty` is, from its own fields; `None` for any other
/// type, a heap type, or one that cannot be read. Subclasses are not their
/// base: `bool` is told from `int` by its `tp_base`.
pub fn by_shape<M: Memory>(memory: &M, layout: &Layout, ty: u64) -> Option<BuiltinType> {
    shape_of(memory, layout, ty, true)
}

/// [`by_shape`]; `bool` (a subclass) only when `subclasses`, so a base
/// chain that loops is followed one step.
fn shape_of<M: Memory>(
    memory: &M,
    layout: &Layout,
    ty: u64,
    subclasses: bool,
) -> Option<BuiltinType> {
    let rules = &layout.facts.rules;
    let offsets = layout.offsets();
    let ob_type = offsets.object.ob_type.get()?;
    let (flags_at, base_at) = (
        offsets.type_object.tp_flags.get()?,
        offsets.type_object.tp_base.get()?,
    );
    let read = |at: u64| memory.read_u64(at).ok();
    if !is_static_type(memory, layout, ty) {
        return None;
    }
    let flags = read(ty.wrapping_add(flags_at))?;
    let base = read(ty.wrapping_add(base_at))?;
    if read(ty.wrapping_add(ob_type))? == ty {
        return Some(BuiltinType::Type);
    }
    if base == 0 {
        return Some(BuiltinType::Object);
    }
    let base_of_base = read(base.wrapping_add(base_at))?;
    if base_of_base != 0 {
        // 2.7's str and unicode are based on `basestring`, itself on `object`.
        let strings = BYTES_SUBCLASS | UNICODE_SUBCLASS;
        let on_basestring = rules.bytes_type_is_str
            && flags & strings != 0
            && read(base.wrapping_add(flags_at))? & strings == 0
            && read(base_of_base.wrapping_add(base_at))? == 0;
        if !on_basestring {
            if !subclasses {
                return None;
            }
            // The one static subclass of a built-in that pymortem reads: bool.
            let int = if rules.separate_short_int {
                BuiltinType::Py2Int
            } else {
                BuiltinType::Long
            };
            let base_kind = shape_of(memory, layout, base, false);
            return (base_kind == Some(int)).then_some(BuiltinType::Bool);
        }
    }
    let by_flag = [
        (TUPLE_SUBCLASS, BuiltinType::Tuple),
        (LIST_SUBCLASS, BuiltinType::List),
        (DICT_SUBCLASS, BuiltinType::Dict),
        (UNICODE_SUBCLASS, BuiltinType::Str),
        (BYTES_SUBCLASS, BuiltinType::Bytes),
        (LONG_SUBCLASS, BuiltinType::Long),
    ];
    if let Some(&(_, kind)) = by_flag.iter().find(|(bit, _)| flags & bit != 0) {
        return Some(kind);
    }
    if rules.separate_short_int && flags & INT_SUBCLASS_2 != 0 {
        return Some(BuiltinType::Py2Int);
    }
    is_code_shape(memory, layout, ty, flags).then_some(BuiltinType::Code)
}

/// `code`: no GC, and exactly `PyCodeObject`'s size (from 3.11 a
/// variable-size object whose items are the 2-byte code units).
fn is_code_shape<M: Memory>(memory: &M, layout: &Layout, ty: u64, flags: u64) -> bool {
    if flags & HAVE_GC != 0 {
        return false;
    }
    let Some((basic, item)) = sizes(memory, layout, ty) else {
        return false;
    };
    let code = layout.offsets().code;
    if layout.facts.rules.code_holds_bytecode {
        code.co_code_adaptive.get() == Some(basic) && item == 2
    } else {
        code.sizeof.get() == Some(basic) && item == 0
    }
}

/// `tp_basicsize` and `tp_itemsize`.
fn sizes<M: Memory>(memory: &M, layout: &Layout, ty: u64) -> Option<(u64, u64)> {
    let type_object = layout.offsets().type_object;
    let basic = type_object.tp_basicsize.get()?;
    let item = type_object.tp_itemsize.get()?;
    Some((
        memory.read_u64(ty.wrapping_add(basic)).ok()?,
        memory.read_u64(ty.wrapping_add(item)).ok()?,
    ))
}

/// Whether `ty` has the shape of `cell`: a static GC type one pointer larger
/// than `PyObject`, with no items, based on `object`. Other types share it
/// (`instancemethod`), so it is asked only of objects found in a frame's
/// cell slots.
pub fn has_cell_shape<M: Memory>(memory: &M, layout: &Layout, ty: u64) -> bool {
    let offsets = layout.offsets();
    let (Some(flags_at), Some(base_at), Some(object_size)) = (
        offsets.type_object.tp_flags.get(),
        offsets.type_object.tp_base.get(),
        offsets.object.sizeof.get(),
    ) else {
        return false;
    };
    let base_is_object = memory
        .read_u64(ty.wrapping_add(base_at))
        .and_then(|b| memory.read_u64(b.wrapping_add(base_at)))
        .is_ok_and(|b| b == 0);
    is_static_type(memory, layout, ty)
        && base_is_object
        && memory
            .read_u64(ty.wrapping_add(flags_at))
            .is_ok_and(|f| f & HAVE_GC != 0)
        && sizes(memory, layout, ty) == Some((object_size + 8, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tables;
    use crate::memory::BufferMemory;

    const BASE: u64 = 0x10_0000;
    /// Room per synthetic type object.
    const SLOT: u64 = 0x200;

    struct Types {
        memory: BufferMemory,
        layout: Layout,
    }

    impl Types {
        fn new() -> Types {
            let layout = tables::builtin(3, 11).unwrap().layout_for("3.11.7");
            let memory = BufferMemory {
                base: BASE,
                bytes: vec![0; 16 * SLOT as usize],
            };
            let mut types = Types { memory, layout };
            // Slot 0: `type`, its own type.
            types.set(0, 0, TYPE_SUBCLASS, 1);
            types
        }

        fn at(slot: u64) -> u64 {
            BASE + slot * SLOT
        }

        fn put(&mut self, addr: u64, value: u64) {
            let at = (addr - BASE) as usize;
            self.memory.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }

        /// Type `slot`: of type `type`, with `flags` and base `base` (a slot
        /// number, or none).
        fn set(&mut self, slot: u64, meta: u64, flags: u64, base: impl Into<Option<u64>>) {
            let offsets = self.layout.offsets();
            let ty = Types::at(slot);
            let (ob_type, flags_at, base_at) = (
                offsets.object.ob_type.get().unwrap(),
                offsets.type_object.tp_flags.get().unwrap(),
                offsets.type_object.tp_base.get().unwrap(),
            );
            self.put(ty + ob_type, Types::at(meta));
            self.put(ty + flags_at, flags);
            self.put(ty + base_at, base.into().map_or(0, Types::at));
        }

        fn kind(&self, slot: u64) -> Option<BuiltinType> {
            by_shape(&self.memory, &self.layout, Types::at(slot))
        }
    }

    #[test]
    fn a_type_is_a_chain_of_metatypes_up_to_type() {
        let mut t = Types::new();
        let is_type = |t: &Types, slot: u64| {
            let offsets = t.layout.offsets();
            let (ob_type, flags) = (
                offsets.object.ob_type.get().unwrap(),
                offsets.type_object.tp_flags.get().unwrap(),
            );
            is_type_object(
                Types::at(slot),
                |o| t.memory.read_ptr(o + ob_type).ok(),
                |o| t.memory.read_u64(o + flags).ok(),
            )
        };
        t.set(1, 0, 0, None); // NoneType
        // None: an instance whose word where a type keeps tp_flags happens
        // to have the metatype bit.
        t.set(2, 1, TYPE_SUBCLASS, None);
        // A list's item array: its second word (where ob_type is) is None.
        t.set(3, 2, 0, None);
        t.set(4, 0, TYPE_SUBCLASS | HEAPTYPE, 0); // class Meta(type)
        t.set(5, 4, HEAPTYPE, None); // class C(metaclass=Meta)
        assert!(is_type(&t, 0), "type");
        assert!(is_type(&t, 1), "NoneType");
        assert!(is_type(&t, 4), "a metaclass");
        assert!(is_type(&t, 5), "a class with a metaclass");
        assert!(!is_type(&t, 2), "None");
        assert!(!is_type(&t, 3), "memory whose ob_type word is None");
    }

    #[test]
    fn built_in_types_are_told_by_their_fields() {
        let mut t = Types::new();
        t.set(0, 0, TYPE_SUBCLASS, 2);
        t.set(2, 0, 0, None); // object
        t.set(3, 0, LONG_SUBCLASS, 2); // int
        t.set(4, 0, LONG_SUBCLASS, 3); // bool
        t.set(5, 0, TUPLE_SUBCLASS, 2); // tuple
        t.set(6, 0, TUPLE_SUBCLASS | HEAPTYPE, 5); // class T(tuple)
        t.set(7, 0, TUPLE_SUBCLASS, 5); // a static subclass of tuple
        assert_eq!(t.kind(0), Some(BuiltinType::Type));
        assert_eq!(t.kind(2), Some(BuiltinType::Object));
        assert_eq!(t.kind(3), Some(BuiltinType::Long));
        assert_eq!(t.kind(4), Some(BuiltinType::Bool));
        assert_eq!(t.kind(5), Some(BuiltinType::Tuple));
        assert_eq!(t.kind(6), None, "a heap type is never a built-in");
        assert_eq!(t.kind(7), None, "a subclass is not its base");
    }

    #[test]
    fn a_looping_base_chain_ends() {
        let mut t = Types::new();
        t.set(2, 0, LONG_SUBCLASS, 3);
        t.set(3, 0, LONG_SUBCLASS, 2);
        t.set(4, 0, LONG_SUBCLASS, 4); // its own base
        assert_eq!(t.kind(2), None);
        assert_eq!(t.kind(4), None);
        // A type whose metatype is unreadable is not a type.
        t.put(Types::at(5) + 8, 0xdead_0000);
        assert_eq!(t.kind(5), None);
    }
}
