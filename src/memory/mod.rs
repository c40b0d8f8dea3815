//! The process's memory as one narrow, fallible read interface.
//!
//! [`Memory`] is the only thing higher layers need; [`MemoryExt`] adds typed
//! helpers on top of it. [`ProcessMemory`] implements it over a core plus the
//! verified files the process had mapped.

pub mod threads;
mod view;

pub use view::{FileBacking, FileRange, MappingState, ProcessMemory, Provenance};

pub use crate::read_error::{ReadError, ReadFailure};

/// Reads of process memory. Every failure says where and why.
pub trait Memory {
    /// Fill `buf` with the bytes at `addr`, or fail without a partial result.
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// The `len` bytes at `addr` without copying, when the memory holds them
    /// contiguously; `None` says only "no fast path": callers then read.
    /// Heap walks use it to look at millions of objects without a copy each.
    fn slice_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let _ = (addr, len);
        None
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_exact_at(addr, buf)
    }

    fn slice_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        (**self).slice_at(addr, len)
    }
}

/// Typed reads on top of [`Memory`]. Pointers are 8 bytes (x86-64).
pub trait MemoryExt: Memory {
    /// Read `N` bytes: without a copy through a buffer when the memory has them at hand.
    fn read_array<const N: usize>(&self, addr: u64) -> Result<[u8; N], ReadError> {
        if let Some(bytes) = self.slice_at(addr, N).and_then(|s| s.try_into().ok()) {
            return Ok(bytes);
        }
        let mut b = [0u8; N];
        self.read_exact_at(addr, &mut b)?;
        Ok(b)
    }
    /// Read a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        self.read_array(addr).map(u64::from_le_bytes)
    }
    /// Read a little-endian `i64`.
    fn read_i64(&self, addr: u64) -> Result<i64, ReadError> {
        self.read_u64(addr).map(|v| v as i64)
    }
    /// Read a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, ReadError> {
        self.read_array(addr).map(u32::from_le_bytes)
    }
    /// Read a little-endian `i32`.
    fn read_i32(&self, addr: u64) -> Result<i32, ReadError> {
        self.read_u32(addr).map(|v| v as i32)
    }
    /// Read a little-endian `u16`.
    fn read_u16(&self, addr: u64) -> Result<u16, ReadError> {
        self.read_array(addr).map(u16::from_le_bytes)
    }
    /// Read one byte.
    fn read_u8(&self, addr: u64) -> Result<u8, ReadError> {
        self.read_array::<1>(addr).map(|b| b[0])
    }
    /// Read a pointer.
    fn read_ptr(&self, addr: u64) -> Result<u64, ReadError> {
        self.read_u64(addr)
    }
    /// Read `len` bytes, refusing any request over `limit` before allocating.
    fn read_bytes(&self, addr: u64, len: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
        if len > limit {
            return Err(ReadError::new(
                addr,
                len,
                ReadFailure::TooLarge { len, limit },
            ));
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact_at(addr, &mut buf)?;
        Ok(buf)
    }
    /// Read a NUL-terminated string of at most `max` bytes (the NUL excluded).
    ///
    /// Reads page by page so that a string ending just before an unreadable
    /// page is still returned. Fails if no NUL is found within `max` bytes.
    fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        let mut cur = addr;
        while out.len() < max {
            let to_page_end = 4096 - (cur % 4096) as usize;
            let chunk = to_page_end.min(max - out.len()).min(256);
            let mut buf = [0u8; 256];
            if let Err(e) = self.read_exact_at(cur, &mut buf[..chunk]) {
                // The string may end before the unreadable part: go byte by byte.
                for i in 0..chunk {
                    let byte = self
                        .read_u8(cur.wrapping_add(i as u64))
                        .map_err(|_| e.clone())?;
                    if byte == 0 {
                        out.extend_from_slice(&buf[..i]);
                        return Ok(out);
                    }
                    buf[i] = byte;
                }
                return Err(e);
            }
            if let Some(nul) = buf[..chunk].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf[..chunk]);
            cur = cur.wrapping_add(chunk as u64);
        }
        Err(ReadError::new(
            addr,
            max as u64,
            ReadFailure::Invalid(format!("no NUL within {max} bytes")),
        ))
    }
}

impl<M: Memory + ?Sized> MemoryExt for M {}

/// A flat buffer at a base address: handy for synthetic memory in tests.
#[derive(Debug, Clone)]
pub struct BufferMemory {
    /// Address of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: Vec<u8>,
}

impl Memory for BufferMemory {
    fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let fail = || ReadError::new(addr, buf.len() as u64, ReadFailure::NotMapped);
        let start = addr.checked_sub(self.base).ok_or_else(fail)? as usize;
        let end = start.checked_add(buf.len()).ok_or_else(fail)?;
        let src = self.bytes.get(start..end).ok_or_else(fail)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_stops_at_nul_and_at_limit() {
        let mem = BufferMemory {
            base: 0x1000,
            bytes: b"hello\0world-without-nul".to_vec(),
        };
        assert_eq!(mem.read_cstr(0x1000, 100).unwrap(), b"hello");
        assert!(mem.read_cstr(0x1006, 5).is_err());
        assert!(mem.read_cstr(0x1006, 100).is_err(), "runs off the buffer");
    }

    #[test]
    fn huge_lengths_never_allocate() {
        let mem = BufferMemory {
            base: 0,
            bytes: vec![0; 16],
        };
        let err = mem.read_bytes(0, 1 << 60, 1 << 20).unwrap_err();
        assert!(matches!(err.reason, ReadFailure::TooLarge { .. }));
    }
}
