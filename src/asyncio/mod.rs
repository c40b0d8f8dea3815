//! asyncio tasks: every C `asyncio.Task` among the GC-tracked objects (the
//! registries differ in each version, the GC lists hold every live task in
//! all of them), with its state, name, coroutine chain, the future it waits
//! for and the tasks awaiting it, grouped by event loop.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::forensics;
use crate::layout::MissingField;
use crate::layout::asyncio_task::{self, Flag, TaskLayout};
use crate::layout::facts::AsyncioTasks;
use crate::layout::facts::FrameModel;
use crate::memory::{Memory, MemoryExt, ReadError};
use crate::process::Process;
use crate::python::frames::{FrameError, PyFrame, frame_at};
use crate::python::objects::Objects;
use crate::python::types::BuiltinType;
use crate::python::{PythonState, threads::unicode_width};

/// Coroutines followed down one task's await chain, at most.
const MAX_CHAIN: usize = 256;
/// Types followed up a task type's bases, at most.
const MAX_BASES: usize = 64;
/// Children of a gathering future read, at most.
const MAX_CHILDREN: usize = 4096;
/// Characters of a task name shown, at most.
const MAX_NAME: usize = 256;

/// Every asyncio task of the core.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tasks {
    /// Where the task structure's layout came from.
    pub layout_source: Option<String>,
    /// Event loops, each with its tasks.
    pub loops: Vec<EventLoop>,
    /// Why the list may lack tasks or facts about them, and what would
    /// let pymortem read them. Empty when every task was read.
    pub incomplete: Vec<String>,
}

/// One event loop and its tasks.
#[derive(Debug, Clone, Serialize)]
pub struct EventLoop {
    /// Address of the loop object.
    pub address: u64,
    /// Its type.
    pub type_name: String,
    /// Its tasks, by address.
    pub tasks: Vec<Task>,
}

/// A task's `fut_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not done.
    Pending,
    /// Cancelled.
    Cancelled,
    /// Done, with a result or an exception.
    Finished,
    /// A value that is none of these.
    Invalid,
}

impl TaskState {
    fn from_raw(raw: i32) -> TaskState {
        match raw {
            0 => TaskState::Pending,
            1 => TaskState::Cancelled,
            2 => TaskState::Finished,
            _ => TaskState::Invalid,
        }
    }

    /// The name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Cancelled => "cancelled",
            TaskState::Finished => "finished",
            TaskState::Invalid => "invalid",
        }
    }
}

/// One task.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Its address.
    pub address: u64,
    /// Its type (`_asyncio.Task` or a subclass).
    pub type_name: String,
    /// Its name.
    pub name: Option<String>,
    /// Its state; null when unreadable.
    pub state: Option<TaskState>,
    /// A cancellation was asked for and is not delivered yet.
    pub cancel_requested: bool,
    /// The LWP of the thread whose stack runs its coroutine, when it runs.
    pub running_on: Option<i32>,
    /// Its coroutine and the coroutines it awaits, innermost first.
    pub coroutine: Vec<PyFrame>,
    /// Why the chain stops early, when it does.
    pub coroutine_error: Option<String>,
    /// The future it waits for (`fut_waiter`).
    pub awaits: Option<Awaited>,
    /// The tasks that wait for it, by address.
    pub awaited_by: Vec<u64>,
    /// Why the task could not be read, when it could not.
    pub unreadable: Option<String>,
}

/// What a task waits for.
#[derive(Debug, Clone, Serialize)]
pub struct Awaited {
    /// The future's address.
    pub address: u64,
    /// Its type (`_asyncio.Task`, `_asyncio.Future`, `_GatheringFuture`, …).
    pub type_name: String,
    /// The tasks it stands for: itself when it is a task, a gather's children.
    pub tasks: Vec<u64>,
}

