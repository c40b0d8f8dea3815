//! Recovering a 3.11+ thread's outer Python frames from its data stack when
//! the frame chain breaks.
//!
//! From 3.11 the chain of `_PyInterpreterFrame`s passes through entry frames
//! that live on the C stack. A core that lacks C-stack memory (gdb's gcore
//! leaves it zero behind glibc 2.41+ guard regions) cuts the chain there.
//! The frames themselves live in the thread's data-stack chunks
//! (`tstate->datastack_chunk`, a list of `_PyStackChunk` on the heap), laid
//! end to end in the order they were pushed, each `co_framesize` words long.
//! Walking the chunks from their base finds them again.

use std::collections::HashSet;

use super::code::position_311;
use super::frames::{PyFrame, interpreter_frame_locals};
use super::objects::Objects;
use crate::layout::MissingField;
use crate::memory::ReadError;
use crate::memory::{Memory, MemoryExt};

/// Chunks followed per thread, at most.
const MAX_CHUNKS: usize = 4096;
/// Largest used area of one chunk that is walked (CPython's chunks are 16 KiB,
/// doubled only for a frame that does not fit).
const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Words looked at, over all chunks, while searching for the next frame after
/// one that does not validate.
const MAX_RESYNC_WORDS: u64 = 1 << 20;
/// Frames collected per thread, at most.
const MAX_FRAMES: usize = super::frames::MAX_FRAMES;
/// Largest plausible `co_framesize`, in words.
const MAX_FRAME_WORDS: u64 = 1 << 20;
/// Owner values from 3.12 on that mark shim/entry frames.
const OWNER_SHIM_MIN: u8 = 3;
/// `FRAME_OWNED_BY_GENERATOR`.
const OWNER_GENERATOR: u8 = 1;

/// What a recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The frames the chain did not reach, innermost first, marked `recovered`.
    pub frames: Vec<PyFrame>,
    /// What was done, or why nothing could be: for a diagnostic.
    pub summary: Option<String>,
    /// Frames were recovered and the data stack was read without trouble:
    /// every frame that lived in it is shown.
    pub complete: bool,
}

/// The offsets the recovery reads.
struct Offsets {
    chunk: u64,
    top: u64,
    chunk_previous: u64,
    chunk_size: u64,
    chunk_top: u64,
    chunk_data: u64,
    previous: u64,
    code: u64,
    owner: u64,
    instr: u64,
    is_entry: Option<u64>,
    code_adaptive: u64,
    first_traceable: Option<u64>,
    frame_words: FrameWords,
}

/// How a code object's frame size is known.
enum FrameWords {
    /// `co_framesize` (3.11+).
    Field(u64),
    /// `co_nlocalsplus + co_stacksize + FRAME_SPECIALS_SIZE`.
    Sum {
        nlocalsplus: u64,
        stacksize: u64,
        specials: u64,
    },
}

/// The part of a chunk that holds frames: `[start, end)`.
struct UsedArea {
    start: u64,
    end: u64,
}

/// One frame found in a chunk.
struct ChunkFrame {
    address: u64,
    code: u64,
    owner: u8,
    previous: u64,
}

/// Find the frames of the thread state at `tstate` that lie in its data stack
/// below (pushed before) the oldest of `shown` that does, and that `shown`
/// lacks. `shown` is the walk's frames, innermost first.
pub fn recover<M: Memory>(
    objects: &Objects<'_, M>,
    tstate: u64,
    shown: &[PyFrame],
    with_locals: bool,
) -> Recovery {
    let offsets = match Offsets::new(objects) {
        Ok(o) => o,
        Err(missing) => {
            return Recovery {
                frames: Vec::new(),
                complete: false,
                summary: Some(format!(
                    "the outer frames could not be looked for in the thread's data stack: the \
                     layout has no {} (DWARF or a built-in table gives it)",
                    missing.0
                )),
            };
        }
    };
    let walker = ChunkWalker { objects, offsets };
    let (found, trouble) = walker.frames(tstate, shown);
    let reached: HashSet<u64> = shown.iter().map(|f| f.frame).collect();
    // Frames pushed after the innermost shown one are still being set up;
    // frames after the oldest shown one were reached through the chain.
    let cut = found
        .iter()
        .position(|f| reached.contains(&f.address))
        .unwrap_or(found.len());
    let chunk_addresses: HashSet<u64> = found.iter().map(|f| f.address).collect();
    let mut frames = Vec::new();
    for f in found[..cut].iter().rev() {
        if let Some(frame) = walker.decode(f, &chunk_addresses, with_locals) {
            frames.push(frame);
        }
    }
    let complete = !frames.is_empty() && trouble.is_none();
    let summary = match (frames.len(), trouble) {
        (0, None) => None,
        (0, Some(t)) => Some(format!(
            "no outer frames were recovered from the thread's data stack: {t}"
        )),
        (n, trouble) => Some(format!(
            "{n} outer frame{} recovered from the thread's data stack (marked recovered; frames \
             that lived elsewhere, such as a generator's, cannot be recovered){}",
            if n == 1 { " was" } else { "s were" },
            trouble.map(|t| format!("; {t}")).unwrap_or_default()
        )),
    };
    Recovery {
        frames,
        summary,
        complete,
    }
}

