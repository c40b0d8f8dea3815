//! The committed sample cores (`sample-cores/samples/`), ready to open: the
//! doctests and examples run on them. Not part of the API.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use crate::process::Options;

/// A committed sample core with what opening it needs.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The compressed core.
    pub core: PathBuf,
    /// Options with its unpacked sysroot and debug directories.
    pub options: Options,
    /// The truth file its process wrote before it died.
    pub truth: serde_json::Value,
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-cores/samples")
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::io(path, std::io::Error::other(reason.into()))
}

/// The committed sample `name` (as in `sample-cores/samples/manifest.json`),
/// its sysroot unpacked once into `target/doc-samples/`.
pub fn sample(name: &str) -> Result<Sample, Error> {
    let dir = samples_dir();
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(&manifest_path, e.to_string()))?;
    let entry = manifest
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .ok_or_else(|| invalid(&manifest_path, format!("no sample named {name}")))?;
    let field = |key: &str| {
        entry[key]
            .as_str()
            .map(|s| dir.join(s))
            .ok_or_else(|| invalid(&manifest_path, format!("{name}: no {key}")))
    };
    let sysroot = unpack(&field("sysroot_tar_zst")?, name)?;
    let mut options = Options::default().sysroot(&sysroot);
    for d in entry["debug_dirs_in_sysroot"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(d) = d.as_str() {
            options = options.debug_dir(sysroot.join(d.trim_start_matches('/')));
        }
    }
    let truth_path = field("truth")?;
    let truth_text = std::fs::read_to_string(&truth_path).map_err(io(&truth_path))?;
    Ok(Sample {
        core: field("core_zst")?,
        options,
        truth: serde_json::from_str(&truth_text)
            .map_err(|e| invalid(&truth_path, e.to_string()))?,
    })
}

/// Unpack `tar` into `target/doc-samples/NAME` unless done already; tests
/// run in parallel, so each unpacks into a folder of its own and renames it.
fn unpack(tar: &Path, name: &str) -> Result<PathBuf, Error> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/doc-samples");
    let dest = base.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&base).map_err(io(&base))?;
    let scratch = tempfile::tempdir_in(&base).map_err(io(&base))?;
    let status = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(scratch.path())
        .status()
        .map_err(io(tar))?;
    if !status.success() {
        return Err(invalid(tar, format!("tar failed: {status}")));
    }
    let unpacked = scratch.keep();
    if std::fs::rename(&unpacked, &dest).is_err() {
        // Another test won the race: use its copy.
        let _ = std::fs::remove_dir_all(&unpacked);
    }
    Ok(dest)
}