/// Every task of the core's main interpreter heap (every GC list walked).
pub fn tasks(process: &Process, state: &PythonState) -> Tasks {
    let mut out = Tasks::default();
    let layout = &state.layout.layout;
    let Some(version) = process.python().map(|p| p.version) else {
        return out;
    };
    match layout.facts.rules.asyncio_tasks {
        // Python 2 has no asyncio: nothing is missing.
        AsyncioTasks::NoAsyncio => return out,
        AsyncioTasks::Unsupported => {
            out.incomplete.push(format!(
                "asyncio tasks are read from CPython 3.8 (tasks have names from 3.8); this is {version}"
            ));
            return out;
        }
        AsyncioTasks::Readable => {}
    }
    let Some((task_layout, source)) = asyncio_task::find(
        process.modules().modules(),
        process.python_module(),
        version,
    ) else {
        out.incomplete.push(format!(
            "no layout of the asyncio task structure for {version}: give pymortem the debug \
             file of the _asyncio module (--debug-dir)"
        ));
        return out;
    };
    out.layout_source = Some(source.to_string());
    let objects = Objects::new(process.memory(), layout, unicode_width(process))
        .with_anchors(&state.type_anchors);
    let mut task_types = HashMap::new();
    let found = forensics::tracked_objects(process, state, &mut |ty| {
        *task_types
            .entry(ty)
            .or_insert_with(|| is_task_type(&objects, ty))
    });
    if let Some(unchecked) = found.unchecked {
        out.incomplete.push(format!(
            "tasks in GC lists that could not be walked are missing: {}; {}",
            unchecked.reason, unchecked.remedy
        ));
    }
    let running: HashMap<u64, Option<i32>> = state
        .threads
        .iter()
        .flat_map(|t| t.stack.frames.iter().map(move |f| (f.frame, t.lwp)))
        .collect();
    let reader = TaskReader {
        objects: &objects,
        layout: &task_layout,
        running: &running,
    };
    let mut by_loop: BTreeMap<u64, Vec<Task>> = BTreeMap::new();
    for &address in &found.objects {
        let (loop_address, task) = reader.task(address);
        by_loop.entry(loop_address).or_default().push(task);
    }
    link_awaiters(&mut by_loop);
    out.loops = by_loop
        .into_iter()
        .map(|(address, mut tasks)| {
            tasks.sort_by_key(|t| t.address);
            EventLoop {
                address,
                type_name: type_name(&objects, address),
                tasks,
            }
        })
        .collect();
    out
}

/// Fill each task's `awaited_by` from the others' `awaits`.
fn link_awaiters(by_loop: &mut BTreeMap<u64, Vec<Task>>) {
    let mut awaiters: HashMap<u64, Vec<u64>> = HashMap::new();
    for task in by_loop.values().flatten() {
        for &awaited in task.awaits.iter().flat_map(|a| &a.tasks) {
            awaiters.entry(awaited).or_default().push(task.address);
        }
    }
    for task in by_loop.values_mut().flatten() {
        if let Some(by) = awaiters.remove(&task.address) {
            task.awaited_by = by;
            task.awaited_by.sort_unstable();
        }
    }
}

/// Whether `ty` is `_asyncio.Task` or derives from it.
fn is_task_type<M: Memory>(objects: &Objects<'_, M>, ty: u64) -> bool {
    let Some(base_at) = objects.layout.offsets().type_object.tp_base.get() else {
        return false;
    };
    let mut ty = ty;
    for _ in 0..MAX_BASES {
        if ty == 0 {
            return false;
        }
        if objects
            .type_name_of_type(ty)
            .is_ok_and(|n| n == "_asyncio.Task")
        {
            return true;
        }
        match objects.memory.read_ptr(ty.wrapping_add(base_at)) {
            Ok(base) => ty = base,
            Err(_) => return false,
        }
    }
    false
}

fn type_name<M: Memory>(objects: &Objects<'_, M>, obj: u64) -> String {
    objects
        .type_name(obj)
        .unwrap_or_else(|e| format!("<unreadable type: {e}>"))
}

struct TaskReader<'r, 'a, M: Memory> {
    objects: &'r Objects<'a, M>,
    layout: &'r TaskLayout,
    /// Every frame on a thread's stack, with the thread's LWP.
    running: &'r HashMap<u64, Option<i32>>,
}

impl<M: Memory> TaskReader<'_, '_, M> {
    fn mem(&self) -> &M {
        self.objects.memory
    }

    /// The task at `address` and its loop's address (0 when unreadable).
    fn task(&self, address: u64) -> (u64, Task) {
        let mut task = Task {
            address,
            type_name: type_name(self.objects, address),
            name: None,
            state: None,
            cancel_requested: false,
            running_on: None,
            coroutine: Vec::new(),
            coroutine_error: None,
            awaits: None,
            awaited_by: Vec::new(),
            unreadable: None,
        };
        let loop_address = match self.read_fields(&mut task) {
            Ok(loop_address) => loop_address,
            Err(e) => {
                task.unreadable = Some(e.to_string());
                0
            }
        };
        (loop_address, task)
    }

