//! Which CPython the process ran.
//!
//! Strategies, in order: the exported `Py_Version` constant (3.11+), the
//! `_Py_DebugOffsets` header at the start of `_PyRuntime` (3.13+), the
//! `Py_GetVersion` buffer (a local static in getversion.c), a scan of the
//! interpreter's writable data for that buffer or the debug-offsets cookie,
//! and last the libpython file name, which gives only major.minor.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::corefile::CoreFile;
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::memory::{Memory, MemoryExt};
use crate::modules::{Module, ModuleKind, ModuleSet};

/// The cookie at the start of `_Py_DebugOffsets`.
pub const DEBUG_OFFSETS_COOKIE: &[u8; 8] = b"xdebugpy";
/// Bytes scanned per module when symbols are missing.
const MAX_SCAN_BYTES: u64 = 64 << 20;

/// A CPython version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PythonVersion {
    /// 2 or 3.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Micro version; `None` when only major.minor is known.
    pub micro: Option<u8>,
    /// Release level: 0xA alpha, 0xB beta, 0xC candidate, 0xF final.
    pub level: u8,
    /// Serial of a pre-release.
    pub serial: u8,
}

impl PythonVersion {
    /// Decode `PY_VERSION_HEX`.
    pub fn from_hex(hex: u64) -> Option<PythonVersion> {
        let v = PythonVersion {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            micro: Some((hex >> 8) as u8),
            level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        };
        (hex >> 32 == 0 && v.plausible() && matches!(v.level, 0xa | 0xb | 0xc | 0xf)).then_some(v)
    }

