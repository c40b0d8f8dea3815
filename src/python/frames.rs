//! Walking a thread's Python frames: `PyFrameObject` chains up to 3.10,
//! `_PyInterpreterFrame` chains from 3.11.

use std::collections::HashSet;

use serde::Serialize;

use super::code::{CodeInfo, Position, line_for, position_311};
use super::objects::Objects;
use super::types::BuiltinType;
use crate::layout::MissingField;
use crate::layout::facts::{FrameModel, LineTable};
use crate::memory::{Memory, MemoryExt};
use crate::memory::{ReadError, ReadFailure};

/// Frames followed per thread, at most (deep recursion is shown in full below this).
pub const MAX_FRAMES: usize = 100_000;
/// Locals shown per frame, at most.
const MAX_LOCALS: u64 = 64;
/// Owner values from 3.12 on that mark shim/entry frames (C stack, interpreter).
const OWNER_SHIM_MIN: u8 = 3;
/// `FRAME_OWNED_BY_GENERATOR`.
const OWNER_GENERATOR: u8 = 1;
/// `CO_FAST_LOCAL`, `CO_FAST_CELL`, `CO_FAST_FREE` in `co_localspluskinds`.
const CO_FAST_LOCAL_CELL_FREE: u8 = 0x20 | 0x40 | 0x80;
/// `CO_FAST_CELL`, `CO_FAST_FREE`: slots that hold a cell.
const CO_FAST_CELL_FREE: u8 = 0x40 | 0x80;

/// One local variable or argument.
#[derive(Debug, Clone, Serialize)]
pub struct Local {
    /// Its name.
    pub name: String,
    /// A bounded repr of its value.
    pub repr: String,
    /// Whether it is a positional argument.
    pub argument: bool,
}

/// One Python frame.
#[derive(Debug, Clone, Serialize)]
pub struct PyFrame {
    /// `co_name`.
    pub function: String,
    /// `co_qualname` (3.11+).
    pub qualname: Option<String>,
    /// `co_filename`.
    pub file: String,
    /// The current line; null when the instruction has no line.
    pub line: Option<i64>,
    /// The last line of the current instruction's source (3.11+).
    pub end_line: Option<i64>,
    /// The instruction's first column, 0-based, in UTF-8 bytes (3.11+).
    pub column: Option<i64>,
    /// The column just past the instruction's source, on `end_line` (3.11+).
    pub end_column: Option<i64>,
    /// `co_firstlineno`.
    pub first_line: i64,
    /// Address of the code object.
    pub code: u64,
    /// Address of the frame (`PyFrameObject` or `_PyInterpreterFrame`).
    pub frame: u64,
    /// The frame was entered from C (3.11's `is_entry`, or it follows a 3.12+ shim frame).
    pub entry: bool,
    /// The frame chain did not reach it: it was found in the thread's data
    /// stack (3.11+) after the chain broke on missing memory.
    pub recovered: bool,
    /// Arguments and locals, with `--locals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals: Option<Vec<Local>>,
    /// Why the frame could not be read (its code object is unreadable or
    /// is not one); the walk went on through its link to the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl PyFrame {
    /// A frame at `frame` that could not be read, for `reason`.
    fn unreadable(frame: u64, code: u64, reason: String) -> PyFrame {
        PyFrame {
            function: String::new(),
            qualname: None,
            file: String::new(),
            line: None,
            end_line: None,
            column: None,
            end_column: None,
            first_line: 0,
            code,
            frame,
            entry: false,
            recovered: false,
            locals: None,
            unreadable: Some(reason),
        }
    }
}

/// The frames of one thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FrameWalk {
    /// Innermost first.
    pub frames: Vec<PyFrame>,
    /// Why the walk stopped early, if it did (a loop, a bad pointer, the cap).
    pub error: Option<String>,
    /// The read failure the walk stopped on, when it stopped on one.
    #[serde(skip)]
    pub error_read_failure: Option<ReadFailure>,
    /// Shim and incomplete frames that were skipped.
    pub skipped: usize,
    /// What the search of the data stack for frames the chain did not reach
    /// found (3.11+), when it found any or the chain broke.
    pub recovery: Option<String>,
}

