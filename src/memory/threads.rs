//! Which `pthread_t` belongs to which thread of the core.
//!
//! CPython names a thread by its `pthread_t` (`threading.get_ident()`), the
//! core by its LWP and registers. On x86-64 glibc the thread pointer is the
//! `pthread_t`; on AArch64 `struct pthread` lies below the thread pointer
//! at a size that varies with glibc, and a QEMU core has no thread pointer
//! at all: there the thread id inside `struct pthread` decides.

use super::{Memory, MemoryExt};
use crate::corefile::CoreThread;

/// The thread's `pthread_t`, when its registers and memory give it.
pub fn pthread_id(memory: &impl Memory, thread: &CoreThread) -> Option<u64> {
    if let Some(id) = thread.pthread_id() {
        return Some(id);
    }
    let thread_pointer = thread.registers.thread_pointer()?;
    thread.registers.arch().pthread_from_thread_pointer(
        |a| memory.read_u64(a).ok(),
        thread_pointer,
        thread.lwp,
    )
}

/// Whether `candidate`, a `pthread_t` read from the process (a thread
/// state's `thread_id`), is `thread`'s.
pub fn is_pthread_of(memory: &impl Memory, thread: &CoreThread, candidate: u64) -> bool {
    if candidate == 0 {
        return false;
    }
    if let Some(id) = thread.pthread_id() {
        return id == candidate;
    }
    let Some(tid_offset) = thread.registers.arch().pthread_tid_offset() else {
        return false;
    };
    u32::try_from(thread.lwp).is_ok_and(|lwp| {
        memory
            .read_u32(candidate.wrapping_add(tid_offset))
            .is_ok_and(|tid| tid == lwp)
    })
}
