//! What `/proc/PID` tells of a process: its identity, its threads'
//! blocked system calls, its memory (`process_vm_readv`), and why tracing
//! it may be refused.

use std::io;
use std::path::PathBuf;

/// `/proc/PID/NAME`.
pub fn path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Who the process is, for `NT_PRPSINFO`.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `R`, `S`, `D`, `T`, `Z` (a zombie), `X` (dead)…
    pub state: char,
    pub ppid: i32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub args: String,
}

impl Identity {
    pub fn read(pid: i32) -> io::Result<Identity> {
        let stat = std::fs::read(path(pid, "stat"))?;
        let stat = String::from_utf8_lossy(&stat);
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let open = stat.find('(').unwrap_or(0);
        let close = stat.rfind(')').unwrap_or(stat.len());
        let comm = stat.get(open + 1..close).unwrap_or("").to_string();
        let mut after = stat.get(close + 1..).unwrap_or("").split_whitespace();
        let state = after.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = after.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(path(pid, "status")).unwrap_or_default();
        let first_id = |key: &str| {
            status_field(&status, key)
                .and_then(|id| id.parse().ok())
                .unwrap_or(0)
        };
        let cmdline = std::fs::read(path(pid, "cmdline")).unwrap_or_default();
        let args: Vec<u8> = cmdline
            .iter()
            .take(80)
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect();
        Ok(Identity {
            state,
            ppid,
            uid: first_id("Uid:"),
            gid: first_id("Gid:"),
            comm,
            args: String::from_utf8_lossy(&args).trim_end().to_string(),
        })
    }

    /// Whether the process has exited (a zombie its parent has not reaped).
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The first word after `key` on its line of a `/proc/PID/status` text.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
}

/// Whether the process has exited, or is gone.
pub fn has_exited(pid: i32) -> bool {
    Identity::read(pid).is_ok_and(|i| i.has_exited())
}

/// The stack and program pointers of a thread blocked in a system call
/// (`/proc/PID/task/TID/syscall`: "nr args… sp pc"; "running" otherwise).
pub fn syscall_pointers(pid: i32, tid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 3 {
        return None;
    }
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok();
    Some((hex(words[words.len() - 2])?, hex(words[words.len() - 1])?))
}

/// Another process's memory, read with `process_vm_readv`.
pub struct Memory {
    pid: i32,
}

const PAGE: usize = 4096;
/// The capability bit (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

impl Memory {
    pub fn new(pid: i32) -> Memory {
        Memory { pid }
    }