/// Why a frame walk stopped early.
#[derive(Debug, Clone, thiserror::Error)]
enum WalkError {
    #[error("the frame chain loops back to {0:#x}")]
    Loop(u64),
    #[error("more than {MAX_FRAMES} frames; the rest are not shown")]
    TooManyFrames,
    #[error(
        "frame {0:#x} has a NULL code object: its memory reads as zeros, so the core \
         probably lacks it (gdb's gcore writes zeros for pages it cannot read)"
    )]
    NullCode(u64),
    /// A frame object whose code and link to its caller are both unreadable.
    #[error("frame {frame:#x}: {code}; its f_back: {back}")]
    CodeAndBackUnreadable {
        frame: u64,
        code: ReadError,
        back: ReadError,
    },
    /// 3.15+: every chain ends on the thread state's base frame.
    #[error(
        "the frame chain ends at {last:#x}, not at the thread's base frame {base:#x}: a \
         `previous` link was cut, and the frames beyond it are missing"
    )]
    EndedBeforeBase { last: u64, base: u64 },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    MissingField(#[from] MissingField),
}

impl WalkError {
    /// The read failure the walk broke on, if it broke on one. A NULL code
    /// object is a page gcore could not dump and wrote as zeros.
    fn read_failure(&self) -> Option<ReadFailure> {
        match self {
            WalkError::NullCode(_) => Some(ReadFailure::NotDumped),
            WalkError::Read(e) => Some(e.reason.clone()),
            WalkError::CodeAndBackUnreadable { code, back, .. } => {
                Some(more_telling(&code.reason, &back.reason).clone())
            }
            WalkError::Loop(_)
            | WalkError::TooManyFrames
            | WalkError::EndedBeforeBase { .. }
            | WalkError::MissingField(_) => None,
        }
    }
}

/// Of two failures, the one that better says what would let the read
/// succeed: memory the core lacks, then a cut core, then a missing or
/// different file, then anything else; the first of equals.
fn more_telling<'e>(first: &'e ReadFailure, second: &'e ReadFailure) -> &'e ReadFailure {
    let rank = |f: &ReadFailure| match f {
        ReadFailure::NotDumped => 0,
        ReadFailure::Truncated => 1,
        ReadFailure::FileMissing { .. } | ReadFailure::BuildIdMismatch { .. } => 2,
        _ => 3,
    };
    if rank(second) < rank(first) {
        second
    } else {
        first
    }
}

struct FrameCtx<'o, 'a, M: Memory> {
    objects: &'o Objects<'a, M>,
    with_locals: bool,
}

/// Walk the frames of the thread state at `tstate`.
pub fn walk<M: Memory>(objects: &Objects<'_, M>, tstate: u64, with_locals: bool) -> FrameWalk {
    let ctx = FrameCtx {
        objects,
        with_locals,
    };
    let mut walk = FrameWalk::default();
    let result = match objects.layout.facts.frames {
        FrameModel::FrameObject => ctx.walk_frame_objects(tstate, &mut walk),
        FrameModel::InterpreterFrame => ctx.walk_interpreter_frames(tstate, &mut walk),
    };
    if let Err(e) = result {
        walk.error_read_failure = e.read_failure();
        walk.error = Some(e.to_string());
    }
    let lost_memory = walk.error_read_failure == Some(ReadFailure::NotDumped);
    if objects.layout.facts.frames == FrameModel::InterpreterFrame {
        add_recovered_frames(objects, tstate, &mut walk, with_locals, lost_memory);
    }
    walk
}

/// Append the frames of the data stack that the chain did not reach. A
/// broken chain does not always say so (a zeroed `_PyCFrame` reads as an
/// empty stack in 3.11/3.12), so the data stack is always consulted.
fn add_recovered_frames<M: Memory>(
    objects: &Objects<'_, M>,
    tstate: u64,
    walk: &mut FrameWalk,
    with_locals: bool,
    lost_memory: bool,
) {
    let recovery = super::datastack::recover(objects, tstate, &walk.frames, with_locals);
    if recovery.frames.is_empty() && walk.error.is_none() {
        return;
    }
    walk.frames.extend(recovery.frames);
    walk.recovery = recovery.summary;
    // The break lost no frame the data stack held: the stack is shown whole
    // (but for a running generator's frame, which lives elsewhere), so the
    // break is told beside the recovery rather than as a cut walk.
    if recovery.complete
        && lost_memory
        && let Some(error) = walk.error.take()
    {
        walk.recovery = Some(format!(
            "the frame chain broke ({error}); {}",
            walk.recovery.take().unwrap_or_default()
        ));
    }
}