impl Offsets {
    fn new<M: Memory>(objects: &Objects<'_, M>) -> Result<Offsets, MissingField> {
        let offsets = objects.layout.offsets();
        let need = |field: crate::layout::Field| field.require();
        let frame_words = match offsets.code.co_framesize.get() {
            Some(off) => FrameWords::Field(off),
            None => FrameWords::Sum {
                nlocalsplus: need(offsets.code.co_nlocalsplus)?,
                stacksize: need(offsets.code.co_stacksize)?,
                // FRAME_SPECIALS_SIZE: the frame header in words, rounded down.
                specials: offsets
                    .interp_frame
                    .sizeof
                    .get()
                    .ok_or(MissingField("sizeof _PyInterpreterFrame"))?
                    .saturating_sub(1)
                    / 8,
            },
        };
        Ok(Offsets {
            chunk: need(offsets.tstate.datastack_chunk)?,
            top: need(offsets.tstate.datastack_top)?,
            chunk_previous: need(offsets.stack_chunk.previous)?,
            chunk_size: need(offsets.stack_chunk.size)?,
            chunk_top: need(offsets.stack_chunk.top)?,
            chunk_data: need(offsets.stack_chunk.data)?,
            previous: need(offsets.interp_frame.previous)?,
            code: need(offsets.interp_frame.code)?,
            owner: need(offsets.interp_frame.owner)?,
            instr: need(offsets.interp_frame.instr_ptr)?,
            is_entry: offsets.interp_frame.is_entry.get(),
            code_adaptive: need(offsets.code.co_code_adaptive)?,
            first_traceable: offsets.code.co_firsttraceable.get(),
            frame_words,
        })
    }
}

/// A word of the chunk list that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{what} is unreadable: {source}")]
struct Unreadable {
    /// `tstate.datastack_chunk` and the like.
    what: &'static str,
    #[source]
    source: ReadError,
}

struct ChunkWalker<'o, 'a, M: Memory> {
    objects: &'o Objects<'a, M>,
    offsets: Offsets,
}

impl<M: Memory> ChunkWalker<'_, '_, M> {
    fn mem(&self) -> &M {
        self.objects.memory
    }

    /// Every frame in the data stack, oldest (first pushed) first, and what
    /// stopped the search early if anything did.
    fn frames(&self, tstate: u64, shown: &[PyFrame]) -> (Vec<ChunkFrame>, Option<String>) {
        let (chunks, mut trouble) = self.chunks(tstate);
        // The code type, by address: from a frame the chain reached, else the
        // first candidate that reads as a code object.
        let mut code_type = shown.iter().find_map(|f| self.objects.type_of(f.code).ok());
        let mut frames = Vec::new();
        let mut resync_budget = MAX_RESYNC_WORDS;
        let mut first_junk = None;
        for area in chunks.iter().rev() {
            let (mut at, end) = (area.start, area.end);
            while at < end {
                if frames.len() >= MAX_FRAMES {
                    trouble.get_or_insert(format!("more than {MAX_FRAMES} frames"));
                    return (frames, trouble);
                }
                match self.frame_at(at, end, &mut code_type) {
                    Some((frame, words)) => {
                        frames.push(frame);
                        at = at.saturating_add(words * 8);
                    }
                    None => {
                        // Not a frame: look for the next one word by word.
                        if resync_budget == 0 {
                            trouble = Some(format!(
                                "the search gave up after {MAX_RESYNC_WORDS} words that are no \
                                 frame, the first at {:#x}",
                                first_junk.unwrap_or(at)
                            ));
                            return (frames, trouble);
                        }
                        resync_budget -= 1;
                        first_junk.get_or_insert(at);
                        trouble.get_or_insert(format!(
                            "the data stack holds words at {at:#x} that are no frame"
                        ));
                        at = at.saturating_add(8);
                    }
                }
            }
        }
        (frames, trouble)
    }