    /// Parse the start of a version string such as `3.11.7 (main, …)` or `3.14.0rc1+`.
    pub fn parse(text: &str) -> Option<PythonVersion> {
        let end = text.find([' ', '\n', '+']).unwrap_or(text.len());
        let head = &text[..end];
        let mut parts = head.splitn(3, '.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: u8 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let micro: u8 = rest[..digits].parse().ok()?;
        let suffix = &rest[digits..];
        let (level, serial) = match suffix {
            "" => (0xf, 0),
            s => {
                let (level, num) = if let Some(n) = s.strip_prefix("rc") {
                    (0xc, n)
                } else if let Some(n) = s.strip_prefix('a') {
                    (0xa, n)
                } else if let Some(n) = s.strip_prefix('b') {
                    (0xb, n)
                } else {
                    return None;
                };
                (level, num.parse().ok()?)
            }
        };
        let v = PythonVersion {
            major,
            minor,
            micro: Some(micro),
            level,
            serial,
        };
        v.plausible().then_some(v)
    }

    fn plausible(&self) -> bool {
        matches!((self.major, self.minor), (2, 0..=7) | (3, 0..=30))
    }

    /// `(major, minor)`.
    pub fn major_minor(&self) -> (u8, u8) {
        (self.major, self.minor)
    }
}

impl fmt::Display for PythonVersion {
    /// Formats like `platform.python_version()`: `3.11.7`, `3.14.0rc1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(micro) = self.micro {
            write!(f, ".{micro}")?;
            match self.level {
                0xa => write!(f, "a{}", self.serial)?,
                0xb => write!(f, "b{}", self.serial)?,
                0xc => write!(f, "rc{}", self.serial)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// How the version was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum VersionSource {
    /// The `Py_Version` constant (3.11+).
    PyVersionSymbol,
    /// `_Py_DebugOffsets.version` at `_PyRuntime` (3.13+).
    DebugOffsets,
    /// The `Py_GetVersion` buffer found by its symbol.
    VersionString,
    /// The `Py_GetVersion` buffer found by scanning writable data.
    VersionStringScan,
    /// The `_Py_DebugOffsets` cookie found by scanning writable data.
    DebugOffsetsScan,
    /// The libpython file name (major.minor only).
    LibraryName,
}

/// The detected interpreter.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The version.
    pub version: PythonVersion,
    /// How it was found.
    pub source: VersionSource,
    /// The module that holds the interpreter (libpython or the executable).
    pub module: String,
    /// Address the version was read from, if it was read from memory.
    pub address: Option<u64>,
    /// The full `sys.version` text, when the version buffer was read.
    pub build_string: Option<String>,
    /// What shows that the interpreter is a free-threaded build (3.13t+),
    /// whose object layout pymortem does not read yet; `None` for a default build.
    pub free_threaded: Option<String>,
}

impl VersionInfo {
    /// `3.13t` for a free-threaded build, `3.13` otherwise.
    pub fn build_name(&self) -> String {
        let v = self.version;
        let t = if self.free_threaded.is_some() {
            "t"
        } else {
            ""
        };
        format!("{}.{}{t}", v.major, v.minor)
    }
}

/// Detect the CPython version; `None` when this does not look like CPython.
pub fn detect(
    core: &CoreFile,
    memory: &impl Memory,
    modules: &ModuleSet,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<VersionInfo> {
    let candidates = interpreter_candidates(modules);
    let name_hint = candidates
        .iter()
        .find_map(|m| version_from_library_name(m.name()));
    let info = find_version(core, memory, &candidates, name_hint, diagnostics)?;
    Some(VersionInfo {
        free_threaded: free_threaded_evidence(core, memory, &candidates, &info),
        ..info
    })
}

fn find_version(
    core: &CoreFile,
    memory: &impl Memory,
    candidates: &[Arc<Module>],
    name_hint: Option<PythonVersion>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<VersionInfo> {
    for module in candidates {
        if let Some(info) = from_symbols(memory, module).or_else(|| from_scan(core, module)) {
            if let Some(hint) = name_hint.filter(|h| h.major_minor() != info.version.major_minor())
            {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticSource::Python,
                    format!(
                        "the library name says {hint} but {} says {}",
                        info.module, info.version
                    ),
                ));
            }
            return Some(info);
        }
    }
    let module = candidates
        .iter()
        .find(|m| version_from_library_name(m.name()).is_some())?;
    diagnostics.push(Diagnostic::warning(
        DiagnosticSource::Python,
        format!(
            "only the major.minor version is known, from the name {}; the micro version needs \
             symbols (--debug-dir) or a readable version buffer",
            module.name()
        ),
    ));
    Some(VersionInfo {
        version: name_hint?,
        source: VersionSource::LibraryName,
        module: module.recorded_path.clone(),
        address: None,
        build_string: None,
        free_threaded: None,
    })
}

/// Why the interpreter is a free-threaded build, if it is: the
/// `_Py_DebugOffsets.free_threaded` flag (3.13+), the `t` flag in the
/// library's or executable's name (`libpython3.13t.so.1.0`, `python3.13t`),
/// or the build string (`experimental free-threading build`).
fn free_threaded_evidence(
    core: &CoreFile,
    memory: &impl Memory,
    candidates: &[Arc<Module>],
    info: &VersionInfo,
) -> Option<String> {
    // Only 3.13+ begin `_PyRuntime` with `_Py_DebugOffsets`; its cookie
    // says whether this one does, so no version test is needed.
    if let Some(module) = candidates.iter().find(|m| m.recorded_path == info.module)
        && let Some((addr, _)) = super::runtime_address::find(core, memory, module)
        && read_debug_offsets_version(memory, addr).is_some()
        && let Ok(flag) = memory.read_u64(addr.wrapping_add(16))
        && flag != 0
    {
        return Some(format!(
            "_Py_DebugOffsets.free_threaded = {flag} at {:#x}",
            addr + 16
        ));
    }
    if let Some(module) = candidates.iter().find(|m| has_t_flag(m.name())) {
        return Some(format!("the interpreter's file is named {}", module.name()));
    }
    info.build_string
        .as_deref()
        .filter(|s| s.contains("free-threading build"))
        .map(|s| {
            format!(
                "sys.version says \"{}\"",
                s.lines().next().unwrap_or(s).trim()
            )
        })
}

/// Whether a file name carries CPython's `t` ABI flag: `libpython3.13t.so.1.0`,
/// `libpython3.14td.so`, `python3.13t`.
pub fn has_t_flag(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))
    else {
        return false;
    };
    let digits = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    // At least `3.13`: the flags follow the version.
    if !rest[..digits].contains('.') {
        return false;
    }
    let flags = &rest[digits..];
    let flags = flags.split('.').next().unwrap_or("");
    flags.chars().all(|c| matches!(c, 'd' | 'm' | 't')) && flags.contains('t')
}