/// The frame at `frame` read on its own, as a suspended generator's or
/// coroutine's frame is (no thread's chain leads to it): a
/// `_PyInterpreterFrame` from 3.11, a `PyFrameObject` before.
pub fn frame_at<M: Memory>(
    objects: &Objects<'_, M>,
    frame: u64,
    with_locals: bool,
) -> Result<PyFrame, FrameError> {
    let ctx = FrameCtx {
        objects,
        with_locals,
    };
    let read = match objects.layout.facts.frames {
        FrameModel::FrameObject => ctx.frame_object(frame),
        FrameModel::InterpreterFrame => ctx.interpreter_frame(frame),
    };
    read.map_err(FrameError)
}

/// Why a frame read on its own ([`frame_at`]) could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct FrameError(WalkError);

/// The arguments and locals of the `_PyInterpreterFrame` at `frame`.
pub(super) fn interpreter_frame_locals<M: Memory>(
    objects: &Objects<'_, M>,
    frame: u64,
    code: u64,
) -> Vec<Local> {
    let ctx = FrameCtx {
        objects,
        with_locals: true,
    };
    ctx.interpreter_frame_locals(frame, code)
}

impl<M: Memory> FrameCtx<'_, '_, M> {
    fn mem(&self) -> &M {
        self.objects.memory
    }

    fn walk_frame_objects(&self, tstate: u64, walk: &mut FrameWalk) -> Result<(), WalkError> {
        let layout = self.objects.layout;
        let offsets = layout.offsets();
        let f_back = offsets.frame_object.f_back.require()?;
        let f_code = offsets.frame_object.f_code.require()?;
        let f_lasti = offsets.frame_object.f_lasti.require()?;
        let mut frame = self
            .mem()
            .read_ptr(tstate.wrapping_add(offsets.tstate.frame.require()?))?;
        let mut seen = HashSet::new();
        while frame != 0 {
            if !seen.insert(frame) {
                return Err(WalkError::Loop(frame));
            }
            if walk.frames.len() >= MAX_FRAMES {
                return Err(WalkError::TooManyFrames);
            }
            let code = self.mem().read_ptr(frame.wrapping_add(f_code))?;
            let lasti = i64::from(self.mem().read_i32(frame.wrapping_add(f_lasti))?);
            let info = match self.objects.code(code) {
                Ok(info) => info,
                Err(e) => {
                    // Shown as unreadable; the callers are still reachable.
                    let back = self
                        .mem()
                        .read_ptr(frame.wrapping_add(f_back))
                        .map_err(|back| WalkError::CodeAndBackUnreadable {
                            frame,
                            code: e.clone(),
                            back,
                        })?;
                    walk.frames
                        .push(PyFrame::unreadable(frame, code, e.to_string()));
                    frame = back;
                    continue;
                }
            };
            walk.frames
                .push(self.frame_object_from(info, code, frame, lasti));
            frame = self.mem().read_ptr(frame.wrapping_add(f_back))?;
        }
        Ok(())
    }