    /// The used area of every chunk, newest chunk first, and what stopped
    /// the walk of the chunk list early if anything did.
    fn chunks(&self, tstate: u64) -> (Vec<UsedArea>, Option<String>) {
        match self.chunk_list(tstate) {
            Ok(found) => found,
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    }

    fn chunk_list(&self, tstate: u64) -> Result<(Vec<UsedArea>, Option<String>), Unreadable> {
        let o = &self.offsets;
        let read = |addr: u64, what: &'static str| {
            self.mem()
                .read_u64(addr)
                .map_err(|source| Unreadable { what, source })
        };
        let mut chunk = read(tstate.wrapping_add(o.chunk), "tstate.datastack_chunk")?;
        let mut end = read(tstate.wrapping_add(o.top), "tstate.datastack_top")?;
        let mut current = true;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut trouble = None;
        while chunk != 0 {
            if !seen.insert(chunk) || out.len() >= MAX_CHUNKS {
                trouble = Some(format!(
                    "the chunk list loops or is longer than {MAX_CHUNKS} at {chunk:#x}"
                ));
                break;
            }
            let header = (|| {
                Ok::<_, Unreadable>((
                    read(chunk.wrapping_add(o.chunk_previous), "a chunk's previous")?,
                    read(chunk.wrapping_add(o.chunk_size), "a chunk's size")?,
                    read(chunk.wrapping_add(o.chunk_top), "a chunk's top")?,
                ))
            })();
            let (previous, size, top) = match header {
                Ok(h) => h,
                Err(e) => {
                    trouble = Some(format!("chunk {chunk:#x}: {e}"));
                    break;
                }
            };
            let data = chunk.wrapping_add(o.chunk_data);
            if !current {
                // An older chunk's `top` counts the words in use.
                end = data.wrapping_add(top.wrapping_mul(8));
            }
            // The root chunk's first word is kept free (push_chunk skips it).
            let start = if previous == 0 {
                data.wrapping_add(8)
            } else {
                data
            };
            let limit = chunk.checked_add(size);
            if size > MAX_CHUNK_BYTES
                || end < data
                || limit.is_none_or(|limit| end > limit)
                || end - data > MAX_CHUNK_BYTES
            {
                trouble = Some(format!(
                    "chunk {chunk:#x} has an implausible size {size} or top {end:#x}"
                ));
                break;
            }
            out.push(UsedArea {
                start,
                end: end.max(start),
            });
            chunk = previous;
            current = false;
        }
        Ok((out, trouble))
    }

    /// The frame at `at` if it is one: its code object reads as one and its
    /// size keeps it inside the chunk. Returns it and its size in words.
    fn frame_at(
        &self,
        at: u64,
        end: u64,
        code_type: &mut Option<u64>,
    ) -> Option<(ChunkFrame, u64)> {
        let o = &self.offsets;
        let code = self.code_pointer(at)?;
        let ty = self.objects.type_of(code).ok()?;
        match *code_type {
            Some(t) if t != ty => return None,
            Some(_) => {}
            None => {
                self.objects.code(code).ok()?;
                *code_type = Some(ty);
            }
        }
        let words = self.frame_words(code)?;
        if words == 0 || words > MAX_FRAME_WORDS || at.checked_add(words * 8)? > end {
            return None;
        }
        let owner = self.mem().read_u8(at.wrapping_add(o.owner)).ok()?;
        let previous = self.mem().read_ptr(at.wrapping_add(o.previous)).ok()?;
        Some((
            ChunkFrame {
                address: at,
                code,
                owner,
                previous,
            },
            words,
        ))
    }

    fn code_pointer(&self, frame: u64) -> Option<u64> {
        let raw = self
            .mem()
            .read_ptr(frame.wrapping_add(self.offsets.code))
            .ok()?;
        // 3.14 `_PyStackRef`: the low two bits are tags.
        let code = if self.tagged() { raw & !3 } else { raw };
        (code != 0 && code.is_multiple_of(8)).then_some(code)
    }

    fn tagged(&self) -> bool {
        self.objects.rules().frames_tag_references
    }

    fn frame_words(&self, code: u64) -> Option<u64> {
        let read = |off: u64| {
            self.mem()
                .read_i32(code.wrapping_add(off))
                .ok()
                .and_then(|v| u64::try_from(v).ok())
        };
        match self.offsets.frame_words {
            FrameWords::Field(off) => read(off),
            FrameWords::Sum {
                nlocalsplus,
                stacksize,
                specials,
            } => Some(read(nlocalsplus)? + read(stacksize)? + specials),
        }
    }

