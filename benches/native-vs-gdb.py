#!/usr/bin/env python3
"""benches/native-vs-gdb.py: compare `pymortem threads --native` with gdb's `thread apply all bt`.

For each sample core (sample-cores/generated/manifest.json, filtered by the options):
  1. gdb -batch -nx with `thread apply all bt` (sysroot and debug-file-directory set the way
     the manifest says the core needs them), timed;
  2. `pymortem threads --native --json` with the same sysroot and debug dirs, timed;
  3. per thread (matched by LWP), the native frames are matched by address.  gdb prints
     inlined functions as frames of their own without an address: they are grouped with the
     physical frame they belong to, which pymortem reports with its `source` (DWARF) list.
     A frame is compared where both sides name it; names are normalised by dropping GCC's
     clone suffixes (`.cold`, `.constprop.0`, …) and glibc's `__GI_` prefix.  A frame agrees
     when gdb's physical function equals pymortem's symbol or pymortem's DWARF name for it,
     and every inlined function gdb lists is in pymortem's inline list;
     `<signal handler called>` agrees with a frame pymortem marks `signal_frame`.
     Both synthesize tail-call frames from DW_TAG_call_site (DW_AT_call_tail_call), which
     no unwinder sees on the stack; gdb names such a frame by the innermost inlined
     function at the jump, which pymortem lists in `source`.  Frames only one side shows
     are counted apart.
  4. prints per-core rows and a summary (frames compared, agreeing, disagreeing; frames only
     one side found; total time of each tool), and writes
     benches/.cache/native-vs-gdb/summary.json.

Exit status: 0 when every compared frame agrees, 1 on any disagreement or when pymortem
fails on a core, 2 on a set-up error (no manifest, no gdb, no pymortem binary).

Usage: python3 benches/native-vs-gdb.py [--scenario S ...] [--interp I ...] [--kind K ...]
                                         [--pymortem PATH] [--jobs N] [--quiet] [--out DIR]
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, ".cache", "native-vs-gdb")

THREAD_RE = re.compile(r"^Thread \d+ \(.*?LWP (\d+)\)")
FRAME_RE = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+)")


def normalise(name):
    if not name:
        return None
    if name.startswith("__GI_"):
        name = name[len("__GI_"):]
    return name.split(".")[0]


def gdb_threads(text):
    """{lwp: [group]}, group = {"address": int or None, "names": [innermost inline first ... physical]}."""
    threads = {}
    current = None
    for line in text.splitlines():
        m = THREAD_RE.match(line)
        if m:
            current = threads.setdefault(int(m.group(1)), [])
            continue
        m = FRAME_RE.match(line)
        if m is None or current is None:
            continue
        index, address, name = int(m.group(1)), m.group(2), m.group(3)
        if name.startswith("<signal"):
            name = "<signal handler called>"
        # A frame without an address after frame 0 is an inlined function's caller.
        if address is None and index > 0 and current and name != "<signal handler called>":
            current[-1]["names"].append(name)
        else:
            current.append({"address": int(address, 16) if address else None, "names": [name]})
    return threads


def run(cmd, env=None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return proc, time.perf_counter() - start


def compare_core(entry, pymortem):
    core = entry["core"]
    gdb = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0"]
    pm = [pymortem, "threads", "--native", "--json", core]
    debug_dirs = list(entry.get("debug_dirs") or [])
    if entry.get("sysroot"):
        gdb += ["-ex", "set sysroot " + entry["sysroot"]]
        pm += ["--sysroot", entry["sysroot"]]
    else:
        debug_dirs.append("/usr/lib/debug")
    if debug_dirs:
        gdb += ["-ex", "set debug-file-directory " + ":".join(debug_dirs)]
    for d in entry.get("debug_dirs") or []:
        pm += ["--debug-dir", d]
    gdb += ["-ex", "thread apply all bt", entry["exe"], core]
    gdb_proc, gdb_seconds = run(gdb)
    pm_proc, pm_seconds = run(pm)
    row = {"core": os.path.relpath(core, ROOT), "gdb_seconds": gdb_seconds, "pymortem_seconds": pm_seconds,
           "compared": 0, "agree": 0, "disagreements": [], "gdb_only": 0, "pymortem_only": 0,
           "unnamed": 0, "error": None}
    # 3: a frame walk stopped early (the core lacks memory); the native frames are all there.
    if pm_proc.returncode not in (0, 1, 3):
        row["error"] = "pymortem exited %d: %s" % (pm_proc.returncode, pm_proc.stderr.strip()[-300:])
        return row
    report = json.loads(pm_proc.stdout)
    by_gdb = gdb_threads(gdb_proc.stdout)
    for thread in report["threads"]:
        lwp = thread.get("lwp")
        groups = by_gdb.get(lwp)
        stack = thread.get("stack")
        if groups is None or stack is None:
            continue
        natives = [f for f in stack["frames"] if f["kind"] == "native"]
        # Walk both stacks in order: the same return address recurs in deep recursion.
        next_group = 0
        for i, frame in enumerate(natives):
            address = frame["address"]["address"]
            found = None
            # A rebuilt tail-call frame gdb did not rebuild must not pull the
            # match ahead to a later frame at the same address.
            window = 1 if frame.get("trust") == "tail_call" else 16
            for k in range(next_group, min(len(groups), next_group + window)):
                if groups[k]["address"] == address or (i == 0 and k == 0 and groups[0]["address"] is None):
                    found = k
                    break
            if found is None:
                row["pymortem_only"] += 1
                continue
            # gdb frames skipped over (pymortem synthesizes tail-call frames too, so
            # these are frames it missed).
            row["gdb_only"] += found - next_group
            group = groups[found]
            next_group = found + 1
            gdb_names = group["names"]
            physical = gdb_names[-1]
            if physical == "<signal handler called>":
                row["compared"] += 1
                if frame.get("signal_frame"):
                    row["agree"] += 1
                else:
                    row["disagreements"].append("LWP %s %#x: gdb <signal handler called>, pymortem %s"
                                                % (lwp, address, frame.get("function")))
                continue
            source = [s.get("function") for s in frame.get("source") or []]
            ours = {normalise(frame.get("function"))}
            if source:
                ours.add(normalise(source[-1]))
            if frame.get("trust") == "tail_call":
                # gdb names a tail-call frame by the function the jump is in,
                # the innermost inlined one, without the inlined chain.
                ours.update(normalise(s) for s in source)
            ours.discard(None)
            if physical == "??" or not ours:
                row["unnamed"] += 1
                continue
            row["compared"] += 1
            inline_ok = all(normalise(n) in {normalise(s) for s in source} for n in gdb_names[:-1])
            if normalise(physical) in ours and inline_ok:
                row["agree"] += 1
            else:
                row["disagreements"].append("LWP %s %#x: gdb %s, pymortem %s (inlined %s)"
                                            % (lwp, address, " < ".join(gdb_names), frame.get("function"), source[:-1]))
        row["gdb_only"] += len(groups) - next_group
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", nargs="+")
    ap.add_argument("--interp", nargs="+")
    ap.add_argument("--kind", nargs="+")
    ap.add_argument("--pymortem", default=os.path.join(ROOT, "target", "release", "pymortem"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--out", default=OUT, help="folder for summary.json")
    args = ap.parse_args()
    manifest_path = os.path.join(os.environ.get("PYMORTEM_CORES", os.path.join(ROOT, "sample-cores", "generated")),
                                 "manifest.json")
    if not os.path.exists(manifest_path):
        print("no %s: run python3 sample-cores/generate.py first" % manifest_path, file=sys.stderr)
        return 2
    if shutil.which("gdb") is None or not os.path.exists(args.pymortem):
        print("needs gdb on PATH and %s (cargo build --release)" % args.pymortem, file=sys.stderr)
        return 2
    entries = json.load(open(manifest_path))
    entries = [e for e in entries
               if (not args.scenario or e["scenario"] in args.scenario)
               and (not args.interp or e["interp"] in args.interp)
               and (not args.kind or e["kind"] in args.kind)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda e: compare_core(e, args.pymortem), entries))
    totals = {k: sum(r[k] for r in rows) for k in ("compared", "agree", "gdb_only", "pymortem_only", "unnamed")}
    totals["disagree"] = sum(len(r["disagreements"]) for r in rows)
    totals["errors"] = sum(1 for r in rows if r["error"])
    totals["cores"] = len(rows)
    totals["gdb_seconds"] = round(sum(r["gdb_seconds"] for r in rows), 3)
    totals["pymortem_seconds"] = round(sum(r["pymortem_seconds"] for r in rows), 3)
    for r in rows:
        if not args.quiet or r["disagreements"] or r["error"]:
            print("%-60s compared %3d agree %3d gdb-only %2d pymortem-only %2d  gdb %.2fs pymortem %.3fs%s"
                  % (r["core"], r["compared"], r["agree"], r["gdb_only"], r["pymortem_only"],
                     r["gdb_seconds"], r["pymortem_seconds"], "  ERROR " + r["error"] if r["error"] else ""))
            for d in r["disagreements"]:
                print("    " + d)
    print("summary: %s" % json.dumps(totals))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"totals": totals, "cores": rows}, f, indent=1)
    return 1 if totals["disagree"] or totals["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
