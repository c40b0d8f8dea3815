//! Bundles in tests: the committed samples, and the bare core inside one
//! for tests about a core read without its files.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The committed sample `name`'s bundle (`sample-cores/samples/NAME.pymortem`).
pub fn sample(name: &str) -> PathBuf {
    super::repo()
        .join("sample-cores/samples")
        .join(format!("{name}.pymortem"))
}

/// The committed sample `name`'s truth file.
pub fn sample_truth(name: &str) -> serde_json::Value {
    let path = super::repo()
        .join("sample-cores/samples")
        .join(format!("{name}.truth.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The decompressed tar of a bundle, read whole (the samples are small).
pub fn archive(bundle: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(bundle).unwrap())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The bytes of member `member` of a bundle.
pub fn member(bundle: &Path, member: &str) -> Vec<u8> {
    let tar = archive(bundle);
    let (members, _) = pymortem::bundle::tar::members(&tar);
    let m = members
        .iter()
        .find(|m| m.name == member)
        .unwrap_or_else(|| panic!("{}: no member {member}", bundle.display()));
    tar[m.offset..m.offset + m.len].to_vec()
}

/// A bundle's core, alone: written (plain, or zstd-compressed when `name`
/// ends in `.zst`) as `dir/name`.
pub fn extract_core(bundle: &Path, dir: &Path, name: &str) -> PathBuf {
    let core = member(bundle, "core");
    let path = dir.join(name);
    if name.ends_with(".zst") {
        std::fs::write(&path, zstd::encode_all(&core[..], 3).unwrap()).unwrap();
    } else {
        std::fs::write(&path, core).unwrap();
    }
    path
}
