//! The source lines of Python frames, for tracebacks as Python prints them.
//!
//! The file names come from the core's code objects: each is resolved under
//! the sysroot (or the host's root) without leaving it, read only when it is
//! a regular file of bounded size, and the reads share a budget, so that a
//! core naming huge or endless files costs nothing but a missing line. The
//! host's file may differ from the one the process ran; the text says where
//! it was read only through the path it shows.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::modules::resolve_in_root;

/// Largest source file read.
const MAX_FILE: u64 = 4 << 20;
/// Bytes read from all source files together, at most.
const MAX_TOTAL: u64 = 64 << 20;
/// Files looked up, at most (each costs a path resolution).
const MAX_FILES: usize = 4096;
/// Longest line kept, in bytes; a longer one is cut.
const MAX_LINE: usize = 1000;

/// Source files read so far, by the name the core gives.
pub struct SourceFiles {
    root: PathBuf,
    files: HashMap<String, Option<Vec<String>>>,
    budget: u64,
}

impl SourceFiles {
    /// Files resolved under `sysroot`, or the host's root.
    pub fn new(sysroot: Option<&Path>) -> SourceFiles {
        SourceFiles {
            root: sysroot.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            files: HashMap::new(),
            budget: MAX_TOTAL,
        }
    }

    /// Line `line` (1-based) of the file the core names `file`, when it can
    /// be read.
    pub fn line(&mut self, file: &str, line: i64) -> Option<&str> {
        let index = usize::try_from(line.checked_sub(1)?).ok()?;
        if !self.files.contains_key(file) {
            if self.files.len() >= MAX_FILES {
                return None;
            }
            let lines = self.read(file);
            self.files.insert(file.to_string(), lines);
        }
        self.files
            .get(file)?
            .as_ref()?
            .get(index)
            .map(String::as_str)
    }

    fn read(&mut self, file: &str) -> Option<Vec<String>> {
        // `<frozen ...>`, `<string>` and relative names name no file.
        if !file.starts_with('/') {
            return None;
        }
        let path = resolve_in_root(&self.root, file)?;
        let opened = std::fs::File::open(path).ok()?;
        let meta = opened.metadata().ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE || meta.len() > self.budget {
            return None;
        }
        let mut bytes = Vec::new();
        // The file may grow after the size check: never read past it.
        opened.take(meta.len()).read_to_end(&mut bytes).ok()?;
        self.budget -= bytes.len() as u64;
        Some(
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| cut(l, MAX_LINE).to_string())
                .collect(),
        )
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The line as a traceback shows it (leading blanks removed), and, when the
/// columns mark part of it, the marker line beneath: `^` under the columns
/// `column..end_column` (UTF-8 byte offsets into `line`; to the end of the
/// line when the source ends on a later line), indented like the shown line.
pub fn traceback_lines(
    line: &str,
    column: Option<i64>,
    end_column: Option<i64>,
    ends_here: bool,
) -> (String, Option<String>) {
    let shown = line.trim_start();
    let indent = line.len() - shown.len();
    let shown_trimmed = shown.trim_end();
    let marker = column.and_then(|column| {
        let start = usize::try_from(column).ok()?.checked_sub(indent)?;
        let end = if ends_here {
            usize::try_from(end_column?).ok()?.checked_sub(indent)?
        } else {
            shown_trimmed.len()
        };
        let end = end.min(shown_trimmed.len());
        if start >= end || !shown.is_char_boundary(start) || !shown.is_char_boundary(end) {
            return None;
        }
        // Python leaves out a marker that would underline the whole line.
        if start == 0 && end == shown_trimmed.len() {
            return None;
        }
        let lead = shown[..start].chars().count();
        let width = shown[start..end].chars().count();
        Some(format!("{}{}", " ".repeat(lead), "^".repeat(width)))
    });
    (shown_trimmed.to_string(), marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_sits_under_the_columns() {
        let (shown, marker) = traceback_lines("    x = compute(a, b)", Some(8), Some(21), true);
        assert_eq!(shown, "x = compute(a, b)");
        assert_eq!(marker.as_deref(), Some("    ^^^^^^^^^^^^^"));
    }

    #[test]
    fn no_marker_under_the_whole_line_or_without_columns() {
        assert_eq!(traceback_lines("    f()", Some(4), Some(7), true).1, None);
        assert_eq!(traceback_lines("    f()", None, None, true).1, None);
    }

    #[test]
    fn a_source_that_ends_later_is_marked_to_the_line_end() {
        let (_, marker) = traceback_lines("  y = call(", Some(6), Some(1), false);
        assert_eq!(marker.as_deref(), Some("    ^^^^^"));
    }

    #[test]
    fn columns_count_bytes_and_markers_count_characters() {
        // "é" is two bytes: the call starts at byte 10, character 9.
        let (_, marker) = traceback_lines("s = 'é'; f(s)", Some(10), Some(14), true);
        assert_eq!(marker.as_deref(), Some("         ^^^^"));
    }

    #[test]
    fn columns_past_the_line_or_inside_a_character_give_no_marker() {
        assert_eq!(traceback_lines("a = 'é'", Some(6), Some(7), true).1, None);
        assert_eq!(traceback_lines("ab", Some(1), Some(1), true).1, None);
    }

    #[test]
    fn only_absolute_names_of_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("pymortem-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.py"), "first\nsecond\n").unwrap();
        let mut files = SourceFiles::new(Some(&dir));
        assert_eq!(files.line("/m.py", 2), Some("second"));
        assert_eq!(files.line("/m.py", 3), None);
        assert_eq!(files.line("/m.py", 0), None);
        assert_eq!(files.line("m.py", 1), None);
        assert_eq!(files.line("<frozen os>", 1), None);
        // A directory is no source file.
        assert_eq!(files.line("/", 1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