    fn walk_interpreter_frames(&self, tstate: u64, walk: &mut FrameWalk) -> Result<(), WalkError> {
        let layout = self.objects.layout;
        let offsets = layout.offsets();
        let mut frame = match offsets.tstate.current_frame.get() {
            Some(off) => self.mem().read_ptr(tstate.wrapping_add(off))?,
            None => {
                let cframe = self
                    .mem()
                    .read_ptr(tstate.wrapping_add(offsets.tstate.cframe.require()?))?;
                if cframe == 0 {
                    return Ok(());
                }
                self.mem()
                    .read_ptr(cframe.wrapping_add(offsets.cframe.current_frame.require()?))?
            }
        };
        let previous = offsets.interp_frame.previous.require()?;
        // Every field a frame needs, before the first frame is read.
        offsets.interp_frame.code.require()?;
        let owner_at = offsets.interp_frame.owner.require()?;
        offsets.interp_frame.instr_ptr.require()?;
        let is_entry_at = offsets.interp_frame.is_entry.get();
        offsets.code.co_code_adaptive.require()?;
        let first_traceable = offsets.code.co_firsttraceable.get();
        let shims = layout.facts.rules.frame_owner_shims;
        let base = match offsets.tstate.base_frame.get() {
            Some(off) => self.mem().read_ptr(tstate.wrapping_add(off))?,
            None => 0,
        };
        let mut last = 0;
        let mut seen = HashSet::new();
        while frame != 0 {
            if !seen.insert(frame) {
                return Err(WalkError::Loop(frame));
            }
            last = frame;
            if walk.frames.len() + walk.skipped >= MAX_FRAMES {
                return Err(WalkError::TooManyFrames);
            }
            let next = self.mem().read_ptr(frame.wrapping_add(previous))?;
            let owner = self.mem().read_u8(frame.wrapping_add(owner_at))?;
            if shims && owner >= OWNER_SHIM_MIN {
                // The Python frame just above a shim was called from C.
                mark_entry(walk);
                frame = next;
                continue;
            }
            let code = self.interpreter_frame_code(frame)?;
            let info = match self.objects.code(code) {
                Ok(info) => info,
                // 3.13's entry frames hold None instead of a code object.
                Err(_)
                    if self
                        .objects
                        .builtin_type_of(code)
                        .is_ok_and(|t| t == Some(BuiltinType::None)) =>
                {
                    mark_entry(walk);
                    frame = next;
                    continue;
                }
                Err(e) => {
                    // Shown as unreadable; `previous` was read above.
                    walk.frames
                        .push(PyFrame::unreadable(frame, code, e.to_string()));
                    frame = next;
                    continue;
                }
            };
            let unit = self.instruction_unit(frame, code)?;
            if let Some(ft) = first_traceable {
                let first = i64::from(self.mem().read_i32(code.wrapping_add(ft))?);
                if owner != OWNER_GENERATOR && unit < first {
                    // Still being set up: debuggers skip incomplete frames.
                    walk.skipped += 1;
                    frame = next;
                    continue;
                }
            }
            let is_entry = match is_entry_at {
                Some(off) => self.mem().read_u8(frame.wrapping_add(off))? != 0,
                None => false,
            };
            walk.frames
                .push(self.interpreter_frame_from(info, code, frame, unit, is_entry));
            frame = next;
        }
        if base != 0 && last != 0 && last != base {
            return Err(WalkError::EndedBeforeBase { last, base });
        }
        Ok(())
    }

    /// One `PyFrameObject` and its current line.
    fn frame_object(&self, frame: u64) -> Result<PyFrame, WalkError> {
        let offsets = self.objects.layout.offsets();
        let code = self
            .mem()
            .read_ptr(frame.wrapping_add(offsets.frame_object.f_code.require()?))?;
        let lasti = i64::from(
            self.mem()
                .read_i32(frame.wrapping_add(offsets.frame_object.f_lasti.require()?))?,
        );
        let info = self.objects.code(code)?;
        Ok(self.frame_object_from(info, code, frame, lasti))
    }

    /// The frame object at `frame`, whose code `info` is at `code` and
    /// whose last instruction is `lasti`.
    fn frame_object_from(&self, info: CodeInfo, code: u64, frame: u64, lasti: i64) -> PyFrame {
        let layout = self.objects.layout;
        // 3.10 counts f_lasti in code units, earlier versions in bytes.
        let lasti_scale = if layout.facts.line_table == LineTable::Linetable310 {
            2
        } else {
            1
        };
        let line = if lasti < 0 {
            Some(info.first_line)
        } else if layout.facts.line_table == LineTable::Lnotab {
            Some(super::code::lnotab(
                &info.line_table,
                info.first_line,
                lasti,
                layout.facts.rules.lnotab_signed_lines,
            ))
        } else {
            line_for(
                layout.facts.line_table,
                &info.line_table,
                info.first_line,
                lasti * lasti_scale,
            )
        };
        let position = Position {
            line,
            ..Position::default()
        };
        let locals = self
            .with_locals
            .then(|| self.frame_object_locals(frame, code));
        frame_from(info, code, frame, position, false, locals)
    }

