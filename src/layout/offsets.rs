//! Typed offsets: each field of [`spec`](super::spec) by name in the code
//! (`offsets.object.ob_refcnt`), looked up once per layout.

use crate::memory::{ReadError, ReadFailure};

/// A field's place in its structure, or its absence from this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    offset: Option<u64>,
    size: Option<u64>,
    /// Bitfields: (bit offset from the struct's start, width).
    bits: Option<(u64, u64)>,
    /// `Struct.field`, for messages.
    name: &'static str,
}

/// A structure's `sizeof`, or its absence from this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructSize {
    size: Option<u64>,
    name: &'static str,
}

/// The layout lacks a field or a structure the reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the layout has no {0}")]
pub struct MissingField(pub &'static str);

impl Field {
    /// From the layout's entry for `name` (`Struct.field`).
    pub fn new(field: Option<&super::FieldLayout>, name: &'static str) -> Field {
        Field {
            offset: field.map(|f| f.offset),
            size: field.map(|f| f.size),
            bits: field.and_then(|f| Some((f.bit_offset?, f.bit_size?))),
            name,
        }
    }

    /// The offset, when this version has the field.
    pub fn get(self) -> Option<u64> {
        self.offset
    }

    /// The offset, or an error naming the field.
    pub fn require(self) -> Result<u64, MissingField> {
        self.offset.ok_or(MissingField(self.name))
    }

    /// The field's size in bytes.
    pub fn size(self) -> Option<u64> {
        self.size
    }

    /// Bitfields: (bit offset from the struct's start, width in bits).
    pub fn bits(self) -> Option<(u64, u64)> {
        self.bits
    }

    /// Whether this version has the field.
    pub fn is_present(self) -> bool {
        self.offset.is_some()
    }

    /// `Struct.field`.
    pub fn name(self) -> &'static str {
        self.name
    }
}

impl StructSize {
    /// From the layout's size for `name`.
    pub fn new(size: Option<u64>, name: &'static str) -> StructSize {
        StructSize { size, name }
    }

    /// `sizeof`, when this version has the structure.
    pub fn get(self) -> Option<u64> {
        self.size
    }

    /// `sizeof`, or an error naming the structure.
    pub fn require(self) -> Result<u64, MissingField> {
        self.size.ok_or(MissingField(self.name))
    }
}

/// Inside readers that fail with a [`ReadError`], a missing field is its
/// own failure, [`ReadFailure::MissingField`], not a read at some address.
impl From<MissingField> for ReadError {
    fn from(missing: MissingField) -> ReadError {
        ReadError::new(0, 0, ReadFailure::MissingField(missing.0))
    }
}

/// The typed offsets of a layout, made once; equal whatever it holds, as it
/// only caches what the layout says. A clone starts empty: the clone of a
/// layout may be changed before use.
#[derive(Debug, Default)]
pub struct OffsetsCache(std::sync::OnceLock<super::Offsets>);

impl Clone for OffsetsCache {
    fn clone(&self) -> OffsetsCache {
        OffsetsCache::default()
    }
}

impl OffsetsCache {
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> super::Offsets) -> &super::Offsets {
        self.0.get_or_init(make)
    }
}

impl PartialEq for OffsetsCache {
    fn eq(&self, _: &OffsetsCache) -> bool {
        true
    }
}

impl Eq for OffsetsCache {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_its_own_failure_not_a_read_at_address_zero() {
        let field = Field::new(None, "PyFrameObject.f_back");
        let error = ReadError::from(field.require().unwrap_err());
        assert_eq!(
            error.reason,
            ReadFailure::MissingField("PyFrameObject.f_back")
        );
        assert_eq!(error.to_string(), "the layout has no PyFrameObject.f_back");
    }
}
