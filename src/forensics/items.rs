//! The objects live containers and frames own references to, checked
//! directly. An object something still owns must look alive; a header that
//! says it was freed is a use after free whichever allocator took the block
//! back (a free list, pymalloc, the system allocator), so this needs no
//! allocator knowledge.

use rustc_hash::FxHashMap;

use super::Finding;
use super::pymalloc::Block;
use super::read_context::ReadContext;

/// What an object's header says when it cannot be alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadHeader {
    /// The refcount is 0 or negative (not an immortal marker).
    Refcount(i64),
    /// The refcount word holds an address in the process's writable memory:
    /// the link a free list or pymalloc writes into a freed block.
    LinkWord(u64),
    /// `ob_type` does not point to a type object.
    NotAType(u64),
    /// Its pymalloc block is free (on its pool's free chain, beyond
    /// `nextoffset`, or in an empty pool).
    FreeBlock(Block),
}

impl DeadHeader {
    /// In words, for a finding's message.
    pub(crate) fn describe(self) -> String {
        match self {
            DeadHeader::Refcount(rc) => format!("its refcount is {rc}"),
            DeadHeader::LinkWord(word) => format!(
                "its refcount word is the address {word:#x} (an allocator's free-block link)"
            ),
            DeadHeader::NotAType(ty) => format!("its ob_type {ty:#x} is not a type object"),
            DeadHeader::FreeBlock(block) => format!(
                "its block is free: {}, {}",
                block.describe(),
                block.free_reason()
            ),
        }
    }
}

impl DeadHeader {
    /// `f` with the value read as its evidence (the keys
    /// [`DeadHeader::of_finding`] reads back).
    pub(crate) fn record(self, f: Finding) -> Finding {
        match self {
            DeadHeader::Refcount(rc) => f.with("refcount", rc),
            DeadHeader::LinkWord(word) => f.with("first_word", word),
            DeadHeader::NotAType(ty) => f.with("type", ty),
            DeadHeader::FreeBlock(block) => f.with("allocator", block.to_json()),
        }
    }

    /// What a `freed_object_referenced` finding's evidence recorded.
    pub(crate) fn of_finding(f: &Finding) -> Option<DeadHeader> {
        let value = |key: &str| f.evidence.get(key).and_then(serde_json::Value::as_u64);
        if let Some(block) = f.evidence.get("allocator").and_then(Block::from_json)
            && block.is_free()
        {
            Some(DeadHeader::FreeBlock(block))
        } else if let Some(rc) = f
            .evidence
            .get("refcount")
            .and_then(serde_json::Value::as_i64)
        {
            Some(DeadHeader::Refcount(rc))
        } else if let Some(word) = value("first_word") {
            Some(DeadHeader::LinkWord(word))
        } else {
            value("type").map(DeadHeader::NotAType)
        }
    }
}

/// Judges object headers, remembering which addresses are types.
pub(crate) struct HeaderCheck {
    is_type: FxHashMap<u64, bool>,
    last_type: (u64, bool),
}

impl HeaderCheck {
    pub(crate) fn new() -> HeaderCheck {
        HeaderCheck {
            is_type: FxHashMap::default(),
            // 0 is never a type.
            last_type: (0, false),
        }
    }

    /// Why `obj`'s header cannot be a live object's, if it cannot; `None`
    /// when it looks alive or cannot be read (unread memory proves nothing).
    pub(crate) fn dead(&mut self, heap: &ReadContext, obj: u64) -> Option<DeadHeader> {
        let (word, ty) = heap.object_header(obj)?;
        if self.alive(heap, word, ty) {
            return None;
        }
        let header = self.judge(heap, word, ty);
        // A freed block's header nearly always says so (pymalloc's link
        // lands on the refcount word, a GC object's refcount stays 0); a
        // refcount word of 2^32 or more that is no link (a Py_INCREF on a
        // freed block shifts its link) is the other case. Asking pymalloc
        // only then keeps the lookup off the million live objects.
        match heap.pymalloc.and_then(|map| map.free_block(obj)) {
            Some(block) => Some(DeadHeader::FreeBlock(block)),
            None => header,
        }
    }

    /// Whether a header of refcount word `word` and type `ty` is a live
    /// object's beyond doubt: [`HeaderCheck::dead`] finds nothing wrong
    /// with it without asking the allocator.
    pub(crate) fn alive(&mut self, heap: &ReadContext, word: u64, ty: u64) -> bool {
        word >> 32 == 0 && self.judge(heap, word, ty).is_none()
    }

    /// Why a header of refcount word `word` and type `ty` cannot be a live
    /// object's.
    fn judge(&mut self, heap: &ReadContext, word: u64, ty: u64) -> Option<DeadHeader> {
        // No refcount reaches 2^32; an address does (user space starts
        // far above it on x86-64 and aarch64 Linux).
        if word >> 32 != 0 && word >> 47 == 0 && word.is_multiple_of(8) && self.writable(heap, word)
        {
            return Some(DeadHeader::LinkWord(word));
        }
        let rc = word as i64;
        if !heap.facts.is_immortal(rc) && rc <= 0 {
            return Some(DeadHeader::Refcount(rc));
        }
        if !self.is_type(heap, ty) {
            return Some(DeadHeader::NotAType(ty));
        }
        None
    }

    /// Whether `obj`'s `ob_type` is a type: the block was an object, even
    /// if freed since (a freed block keeps its stale type pointer).
    pub(crate) fn was_object(&mut self, heap: &ReadContext, obj: u64) -> bool {
        heap.object_header(obj)
            .is_some_and(|(_, ty)| self.is_type(heap, ty))
    }

    fn writable(&self, heap: &ReadContext, addr: u64) -> bool {
        let core = heap.memory.core();
        core.segment_index(addr)
            .is_some_and(|i| core.segments()[i].perms.write)
    }

    /// Whether `ty` is a type object: its own type is `type` or a metatype.
    pub(crate) fn is_type(&mut self, heap: &ReadContext, ty: u64) -> bool {
        // Neighbours in memory are often of one type: no hashing for them.
        if self.last_type.0 == ty {
            return self.last_type.1;
        }
        if let Some(&known) = self.is_type.get(&ty) {
            self.last_type = (ty, known);
            return known;
        }
        let known = crate::python::types::is_type_object(
            ty,
            |t| heap.objects.type_of(t).ok(),
            |t| heap.type_flags(t),
        );
        self.is_type.insert(ty, known);
        self.last_type = (ty, known);
        known
    }
}