/// libpython modules first, then the executable (Debian links libpython statically).
fn interpreter_candidates(modules: &ModuleSet) -> Vec<Arc<Module>> {
    let mut out: Vec<Arc<Module>> = modules
        .modules()
        .iter()
        .filter(|m| m.name().starts_with("libpython"))
        .cloned()
        .collect();
    out.extend(modules.executable().cloned());
    out
}

/// `libpython3.11.so.1.0`, `libpython3.7m.so.1.0`, `libpython3.13t.so` → major.minor.
pub fn version_from_library_name(name: &str) -> Option<PythonVersion> {
    let rest = name.strip_prefix("libpython")?;
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let mut parts = rest[..end].trim_end_matches('.').splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    let minor = minor_text.split('.').next()?.parse().ok()?;
    let v = PythonVersion {
        major,
        minor,
        micro: None,
        level: 0xf,
        serial: 0,
    };
    v.plausible().then_some(v)
}

fn from_symbols(memory: &impl Memory, module: &Module) -> Option<VersionInfo> {
    let info = |version, source, address, build_string| VersionInfo {
        version,
        source,
        module: module.recorded_path.clone(),
        address: Some(address),
        build_string,
        free_threaded: None,
    };
    if let Some(addr) = module.symbol_address("Py_Version", None)
        && let Some(v) = memory
            .read_u32(addr)
            .ok()
            .and_then(|hex| PythonVersion::from_hex(hex.into()))
    {
        return Some(info(v, VersionSource::PyVersionSymbol, addr, None));
    }
    if let Some(addr) = module.symbol_address("_PyRuntime", None)
        && let Some(v) = read_debug_offsets_version(memory, addr)
    {
        return Some(info(v, VersionSource::DebugOffsets, addr, None));
    }
    let buffer = ["version.0", "version"]
        .iter()
        .find_map(|name| module.symbol_address(name, Some("getversion.c")));
    if let Some(addr) = buffer
        && let Ok(bytes) = memory.read_cstr(addr, 320)
    {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(v) = PythonVersion::parse(&text) {
            return Some(info(v, VersionSource::VersionString, addr, Some(text)));
        }
    }
    None
}

/// `_Py_DebugOffsets`: the cookie at +0 and `PY_VERSION_HEX` at +8.
pub fn read_debug_offsets_version(memory: &impl Memory, addr: u64) -> Option<PythonVersion> {
    let mut header = [0u8; 16];
    memory.read_exact_at(addr, &mut header).ok()?;
    if &header[..8] != DEBUG_OFFSETS_COOKIE {
        return None;
    }
    PythonVersion::from_hex(u64::from_le_bytes(header[8..16].try_into().ok()?))
}

/// Scan the module's writable segments stored in the core.
fn from_scan(core: &CoreFile, module: &Module) -> Option<VersionInfo> {
    if module.kind == ModuleKind::Vdso {
        return None;
    }
    for (vaddr, bytes) in core.writable_bytes_in(module.base, module.end, MAX_SCAN_BYTES) {
        let found = scan_debug_offsets(bytes)
            .map(|(off, v)| (off, v, VersionSource::DebugOffsetsScan, None))
            .or_else(|| {
                scan_version_string(bytes)
                    .map(|(off, v, s)| (off, v, VersionSource::VersionStringScan, Some(s)))
            });
        if let Some((offset, version, source, build_string)) = found {
            return Some(VersionInfo {
                version,
                source,
                module: module.recorded_path.clone(),
                address: Some(vaddr + offset as u64),
                build_string,
                free_threaded: None,
            });
        }
    }
    None
}

