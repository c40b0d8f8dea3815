//! The committed sample cores (`sample-cores/samples/`), ready to open: the
//! doctests and examples run on them. Not part of the API.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::process::Options;

/// A committed sample core with what opening it needs.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample's bundle: the core with the files it needs.
    pub core: PathBuf,
    /// Options to open it with (the defaults: a bundle needs no sysroot).
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

/// The committed sample `name` (as in `sample-cores/samples/manifest.json`).
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
    let truth_path = field("truth")?;
    let truth_text = std::fs::read_to_string(&truth_path).map_err(io(&truth_path))?;
    Ok(Sample {
        core: field("bundle")?,
        options: Options::default(),
        truth: serde_json::from_str(&truth_text)
            .map_err(|e| invalid(&truth_path, e.to_string()))?,
    })
}
