"""Garbage in: a `pymortem.Error` subclass out, never a crash."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import pymortem
from conftest import entries, label, need_matrix


def test_exception_hierarchy():
    for cls in (pymortem.OpenError, pymortem.NoPython, pymortem.ReadError, pymortem.WrongType):
        assert issubclass(cls, pymortem.Error)
    assert issubclass(pymortem.FreeThreaded, pymortem.NoPython)
    assert issubclass(pymortem.Error, Exception)


def test_missing_file(tmp_path):
    with pytest.raises(pymortem.OpenError) as caught:
        pymortem.open(tmp_path / "nothing-here.core")
    assert "nothing-here.core" in str(caught.value)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.core"
    empty.write_bytes(b"")
    with pytest.raises(pymortem.Error):
        pymortem.open(empty)


def test_random_bytes(tmp_path):
    rng = random.Random(22)
    for i, size in enumerate([1, 63, 64, 4096, 1 << 16]):
        path = tmp_path / f"random{i}.core"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(size)))
        with pytest.raises(pymortem.Error):
            pymortem.open(path)
    # An ELF header over random bytes.
    path = tmp_path / "elf.core"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(rng.getrandbits(8) for _ in range(8192)))
    with pytest.raises(pymortem.Error):
        pymortem.open(path)


def test_a_directory(tmp_path):
    with pytest.raises(pymortem.OpenError):
        pymortem.open(tmp_path)


def exercise(path: Path) -> str:
    """Everything the API does on `path`: 'ok' or the exception's class."""
    try:
        process = pymortem.open(path)
        process.threads, process.modules, process.signal, process.pid
        for t in process.threads:
            process.native_stack(t.lwp)
        py = process.python()
        py.stacks()
        py.free_lists()
        result = py.check()
        for obj in list(py)[:200]:
            obj.repr()
            try:
                obj.type_name, obj.kind, obj.refcount
            except pymortem.Error:
                pass
        return f"ok {result.verdict.status}"
    except pymortem.Error as e:
        return type(e).__name__


@pytest.mark.parametrize(
    "entry", entries(arch="x86_64", scenario="double_free", kind="kernel")[:2], ids=label
)
def test_truncated_core(entry, tmp_path):
    entry = need_matrix(entry)
    data = Path(entry["core"]).read_bytes()
    outcomes = []
    for fraction in (0.001, 0.05, 0.3, 0.7, 0.95):
        cut = tmp_path / f"cut{fraction}.core"
        cut.write_bytes(data[: int(len(data) * fraction)])
        # In a child process: a crash there fails the test instead of pytest.
        code = (
            "import sys; sys.path.insert(0, %r); from test_errors import exercise; "
            "print(exercise(%r))" % (str(Path(__file__).parent), str(cut))
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{fraction}: exit {run.returncode}: {run.stderr[-2000:]}"
        outcomes.append(run.stdout.strip())
    assert all(o.startswith("ok") or o in {"OpenError", "NoPython", "ReadError", "Error"} for o in outcomes), outcomes
    # The tiniest cut is no core at all.
    assert outcomes[0] != "ok", outcomes
