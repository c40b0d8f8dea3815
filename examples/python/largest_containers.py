"""The largest containers the GC tracks: every list, tuple and dict linked
into a generation list, by the length it records, largest first. A first
look at what filled a heap. The Python twin of examples/largest_containers.rs.

    python examples/python/largest_containers.py CORE [--top N] [--sysroot DIR] [--debug-dir DIR]

Output: a header line, then one tab-separated line per container:
rank, length, type, address, generation, a bounded repr.
"""

from __future__ import annotations

import argparse
import sys

import pymortem


def main() -> int:
    parser = argparse.ArgumentParser(prog="largest_containers", description=__doc__.split("\n\n")[0])
    parser.add_argument("core", help="the core file (compressed ones too)")
    parser.add_argument("--top", type=int, default=10, help="how many containers to print")
    parser.add_argument("--sysroot", help="look up every path the core names under this folder")
    parser.add_argument("--debug-dir", action="append", default=[], help="a folder of split debug files; repeatable")
    args = parser.parse_args()
    try:
        py = pymortem.open(args.core, sysroot=args.sysroot, debug_dirs=args.debug_dir).python()
    except pymortem.Error as e:
        print(f"largest_containers: {e}", file=sys.stderr)
        return 1
    gc = py.gc_generations()
    for d in gc.diagnostics:
        print(f"{d['severity'].capitalize()}: {d['message']}", file=sys.stderr)
    containers = []
    for generation in gc.generations:
        for address in generation.objects:
            obj = py.object(address)
            try:
                if obj.kind not in ("list", "tuple", "dict"):
                    continue
                containers.append((len(obj), address, generation.name))
            except pymortem.Error:
                continue
    containers.sort(key=lambda c: (-c[0], c[1]))
    out = ["rank\tlength\ttype\taddress\tgeneration\trepr"]
    for rank, (length, address, generation) in enumerate(containers[: args.top], 1):
        obj = py.object(address)
        try:
            type_name = obj.type_name
        except pymortem.Error:
            type_name = "?"
        out.append(f"{rank}\t{length}\t{type_name}\t{address:#x}\t{generation}\t{obj.repr()}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