fn scan_debug_offsets(bytes: &[u8]) -> Option<(usize, PythonVersion)> {
    let mut offset = 0;
    while let Some(pos) = find(&bytes[offset..], DEBUG_OFFSETS_COOKIE) {
        let at = offset + pos;
        if at % 8 == 0 {
            let hex = bytes
                .get(at + 8..at + 16)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            if let Some(v) = hex.and_then(PythonVersion::from_hex) {
                return Some((at, v));
            }
        }
        offset = at + 1;
    }
    None
}

/// Find the `Py_GetVersion` text: `3.8.18 (default, …) \n[GCC 12.2.0]`.
fn scan_version_string(bytes: &[u8]) -> Option<(usize, PythonVersion, String)> {
    for marker in [&b"[GCC "[..], b"[Clang "] {
        let mut offset = 0;
        while let Some(pos) = find(&bytes[offset..], marker) {
            let at = offset + pos;
            let window_start = at.saturating_sub(300);
            let start = bytes[window_start..at]
                .iter()
                .rposition(|&b| b == 0)
                .map_or(window_start, |p| window_start + p + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| b == 0)
                .map_or(bytes.len(), |p| at + p)
                .min(at + 200);
            let text = String::from_utf8_lossy(&bytes[start..end]).into_owned();
            if let Some(v) = PythonVersion::parse(&text) {
                return Some((start, v, text));
            }
            offset = at + 1;
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_strings() {
        assert_eq!(
            PythonVersion::from_hex(0x030E0AF0).unwrap().to_string(),
            "3.14.10"
        );
        assert_eq!(
            PythonVersion::from_hex(0x030E00C1).unwrap().to_string(),
            "3.14.0rc1"
        );
        assert!(PythonVersion::from_hex(0xdeadbeef).is_none());
        assert_eq!(
            PythonVersion::parse("3.11.7 (main, Nov 1 2026) [GCC 12]")
                .unwrap()
                .to_string(),
            "3.11.7"
        );
        assert_eq!(
            PythonVersion::parse("2.7.18 (default)\n[GCC 12]")
                .unwrap()
                .to_string(),
            "2.7.18"
        );
        assert_eq!(
            PythonVersion::parse("3.13.0a4+ (heads)")
                .unwrap()
                .to_string(),
            "3.13.0a4"
        );
        assert!(PythonVersion::parse("hello").is_none());
    }

    #[test]
    fn library_names() {
        assert_eq!(
            version_from_library_name("libpython3.7m.so.1.0")
                .unwrap()
                .major_minor(),
            (3, 7)
        );
        assert_eq!(
            version_from_library_name("libpython3.13t.so.1.0")
                .unwrap()
                .major_minor(),
            (3, 13)
        );
        assert_eq!(
            version_from_library_name("libpython2.7.so.1.0")
                .unwrap()
                .major_minor(),
            (2, 7)
        );
        assert!(version_from_library_name("libc.so.6").is_none());
    }

    #[test]
    fn t_flags() {
        for name in ["libpython3.13t.so.1.0", "libpython3.14td.so", "python3.13t"] {
            assert!(has_t_flag(name), "{name}");
        }
        for name in [
            "libpython3.13.so.1.0",
            "libpython3.7m.so.1.0",
            "python3.13",
            "python3",
            "pythontest",
            "libpython3.so",
        ] {
            assert!(!has_t_flag(name), "{name}");
        }
    }

    #[test]
    fn scans_find_buffers() {
        let mut data = vec![0u8; 64];
        data.extend_from_slice(b"3.8.18 (default, Jan 1 2026, 00:00:00) \n[GCC 12.2.0]\0");
        let (_, v, _) = scan_version_string(&data).unwrap();
        assert_eq!(v.to_string(), "3.8.18");
        let mut data = vec![0u8; 16];
        data.extend_from_slice(DEBUG_OFFSETS_COOKIE);
        data.extend_from_slice(&0x030D00F0u64.to_le_bytes());
        assert_eq!(scan_debug_offsets(&data).unwrap().1.to_string(), "3.13.0");
    }
}
