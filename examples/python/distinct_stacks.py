"""The distinct Python stacks across a folder of cores: every thread of
every core, grouped by its frames (function, file, line), most common
first. Cores are read in parallel (threads: the work releases the GIL).
The Python twin of examples/distinct_stacks.rs.

    python examples/python/distinct_stacks.py PATH... [--sysroot DIR] [--debug-dir DIR] [--jobs N]

PATH is a core or a folder of cores. Output, one block per distinct stack,
innermost frame first:

    3 threads in 2 cores
      wait (/usr/lib/python3.11/threading.py:320)
      worker (/srv/app/jobs.py:41)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pymortem


def counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def cores_under(paths):
    """Files named, and the files under folders named, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for folder, _, files in os.walk(path):
                found.extend(os.path.join(folder, f) for f in files)
        else:
            found.append(path)
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(prog="distinct_stacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="cores, or folders of cores")
    parser.add_argument("--sysroot", help="look up every path the core names under this folder")
    parser.add_argument("--debug-dir", action="append", default=[], help="a folder of split debug files; repeatable")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="cores read at once")
    args = parser.parse_args()

    def stacks(path):
        try:
            py = pymortem.open(path, sysroot=args.sysroot, debug_dirs=args.debug_dir).python()
        except pymortem.Error as e:
            print(e, file=sys.stderr)
            return path, None
        return path, [tuple((f.function, f.file, f.line) for f in t.frames) for t in py.threads]

    paths = cores_under(args.paths)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        per_core = [r for r in pool.map(stacks, paths) if r[1] is not None]

    groups = defaultdict(lambda: [0, set()])
    without_frames = 0
    for path, found in per_core:
        for stack in found:
            if not stack:
                without_frames += 1
                continue
            groups[stack][0] += 1
            groups[stack][1].add(path)
    ordered = sorted(groups.items(), key=lambda g: (-g[1][0], g[0]))
    out = []
    for stack, (threads, cores) in ordered:
        out.append(f"{counted(threads, 'thread', 'threads')} in {counted(len(cores), 'core', 'cores')}")
        for function, file, line in stack:
            out.append(f"  {function} ({file}:{'unknown line' if line is None else line})")
        out.append("")
    if without_frames:
        out.append(f"({counted(without_frames, 'thread', 'threads')} with no Python frame)\n")
    out.append(
        f"{counted(len(ordered), 'distinct stack', 'distinct stacks')}, "
        f"{counted(len(per_core), 'core', 'cores')} read, {len(paths) - len(per_core)} failed"
    )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
