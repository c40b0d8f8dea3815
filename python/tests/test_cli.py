"""The `pymortem` command of the wheel: the binary's command line (exit
codes 0 success, 1 findings, 2 error, 3 incomplete), through
`python -m pymortem` and the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, entries, label, need_matrix, rust_build, search_args, truth


def pymortem(*args: str, script: bool = False):
    if script:
        exe = Path(sys.executable).with_name("pymortem")
        command = [str(exe), *args]
    else:
        command = [sys.executable, "-m", "pymortem", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_version_and_help():
    run = pymortem("--version")
    assert run.returncode == 0
    assert run.stdout.startswith("pymortem ")
    run = pymortem("--help", script=True)
    assert run.returncode == 0
    assert "Usage: pymortem" in run.stdout
    assert "triage" in run.stdout


def test_one_version_everywhere():
    """The command, the module, the package and the Rust crate say one version."""
    import re

    import pymortem as package

    def cargo_version(path):
        return re.search(r'^version = "([^"]+)"', path.read_text(), flags=re.M).group(1)

    root = cargo_version(ROOT / "Cargo.toml")
    assert cargo_version(ROOT / "python" / "Cargo.toml") == root
    assert re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1) == root
    assert package.__version__ == root
    assert pymortem("--version").stdout.strip() == f"pymortem {root}"


def test_bad_arguments_exit_2():
    run = pymortem("no-such-command")
    assert run.returncode == 2
    assert "pymortem" in run.stderr


def test_missing_core_exit_2(tmp_path):
    run = pymortem("info", str(tmp_path / "missing.core"))
    assert run.returncode == 2
    assert run.stdout == ""
    assert "missing.core" in run.stderr


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="threads", kind="kernel"), ids=label)
def test_threads_json_equals_truth(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    run = pymortem("threads", "--json", *search_args(entry), entry["core"], script=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    by_lwp = {th["lwp"]: th for th in report["threads"]}
    for thread in t["threads"]:
        have = [(f["function"], f["file"], f["line"]) for f in by_lwp[thread["native_id"]]["frames"]]
        assert have == [(f["function"], f["file"], f.get("line")) for f in thread["stack"]]


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="double_free", kind="kernel")[-1:], ids=label)
def test_check_exits_1_on_findings(entry):
    entry = need_matrix(entry)
    run = pymortem("check", "--json", *search_args(entry), entry["core"])
    assert run.returncode == 1, run.stderr
    victim = truth(entry)["objects"]["victim_tuple"]
    assert victim in json.loads(run.stdout)["verdict"]["victims"]


@pytest.mark.parametrize(
    "entry",
    entries(arch="x86_64", scenario="double_free", kind="kernel")[-1:]
    + entries(arch="x86_64", scenario="threads", kind="gcore")[-1:],
    ids=label,
)
def test_same_output_and_exit_code_as_the_binary(entry, tmp_path):
    entry = need_matrix(entry)
    binary = rust_build("pymortem", "PYMORTEM_BIN")
    garbage = tmp_path / "garbage.core"
    garbage.write_bytes(b"not a core")
    for args in (
        ["info", "--json", *search_args(entry), entry["core"]],
        ["threads", *search_args(entry), entry["core"]],
        ["check", "--json", *search_args(entry), entry["core"]],
        ["info", str(garbage)],
        ["threads", "--bogus"],
    ):
        ours = pymortem(*args, script=True)
        theirs = subprocess.run([binary, *args], capture_output=True, text=True, timeout=600)
        assert ours.returncode == theirs.returncode, args
        assert ours.stdout == theirs.stdout, args
        assert ours.stderr == theirs.stderr, args
