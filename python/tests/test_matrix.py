"""The API against the truth the dying processes wrote (never against
pymortem's own output)."""

from __future__ import annotations

import pytest

import pymortem
from conftest import entries, label, need_matrix, open_entry, truth

X86 = [e for e in entries(arch="x86_64") if e is None or not e["scenario"].startswith("subinterp")]
SUBINTERP = [e for e in entries(arch="x86_64") if e is None or e["scenario"].startswith("subinterp")]
DOUBLE_FREE = entries(arch="x86_64", scenario="double_free")


def frames_of(frames):
    return [(f.function, f.file, f.line) for f in frames]


def truth_frames(thread):
    return [(f["function"], f["file"], f.get("line")) for f in thread["stack"]]


@pytest.mark.parametrize("entry", X86, ids=label)
def test_stacks_equal_truth(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    process = open_entry(entry)
    py = process.python()
    assert py.version == entry["python_version"]
    stacks = {s.lwp: s for s in py.stacks()}
    assert {th["native_id"] for th in t["threads"]} <= set(stacks)
    for thread in t["threads"]:
        stack = stacks[thread["native_id"]]
        assert frames_of(stack.python_frames) == truth_frames(thread), thread["native_id"]
        assert stack.python is not None
        assert stack.python.thread_id == thread["ident"]
        # Every scenario dies in Python code run by the crashing thread,
        # which therefore holds the GIL; no other thread does.
        assert stack.python.holds_gil == (thread["ident"] == t["crash_thread_ident"])
    # The per-thread-state view agrees.
    by_lwp = {th.lwp: th for th in py.threads}
    for thread in t["threads"]:
        assert frames_of(by_lwp[thread["native_id"]].frames) == truth_frames(thread)


@pytest.mark.parametrize("entry", SUBINTERP, ids=label)
def test_subinterpreter_thread_states_equal_truth(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    py = open_entry(entry).python()
    assert len(py.interpreters) >= 2
    lwps = {s.lwp for s in py.stacks()}
    for thread in t["threads"]:
        assert thread["native_id"] in lwps


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="threads"), ids=label)
def test_process_facts_equal_truth(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    process = open_entry(entry)
    assert process.pid == t["pid"]
    assert process.signal == t["expected_signal"]
    assert process.signal_name == "SIGABRT"
    threads = {th.lwp: th for th in process.threads}
    for thread in t["threads"]:
        assert threads[thread["native_id"]].pthread_id == thread["ident"]
    crashed = [th for th in t["threads"] if th["ident"] == t["crash_thread_ident"]]
    assert [th.lwp for th in process.threads if th.crashed] == [c["native_id"] for c in crashed]
    exe = t["implementation_executable"]
    assert any(m.kind == "executable" for m in process.modules)
    assert any(m.path == exe or m.path.endswith("/" + exe.rsplit("/", 1)[-1]) for m in process.modules)
    # The crashing thread's native stack goes through the eval loop.
    native = process.native_stack(crashed[0]["native_id"])
    assert native and all(f.kind == "native" for f in native)
    assert process.native_stack(-1) is None


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="threads", kind="kernel"), ids=label)
def test_locals_equal_truth(entry):
    entry = need_matrix(entry)
    t = truth(entry)
    py = open_entry(entry).python(locals=True)
    stacks = {s.lwp: s for s in py.stacks()}
    compared = 0
    for thread in t["threads"]:
        if thread.get("writer"):
            continue
        frames = stacks[thread["native_id"]].python_frames
        for frame, want in zip(frames, thread["stack"]):
            for name, value in (want.get("locals") or {}).items():
                assert frame.locals is not None and frame.locals.get(name) == value
                compared += 1
    assert compared > 0


@pytest.mark.parametrize("entry", DOUBLE_FREE, ids=label)
def test_double_free_victim_found_by_check(entry):
    entry = need_matrix(entry)
    objects = truth(entry)["objects"]
    victim, holder = objects["victim_tuple"], objects["holder_list"]
    py = open_entry(entry).python()
    result = py.check()
    assert result.verdict.status == "corrupt"
    assert victim in result.verdict.victims
    assert f"{victim:#x}" in result.verdict.summary
    about = [f for f in result.findings if f.address == victim]
    kinds = {f.kind for f in about}
    assert {"free_list_cycle", "free_list_member_referenced"} <= kinds
    assert all(f.severity == "error" for f in about)
    assert any(r["container"] == holder for f in about for r in f.referrers)
    cycle = next(f for f in about if f.kind == "free_list_cycle")
    assert cycle.evidence["repeated_address"] == victim
    assert isinstance(cycle.evidence, dict)


@pytest.mark.parametrize("entry", DOUBLE_FREE, ids=label)
def test_objects_equal_truth(entry):
    entry = need_matrix(entry)
    objects = truth(entry)["objects"]
    py = open_entry(entry).python()
    holder = py.object(objects["holder_list"])
    assert holder.type_name == "list" and holder.kind == "list"
    assert holder.gc_state == "tracked"
    victim = holder[objects["holder_index"]]
    assert victim.address == objects["victim_tuple"]
    assert victim == py.object(objects["victim_tuple"])
    assert victim.type_name == "tuple" and victim.kind == "tuple"
    assert len(victim) == objects["victim_size"]
    assert list(holder)[objects["holder_index"]] == victim
    # The free lists hold the victim in the slot the truth names.
    slots = py.free_lists().slots
    slot = next(s for s in slots if s["list"] == f"tuple[{objects['freelist_index']}]")
    assert objects["victim_tuple"] in slot["members"]
    # Instances: attributes by name, with values.
    for key in ("owner", "owner_with_dict"):
        want = objects.get(f"{key}_attributes")
        if not want or key not in objects:
            continue
        owner = py.object(objects[key])
        attrs = owner.attributes
        for name, value in want.items():
            if name == "items":
                assert attrs[name].address == value
                assert owner.attribute(name) == attrs[name]
            else:
                got = attrs[name].value()
                # 2.7's attribute names and strings are its `str`: bytes.
                assert (got.decode() if isinstance(got, bytes) else got) == value
                assert attrs[name].kind in ("int", "str", "bytes")
    # The holder is among the GC's objects, by iteration too.
    gc = py.gc_generations()
    assert any(objects["holder_list"] in g.objects for g in gc.generations)
    assert holder in set(py)
    with pytest.raises(pymortem.WrongType):
        holder.value()
    with pytest.raises(pymortem.Error):
        py.object(0).type_name


@pytest.mark.parametrize("entry", entries(arch="x86_64", scenario="busy_heap", kind="kernel")[:1] + entries(arch="x86_64", scenario="threads", kind="kernel")[:1], ids=label)
def test_read_error_names_the_address(entry):
    entry = need_matrix(entry)
    py = open_entry(entry).python()
    with pytest.raises(pymortem.ReadError) as caught:
        py.object(0x10).refcount
    assert isinstance(caught.value, pymortem.Error)
    assert caught.value.address == 0x10
    assert caught.value.reason == "not_mapped"
    # A repr never fails.
    assert isinstance(py.object(0x10).repr(), str)