    fn read_fields(&self, task: &mut Task) -> Result<u64, ReadError> {
        let at = |offset: u64| task.address.wrapping_add(offset);
        let l = self.layout;
        let loop_address = self.mem().read_ptr(at(l.task_loop))?;
        task.state = Some(TaskState::from_raw(self.mem().read_i32(at(l.task_state))?));
        task.cancel_requested = match l.task_must_cancel {
            Flag::Int(offset) => self.mem().read_i32(at(offset))? != 0,
            Flag::Bit(b) => self.mem().read_u8(at(b.byte))? & (1 << b.bit) != 0,
        };
        task.name = self.name(self.mem().read_ptr(at(l.task_name))?);
        let waiter = self.mem().read_ptr(at(l.task_fut_waiter))?;
        if waiter != 0 {
            task.awaits = Some(self.awaited(waiter));
        }
        let coro = self.mem().read_ptr(at(l.task_coro))?;
        let (chain, error, running_on) = self.coroutine_chain(coro);
        task.coroutine = chain;
        task.coroutine_error = error;
        task.running_on = running_on;
        Ok(loop_address)
    }

    /// A task's name: a str, or (3.12+) the number of a `Task-N` name.
    fn name(&self, obj: u64) -> Option<String> {
        if obj == 0 {
            return None;
        }
        Some(match self.objects.builtin_type_of(obj) {
            Ok(Some(BuiltinType::Str)) => self
                .objects
                .string(obj, MAX_NAME)
                .unwrap_or_else(|e| format!("<unreadable name: {e}>")),
            Ok(Some(BuiltinType::Long)) => match self.objects.int(obj) {
                Ok(n) => format!("Task-{n}"),
                Err(e) => format!("<unreadable name: {e}>"),
            },
            _ => self.objects.repr(obj),
        })
    }

    /// What `fut_waiter` stands for: the task itself, or a gather's children.
    fn awaited(&self, future: u64) -> Awaited {
        let type_name = type_name(self.objects, future);
        let tasks = if self.is_task(future) {
            vec![future]
        } else {
            self.gathered_tasks(future)
        };
        Awaited {
            address: future,
            type_name,
            tasks,
        }
    }

    fn is_task(&self, obj: u64) -> bool {
        self.objects
            .type_of(obj)
            .is_ok_and(|ty| is_task_type(self.objects, ty))
    }

    /// The tasks among a `_GatheringFuture`'s `_children`; none for any
    /// other future.
    fn gathered_tasks(&self, future: u64) -> Vec<u64> {
        let Ok(attributes) = self.objects.attributes(future, 64) else {
            return Vec::new();
        };
        let Some(children) = attributes.iter().find(|e| {
            self.objects
                .string(e.key, 16)
                .is_ok_and(|name| name == "_children")
        }) else {
            return Vec::new();
        };
        let items = match self.objects.builtin_type_of(children.value) {
            Ok(Some(BuiltinType::List)) => self.objects.list_items(children.value, MAX_CHILDREN),
            Ok(Some(BuiltinType::Tuple)) => self.objects.tuple_items(children.value, MAX_CHILDREN),
            _ => return Vec::new(),
        };
        items
            .map(|(items, _)| items.into_iter().filter(|&c| self.is_task(c)).collect())
            .unwrap_or_default()
    }

