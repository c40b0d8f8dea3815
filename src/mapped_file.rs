//! Every file pymortem maps, and what a bus error in one of them means.
//!
//! A mapped file that another process truncates while pymortem reads it
//! turns the next read of a lost page into `SIGBUS`, which by default kills
//! the process without a word. Each map is recorded here (its address range
//! and its file's name), so that a binary that calls
//! [`report_bus_errors`] exits with a message naming the file instead.
//!
//! The record is a fixed table of atomics: the signal handler may only read
//! memory, never lock or allocate. A map whose range overlaps an older
//! record replaces it (the older map is gone, or the kernel would not have
//! reused its addresses), so records need no removal when maps are dropped.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use memmap2::Mmap;

/// Records kept; when full, the oldest is replaced (its file is then named
/// only as "a mapped file" should it fault).
const RECORDS: usize = 256;
/// Bytes of a file name kept per record (longer names keep their tail).
const NAME_BYTES: usize = 240;

struct Record {
    start: AtomicUsize,
    /// 0 while the record is unused or being written.
    len: AtomicUsize,
    name_len: AtomicUsize,
    name: [AtomicU8; NAME_BYTES],
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the static array
const EMPTY_RECORD: Record = Record {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    name_len: AtomicUsize::new(0),
    name: [const { AtomicU8::new(0) }; NAME_BYTES],
};

static RECORDS_TABLE: [Record; RECORDS] = [EMPTY_RECORD; RECORDS];
/// Serialises writers (the handler never takes it); holds the next slot to
/// replace when none is free.
static WRITER: Mutex<usize> = Mutex::new(0);

/// Map `file` (opened from `path`) read-only and record it.
///
/// The map's contents are untrusted: callers bounds-check every access and
/// treat the bytes like any hostile input.
pub fn map_read_only(path: &Path, file: &File) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and its bytes are never trusted; a
    // concurrent change to the file can only produce wrong data (handled as
    // hostile input) or, if the file shrinks, SIGBUS, which
    // `report_bus_errors` turns into a message naming the file.
    let map = unsafe { Mmap::map(file) }?;
    record(map.as_ptr() as usize, map.len(), path);
    Ok(map)
}

fn record(start: usize, len: usize, path: &Path) {
    if len == 0 {
        return;
    }
    let mut next = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let end = start.saturating_add(len);
    let mut slot = None;
    for (i, r) in RECORDS_TABLE.iter().enumerate() {
        let r_len = r.len.load(Ordering::Acquire);
        let r_start = r.start.load(Ordering::Relaxed);
        let stale = r_len != 0 && r_start < end && start < r_start.saturating_add(r_len);
        if stale {
            r.len.store(0, Ordering::Release);
        }
        if slot.is_none() && (r_len == 0 || stale) {
            slot = Some(i);
        }
    }
    let i = slot.unwrap_or_else(|| {
        let i = *next % RECORDS;
        *next = next.wrapping_add(1);
        i
    });
    let r = &RECORDS_TABLE[i];
    r.len.store(0, Ordering::Release);
    let name = printable_name(path);
    let tail = &name[name.len().saturating_sub(NAME_BYTES)..];
    for (cell, byte) in r.name.iter().zip(tail) {
        cell.store(*byte, Ordering::Relaxed);
    }
    r.name_len.store(tail.len(), Ordering::Relaxed);
    r.start.store(start, Ordering::Relaxed);
    r.len.store(len, Ordering::Release);
}

/// The path's bytes with control characters replaced, so that the handler
/// can write it to a terminal as is.
fn printable_name(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| if b < 0x20 || b == 0x7f { b'?' } else { b })
        .collect()
}

/// The record holding `address`: (its start, its name's length).
fn find(address: usize) -> Option<(&'static Record, usize)> {
    RECORDS_TABLE.iter().find_map(|r| {
        let len = r.len.load(Ordering::Acquire);
        let start = r.start.load(Ordering::Relaxed);
        (len != 0 && address >= start && address - start < len).then_some((r, start))
    })
}

/// The action that was in place before [`report_bus_errors`], restored for
/// faults outside recorded maps (e.g. the runtime's own guard pages).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Install a process-wide `SIGBUS` handler: a fault inside a recorded map
/// writes `pymortem: error: FILE: …` to stderr and exits with status 2.
/// Faults elsewhere go to the handler that was there before.
///
/// For binaries: a library should leave signal handling to its program.
pub fn report_bus_errors() {
    INSTALL.call_once(install);
}

