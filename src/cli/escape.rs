//! Strings read from a core are hostile: a Python `str`, a file name or a
//! thread name may hold `ESC ]0;…BEL` (retitle the terminal), `ESC [2J`
//! (clear it) or a newline that forges a traceback line. Text output shows
//! them escaped, as Python's `repr` shows a string (without the quotes);
//! JSON keeps them exact (serde escapes them).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// Displays a string with every control character escaped: `\n`, `\r`,
/// `\t`, `\xNN`, `\uNNNN`.
pub struct Escaped<'a>(&'a str);

/// `text` shown with its control characters escaped.
pub fn esc(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// A path from a core, escaped (lossily decoded when not UTF-8).
pub fn esc_path(path: &Path) -> String {
    esc(&path.to_string_lossy()).to_string()
}

/// Characters a terminal acts on or that reorder what it shows: C0 and C1
/// controls, DEL, and the bidirectional and line-separator format characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn write_escaped(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32),
        c => write!(f, "\\u{:04x}", c as u32),
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write_escaped(f, c)?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// The last line of defence for a whole rendered text: every control
/// character but the line breaks the renderer wrote itself is escaped, so a
/// field a renderer forgot to escape can still not drive the terminal.
pub fn terminal_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && needs_escape(c) {
            let _ = write_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A CSV field: quoted, control characters escaped, and a leading `=`, `+`,
/// `-` or `@` (which spreadsheets run as a formula) behind a single quote.
pub fn csv_field(text: &str) -> String {
    let escaped = esc(text).to_string();
    let guard = if escaped.starts_with(['=', '+', '-', '@']) {
        "'"
    } else {
        ""
    };
    format!("\"{guard}{}\"", escaped.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python_repr() {
        let hostile = "a\x1b]0;pwned\x07b\x1b[2J\nFile \"x\"\r\t\u{9b}\u{202e}\u{7f}é";
        assert_eq!(
            esc(hostile).to_string(),
            "a\\x1b]0;pwned\\x07b\\x1b[2J\\nFile \"x\"\\r\\t\\x9b\\u202e\\x7fé"
        );
        assert_eq!(esc("plain/path.py").to_string(), "plain/path.py");
    }

    #[test]
    fn terminal_text_keeps_only_line_breaks() {
        assert_eq!(terminal_text("a\nb\x1b[2J\t"), "a\nb\\x1b[2J\\t");
        assert!(matches!(terminal_text("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn csv_fields_cannot_be_formulas() {
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
        assert_eq!(csv_field("+1"), "\"'+1\"");
        assert_eq!(csv_field("-2"), "\"'-2\"");
        assert_eq!(csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_field("a\"b\nc"), "\"a\"\"b\\nc\"");
        assert_eq!(csv_field("ok"), "\"ok\"");
    }
}
