//! Why a read of process memory failed: the error every reader returns,
//! with the address and the reason. It sits at the bottom (the diagnostics
//! every layer keeps say which failure they report); `memory` re-exports it.

use serde::Serialize;

/// Why a read of process memory failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadFailure {
    /// No segment of the core and no mapped file covers the address.
    #[error("not mapped in the process")]
    NotMapped,
    /// The process had the page mapped, but the core does not contain it and no
    /// verified file on disk can supply it.
    #[error("mapped but not dumped in the core")]
    NotDumped,
    /// The page is mapped from a file that pymortem could not find.
    #[error("mapped from {path}, which was not found")]
    FileMissing {
        /// The path recorded in the core.
        path: String,
    },
    /// The file found on disk is not the one the process had mapped.
    #[error("mapped from {path}, whose build-id differs from the core's")]
    BuildIdMismatch {
        /// The path recorded in the core.
        path: String,
    },
    /// The core file ends before the segment that holds the address.
    #[error("the core file is truncated before this address")]
    Truncated,
    /// The read was larger than the caller's bound.
    #[error("read of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Requested length.
        len: u64,
        /// The bound that was exceeded.
        limit: u64,
    },
    /// A value read from memory was not what the reader expected.
    #[error("invalid data: {0}")]
    Invalid(String),
    /// Nothing was read: the layout lacks the field (`Struct.field`) the
    /// reader needs, so there is no address to read.
    #[error("the layout has no {0}")]
    MissingField(&'static str),
}

/// A failed read of process memory: where, how much, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadError {
    /// First address of the failed read.
    pub addr: u64,
    /// Number of bytes requested.
    pub len: u64,
    /// Why it failed.
    pub reason: ReadFailure,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            // No read was tried: no address to name.
            ReadFailure::MissingField(_) => write!(f, "{}", self.reason),
            reason => write!(
                f,
                "cannot read {} bytes at {:#x}: {reason}",
                self.len, self.addr
            ),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

impl ReadError {
    /// A read error for `len` bytes at `addr`.
    pub fn new(addr: u64, len: u64, reason: ReadFailure) -> Self {
        ReadError { addr, len, reason }
    }
}

/// Serialise an optional error as its message (the JSON carries the text).
pub(crate) fn serialize_message<S, E>(error: &Option<E>, out: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    E: std::fmt::Display,
{
    match error {
        Some(e) => out.collect_str(e),
        None => out.serialize_none(),
    }
}