    /// Read `buffer.len()` bytes at `address`. Pages that cannot be read
    /// (a file mapping past its file's end) are left zero and added to
    /// `unreadable`; an error is returned only when the process is gone or
    /// may not be read.
    pub fn read_into(
        &self,
        address: u64,
        buffer: &mut [u8],
        unreadable: &mut Vec<(u64, u64, String)>,
    ) -> io::Result<()> {
        match self.read(address, buffer) {
            Ok(n) if n == buffer.len() => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EPERM)) => {
                return Err(e);
            }
            _ => {}
        }
        // Page by page: keep what can be read.
        for (i, page) in buffer.chunks_mut(PAGE).enumerate() {
            let at = address + (i * PAGE) as u64;
            match self.read(at, page) {
                Ok(n) if n == page.len() => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EPERM)) => {
                    return Err(e);
                }
                other => {
                    page.fill(0);
                    let reason = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "a short read".to_string(),
                    };
                    let end = at + page.len() as u64;
                    match unreadable.last_mut() {
                        Some(last) if last.1 == at && last.2 == reason => last.1 = end,
                        _ => unreadable.push((at, end, reason)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the page at `address` starts with the ELF magic.
    pub fn is_elf_header(&self, address: u64) -> bool {
        let mut magic = [0u8; 4];
        matches!(self.read(address, &mut magic), Ok(4)) && magic == *b"\x7fELF"
    }

    fn read(&self, address: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let local = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        let remote = libc::iovec {
            iov_base: address as usize as *mut libc::c_void,
            iov_len: buffer.len(),
        };
        // SAFETY: the local iovec covers `buffer`, which the kernel writes at
        // most `iov_len` bytes into; the remote address is only read, in the
        // other process, by the kernel, which checks it.
        let read = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        usize::try_from(read).map_err(|_| io::Error::last_os_error())
    }
}

/// Why this process may not trace another, in terms of what to change.
#[derive(Debug, Clone, Default)]
pub struct PermissionCheck {
    /// The tracer already attached (pid and name).
    pub tracer: Option<(i32, String)>,
    /// The target's real uid, and ours, when they differ.
    pub other_user: Option<(u32, u32)>,
    /// Yama's `ptrace_scope` when above 0.
    pub ptrace_scope: Option<u32>,
    /// Whether this process holds `CAP_SYS_PTRACE`.
    pub has_cap_sys_ptrace: bool,
}

impl PermissionCheck {
    /// Look at the target and at this process.
    pub fn of(pid: i32) -> PermissionCheck {
        let status = std::fs::read_to_string(path(pid, "status")).unwrap_or_default();
        let tracer = status_field(&status, "TracerPid:")
            .and_then(|t| t.parse::<i32>().ok())
            .filter(|&t| t != 0)
            .map(|t| {
                let name = std::fs::read_to_string(path(t, "comm")).unwrap_or_default();
                (t, name.trim().to_string())
            });
        // SAFETY: getuid has no preconditions.
        let ours = unsafe { libc::getuid() };
        let other_user = status_field(&status, "Uid:")
            .and_then(|u| u.parse::<u32>().ok())
            .filter(|&u| u != ours)
            .map(|u| (u, ours));
        let ptrace_scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&s| s > 0);
        let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let has_cap_sys_ptrace = status_field(&own, "CapEff:")
            .and_then(|c| u64::from_str_radix(c, 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0);
        PermissionCheck {
            tracer,
            other_user,
            ptrace_scope,
            has_cap_sys_ptrace,
        }
    }

    /// The reason, and what would let pymortem read the process.
    pub fn explain(&self) -> String {
        if let Some((tracer, name)) = &self.tracer {
            return format!(
                "another tracer holds it (process {tracer}, {name}); a process has one tracer at a time: detach it (quit gdb, strace or py-spy) and try again"
            );
        }
        if let Some((theirs, ours)) = self.other_user
            && !self.has_cap_sys_ptrace
        {
            return format!(
                "it runs as uid {theirs} and pymortem as uid {ours}: run pymortem as that user, or as root (with CAP_SYS_PTRACE)"
            );
        }
        match self.ptrace_scope {
            Some(3) => "kernel.yama.ptrace_scope is 3: no process may be traced until reboot".into(),
            Some(2) => "kernel.yama.ptrace_scope is 2: only a process with CAP_SYS_PTRACE may trace (run as root, or `setcap cap_sys_ptrace+ep` on pymortem)".into(),
            Some(1) if !self.has_cap_sys_ptrace => "kernel.yama.ptrace_scope is 1: only a parent may trace its children; run pymortem with CAP_SYS_PTRACE (as root, `sudo`, or `setcap cap_sys_ptrace+ep`), or set `sysctl kernel.yama.ptrace_scope=0`".into(),
            _ => "the kernel refused ptrace (a container without CAP_SYS_PTRACE, a seccomp filter, or a process that made itself undumpable with prctl(PR_SET_DUMPABLE, 0)); run with CAP_SYS_PTRACE".into(),
        }
    }
}

/// The processes whose name (`comm`) or command line's first word's base
/// name is `name`, oldest first; pymortem itself is never one.
pub fn processes_named(name: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let comm = std::fs::read_to_string(path(pid, "comm")).unwrap_or_default();
        let cmdline = std::fs::read(path(pid, "cmdline")).unwrap_or_default();
        let first = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
        let base = first.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
        if comm.trim_end() == name || base == name.as_bytes() {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}
