//! The test set-up itself: the README's test command is the one CI runs and
//! it requires the generated matrix; without the matrix the tests that need
//! it return early and the run says so once, or fail when it is required;
//! the tests leave nothing in the temp dir.
//!
//! Each case runs this test binary again on a few of its own tests, with
//! the environment under test.

use std::path::Path;
use std::process::{Command, Output};

use crate::support;

/// The first command of the README's "Run the tests" block.
fn readme_test_command() -> String {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Run the tests\n")
        .nth(1)
        .expect("README.md has a \"## Run the tests\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a sh block");
    block
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .expect("the block holds a command")
        .to_string()
}

#[test]
fn ci_runs_the_readme_test_command_which_requires_the_matrix() {
    let command = readme_test_command();
    let ci = std::fs::read_to_string(support::repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|line| line.trim() == command),
        ".ci/run does not run the README's test command `{command}`:\n{ci}"
    );
    assert_eq!(command, support::FULL_TEST_COMMAND);
    let script = std::fs::read_to_string(support::repo().join(&command)).unwrap();
    assert!(
        script.contains("PYMORTEM_REQUIRE_MATRIX=1 cargo test --locked"),
        "{command} must run the tests with PYMORTEM_REQUIRE_MATRIX=1"
    );
}

/// Run this test binary on the tests `filter` selects, with `env` set (and
/// `PYMORTEM_REQUIRE_MATRIX` unset unless `env` sets it).
fn run_tests(filter: &str, env: &[(&str, &Path)], require: bool) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([filter, "--test-threads", "2"])
        .env_remove("PYMORTEM_REQUIRE_MATRIX");
    if require {
        command.env("PYMORTEM_REQUIRE_MATRIX", "1");
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// How many tests libtest says passed and failed.
fn counts(stdout: &str) -> (usize, usize) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or_else(|| panic!("no test result line in\n{stdout}"));
    let number_before = |word: &str| -> usize {
        let head = &line[..line.find(word).unwrap()];
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    (number_before(" passed"), number_before(" failed"))
}

#[test]
fn without_the_matrix_its_tests_return_and_the_run_says_so_once() {
    let empty = tempfile::tempdir().unwrap();
    // `symbols::` holds two tests, both on generated cores.
    let out = run_tests("symbols::", &[("PYMORTEM_CORES", empty.path())], false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(counts(&stdout), (2, 0), "{stdout}");
    assert_eq!(
        stderr.matches("NOTE:").count(),
        1,
        "the note, once:\n{stderr}"
    );
    assert!(
        stderr.contains(
            "2 tests that need the generated sample cores did not run (counted as passed above)"
        ) && stderr.contains(support::FULL_TEST_COMMAND),
        "{stderr}"
    );
}

#[test]
fn without_the_matrix_its_tests_fail_when_it_is_required() {
    let empty = tempfile::tempdir().unwrap();
    let out = run_tests("symbols::", &[("PYMORTEM_CORES", empty.path())], true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(counts(&stdout), (0, 2), "{stdout}");
    assert!(
        stdout.contains("PYMORTEM_REQUIRE_MATRIX=1"),
        "the failure names the variable: {stdout}"
    );
}

#[test]
fn tests_leave_nothing_in_the_temp_dir() {
    let tmp = tempfile::tempdir().unwrap();
    // Synthetic cores through the CLI: the tests' private layout cache is
    // made, and must be gone when the binary exits.
    let out = run_tests("free_threaded::", &[("TMPDIR", tmp.path())], false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let (passed, _) = counts(&stdout);
    assert!(passed >= 1, "no free_threaded test ran: {stdout}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the temp dir: {left:?}");
}
