//! Opening files named by a core or found while searching: regular files only.
//!
//! Opening a FIFO for reading blocks until a writer comes, and a device or
//! socket is no file to map or checksum. Every open goes through
//! [`open_regular`]: it opens without blocking, then looks at what it opened
//! (not at the path, which may change in between) and refuses anything else.

use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// `O_NONBLOCK` on Linux: a FIFO's open returns at once instead of waiting
/// for a writer. It changes nothing on a regular file.
const O_NONBLOCK: i32 = 0o4000;

/// Open `path` for reading if it is a regular file (symlinks followed).
/// Anything else fails with `InvalidInput` and a reason such as
/// "not a regular file: it is a FIFO".
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        Ok(file)
    } else {
        Err(not_regular(kind))
    }
}

/// The error for a path that is not a regular file.
pub fn not_regular(kind: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file: it is {}", describe(kind)),
    )
}

/// Whether `error` is [`open_regular`]'s refusal of a non-regular file.
pub fn is_not_regular(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::InvalidInput
        && error.to_string().starts_with("not a regular file")
}

/// What kind of file `kind` is, with an article: "a FIFO".
pub fn describe(kind: FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "of an unknown kind"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let err = open_regular(&fifo).unwrap_err();
        assert!(is_not_regular(&err), "{err}");
        assert_eq!(err.to_string(), "not a regular file: it is a FIFO");
    }

    #[test]
    fn folders_and_devices_are_refused_and_files_opened() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_regular(dir.path()).unwrap_err();
        assert!(err.to_string().ends_with("a folder"), "{err}");
        let err = open_regular(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().ends_with("a character device"), "{err}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());
        assert!(!is_not_regular(
            &open_regular(&dir.path().join("none")).unwrap_err()
        ));
    }
}