    /// One `_PyInterpreterFrame` and its current position.
    fn interpreter_frame(&self, frame: u64) -> Result<PyFrame, WalkError> {
        let code = self.interpreter_frame_code(frame)?;
        let info = self.objects.code(code)?;
        let unit = self.instruction_unit(frame, code)?;
        Ok(self.interpreter_frame_from(info, code, frame, unit, false))
    }

    /// The code object of the `_PyInterpreterFrame` at `frame`; never NULL.
    fn interpreter_frame_code(&self, frame: u64) -> Result<u64, WalkError> {
        let layout = self.objects.layout;
        let mut code = self
            .mem()
            .read_ptr(frame.wrapping_add(layout.offsets().interp_frame.code.require()?))?;
        if layout.facts.rules.frames_tag_references {
            // 3.14 `_PyStackRef`: the low two bits are tags.
            code &= !3;
        }
        if code == 0 {
            return Err(WalkError::NullCode(frame));
        }
        Ok(code)
    }

    /// The code unit the `_PyInterpreterFrame` at `frame`, running `code`, is at.
    fn instruction_unit(&self, frame: u64, code: u64) -> Result<i64, WalkError> {
        let offsets = self.objects.layout.offsets();
        let instr = self
            .mem()
            .read_ptr(frame.wrapping_add(offsets.interp_frame.instr_ptr.require()?))?;
        let code_base = offsets.code.co_code_adaptive.require()?;
        Ok((instr.wrapping_sub(code.wrapping_add(code_base)) as i64) / 2)
    }

    /// The interpreter frame at `frame`, whose code `info` is at `code`, at
    /// code unit `unit`.
    fn interpreter_frame_from(
        &self,
        info: CodeInfo,
        code: u64,
        frame: u64,
        unit: i64,
        is_entry: bool,
    ) -> PyFrame {
        let position = position_311(&info.line_table, info.first_line, unit).unwrap_or_default();
        let locals = self
            .with_locals
            .then(|| self.interpreter_frame_locals(frame, code));
        frame_from(info, code, frame, position, is_entry, locals)
    }

