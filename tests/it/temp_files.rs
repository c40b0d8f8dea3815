//! A compressed core is decompressed into a file without a name: a signal in
//! the middle of it leaves nothing in the temp dir.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A zstd stream of `gib` GiB of zeros: a few kilobytes that take seconds
/// to write out.
fn zeros_zst(gib: usize) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..gib * 1024 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn a_signal_during_decompression_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("big.core.zst");
    std::fs::write(&core, zeros_zst(4)).unwrap();
    for signal in ["INT", "TERM", "HUP"] {
        let temp = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymortem"))
            .args(["info", "--temp-dir"])
            .arg(temp.path())
            .arg(&core)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // 4 GiB take seconds to write: at 300 ms the decompression is under way.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pymortem ended before the signal: the test proves nothing"
        );
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let _ = child.wait().unwrap();
        let left: Vec<_> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

#[test]
fn max_core_size_caps_the_decompressed_core() {
    let cores = tempfile::tempdir().unwrap();
    let sample = crate::support::bundles::extract_core(
        &crate::support::bundles::sample("pyenv-3.11.7-threads"),
        cores.path(),
        "threads.core.zst",
    );
    let temp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .args(["info", "--json", "--max-core-size", "1M", "--temp-dir"])
        .arg(temp.path())
        .arg(&sample)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["core"]["size"], 1 << 20, "{report}");
    assert!(
        report["core"]["truncated"].is_object(),
        "{}",
        report["core"]
    );
    let said = report["diagnostics"].to_string();
    assert!(said.contains("--max-core-size"), "{said}");
    // A size that is no size is refused with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_pymortem"))
        .args(["info", "--max-core-size", "12Q"])
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K, M, G or T"));
}
