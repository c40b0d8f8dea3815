#!/usr/bin/env python3
"""Live processes, side by side on one busy process: `pymortem check --pid`
(total time and the pause it prints) against `gcore` + `pymortem check` on
the core gcore wrote (gdb stops the process for the whole dump), and, for
stacks only, `pymortem threads --pid` against `pystack remote` and
`py-spy dump --pid` (both stop the process while they read it).

    python3 benches/live-vs-peers.py [--runs 5] [--heap-mb 40] [--bin target/release/pymortem]
                                     [--python ~/.pyenv/versions/3.11.7/bin/python]

pystack and py-spy come from a venv (`--peers DIR/bin`, default: on PATH);
a missing peer is reported as missing, not timed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUSY = r"""
import random, sys, threading, time
heap_mb = int(sys.argv[1])
keep = [bytearray(16384) for _ in range(heap_mb * 1024 // 16 // 2)]
records = [{"id": i, "name": "n%d" % i, "tags": (i, i + 1)} for i in range(heap_mb * 1000)]
def sorter():
    while True:
        xs = [random.random() for _ in range(20000)]
        xs.sort()
def builder():
    while True:
        d = {}
        for i in range(5000):
            d[i] = (i, str(i))
def cycles():
    while True:
        a = []; a.append(a); del a
def sleeper():
    while True:
        time.sleep(0.01)
for f in (sorter, builder, cycles, sleeper):
    threading.Thread(target=f, daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def timed(argv: list[str], env=None) -> tuple[float, str, str, int]:
    start = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return time.perf_counter() - start, p.stdout, p.stderr, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--heap-mb", type=int, default=40)
    ap.add_argument("--bin", default=str(ROOT / "target/release/pymortem"))
    ap.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python"))
    ap.add_argument("--peers", default=None, help="a folder holding pystack and py-spy")
    args = ap.parse_args()
    peers = args.peers
    which = lambda name: shutil.which(name, path=peers) if peers else shutil.which(name)  # noqa: E731
    proc = subprocess.Popen([args.python, "-c", BUSY, str(args.heap_mb)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    pid = str(proc.pid)
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) // 1024
    work = Path(tempfile.mkdtemp(prefix="pymortem-live-bench-"))
    rows: dict[str, list[tuple[float, float | None]]] = {}

    def add(name, total, pause):
        rows.setdefault(name, []).append((total, pause))

    try:
        for _ in range(args.runs):
            t, _, err, code = timed([args.bin, "check", "--no-cache", "--pid", pid])
            m = re.search(r"paused ([\d.]+) ms", err)
            add("pymortem check --pid", t, float(m.group(1)) / 1000 if m else None)
            t, _, err, code = timed([args.bin, "threads", "--pid", pid])
            m = re.search(r"paused ([\d.]+) ms", err)
            add("pymortem threads --pid (stacks)", t, float(m.group(1)) / 1000 if m else None)
            core = work / "core"
            t_dump, _, _, _ = timed(["gcore", "-o", str(core), pid])
            written = Path(f"{core}.{pid}")
            t_check, _, _, _ = timed([args.bin, "check", "--no-cache", str(written)])
            add("gcore + pymortem check", t_dump + t_check, t_dump)
            written.unlink()
            if which("pystack"):
                t, _, _, _ = timed([which("pystack"), "remote", pid])
                add("pystack remote (stacks)", t, t)
            if which("py-spy"):
                t, _, _, _ = timed([which("py-spy"), "dump", "--pid", pid])
                add("py-spy dump (stacks)", t, t)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"busy process: {args.python}, 4 busy threads, RSS {rss} MiB; median of {args.runs} runs\n")
    print("| tool | total | process stopped |")
    print("|---|---|---|")
    for name, values in rows.items():
        total = statistics.median(v[0] for v in values)
        pauses = [v[1] for v in values if v[1] is not None]
        pause = f"{statistics.median(pauses) * 1000:.0f} ms" if pauses else "?"
        if "pystack" in name or "py-spy" in name:
            pause = f"≤ {pause}"
        if "gcore" in name:
            pause = f"{pause} (gcore's run)"
        print(f"| {name} | {total * 1000:.0f} ms | {pause} |")
    for missing in ("pystack", "py-spy"):
        if not which(missing):
            print(f"\n{missing}: not found (--peers DIR)")


if __name__ == "__main__":
    main()
