//! Crash signatures, version 1: what makes two crashes "the same".
//!
//! A signature is built from, in order:
//! 1. the crash kind: `fatal: <message>` when the crashing thread died in a
//!    CPython fatal-error function with a known message (digits and hex
//!    numbers replaced by `#`), else `signal: <name>`;
//! 2. the top [`TOP_FRAMES`] Python frames of the crashing thread, innermost
//!    first, as `function (file name)`, without line numbers;
//! 3. the top [`TOP_FRAMES`] native frames, innermost first, with glibc's
//!    abort, raise and kill frames and signal trampolines dropped, GCC's clone
//!    suffixes (`.cold`, `.constprop.0`, …) removed, and `build-id+offset`
//!    (or `module+offset`) for a frame with no symbol, so unsymbolized stacks
//!    stay apart;
//! 4. the kinds of the error and warning findings of `check`, sorted.
//!
//! The lines are joined into the signature's text; its id is `v1:` and the
//! first 16 hex digits of the text's FNV-1a 64-bit hash.

use crate::stacks::StackFrame;
use crate::unwind::NativeFrame;

/// The signature algorithm's version; part of every id.
pub const SIGNATURE_VERSION: u32 = 1;
/// Python and native frames taken, each.
pub const TOP_FRAMES: usize = 5;

/// glibc frames on the way from `abort()` or a re-raised signal to the kernel:
/// the same in every crash, so they say nothing about this one.
const DROPPED: [&str; 12] = [
    "abort",
    "raise",
    "gsignal",
    "__pthread_kill_implementation",
    "__pthread_kill_internal",
    "__pthread_kill",
    "pthread_kill",
    "__restore_rt",
    "kill",
    "__kill",
    "killpg",
    "__libc_signal_restore_set",
];

/// A function name without GCC's clone suffixes and glibc's `__GI_` prefix.
pub fn normalize_function(name: &str) -> &str {
    let name = name.strip_prefix("__GI_").unwrap_or(name);
    name.split('.').next().unwrap_or(name)
}

/// A native frame as the signature names it, or `None` when it is dropped.
pub fn native_frame_name(frame: &NativeFrame) -> Option<String> {
    if frame.signal_frame {
        return None;
    }
    match &frame.function {
        Some(f) => {
            let name = normalize_function(f);
            (!DROPPED.contains(&name)).then(|| name.to_string())
        }
        None => {
            let place = frame
                .build_id
                .as_deref()
                .map(|b| b.get(..16).unwrap_or(b).to_string())
                .or_else(|| frame.module.clone())
                .unwrap_or_else(|| "?".into());
            Some(match frame.module_offset {
                Some(o) => format!("{place}+{o:#x}"),
                None => format!("{place}@{:#x}", frame.address.address()),
            })
        }
    }
}

/// The top Python and native frame names of a merged stack.
pub fn top_frames(frames: &[StackFrame]) -> (Vec<String>, Vec<String>) {
    let python = frames
        .iter()
        .filter_map(|f| match f {
            StackFrame::Python(p) => Some(format!("{} ({})", p.function, basename(&p.file))),
            StackFrame::Native(_) => None,
        })
        .take(TOP_FRAMES)
        .collect();
    let native = frames
        .iter()
        .filter_map(|f| match f {
            StackFrame::Native(n) => native_frame_name(n),
            StackFrame::Python(_) => None,
        })
        .take(TOP_FRAMES)
        .collect();
    (python, native)
}

/// `fatal: <message>` with numbers masked, or `signal: <name>`.
pub fn crash_kind(fatal_error: Option<&str>, signal: Option<&str>) -> String {
    match (fatal_error, signal) {
        (Some(m), _) => format!("fatal: {}", mask_numbers(m)),
        (None, Some(s)) => format!("signal: {s}"),
        (None, None) => "unknown".into(),
    }
}

/// The signature's text and id.
pub fn signature(
    crash_kind: &str,
    python: &[String],
    native: &[String],
    finding_kinds: &[String],
) -> (String, String) {
    let text = format!(
        "{crash_kind}\npython: {}\nnative: {}\nfindings: {}",
        python.join(" < "),
        native.join(" < "),
        finding_kinds.join(", ")
    );
    let id = format!("v{SIGNATURE_VERSION}:{:016x}", fnv1a(text.as_bytes()));
    (text, id)
}

/// The parts of a crash a signature is computed from, as a crash database
/// keeps them: with these, crashes recorded under an older algorithm are
/// grouped again without reading their cores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParts {
    /// The fatal error's message (unmasked), if any.
    pub fatal_error: Option<String>,
    /// The signal's name, if any.
    pub signal: Option<String>,
    /// The top Python frames, as [`top_frames`] names them.
    pub python_frames: Vec<String>,
    /// The top native frames, as [`top_frames`] names them.
    pub native_frames: Vec<String>,
    /// The finding kinds, sorted.
    pub finding_kinds: Vec<String>,
}

/// The current algorithm's (text, id) from stored parts, or `None` when it
/// needs more than they hold (the core must then be read again). Version 1
/// is computed from exactly these parts, so it is always `Some`; a later
/// version that takes more frames, or other facts, returns `None` for parts
/// stored by an older one that lack them.
pub fn from_parts(parts: &SignatureParts) -> Option<(String, String)> {
    let kind = crash_kind(parts.fatal_error.as_deref(), parts.signal.as_deref());
    Some(signature(
        &kind,
        &parts.python_frames,
        &parts.native_frames,
        &parts.finding_kinds,
    ))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Digits and `0x…` numbers become `#`: addresses and counts vary between crashes.
fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_and_ids_are_stable() {
        assert_eq!(
            mask_numbers("bad object 0x7f00aa at slot 12"),
            "bad object # at slot #"
        );
        let (text, id) = signature("signal: SIGSEGV", &["f (a.py)".into()], &[], &[]);
        assert!(text.starts_with("signal: SIGSEGV\npython: f (a.py)"));
        assert_eq!(
            id,
            signature("signal: SIGSEGV", &["f (a.py)".into()], &[], &[]).1
        );
        assert_ne!(
            id,
            signature("signal: SIGSEGV", &["g (a.py)".into()], &[], &[]).1
        );
        assert!(id.starts_with("v1:") && id.len() == 19);
    }

    #[test]
    fn clone_suffixes_and_glibc_prefixes_go() {
        assert_eq!(normalize_function("fatal_error.cold"), "fatal_error");
        assert_eq!(normalize_function("__GI_abort"), "abort");
        assert_eq!(normalize_function("x.constprop.0"), "x");
    }
}
