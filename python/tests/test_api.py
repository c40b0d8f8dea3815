"""The package's shape: its names, stubs and docstrings, and the GIL."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

import pymortem
import pymortem._native as native
from conftest import entries, label, need_matrix, open_entry

STUB = Path(pymortem.__file__).with_name("_native.pyi")


def stub_names():
    tree = ast.parse(STUB.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names, {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def test_stubs_name_what_the_module_has():
    names, classes = stub_names()
    public = {n for n in dir(native) if not n.startswith("__") or n == "__version__"}
    public -= {"__all__"}
    assert {n for n in names if not n.startswith("_") or n == "__version__"} - {"_Path"} == public
    for name, node in classes.items():
        declared = {
            m.name for m in node.body if isinstance(m, ast.FunctionDef) and not m.name.startswith("__")
        }
        actual = {m for m in vars(getattr(native, name)) if not m.startswith("_")}
        assert declared == actual, name


def test_the_package_exports_and_documents():
    for name in pymortem.__all__:
        assert hasattr(pymortem, name), name
    for cls in (pymortem.Process, pymortem.Python, pymortem.Object):
        for member in dir(cls):
            if not member.startswith("_"):
                assert getattr(cls, member).__doc__, f"{cls.__name__}.{member}"
    assert Path(pymortem.__file__).with_name("py.typed").is_file()


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="busy_heap", kind="kernel")[-1:], ids=label)
def test_long_work_releases_the_gil(entry):
    entry = need_matrix(entry)
    py = open_entry(entry).python()
    done = threading.Event()
    spans = []

    def work():
        start = time.perf_counter()
        for _ in range(3):
            py.check()
            py.gc_generations()
        spans.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    spins = 0
    while not done.is_set():
        spins += 1
    thread.join()
    # With the GIL held through the walks, this thread would barely run.
    assert spins > 10_000 * max(spans[0], 0.01), (spins, spans)
