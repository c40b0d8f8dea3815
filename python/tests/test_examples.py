"""examples/python/: they run, and say what the truth says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, entries, label, need_matrix, rust_build, search_args, truth

EXAMPLES = ROOT / "examples" / "python"


def example(name, *args):
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args], capture_output=True, text=True, timeout=600
    )


def files(entry):
    return [a for a in search_args(entry) if a != "--no-default-debug-dir"]


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="double_free", kind="kernel"), ids=label)
def test_freed_tuples_names_the_victim_and_its_holder(entry):
    entry = need_matrix(entry)
    objects = truth(entry)["objects"]
    run = example("freed_tuples", entry["core"], *files(entry))
    assert run.returncode == 1, run.stderr
    assert f"freed tuple {objects['victim_tuple']:#x} on the free list of {objects['victim_size']}-tuples" in run.stdout
    assert f"held by list {objects['holder_list']:#x} item {objects['holder_index']}" in run.stdout


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="threads", kind="kernel")[:1], ids=label)
def test_freed_tuples_clean_core_exits_0(entry):
    entry = need_matrix(entry)
    run = example("freed_tuples", entry["core"], *files(entry))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("0 freed tuples still referenced")


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="double_free", kind="kernel")[-1:], ids=label)
def test_largest_containers(entry):
    entry = need_matrix(entry)
    run = example("largest_containers", entry["core"], "--top", "5", *files(entry))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "rank\tlength\ttype\taddress\tgeneration\trepr"
    assert 1 <= len(lines) - 1 <= 5
    lengths = [int(l.split("\t")[1]) for l in lines[1:]]
    assert lengths == sorted(lengths, reverse=True)


def test_distinct_stacks_groups_the_workers():
    chosen = [e for e in entries(arch="x86_64", scenario="threads") if e is None or e["interp"] == "pyenv-3.12.1"]
    entry = need_matrix(chosen[0])
    t = truth(entry)
    run = example("distinct_stacks", *[e["core"] for e in chosen])
    assert run.returncode == 0, run.stderr
    # The same crash in a kernel and a gdb core: each thread's stack twice.
    for thread in t["threads"]:
        innermost = thread["stack"][0]
        assert f"  {innermost['function']} ({innermost['file']}:{innermost['line']})" in run.stdout
    assert f"{len(chosen)} cores read, 0 failed" in run.stdout


@pytest.mark.parametrize(
    "entry",
    entries(arch="x86_64", scenario="double_free", kind="gcore")[:3]
    + entries(arch="x86_64", scenario="busy_heap", kind="kernel")[-1:],
    ids=label,
)
@pytest.mark.parametrize("name", ["freed_tuples", "largest_containers"])
def test_same_output_as_the_rust_example(entry, name):
    entry = need_matrix(entry)
    binary = rust_build(name, "PYMORTEM_EXAMPLES")
    args = [entry["core"], *files(entry)]
    ours = example(name, *args)
    theirs = subprocess.run([binary, *args], capture_output=True, text=True, timeout=600)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
