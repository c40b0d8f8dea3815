//! How wide text output may be.
//!
//! On a terminal, tables and lines fit its width; `COLUMNS` overrides the
//! width (on a terminal or not, so a script can ask for 80 columns). Piped
//! without `COLUMNS`, nothing is shortened or wrapped: every path and
//! build-id stays whole on its line, for grep. Trailing blanks are never
//! written.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// Narrower than this, wrapping makes text harder to read, not easier.
const MIN_WIDTH: usize = 40;

/// The width text output must fit, or `None` for no limit.
pub fn output_width() -> Option<usize> {
    static WIDTH: OnceLock<Option<usize>> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&c| c > 0);
        columns.or_else(terminal_width).map(|w| w.max(MIN_WIDTH))
    })
}

/// The terminal's width when stdout is one.
fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Columns a string takes on a terminal (every character is one column but
/// wide East Asian ones; close enough for wrapping, and tables measure
/// themselves).
pub fn columns(text: &str) -> usize {
    text.chars().count()
}

/// A build-id shortened to a prefix that still tells builds apart.
pub fn short_build_id(id: &str) -> String {
    const PREFIX: usize = 12;
    if columns(id) <= PREFIX + 1 {
        id.to_string()
    } else {
        let prefix: String = id.chars().take(PREFIX).collect();
        format!("{prefix}…")
    }
}

/// Every line without trailing blanks and, with a width, wrapped to it at
/// blanks, the continuation indented under the line's own indent plus four.
/// A word longer than the width is cut.
pub fn fit(text: &str, width: Option<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let body = body.trim_end();
        match width {
            Some(w) if columns(body) > w => wrap_line(&mut out, body, w),
            _ => out.push_str(body),
        }
        out.push_str(newline);
    }
    out
}

fn wrap_line(out: &mut String, line: &str, width: usize) {
    let indent_len = line.len() - line.trim_start_matches(' ').len();
    // A deep indent would leave no room: continuation lines then start at 4.
    let continuation = if indent_len + 4 <= width / 2 {
        indent_len + 4
    } else {
        4
    };
    let pad = " ".repeat(continuation);
    let mut current = String::from(&line[..indent_len]);
    let mut current_cols = indent_len;
    let mut at_line_start = true;
    // Each word with the blanks before it: blanks inside a line (aligned
    // columns) are kept, blanks at a break are dropped.
    let mut rest = &line[indent_len..];
    while !rest.is_empty() {
        let gap_len = rest.len() - rest.trim_start_matches(' ').len();
        let word_len = rest[gap_len..].find(' ').unwrap_or(rest.len() - gap_len);
        let (gap, word) = (&rest[..gap_len], &rest[gap_len..gap_len + word_len]);
        rest = &rest[gap_len + word_len..];
        let word_cols = columns(word);
        if !at_line_start && current_cols + gap.len() + word_cols > width {
            out.push_str(current.trim_end());
            out.push('\n');
            current = pad.clone();
            current_cols = continuation;
        } else if !at_line_start {
            current.push_str(gap);
            current_cols += gap.len();
        }
        at_line_start = false;
        // Cut a word that cannot fit on a line of its own (in one pass: a
        // string from the core may be long).
        let chars: Vec<char> = word.chars().collect();
        let mut start = 0;
        while current_cols + (chars.len() - start) > width {
            let room = width.saturating_sub(current_cols).max(1);
            let end = (start + room).min(chars.len());
            current.extend(&chars[start..end]);
            start = end;
            out.push_str(current.trim_end());
            out.push('\n');
            current = pad.clone();
            current_cols = continuation;
        }
        current_cols += chars.len() - start;
        current.extend(&chars[start..]);
    }
    out.push_str(current.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_strips_trailing_blanks_and_keeps_lines_without_a_width() {
        let text = "a  \n  b c   \n\nlast ";
        assert_eq!(fit(text, None), "a\n  b c\n\nlast");
    }

    #[test]
    fn fit_wraps_at_blanks_under_the_indent() {
        let text = "  one two three four five six\n";
        let out = fit(text, Some(14));
        for line in out.lines() {
            assert!(columns(line) <= 14, "{line:?}");
        }
        assert_eq!(out, "  one two\n      three\n      four\n      five six\n");
    }

    #[test]
    fn fit_keeps_aligned_blanks_inside_a_line() {
        let out = fit("Core:       /a/long/path (12 bytes)", Some(26));
        assert_eq!(out, "Core:       /a/long/path\n    (12 bytes)");
    }

    #[test]
    fn fit_cuts_a_word_longer_than_the_width() {
        let long = "x".repeat(30);
        let out = fit(&format!("see {long}"), Some(12));
        for line in out.lines() {
            assert!(columns(line) <= 12, "{line:?}");
        }
        assert_eq!(out.replace(['\n', ' '], ""), format!("see{long}"));
    }

    #[test]
    fn a_very_long_word_is_cut_into_full_lines() {
        let long = "y".repeat(200_000);
        let out = fit(&long, Some(80));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.iter().all(|l| columns(l) <= 80));
        assert_eq!(out.replace(['\n', ' '], ""), long);
        // 80 on the first line, 76 after the 4-column indent.
        assert_eq!(lines.len(), 1 + (200_000 - 80usize).div_ceil(76));
    }

    #[test]
    fn a_build_id_keeps_a_prefix() {
        assert_eq!(short_build_id("93ac61ec5a8eb1396f9f"), "93ac61ec5a8e…");
        assert_eq!(short_build_id("93ac61ec5a"), "93ac61ec5a");
    }
}