fn install() {
    // SAFETY: `action` is fully initialised (zeroed, then the fields set)
    // before `sigaction` reads it, and `old` is only read after it succeeds.
    // The handler itself is async-signal-safe (see `on_bus_error`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let handler: BusErrorHandler = on_bus_error;
        action.sa_sigaction = handler as usize;
        // On the alternate stack, like the runtime's own handler, in case
        // the fault is a stack overflow.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut old) == 0 {
            let kept: &'static mut libc::sigaction = Box::leak(Box::new(old));
            PREVIOUS.store(kept as *mut libc::sigaction as usize, Ordering::Release);
        }
    }
}

type BusErrorHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// The `SIGBUS` handler: only atomic loads, `write(2)`, `sigaction(2)` and
/// `_exit(2)`, all async-signal-safe.
extern "C" fn on_bus_error(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    let Some((record, start)) = find(address) else {
        // Not a file of ours: let the previous action handle the fault when
        // the faulting instruction runs again.
        let previous = PREVIOUS.load(Ordering::Acquire) as *const libc::sigaction;
        // SAFETY: the pointer is to a leaked, never freed copy of the action,
        // or null (then the default action is restored).
        unsafe {
            if previous.is_null() {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
            } else {
                libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut());
            }
        }
        return;
    };
    let mut message = MessageBuffer::new();
    message.push(b"pymortem: error: ");
    let name_len = record.name_len.load(Ordering::Relaxed).min(NAME_BYTES);
    for cell in &record.name[..name_len] {
        message.push(&[cell.load(Ordering::Relaxed)]);
    }
    message.push(b": the file shrank while pymortem was reading it (bus error at byte ");
    message.push_hex((address - start) as u64);
    message.push(
        b" of it): another process truncated or rewrote it; copy it to a place \
          nothing changes and run pymortem on the copy\n",
    );
    // SAFETY: `write` and `_exit` are async-signal-safe; the buffer is valid
    // for its length.
    unsafe {
        libc::write(2, message.bytes.as_ptr().cast(), message.len);
        libc::_exit(2);
    }
}

/// A message built without allocating.
struct MessageBuffer {
    bytes: [u8; 1024],
    len: usize,
}

impl MessageBuffer {
    fn new() -> Self {
        MessageBuffer {
            bytes: [0; 1024],
            len: 0,
        }
    }

    fn push(&mut self, part: &[u8]) {
        let room = self.bytes.len() - self.len;
        let n = part.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&part[..n]);
        self.len += n;
    }

    fn push_hex(&mut self, value: u64) {
        let mut digits = [0u8; 18];
        digits[0] = b'0';
        digits[1] = b'x';
        let mut n = 2;
        let mut started = false;
        for shift in (0..16).rev() {
            let nibble = ((value >> (shift * 4)) & 0xf) as usize;
            if nibble != 0 || started || shift == 0 {
                started = true;
                digits[n] = b"0123456789abcdef"[nibble];
                n += 1;
            }
        }
        self.push(&digits[..n]);
    }
}

/// Ask the kernel to back the unused capacity of `vec` with huge pages
/// where it can: a list of millions then costs a few page faults, not
/// thousands. A hint only; nothing in the vector changes.
pub fn advise_huge_pages<T>(vec: &mut Vec<T>) {
    const HUGE: usize = 2 << 20;
    let spare = vec.spare_capacity_mut();
    let (start, len) = (spare.as_mut_ptr() as usize, std::mem::size_of_val(spare));
    // Whole huge pages inside the capacity only.
    let first = start.next_multiple_of(HUGE);
    let end = (start + len) / HUGE * HUGE;
    if end > first {
        // SAFETY: the range lies inside memory this vector owns and does
        // not use yet; MADV_HUGEPAGE changes how the kernel backs it, never
        // its contents or its mapping.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

/// Ask the CPU to start loading the cache line that `bytes` starts in: a
/// pass that knows the addresses it will read some steps ahead then waits
/// for memory once per batch of lines, not once per line. A hint only.
#[inline(always)]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and never changes memory, whatever
    // the address; this one is inside a live slice besides.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_map_over_an_old_range_replaces_its_record() {
        record(0x1000_0000, 0x2000, Path::new("/old"));
        record(0x1000_1000, 0x1000, Path::new("/new\x1b[2J"));
        let (r, start) = find(0x1000_1800).unwrap();
        assert_eq!(start, 0x1000_1000);
        let name: Vec<u8> = r.name[..r.name_len.load(Ordering::Relaxed)]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(name, b"/new?[2J");
        assert!(find(0x1000_0800).is_none(), "the overlapped record is gone");
    }

    #[test]
    fn hex_offsets_are_written_without_allocating() {
        let mut m = MessageBuffer::new();
        m.push_hex(0);
        m.push(b" ");
        m.push_hex(0x1f000);
        assert_eq!(&m.bytes[..m.len], b"0x0 0x1f000");
    }
}
