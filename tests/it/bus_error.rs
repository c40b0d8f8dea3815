//! A core truncated while pymortem has it mapped: the lost pages raise
//! SIGBUS, which must end the run with a message naming the file (exit 2),
//! not kill it silently.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::support;

fn mapped(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| maps.contains(&*path.to_string_lossy()))
        .unwrap_or(false)
}

#[test]
fn a_core_truncated_while_mapped_is_an_error_that_names_it() {
    if support::matrix_missing() {
        return;
    }
    let entry = support::host_threads_kernel_entry();
    let original = std::path::PathBuf::from(entry["core"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("shrinking.core");
    let mut caught_running = 0;
    for _ in 0..5 {
        std::fs::copy(&original, &core).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymortem"))
            .arg("check")
            .args(support::search_args(&entry))
            .arg(&core)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Stop it as soon as the core is mapped, cut the file, let it go on.
        while !mapped(pid, &core) && child.try_wait().unwrap().is_none() {}
        // SAFETY: kill(2) on our own child: no memory is involved.
        let stopped = unsafe { libc::kill(pid as i32, libc::SIGSTOP) } == 0
            && child.try_wait().unwrap().is_none();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&core)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        let out = child.wait_with_output().unwrap();
        if !stopped || out.status.code() == Some(0) || out.status.code() == Some(1) {
            // It had read all it needed before the cut: try again.
            continue;
        }
        caught_running += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            None,
            "killed by a signal; stderr: {stderr}"
        );
        assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
        assert!(
            stderr.contains(&*core.to_string_lossy()) && stderr.contains("shrank"),
            "the message names the file and says what happened: {stderr}"
        );
        break;
    }
    assert!(
        caught_running > 0,
        "pymortem never was still reading when the core was cut: the test proved nothing"
    );
}
