"""The story's diagnosis, by hand: find the tuples that sit on a free list
while live containers still point at them (a tuple released once too
often), and name every container that holds one. The Python twin of
examples/freed_tuples.rs, with the same output and exit codes.

    python examples/python/freed_tuples.py CORE [--sysroot DIR] [--debug-dir DIR]

Output, one block per freed tuple that is still referenced:

    freed tuple 0x7f0c… on the free list of 7-tuples: refcount 0, GC untracked
      held by list 0x7f0c… item 0 (generation 2)

Exit status: 0 when no freed tuple is referenced, 1 when some are, 2 on
error, 3 when the free lists or the GC lists could not be walked (then
"none found" would not mean none are there).
"""

from __future__ import annotations

import argparse
import sys

import pymortem


def references(container: pymortem.Object):
    """(place, detail, target) for every pointer `container` holds; `place`
    says where (see `describe`), and nothing is formatted until a target
    matches: a heap has millions of pointers and a handful of victims."""
    try:
        kind = container.kind
        if kind in ("list", "tuple"):
            return [("item", i, item) for i, item in enumerate(container)]
        if kind == "dict":
            places = []
            for key, value in container.items():
                places.append(("key", key, key))
                places.append(("value of key", key, value))
            return places
        if kind == "other":
            return [("attribute", name, value) for name, value in container.attributes.items()]
    except pymortem.Error:
        pass
    return []


def describe(place: str, detail) -> str:
    """`item 3`, `key 'spool'`, `value of key 'spool'`, `attribute items`."""
    if place in ("key", "value of key"):
        return f"{place} {detail.repr()}"
    return f"{place} {detail}"


def run(args) -> int:
    process = pymortem.open(args.core, sysroot=args.sysroot, debug_dirs=args.debug_dir)
    py = process.python()

    # 1. Every tuple on a free list, with the length its slot keeps.
    free = py.free_lists()
    freed = {
        member: slot["size"]
        for slot in free.slots
        if slot.get("size") is not None
        for member in slot["members"]
    }

    # 2. Every container the GC tracks, searched for pointers to them.
    gc = py.gc_generations()
    unchecked = [u for u in (free.unchecked, gc.unchecked) if u]
    if unchecked:
        out = []
        for u in unchecked:
            out.append(f"not checked: {u['check']}: {u['reason']}\n  to check them: {u['remedy']}")
        out.append("incomplete: no verdict on freed tuples")
        print("\n".join(out))
        return 3
    holders: dict = {}
    for generation in gc.generations:
        for address in generation.objects:
            container = py.object(address)
            for place, detail, target in references(container):
                if target.address in freed:
                    try:
                        type_name = container.type_name
                    except pymortem.Error:
                        type_name = "?"
                    holders.setdefault(target.address, []).append(
                        f"{type_name} {address:#x} {describe(place, detail)} ({generation.name})"
                    )

    # 3. The evidence for each.
    out = []
    for tuple_address in sorted(holders):
        victim = py.object(tuple_address)
        try:
            refcount = str(victim.refcount)
        except pymortem.Error as e:
            refcount = f"unreadable ({e})"
        try:
            state = victim.gc_state or "no header"
        except pymortem.Error as e:
            state = f"unreadable ({e})"
        out.append(
            f"freed tuple {tuple_address:#x} on the free list of {freed[tuple_address]}-tuples: "
            f"refcount {refcount}, GC {state}"
        )
        out.extend(f"  held by {holder}" for holder in holders[tuple_address])
    searched = sum(len(g.objects) for g in gc.generations)
    out.append(
        f"{len(holders)} freed tuples still referenced "
        f"({len(freed)} on the free lists, {searched} tracked objects searched)"
    )
    print("\n".join(out))
    return 1 if holders else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="freed_tuples", description=__doc__.split("\n\n")[0])
    parser.add_argument("core", help="the core file (compressed ones too)")
    parser.add_argument("--sysroot", help="look up every path the core names under this folder")
    parser.add_argument("--debug-dir", action="append", default=[], help="a folder of split debug files; repeatable")
    args = parser.parse_args()
    try:
        return run(args)
    except pymortem.Error as e:
        print(f"freed_tuples: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
