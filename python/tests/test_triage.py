"""`pymortem.triage`: many cores in parallel, each with its signature."""

from __future__ import annotations

import shutil
from collections import defaultdict

import pytest

import pymortem
from conftest import MANIFEST, need_matrix


def host_entries(scenarios):
    """Kernel and gdb cores of interpreters on the host (no sysroot needed)."""
    if MANIFEST is None:
        return None
    return [
        e
        for e in MANIFEST
        if e["arch"] == "x86_64" and not e.get("sysroot") and e["scenario"] in scenarios
        and e["interp"] in ("pyenv-3.9.18", "pyenv-3.12.1")
    ]


def test_triage_groups_cores(tmp_path):
    chosen = host_entries({"double_free", "threads"})
    if chosen is None:
        need_matrix(None)
    garbage = tmp_path / "garbage.core"
    garbage.write_bytes(b"\x7fELF" + b"\0" * 100)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a core")
    paths = [e["core"] for e in chosen] + [str(garbage), str(notes)]
    results = pymortem.triage(paths, jobs=2)
    assert len(results) == len(paths)
    results = list(results)
    assert sorted(str(r.path) for r in results) == sorted(paths)
    by_path = {str(r.path): r for r in results}
    assert not by_path[str(garbage)].ok
    assert by_path[str(garbage)].error or by_path[str(garbage)].skipped
    signatures = defaultdict(set)
    for e in chosen:
        r = by_path[e["core"]]
        assert r.ok, r
        assert r.signature.startswith("v1:")
        assert r.python_version == e["python_version"]
        assert r.signal == "SIGABRT"
        signatures[(e["interp"], e["scenario"])].add(r.signature)
    # A gdb core of the same crash groups with the kernel's.
    assert all(len(s) == 1 for s in signatures.values()), signatures
    # Different crashes do not.
    assert len({next(iter(s)) for s in signatures.values()}) == len(signatures)
    double_free = [by_path[e["core"]] for e in chosen if e["scenario"] == "double_free"]
    assert all(r.verdict == "corrupt" for r in double_free)
    assert all("free_list_cycle" in r.finding_kinds for r in double_free)


def test_triage_of_a_folder(tmp_path):
    chosen = host_entries({"threads"})
    if chosen is None:
        need_matrix(None)
    for i, e in enumerate(chosen[:2]):
        shutil.copy(e["core"], tmp_path / f"core.{i}")
    results = list(pymortem.triage([tmp_path], jobs=1, no_checks=True))
    assert len(results) == 2
    assert all(r.ok and r.verdict is None for r in results)


def test_triage_iterator_dropped_early():
    chosen = host_entries({"double_free", "threads"})
    if chosen is None:
        need_matrix(None)
    results = pymortem.triage([e["core"] for e in chosen], jobs=1)
    first = next(results)
    assert first.ok
    del results  # the workers stop starting cores; nothing hangs
    again = list(pymortem.triage([chosen[0]["core"]], jobs=1))
    assert [r.signature for r in again] and again[0].ok