    /// The frames of `coro` and of the coroutines it awaits, innermost
    /// first; why the chain stops early; the thread running it.
    fn coroutine_chain(&self, coro: u64) -> (Vec<PyFrame>, Option<String>, Option<i32>) {
        let mut frames = Vec::new();
        let mut running_on = None;
        let mut seen = HashSet::new();
        let mut next = coro;
        let mut error = None;
        while next != 0 && frames.len() < MAX_CHAIN {
            if !seen.insert(next) {
                error = Some(format!("the await chain loops back to {next:#x}"));
                break;
            }
            if !self
                .objects
                .type_name(next)
                .is_ok_and(|name| name == "coroutine")
            {
                break;
            }
            let step = match self.coroutine_frame(next) {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("coroutine {next:#x}: {e}"));
                    break;
                }
            };
            match frame_at(self.objects, step.frame, false) {
                Ok(frame) => frames.push(frame),
                Err(e) => {
                    error = Some(format!(
                        "coroutine {next:#x}'s frame {:#x}: {e}",
                        step.frame
                    ));
                    break;
                }
            }
            if let Some(lwp) = self.running.get(&step.frame) {
                // Running: what it awaits is not on its value stack.
                running_on = *lwp;
                break;
            }
            if !step.suspended {
                break;
            }
            match self.awaited_by_frame(step.frame) {
                Ok(awaited) => next = awaited,
                Err(e) => {
                    error = Some(format!("what coroutine {next:#x} awaits: {e}"));
                    break;
                }
            }
        }
        if frames.len() >= MAX_CHAIN && error.is_none() {
            error = Some(format!(
                "more than {MAX_CHAIN} coroutines; the rest are not shown"
            ));
        }
        frames.reverse();
        (frames, error, running_on)
    }

    /// A coroutine's frame and whether it is suspended at an await; `None`
    /// when it has finished (no frame).
    fn coroutine_frame(&self, coro: u64) -> Result<Option<CoroutineFrame>, ChainError> {
        let layout = self.objects.layout;
        let offsets = layout.offsets();
        let generator = &offsets.generator;
        match layout.facts.frames {
            FrameModel::InterpreterFrame => {
                let state_at = generator.gi_frame_state.require()?;
                let state = self.mem().read_u8(coro.wrapping_add(state_at))? as i8;
                let frame = coro.wrapping_add(generator.gi_iframe.require()?);
                let rules = &layout.facts.rules;
                if self.running.contains_key(&frame) {
                    return Ok(Some(CoroutineFrame {
                        frame,
                        suspended: false,
                    }));
                }
                if !rules.generator_frame_suspended(state) {
                    return Ok(None);
                }
                // The lowest of the states is "created": it awaits nothing yet.
                let created = rules
                    .generator_suspended_states
                    .is_some_and(|(low, _)| state == low);
                Ok(Some(CoroutineFrame {
                    frame,
                    suspended: !created,
                }))
            }
            FrameModel::FrameObject => {
                let frame = self
                    .mem()
                    .read_ptr(coro.wrapping_add(generator.gi_frame.require()?))?;
                if frame == 0 {
                    return Ok(None);
                }
                let fo = &offsets.frame_object;
                let suspended = if let Some(state_at) = fo.f_state.get() {
                    // 3.10: FRAME_SUSPENDED.
                    self.mem().read_u8(frame.wrapping_add(state_at))? as i8 == -1
                } else {
                    // Up to 3.9: the value stack is saved only while suspended.
                    let top_at = fo.f_stacktop.require()?;
                    let lasti_at = fo.f_lasti.require()?;
                    self.mem().read_ptr(frame.wrapping_add(top_at))? != 0
                        && self.mem().read_i32(frame.wrapping_add(lasti_at))? >= 0
                };
                Ok(Some(CoroutineFrame { frame, suspended }))
            }
        }
    }

    /// The top of a suspended frame's value stack: the object an `await`
    /// waits on.
    fn awaited_by_frame(&self, frame: u64) -> Result<u64, ChainError> {
        let layout = self.objects.layout;
        let offsets = layout.offsets();
        let slot = match layout.facts.frames {
            FrameModel::InterpreterFrame => {
                let at = offsets.interp_frame.stackpointer.require()?;
                if layout.facts.rules.frame_stack_pointer {
                    // 3.14+: a pointer past the top.
                    self.mem().read_ptr(frame.wrapping_add(at))?.wrapping_sub(8)
                } else {
                    // 3.11-3.13: the count of slots used from `localsplus`.
                    let top = self.mem().read_i32(frame.wrapping_add(at))?;
                    if top <= 0 {
                        return Err(ChainError::EmptyStack(frame));
                    }
                    let plus = offsets.interp_frame.localsplus.require()?;
                    frame.wrapping_add(plus + (top as u64 - 1) * 8)
                }
            }
            FrameModel::FrameObject => {
                let fo = &offsets.frame_object;
                if let Some(depth_at) = fo.f_stackdepth.get() {
                    // 3.10: a depth over `f_valuestack`.
                    let depth = self.mem().read_i32(frame.wrapping_add(depth_at))?;
                    if depth <= 0 {
                        return Err(ChainError::EmptyStack(frame));
                    }
                    let base = self
                        .mem()
                        .read_ptr(frame.wrapping_add(fo.f_valuestack.require()?))?;
                    base.wrapping_add((depth as u64 - 1) * 8)
                } else {
                    let top = self
                        .mem()
                        .read_ptr(frame.wrapping_add(fo.f_stacktop.require()?))?;
                    top.wrapping_sub(8)
                }
            }
        };
        // 3.14+ stack references carry tags in their low bits.
        let tags = if layout.facts.rules.frames_tag_references {
            !3
        } else {
            !0
        };
        let value = self.mem().read_ptr(slot)? & tags;
        if value != 0 {
            return Ok(value);
        }
        // 3.15 suspends with a NULL reference above the receiver.
        Ok(self.mem().read_ptr(slot.wrapping_sub(8))? & tags)
    }
}

/// Why a coroutine's frame, or what it awaits, could not be read.
#[derive(Debug, Clone, thiserror::Error)]
enum ChainError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    MissingField(#[from] MissingField),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("frame {0:#x} has an empty value stack")]
    EmptyStack(u64),
}

/// A coroutine's frame, and whether it waits at an `await`.
struct CoroutineFrame {
    frame: u64,
    suspended: bool,
}