    fn name_list(&self, tuple: u64) -> Vec<String> {
        match self.objects.tuple_items(tuple, MAX_LOCALS as usize) {
            Ok((items, _)) => items
                .iter()
                .map(|&n| {
                    self.objects
                        .string(n, 256)
                        .unwrap_or_else(|_| "<unreadable name>".into())
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn argcount(&self, code: u64) -> u64 {
        self.objects
            .layout
            .offsets()
            .code
            .co_argcount
            .get()
            .and_then(|off| self.mem().read_i32(code.wrapping_add(off)).ok())
            .map_or(0, |n| n.max(0) as u64)
    }

    fn frame_object_locals(&self, frame: u64, code: u64) -> Vec<Local> {
        let offsets = self.objects.layout.offsets();
        let (Some(plus), Some(varnames), Some(nlocals)) = (
            offsets.frame_object.f_localsplus.get(),
            offsets.code.co_varnames.get(),
            offsets.code.co_nlocals.get(),
        ) else {
            return Vec::new();
        };
        let tuple_names = |field: crate::layout::Field| -> Vec<String> {
            field
                .get()
                .and_then(|off| self.mem().read_ptr(code.wrapping_add(off)).ok())
                .map(|t| self.name_list(t))
                .unwrap_or_default()
        };
        // f_localsplus holds the locals, then the cells, then the free variables.
        let nlocals = self
            .mem()
            .read_i32(code.wrapping_add(nlocals))
            .map_or(0, |n| n.max(0) as usize);
        let mut names = self
            .mem()
            .read_ptr(code.wrapping_add(varnames))
            .map(|t| self.name_list(t))
            .unwrap_or_default();
        names.resize(nlocals.min(MAX_LOCALS as usize), String::new());
        names.extend(tuple_names(offsets.code.co_cellvars));
        names.extend(tuple_names(offsets.code.co_freevars));
        let args = self.argcount(code);
        names
            .iter()
            .enumerate()
            .take(MAX_LOCALS as usize)
            .filter_map(|(i, name)| {
                let value = self
                    .mem()
                    .read_ptr(frame.wrapping_add(plus + i as u64 * 8))
                    .ok()
                    .filter(|&v| v != 0)?;
                if i >= nlocals {
                    // Past the locals come the cells and free variables.
                    self.objects.learn_cell(value);
                }
                Some(Local {
                    name: if name.is_empty() {
                        format!("local{i}")
                    } else {
                        name.clone()
                    },
                    repr: self.objects.repr(value),
                    argument: (i as u64) < args,
                })
            })
            .collect()
    }

    fn interpreter_frame_locals(&self, frame: u64, code: u64) -> Vec<Local> {
        let layout = self.objects.layout;
        let offsets = layout.offsets();
        let tagged = layout.facts.rules.frames_tag_references;
        let (Some(plus), Some(names_at), Some(kinds_at)) = (
            offsets.interp_frame.localsplus.get(),
            offsets.code.co_localsplusnames.get(),
            offsets.code.co_localspluskinds.get(),
        ) else {
            return Vec::new();
        };
        let names = self
            .mem()
            .read_ptr(code.wrapping_add(names_at))
            .map(|t| self.name_list(t))
            .unwrap_or_default();
        let kinds = self
            .mem()
            .read_ptr(code.wrapping_add(kinds_at))
            .and_then(|b| self.objects.bytes(b, MAX_LOCALS as usize))
            .unwrap_or_default();
        let args = self.argcount(code);
        (0..names.len().min(kinds.len()))
            .filter(|&i| kinds[i] & CO_FAST_LOCAL_CELL_FREE != 0)
            .filter_map(|i| {
                let raw = self
                    .mem()
                    .read_u64(frame.wrapping_add(plus + i as u64 * 8))
                    .ok()?;
                let repr = if tagged && raw & 3 == 3 {
                    // A tagged small int.
                    ((raw as i64) >> 2).to_string()
                } else {
                    let value = if tagged { raw & !3 } else { raw };
                    if value == 0 {
                        return None;
                    }
                    if kinds[i] & CO_FAST_CELL_FREE != 0 {
                        self.objects.learn_cell(value);
                    }
                    self.objects.repr(value)
                };
                Some(Local {
                    name: names[i].clone(),
                    repr,
                    argument: (i as u64) < args,
                })
            })
            .collect()
    }
}

/// Count a skipped shim frame and mark the frame above it as entered from C.
fn mark_entry(walk: &mut FrameWalk) {
    walk.skipped += 1;
    if let Some(last) = walk.frames.last_mut() {
        last.entry = true;
    }
}

fn frame_from(
    info: CodeInfo,
    code: u64,
    frame: u64,
    position: Position,
    entry: bool,
    locals: Option<Vec<Local>>,
) -> PyFrame {
    PyFrame {
        function: info.name,
        qualname: info.qualname,
        file: info.filename,
        line: position.line,
        end_line: position.end_line,
        column: position.column,
        end_column: position.end_column,
        first_line: info.first_line,
        code,
        frame,
        entry,
        recovered: false,
        locals,
        unreadable: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reason: ReadFailure) -> ReadError {
        ReadError::new(0x7f00_0000_1000, 8, reason)
    }

    #[test]
    fn memory_the_core_lacks_is_told_by_the_failure_not_by_its_words() {
        // A frame gcore wrote as zeros, and a page not dumped: memory the core lacks.
        assert_eq!(
            WalkError::NullCode(0x1000).read_failure(),
            Some(ReadFailure::NotDumped)
        );
        assert_eq!(
            WalkError::Read(read(ReadFailure::NotDumped)).read_failure(),
            Some(ReadFailure::NotDumped)
        );
        // A missing file whose path happens to hold the words is no such gap.
        let missing = ReadFailure::FileMissing {
            path: "/srv/not dumped/libpython.so".into(),
        };
        assert_eq!(
            WalkError::Read(read(missing.clone())).read_failure(),
            Some(missing.clone())
        );
        // Of a code object and a link both unreadable, the gap wins.
        let both = WalkError::CodeAndBackUnreadable {
            frame: 0x1000,
            code: read(missing),
            back: read(ReadFailure::NotDumped),
        };
        assert_eq!(both.read_failure(), Some(ReadFailure::NotDumped));
        assert_eq!(WalkError::Loop(0x1000).read_failure(), None);
    }
}
