//! A crash's facts as the database columns hold them, shared by every
//! backend: integers as signed 64 bits, lists as JSON text.

use super::{CrashFacts, PYMORTEM_VERSION, Record};
use crate::triage::signature::SignatureParts;

/// The column list of an insert into `crashes`, in [`CrashColumns`] order.
pub(crate) const CRASH_COLUMNS: &str = "content_hash, size, recorded_at, pymortem_version, error, \
     crash_time, python_version, signal, fatal_error, signature, signature_text, \
     signature_version, finding_kinds, verdict, top_frames, host, boot_id, unchecked, \
     stack, findings, fingerprint";

/// One `crashes` row to insert.
#[derive(Debug, Clone)]
pub(crate) struct CrashColumns {
    pub content_hash: Option<String>,
    pub size: i64,
    pub recorded_at: i64,
    pub pymortem_version: &'static str,
    pub error: Option<String>,
    pub crash_time: Option<i64>,
    pub python_version: Option<String>,
    pub signal: Option<String>,
    pub fatal_error: Option<String>,
    pub signature: Option<String>,
    pub signature_text: Option<String>,
    pub signature_version: Option<i64>,
    pub finding_kinds: String,
    pub verdict: Option<String>,
    pub top_frames: String,
    pub host: Option<String>,
    pub boot_id: Option<String>,
    pub unchecked: String,
    pub stack: String,
    pub findings: String,
    pub fingerprint: Option<String>,
}

impl CrashColumns {
    pub(crate) fn of(record: &Record, facts: &CrashFacts) -> CrashColumns {
        CrashColumns {
            content_hash: record.content_hash.clone(),
            size: i64_of(record.stamp.size),
            recorded_at: now(),
            pymortem_version: PYMORTEM_VERSION,
            error: facts.error.clone(),
            crash_time: facts.time.map(i64_of),
            python_version: facts.python_version.clone(),
            signal: facts.signal.clone(),
            fatal_error: facts.fatal_error.clone(),
            signature: facts.signature.clone(),
            signature_text: facts.signature_text.clone(),
            signature_version: facts.signature_version.map(i64::from),
            finding_kinds: json_list(&facts.finding_kinds),
            verdict: facts.verdict.clone(),
            top_frames: frames_json(&facts.python_frames, &facts.native_frames),
            host: facts.host.clone(),
            boot_id: facts.boot_id.clone(),
            unchecked: json_list(&facts.unchecked),
            stack: json_list(&facts.stack),
            findings: json_list(&facts.findings),
            fingerprint: record.fingerprint.clone(),
        }
    }
}

/// A value that does not fit a signed 64-bit column is stored as the largest.
pub(crate) fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored count or time; a negative one (a damaged row) reads as 0.
pub(crate) fn u64_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// A stored JSON list; anything else (a damaged row) reads as empty.
pub(crate) fn list_of_json(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A JSON list of strings and nulls (an aggregate), nulls dropped, sorted.
pub(crate) fn sorted_strings(text: &str) -> Vec<String> {
    let mut items: Vec<String> = serde_json::from_str::<Vec<Option<String>>>(text)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    items.sort();
    items.dedup();
    items
}

/// The top frames as stored: `{"python": [...], "native": [...]}`.
pub(crate) fn frames_json(python: &[String], native: &[String]) -> String {
    serde_json::json!({"python": python, "native": native}).to_string()
}

pub(crate) fn frames_of_json(text: Option<String>) -> (Vec<String>, Vec<String>) {
    let value: serde_json::Value = text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let list = |key: &str| -> Vec<String> {
        serde_json::from_value(value[key].clone()).unwrap_or_default()
    };
    (list("python"), list("native"))
}

/// What a signature is made of, from its stored columns.
pub(crate) fn signature_parts(
    fatal_error: Option<String>,
    signal: Option<String>,
    top_frames: Option<String>,
    finding_kinds: Option<String>,
) -> SignatureParts {
    let (python_frames, native_frames) = frames_of_json(top_frames);
    SignatureParts {
        fatal_error,
        signal,
        python_frames,
        native_frames,
        finding_kinds: list_of_json(finding_kinds),
    }
}

/// Now, Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64_of(d.as_secs()))
}
