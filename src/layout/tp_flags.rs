//! `tp_flags` bits that tell what a type is. They are the same in 2.7 and
//! every 3.x, so they live here once rather than in each reader.

/// `Py_TPFLAGS_HEAPTYPE`: a class made at run time, never a built-in.
pub const HEAPTYPE: u64 = 1 << 9;
/// `Py_TPFLAGS_HAVE_GC`: instances carry a GC header.
pub const HAVE_GC: u64 = 1 << 14;
/// 2.7's `Py_TPFLAGS_INT_SUBCLASS`.
pub const INT_SUBCLASS_2: u64 = 1 << 23;
/// `Py_TPFLAGS_LONG_SUBCLASS`.
pub const LONG_SUBCLASS: u64 = 1 << 24;
/// `Py_TPFLAGS_LIST_SUBCLASS`.
pub const LIST_SUBCLASS: u64 = 1 << 25;
/// `Py_TPFLAGS_TUPLE_SUBCLASS`.
pub const TUPLE_SUBCLASS: u64 = 1 << 26;
/// `Py_TPFLAGS_BYTES_SUBCLASS`: `bytes` (3.x), `str` (2.7).
pub const BYTES_SUBCLASS: u64 = 1 << 27;
/// `Py_TPFLAGS_UNICODE_SUBCLASS`: `str` (3.x), `unicode` (2.7).
pub const UNICODE_SUBCLASS: u64 = 1 << 28;
/// `Py_TPFLAGS_DICT_SUBCLASS`.
pub const DICT_SUBCLASS: u64 = 1 << 29;
/// `Py_TPFLAGS_TYPE_SUBCLASS`.
pub const TYPE_SUBCLASS: u64 = 1 << 31;
