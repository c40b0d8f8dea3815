"""One Process (and its Python and Objects) shared by many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import pymortem
from conftest import entries, label, need_matrix, open_entry, truth


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="double_free", kind="kernel")[-1:], ids=label)
def test_thread_pool_shares_one_process(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    victim = t["objects"]["victim_tuple"]
    process = open_entry(entry)

    def work(i: int):
        py = process.python()
        if i % 3 == 0:
            return ("check", victim in py.check().verdict.victims)
        if i % 3 == 1:
            stacks = {s.lwp: [(f.function, f.line) for f in s.python_frames] for s in py.stacks()}
            want = {
                th["native_id"]: [(f["function"], f.get("line")) for f in th["stack"]]
                for th in t["threads"]
            }
            return ("stacks", all(stacks[lwp] == frames for lwp, frames in want.items()))
        holder = py.object(t["objects"]["holder_list"])
        return ("object", holder[t["objects"]["holder_index"]].address == victim)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(18)))
    assert len(results) == 18
    assert all(ok for _, ok in results), results

    # Objects handed from thread to thread.
    py = process.python()
    holder = py.object(t["objects"]["holder_list"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        types = list(pool.map(lambda o: o.type_name, [holder] * 8 + list(holder)))
    assert types[:8] == ["list"] * 8
    assert types[8 + t["objects"]["holder_index"]] == "tuple"


def test_handles_are_documented():
    for cls in (pymortem.Process, pymortem.Python, pymortem.Object):
        assert cls.__doc__ and len(cls.__doc__) > 40
    assert "reference count" in pymortem.Object.refcount.__doc__
    assert pymortem.Frame.__doc__ and "kind" in pymortem.Frame.__doc__