    /// The frame as the walk would show it, or `None` for frames the walk
    /// skips (shims, frames still being set up, unreadable code).
    fn decode(
        &self,
        f: &ChunkFrame,
        chunk_frames: &HashSet<u64>,
        with_locals: bool,
    ) -> Option<PyFrame> {
        let o = &self.offsets;
        if self.objects.rules().frame_owner_shims && f.owner >= OWNER_SHIM_MIN {
            return None;
        }
        let info = self.objects.code(f.code).ok()?;
        let instr = self.mem().read_ptr(f.address.wrapping_add(o.instr)).ok()?;
        let unit = (instr.wrapping_sub(f.code.wrapping_add(o.code_adaptive)) as i64) / 2;
        if let Some(ft) = o.first_traceable {
            let first = i64::from(self.mem().read_i32(f.code.wrapping_add(ft)).ok()?);
            if f.owner != OWNER_GENERATOR && unit < first {
                return None;
            }
        }
        let position = position_311(&info.line_table, info.first_line, unit).unwrap_or_default();
        let entry = match o.is_entry {
            Some(off) => self
                .mem()
                .read_u8(f.address.wrapping_add(off))
                .is_ok_and(|b| b != 0),
            // 3.12+: called from C when `previous` is an entry shim, which
            // lives outside the data stack.
            None => {
                f.previous != 0 && !chunk_frames.contains(&f.previous) && self.is_shim(f.previous)
            }
        };
        let locals = with_locals.then(|| interpreter_frame_locals(self.objects, f.address, f.code));
        Some(PyFrame {
            function: info.name,
            qualname: info.qualname,
            file: info.filename,
            line: position.line,
            end_line: position.end_line,
            column: position.column,
            end_column: position.end_column,
            first_line: info.first_line,
            code: f.code,
            frame: f.address,
            entry,
            recovered: true,
            locals,
            unreadable: None,
        })
    }

    /// Whether the frame at `frame` (outside the data stack) is an entry shim:
    /// its owner says so, or its memory is missing (zeros or unreadable),
    /// which in these cores is the C stack's fate.
    fn is_shim(&self, frame: u64) -> bool {
        let o = &self.offsets;
        match self.mem().read_u8(frame.wrapping_add(o.owner)) {
            Ok(owner) if owner >= OWNER_SHIM_MIN => true,
            Ok(_) => self
                .mem()
                .read_ptr(frame.wrapping_add(o.code))
                .map_or(true, |c| c == 0),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::layout::{Layout, tables};
    use crate::memory::ReadError;

    /// Memory that reads as zeros except for the words set.
    #[derive(Default)]
    struct Words(HashMap<u64, u64>);

    impl Memory for Words {
        fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            for (i, byte) in buf.iter_mut().enumerate() {
                let at = addr.wrapping_add(i as u64);
                let word = self.0.get(&(at & !7)).copied().unwrap_or(0);
                *byte = word.to_le_bytes()[(at & 7) as usize];
            }
            Ok(())
        }
    }

    const TSTATE: u64 = 0x10_0000;
    const CHUNK: u64 = 0x20_0000;

    fn recover_with(set: impl FnOnce(&mut Words, &Layout)) -> Recovery {
        let layout = tables::builtin(3, 13).unwrap().layout_for("3.13.0");
        let mut memory = Words::default();
        set(&mut memory, &layout);
        let objects = Objects::new(&memory, &layout, 4);
        recover(&objects, TSTATE, &[], false)
    }

    fn put(memory: &mut Words, base: u64, field: crate::layout::Field, value: u64) {
        memory.0.insert(base + field.get().unwrap(), value);
    }

    #[test]
    fn a_chunk_list_that_loops_ends_with_a_reason() {
        let r = recover_with(|m, l| {
            put(m, TSTATE, l.offsets().tstate.datastack_chunk, CHUNK);
            put(m, TSTATE, l.offsets().tstate.datastack_top, CHUNK + 64);
            put(m, CHUNK, l.offsets().stack_chunk.previous, CHUNK);
            put(m, CHUNK, l.offsets().stack_chunk.size, 16384);
        });
        assert!(r.frames.is_empty());
        assert!(r.summary.unwrap().contains("loops"));
    }

    #[test]
    fn implausible_chunk_sizes_are_refused() {
        for (size, top) in [
            (u64::MAX, CHUNK + 64),
            (16384, CHUNK + 16384 + 8),
            (16384, 8),
        ] {
            let r = recover_with(|m, l| {
                put(m, TSTATE, l.offsets().tstate.datastack_chunk, CHUNK);
                put(m, TSTATE, l.offsets().tstate.datastack_top, top);
                put(m, CHUNK, l.offsets().stack_chunk.size, size);
            });
            assert!(r.frames.is_empty());
            assert!(
                r.summary.unwrap().contains("implausible"),
                "{size} {top:#x}"
            );
        }
    }

    #[test]
    fn a_chunk_of_words_that_are_no_frames_is_searched_within_a_bound() {
        let size = MAX_CHUNK_BYTES;
        let r = recover_with(|m, l| {
            put(m, TSTATE, l.offsets().tstate.datastack_chunk, CHUNK);
            put(m, TSTATE, l.offsets().tstate.datastack_top, CHUNK + size);
            put(m, CHUNK, l.offsets().stack_chunk.size, size);
        });
        assert!(r.frames.is_empty());
        assert!(r.summary.unwrap().contains("gave up"));
    }
}
