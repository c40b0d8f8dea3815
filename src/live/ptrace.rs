//! Stopping every thread of a process with `PTRACE_SEIZE` and
//! `PTRACE_INTERRUPT`, reading their registers, and letting them go.
//!
//! Seizing (unlike `PTRACE_ATTACH`) sends no `SIGSTOP`: the process sees
//! nothing but a pause, and a signal that arrives meanwhile is delivered
//! when it resumes. Every ptrace request is made from the thread that
//! seized (the kernel ties a tracee to that thread), so [`StoppedThreads`]
//! is not `Send`.

use std::collections::BTreeSet;
use std::io;
use std::marker::PhantomData;

/// How many times the thread list is read again for threads started while
/// the others were being stopped.
const MAX_ROUNDS: usize = 16;
/// The most threads stopped.
pub const MAX_THREADS: usize = 1 << 15;

/// One stopped thread and its registers.
#[derive(Debug, Clone)]
pub struct StoppedThread {
    /// Its LWP id.
    pub tid: i32,
    /// `user_regs_struct`, as `PTRACE_GETREGSET` gave it.
    pub regs: Vec<u8>,
    /// The floating-point registers, where they could be read.
    pub fpregs: Option<Vec<u8>>,
}

/// Every thread of a process, stopped until this is dropped.
pub struct StoppedThreads {
    /// Threads seized, each with the signal to give back at detach (a
    /// signal that stopped it instead of the interrupt).
    seized: Vec<(i32, i32)>,
    /// The threads whose registers were read.
    pub threads: Vec<StoppedThread>,
    /// Threads listed that could not be stopped (they exited meanwhile).
    pub lost: Vec<(i32, String)>,
    /// ptrace requests must come from this OS thread.
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for StoppedThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoppedThreads({} threads)", self.threads.len())
    }
}

/// Why the process could not be stopped.
#[derive(Debug)]
pub enum StopError {
    /// `PTRACE_SEIZE` of the thread group leader failed.
    Seize(io::Error),
    /// `/proc/PID/task` could not be listed.
    Tasks(io::Error),
}

impl StoppedThreads {
    /// Seize and interrupt every thread of `pid`, and read each one's
    /// registers (`regs_size` and `fpregs_size` bytes).
    pub fn stop(pid: i32, regs_size: usize, fpregs_size: usize) -> Result<Self, StopError> {
        let mut stopped = StoppedThreads {
            seized: Vec::new(),
            threads: Vec::new(),
            lost: Vec::new(),
            _not_send: PhantomData,
        };
        // The leader first: if it cannot be seized, nothing can.
        seize(pid).map_err(StopError::Seize)?;
        stopped.seized.push((pid, 0));
        let mut known: BTreeSet<i32> = BTreeSet::from([pid]);
        for _ in 0..MAX_ROUNDS {
            let listed = list_tasks(pid).map_err(StopError::Tasks)?;
            let new: Vec<i32> = listed.difference(&known).copied().collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                known.insert(tid);
                if stopped.seized.len() >= MAX_THREADS {
                    stopped
                        .lost
                        .push((tid, format!("more than {MAX_THREADS} threads")));
                    continue;
                }
                match seize(tid) {
                    Ok(()) => stopped.seized.push((tid, 0)),
                    Err(e) => stopped.lost.push((tid, describe(&e))),
                }
            }
        }
        let mut exited = Vec::new();
        for index in 0..stopped.seized.len() {
            let tid = stopped.seized[index].0;
            match wait_stop(tid) {
                Ok(signal) => stopped.seized[index].1 = signal,
                Err(e) => {
                    exited.push(tid);
                    stopped.lost.push((tid, describe(&e)));
                    continue;
                }
            }
            match get_regset(tid, libc::NT_PRSTATUS, regs_size) {
                Ok(regs) => stopped.threads.push(StoppedThread {
                    tid,
                    regs,
                    fpregs: get_regset(tid, libc::NT_PRFPREG, fpregs_size).ok(),
                }),
                Err(e) => stopped.lost.push((tid, describe(&e))),
            }
        }
        stopped.seized.retain(|(tid, _)| !exited.contains(tid));
        // The leader first, as the kernel writes it.
        stopped.threads.sort_by_key(|t| (t.tid != pid, t.tid));
        Ok(stopped)
    }
}

impl Drop for StoppedThreads {
    fn drop(&mut self) {
        for &(tid, signal) in &self.seized {
            // SAFETY: PTRACE_DETACH of a thread this tracer seized; the
            // kernel checks the tid, a stale one fails with ESRCH.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    tid,
                    std::ptr::null_mut::<libc::c_void>(),
                    signal as usize as *mut libc::c_void,
                );
            }
        }
    }
}

/// The thread ids in `/proc/PID/task`.
pub fn list_tasks(pid: i32) -> io::Result<BTreeSet<i32>> {
    let mut tids = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            tids.insert(tid);
            if tids.len() > MAX_THREADS {
                break;
            }
        }
    }
    Ok(tids)
}

fn seize(tid: i32) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE and PTRACE_INTERRUPT take a tid and no pointers
    // (addr and data are 0: no options).
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) != 0 {
            let e = io::Error::last_os_error();
            libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize);
            return Err(e);
        }
    }
    Ok(())
}

/// Wait for `tid`'s stop; the signal to give back at detach when a signal
/// stopped it rather than the interrupt.
fn wait_stop(tid: i32) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status word into `status`.
        let waited = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if waited < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if libc::WIFSTOPPED(status) {
            let signal = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            // PTRACE_EVENT_STOP: the interrupt (or a group stop) took it.
            let given_back = if event == libc::PTRACE_EVENT_STOP {
                0
            } else {
                signal
            };
            return Ok(given_back);
        }
    }
}

fn get_regset(tid: i32, set: libc::c_int, size: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; size];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: PTRACE_GETREGSET writes at most iov_len bytes into the buffer
    // the iovec points to, and shrinks iov_len to what it wrote.
    let done = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            set as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(iov.iov_len.min(size));
    Ok(buffer)
}

fn describe(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ESRCH) {
        "it exited while the process was being stopped".into()
    } else {
        e.to_string()
    }
}
